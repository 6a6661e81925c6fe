//! The default EC2NodeClass and NodePool, server-side applied with field manager `karpctl`.
//! karpctl owns them when it manages their fields (their managedFields name `karpctl`).

use async_trait::async_trait;
use serde_json::{json, Value};

use super::helm_release::{self, CRDS};
use super::{Cx, Dep, Drift, Kind, Observed, Resource, ResourceId};
use crate::desired::Desired;
use crate::diff::{self, Compare};
use crate::error::{Error, ErrorKind, Result};
use crate::kube::FIELD_MANAGER;
use crate::render::{yaml_to_json, DocKind, Document, Documents};

/// One manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    api_version: &'static str,
    kind: &'static str,
    name: String,
    depends: Vec<Dep>,
    nodepool: bool,
    /// Removed whoever made it (`teardown --all-nodepools`); never applied.
    any_owner: bool,
}

impl Manifest {
    /// The default EC2NodeClass.
    pub fn node_class(d: &Desired) -> Self {
        Manifest {
            api_version: "karpenter.k8s.aws/v1",
            kind: "EC2NodeClass",
            name: "default".into(),
            depends: vec![
                Dep::on(helm_release::id(&d.target.namespace, CRDS)),
                Dep::on(super::role::id(&d.names.node_role.name)),
            ],
            nodepool: false,
            any_owner: false,
        }
    }

    /// The default NodePool, after the class it references.
    pub fn node_pool(d: &Desired) -> Self {
        Manifest {
            api_version: "karpenter.sh/v1",
            kind: "NodePool",
            name: "default".into(),
            depends: vec![
                Dep::on(helm_release::id(&d.target.namespace, CRDS)),
                Dep::on(ResourceId::new(Kind::Ec2NodeClass, "default")),
            ],
            nodepool: true,
            any_owner: false,
        }
    }

    /// Any other NodePool, for `teardown --all-nodepools`: the user asked for all of them.
    pub fn any_node_pool(name: &str) -> Self {
        Manifest {
            api_version: "karpenter.sh/v1",
            kind: "NodePool",
            name: name.to_string(),
            depends: Vec::new(),
            nodepool: true,
            any_owner: true,
        }
    }

    /// Any other EC2NodeClass, when teardown removes the CRDs: they would go with them, and only
    /// a running controller removes their finalizers (and the instance profiles they made).
    pub fn any_node_class(name: &str) -> Self {
        Manifest {
            api_version: "karpenter.k8s.aws/v1",
            kind: "EC2NodeClass",
            name: name.to_string(),
            depends: Vec::new(),
            nodepool: false,
            any_owner: true,
        }
    }

    fn desired(&self, cx: &Cx) -> Result<Value> {
        let text = if self.nodepool { &cx.docs.node_pool_yaml } else { &cx.docs.node_class_yaml };
        yaml_to_json(self.kind, text)
    }
}

/// Whether every field of `want` is in `have` with the same value (what server-side apply
/// guarantees for the fields karpctl manages; the API server may add defaults around them).
pub fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, v)| h.get(k).is_some_and(|hv| contains(hv, v))),
        (Value::Array(h), Value::Array(w)) => h.len() == w.len() && h.iter().zip(w).all(|(a, b)| contains(a, b)),
        (Value::Number(h), Value::String(w)) | (Value::String(w), Value::Number(h)) => h.to_string() == *w,
        (h, w) => h == w,
    }
}

#[async_trait]
impl Resource for Manifest {
    type Facts = ();

    fn id(&self) -> ResourceId {
        ResourceId::new(if self.nodepool { Kind::NodePool } else { Kind::Ec2NodeClass }, &self.name)
    }

    fn depends_on(&self) -> Vec<Dep> {
        self.depends.clone()
    }

    fn is_cluster_side(&self) -> bool {
        true
    }

    fn removed_after(&self, other: &dyn super::AnyResource) -> bool {
        // Every NodePool before any EC2NodeClass: a class goes only once no node uses it.
        !self.nodepool && other.id().kind == Kind::NodePool
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        if !cx.desired.target.default_nodepool {
            return Some("--no-default-nodepool".into());
        }
        None
    }

    fn documents(&self, d: &Desired, docs: &Documents) -> Result<Vec<Document>> {
        if self.any_owner || !d.target.default_nodepool {
            return Ok(Vec::new());
        }
        let text = if self.nodepool { &docs.node_pool_yaml } else { &docs.node_class_yaml };
        Ok(vec![Document::yaml(&Resource::id(self), DocKind::Manifest, text)?])
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<()>> {
        let api = cx.cluster_api()?;
        let Some(obj) = api.kube.get(self.api_version, self.kind, None, &self.name).await? else {
            return Ok(Observed::absent());
        };
        let obj = serde_json::to_value(&obj).map_err(|e| {
            Error::new(ErrorKind::ClusterState, format!("cannot read {} {}", self.kind, self.name))
                .with_cause(e.to_string())
        })?;
        let owned = self.any_owner
            || obj["metadata"]["managedFields"]
                .as_array()
                .is_some_and(|m| m.iter().any(|f| f["manager"] == FIELD_MANAGER));
        if self.any_owner {
            return Ok(Observed::present(true, Vec::new(), ()));
        }
        let want = self.desired(cx)?;
        let drift = if contains(&obj["spec"], &want["spec"]) {
            Vec::new()
        } else {
            let diff = diff::documents(&json!({"spec": obj["spec"]}), &json!({"spec": want["spec"]}), Compare::Fields);
            vec![Drift::new("spec differs").with_diff(diff)]
        };
        Ok(Observed::present(owned, drift, ()))
    }

    async fn apply(&self, cx: &Cx, _seen: &Observed<()>) -> Result<()> {
        let api = cx.cluster_api()?;
        api.kube.apply(&self.desired(cx)?).await.map(|_| ())
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed<()>) -> Result<()> {
        let api = cx.cluster_api()?;
        api.kube.delete(self.api_version, self.kind, None, &self.name).await?;
        // Removed means gone: while the controller runs it drains and finalizes them.
        if self.nodepool {
            cx.removal.node_pool_deleted(cx).await
        } else {
            cx.removal.node_class_deleted(cx, &self.name).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containment_allows_server_defaults() {
        let want = json!({"a": {"b": [1, {"c": "2"}]}, "limits": {"cpu": 1000}});
        let have = json!({"a": {"b": [1, {"c": "2", "d": 3}], "e": 1}, "limits": {"cpu": "1000"}, "x": true});
        assert!(contains(&have, &want));
        assert!(!contains(&json!({"a": {"b": [1]}}), &want));
        assert!(!contains(&json!({"a": {"b": [1, {"c": "3"}]}, "limits": {"cpu": 1000}}), &want));
    }
}
