//! v1alpha5 `Provisioner` and v1beta1 `NodePool` → v1 `NodePool`.

use serde_json::{json, Map, Value};

use super::common::{
    as_array, as_object, as_str, convert_metadata, duration, join, rename_annotations, scalar_string, seconds,
    string_map, to_object, type_name, Ctx,
};
use super::nodepool_fields::*;
use super::ConvertError;

/// Where a NodePool's nodeClassRef points, which decides where its kubelet settings go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClassRef {
    /// The EC2NodeClass built from this Provisioner's own `spec.provider`.
    Inline,
    /// An EC2NodeClass (or the AWSNodeTemplate it is converted from) of this name.
    Named(String),
    /// Something that is not an EC2NodeClass; kubelet settings cannot follow it.
    Foreign,
}

/// A converted NodePool plus what the EC2NodeClass side needs from it.
pub(crate) struct NodePoolOut {
    pub(crate) name: String,
    pub(crate) nodepool: Value,
    /// The raw `spec.provider` of a Provisioner, converted into an EC2NodeClass later.
    pub(crate) inline_provider: Option<Value>,
    pub(crate) class_ref: ClassRef,
    /// Kubelet settings that v1 keeps on the EC2NodeClass instead.
    pub(crate) kubelet: Option<Value>,
    /// Source path of those settings, for warnings.
    pub(crate) kubelet_field: String,
}

pub(super) const KUBELET_FIELDS: &[&str] = &[
    "clusterDNS",
    "maxPods",
    "podsPerCore",
    "systemReserved",
    "kubeReserved",
    "evictionHard",
    "evictionSoft",
    "evictionSoftGracePeriod",
    "evictionMaxPodGracePeriod",
    "imageGCHighThresholdPercent",
    "imageGCLowThresholdPercent",
    "cpuCFSQuota",
];

pub(super) const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Gte", "Lte"];

pub(super) const INSTANCE_SHAPE_KEYS: &[&str] = &[
    "node.kubernetes.io/instance-type",
    "karpenter.k8s.aws/instance-family",
    "karpenter.k8s.aws/instance-category",
    "karpenter.k8s.aws/instance-generation",
];

/// Top-level keys other than the usual four are not part of any Karpenter object.
pub(crate) fn warn_top_level(doc: &Value, ctx: &mut Ctx) {
    if let Some(map) = doc.as_object() {
        for key in map.keys() {
            if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "spec" | "status") {
                ctx.warn(key, "unknown top-level field; not converted");
            }
        }
    }
}

pub(super) fn spec_of<'a>(doc: &'a Value, ctx: &Ctx) -> Result<Option<&'a Map<String, Value>>, ConvertError> {
    match doc.get("spec") {
        None | Some(Value::Null) => Ok(None),
        Some(spec) => as_object(spec, "spec", ctx).map(Some),
    }
}

