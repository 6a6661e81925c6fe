//! What else runs in the cluster that decides whether (and where) Karpenter can run: another
//! Karpenter controller, Cluster Autoscaler, aws-node-termination-handler, the nodes the
//! controller can be scheduled on, why its pods are Pending, and the CRDs' own versions.
//! Read-only: init refuses from it, doctor reports it.

use serde_json::Value;

use super::karpenter::{self, NODEPOOL_LABEL};
use super::Kube;
use crate::checks::{Check, Status};
use crate::error::{Error, ErrorKind, Result};
use crate::versions::Release;

/// A workload found by the image it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `Deployment` or `DaemonSet`.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Desired replicas (a DaemonSet counts as 1).
    pub replicas: i64,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.to_lowercase(), self.namespace, self.name)
    }
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

async fn values(kube: &Kube, api_version: &str, kind: &str, ns: Option<&str>, sel: Option<&str>) -> Result<Vec<Value>> {
    Ok(kube.list(api_version, kind, ns, sel).await?.into_iter().filter_map(|o| serde_json::to_value(o).ok()).collect())
}

/// Deployments and DaemonSets in any namespace with a container whose image contains `image`.
pub async fn workloads_running(kube: &Kube, image: &str) -> Result<Vec<Workload>> {
    let mut out = Vec::new();
    for kind in ["Deployment", "DaemonSet"] {
        for w in values(kube, "apps/v1", kind, None, None).await? {
            let runs = w
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|c| s(c, "/image").contains(image)));
            if runs {
                let replicas = if kind == "DaemonSet" {
                    1
                } else {
                    w.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
                };
                out.push(Workload {
                    kind: kind.to_string(),
                    namespace: s(&w, "/metadata/namespace").to_string(),
                    name: s(&w, "/metadata/name").to_string(),
                    replicas,
                });
            }
        }
    }
    Ok(out)
}

/// The image path every Karpenter controller (chart or manifest) runs.
const KARPENTER_IMAGE: &str = "karpenter/controller";

/// Karpenter controllers other than the `karpenter` Deployment in `namespace` (karpctl's): two
/// controllers would launch and remove nodes for the same NodePools.
pub async fn foreign_controllers(kube: &Kube, namespace: &str) -> Result<Vec<Workload>> {
    Ok(workloads_running(kube, KARPENTER_IMAGE)
        .await?
        .into_iter()
        .filter(|w| !(w.namespace == namespace && w.name == "karpenter" && w.kind == "Deployment"))
        .collect())
}

/// The error init stops with when another Karpenter controller runs.
pub fn foreign_controller_error(found: &[Workload]) -> Error {
    let list: Vec<String> = found.iter().map(ToString::to_string).collect();
    Error::new(
        ErrorKind::Refused,
        format!("a Karpenter controller not installed by karpctl runs in the cluster: {}", list.join(", ")),
    )
    .with_hint(
        "two controllers would fight over the same nodes: uninstall it (helm -n NAMESPACE uninstall RELEASE) \
         before init, or let `karpctl migrate` (planned) take it over",
    )
}

/// Why a node cannot take a controller pod, or None when it can.
fn ineligible(node: &Value) -> Option<&'static str> {
    let labels = node.pointer("/metadata/labels");
    if labels.and_then(|l| l.get(NODEPOOL_LABEL)).is_some() {
        return Some("managed by Karpenter");
    }
    if labels.and_then(|l| l.get("eks.amazonaws.com/compute-type")).and_then(Value::as_str) == Some("fargate") {
        return Some("a Fargate node");
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        return Some("cordoned");
    }
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True"));
    if !ready {
        return Some("not Ready");
    }
    // The chart tolerates CriticalAddonsOnly; any other NoSchedule/NoExecute taint keeps it off.
    let tainted = node.pointer("/spec/taints").and_then(Value::as_array).is_some_and(|ts| {
        ts.iter().any(|t| matches!(s(t, "/effect"), "NoSchedule" | "NoExecute") && s(t, "/key") != "CriticalAddonsOnly")
    });
    tainted.then_some("tainted")
}

