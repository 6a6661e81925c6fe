//! `karpctl doctor` and `karpctl teardown` end to end with the cluster side (the emulator for
//! AWS, the in-test API server and fake helm for the cluster): doctor's cluster checks and that
//! it never writes anywhere; teardown's order (NodePools, their NodeClaims, the EC2NodeClass,
//! the releases, then AWS), --keep-crds, --all-nodepools, and an unreachable cluster API.

use crate::support;

use karpctl::Report;
use serde_json::{json, Value};
use support::apiserver::{path_of, Later};
use support::Env;

const C: &str = "demo";

async fn installed() -> Env {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    env.run(&["init", "-c", C, "--yes"]).await.expect("init");
    env
}

fn node_class_path() -> String {
    path_of("karpenter.k8s.aws/v1", "EC2NodeClass", None, "default")
}

fn node_pool_path(name: &str) -> String {
    path_of("karpenter.sh/v1", "NodePool", None, name)
}

fn deployment_path() -> String {
    path_of("apps/v1", "Deployment", Some("kube-system"), "karpenter")
}

fn api_writes(env: &Env) -> Vec<String> {
    env.cluster
        .api
        .writes()
        .into_iter()
        .filter(|r| !r.path.ends_with("/selfsubjectaccessreviews"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// A kubeconfig pointing at a port nothing listens on.
fn dead_kubeconfig(env: &Env) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = env.cluster.dir.path().join("dead-kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             users:\n- name: u\n  user:\n    token: test-token\ncontexts:\n- name: test\n  context:\n    cluster: c\n    user: u\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Doctor with the cluster side; checks that it wrote nothing anywhere.
async fn doctor(env: &Env, extra: &[&str]) -> Report {
    env.recorder.clear();
    env.cluster.api.clear_requests();
    let helm_before = env.cluster.helm_writes();
    let mut args = vec!["doctor", "-c", C];
    args.extend_from_slice(extra);
    let report = env.run(&args).await.expect("doctor runs");
    assert_eq!(env.recorder.writes(), Vec::new(), "doctor wrote to AWS");
    assert_eq!(api_writes(env), Vec::<String>::new(), "doctor wrote to the cluster");
    assert_eq!(env.cluster.helm_writes(), helm_before, "doctor ran a helm write");
    report
}

fn statuses(report: &Report) -> Vec<(String, String, String)> {
    report.to_json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn status_of(report: &Report, id: &str) -> (String, String) {
    statuses(report)
        .into_iter()
        .find(|(i, _, _)| i == id)
        .map(|(_, s, m)| (s, m))
        .unwrap_or_else(|| panic!("no check {id}:\n{}", report.text))
}

fn failing(report: &Report) -> Vec<(String, String)> {
    statuses(report).into_iter().filter(|(_, s, _)| s == "fail").map(|(i, _, m)| (i, m)).collect()
}

const CLUSTER_CHECKS: &[&str] = &[
    "cluster.api",
    "karpenter.controller",
    "ec2nodeclass.ready",
    "nodepool.ready",
    "karpenter.interruption-queue",
    "helm-release/kube-system/karpenter-crd",
    "helm-release/kube-system/karpenter",
    "ec2nodeclass/default",
    "nodepool/default",
];

#[tokio::test]
async fn doctor_passes_a_healthy_install_including_the_cluster_side() {
    let env = installed().await;
    let report = doctor(&env, &[]).await;
    assert_eq!(failing(&report), vec![], "{}", report.text);
    assert_eq!(report.exit_code, 0);
    assert_eq!(report.to_json()["ok"], true);
    for id in CLUSTER_CHECKS {
        assert_eq!(status_of(&report, id).0, "pass", "{id}:\n{}", report.text);
    }
    assert_eq!(status_of(&report, "karpenter.interruption-queue").1, "the controller reads queue demo");
    // Access entries are used on this cluster: the aws-auth mapping is not part of it.
    let arn = format!("aws-auth/arn:aws:iam::{}:role/KarpenterNodeRole-{C}", env.account);
    assert_eq!(status_of(&report, &arn).0, "skip");
}

#[tokio::test]
async fn doctor_fails_exactly_the_node_class_check_with_the_failing_condition() {
    let env = installed().await;
    env.cluster.api.set_status(
        &node_class_path(),
        json!({"conditions": [
            {"type": "Ready", "status": "False", "reason": "NotReady", "message": "SubnetsReady=False"},
            {"type": "SubnetsReady", "status": "False", "reason": "SubnetsNotFound",
             "message": "SubnetSelector did not match any Subnets"},
        ]}),
    );
    let report = doctor(&env, &[]).await;
    let f = failing(&report);
    assert_eq!(f.len(), 1, "{f:#?}\n{}", report.text);
    assert_eq!(f[0].0, "ec2nodeclass.ready");
    assert!(f[0].1.contains("SubnetSelector did not match any Subnets"), "{}", f[0].1);
    assert_eq!(report.exit_code, 3);
}

#[tokio::test]
async fn doctor_fails_the_controller_check_when_the_deployment_is_unavailable() {
    let env = installed().await;
    env.cluster.api.edit(&deployment_path(), |d| {
        d["status"] = json!({"observedGeneration": d["metadata"]["generation"], "availableReplicas": 0,
               "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                               "message": "Deployment does not have minimum availability."}]});
    });
    let report = doctor(&env, &[]).await;
    let f = failing(&report);
    assert_eq!(f.len(), 1, "{f:#?}\n{}", report.text);
    assert_eq!(f[0].0, "karpenter.controller");
    assert!(f[0].1.contains("0/2 replicas available"), "{}", f[0].1);
    assert_eq!(report.exit_code, 3);
}

#[tokio::test]
async fn doctor_fails_a_release_with_the_wrong_interruption_queue() {
    let env = installed().await;
    // The release was upgraded by hand with another queue.
    let file = env.cluster.dir.path().join("log/releases.json");
    let mut releases: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    releases["kube-system/karpenter"]["values"]["settings"]["interruptionQueue"] = json!("other-queue");
    std::fs::write(&file, releases.to_string()).unwrap();
    let report = doctor(&env, &[]).await;
    let mut f = failing(&report);
    f.sort();
    let ids: Vec<&str> = f.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(ids, ["helm-release/kube-system/karpenter", "karpenter.interruption-queue"], "{}", report.text);
    assert_eq!(f[0].1, "values differ");
    assert!(f[1].1.contains("\"other-queue\", not \"demo\""), "{}", f[1].1);
    assert_eq!(report.exit_code, 3);
}

#[tokio::test]
async fn doctor_with_the_cluster_api_unreachable_fails_cluster_api_and_skips_the_cluster_side() {
    let env = installed().await;
    let dead = dead_kubeconfig(&env);
    let helm = env.cluster.helm.display().to_string();
    let report = doctor(&env, &["--kubeconfig", &dead, "--helm", &helm]).await;
    let f = failing(&report);
    assert_eq!(f.len(), 1, "{f:#?}\n{}", report.text);
    assert_eq!(f[0].0, "cluster.api");
    let check =
        report.to_json()["checks"].as_array().unwrap().iter().find(|c| c["id"] == "cluster.api").cloned().unwrap();
    assert!(!check["hint"].as_str().unwrap_or_default().is_empty(), "{check}");
    for id in &CLUSTER_CHECKS[1..] {
        assert_eq!(status_of(&report, id).0, "skip", "{id}:\n{}", report.text);
    }
    assert_eq!(report.exit_code, 3);
    // The AWS side is still checked.
    assert_eq!(status_of(&report, &format!("iam-role/KarpenterNodeRole-{C}")).0, "pass");
}

fn actions(report: &Report) -> Vec<(String, String)> {
    support::install::changes(report)
}

fn position(ch: &[(String, String)], id: &str) -> usize {
    ch.iter().position(|(r, _)| r == id).unwrap_or_else(|| panic!("{id} not in {ch:?}"))
}

#[tokio::test]
async fn teardown_removes_nodepools_then_waits_for_nodeclaims_then_the_class_the_releases_and_aws() {
    let env = installed().await;
    // A NodeClaim of the default NodePool, gone once Karpenter has drained it (the second look).
    let claim = env.cluster.api.insert(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": "default-abcde", "labels": {"karpenter.sh/nodepool": "default"}},
    }));
    env.cluster.api.later(&claim, 1, Later::Remove);
    env.cluster.api.clear_requests();
    let helm_before = env.cluster.helm_writes().len();
    let report = env.run(&["teardown", "-c", C, "--yes"]).await.unwrap();
    let ch = actions(&report);
    // The report lists the removal order.
    let order = [
        "nodepool/default",
        "ec2nodeclass/default",
        "helm-release/kube-system/karpenter",
        "helm-release/kube-system/karpenter-crd",
        &format!("iam-role/KarpenterControllerRole-{C}"),
    ];
    for id in &order {
        assert!(ch.contains(&(id.to_string(), "delete".into())), "{id}: {ch:?}");
    }
    for w in order.windows(2) {
        assert!(position(&ch, w[0]) < position(&ch, w[1]), "{} before {}: {ch:?}", w[0], w[1]);
    }
    // The API: the NodePool delete, the NodeClaim wait (until none is left), the class delete.
    let reqs = env.cluster.api.requests();
    let idx = |pred: &dyn Fn(&support::apiserver::Request) -> bool| reqs.iter().position(pred);
    let np_delete = idx(&|r| r.method == "DELETE" && r.path == node_pool_path("default")).expect("nodepool deleted");
    let nc_delete = idx(&|r| r.method == "DELETE" && r.path == node_class_path()).expect("ec2nodeclass deleted");
    let claim_lists: Vec<usize> = reqs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.method == "GET" && r.path == "/apis/karpenter.sh/v1/nodeclaims")
        .map(|(i, _)| i)
        .collect();
    assert!(claim_lists.len() >= 2, "waited for the NodeClaim: {claim_lists:?}");
    assert!(claim_lists.iter().all(|&i| np_delete < i && i < nc_delete), "{np_delete} {claim_lists:?} {nc_delete}");
    // Every NodePool is gone, so every NodeClaim must go.
    assert_eq!(reqs.iter().find(|r| r.path.ends_with("/nodeclaims")).unwrap().param("labelSelector"), None);
    assert!(env.cluster.api.object(&node_pool_path("default")).is_none());
    assert!(env.cluster.api.object(&node_class_path()).is_none());
    // helm: the controller, then the CRDs.
    let uninstalls: Vec<String> = env.cluster.helm_writes().split_off(helm_before);
    assert_eq!(
        uninstalls,
        [
            "helm uninstall karpenter --namespace kube-system --wait --timeout 10m",
            "helm uninstall karpenter-crd --namespace kube-system --wait --timeout 10m",
        ]
    );
    assert_eq!(env.cluster.releases(), json!({}));
    // The AWS side is gone.
    assert!(env.aws.iam.get_role().role_name(format!("KarpenterNodeRole-{C}")).send().await.is_err());
}

#[tokio::test]
async fn teardown_keep_crds_keeps_the_crd_release() {
    let env = installed().await;
    let report = env.run(&["teardown", "-c", C, "--yes", "--keep-crds"]).await.unwrap();
    let ch = actions(&report);
    assert!(ch.contains(&("helm-release/kube-system/karpenter-crd".into(), "skip".into())), "{ch:?}");
    assert_eq!(support::install::detail(&report, "helm-release/kube-system/karpenter-crd"), "--keep-crds");
    assert!(ch.contains(&("helm-release/kube-system/karpenter".into(), "delete".into())), "{ch:?}");
    let releases = env.cluster.releases();
    assert!(releases.get("kube-system/karpenter-crd").is_some(), "{releases}");
    assert!(releases.get("kube-system/karpenter").is_none(), "{releases}");
    assert!(!env.cluster.helm_writes().iter().any(|w| w.starts_with("helm uninstall karpenter-crd")));
}

#[tokio::test]
async fn teardown_all_nodepools_deletes_nodepools_karpctl_did_not_make() {
    let env = installed().await;
    env.cluster.api.insert(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": "gpu", "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
        "spec": {"template": {"spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}}},
    }));
    // Without --all-nodepools it is not karpctl's to remove, and removing the CRDs would take it.
    let refused = env.run(&["teardown", "-c", C, "--dry-run"]).await.unwrap_err();
    assert_eq!(refused.kind, karpctl::ErrorKind::Refused, "{refused}");
    assert!(refused.message.contains("gpu (0 nodes)"), "{refused}");
    let report = env.run(&["teardown", "-c", C, "--yes", "--all-nodepools"]).await.unwrap();
    let ch = actions(&report);
    assert!(ch.contains(&("nodepool/gpu".into(), "delete".into())), "{ch:?}");
    assert!(position(&ch, "nodepool/gpu") < position(&ch, "ec2nodeclass/default"), "{ch:?}");
    assert!(env.cluster.api.object(&node_pool_path("gpu")).is_none());
    assert!(env.cluster.api.object(&node_pool_path("default")).is_none());
    // Waiting for every NodeClaim, not only the default pool's.
    let lists: Vec<_> = env.cluster.api.requests().into_iter().filter(|r| r.path.ends_with("/nodeclaims")).collect();
    assert!(!lists.is_empty());
    assert!(lists.iter().all(|r| r.param("labelSelector").is_none()), "{lists:?}");
}

#[tokio::test]
async fn teardown_with_the_cluster_api_unreachable_skips_the_cluster_side_and_still_removes_aws() {
    let env = installed().await;
    let dead = dead_kubeconfig(&env);
    let helm = env.cluster.helm.display().to_string();
    let helm_before = env.cluster.helm_writes();
    let report = env.run(&["teardown", "-c", C, "--yes", "--kubeconfig", &dead, "--helm", &helm]).await.unwrap();
    let ch = actions(&report);
    for id in [
        "nodepool/default",
        "ec2nodeclass/default",
        "helm-release/kube-system/karpenter",
        "helm-release/kube-system/karpenter-crd",
    ] {
        assert!(ch.contains(&(id.to_string(), "skip".into())), "{id}: {ch:?}");
        assert_eq!(support::install::detail(&report, id), "the cluster API is unreachable");
    }
    assert!(ch.contains(&(format!("iam-role/KarpenterNodeRole-{C}"), "delete".into())), "{ch:?}");
    assert!(env.aws.iam.get_role().role_name(format!("KarpenterNodeRole-{C}")).send().await.is_err());
    assert!(env.aws.iam.get_role().role_name(format!("KarpenterControllerRole-{C}")).send().await.is_err());
    // Nothing on the cluster side was touched.
    assert_eq!(env.cluster.helm_writes(), helm_before);
    assert!(env.cluster.api.object(&node_pool_path("default")).is_some());
    assert!(env.cluster.releases().get("kube-system/karpenter").is_some());
}
