//! Create, read, update and delete by apiVersion/kind: server-side apply with karpctl's field
//! manager, and the dynamic (untyped) objects the rest of karpctl reads as JSON.

use ::kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use ::kube::Client;
use serde_json::Value;

use super::*;
use crate::error::{Error, ErrorKind, Result};

/// The field manager of every server-side apply, so `kubectl` shows who owns which field and
/// a re-apply by karpctl takes its own fields back.
pub const FIELD_MANAGER: &str = "karpctl";

/// The resource type of an `apiVersion` + `kind`, plural by Kubernetes' convention (which holds
/// for everything karpctl touches: `ec2nodeclasses`, `nodepools`, `configmaps`).
pub fn api_resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

impl Kube {
    pub(super) fn api(
        &self,
        client: Client,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        let ar = api_resource(api_version, kind);
        match namespace {
            Some(ns) => Api::namespaced_with(client, ns, &ar),
            None => Api::all_with(client, &ar),
        }
    }

    /// Server-side apply of one manifest, with field manager [`FIELD_MANAGER`] and `force` (so
    /// karpctl takes back fields another manager changed: the desired state wins, as in every
    /// other karpctl resource). Cluster-scoped unless the manifest names a namespace. Returns
    /// the object as the server now has it.
    pub async fn apply(&self, manifest: &Value) -> Result<Value> {
        let field = |p: &str| manifest.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty());
        let (Some(api_version), Some(kind), Some(name)) =
            (field("/apiVersion"), field("/kind"), field("/metadata/name"))
        else {
            return Err(Error::defect("a manifest lacks apiVersion, kind or metadata.name"));
        };
        let namespace = field("/metadata/namespace");
        let api = self.api(self.client().await?, api_version, kind, namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let out = api
            .patch(name, &params, &Patch::Apply(manifest))
            .await
            .map_err(|e| self.error(format!("failed to apply {kind} {name}"), e))?;
        to_value(out)
    }

    /// Server-side apply of every document of a (multi-document) YAML text, in order.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for doc in manifests_from_yaml(yaml)? {
            out.push(self.apply(&doc).await?);
        }
        Ok(out)
    }

    /// One object, or None when it does not exist.
    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<DynamicObject>> {
        self.api(self.client().await?, api_version, kind, namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.error(format!("failed to read {kind} {name}"), e))
    }

    /// The objects of a kind (in `namespace`, or cluster-wide), optionally by label selector.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<DynamicObject>> {
        let mut lp = ListParams::default();
        if let Some(s) = label_selector {
            lp = lp.labels(s);
        }
        let list = self
            .api(self.client().await?, api_version, kind, namespace)
            .list(&lp)
            .await
            .map_err(|e| self.error(format!("failed to list {kind} objects"), e))?;
        Ok(list.items)
    }

    /// Delete one object; `Ok(false)` when it was already gone. Finalizers may keep it a while:
    /// use [`Kube::wait_gone`] to wait for that.
    pub async fn delete(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Result<bool> {
        match self.api(self.client().await?, api_version, kind, namespace).delete(name, &DeleteParams::default()).await
        {
            Ok(_) => Ok(true),
            Err(::kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.error(format!("failed to delete {kind} {name}"), e)),
        }
    }

    /// Remove every finalizer of one object with a JSON merge patch (`finalizers: null`), for
    /// teardown when the controller that owns them is gone; `Ok(false)` when it was already gone.
    pub async fn remove_finalizers(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool> {
        let patch = serde_json::json!({"metadata": {"finalizers": null}});
        self.merge_patch(api_version, kind, namespace, name, &patch, "remove the finalizers of").await
    }

    /// A JSON merge patch of one object (for metadata karpctl does not manage by server-side
    /// apply: finalizers, helm's ownership); `Ok(false)` when the object is gone.
    pub async fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
        doing: &str,
    ) -> Result<bool> {
        match self
            .api(self.client().await?, api_version, kind, namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(::kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.error(format!("failed to {doing} {kind} {name}"), e)),
        }
    }
}

pub(super) fn to_value(obj: DynamicObject) -> Result<Value> {
    serde_json::to_value(obj).map_err(|e| {
        Error::new(ErrorKind::ClusterState, "the cluster API returned an object karpctl cannot read")
            .with_cause(e.to_string())
    })
}

/// The documents of a (multi-document) YAML text as JSON values, empty documents skipped.
pub fn manifests_from_yaml(yaml: &str) -> Result<Vec<Value>> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v = Value::deserialize(doc)
            .map_err(|e| Error::defect("a manifest is not valid YAML").with_cause(e.to_string()))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_and_groups() {
        let r = api_resource("karpenter.k8s.aws/v1", "EC2NodeClass");
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("karpenter.k8s.aws", "v1", "ec2nodeclasses")
        );
        assert_eq!(api_resource("karpenter.sh/v1", "NodePool").plural, "nodepools");
        assert_eq!(api_resource("karpenter.sh/v1", "NodeClaim").plural, "nodeclaims");
        let cm = api_resource("v1", "ConfigMap");
        assert_eq!((cm.group.as_str(), cm.plural.as_str()), ("", "configmaps"));
    }

    #[test]
    fn yaml_documents_become_manifests() {
        let docs = manifests_from_yaml("---\napiVersion: v1\nkind: A\n---\n---\napiVersion: v1\nkind: B\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "B");
    }
}
