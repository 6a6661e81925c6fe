//! `karpctl convert`: old Karpenter manifests (v1alpha5 `Provisioner`, v1alpha1
//! `AWSNodeTemplate`, v1beta1 `NodePool` / `EC2NodeClass`) to the v1 API.
//!
//! Karpenter v1 no longer serves the old APIs, so clusters that still keep those
//! manifests in Git cannot upgrade until every one is rewritten. This module does the
//! rewrite offline and deterministically: same input, same output, byte for byte.
//!
//! The conversion is meant to keep behaviour, not just syntax: defaults that the old
//! API applied silently (requirements, no expiry, no consolidation, IMDS hop limit 2)
//! are written out, and everything that has no v1 equivalent is reported as a warning
//! instead of disappearing. What cannot be converted into a valid v1 object at all is an
//! error that names the document and the field.
//!
//! The CLI (`-f FILE|DIR|-`, `--dir`, `-o json`) lives elsewhere; this module only turns
//! YAML text into JSON values and back.

mod common;
mod error;
mod nodeclass;
mod nodeclass_fields;
mod nodepool;
mod nodepool_fields;
mod source;

pub use error::{ConvertError, Position};
use source::*;

use std::collections::HashMap;

use serde_json::Value;

use common::{api_group_version, kind_of, name_of, Ctx};

/// Options that change what `convert` writes; they mirror the CLI flags so the command
/// can pass them straight through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// `--node-role NAME`: the IAM role for converted EC2NodeClasses. Old manifests name
    /// an instance profile (or nothing, relying on a global default that v1 dropped); v1
    /// prefers a role, from which Karpenter manages the instance profile itself. Given,
    /// it replaces any `instanceProfile`; a v1beta1 `role` already set is kept.
    pub node_role: Option<String>,
    /// `--strict`: treat the first warning as an error, for CI pipelines that must not
    /// accept a conversion that lost or changed anything.
    pub strict: bool,
}

/// The result of a conversion: what to print, and what the user must look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Converted {
    /// Output documents in input order: converted Karpenter objects (a Provisioner with an
    /// inline provider becomes a NodePool followed by its EC2NodeClass) and every unrelated
    /// document unchanged.
    pub documents: Vec<Value>,
    /// One line each, already naming the source, the document and the field; printed on
    /// stderr by the CLI. Never contains the same warning twice.
    pub warnings: Vec<String>,
}

/// Converts one YAML stream (one or more documents). `source_name` is only used in
/// messages. Equivalent to [`convert_sources`] with a single source.
pub fn convert_stream(source_name: &str, yaml: &str, opts: &ConvertOptions) -> Result<Converted, ConvertError> {
    convert_sources(&[(source_name.to_string(), yaml.to_string())], opts)
}

/// Converts several sources as one stream, so that a Provisioner in one file finds the
/// AWSNodeTemplate it references in another (what `-f DIR` needs). Sources are read in
/// the order given; the caller sorts directory entries for a stable result.
pub fn convert_sources(sources: &[(String, String)], opts: &ConvertOptions) -> Result<Converted, ConvertError> {
    let mut units = Vec::new();
    for (name, text) in sources {
        units.extend(parse_source(name, text)?);
    }
    convert_units(units, opts)
}

/// Renders documents as a multi-document YAML stream separated by `---`, keeping the key
/// order of each value (apiVersion, kind, metadata, spec for converted objects).
pub fn to_yaml(documents: &[Value]) -> Result<String, ConvertError> {
    let mut out = String::new();
    for (i, doc) in documents.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = serde_yaml_ng::to_string(doc).map_err(|e| ConvertError::Render { message: e.to_string() })?;
        out.push_str(&text);
    }
    Ok(out)
}

