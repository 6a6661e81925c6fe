//! `karpctl migrate` end to end: the emulator's managed node groups (moto plus
//! tests/support/moto_ext.py's node group tags and scaling checks) and the stand-in API server's
//! nodes, pods, PodDisruptionBudgets, Eviction API and simulated rescheduling
//! (tests/support/apiserver.rs). One cluster: a `system` group (on-demand, untainted: the
//! controller's), a spot group `web` (label team=web), an on-demand group `gpu` tainted
//! dedicated=gpu:NoSchedule, and Cluster Autoscaler in kube-system.

use crate::support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use karpctl::ErrorKind;
use serde_json::{json, Value};
use support::apiserver::path_of;
use support::faults::FaultConfig;
use support::proxy::Proxy;
use support::{Env, SeededCluster};

const CA: &str = "/apis/apps/v1/namespaces/kube-system/deployments/cluster-autoscaler";

fn node(name: &str, group: &str, labels: Value, taints: Value) -> Value {
    let mut l = json!({"eks.amazonaws.com/nodegroup": group, "kubernetes.io/hostname": name});
    if let (Some(l), Some(extra)) = (l.as_object_mut(), labels.as_object()) {
        l.extend(extra.clone());
    }
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": l},
           "spec": {"taints": taints}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}

fn pod(name: &str, app: &str, node: &str, spec: Value) -> Value {
    let mut s = json!({"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "apps", "labels": {"app": app},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app, "uid": app}]},
           "spec": s, "status": {"phase": "Running"}})
}

fn pdb(name: &str, app: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": "apps"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}}})
}

async fn nodegroup(
    env: &Env,
    seeded: &SeededCluster,
    name: &str,
    spot: bool,
    labels: &[(&str, &str)],
    taint: bool,
    desired: i32,
) {
    use aws_sdk_eks::types::{CapacityTypes, NodegroupScalingConfig, Taint, TaintEffect};
    let mut req = env
        .aws
        .eks
        .create_nodegroup()
        .cluster_name(&seeded.name)
        .nodegroup_name(name)
        .node_role(format!("arn:aws:iam::{}:role/eks-node", env.account))
        .set_subnets(Some(seeded.subnet_ids.clone()))
        .instance_types(if spot { "m5.large" } else { "c5.xlarge" })
        .capacity_type(if spot { CapacityTypes::Spot } else { CapacityTypes::OnDemand })
        .scaling_config(NodegroupScalingConfig::builder().min_size(1).max_size(4).desired_size(desired).build());
    for (k, v) in labels {
        req = req.labels(*k, *v);
    }
    if taint {
        req = req.taints(Taint::builder().key("dedicated").value("gpu").effect(TaintEffect::NoSchedule).build());
    }
    req.send().await.expect("create node group");
}

/// The cluster of this file's header, with pods: `web` (2 replicas, a PDB) on the spot nodes,
/// `batch` (1 replica, no PDB) on the gpu node, and `solo` (1 replica, a PDB that allows no
/// eviction) on web-2.
async fn scenario() -> (Env, SeededCluster) {
    let env = Env::new().await;
    let seeded = env.seed_cluster("mig", Some("API_AND_CONFIG_MAP")).await;
    nodegroup(&env, &seeded, "system", false, &[], false, 2).await;
    nodegroup(&env, &seeded, "web", true, &[("team", "web")], false, 2).await;
    nodegroup(&env, &seeded, "gpu", false, &[("dedicated", "gpu")], true, 1).await;
    let api = &env.cluster.api;
    // FakeCluster's own nodes system-a and system-b are the `system` group's.
    for name in ["system-a", "system-b"] {
        api.edit(&path_of("v1", "Node", None, name), |n| {
            n["metadata"]["labels"]["eks.amazonaws.com/nodegroup"] = json!("system")
        });
    }
    api.insert(node("web-1", "web", json!({"team": "web"}), json!([])));
    api.insert(node("web-2", "web", json!({"team": "web"}), json!([])));
    api.insert(node(
        "gpu-1",
        "gpu",
        json!({"dedicated": "gpu"}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    ));
    let web = json!({"nodeSelector": {"team": "web"}});
    api.insert(pod("web-a", "web", "web-1", web.clone()));
    api.insert(pod("web-b", "web", "web-2", web.clone()));
    api.insert(pod("solo-a", "solo", "web-2", web));
    api.insert(pod(
        "batch-a",
        "batch",
        "gpu-1",
        json!({"nodeSelector": {"dedicated": "gpu"},
               "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
    ));
    for app in ["web", "solo", "batch"] {
        api.insert(
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": app, "namespace": "apps"}}),
        );
    }
    api.insert(pdb("web", "web"));
    api.insert(pdb("solo", "solo"));
    api.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cluster-autoscaler", "namespace": "kube-system"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "cluster-autoscaler", "image": "registry.k8s.io/autoscaling/cluster-autoscaler:v1.33.0"}]}}},
        "status": {"availableReplicas": 1}}));
    (env, seeded)
}