/// Converts a v1alpha5 Provisioner. The old API applied several defaults silently (in its
/// webhook and at runtime); they are written out so the NodePool behaves the same.
pub(crate) fn from_provisioner(doc: &Value, ctx: &mut Ctx) -> Result<NodePoolOut, ConvertError> {
    warn_top_level(doc, ctx);
    let (name, metadata) = convert_metadata(doc, ctx)?;
    let empty = Map::new();
    let spec = spec_of(doc, ctx)?.unwrap_or(&empty);

    let provider = spec.get("provider").filter(|v| !v.is_null());
    let provider_ref = spec.get("providerRef").filter(|v| !v.is_null());
    let (class_ref, node_class_name, inline_provider) = match (provider, provider_ref) {
        (Some(_), Some(_)) => {
            return Err(ConvertError::AmbiguousProvider { position: Box::new(ctx.position.clone()), name })
        }
        (None, None) => return Err(ConvertError::MissingProvider { position: Box::new(ctx.position.clone()), name }),
        (Some(p), None) => {
            as_object(p, "spec.provider", ctx)?;
            (ClassRef::Inline, name.clone(), Some(p.clone()))
        }
        (None, Some(r)) => {
            let target = provider_ref_name(r, ctx)?;
            (ClassRef::Named(target.clone()), target, None)
        }
    };

    for key in spec.keys() {
        if !matches!(
            key.as_str(),
            "labels"
                | "annotations"
                | "requirements"
                | "taints"
                | "startupTaints"
                | "kubeletConfiguration"
                | "provider"
                | "providerRef"
                | "ttlSecondsAfterEmpty"
                | "ttlSecondsUntilExpired"
                | "limits"
                | "weight"
                | "consolidation"
        ) {
            ctx.warn(&join("spec", key), "no v1 equivalent; not converted");
        }
    }

    let labels = match spec.get("labels") {
        Some(v) if !v.is_null() => template_labels(v, "spec.labels", ctx)?,
        _ => Vec::new(),
    };
    let annotations = match spec.get("annotations") {
        Some(v) if !v.is_null() => {
            let pairs = string_map(v, "spec.annotations", ctx)?;
            rename_annotations(pairs, "spec.annotations", ctx)
        }
        _ => Vec::new(),
    };
    let mut requirements = match spec.get("requirements") {
        Some(v) if !v.is_null() => convert_requirements(v, "spec.requirements", ctx)?,
        _ => Vec::new(),
    };
    add_old_default_requirements(&mut requirements, &labels);

    let mut template_spec = Map::new();
    template_spec.insert(
        "nodeClassRef".into(),
        json!({"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class_name}),
    );
    template_spec.insert("requirements".into(), Value::Array(requirements));
    for key in ["taints", "startupTaints"] {
        if let Some(v) = spec.get(key).filter(|v| !v.is_null()) {
            let taints = convert_taints(v, &join("spec", key), ctx)?;
            if !taints.is_empty() {
                template_spec.insert(key.into(), Value::Array(taints));
            }
        }
    }
    // v1alpha5 nodes never expired unless ttlSecondsUntilExpired was set; v1 defaults to
    // 720h, so "no expiry" must be spelled out.
    let expire_after = match spec.get("ttlSecondsUntilExpired").filter(|v| !v.is_null()) {
        Some(v) => duration(seconds(v, "spec.ttlSecondsUntilExpired", ctx)?),
        None => "Never".to_string(),
    };
    template_spec.insert("expireAfter".into(), Value::String(expire_after));

    let disruption = provisioner_disruption(spec, ctx)?;

    let kubelet = match spec.get("kubeletConfiguration") {
        Some(v) if !v.is_null() => convert_kubelet(v, "spec.kubeletConfiguration", ctx)?,
        _ => None,
    };

    let limits = match spec.get("limits").filter(|v| !v.is_null()) {
        Some(v) => {
            let obj = as_object(v, "spec.limits", ctx)?;
            for key in obj.keys().filter(|k| *k != "resources") {
                ctx.warn(&join("spec.limits", key), "no v1 equivalent; not converted");
            }
            match obj.get("resources").filter(|v| !v.is_null()) {
                Some(resources) => Some(convert_limits(resources, "spec.limits.resources", ctx)?),
                None => None,
            }
        }
        None => None,
    };
    let weight = match spec.get("weight").filter(|v| !v.is_null()) {
        Some(v) => Some(convert_weight(v, "spec.weight", ctx)?),
        None => None,
    };

    let nodepool = assemble(metadata, labels, annotations, template_spec, Some(disruption), limits, weight);
    Ok(NodePoolOut {
        name,
        nodepool,
        inline_provider,
        class_ref,
        kubelet,
        kubelet_field: "spec.kubeletConfiguration".into(),
    })
}

pub(super) fn provider_ref_name(value: &Value, ctx: &mut Ctx) -> Result<String, ConvertError> {
    let obj = as_object(value, "spec.providerRef", ctx)?;
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != "AWSNodeTemplate" {
            return Err(ctx.invalid_with_hint(
                "spec.providerRef.kind",
                format!("{kind:?} is not an AWSNodeTemplate; only the AWS provider can be converted"),
                "point providerRef at an AWSNodeTemplate",
            ));
        }
    }
    for key in obj.keys() {
        if !matches!(key.as_str(), "name" | "kind" | "apiVersion") {
            ctx.warn(&join("spec.providerRef", key), "no v1 equivalent; not converted");
        }
    }
    match obj.get("name") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ctx.invalid_with_hint(
            "spec.providerRef.name",
            "missing",
            "set providerRef.name to the AWSNodeTemplate's name",
        )),
    }
}