/// The contract's resource name for a document (`nodepool/default`,
/// `configmap/NAMESPACE/NAME`), for the `resource` field of `-o json` output.
pub fn resource_name(document: &Value) -> String {
    let kind = kind_of(document).unwrap_or("document").to_ascii_lowercase();
    let name = name_of(document).unwrap_or("-");
    match document.get("metadata").and_then(|m| m.get("namespace")).and_then(Value::as_str) {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// File names for `--dir OUT`, one per document: `<kind>-<name>.yaml` in lower case
/// (`nodepool-default.yaml`), with the namespace for namespaced objects and a numeric
/// suffix when two documents would collide, so nothing is overwritten.
pub fn output_file_names(documents: &[Value]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    documents
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let kind = kind_of(doc).unwrap_or("document").to_ascii_lowercase();
            let name = name_of(doc).map(str::to_string).unwrap_or_else(|| (i + 1).to_string());
            let namespace = doc.get("metadata").and_then(|m| m.get("namespace")).and_then(Value::as_str);
            let mut stem = match namespace {
                Some(ns) => format!("{kind}-{ns}-{name}"),
                None => format!("{kind}-{name}"),
            };
            stem =
                stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
            let count = seen.entry(stem.clone()).or_insert(0);
            *count += 1;
            if *count > 1 {
                format!("{stem}-{count}.yaml")
            } else {
                format!("{stem}.yaml")
            }
        })
        .collect()
}

/// A NodePool's claim on the kubelet configuration of the EC2NodeClass it uses.
struct KubeletClaim {
    unit: usize,
    /// Name of the EC2NodeClass.
    key: String,
    kubelet: Option<Value>,
    field: String,
}

