//! The tests' stand-in cluster as a process, for `scripts/demo`: the API server of
//! `tests/support/apiserver.rs` on a loopback port behind a kubeconfig, and a private copy of
//! `tests/support/fake-helm` (both set up exactly as the tests set them up, by
//! `tests/support/cluster.rs`). It also plays Karpenter for `doctor --smoke`: when the smoke
//! Deployment appears, a new NodeClaim becomes Ready and the pods run; when its namespace goes,
//! they go (the next time they are read).
//!
//! An example, so it is built only for development (`cargo build --example standin`) and never
//! ships in the release binary.
//!
//! Usage: `standin ENV_FILE`: writes `KARPCTL_KUBECONFIG=...` and `KARPCTL_HELM=...` lines to
//! ENV_FILE once the server listens, then serves until SIGTERM or Ctrl-C.

#[path = "../tests/support/apiserver.rs"]
mod apiserver;
#[allow(dead_code)]
#[path = "../tests/support/cluster.rs"]
mod cluster;
#[path = "../tests/support/fake_helm.rs"]
mod fake_helm;

use std::time::Duration;

use apiserver::{path_of, Later};
use serde_json::json;

#[tokio::main]
async fn main() {
    let Some(env_file) = std::env::args().nth(1) else {
        eprintln!("usage: standin ENV_FILE");
        std::process::exit(2);
    };
    let fake = cluster::FakeCluster::start().await;
    let env = format!("KARPCTL_KUBECONFIG={}\nKARPCTL_HELM={}\n", fake.kubeconfig.display(), fake.helm.display());
    // Written whole, then renamed: the demo reads it as soon as it exists.
    let partial = format!("{env_file}.partial");
    if let Err(e) = std::fs::write(&partial, env).and_then(|()| std::fs::rename(&partial, &env_file)) {
        eprintln!("standin: failed to write {env_file}: {e}");
        std::process::exit(1);
    }
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("standin: cannot listen for SIGTERM: {e}");
            std::process::exit(1);
        }
    };
    let smoke = path_of("apps/v1", "Deployment", Some("karpctl-smoke"), "inflate");
    let namespace = path_of("v1", "Namespace", None, "karpctl-smoke");
    let mut launched: Vec<String> = Vec::new();
    let mut round = 0;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        // The smoke test ends by deleting its namespace, which takes the Deployment with it.
        let deployment = fake.api.object(&smoke).filter(|_| fake.api.object(&namespace).is_some());
        match (&deployment, launched.is_empty()) {
            (Some(d), true) => {
                round += 1;
                let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
                launched.push(fake.api.insert(json!({
                    "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
                    "metadata": {"name": format!("default-demo{round}"),
                                 "labels": {"node.kubernetes.io/instance-type": "m5.large", "karpenter.sh/nodepool": "default"}},
                    "status": {"conditions": [
                        {"type": "Launched", "status": "True"}, {"type": "Registered", "status": "True"},
                        {"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}]}
                })));
                for i in 0..replicas {
                    launched.push(fake.api.insert(json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": format!("inflate-{round}-{i}"), "namespace": "karpctl-smoke",
                                     "labels": {"app": "karpctl-smoke"}},
                        "status": {"phase": "Running"}
                    })));
                }
            }
            // Consolidation: the node and its pods go once the Deployment is gone.
            (None, false) => {
                launched.push(smoke.clone());
                for path in launched.drain(..) {
                    fake.api.later(&path, 0, Later::Remove);
                }
            }
            _ => {}
        }
    }
    drop(fake);
}
