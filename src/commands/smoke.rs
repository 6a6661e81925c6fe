//! `doctor --smoke`: prove the install end to end, as everyone does by hand after installing
//! Karpenter: deploy pods that do not fit, watch Karpenter launch a node for them, report how
//! long it took and what it chose, and clean up whatever happens (success, failure, timeout,
//! Ctrl-C).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::checks::{Check, Status};
use crate::error::{Error, ErrorKind, Result};
use crate::kube::conditions;
use crate::kube::Kube;
use crate::output;

/// The smoke test's namespace: fixed, so a run interrupted before its clean-up is cleaned by the next.
pub const NAMESPACE: &str = "karpctl-smoke";
/// The pause image the official guide's exercise uses.
pub const IMAGE: &str = "public.ecr.aws/eks-distro/kubernetes/pause:3.2";
/// The NodeClaim conditions that together mean "a node Karpenter launched is ready for pods".
const NODE_READY: [&str; 3] = ["Launched", "Registered", "Initialized"];

/// How the smoke test runs.
#[derive(Debug, Clone, Copy)]
pub struct Smoke {
    /// Pods to run (1 CPU each).
    pub replicas: u32,
    /// How long to wait for a node and for the pods.
    pub timeout: Duration,
    /// How often to look.
    pub interval: Duration,
    /// Also wait until consolidation removes the node after the clean-up.
    pub wait_scale_down: bool,
}

/// The namespace and Deployment it creates.
pub fn manifests(replicas: u32) -> [Value; 2] {
    [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE,
               "labels": {"app.kubernetes.io/managed-by": "karpctl"}}}),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "inflate", "namespace": NAMESPACE},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "karpctl-smoke"}},
                "template": {
                    "metadata": {"labels": {"app": "karpctl-smoke"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "inflate", "image": IMAGE, "resources": {"requests": {"cpu": "1"}}}]
                    }
                }
            }
        }),
    ]
}

fn names(objs: &[kube::api::DynamicObject]) -> HashSet<String> {
    objs.iter().filter_map(|o| o.metadata.name.clone()).collect()
}

/// Run the smoke test and judge it. Its own failures (no node, pods pending) are a failing
/// check; only a failing clean-up is an error, since it leaves something behind.
pub async fn run(kube: &Kube, smoke: Smoke) -> Result<Check> {
    let bar = output::spinner("smoke test: starting");
    let flow = flow(kube, smoke, &bar);
    let outcome = tokio::select! {
        r = flow => r,
        _ = tokio::signal::ctrl_c() => Err(Error::new(ErrorKind::Refused, "smoke test interrupted")),
    };
    bar.set_message("smoke test: cleaning up");
    let cleaned = kube.delete("v1", "Namespace", None, NAMESPACE).await;
    let result = match (outcome, cleaned) {
        (_, Err(e)) => Err(Error::new(ErrorKind::ClusterState, format!("failed to delete namespace {NAMESPACE}"))
            .with_cause(e.to_string())
            .with_hint(format!("delete it yourself: kubectl delete namespace {NAMESPACE}"))),
        (Ok((check, Some(claim))), Ok(_)) if smoke.wait_scale_down => {
            bar.set_message(format!("smoke test: waiting for consolidation to remove {claim}"));
            Ok(wait_removed(kube, &claim, smoke).await.map_or(check.clone(), |m| append(check, &m)))
        }
        (Ok((check, _)), Ok(_)) => Ok(check),
        (Err(e), Ok(_)) if e.kind == ErrorKind::Refused => Err(e),
        (Err(e), Ok(_)) => Ok(Check::new("smoke", Status::Fail, e.to_string())
            .with_hint(e.hint.unwrap_or_else(|| "look at `kubectl get nodeclaims` and the controller's logs".into()))),
    };
    bar.finish_and_clear();
    result
}

fn append(check: Check, note: &str) -> Check {
    Check { message: format!("{}; {note}", check.message), ..check }
}

/// Deploy, then wait for a new NodeClaim to be launched, registered and initialized, then for
/// every pod to run. Returns the check and the NodeClaim's name.
async fn flow(kube: &Kube, smoke: Smoke, bar: &indicatif::ProgressBar) -> Result<(Check, Option<String>)> {
    let before = names(&kube.list("karpenter.sh/v1", "NodeClaim", None, None).await?);
    let started = Instant::now();
    for m in manifests(smoke.replicas) {
        kube.apply(&m).await?;
    }
    let deadline = started + smoke.timeout;
    let (claim, instance_type) = loop {
        let claims = kube.list("karpenter.sh/v1", "NodeClaim", None, None).await?;
        let ready = claims.iter().find(|c| {
            let name = c.metadata.name.clone().unwrap_or_default();
            let obj = serde_json::to_value(c).unwrap_or_default();
            let conds = conditions(&obj);
            !before.contains(&name)
                && NODE_READY.iter().all(|t| conds.iter().any(|c| c.type_ == *t && c.status == "True"))
        });
        if let Some(c) = ready {
            let labels = c.metadata.labels.clone().unwrap_or_default();
            let it = labels.get("node.kubernetes.io/instance-type").cloned().unwrap_or_else(|| "unknown".into());
            break (c.metadata.name.clone().unwrap_or_default(), it);
        }
        let new = claims.iter().filter(|c| !before.contains(c.metadata.name.as_deref().unwrap_or_default())).count();
        bar.set_message(format!("smoke test: waiting for a node ({new} new NodeClaims)"));
        if Instant::now() + smoke.interval > deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("no node was launched and initialized within {}s", smoke.timeout.as_secs()),
            )
            .with_hint("kubectl get nodeclaims; kubectl -n kube-system logs deploy/karpenter; karpctl doctor"));
        }
        tokio::time::sleep(smoke.interval).await;
    };
    let node_after = started.elapsed();
    loop {
        let pods = kube.list("v1", "Pod", Some(NAMESPACE), Some("app=karpctl-smoke")).await?;
        let running =
            pods.iter().filter(|p| serde_json::to_value(p).unwrap_or_default()["status"]["phase"] == "Running").count();
        if running >= smoke.replicas as usize {
            break;
        }
        bar.set_message(format!("smoke test: {running}/{} pods running", smoke.replicas));
        if Instant::now() + smoke.interval > deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("node {claim} is ready but only {running}/{} pods run", smoke.replicas),
            )
            .with_hint(format!("kubectl -n {NAMESPACE} describe pods")));
        }
        tokio::time::sleep(smoke.interval).await;
    }
    let message = format!(
        "{} pods ran on a new {instance_type} node ({claim}) {:.0}s after they were created; the node was ready after {:.0}s",
        smoke.replicas,
        started.elapsed().as_secs_f64(),
        node_after.as_secs_f64()
    );
    Ok((Check::new("smoke", Status::Pass, message), Some(claim)))
}

/// Wait until consolidation removes the node; a note for the check, or None when it did not.
async fn wait_removed(kube: &Kube, claim: &str, smoke: Smoke) -> Option<String> {
    let started = Instant::now();
    while started.elapsed() < smoke.timeout {
        match kube.get("karpenter.sh/v1", "NodeClaim", None, claim).await {
            Ok(None) => {
                return Some(format!("consolidation removed it {:.0}s after clean-up", started.elapsed().as_secs_f64()))
            }
            Ok(Some(_)) | Err(_) => tokio::time::sleep(smoke.interval).await,
        }
    }
    Some(format!("consolidation had not removed {claim} after {}s", smoke.timeout.as_secs()))
}