/// The nodes the controller's pods can run on: schedulable, Ready, untainted, not Karpenter's
/// (the chart's `karpenter.sh/nodepool DoesNotExist` affinity) and not Fargate.
pub async fn eligible_nodes(kube: &Kube) -> Result<Vec<String>> {
    Ok(values(kube, "v1", "Node", None, None)
        .await?
        .iter()
        .filter(|n| ineligible(n).is_none())
        .map(|n| s(n, "/metadata/name").to_string())
        .collect())
}

/// The error init stops with when the controller's replicas cannot all be scheduled.
pub fn placement_error(replicas: i64, eligible: &[String], namespace: &str) -> Error {
    Error::new(
        ErrorKind::ClusterState,
        format!(
            "the controller runs {replicas} replicas on separate nodes (required hostname anti-affinity, and never on \
             Karpenter's own nodes), but only {} node(s) not managed by Karpenter can take them{}",
            eligible.len(),
            if eligible.is_empty() { String::new() } else { format!(": {}", eligible.join(", ")) }
        ),
    )
    .with_hint(format!(
        "add a managed node group with at least {replicas} nodes, or pass --set replicas={} (no high availability), \
         or create a Fargate profile selecting namespace {namespace}",
        eligible.len().max(1)
    ))
}

/// Why the controller's pods are Pending: the scheduler's `PodScheduled=False` messages.
pub async fn pending_reasons(kube: &Kube, namespace: &str) -> Result<Vec<String>> {
    let pods = values(kube, "v1", "Pod", Some(namespace), Some("app.kubernetes.io/name=karpenter")).await?;
    let mut out: Vec<String> = pods
        .iter()
        .filter(|p| s(p, "/status/phase") == "Pending")
        .filter_map(|p| {
            let cs = p.pointer("/status/conditions")?.as_array()?;
            let c = cs.iter().find(|c| s(c, "/type") == "PodScheduled" && s(c, "/status") == "False")?;
            Some(format!("{}: {}", s(c, "/reason"), s(c, "/message")))
        })
        .collect();
    out.dedup();
    Ok(out)
}

/// The hint for a controller Pending because the scheduler found no place for it.
pub const PENDING_HINT: &str = "the controller needs nodes Karpenter does not manage, one per replica: add a node \
     group, or `karpctl init --set replicas=1`, or a Fargate profile for its namespace";

/// doctor's checks of what else runs: Cluster Autoscaler and aws-node-termination-handler.
pub async fn neighbour_checks(kube: &Kube) -> Result<Vec<Check>> {
    let ca: Vec<Workload> =
        workloads_running(kube, "cluster-autoscaler").await?.into_iter().filter(|w| w.replicas > 0).collect();
    let nth = workloads_running(kube, "aws-node-termination-handler").await?;
    Ok(vec![
        warn_if_running(
            "cluster.autoscaler",
            "Cluster Autoscaler",
            &ca,
            "still runs",
            ": two autoscalers fight over the same pods",
            "scale it to 0 once Karpenter's NodePools cover its node groups; `karpctl migrate` (planned) does this",
        ),
        warn_if_running(
            "cluster.termination-handler",
            "aws-node-termination-handler",
            &nth,
            "runs",
            " while Karpenter handles interruptions: both drain the same nodes",
            "remove it for the nodes Karpenter manages (Karpenter's interruption queue replaces it); `karpctl migrate` (planned) does this",
        ),
    ])
}

/// A pass when `found` is empty, else a warning naming the workloads, why they conflict with
/// Karpenter (`why` follows the list as written), and the fix.
fn warn_if_running(id: &str, what: &str, found: &[Workload], verb: &str, why: &str, hint: &str) -> Check {
    if found.is_empty() {
        return Check::new(id, Status::Pass, format!("no {what} runs"));
    }
    let list: Vec<String> = found.iter().map(ToString::to_string).collect();
    Check::new(id, Status::Warn, format!("{what} {verb} ({}){why}", list.join(", "))).with_hint(hint)
}

