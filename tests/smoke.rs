//! `doctor --smoke` against the emulator and the stand-in cluster: the objects it creates, the
//! wait on a new NodeClaim's conditions and the pods, the report, and the clean-up on success,
//! failure and timeout.

use crate::support;

use serde_json::{json, Value};
use support::apiserver::path_of;
use support::Env;

const C: &str = "smk";

async fn installed() -> Env {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API")).await;
    env.run(&["init", "-c", C, "--yes"]).await.expect("init");
    env
}

fn deployment_path() -> String {
    path_of("apps/v1", "Deployment", Some("karpctl-smoke"), "inflate")
}

fn smoke_check(report: &karpctl::Report) -> Value {
    report.to_json()["checks"].as_array().unwrap().iter().find(|c| c["id"] == "smoke").cloned().expect("a smoke check")
}

/// Play Karpenter and the kubelet: once the smoke Deployment exists, a NodeClaim becomes ready
/// and the pods run.
async fn karpenter_answers(env: &Env, replicas: usize) {
    let api = &env.cluster.api;
    for _ in 0..400 {
        if api.object(&deployment_path()).is_some() {
            api.insert(json!({
                "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
                "metadata": {"name": "default-abcde", "labels": {"node.kubernetes.io/instance-type": "m5.large",
                             "karpenter.sh/nodepool": "default"}},
                "status": {"conditions": [
                    {"type": "Launched", "status": "True"}, {"type": "Registered", "status": "True"},
                    {"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}]}
            }));
            for i in 0..replicas {
                api.insert(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("inflate-{i}"), "namespace": "karpctl-smoke", "labels": {"app": "karpctl-smoke"}},
                    "status": {"phase": "Running"}
                }));
            }
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the smoke Deployment never appeared");
}

#[tokio::test]
async fn smoke_runs_pods_on_a_new_node_reports_it_and_cleans_up() {
    let env = installed().await;
    // A NodeClaim that was there before is not the smoke test's node.
    env.cluster.api.insert(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": "old"},
        "status": {"conditions": [{"type": "Launched", "status": "True"}, {"type": "Registered", "status": "True"},
                                  {"type": "Initialized", "status": "True"}]}
    }));
    env.cluster.api.clear_requests();
    let (report, ()) = tokio::join!(
        env.run(&["doctor", "-c", C, "--smoke", "--replicas", "3", "--smoke-timeout", "10"]),
        karpenter_answers(&env, 3)
    );
    let report = report.unwrap();
    let smoke = smoke_check(&report);
    assert_eq!(smoke["status"], "pass", "{}", report.text);
    let msg = smoke["message"].as_str().unwrap();
    assert!(msg.starts_with("3 pods ran on a new m5.large node (default-abcde)"), "{msg}");
    assert_eq!(report.exit_code, 0);
    // What it created: the namespace and a Deployment of pause pods asking 1 CPU each.
    let writes = env.cluster.api.writes();
    let applied: Vec<Value> = writes.iter().filter(|r| r.method == "PATCH").map(|r| r.json()).collect();
    assert_eq!(applied[0]["kind"], "Namespace");
    assert_eq!(applied[1]["spec"]["replicas"], 3);
    let container = &applied[1]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "public.ecr.aws/eks-distro/kubernetes/pause:3.2");
    assert_eq!(container["resources"]["requests"]["cpu"], "1");
    // And it removed them.
    assert!(writes.iter().any(|r| r.method == "DELETE" && r.path == "/api/v1/namespaces/karpctl-smoke"));
    assert!(env.cluster.api.object("/api/v1/namespaces/karpctl-smoke").is_none());
}

#[tokio::test]
async fn smoke_without_a_node_fails_on_timeout_and_still_cleans_up() {
    let env = installed().await;
    env.cluster.api.clear_requests();
    let report = env.run(&["doctor", "-c", C, "--smoke", "--smoke-timeout", "1"]).await.unwrap();
    let smoke = smoke_check(&report);
    assert_eq!(smoke["status"], "fail", "{}", report.text);
    assert_eq!(smoke["message"], "no node was launched and initialized within 1s");
    assert!(smoke["hint"].as_str().unwrap().contains("nodeclaims"));
    assert_eq!(report.exit_code, 3);
    assert!(env.cluster.api.object("/api/v1/namespaces/karpctl-smoke").is_none());
    assert!(env
        .cluster
        .api
        .writes()
        .iter()
        .any(|r| r.method == "DELETE" && r.path == "/api/v1/namespaces/karpctl-smoke"));
}

#[tokio::test]
async fn smoke_waits_for_consolidation_when_asked() {
    let env = installed().await;
    let api = &env.cluster.api;
    let remove_after_cleanup = async {
        // Once the namespace is gone (the clean-up), consolidation removes the node.
        for _ in 0..400 {
            if api.object(&deployment_path()).is_some() && api.object("/api/v1/namespaces/karpctl-smoke").is_none() {
                api.edit("/apis/karpenter.sh/v1/nodeclaims/default-abcde", |_| {});
                api.later("/apis/karpenter.sh/v1/nodeclaims/default-abcde", 0, support::apiserver::Later::Remove);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    };
    let (report, (), ()) = tokio::join!(
        env.run(&["doctor", "-c", C, "--smoke", "--replicas", "1", "--smoke-timeout", "10", "--smoke-wait-scale-down"]),
        karpenter_answers(&env, 1),
        remove_after_cleanup
    );
    let report = report.unwrap();
    let smoke = smoke_check(&report);
    assert_eq!(smoke["status"], "pass", "{}", report.text);
    assert!(smoke["message"].as_str().unwrap().contains("consolidation removed it"), "{}", smoke["message"]);
}

#[tokio::test]
async fn smoke_is_skipped_when_a_check_fails() {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API")).await;
    let report = env.run(&["doctor", "-c", C, "--smoke"]).await.unwrap();
    assert_eq!(smoke_check(&report)["status"], "skip");
    assert!(env.cluster.api.writes().is_empty());
}
