//! `karpctl init` end to end with the cluster side: the emulator for AWS, the in-test API server
//! and fake helm (tests/support/cluster.rs) for the cluster. What helm runs (order, flags,
//! values file), what is server-side applied, that a second run writes nothing anywhere, what a
//! changed version or value upgrades, the wait's failing condition, the aws-auth merge on
//! CONFIG_MAP clusters, the RBAC preflight, and a foreign release.

use crate::support;

use karpctl::render::yaml_to_json;
use karpctl::ErrorKind;
use serde_json::{json, Value};
use support::apiserver::{path_of, Later};
use support::install::{changes, detail, pending, render, target};
use support::{Env, SeededCluster};

const INIT: &[&str] = &["init", "-c", "demo", "--yes"];
const CRD_RELEASE: &str = "helm-release/kube-system/karpenter-crd";
const CONTROLLER_RELEASE: &str = "helm-release/kube-system/karpenter";

async fn demo() -> (Env, SeededCluster) {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    (env, seeded)
}

fn node_class_path() -> String {
    path_of("karpenter.k8s.aws/v1", "EC2NodeClass", None, "default")
}

fn node_pool_path() -> String {
    path_of("karpenter.sh/v1", "NodePool", None, "default")
}

fn aws_auth_path() -> String {
    path_of("v1", "ConfigMap", Some("kube-system"), "aws-auth")
}

/// The API requests karpctl makes that change something, other than the preflight's access
/// reviews (helm's own writes, the charts' objects, are helm's).
fn api_writes(env: &Env) -> Vec<support::apiserver::Request> {
    env.cluster.api.karpctl_writes().into_iter().filter(|r| !r.path.ends_with("/selfsubjectaccessreviews")).collect()
}

