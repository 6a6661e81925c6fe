//! `karpctl teardown` against the strict stand-in (finalizers, CRD deletion, a simulated
//! Karpenter that only finishes deletions while it runs; see tests/support/apiserver.rs):
//! with the default NodePool, with a NodePool karpctl did not make (refused, then
//! `--all-nodepools`), with the controller already gone, and with CRDs helm does not own.
//! Each ends with no Karpenter CRD, object or node left.

use crate::support;

use std::time::Duration;

use karpctl::ErrorKind;
use serde_json::{json, Value};
use support::apiserver::path_of;
use support::Env;

const C: &str = "demo";
/// Short waits, so a run that would hang fails quickly instead.
const WAIT: &str = "5s";

async fn installed() -> Env {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    env.run(&["init", "-c", C, "--yes"]).await.expect("init");
    // Karpenter takes a moment to terminate an instance and remove its finalizer.
    env.cluster.api.controller_delay(Duration::from_millis(700));
    env
}

/// A NodeClaim of `pool` with its Node, both with Karpenter's finalizer, the way a running
/// Karpenter makes them (the NodeClaim owned by its NodePool).
fn node_of(env: &Env, pool: &str, name: &str) {
    env.cluster.api.insert(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": pool},
                     "finalizers": ["karpenter.sh/termination"],
                     "ownerReferences": [{"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "name": pool, "uid": "x"}]},
        "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}},
        "status": {"nodeName": format!("ip-{name}")},
    }));
    env.cluster.api.insert(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("ip-{name}"), "labels": {"karpenter.sh/nodepool": pool},
                     "finalizers": ["karpenter.sh/termination"]},
    }));
}

fn user_pool(env: &Env, name: &str) {
    env.cluster.api.insert(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": name, "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
        "spec": {"template": {"spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}}},
    }));
}

/// Nothing of Karpenter's is left in the cluster: no CRD, no object, no Node it made.
fn assert_nothing_left(env: &Env) {
    let api = &env.cluster.api;
    let crds: Vec<String> = api
        .objects_under("/apis/apiextensions.k8s.io/")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.contains("karpenter"))
        .collect();
    assert_eq!(crds, Vec::<String>::new(), "CRDs left");
    let mut objects: Vec<String> = api.objects_under("/apis/karpenter.sh/").into_iter().map(|(k, _)| k).collect();
    objects.extend(api.objects_under("/apis/karpenter.k8s.aws/").into_iter().map(|(k, _)| k));
    assert_eq!(objects, Vec::<String>::new(), "Karpenter objects left");
    let nodes: Vec<String> = api
        .objects_under("/api/v1/nodes/")
        .into_iter()
        .filter(|(_, n)| n.pointer("/metadata/labels/karpenter.sh~1nodepool").is_some())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(nodes, Vec::<String>::new(), "Karpenter nodes left");
    assert_eq!(env.cluster.releases(), json!({}), "helm releases left");
}

async fn teardown(env: &Env, extra: &[&str]) -> karpctl::Result<karpctl::Report> {
    let mut args = vec!["teardown", "-c", C, "--yes"];
    if !extra.contains(&"--wait-timeout") {
        args.extend_from_slice(&["--wait-timeout", WAIT]);
    }
    args.extend_from_slice(extra);
    env.run(&args).await
}

#[tokio::test]
async fn teardown_with_the_default_nodepool_waits_for_karpenter_before_removing_it() {
    let env = installed().await;
    node_of(&env, "default", "default-a");
    let report = teardown(&env, &[]).await.expect("teardown");
    assert_nothing_left(&env);
    // The controller went only after its NodeClaims and EC2NodeClasses were gone.
    let changes = support::install::changes(&report);
    assert!(changes.contains(&("helm-release/kube-system/karpenter".into(), "delete".into())), "{changes:?}");
}

