//! init's cluster preflight before any write (room for the controller's replicas, a Fargate
//! profile instead, EKS Auto Mode, another Karpenter controller) and doctor's checks of what
//! else runs (Cluster Autoscaler, aws-node-termination-handler), a Pending controller, and the
//! CRDs' own versions.

use crate::support;

use karpctl::ErrorKind;
use serde_json::json;
use support::apiserver::path_of;
use support::Env;

const C: &str = "demo";

async fn cluster(nodes: usize) -> Env {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    for name in ["system-a", "system-b"].iter().skip(nodes) {
        env.cluster.api.remove(&path_of("v1", "Node", None, name));
    }
    env
}

fn init_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut a = vec!["init", "-c", C, "--yes"];
    a.extend_from_slice(extra);
    a
}

fn workload(kind: &str, ns: &str, name: &str, image: &str) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": ns},
           "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
}

#[tokio::test]
async fn placement_with_no_eligible_node_stops_init_before_any_write() {
    let env = cluster(0).await;
    env.recorder.clear();
    let err = env.run(&init_args(&[])).await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::ClusterState, "{err}");
    assert!(err.message.contains("2 replicas") && err.message.contains("only 0 node(s)"), "{err}");
    let hint = err.hint.unwrap_or_default();
    assert!(hint.contains("node group") && hint.contains("--set replicas=1") && hint.contains("Fargate"), "{hint}");
    assert_eq!(env.recorder.writes(), Vec::new(), "no AWS write");
    assert_eq!(env.cluster.helm_writes(), Vec::<String>::new());
}