/// The argv of every helm run that changes something (upgrade, uninstall), as word lists.
fn helm_write_argv(env: &Env) -> Vec<Vec<String>> {
    env.cluster
        .helm_calls()
        .into_iter()
        .map(|c| c["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .filter(|a| matches!(a.get(1).map(String::as_str), Some("upgrade") | Some("uninstall")))
        .collect()
}

fn upgrade_argv(chart: &str, version: &str, values: &str) -> Vec<String> {
    [
        "helm",
        "upgrade",
        "--install",
        chart,
        &format!("oci://public.ecr.aws/karpenter/{chart}"),
        "--version",
        version,
        "--namespace",
        "kube-system",
        "--create-namespace",
        "--wait",
        "--timeout",
        "10m",
        "-f",
        values,
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test]
async fn fresh_init_installs_crds_then_controller_applies_the_manifests_and_a_rerun_writes_nothing() {
    let (env, _) = demo().await;
    let (_, docs) = render(target(&env, "demo").await);
    let report = env.run(INIT).await.unwrap();
    assert_eq!(report.to_json()["cluster_side"]["status"], "ready");
    for id in [CRD_RELEASE, CONTROLLER_RELEASE, "ec2nodeclass/default", "nodepool/default"] {
        assert!(changes(&report).contains(&(id.to_string(), "create".into())), "{id}");
    }

    // helm: exactly the CRD chart, then the controller chart, each with karpctl's values file.
    let calls = env.cluster.helm_calls();
    let upgrades: Vec<&Value> = calls.iter().filter(|c| c["argv"][1] == "upgrade").collect();
    assert_eq!(upgrades.len(), 2, "{calls:#?}");
    assert_eq!(helm_write_argv(&env).len(), 2, "no other helm write: {:?}", helm_write_argv(&env));
    let values_path = |c: &Value| c["values"][0]["path"].as_str().unwrap().to_string();
    for (call, chart) in upgrades.iter().zip(["karpenter-crd", "karpenter"]) {
        let argv: Vec<String> = call["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()).collect();
        assert_eq!(argv, upgrade_argv(chart, "1.14.1", &values_path(call)), "{chart}");
        let values = call["values"].as_array().unwrap();
        assert_eq!(values.len(), 1, "{chart}: {values:?}");
        assert_eq!(values[0]["content"], docs.helm_values_yaml.as_str(), "{chart}");
        assert_eq!(values[0]["mode"].as_u64().unwrap() & 0o077, 0, "{chart}: the values file is private");
        assert!(!std::path::Path::new(&values_path(call)).exists(), "{chart}: the values file is removed afterwards");
        // The credentials travel in the environment (here: the test's kubeconfig), never on argv.
        assert!(argv.iter().all(|a| !a.contains("test-token") && !a.contains("k8s-aws-v1")), "{argv:?}");
        assert_eq!(call["env"]["KUBECONFIG"], env.cluster.kubeconfig.display().to_string(), "{chart}");
        assert!(call["env"].get("HELM_KUBETOKEN").is_none(), "{chart}");
    }
    // The registry logout comes before the first chart pull.
    let logout = calls.iter().position(|c| c["argv"][1] == "registry").expect("registry logout");
    let first_upgrade = calls.iter().position(|c| c["argv"][1] == "upgrade").unwrap();
    assert!(logout < first_upgrade);
    // Both releases carry karpctl's marker.
    let releases = env.cluster.releases();
    for name in ["karpenter-crd", "karpenter"] {
        let r = &releases[format!("kube-system/{name}")];
        assert_eq!(r["values"]["additionalAnnotations"]["karpctl.io/managed-by"], "karpctl", "{name}: {r}");
        assert_eq!(r["chart"], format!("{name}-1.14.1"));
    }

    // The API: server-side apply of the EC2NodeClass, then the NodePool, as karpctl, bodies
    // equal to the rendered manifests.
    let writes = api_writes(&env);
    let seen: Vec<(String, String)> = writes.iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    assert_eq!(seen, [("PATCH".to_string(), node_class_path()), ("PATCH".to_string(), node_pool_path())]);
    for (req, (kind, text)) in
        writes.iter().zip([("EC2NodeClass", &docs.node_class_yaml), ("NodePool", &docs.node_pool_yaml)])
    {
        assert_eq!(req.param("fieldManager"), Some("karpctl"), "{kind}");
        assert!(req.header("content-type").unwrap_or_default().starts_with("application/apply-patch"), "{kind}");
        assert_eq!(req.json(), yaml_to_json(kind, text).unwrap(), "{kind}");
    }

    // A second run: no helm upgrade, no API write, no AWS write.
    env.recorder.clear();
    env.cluster.api.clear_requests();
    let again = env.run(INIT).await.unwrap();
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
    for id in [CRD_RELEASE, CONTROLLER_RELEASE, "ec2nodeclass/default", "nodepool/default"] {
        assert!(changes(&again).contains(&(id.to_string(), "none".into())), "{id}: {:?}", changes(&again));
    }
    assert_eq!(helm_write_argv(&env).len(), 2, "{:?}", helm_write_argv(&env));
    assert_eq!(api_writes(&env).len(), 0, "{:?}", api_writes(&env));
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
    assert!(!env.cluster.api.requests().is_empty(), "the second run looked at the cluster");
}

#[tokio::test]
async fn a_set_value_upgrades_only_the_controller_and_a_new_version_both_releases() {
    let (env, _) = demo().await;
    env.run(INIT).await.unwrap();
    let before = helm_write_argv(&env).len();

    // --set: the controller's values differ; the CRDs stay.
    env.recorder.clear();
    env.cluster.api.clear_requests();
    let report = env.run(&["init", "-c", "demo", "--yes", "--set", "replicas=1"]).await.unwrap();
    assert_eq!(pending(&report), [(CONTROLLER_RELEASE.to_string(), "update".to_string())]);
    assert_eq!(detail(&report, CONTROLLER_RELEASE), "values differ");
    let new: Vec<Vec<String>> = helm_write_argv(&env).split_off(before);
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0][3], "karpenter");
    assert_eq!(new[0][new[0].len() - 2..], ["--set".to_string(), "replicas=1".to_string()]);
    assert_eq!(env.cluster.releases()["kube-system/karpenter"]["values"]["replicas"], 1);
    assert_eq!(env.cluster.releases()["kube-system/karpenter-crd"]["revision"], "1");
    assert_eq!(api_writes(&env).len(), 0);
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
    // The same --set again: nothing.
    let same = env.run(&["init", "-c", "demo", "--yes", "--set", "replicas=1"]).await.unwrap();
    assert_eq!(pending(&same), Vec::<(String, String)>::new());
    assert_eq!(helm_write_argv(&env).len(), before + 1);

    // A new chart version: the CRDs first, then the controller (keeping the --set).
    let before = helm_write_argv(&env).len();
    let report = env
        .run(&["init", "-c", "demo", "--yes", "--set", "replicas=1", "--karpenter-version", "1.14.0"])
        .await
        .unwrap();
    let mut want =
        vec![(CRD_RELEASE.to_string(), "update".to_string()), (CONTROLLER_RELEASE.to_string(), "update".into())];
    want.sort();
    let mut got = pending(&report);
    got.sort();
    assert_eq!(got, want);
    assert_eq!(detail(&report, CRD_RELEASE), "chart 1.14.1, not 1.14.0");
    let new: Vec<Vec<String>> = helm_write_argv(&env).split_off(before);
    let releases: Vec<(&str, &str)> = new.iter().map(|a| (a[3].as_str(), a[6].as_str())).collect();
    assert_eq!(releases, [("karpenter-crd", "1.14.0"), ("karpenter", "1.14.0")]);
    assert_eq!(env.cluster.releases()["kube-system/karpenter"]["chart"], "karpenter-1.14.0");
    assert_eq!(api_writes(&env).len(), 0, "{:?}", api_writes(&env));
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
}

#[tokio::test]
async fn a_failing_node_class_condition_fails_init_on_the_wait_with_its_message() {
    let (env, _) = demo().await;
    // Karpenter's verdict arrives after the apply: the observation reads it once (absent).
    let failing = json!({"conditions": [
        {"type": "Ready", "status": "False", "reason": "NotReady", "message": "SubnetsReady=False"},
        {"type": "SubnetsReady", "status": "False", "reason": "SubnetsNotFound",
         "message": "SubnetSelector did not match any Subnets"},
        {"type": "SecurityGroupsReady", "status": "True", "reason": "SecurityGroupsReady", "message": ""},
    ]});
    env.cluster.api.later(&node_class_path(), 1, Later::Status(failing));
    let started = std::time::Instant::now();
    let err = env.run(&["init", "-c", "demo", "--yes", "--wait-timeout", "2s"]).await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(err.message.contains("EC2NodeClass default is not Ready after"), "{}", err.message);
    let cause = err.cause.clone().unwrap_or_default();
    assert!(cause.contains("SubnetSelector did not match any Subnets"), "{cause}");
    assert!(cause.contains("SubnetsReady"), "{cause}");
    let hint = err.hint.clone().unwrap_or_default();
    assert!(hint.contains("karpenter.sh/discovery"), "{hint}");
    // Everything was applied before the wait: a re-run has nothing to change.
    assert_eq!(api_writes(&env).len(), 2);
}

#[tokio::test]
async fn wait_timeout_rejects_what_is_not_a_duration() {
    use clap::Parser;
    for bad in ["0", "5x", "soon", "-1s"] {
        let r = karpctl::cli::Cli::try_parse_from(["karpctl", "init", "-c", "demo", "--wait-timeout", bad]);
        assert_eq!(r.err().map(|e| e.exit_code()), Some(2), "{bad}");
    }
    for good in ["1500ms", "2s", "5m", "1h", "30"] {
        assert!(karpctl::cli::Cli::try_parse_from(["karpctl", "init", "-c", "demo", "--wait-timeout", good]).is_ok());
    }
}

#[tokio::test]
async fn a_config_map_cluster_gets_the_node_role_merged_into_aws_auth_once() {
    let env = Env::new().await;
    env.seed_cluster("demo", None).await;
    let arn = format!("arn:aws:iam::{}:role/KarpenterNodeRole-demo", env.account);
    env.cluster.api.insert(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "aws-auth", "namespace": "kube-system"},
        "data": {"mapRoles": "- rolearn: arn:aws:iam::111122223333:role/ng\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n",
                 "mapUsers": "[]\n"}
    }));
    let report = env.run(INIT).await.unwrap();
    let id = format!("aws-auth/{arn}");
    assert!(changes(&report).contains(&(id.clone(), "create".into())), "{:?}", changes(&report));
    assert!(changes(&report).contains(&(format!("access-entry/{arn}"), "skip".into())));
    let cm = env.cluster.api.object(&aws_auth_path()).expect("aws-auth");
    let roles: Value = serde_yaml_ng::from_str(cm["data"]["mapRoles"].as_str().unwrap()).unwrap();
    assert_eq!(
        roles,
        json!([
            {"rolearn": "arn:aws:iam::111122223333:role/ng", "username": "system:node:{{EC2PrivateDNSName}}",
             "groups": ["system:bootstrappers", "system:nodes"]},
            {"rolearn": arn, "username": "system:node:{{EC2PrivateDNSName}}",
             "groups": ["system:bootstrappers", "system:nodes"]},
        ])
    );
    assert_eq!(cm["data"]["mapUsers"], "[]\n", "other keys are kept");
    // The preflight asked for the right to update it.
    assert!(env.cluster.api.requests().iter().any(|r| r.path.ends_with("/selfsubjectaccessreviews")
        && r.json()["spec"]["resourceAttributes"]["resource"] == "configmaps"));

    // Idempotent: a second run leaves the ConfigMap alone.
    env.cluster.api.clear_requests();
    env.recorder.clear();
    let again = env.run(INIT).await.unwrap();
    assert!(changes(&again).contains(&(id, "none".into())));
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
    assert_eq!(api_writes(&env).len(), 0, "{:?}", api_writes(&env));
    assert_eq!(env.cluster.api.object(&aws_auth_path()).unwrap()["data"], cm["data"]);
    assert_eq!(env.recorder.writes().len(), 0);
}