/// Old emptiness TTL and consolidation become one v1 policy. With neither set, v1alpha5
/// never removed nodes for being empty or underused; v1 would consolidate by default, so
/// that is spelled out as `consolidateAfter: Never`.
pub(super) fn provisioner_disruption(spec: &Map<String, Value>, ctx: &mut Ctx) -> Result<Value, ConvertError> {
    let ttl_empty = match spec.get("ttlSecondsAfterEmpty").filter(|v| !v.is_null()) {
        Some(v) => Some(seconds(v, "spec.ttlSecondsAfterEmpty", ctx)?),
        None => None,
    };
    let mut consolidation = false;
    if let Some(v) = spec.get("consolidation").filter(|v| !v.is_null()) {
        let obj = as_object(v, "spec.consolidation", ctx)?;
        for key in obj.keys().filter(|k| *k != "enabled") {
            ctx.warn(&join("spec.consolidation", key), "no v1 equivalent; not converted");
        }
        consolidation = match obj.get("enabled") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ctx.invalid(
                    "spec.consolidation.enabled",
                    format!("expected true or false, found {}", type_name(other)),
                ))
            }
        };
    }
    Ok(match (consolidation, ttl_empty) {
        (true, ttl) => {
            if ttl.is_some() {
                ctx.warn(
                    "spec.ttlSecondsAfterEmpty",
                    "cannot be combined with consolidation.enabled (the old API rejected both); consolidation wins and this TTL is not converted",
                );
            }
            json!({"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "0s"})
        }
        (false, Some(ttl)) => {
            json!({"consolidationPolicy": "WhenEmpty", "consolidateAfter": duration(ttl)})
        }
        (false, None) => json!({"consolidationPolicy": "WhenEmpty", "consolidateAfter": "Never"}),
    })
}

/// Converts a v1beta1 NodePool: `disruption.expireAfter` moves into the template,
/// `WhenUnderutilized` is renamed, `nodeClassRef.apiVersion` becomes `group`, and the
/// kubelet block leaves for the EC2NodeClass.
pub(crate) fn from_v1beta1(doc: &Value, ctx: &mut Ctx) -> Result<NodePoolOut, ConvertError> {
    warn_top_level(doc, ctx);
    let (name, metadata) = convert_metadata(doc, ctx)?;
    let empty = Map::new();
    let spec = spec_of(doc, ctx)?.unwrap_or(&empty);
    for key in spec.keys() {
        if !matches!(key.as_str(), "template" | "disruption" | "limits" | "weight") {
            ctx.warn(&join("spec", key), "no v1 equivalent; not converted");
        }
    }
    let template = match spec.get("template") {
        Some(t) if !t.is_null() => as_object(t, "spec.template", ctx)?,
        _ => return Err(ctx.invalid("spec.template", "missing; a NodePool needs a template")),
    };
    for key in template.keys() {
        if !matches!(key.as_str(), "metadata" | "spec") {
            ctx.warn(&join("spec.template", key), "no v1 equivalent; not converted");
        }
    }

    let mut labels = Vec::new();
    let mut annotations = Vec::new();
    if let Some(meta) = template.get("metadata").filter(|v| !v.is_null()) {
        let meta = as_object(meta, "spec.template.metadata", ctx)?;
        for (key, value) in meta {
            let field = join("spec.template.metadata", key);
            match key.as_str() {
                "labels" => labels = template_labels(value, &field, ctx)?,
                "annotations" => {
                    let pairs = string_map(value, &field, ctx)?;
                    annotations = rename_annotations(pairs, &field, ctx);
                }
                _ => ctx.warn(&field, "no v1 equivalent; not converted"),
            }
        }
    }

    let tspec = match template.get("spec") {
        Some(s) if !s.is_null() => as_object(s, "spec.template.spec", ctx)?,
        _ => return Err(ctx.invalid("spec.template.spec", "missing; a NodePool template needs a spec")),
    };
    let mut template_spec = Map::new();
    let (class_ref, node_class_ref) = match tspec.get("nodeClassRef") {
        Some(r) if !r.is_null() => v1beta1_node_class_ref(r, ctx)?,
        _ => {
            return Err(ctx.invalid_with_hint(
                "spec.template.spec.nodeClassRef",
                "missing; v1 requires every NodePool to name its EC2NodeClass",
                "add nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: NAME}",
            ))
        }
    };
    template_spec.insert("nodeClassRef".into(), node_class_ref);
    let requirements = match tspec.get("requirements") {
        Some(v) if !v.is_null() => convert_requirements(v, "spec.template.spec.requirements", ctx)?,
        _ => Vec::new(),
    };
    template_spec.insert("requirements".into(), Value::Array(requirements));
    for key in ["taints", "startupTaints"] {
        if let Some(v) = tspec.get(key).filter(|v| !v.is_null()) {
            let taints = convert_taints(v, &join("spec.template.spec", key), ctx)?;
            if !taints.is_empty() {
                template_spec.insert(key.into(), Value::Array(taints));
            }
        }
    }
    let mut kubelet = None;
    for (key, value) in tspec {
        let field = join("spec.template.spec", key);
        match key.as_str() {
            "nodeClassRef" | "requirements" | "taints" | "startupTaints" => {}
            "kubelet" if !value.is_null() => kubelet = convert_kubelet(value, &field, ctx)?,
            "kubelet" => {}
            "resources" => {
                let has_content = value.as_object().is_some_and(|m| {
                    m.values().any(|v| match v {
                        Value::Object(inner) => !inner.is_empty(),
                        Value::Null => false,
                        _ => true,
                    })
                });
                if has_content {
                    ctx.warn(&field, "no v1 equivalent (NodePools cannot reserve resources); not converted");
                }
            }
            _ => ctx.warn(&field, "no v1 equivalent; not converted"),
        }
    }

    let mut disruption = None;
    if let Some(d) = spec.get("disruption").filter(|v| !v.is_null()) {
        let d = as_object(d, "spec.disruption", ctx)?;
        let mut out = Map::new();
        let policy = match d.get("consolidationPolicy").filter(|v| !v.is_null()) {
            None => "WhenEmptyOrUnderutilized",
            Some(v) => match as_str(v, "spec.disruption.consolidationPolicy", ctx)? {
                "WhenUnderutilized" | "WhenEmptyOrUnderutilized" => "WhenEmptyOrUnderutilized",
                "WhenEmpty" => "WhenEmpty",
                other => {
                    return Err(ctx.invalid(
                        "spec.disruption.consolidationPolicy",
                        format!("{other:?} is neither WhenEmpty nor WhenUnderutilized"),
                    ))
                }
            },
        };
        out.insert("consolidationPolicy".into(), Value::String(policy.into()));
        // v1 requires consolidateAfter; v1beta1's WhenUnderutilized acted without delay,
        // which is 0s (the value Karpenter's own conversion webhook uses).
        let consolidate_after = match d.get("consolidateAfter").filter(|v| !v.is_null()) {
            Some(v) => scalar_string(v, "spec.disruption.consolidateAfter", ctx)?,
            None => "0s".to_string(),
        };
        out.insert("consolidateAfter".into(), Value::String(consolidate_after));
        for (key, value) in d {
            let field = join("spec.disruption", key);
            match key.as_str() {
                "consolidationPolicy" | "consolidateAfter" => {}
                "expireAfter" if !value.is_null() => {
                    let expire = scalar_string(value, &field, ctx)?;
                    template_spec.insert("expireAfter".into(), Value::String(expire));
                }
                "budgets" if !value.is_null() => {
                    as_array(value, &field, ctx)?;
                    out.insert("budgets".into(), value.clone());
                }
                "expireAfter" | "budgets" => {}
                _ => ctx.warn(&field, "no v1 equivalent; not converted"),
            }
        }
        disruption = Some(Value::Object(out));
    }
    if let Some(tgp) = tspec.get("terminationGracePeriod").filter(|v| !v.is_null()) {
        template_spec.insert("terminationGracePeriod".into(), tgp.clone());
    }

    let limits = match spec.get("limits").filter(|v| !v.is_null()) {
        Some(v) => Some(convert_limits(v, "spec.limits", ctx)?),
        None => None,
    };
    let weight = match spec.get("weight").filter(|v| !v.is_null()) {
        Some(v) => Some(convert_weight(v, "spec.weight", ctx)?),
        None => None,
    };
    let nodepool = assemble(metadata, labels, annotations, template_spec, disruption, limits, weight);
    Ok(NodePoolOut {
        name,
        nodepool,
        inline_provider: None,
        class_ref,
        kubelet,
        kubelet_field: "spec.template.spec.kubelet".into(),
    })
}

pub(super) fn v1beta1_node_class_ref(value: &Value, ctx: &mut Ctx) -> Result<(ClassRef, Value), ConvertError> {
    let field = "spec.template.spec.nodeClassRef";
    let obj = as_object(value, field, ctx)?;
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ctx.invalid(&join(field, "name"), "missing")),
    };
    let group = match (obj.get("group").and_then(Value::as_str), obj.get("apiVersion").and_then(Value::as_str)) {
        (Some(group), _) => group.to_string(),
        (None, Some(api_version)) => api_version.split('/').next().unwrap_or_default().to_string(),
        (None, None) => "karpenter.k8s.aws".to_string(),
    };
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("EC2NodeClass").to_string();
    for key in obj.keys() {
        if !matches!(key.as_str(), "name" | "kind" | "apiVersion" | "group") {
            ctx.warn(&join(field, key), "no v1 equivalent; not converted");
        }
    }
    let class_ref = if group == "karpenter.k8s.aws" && kind == "EC2NodeClass" {
        ClassRef::Named(name.clone())
    } else {
        ClassRef::Foreign
    };
    Ok((class_ref, json!({"group": group, "kind": kind, "name": name})))
}