#[tokio::test]
async fn placement_with_one_eligible_node_stops_init_unless_replicas_is_one() {
    let env = cluster(1).await;
    // A Karpenter node does not count: the chart keeps the controller off them.
    env.cluster.api.insert(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "k-1", "labels": {"karpenter.sh/nodepool": "default"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
    let err = env.run(&init_args(&[])).await.expect_err("refused");
    assert!(err.message.contains("only 1 node(s)") && err.message.contains("system-a"), "{err}");
    env.run(&init_args(&["--set", "replicas=1"])).await.expect("one replica fits");
}

#[tokio::test]
async fn placement_with_two_eligible_nodes_passes() {
    let env = cluster(2).await;
    env.run(&init_args(&[])).await.expect("init");
}

#[tokio::test]
async fn placement_with_a_fargate_profile_for_the_namespace_passes() {
    let env = cluster(0).await;
    let role = env
        .aws
        .iam
        .create_role()
        .role_name("fargate-pod-execution")
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .expect("role");
    // Two others first: the one for Karpenter's namespace is on the list's second page.
    for (name, namespace) in [("apps-a", "apps-a"), ("apps-b", "apps-b"), ("karpenter", "kube-system")] {
        env.aws
            .eks
            .create_fargate_profile()
            .cluster_name(C)
            .fargate_profile_name(name)
            .pod_execution_role_arn(role.role().unwrap().arn())
            .selectors(aws_sdk_eks::types::FargateProfileSelector::builder().namespace(namespace).build())
            .send()
            .await
            .expect("fargate profile");
    }
    env.run(&init_args(&[])).await.expect("init on Fargate");
}

#[tokio::test]
async fn init_refuses_eks_auto_mode() {
    let env = Env::new().await;
    env.seed_cluster_with(
        C,
        json!({"accessConfig": {"authenticationMode": "API"},
               "computeConfig": {"enabled": true, "nodePools": ["general-purpose"], "nodeRoleArn": "arn:aws:iam::123456789012:role/n"}}),
    )
    .await;
    let err = env.run(&init_args(&[])).await.expect_err("refused");
    assert!(err.message.contains("Auto Mode"), "{err}");
    assert_eq!(env.cluster.helm_writes(), Vec::<String>::new());
}

#[tokio::test]
async fn init_refuses_a_karpenter_controller_it_did_not_install() {
    let env = cluster(2).await;
    env.cluster.api.insert(workload(
        "Deployment",
        "karpenter",
        "karpenter",
        "public.ecr.aws/karpenter/controller:1.5.0@sha256:x",
    ));
    let err = env.run(&init_args(&[])).await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    assert!(err.message.contains("deployment karpenter/karpenter"), "{err}");
    assert!(err.hint.unwrap_or_default().contains("karpctl migrate"));
    assert_eq!(env.cluster.helm_writes(), Vec::<String>::new());
}

fn check(report: &karpctl::Report, id: &str) -> (String, String, String) {
    let c = report.to_json()["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).cloned();
    let c = c.unwrap_or_else(|| panic!("no check {id}:\n{}", report.text));
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("message"), s("hint"))
}

async fn installed() -> Env {
    let env = cluster(2).await;
    env.run(&init_args(&[])).await.expect("init");
    env
}

#[tokio::test]
async fn doctor_warns_about_cluster_autoscaler_and_the_termination_handler() {
    let env = installed().await;
    let report = env.run(&["doctor", "-c", C]).await.unwrap();
    assert_eq!(check(&report, "cluster.autoscaler").0, "pass");
    assert_eq!(check(&report, "cluster.termination-handler").0, "pass");
    env.cluster.api.insert(workload(
        "Deployment",
        "kube-system",
        "cluster-autoscaler",
        "registry.k8s.io/autoscaling/cluster-autoscaler:v1.33.0",
    ));
    env.cluster.api.insert(workload(
        "DaemonSet",
        "kube-system",
        "aws-node-termination-handler",
        "public.ecr.aws/aws-ec2/aws-node-termination-handler:v1.24.0",
    ));
    let report = env.run(&["doctor", "-c", C]).await.unwrap();
    let (status, message, hint) = check(&report, "cluster.autoscaler");
    assert_eq!(status, "warn", "{message}");
    assert!(message.contains("deployment kube-system/cluster-autoscaler"), "{message}");
    assert!(hint.contains("karpctl migrate"), "{hint}");
    let (status, message, hint) = check(&report, "cluster.termination-handler");
    assert_eq!(status, "warn", "{message}");
    assert!(message.contains("daemonset kube-system/aws-node-termination-handler"), "{message}");
    assert!(hint.contains("karpctl migrate"), "{hint}");
}

#[tokio::test]
async fn doctor_explains_a_pending_controller_from_its_pods() {
    let env = installed().await;
    let deployment = path_of("apps/v1", "Deployment", Some("kube-system"), "karpenter");
    env.cluster.api.edit(&deployment, |d| {
        d["status"] = json!({"observedGeneration": d["metadata"]["generation"], "availableReplicas": 0,
            "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]});
    });
    env.cluster.api.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "karpenter-abc", "namespace": "kube-system", "labels": {"app.kubernetes.io/name": "karpenter"}},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/2 nodes are available: 1 node(s) didn't match pod anti-affinity rules, 1 node(s) didn't match Pod's node affinity/selector."}]}}));
    let report = env.run(&["doctor", "-c", C]).await.unwrap();
    let (status, message, hint) = check(&report, "karpenter.controller");
    assert_eq!(status, "fail");
    assert!(message.contains("didn't match pod anti-affinity rules"), "{message}");
    assert!(hint.contains("--set replicas=1"), "{hint}");
}

#[tokio::test]
async fn doctor_reads_crd_versions_from_the_crds_and_flags_another_controller() {
    let env = installed().await;
    let report = env.run(&["doctor", "-c", C]).await.unwrap();
    assert_eq!(check(&report, "karpenter.crds").0, "pass", "{}", report.text);
    assert_eq!(check(&report, "karpenter.foreign-controller").0, "pass");
    // An old CRD: objects still stored as v1beta1.
    let crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nodepools.karpenter.sh";
    env.cluster.api.edit(crd, |c| c["status"]["storedVersions"] = json!(["v1beta1", "v1"]));
    env.cluster.api.insert(workload(
        "Deployment",
        "karpenter",
        "karpenter",
        "public.ecr.aws/karpenter/controller:1.0.0",
    ));
    let report = env.run(&["doctor", "-c", C]).await.unwrap();
    let (status, message, hint) = check(&report, "karpenter.crds");
    assert_eq!(status, "fail");
    assert!(message.contains("nodepools.karpenter.sh still has objects stored as v1beta1"), "{message}");
    assert!(hint.contains("karpenter-crd"), "{hint}");
    assert_eq!(check(&report, "karpenter.foreign-controller").0, "fail");
}