#[tokio::test]
async fn a_config_map_cluster_without_aws_auth_gets_one() {
    let env = Env::new().await;
    env.seed_cluster("demo", None).await;
    let arn = format!("arn:aws:iam::{}:role/KarpenterNodeRole-demo", env.account);
    env.run(INIT).await.unwrap();
    let cm = env.cluster.api.object(&aws_auth_path()).expect("aws-auth created");
    let roles: Value = serde_yaml_ng::from_str(cm["data"]["mapRoles"].as_str().unwrap()).unwrap();
    assert_eq!(
        roles,
        json!([{"rolearn": arn, "username": "system:node:{{EC2PrivateDNSName}}",
                "groups": ["system:bootstrappers", "system:nodes"]}])
    );
}

#[tokio::test]
async fn a_denied_permission_fails_init_before_any_write_naming_it() {
    let (env, _) = demo().await;
    env.cluster.api.deny("patch", "karpenter.sh", "nodepools", None);
    let err = env.run(INIT).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::AccessDenied, "{err}");
    assert!(err.message.contains("patch nodepools.karpenter.sh"), "{}", err.message);
    assert!(err.hint.as_deref().unwrap_or_default().contains("kubectl auth can-i patch nodepools.karpenter.sh"));
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
    assert_eq!(helm_write_argv(&env), Vec::<Vec<String>>::new());
    assert_eq!(api_writes(&env).len(), 0);
}

