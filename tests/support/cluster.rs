//! A stand-in for the cluster side of an install: the in-test API server (apiserver.rs) behind a
//! kubeconfig, and a private copy of fake-helm (which keeps its releases in its own directory).
//! Karpenter itself is played by the stand-in: the controller Deployment is there and available,
//! and every EC2NodeClass and NodePool applied becomes Ready, as a running Karpenter makes them.

use std::path::PathBuf;

use serde_json::{json, Value};

pub use super::apiserver::ApiServer;

/// The cluster side of one test.
pub struct FakeCluster {
    pub api: ApiServer,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub helm: PathBuf,
}

/// A ready condition list.
pub fn ready() -> Value {
    json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": ""}]})
}

/// A Ready node of a managed node group (not Karpenter's).
pub fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"eks.amazonaws.com/nodegroup": "system", "kubernetes.io/hostname": name}},
           "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}

impl FakeCluster {
    /// Start it (inside the test's runtime).
    pub async fn start() -> FakeCluster {
        let api = ApiServer::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: c\n  cluster:\n    server: {}\n\
                 users:\n- name: u\n  user:\n    token: test-token\ncontexts:\n- name: test\n  context:\n    cluster: c\n    user: u\n",
                api.url
            ),
        )
        .expect("write kubeconfig");
        let helm = super::fake_helm::install(dir.path());
        // helm's `uninstall --wait` times out here instead of after ten minutes.
        std::fs::write(dir.path().join("fake-helm.json"), r#"{"FAKE_HELM_WAIT_LIMIT": 3}"#).expect("fake-helm.json");
        api.auto_status("ec2nodeclasses", ready());
        api.auto_status("nodepools", ready());
        api.insert(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "karpenter", "namespace": "kube-system", "generation": 1,
                         "labels": {"app.kubernetes.io/managed-by": "Helm"},
                         "annotations": {"meta.helm.sh/release-name": "karpenter",
                                         "meta.helm.sh/release-namespace": "kube-system"}},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "availableReplicas": 2,
                       "conditions": [{"type": "Available", "status": "True"}]}
        }));
        // A managed node group of two: room for the controller's two replicas.
        for name in ["system-a", "system-b"] {
            api.insert(node(name));
        }
        FakeCluster { api, dir, kubeconfig, helm }
    }

    /// The flags that point karpctl at it.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--helm".into(),
            self.helm.display().to_string(),
        ]
    }

    /// Every helm invocation so far (argv, env, values files), in order.
    pub fn helm_calls(&self) -> Vec<Value> {
        let log = self.dir.path().join("log/calls.jsonl");
        std::fs::read_to_string(log).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The argv of each helm invocation that changes something (upgrade, uninstall).
    pub fn helm_writes(&self) -> Vec<String> {
        self.helm_calls()
            .iter()
            .map(|c| c["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect::<Vec<_>>())
            .filter(|a| matches!(a.get(1).map(String::as_str), Some("upgrade") | Some("uninstall")))
            .map(|a| a.join(" "))
            .collect()
    }

    /// The releases fake-helm holds, by "namespace/name".
    pub fn releases(&self) -> Value {
        std::fs::read_to_string(self.dir.path().join("log/releases.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| json!({}))
    }
}
