//! What teardown (and init's preflight) needs to know about Karpenter's own objects in the
//! cluster: the NodePools karpctl did not make and their nodes, whether the controller runs,
//! and, when it does not, how to release the finalizers only it would remove.

use serde_json::Value;

use super::{Kube, FIELD_MANAGER};
use crate::error::Result;

/// The NodePool API.
pub const NODEPOOL: (&str, &str) = ("karpenter.sh/v1", "NodePool");
/// The NodeClaim API.
pub const NODECLAIM: (&str, &str) = ("karpenter.sh/v1", "NodeClaim");
/// The EC2NodeClass API.
pub const NODECLASS: (&str, &str) = ("karpenter.k8s.aws/v1", "EC2NodeClass");
/// The label Karpenter puts on its NodeClaims and Nodes.
pub const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";
/// The finalizer Karpenter puts on its NodeClaims and Nodes.
pub const TERMINATION_FINALIZER: &str = "karpenter.sh/termination";

/// The CRD API.
const CRD: (&str, &str) = ("apiextensions.k8s.io/v1", "CustomResourceDefinition");

/// Whether a CRD is one of Karpenter's (its group is `karpenter.sh` or `karpenter.k8s.aws`).
fn is_karpenter_crd(name: &str) -> bool {
    name.ends_with(".karpenter.sh") || name.ends_with(".karpenter.k8s.aws")
}

/// Whether helm's release `release` in `namespace` owns the object: what helm checks before it
/// takes an existing object into a release (its label and two annotations).
pub fn owned_by_release(obj: &Value, release: &str, namespace: &str) -> bool {
    let m = |p: &str| obj.pointer(p).and_then(Value::as_str);
    m("/metadata/labels/app.kubernetes.io~1managed-by") == Some("Helm")
        && m("/metadata/annotations/meta.helm.sh~1release-name") == Some(release)
        && m("/metadata/annotations/meta.helm.sh~1release-namespace") == Some(namespace)
}

/// Karpenter's CRDs in the cluster (name and object).
pub async fn crds(kube: &Kube) -> Result<Vec<(String, Value)>> {
    crds_where(kube, is_karpenter_crd).await
}

/// Every CRD in the cluster whose name passes `keep`, by name.
async fn crds_where(kube: &Kube, keep: impl Fn(&str) -> bool) -> Result<Vec<(String, Value)>> {
    Ok(list(kube, CRD, None).await?.into_iter().map(|c| (name_of(&c), c)).filter(|(n, _)| keep(n)).collect())
}

/// The CRDs of the given names in the cluster (a chart's set reaches beyond Karpenter's own
/// groups: 1.14 ships CapacityBuffer).
pub async fn crds_named(kube: &Kube, names: &[&str]) -> Result<Vec<(String, Value)>> {
    crds_where(kube, |n| names.contains(&n)).await
}

/// Karpenter's CRDs that the release `release` in `namespace` does not own (installed by the
/// karpenter chart's crds/ directory on an older install, or with kubectl): helm refuses to
/// install the CRD chart over them.
pub async fn unowned_crds(kube: &Kube, release: &str, namespace: &str) -> Result<Vec<String>> {
    Ok(crds(kube)
        .await?
        .into_iter()
        .filter(|(_, c)| !owned_by_release(c, release, namespace))
        .map(|(n, _)| n)
        .collect())
}

/// Hand the unowned Karpenter CRDs to the release (`init --adopt`): helm's ownership label and
/// annotations, after which `helm upgrade --install` takes them over.
pub async fn adopt_crds(kube: &Kube, release: &str, namespace: &str) -> Result<Vec<String>> {
    let names = unowned_crds(kube, release, namespace).await?;
    let patch = serde_json::json!({"metadata": {
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace},
    }});
    for name in &names {
        kube.merge_patch(CRD.0, CRD.1, None, name, &patch, "adopt").await?;
    }
    Ok(names)
}

/// A NodePool and how many nodes it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Its name.
    pub name: String,
    /// Nodes labelled with it.
    pub nodes: usize,
}

impl std::fmt::Display for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.nodes == 1 { "" } else { "s" };
        write!(f, "{} ({} node{s})", self.name, self.nodes)
    }
}

/// Whether karpctl's server-side apply manages the object.
pub fn made_by_karpctl(obj: &Value) -> bool {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|f| f["manager"] == FIELD_MANAGER))
}

fn name_of(obj: &Value) -> String {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string()
}