#[tokio::test]
async fn a_release_without_karpctls_marker_blocks_init_unless_adopted() {
    let (env, _) = demo().await;
    // Someone installed the controller chart by hand, without karpctl's values.
    let log = env.cluster.dir.path().join("log");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(
        log.join("releases.json"),
        json!({"kube-system/karpenter": {
            "name": "karpenter", "namespace": "kube-system", "revision": "3", "status": "deployed",
            "chart": "karpenter-1.14.1", "app_version": "1.14.1",
            "values": {"settings": {"clusterName": "demo"}}}})
        .to_string(),
    )
    .unwrap();
    let err = env.run(INIT).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Foreign, "{err}");
    assert!(err.message.contains(CONTROLLER_RELEASE), "{}", err.message);
    assert!(err.hint.as_deref().unwrap_or_default().contains("--adopt"));
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
    assert_eq!(helm_write_argv(&env), Vec::<Vec<String>>::new());
    assert_eq!(api_writes(&env).len(), 0);
    assert_eq!(env.cluster.releases()["kube-system/karpenter"]["revision"], "3");

    // --adopt upgrades it with karpctl's values, which mark it as karpctl's.
    let report = env.run(&["init", "-c", "demo", "--yes", "--adopt"]).await.unwrap();
    assert!(changes(&report).contains(&(CONTROLLER_RELEASE.to_string(), "adopt".into())), "{:?}", changes(&report));
    let r = &env.cluster.releases()["kube-system/karpenter"];
    assert_eq!(r["revision"], "4");
    assert_eq!(r["values"]["additionalAnnotations"]["karpctl.io/managed-by"], "karpctl");
    let again = env.run(INIT).await.unwrap();
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
}