fn args(env: &Env, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["migrate", "-c", "mig", "--yes", "--drain-timeout", "400ms", "--wait-timeout", "5s"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
    a.extend(env.cluster.args());
    a
}

async fn migrate(env: &Env, extra: &[&str]) -> karpctl::Result<karpctl::Report> {
    let a = args(env, extra);
    env.run(&a.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// What a rollback must restore exactly: every group's scaling and tags, Cluster Autoscaler's
/// replicas and annotations, the group nodes' cordon and annotations, and no inferred NodePools.
async fn state(env: &Env) -> Value {
    let mut groups = BTreeMap::new();
    for name in ["gpu", "system", "web"] {
        let g = env.aws.eks.describe_nodegroup().cluster_name("mig").nodegroup_name(name).send().await.unwrap();
        let g = g.nodegroup().unwrap();
        let s = g.scaling_config().unwrap();
        groups.insert(name, json!({"scaling": [s.min_size(), s.max_size(), s.desired_size()], "tags": g.tags()}));
    }
    let api = &env.cluster.api;
    let ca = api.object(CA).unwrap();
    let nodes: BTreeMap<String, Value> = api
        .objects_under("/api/v1/nodes/")
        .into_iter()
        .filter(|(_, n)| n.pointer("/metadata/labels/eks.amazonaws.com~1nodegroup").is_some())
        .map(|(k, n)| (k, json!([n["spec"].get("unschedulable"), n["metadata"].get("annotations")])))
        .collect();
    let pools: Vec<String> =
        api.objects_under("/apis/karpenter.sh/v1/nodepools/").into_iter().map(|(k, _)| k).collect();
    json!({"groups": groups, "ca": [ca["spec"]["replicas"], ca["metadata"].get("annotations")], "nodes": nodes, "pools": pools})
}

/// app -> the nodes its pods run on (Running, not deleting), sorted.
fn placement(env: &Env) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, p) in env.cluster.api.objects_under("/api/v1/namespaces/apps/pods/") {
        if p["status"]["phase"] == "Running" && p["metadata"].get("deletionTimestamp").is_none() {
            out.entry(p["metadata"]["labels"]["app"].as_str().unwrap().to_string())
                .or_default()
                .push(p["spec"]["nodeName"].as_str().unwrap_or("").to_string());
        }
    }
    out.values_mut().for_each(|v| v.sort());
    out
}

/// doctor's migration checks (`migrate.*`): id -> (status, message and hint).
async fn migration_checks(env: &Env) -> BTreeMap<String, (String, String)> {
    let mut a: Vec<String> = ["doctor", "-c", "mig"].iter().map(|s| s.to_string()).collect();
    a.extend(env.cluster.args());
    let report = env.run(&a.iter().map(String::as_str).collect::<Vec<_>>()).await.expect("doctor runs");
    report.to_json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"].as_str().unwrap().starts_with("migrate."))
        .map(|c| {
            let text = format!("{} / {}", c["message"].as_str().unwrap(), c["hint"].as_str().unwrap_or(""));
            (c["id"].as_str().unwrap().to_string(), (c["status"].as_str().unwrap().to_string(), text))
        })
        .collect()
}

fn step_done(report: &karpctl::Report) -> Vec<(String, bool)> {
    report.to_json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (format!("{} {}", s["step"].as_str().unwrap(), s["target"].as_str().unwrap()), s["done"].as_bool().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn dry_run_plans_then_a_blocking_pdb_stops_the_drain_and_apply_converges_and_rollback_restores_exactly() {
    let (env, _) = scenario().await;
    let start = state(&env).await;
    let before = placement(&env);

    // The plan: writes nothing, infers one NodePool per distinct labels/taints/capacity type.
    env.recorder.clear();
    let plan = migrate(&env, &["--dry-run"]).await.expect("dry run");
    let doc = plan.to_json();
    assert_eq!(doc["controller_nodegroup"], "system");
    assert!(env.recorder.writes().is_empty(), "{:?}", env.recorder.writes());
    assert_eq!(state(&env).await, start, "a dry run changes nothing");
    let pools: BTreeMap<String, Value> = doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "NodePool")
        .map(|r| (r["metadata"]["name"].as_str().unwrap().to_string(), r["spec"]["template"].clone()))
        .collect();
    assert_eq!(pools.keys().cloned().collect::<Vec<_>>(), vec!["gpu", "system", "web"]);
    let req = |pool: &str, i: usize| pools[pool]["spec"]["requirements"][i].clone();
    assert_eq!(
        req("web", 0),
        json!({"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]})
    );
    assert_eq!(req("web", 1)["values"], json!(["spot"]));
    assert_eq!(pools["web"]["metadata"]["labels"], json!({"team": "web"}));
    assert_eq!(req("gpu", 1)["values"], json!(["on-demand"]));
    assert_eq!(pools["gpu"]["spec"]["taints"], json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]));
    assert_eq!(
        doc["will_be_interrupted"],
        json!(["apps/batch-a on gpu-1 (a single replica and no PodDisruptionBudget)"])
    );
    let install: Vec<String> = doc["install"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["resource"].as_str().unwrap().to_string())
        .collect();
    assert!(install.contains(&"helm-release/kube-system/karpenter".to_string()), "{install:?}");
    let default_pool =
        doc["install"]["changes"].as_array().unwrap().iter().find(|c| c["resource"] == "nodepool/default").cloned();
    assert_eq!(default_pool.unwrap()["action"], "skip", "the inferred pools replace the default");
    // Only the system group's drain (it keeps both its nodes) is done before anything ran.
    let done_before: Vec<String> = step_done(&plan).into_iter().filter(|(_, d)| *d).map(|(s, _)| s).collect();
    assert_eq!(done_before, vec!["drain nodegroup/system"]);
    assert!(plan.text.contains("todo  drain   nodegroup/web"), "{}", plan.text);

    // Apply: the solo pod's PDB allows no eviction, so the drain stops after the bounded wait
    // and names it; what was done before stays done.
    let err = migrate(&env, &[]).await.expect_err("blocked by the PDB");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err:?}");
    assert!(
        err.message.contains("PodDisruptionBudget apps/solo") && err.message.contains("apps/solo-a"),
        "{}",
        err.message
    );
    assert!(err.hint.clone().unwrap_or_default().contains("run karpctl migrate again"), "{err:?}");
    let ca = env.cluster.api.object(CA).unwrap();
    assert_eq!(ca["spec"]["replicas"], 0, "CA was scaled before the drain");
    assert_eq!(ca["metadata"]["annotations"]["karpctl.io/migrate-original-replicas"], "1");

    // The budget relaxed, the next run continues and converges.
    env.cluster.api.remove("/apis/policy/v1/namespaces/apps/poddisruptionbudgets/solo");
    let done = migrate(&env, &[]).await.expect("apply");
    assert!(step_done(&done).iter().all(|(_, d)| *d), "{:?}", step_done(&done));
    // The install leaves out the default NodePool: its text does not claim a default EC2NodeClass.
    assert!(!done.text.contains("default EC2NodeClass is Ready"), "{}", done.text);
    assert!(
        done.text.contains("Karpenter is running (no default NodePool or EC2NodeClass installed)"),
        "{}",
        done.text
    );
    let after = state(&env).await;
    assert_eq!(after["groups"]["web"]["scaling"], json!([0, 4, 0]));
    assert_eq!(after["groups"]["gpu"]["scaling"], json!([0, 4, 0]));
    assert_eq!(after["groups"]["system"]["scaling"], json!([1, 4, 2]), "the controller's group keeps 2");
    assert_eq!(after["groups"]["web"]["tags"]["karpctl.io/migrate-original-scaling"], "min=1,max=4,desired=2");
    for pool in ["web", "gpu", "system"] {
        let p = env.cluster.api.object(&path_of("karpenter.sh/v1", "NodePool", None, pool)).expect(pool);
        assert_eq!(p["metadata"]["labels"]["karpctl.io/migrated"], "true");
    }
    // Every evicted pod was replaced on a Karpenter node of the matching NodePool.
    let moved = placement(&env);
    assert_eq!(moved.values().map(Vec::len).collect::<Vec<_>>(), before.values().map(Vec::len).collect::<Vec<_>>());
    for (app, nodes) in &moved {
        let pool = if app == "batch" { "gpu" } else { "web" };
        assert!(nodes.iter().all(|n| n.starts_with(&format!("karpenter-{pool}-"))), "{app}: {nodes:?}");
    }
    for n in ["web-1", "web-2", "gpu-1"] {
        assert_eq!(
            env.cluster.api.object(&path_of("v1", "Node", None, n)).unwrap()["spec"]["unschedulable"],
            true,
            "{n}"
        );
    }
    // The controller is pinned to the group that stays, off Karpenter's nodes.
    let values = &env.cluster.releases()["kube-system/karpenter"]["values"];
    let terms =
        &values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    assert_eq!(
        terms[0]["matchExpressions"][1],
        json!({"key": "eks.amazonaws.com/nodegroup", "operator": "In", "values": ["system"]})
    );

    // doctor after the migration: its checks pass; Cluster Autoscaler scaled back up by hand
    // fails, naming it and the way out.
    let checks = migration_checks(&env).await;
    let ids: Vec<&str> = checks.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        vec![
            "migrate.cluster-autoscaler",
            "migrate.nodegroup.gpu",
            "migrate.nodegroup.system",
            "migrate.nodegroup.web",
            "migrate.nodepool.gpu",
            "migrate.nodepool.system",
            "migrate.nodepool.web"
        ]
    );
    assert!(checks.values().all(|(s, _)| s == "pass"), "{checks:?}");
    env.cluster.api.edit(CA, |d| d["spec"]["replicas"] = json!(1));
    let checks = migration_checks(&env).await;
    let (status, text) = &checks["migrate.cluster-autoscaler"];
    assert_eq!(status, "fail", "{checks:?}");
    assert!(
        text.contains("kube-system/cluster-autoscaler") && text.contains("karpctl migrate --cluster mig"),
        "{text}"
    );
    assert!(text.contains("--rollback"), "{text}");
    env.cluster.api.edit(CA, |d| d["spec"]["replicas"] = json!(0));

    // A re-run has nothing to do and writes nothing.
    env.recorder.clear();
    env.cluster.api.clear_requests();
    let again = migrate(&env, &[]).await.expect("re-run");
    assert!(step_done(&again).iter().all(|(_, d)| *d));
    assert!(env.recorder.writes().is_empty(), "{:?}", env.recorder.writes());
    let writes: Vec<String> = env
        .cluster
        .api
        .karpctl_writes()
        .into_iter()
        .filter(|r| !r.path.ends_with("/selfsubjectaccessreviews"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.iter().all(|w| w.contains("nodepools") || w.contains("ec2nodeclasses")), "{writes:?}");

    // Rollback: exactly the starting state; the pods go back to the groups' nodes.
    let back = migrate(&env, &["--rollback"]).await.expect("rollback");
    assert!(back.text.contains("restore nodegroup/web"), "{}", back.text);
    assert_eq!(state(&env).await, start);
    for (app, nodes) in placement(&env) {
        assert!(nodes.iter().all(|n| !n.starts_with("karpenter-")), "{app}: {nodes:?}");
    }
    let ec2nodeclasses = env.cluster.api.objects_under("/apis/karpenter.k8s.aws/v1/ec2nodeclasses/");
    assert!(ec2nodeclasses.is_empty(), "{ec2nodeclasses:?}");
    // A second rollback finds nothing recorded.
    let twice = migrate(&env, &["--rollback"]).await.expect("second rollback");
    assert_eq!(twice.to_json()["steps"], json!([]));
}

/// The binary, started on the scenario (its blocking PDB removed), with `arm` given the way to
/// SIGKILL it (armed before it starts); returns the state once it died of that kill.
async fn run_killed(env: &Env, arm: impl FnOnce(Box<dyn FnMut() + Send>)) -> Value {
    env.cluster.api.remove("/apis/policy/v1/namespaces/apps/poddisruptionbudgets/solo");
    let a = args(env, &[]);
    let argv: Vec<&str> = a.iter().map(String::as_str).collect();
    let child: Arc<Mutex<Option<Child>>> = Arc::default();
    let victim = child.clone();
    arm(Box::new(move || {
        if let Some(c) = victim.lock().unwrap().as_mut() {
            let _ = c.kill();
        }
    }));
    let proxy = Proxy::start(&env.account, FaultConfig::latency(Duration::ZERO));
    let spawned = proxy.command(&argv).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start karpctl");
    *child.lock().unwrap() = Some(spawned);
    let status = loop {
        if let Some(s) = child.lock().unwrap().as_mut().and_then(|c| c.try_wait().expect("wait")) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(status.signal(), Some(9), "ended before the kill: {status:?}");
    state(env).await
}

/// The run after a kill finishes the migration: every step done, the records the originals,
/// the groups at their floor, Cluster Autoscaler at 0, every pod running.
async fn converges(env: &Env) {
    let done = migrate(env, &[]).await.expect("re-run after the kill");
    assert!(step_done(&done).iter().all(|(_, d)| *d), "{:?}", step_done(&done));
    let after = state(env).await;
    for (group, original) in [("web", "min=1,max=4,desired=2"), ("gpu", "min=1,max=4,desired=1")] {
        assert_eq!(after["groups"][group]["tags"]["karpctl.io/migrate-original-scaling"], original, "{group}");
        assert_eq!(after["groups"][group]["scaling"], json!([0, 4, 0]), "{group}");
    }
    assert_eq!(after["groups"]["system"]["scaling"], json!([1, 4, 2]));
    assert_eq!(after["ca"][0], 0);
    assert_eq!(after["ca"][1]["karpctl.io/migrate-original-replicas"], "1", "the original, not the 0 it was killed at");
    assert_eq!(placement(env).values().map(Vec::len).sum::<usize>(), 4, "{:?}", placement(env));
}

/// Killed at its 2nd eviction: in the middle of the web group's drain.
#[tokio::test]
async fn migrate_killed_mid_drain_is_finished_by_the_next_run() {
    let (env, _) = scenario().await;
    let half = run_killed(&env, |kill| env.cluster.api.on_eviction(2, kill)).await;
    assert_eq!(half["groups"]["web"]["scaling"], json!([1, 4, 2]), "killed before the web group was scaled");
    converges(&env).await;
}

/// Killed once the records are written: the groups' tags are there and Cluster Autoscaler's
/// annotation has just been (its first patch), nothing is scaled yet.
#[tokio::test]
async fn migrate_killed_after_the_records_are_written_is_finished_by_the_next_run() {
    let (env, _) = scenario().await;
    let half = run_killed(&env, |kill| env.cluster.api.on_write("PATCH", CA, 1, kill)).await;
    assert_eq!(half["groups"]["web"]["tags"]["karpctl.io/migrate-original-scaling"], "min=1,max=4,desired=2");
    assert_eq!(half["ca"], json!([1, {"karpctl.io/migrate-original-replicas": "1"}]), "recorded, not scaled");
    converges(&env).await;
}

/// Killed as Cluster Autoscaler reaches 0 (its second patch), before any drain.
#[tokio::test]
async fn migrate_killed_after_the_autoscaler_is_scaled_to_zero_is_finished_by_the_next_run() {
    let (env, _) = scenario().await;
    let half = run_killed(&env, |kill| env.cluster.api.on_write("PATCH", CA, 2, kill)).await;
    assert_eq!(half["ca"][0], 0);
    assert_eq!(half["groups"]["gpu"]["scaling"], json!([1, 4, 1]), "no group scaled yet");
    converges(&env).await;
}

/// Killed mid scale of the groups: gpu (drained first) is at its floor, web's first cordon has
/// just been written.
#[tokio::test]
async fn migrate_killed_between_two_groups_scaling_is_finished_by_the_next_run() {
    let (env, _) = scenario().await;
    let half =
        run_killed(&env, |kill| env.cluster.api.on_write("PATCH", &path_of("v1", "Node", None, "web-1"), 1, kill))
            .await;
    assert_eq!(half["groups"]["gpu"]["scaling"], json!([0, 4, 0]), "gpu was scaled");
    assert_eq!(half["groups"]["web"]["scaling"], json!([1, 4, 2]), "web was not");
    converges(&env).await;
}

/// A launch template in the emulator: `data` is EC2's RequestLaunchTemplateData.
async fn launch_template(env: &Env, name: &str, data: aws_sdk_ec2::types::RequestLaunchTemplateData) -> String {
    let lt = env
        .aws
        .ec2
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(data)
        .send()
        .await
        .expect("create launch template");
    lt.launch_template().and_then(|t| t.launch_template_id()).expect("template id").to_string()
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The dry run's inferred resources of one kind, by name.
fn resources(doc: &Value, kind: &str) -> BTreeMap<String, Value> {
    doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| (r["metadata"]["name"].as_str().unwrap().to_string(), r["spec"].clone()))
        .collect()
}

/// Two managed node groups made from launch templates: `system` on EKS's AL2023 AMI type, whose
/// template adds security groups, disks, IMDS settings and MIME user data (carried: Karpenter
/// merges it as EKS did), and `custom` on a custom AMI (amiType CUSTOM) whose nodeadm user data
/// is its own bootstrap (not carried; the plan says so).
#[tokio::test]
async fn node_groups_made_from_launch_templates_give_their_node_classes_disks_imds_ami_and_user_data() {
    use aws_sdk_ec2::types::{
        LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateHttpTokensState,
        LaunchTemplateInstanceMetadataOptionsRequest, RequestLaunchTemplateData, VolumeType,
    };
    use aws_sdk_eks::types::{AmiTypes, LaunchTemplateSpecification, NodegroupScalingConfig};
    let env = Env::new().await;
    let seeded = env.seed_cluster("mig", Some("API_AND_CONFIG_MAP")).await;
    let mime = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n\n--//\nContent-Type: text/x-shellscript\n\n#!/bin/bash\necho extra\n--//--\n";
    let system = launch_template(
        &env,
        "system-lt",
        RequestLaunchTemplateData::builder()
            .security_group_ids(&seeded.security_group_id)
            .block_device_mappings(
                LaunchTemplateBlockDeviceMappingRequest::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        LaunchTemplateEbsBlockDeviceRequest::builder()
                            .volume_size(80)
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .build(),
                    )
                    .build(),
            )
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(LaunchTemplateHttpTokensState::Required)
                    .http_put_response_hop_limit(2)
                    .build(),
            )
            .user_data(b64(mime))
            .build(),
    )
    .await;
    let nodeadm = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: mig\n";
    let custom = launch_template(
        &env,
        "custom-lt",
        RequestLaunchTemplateData::builder().image_id("ami-12c6146b").user_data(b64(nodeadm)).build(),
    )
    .await;
    for (name, template, ami, labels) in [
        ("system", system, AmiTypes::Al2023X8664Standard, None),
        ("custom", custom, AmiTypes::Custom, Some(("role", "custom"))),
    ] {
        let mut req = env
            .aws
            .eks
            .create_nodegroup()
            .cluster_name("mig")
            .nodegroup_name(name)
            .node_role(format!("arn:aws:iam::{}:role/eks-node", env.account))
            .set_subnets(Some(seeded.subnet_ids.clone()))
            .instance_types("m6g.large")
            .ami_type(ami)
            .launch_template(LaunchTemplateSpecification::builder().id(template).build())
            .scaling_config(NodegroupScalingConfig::builder().min_size(1).max_size(3).desired_size(1).build());
        if let Some((k, v)) = labels {
            req = req.labels(k, v);
        }
        req.send().await.expect("create node group");
    }

    let plan = migrate(&env, &["--dry-run"]).await.expect("dry run");
    let doc = plan.to_json();
    let classes = resources(&doc, "EC2NodeClass");
    let system = &classes["system"];
    assert_eq!(system["securityGroupSelectorTerms"], json!([{"id": seeded.security_group_id}]));
    assert_eq!(
        system["blockDeviceMappings"],
        json!([{"deviceName": "/dev/xvda", "ebs": {"volumeSize": "80Gi", "volumeType": "gp3", "encrypted": true}}])
    );
    assert_eq!(system["metadataOptions"], json!({"httpPutResponseHopLimit": 2, "httpTokens": "required"}));
    assert_eq!(system["amiSelectorTerms"], json!([{"alias": "al2023@latest"}]));
    assert_eq!(system["userData"], mime, "EKS merged it into its bootstrap; Karpenter merges it too");
    let custom = &classes["custom"];
    assert_eq!(custom["amiSelectorTerms"], json!([{"id": "ami-12c6146b"}]));
    assert_eq!(custom["amiFamily"], "AL2023", "the family its nodeadm user data is written for");
    assert!(custom.get("userData").is_none(), "the custom AMI's own bootstrap is not carried: {custom}");
    let pools = resources(&doc, "NodePool");
    assert_eq!(pools["custom"]["template"]["spec"]["requirements"][2]["values"], json!(["arm64"]), "m6g is Graviton");
    let notes: Vec<&str> = doc["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert!(notes.iter().any(|n| n.starts_with("custom: custom AMI ami-12c6146b")), "{notes:?}");
    assert!(notes.iter().any(|n| n.starts_with("custom: user data not carried over")), "{notes:?}");
    assert!(plan.text.contains("Not carried over as it was"), "{}", plan.text);
}

/// The self-managed Auto Scaling group of `asg_scenario`, as Auto Scaling describes it.
async fn describe_batch(env: &Env) -> aws_sdk_autoscaling::types::AutoScalingGroup {
    let got = env
        .aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("mig-batch")
        .send()
        .await
        .expect("describe the group");
    got.auto_scaling_groups()[0].clone()
}

/// The self-managed Auto Scaling group of `asg_scenario`, with its instance ids.
async fn batch_group(env: &Env) -> (Value, Vec<String>) {
    let g = &describe_batch(env).await;
    let tags: BTreeMap<&str, &str> =
        g.tags().iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())).collect();
    let ids = g.instances().iter().filter_map(|i| i.instance_id()).map(str::to_string).collect();
    (json!({"scaling": [g.min_size(), g.max_size(), g.desired_capacity()], "tags": tags}), ids)
}