fn convert_units(units: Vec<Unit>, opts: &ConvertOptions) -> Result<Converted, ConvertError> {
    let n = units.len();
    let mut ctxs: Vec<Ctx> = units.iter().map(|u| Ctx::new(u.position.clone())).collect();
    let mut classes = Vec::with_capacity(n);
    let mut errors: Vec<Option<ConvertError>> = (0..n).map(|_| None).collect();
    for (i, unit) in units.iter().enumerate() {
        match classify(unit) {
            Ok(class) => classes.push(class),
            Err(e) => {
                classes.push(Class::PassThrough);
                errors[i] = Some(e);
            }
        }
    }

    // EC2NodeClasses this stream will produce from old documents, by name: the targets a
    // Provisioner's providerRef or a v1beta1 NodePool's nodeClassRef can resolve to.
    let mut class_units: HashMap<String, usize> = HashMap::new();
    for (i, unit) in units.iter().enumerate() {
        let inline_provider = unit.value.pointer("/spec/provider").is_some_and(|p| !p.is_null());
        let produces_class = match classes[i] {
            Class::AwsNodeTemplate | Class::Ec2NodeClassV1beta1 => true,
            Class::Provisioner => inline_provider,
            _ => false,
        };
        if produces_class {
            if let Some(name) = name_of(&unit.value) {
                class_units.entry(name.to_string()).or_insert(i);
            }
        }
    }

    // Pass 1: NodePools. Their kubelet settings move to EC2NodeClasses, which are built in
    // pass 2, whatever the document order.
    let mut nodepools: Vec<Option<nodepool::NodePoolOut>> = (0..n).map(|_| None).collect();
    let mut claims = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        if errors[i].is_some() {
            continue;
        }
        let result = match classes[i] {
            Class::Provisioner => {
                if unit.value.get("apiVersion").and_then(Value::as_str) == Some("karpenter.sh/v1beta1") {
                    ctxs[i].warn(
                        "apiVersion",
                        "karpenter.sh/v1beta1 never had a Provisioner kind; converted as karpenter.sh/v1alpha5 Provisioner",
                    );
                }
                nodepool::from_provisioner(&unit.value, &mut ctxs[i])
            }
            Class::NodePoolV1beta1 => nodepool::from_v1beta1(&unit.value, &mut ctxs[i]),
            _ => continue,
        };
        match result {
            Ok(out) => {
                let key = match &out.class_ref {
                    nodepool::ClassRef::Inline => Some(out.name.clone()),
                    nodepool::ClassRef::Named(name) => Some(name.clone()),
                    nodepool::ClassRef::Foreign => None,
                };
                if let Some(key) = key {
                    claims.push(KubeletClaim {
                        unit: i,
                        key,
                        kubelet: out.kubelet.clone(),
                        field: out.kubelet_field.clone(),
                    });
                } else if out.kubelet.is_some() {
                    ctxs[i].warn(
                        &out.kubelet_field,
                        "kubelet settings belong to the EC2NodeClass in v1, but nodeClassRef does not point to an EC2NodeClass; not converted",
                    );
                }
                nodepools[i] = Some(out);
            }
            Err(e) => errors[i] = Some(e),
        }
    }

    let kubelets = resolve_kubelet_claims(&claims, &units, &class_units, &mut ctxs);

    // Pass 2: EC2NodeClasses, from AWSNodeTemplates, inline providers and v1beta1.
    let mut nodeclasses: Vec<Option<Value>> = (0..n).map(|_| None).collect();
    for (i, unit) in units.iter().enumerate() {
        if errors[i].is_some() {
            continue;
        }
        let result = match classes[i] {
            Class::Provisioner => {
                let Some(out) = &nodepools[i] else { continue };
                let Some(provider) = &out.inline_provider else {
                    continue;
                };
                let kubelet = kubelets.get(&out.name).cloned();
                nodeclass::from_v1alpha1(provider, &out.name, "spec.provider", None, kubelet, opts, &mut ctxs[i])
            }
            Class::AwsNodeTemplate | Class::Ec2NodeClassV1beta1 => {
                let kubelet = name_of(&unit.value).and_then(|name| kubelets.get(name)).cloned();
                if classes[i] == Class::AwsNodeTemplate {
                    nodeclass::from_aws_node_template(&unit.value, kubelet, opts, &mut ctxs[i])
                } else {
                    nodeclass::from_v1beta1(&unit.value, kubelet, opts, &mut ctxs[i])
                }
            }
            _ => continue,
        };
        match result {
            Ok(v) => nodeclasses[i] = Some(v),
            Err(e) => errors[i] = Some(e),
        }
    }

    if let Some(e) = errors.into_iter().flatten().next() {
        return Err(e);
    }

    let mut documents = Vec::new();
    let mut produced: HashMap<(String, String), Position> = HashMap::new();
    for (i, unit) in units.into_iter().enumerate() {
        let mut outputs = Vec::new();
        match classes[i] {
            Class::Provisioner | Class::NodePoolV1beta1 => {
                if let Some(out) = nodepools[i].take() {
                    outputs.push(out.nodepool);
                }
                if let Some(class) = nodeclasses[i].take() {
                    outputs.push(class);
                }
            }
            Class::AwsNodeTemplate | Class::Ec2NodeClassV1beta1 => {
                if let Some(class) = nodeclasses[i].take() {
                    outputs.push(class);
                }
            }
            Class::PassThrough => {
                common::warn_old_keys(&unit.value, &mut ctxs[i]);
                outputs.push(unit.value);
            }
        }
        for doc in outputs {
            check_duplicate(&doc, &unit.position, &mut produced)?;
            documents.push(doc);
        }
    }

    let mut warnings = Vec::new();
    for ctx in ctxs {
        for w in ctx.into_warnings() {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
    if opts.strict {
        if let Some(first) = warnings.first() {
            return Err(ConvertError::StrictWarning { warning: first.clone() });
        }
    }
    Ok(Converted { documents, warnings })
}

fn check_duplicate(
    doc: &Value,
    position: &Position,
    produced: &mut HashMap<(String, String), Position>,
) -> Result<(), ConvertError> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let (group, _) = api_group_version(api_version);
    let kind = kind_of(doc).unwrap_or_default();
    let relevant = matches!((group, kind), ("karpenter.sh", "NodePool") | ("karpenter.k8s.aws", "EC2NodeClass"));
    let Some(name) = name_of(doc) else {
        return Ok(());
    };
    if !relevant {
        return Ok(());
    }
    let key = (kind.to_string(), name.to_string());
    if let Some(first) = produced.get(&key) {
        return Err(ConvertError::Duplicate {
            position: Box::new(position.clone()),
            kind: kind.to_string(),
            name: name.to_string(),
            first: Box::new(first.clone()),
        });
    }
    produced.insert(key, position.clone());
    Ok(())
}