#[tokio::test]
async fn teardown_refuses_nodepools_karpctl_did_not_make_then_removes_them_with_all_nodepools() {
    let env = installed().await;
    user_pool(&env, "gpu");
    node_of(&env, "gpu", "gpu-a");
    node_of(&env, "gpu", "gpu-b");
    let err = teardown(&env, &[]).await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(err.message.contains("gpu (2 nodes)"), "{err}");
    assert!(err.hint.as_deref().unwrap_or("").contains("--all-nodepools"), "{err:?}");
    // Nothing was touched.
    assert!(env.cluster.api.object(&path_of("karpenter.sh/v1", "NodePool", None, "gpu")).is_some());
    assert!(env.cluster.api.object(&path_of("karpenter.sh/v1", "NodePool", None, "default")).is_some());
    assert!(env.cluster.releases().get("kube-system/karpenter").is_some());
    teardown(&env, &["--all-nodepools"]).await.expect("teardown --all-nodepools");
    assert_nothing_left(&env);
}

#[tokio::test]
async fn teardown_with_the_controller_already_gone_terminates_instances_and_removes_finalizers() {
    let env = installed().await;
    node_of(&env, "default", "default-a");
    let instance = launch_karpenter_instance(&env).await;
    // Someone uninstalled the controller by hand: nothing will finish the deletions.
    let deployment = path_of("apps/v1", "Deployment", Some("kube-system"), "karpenter");
    env.cluster.api.edit(&deployment, |d| d["status"]["availableReplicas"] = json!(0));
    let report = teardown(&env, &[]).await.expect("teardown");
    assert_nothing_left(&env);
    assert_eq!(instance_state(&env, &instance).await, "terminated");
    assert!(report.text.contains("controller"), "{}", report.text);
}

#[tokio::test]
async fn teardown_without_the_controller_finishing_times_out_and_force_goes_on() {
    let env = installed().await;
    node_of(&env, "default", "default-a");
    // A controller that never gets there (stuck on AWS, say).
    env.cluster.api.controller_delay(Duration::from_secs(3600));
    let err = teardown(&env, &["--wait-timeout", "1s"]).await.expect_err("times out");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(err.hint.as_deref().unwrap_or("").contains("--force"), "{err:?}");
    // The controller was kept, so a rerun can still finish cleanly.
    assert!(env.cluster.releases().get("kube-system/karpenter").is_some());
    teardown(&env, &["--wait-timeout", "1s", "--force"]).await.expect("teardown --force");
    assert_nothing_left(&env);
}

#[tokio::test]
async fn unowned_crds_stop_init_until_adopted_and_teardown_then_removes_them() {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    // CRDs from an older install's crds/ directory (or kubectl): no helm ownership metadata.
    for (group, kind, plural) in
        [("karpenter.sh", "NodePool", "nodepools"), ("karpenter.k8s.aws", "EC2NodeClass", "ec2nodeclasses")]
    {
        env.cluster.api.insert(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}")},
            "spec": {"group": group, "scope": "Cluster", "names": {"kind": kind, "plural": plural},
                     "versions": [{"name": "v1", "served": true, "storage": true}]},
        }));
    }
    let err = env.run(&["init", "-c", C, "--yes"]).await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Foreign, "{err}");
    assert!(err.message.contains("nodepools.karpenter.sh") && err.message.contains("karpenter-crd"), "{err}");
    assert!(err.hint.as_deref().unwrap_or("").contains("--adopt"), "{err:?}");
    assert_eq!(env.cluster.helm_writes(), Vec::<String>::new(), "nothing installed");
    env.run(&["init", "-c", C, "--yes", "--adopt"]).await.expect("init --adopt");
    let crd = env
        .cluster
        .api
        .object("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nodepools.karpenter.sh")
        .expect("crd");
    assert_eq!(crd["metadata"]["annotations"]["meta.helm.sh/release-name"], "karpenter-crd", "{crd}");
    assert_eq!(crd["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm", "{crd}");
    teardown(&env, &[]).await.expect("teardown");
    assert_nothing_left(&env);
}

async fn launch_karpenter_instance(env: &Env) -> String {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let out = env
        .aws
        .ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("karpenter.sh/nodepool").value("default").build())
                .tags(Tag::builder().key(format!("kubernetes.io/cluster/{C}")).value("owned").build())
                .build(),
        )
        .send()
        .await
        .expect("run instance");
    out.instances()[0].instance_id().unwrap().to_string()
}

async fn instance_state(env: &Env, id: &str) -> String {
    let out = env.aws.ec2.describe_instances().instance_ids(id).send().await.expect("describe");
    let state: Option<Value> =
        out.reservations()[0].instances()[0].state().and_then(|s| s.name()).map(|n| json!(n.as_str()));
    state.and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}