/// A cluster with the managed `system` group (the controller's) and a self-managed Auto
/// Scaling group `mig-batch` (2 instances of c5.large from a launch template on a custom AMI,
/// labelled and tainted through Cluster Autoscaler's node-template tags), its two nodes
/// (providerID = its instances) running `batch` (2 replicas, a PDB), and Cluster Autoscaler.
async fn asg_scenario() -> Env {
    use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag};
    use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
    let (env, seeded) = {
        let env = Env::new().await;
        let seeded = env.seed_cluster("mig", Some("API_AND_CONFIG_MAP")).await;
        (env, seeded)
    };
    nodegroup(&env, &seeded, "system", false, &[], false, 2).await;
    let data = RequestLaunchTemplateData::builder()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::C5Large)
        .security_group_ids(&seeded.security_group_id)
        .user_data(b64("#!/bin/bash\n/etc/eks/bootstrap.sh mig --kubelet-extra-args '--node-labels=team=batch'\n"))
        .build();
    let template = launch_template(&env, "batch-lt", data).await;
    let tag = |k: &str, v: &str| {
        Tag::builder().key(k).value(v).propagate_at_launch(true).resource_type("auto-scaling-group").build()
    };
    env.aws
        .autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("mig-batch")
        .min_size(1)
        .max_size(3)
        .desired_capacity(2)
        .vpc_zone_identifier(seeded.subnet_ids[..2].join(","))
        .launch_template(LaunchTemplateSpecification::builder().launch_template_id(template).build())
        .tags(tag("kubernetes.io/cluster/mig", "owned"))
        .tags(tag("k8s.io/cluster-autoscaler/node-template/label/team", "batch"))
        .tags(tag("k8s.io/cluster-autoscaler/node-template/taint/dedicated", "batch:NoSchedule"))
        .send()
        .await
        .expect("create the Auto Scaling group");
    let (_, ids) = batch_group(&env).await;
    assert_eq!(ids.len(), 2, "the emulator launched its instances");
    let api = &env.cluster.api;
    for name in ["system-a", "system-b"] {
        api.edit(&path_of("v1", "Node", None, name), |n| {
            n["metadata"]["labels"]["eks.amazonaws.com/nodegroup"] = json!("system")
        });
    }
    for (i, id) in ids.iter().enumerate() {
        let name = format!("batch-{}", i + 1);
        api.insert(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"team": "batch", "kubernetes.io/hostname": name}},
            "spec": {"providerID": format!("aws:///us-west-2a/{id}"),
                     "taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        api.insert(pod(
            &format!("batch-{i}"),
            "batch",
            &name,
            json!({"nodeSelector": {"team": "batch"},
                   "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]}),
        ));
    }
    api.insert(
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "batch", "namespace": "apps"}}),
    );
    api.insert(pdb("batch", "batch"));
    api.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cluster-autoscaler", "namespace": "kube-system"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "cluster-autoscaler", "image": "registry.k8s.io/autoscaling/cluster-autoscaler:v1.33.0"}]}}},
        "status": {"availableReplicas": 1}}));
    env
}