async fn list(kube: &Kube, (api_version, kind): (&str, &str), selector: Option<&str>) -> Result<Vec<Value>> {
    let items = kube.list(api_version, kind, None, selector).await?;
    Ok(items.into_iter().filter_map(|o| serde_json::to_value(o).ok()).collect())
}

/// The NodePools karpctl did not make, with their node counts: removing the CRDs would delete
/// them and leave their nodes without anyone to drain and terminate them.
pub async fn foreign_pools(kube: &Kube) -> Result<Vec<Pool>> {
    let nodes = list(kube, ("v1", "Node"), Some(NODEPOOL_LABEL)).await?;
    let count = |pool: &str| {
        nodes
            .iter()
            .filter(|n| n.pointer("/metadata/labels").and_then(|l| l.get(NODEPOOL_LABEL)) == Some(&Value::from(pool)))
            .count()
    };
    Ok(list(kube, NODEPOOL, None)
        .await?
        .iter()
        .filter(|p| !made_by_karpctl(p))
        .map(|p| {
            let name = name_of(p);
            Pool { nodes: count(&name), name }
        })
        .collect())
}

/// The names of every EC2NodeClass.
pub async fn node_classes(kube: &Kube) -> Result<Vec<String>> {
    Ok(list(kube, NODECLASS, None).await?.iter().map(name_of).collect())
}

/// Whether the controller Deployment in `namespace` has an available replica: only then do
/// NodeClaims, Nodes and EC2NodeClasses being deleted ever lose their finalizers.
pub async fn controller_runs(kube: &Kube, namespace: &str) -> Result<bool> {
    let Some(d) = kube.get("apps/v1", "Deployment", Some(namespace), "karpenter").await? else { return Ok(false) };
    let d = serde_json::to_value(d).unwrap_or_default();
    let deleting = d.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    Ok(!deleting && d.pointer("/status/availableReplicas").and_then(Value::as_i64).unwrap_or(0) > 0)
}

/// What [`release_finalizers`] did, for the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Released {
    /// NodeClaims whose finalizers were removed.
    pub node_claims: usize,
    /// EC2NodeClasses whose finalizers were removed.
    pub node_classes: usize,
    /// Nodes (Karpenter's) deleted and released.
    pub nodes: usize,
}

/// Without a controller: delete every NodeClaim and Karpenter Node and remove the finalizers
/// only the controller would have removed (on NodeClaims, EC2NodeClasses, and Nodes with
/// `karpenter.sh/termination`), so the objects and then the CRDs can go. The instances must be
/// terminated first (by tag), or they run on without a Node.
pub async fn release_finalizers(kube: &Kube) -> Result<Released> {
    let mut done = Released::default();
    for claim in list(kube, NODECLAIM, None).await? {
        let name = name_of(&claim);
        kube.delete(NODECLAIM.0, NODECLAIM.1, None, &name).await?;
        if kube.remove_finalizers(NODECLAIM.0, NODECLAIM.1, None, &name).await? {
            done.node_claims += 1;
        }
    }
    for node in list(kube, ("v1", "Node"), None).await? {
        let has_finalizer = node
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|f| f == TERMINATION_FINALIZER));
        let karpenters = node.pointer("/metadata/labels").and_then(|l| l.get(NODEPOOL_LABEL)).is_some();
        if !has_finalizer && !karpenters {
            continue;
        }
        let name = name_of(&node);
        // Its instance is terminated: the Node would only linger NotReady.
        kube.delete("v1", "Node", None, &name).await?;
        if has_finalizer {
            kube.remove_finalizers("v1", "Node", None, &name).await?;
        }
        done.nodes += 1;
    }
    for class in list(kube, NODECLASS, None).await? {
        let deleting = class.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
        if deleting && kube.remove_finalizers(NODECLASS.0, NODECLASS.1, None, &name_of(&class)).await? {
            done.node_classes += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pool_shows_its_node_count() {
        assert_eq!(Pool { name: "gpu".into(), nodes: 2 }.to_string(), "gpu (2 nodes)");
        assert_eq!(Pool { name: "gpu".into(), nodes: 1 }.to_string(), "gpu (1 node)");
    }

    #[test]
    fn ownership_is_by_field_manager() {
        assert!(made_by_karpctl(&json!({"metadata": {"managedFields": [{"manager": "karpctl"}]}})));
        assert!(!made_by_karpctl(&json!({"metadata": {"managedFields": [{"manager": "kubectl"}]}})));
        assert!(!made_by_karpctl(&json!({"metadata": {}})));
    }
}