/// Karpenter's CRDs at v1 since 1.0.
const V1_CRDS: &[&str] = &["nodepools.karpenter.sh", "nodeclaims.karpenter.sh", "ec2nodeclasses.karpenter.k8s.aws"];

/// doctor's CRD check, from the CRD objects themselves (not the chart release): every CRD
/// the controller's version ships is there; Karpenter's own serve and store v1, have only v1
/// in `status.storedVersions`; and the EC2NodeClass CRD knows every spec field that version
/// reads (a CRD release older than the controller lacks them, and the controller then fails
/// to decode the objects it lists).
pub async fn crd_check(kube: &Kube, release: &Release) -> Result<Check> {
    let crds = karpenter::crds_named(kube, release.crds).await?;
    let mut problems = Vec::new();
    for name in release.crds {
        let Some((_, crd)) = crds.iter().find(|(n, _)| n == name) else {
            problems.push(format!("{name} is missing"));
            continue;
        };
        // The others (NodeOverlay, CapacityBuffer) are still alpha: no v1 to serve.
        if !V1_CRDS.contains(name) {
            continue;
        }
        let versions = crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
        let v1 = versions.iter().find(|v| s(v, "/name") == "v1");
        if !v1.is_some_and(|v| v["served"] == true && v["storage"] == true) {
            problems.push(format!("{name} does not serve and store v1"));
        }
        let stored: Vec<&str> = crd
            .pointer("/status/storedVersions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if stored.iter().any(|v| *v != "v1") {
            problems.push(format!("{name} still has objects stored as {}", stored.join(", ")));
        }
        if *name == "ec2nodeclasses.karpenter.k8s.aws" {
            // A CRD without a schema cannot say what it lacks (apiextensions.k8s.io/v1 requires one).
            let props = v1.and_then(|v| v.pointer("/schema/openAPIV3Schema/properties/spec/properties"));
            let missing: Vec<&str> = release
                .nodeclass_fields
                .iter()
                .copied()
                .filter(|f| props.is_some_and(|p| p.get(*f).is_none()))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{name} lacks spec fields {} (older than the controller {})",
                    missing.join(", "),
                    release.version
                ));
            }
        }
    }
    Ok(if problems.is_empty() {
        Check::new("karpenter.crds", Status::Pass, "Karpenter's CRDs serve and store v1")
    } else {
        Check::new("karpenter.crds", Status::Fail, problems.join("; ")).with_hint(
            "upgrade the CRDs before the controller: karpctl init (it upgrades the karpenter-crd release first; \
             helm never updates a chart's crds/); objects stored as v1beta1 need the v1 migration first",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(change: impl FnOnce(&mut Value)) -> Value {
        let mut n = json!({"metadata": {"name": "n", "labels": {}},
                           "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        change(&mut n);
        n
    }

    #[test]
    fn only_ready_untainted_schedulable_non_karpenter_nodes_are_eligible() {
        assert_eq!(ineligible(&node(|_| {})), None);
        assert_eq!(
            ineligible(&node(|n| n["metadata"]["labels"]["karpenter.sh/nodepool"] = json!("x"))),
            Some("managed by Karpenter")
        );
        assert_eq!(ineligible(&node(|n| n["spec"]["unschedulable"] = json!(true))), Some("cordoned"));
        assert_eq!(ineligible(&node(|n| n["status"]["conditions"][0]["status"] = json!("False"))), Some("not Ready"));
        assert_eq!(
            ineligible(&node(|n| n["spec"]["taints"] = json!([{"key": "gpu", "effect": "NoSchedule"}]))),
            Some("tainted")
        );
        assert_eq!(
            ineligible(&node(|n| n["spec"]["taints"] = json!([{"key": "CriticalAddonsOnly", "effect": "NoSchedule"}]))),
            None
        );
    }
}