/// What the Auto Scaling rollback must restore exactly: the group's scaling and tags, Cluster
/// Autoscaler, the nodes' cordon and annotations, no inferred NodePools.
async fn asg_state(env: &Env) -> Value {
    let api = &env.cluster.api;
    let ca = api.object(CA).unwrap();
    let nodes: BTreeMap<String, Value> = api
        .objects_under("/api/v1/nodes/")
        .into_iter()
        .filter(|(k, _)| !k.contains("karpenter-"))
        .map(|(k, n)| (k, json!([n["spec"].get("unschedulable"), n["metadata"].get("annotations")])))
        .collect();
    let pools: Vec<String> =
        api.objects_under("/apis/karpenter.sh/v1/nodepools/").into_iter().map(|(k, _)| k).collect();
    json!({"asg": batch_group(env).await.0, "ca": [ca["spec"]["replicas"], ca["metadata"].get("annotations")],
           "nodes": nodes, "pools": pools})
}

#[tokio::test]
async fn a_self_managed_auto_scaling_group_is_planned_migrated_checked_and_rolled_back_exactly() {
    let env = asg_scenario().await;
    let start = asg_state(&env).await;

    // The plan: the group's NodePool from its node-template tags and launch template.
    env.recorder.clear();
    let plan = migrate(&env, &["--dry-run"]).await.expect("dry run");
    assert!(env.recorder.writes().is_empty(), "{:?}", env.recorder.writes());
    let doc = plan.to_json();
    assert_eq!(doc["controller_nodegroup"], "system");
    let pool = &resources(&doc, "NodePool")["mig-batch"]["template"];
    assert_eq!(pool["metadata"]["labels"], json!({"team": "batch"}));
    assert_eq!(pool["spec"]["taints"], json!([{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]));
    assert_eq!(pool["spec"]["requirements"][0]["values"], json!(["c5.large"]));
    assert_eq!(pool["spec"]["requirements"][1]["values"], json!(["on-demand"]));
    let class = &resources(&doc, "EC2NodeClass")["mig-batch"];
    assert_eq!(class["amiSelectorTerms"], json!([{"id": "ami-12c6146b"}]));
    assert_eq!(class["amiFamily"], "AL2", "its user data calls bootstrap.sh");
    let subnets: Vec<String> = describe_batch(&env)
        .await
        .vpc_zone_identifier()
        .unwrap()
        .split(',')
        .map(|s| json!({"id": s}).to_string())
        .collect();
    let got: Vec<String> = class["subnetSelectorTerms"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
    assert_eq!(got, subnets);
    assert!(plan.text.contains("todo  drain   asg/mig-batch"), "{}", plan.text);
    assert!(plan.text.contains("cordon and drain batch-1, batch-2"), "{}", plan.text);

    // Apply: recorded on the group, scaled to 0, its pods on Karpenter's nodes.
    let done = migrate(&env, &[]).await.expect("apply");
    assert!(step_done(&done).iter().all(|(_, d)| *d), "{:?}", step_done(&done));
    let (after, _) = batch_group(&env).await;
    assert_eq!(after["scaling"], json!([0, 3, 0]));
    assert_eq!(after["tags"]["karpctl.io/migrate-original-scaling"], "min=1,max=3,desired=2");
    assert_eq!(after["tags"]["karpctl.io/migrate-floor"], "min=0,max=3,desired=0");
    let moved = placement(&env);
    assert!(moved["batch"].iter().all(|n| n.starts_with("karpenter-mig-batch-")), "{moved:?}");
    let checks = migration_checks(&env).await;
    assert_eq!(checks.get("migrate.asg.mig-batch").map(|c| c.0.as_str()), Some("pass"), "{checks:?}");

    // A re-run writes nothing to AWS.
    env.recorder.clear();
    migrate(&env, &[]).await.expect("re-run");
    assert!(env.recorder.writes().is_empty(), "{:?}", env.recorder.writes());

    // Rollback: the exact starting state.
    let back = migrate(&env, &["--rollback"]).await.expect("rollback");
    assert!(back.text.contains("restore asg/mig-batch"), "{}", back.text);
    assert_eq!(asg_state(&env).await, start);
    assert!(placement(&env)["batch"].iter().all(|n| n.starts_with("batch-")), "{:?}", placement(&env));
}