/// Builds the NodePool in a fixed key order, so output is stable and reads like the
/// Karpenter docs: apiVersion, kind, metadata, spec{template, disruption, limits, weight}.
pub(super) fn assemble(
    metadata: Map<String, Value>,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    template_spec: Map<String, Value>,
    disruption: Option<Value>,
    limits: Option<Value>,
    weight: Option<Value>,
) -> Value {
    let mut template = Map::new();
    let mut template_meta = Map::new();
    if !labels.is_empty() {
        template_meta.insert("labels".into(), Value::Object(to_object(labels)));
    }
    if !annotations.is_empty() {
        template_meta.insert("annotations".into(), Value::Object(to_object(annotations)));
    }
    if !template_meta.is_empty() {
        template.insert("metadata".into(), Value::Object(template_meta));
    }
    // Keep the documented field order inside the template spec regardless of the order
    // fields were added in.
    let mut ordered = Map::new();
    for key in ["nodeClassRef", "requirements", "taints", "startupTaints", "expireAfter", "terminationGracePeriod"] {
        if let Some(v) = template_spec.get(key) {
            ordered.insert(key.into(), v.clone());
        }
    }
    template.insert("spec".into(), Value::Object(ordered));

    let mut spec = Map::new();
    spec.insert("template".into(), Value::Object(template));
    if let Some(d) = disruption {
        spec.insert("disruption".into(), d);
    }
    if let Some(l) = limits {
        spec.insert("limits".into(), l);
    }
    if let Some(w) = weight {
        spec.insert("weight".into(), w);
    }
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": Value::Object(metadata),
        "spec": Value::Object(spec),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::Position;

    fn ctx() -> Ctx {
        Ctx::new(Position { source: "t".into(), document: 1, item: None, line: None, object: None })
    }

    fn provisioner(spec: Value) -> Value {
        json!({"apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn defaults_are_added_only_for_unconstrained_keys() {
        let mut c = ctx();
        let doc = provisioner(json!({
            "providerRef": {"name": "t"},
            "labels": {"kubernetes.io/arch": "arm64"},
            "requirements": [{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["m5"]}],
        }));
        let out = from_provisioner(&doc, &mut c).unwrap();
        let keys: Vec<&str> = out.nodepool["spec"]["template"]["spec"]["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, vec!["karpenter.k8s.aws/instance-family", "kubernetes.io/os", "karpenter.sh/capacity-type"]);
    }

    #[test]
    fn no_ttl_means_never() {
        let mut c = ctx();
        let out = from_provisioner(&provisioner(json!({"providerRef": {"name": "t"}})), &mut c).unwrap();
        assert_eq!(out.nodepool["spec"]["template"]["spec"]["expireAfter"], "Never");
        assert_eq!(
            out.nodepool["spec"]["disruption"],
            json!({"consolidationPolicy": "WhenEmpty", "consolidateAfter": "Never"})
        );
        assert_eq!(out.class_ref, ClassRef::Named("t".into()));
    }

    #[test]
    fn consolidation_and_ttl_together_warn() {
        let mut c = ctx();
        let doc = provisioner(
            json!({"providerRef": {"name": "t"}, "consolidation": {"enabled": true}, "ttlSecondsAfterEmpty": 30}),
        );
        let out = from_provisioner(&doc, &mut c).unwrap();
        assert_eq!(out.nodepool["spec"]["disruption"]["consolidationPolicy"], "WhenEmptyOrUnderutilized");
        assert_eq!(c.into_warnings().len(), 1);
    }

    #[test]
    fn provider_problems_are_errors() {
        let mut c = ctx();
        assert!(matches!(from_provisioner(&provisioner(json!({})), &mut c), Err(ConvertError::MissingProvider { .. })));
        assert!(matches!(
            from_provisioner(&provisioner(json!({"provider": {}, "providerRef": {"name": "x"}})), &mut c),
            Err(ConvertError::AmbiguousProvider { .. })
        ));
        assert!(from_provisioner(&provisioner(json!({"providerRef": {"kind": "Other", "name": "x"}})), &mut c).is_err());
        assert!(from_provisioner(&provisioner(json!({"providerRef": {}})), &mut c).is_err());
    }

    #[test]
    fn bad_operator_and_weight_are_errors() {
        let mut c = ctx();
        let doc = provisioner(json!({"providerRef": {"name": "t"}, "requirements": [{"key": "a", "operator": "Has"}]}));
        assert!(from_provisioner(&doc, &mut c).is_err());
        let doc = provisioner(json!({"providerRef": {"name": "t"}, "weight": 0}));
        assert!(from_provisioner(&doc, &mut c).is_err());
    }

    #[test]
    fn v1beta1_foreign_node_class_is_kept() {
        let mut c = ctx();
        let doc = json!({"apiVersion": "karpenter.sh/v1beta1", "kind": "NodePool", "metadata": {"name": "n"},
            "spec": {"template": {"spec": {"nodeClassRef": {"apiVersion": "example.com/v1", "kind": "Other", "name": "o"}}}}});
        let out = from_v1beta1(&doc, &mut c).unwrap();
        assert_eq!(out.class_ref, ClassRef::Foreign);
        assert_eq!(
            out.nodepool["spec"]["template"]["spec"]["nodeClassRef"],
            json!({"group": "example.com", "kind": "Other", "name": "o"})
        );
    }

    #[test]
    fn v1beta1_without_node_class_ref_is_an_error() {
        let mut c = ctx();
        let doc = json!({"apiVersion": "karpenter.sh/v1beta1", "kind": "NodePool", "metadata": {"name": "n"},
            "spec": {"template": {"spec": {}}}});
        assert!(from_v1beta1(&doc, &mut c).is_err());
    }
}
