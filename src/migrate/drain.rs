//! Drain nodes through the Eviction API (policy/v1), so PodDisruptionBudgets hold: a 429 is
//! the budget saying "not now", retried until the drain timeout, and then reported with the
//! blocking budget named. Nodes are cordoned first (no new pods land on them), then drained a
//! node at a time or `parallel` at once.

use std::time::Instant;

use futures::stream::{self, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams};
use serde_json::Value;

use super::discover::{evictable, str_at, Workloads};
use super::record;
use crate::error::{Error, ErrorKind, Result};
use crate::kube::{Kube, Wait};

/// Cordon every node of `nodes` that is not cordoned yet, then drain them `parallel` at a time;
/// returns the pods evicted.
pub async fn drain(kube: &Kube, nodes: &[String], parallel: usize, wait: Wait) -> Result<Vec<String>> {
    let w = Workloads::observe(kube).await?;
    for n in nodes {
        let cordoned = w
            .nodes
            .iter()
            .any(|o| str_at(o, "/metadata/name") == n && o.pointer("/spec/unschedulable") == Some(&Value::Bool(true)));
        if !cordoned {
            record::cordon(kube, n, true).await?;
        }
    }
    let evicted: Vec<Vec<String>> =
        stream::iter(nodes.iter().map(|n| drain_node(kube, n, wait))).buffered(parallel.max(1)).try_collect().await?;
    Ok(evicted.into_iter().flatten().collect())
}

/// Evict every evictable pod of one node, then wait until they are gone from it.
async fn drain_node(kube: &Kube, node: &str, wait: Wait) -> Result<Vec<String>> {
    let w = Workloads::observe(kube).await?;
    let mut evicted = Vec::new();
    for pod in w.evictable_on(node) {
        evict(kube, &w, pod, node, wait).await?;
        evicted.push(format!("{}/{}", str_at(pod, "/metadata/namespace"), str_at(pod, "/metadata/name")));
    }
    let start = Instant::now();
    loop {
        let pods = crate::migrate::discover::Workloads::observe(kube).await?.pods;
        let left: Vec<String> = pods
            .iter()
            .filter(|p| str_at(p, "/spec/nodeName") == node && evictable_or_terminating(p))
            .map(|p| format!("{}/{}", str_at(p, "/metadata/namespace"), str_at(p, "/metadata/name")))
            .collect();
        if left.is_empty() {
            return Ok(evicted);
        }
        if start.elapsed() >= wait.timeout {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("node {node} still runs {} after {:?} of draining", left.join(", "), wait.timeout),
            )
            .with_hint("see why they do not terminate (kubectl describe pod), then run karpctl migrate again"));
        }
        tokio::time::sleep(wait.interval).await;
    }
}

fn evictable_or_terminating(p: &Value) -> bool {
    let terminating = p.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    evictable(p) || terminating
}

/// The error when a budget kept a pod from being evicted for the whole wait.
fn blocked(w: &Workloads, pod: &Value, node: &str, wait: Wait, cause: &str) -> Error {
    let ns = str_at(pod, "/metadata/namespace");
    let name = str_at(pod, "/metadata/name");
    let budgets: Vec<String> = w
        .pdbs_of(pod)
        .map(|b| format!("{}/{}", str_at(b, "/metadata/namespace"), str_at(b, "/metadata/name")))
        .collect();
    let blocking = if budgets.is_empty() {
        "a PodDisruptionBudget".to_string()
    } else {
        format!("PodDisruptionBudget {}", budgets.join(", "))
    };
    Error::new(
        ErrorKind::Timeout,
        format!(
            "failed to drain node {node}: {blocking} allowed no eviction of pod {ns}/{name} for {:?}",
            wait.timeout
        ),
    )
    .with_cause(cause.to_string())
    .with_hint(
        "add replicas (or relax the budget) so one pod may go, then run karpctl migrate again; \
         --drain-timeout waits longer; --rollback undoes the migration",
    )
}

/// Evict one pod, waiting out 429s (a PodDisruptionBudget allowing no disruption now) until
/// the drain timeout. The client itself retries a 429 a few times (about 3 s,
/// `kube::connect::bounded_retries`), so each call is also bounded by what is left of the
/// wait, or a short drain timeout would be overrun by the client's own retries.
async fn evict(kube: &Kube, w: &Workloads, pod: &Value, node: &str, wait: Wait) -> Result<()> {
    let ns = str_at(pod, "/metadata/namespace");
    let name = str_at(pod, "/metadata/name");
    let api: Api<Pod> = Api::namespaced(kube.client().await?, ns);
    let start = Instant::now();
    let still_429 = "the API server kept answering 429 TooManyRequests";
    loop {
        let left = wait.timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, api.evict(name, &EvictParams::default())).await {
            Err(_) => return Err(blocked(w, pod, node, wait, still_429)),
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => return Ok(()),
            Ok(Err(kube::Error::Api(s))) if s.code == 429 => {
                if start.elapsed() >= wait.timeout {
                    return Err(blocked(w, pod, node, wait, &s.message));
                }
                tokio::time::sleep(wait.interval.min(wait.timeout.saturating_sub(start.elapsed()))).await;
            }
            Ok(Err(e)) => {
                return Err(crate::kube::kube_error(format!("failed to evict pod {ns}/{name}"), &kube.server(), e))
            }
        }
    }
}