/// Decides which kubelet configuration each EC2NodeClass gets. v1 has one kubelet block
/// per EC2NodeClass, so NodePools that shared a node template but differed in kubelet
/// settings cannot all be honoured: the first NodePool in document order wins and the
/// others get a warning (the v1 migration guide asks for separate EC2NodeClasses then).
fn resolve_kubelet_claims(
    claims: &[KubeletClaim],
    units: &[Unit],
    class_units: &HashMap<String, usize>,
    ctxs: &mut [Ctx],
) -> HashMap<String, Value> {
    let mut winners: HashMap<String, &KubeletClaim> = HashMap::new();
    let mut result = HashMap::new();
    for claim in claims {
        let name = &claim.key;
        if !class_units.contains_key(name) {
            if let Some(kubelet) = &claim.kubelet {
                ctxs[claim.unit].warn(
                    &claim.field,
                    format!(
                        "kubelet settings moved to EC2NodeClass.spec.kubelet in v1, but EC2NodeClass {name:?} is not converted from this input; add spec.kubelet {kubelet} to it by hand"
                    ),
                );
            }
            continue;
        }
        match winners.get(&claim.key) {
            None => {
                if let Some(kubelet) = &claim.kubelet {
                    result.insert(claim.key.clone(), kubelet.clone());
                }
                winners.insert(claim.key.clone(), claim);
            }
            Some(first) if first.kubelet == claim.kubelet => {}
            Some(first) => {
                let first_label = units[first.unit]
                    .position
                    .object
                    .clone()
                    .unwrap_or_else(|| format!("document {}", units[first.unit].position.document));
                let class_name = &claim.key;
                let message = match &claim.kubelet {
                    Some(kubelet) => format!(
                        "EC2NodeClass {class_name:?} is shared with {first_label}, whose kubelet settings it takes; these ({kubelet}) are not applied: give this NodePool its own EC2NodeClass"
                    ),
                    None => format!(
                        "this NodePool had no kubelet settings, but EC2NodeClass {class_name:?} is shared with {first_label} and takes its kubelet settings: give this NodePool its own EC2NodeClass"
                    ),
                };
                let field = if claim.kubelet.is_some() { claim.field.clone() } else { "spec".to_string() };
                ctxs[claim.unit].warn(&field, message);
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ConvertOptions {
        ConvertOptions::default()
    }

    #[test]
    fn document_start_lines_follow_markers() {
        let text = "# comment\napiVersion: v1\n---\n\nkind: A\n--- # x\n---\na: 1\n";
        assert_eq!(document_start_lines(text), vec![2, 5, 7, 8]);
        assert_eq!(document_start_lines("---\na: 1\n"), vec![2]);
    }

    #[test]
    fn position_display_is_one_line() {
        let p = Position {
            source: "f.yaml".into(),
            document: 2,
            item: Some(3),
            line: Some(7),
            object: Some("Provisioner/default".into()),
        };
        assert_eq!(p.to_string(), "f.yaml: document 2 item 3 (line 7, Provisioner/default)");
    }

    #[test]
    fn yaml_error_reports_document_and_line() {
        let err = convert_stream("in.yaml", "a: 1\n---\nb: [\n", &opts()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("in.yaml: document 2 (line "), "{text}");
        assert!(!text.contains('\n'));
        assert!(err.hint().is_some());
    }

    #[test]
    fn unrelated_documents_pass_through_in_order() {
        let input = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: '1'}\n---\n---\nplain: scalar\n";
        let out = convert_stream("-", input, &opts()).unwrap();
        assert_eq!(out.documents.len(), 2);
        assert_eq!(out.documents[0]["data"]["x"], "1");
        assert!(out.warnings.is_empty());
    }

    #[test]
    fn yaml_tags_are_rejected() {
        let err = convert_stream("-", "a: !Ref b\n", &opts()).unwrap_err();
        assert!(matches!(err, ConvertError::UnsupportedYaml { .. }), "{err}");
    }

    #[test]
    fn unknown_karpenter_version_is_an_error() {
        let err = convert_stream("-", "apiVersion: karpenter.sh/v1alpha3\nkind: Provisioner\n", &opts()).unwrap_err();
        assert!(matches!(err, ConvertError::UnknownApiVersion { .. }));
    }

    #[test]
    fn nodeclaims_are_not_converted() {
        let err =
            convert_stream("-", "apiVersion: karpenter.sh/v1beta1\nkind: NodeClaim\nmetadata: {name: x}\n", &opts())
                .unwrap_err();
        assert!(matches!(err, ConvertError::UnsupportedKind { .. }));
    }

    #[test]
    fn v1_and_node_overlay_pass_through() {
        let input = "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: a}\n---\napiVersion: karpenter.sh/v1alpha1\nkind: NodeOverlay\nmetadata: {name: b}\n";
        let out = convert_stream("-", input, &opts()).unwrap();
        assert_eq!(out.documents.len(), 2);
    }

    #[test]
    fn output_file_names_are_unique() {
        let docs = vec![
            serde_json::json!({"kind": "NodePool", "metadata": {"name": "a"}}),
            serde_json::json!({"kind": "NodePool", "metadata": {"name": "a"}}),
            serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}}),
            serde_json::json!("scalar"),
        ];
        assert_eq!(
            output_file_names(&docs),
            vec!["nodepool-a.yaml", "nodepool-a-2.yaml", "configmap-ns-c.yaml", "document-4.yaml"]
        );
    }

    #[test]
    fn sources_are_converted_together() {
        let provisioner = "apiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata: {name: p}\nspec:\n  providerRef: {name: t}\n  kubeletConfiguration: {maxPods: 7}\n";
        let template = "apiVersion: karpenter.k8s.aws/v1alpha1\nkind: AWSNodeTemplate\nmetadata: {name: t}\nspec:\n  amiFamily: AL2023\n  instanceProfile: ip\n  subnetSelector: {a: b}\n  securityGroupSelector: {a: b}\n";
        let out =
            convert_sources(&[("a.yaml".into(), provisioner.into()), ("b.yaml".into(), template.into())], &opts())
                .unwrap();
        assert_eq!(out.documents.len(), 2);
        assert_eq!(out.documents[1]["spec"]["kubelet"]["maxPods"], 7);
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }

    #[test]
    fn provider_ref_may_point_at_an_inline_provider() {
        let input = "apiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata: {name: a}\nspec:\n  provider:\n    amiFamily: AL2023\n    instanceProfile: ip\n    subnetSelector: {a: b}\n    securityGroupSelector: {a: b}\n---\napiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata: {name: b}\nspec:\n  providerRef: {name: a}\n  kubeletConfiguration: {maxPods: 9}\n";
        let out = convert_stream("-", input, &opts()).unwrap();
        assert_eq!(out.documents.len(), 3);
        // a claims class "a" first without kubelet settings, so b's settings cannot apply.
        assert!(out.documents[1]["spec"].get("kubelet").is_none());
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(out.warnings[0].contains("Provisioner/b"), "{:?}", out.warnings);
    }

    #[test]
    fn typed_lists_fill_in_item_kinds() {
        let input = "apiVersion: karpenter.sh/v1alpha5\nkind: ProvisionerList\nitems:\n- metadata: {name: p}\n  spec: {providerRef: {name: t}}\n";
        let out = convert_stream("-", input, &opts()).unwrap();
        assert_eq!(out.documents.len(), 1);
        assert_eq!(out.documents[0]["kind"], "NodePool");
        let err = convert_stream("-", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: karpenter.sh/v1alpha5\n  kind: Provisioner\n  metadata: {name: p}\n", &opts()).unwrap_err();
        assert!(err.to_string().starts_with("-: document 1 item 1 (line 1, Provisioner/p)"), "{err}");
    }

    #[test]
    fn error_kinds_and_resource_names() {
        let err = convert_stream("-", "a: [", &opts()).unwrap_err();
        assert_eq!(err.kind(), "invalid-yaml");
        assert_eq!(resource_name(&serde_json::json!({"kind": "NodePool", "metadata": {"name": "a"}})), "nodepool/a");
        assert_eq!(
            resource_name(&serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}})),
            "configmap/n/a"
        );
    }

    #[test]
    fn to_yaml_separates_documents() {
        let docs = vec![serde_json::json!({"a": 1}), serde_json::json!({"b": 2})];
        assert_eq!(to_yaml(&docs).unwrap(), "a: 1\n---\nb: 2\n");
        assert_eq!(to_yaml(&[]).unwrap(), "");
    }
}
