//! Helpers shared by the NodePool and EC2NodeClass conversions: reading loosely typed
//! YAML with good errors, collecting warnings, and the label/annotation rules of v1.

use std::fmt::Display;

use serde_json::{Map, Value};

use super::{ConvertError, Position};

/// Per-document conversion context: where we are, and the warnings raised so far. Every
/// warning is prefixed with the document's position so it can be acted on on its own.
pub(crate) struct Ctx {
    pub(crate) position: Position,
    warnings: Vec<String>,
}

impl Ctx {
    pub(crate) fn new(position: Position) -> Self {
        Self { position, warnings: Vec::new() }
    }

    pub(crate) fn warn(&mut self, field: &str, message: impl Display) {
        let text = format!("{}: {field}: {message}", self.position).replace('\n', " ");
        if !self.warnings.contains(&text) {
            self.warnings.push(text);
        }
    }

    pub(crate) fn into_warnings(self) -> Vec<String> {
        self.warnings
    }

    pub(crate) fn invalid(&self, field: &str, problem: impl Into<String>) -> ConvertError {
        ConvertError::InvalidField {
            position: Box::new(self.position.clone()),
            field: field.to_string(),
            problem: problem.into(),
            hint: None,
        }
    }

    pub(crate) fn invalid_with_hint(
        &self,
        field: &str,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConvertError {
        ConvertError::InvalidField {
            position: Box::new(self.position.clone()),
            field: field.to_string(),
            problem: problem.into(),
            hint: Some(hint.into()),
        }
    }
}

pub(crate) fn kind_of(value: &Value) -> Option<&str> {
    value.get("kind").and_then(Value::as_str)
}

pub(crate) fn name_of(value: &Value) -> Option<&str> {
    value.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str)
}

/// Splits `group/version`; the core group (`v1`) has an empty group.
pub(crate) fn api_group_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// Karpenter's own API groups, including old sub-groups such as
/// `provisioning.karpenter.sh`, whose documents must not pass through unnoticed.
pub(crate) fn is_karpenter_group(group: &str) -> bool {
    group == "karpenter.sh"
        || group.ends_with(".karpenter.sh")
        || group == "karpenter.k8s.aws"
        || group.ends_with(".karpenter.k8s.aws")
}

pub(crate) fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Field paths use `.key` for plain keys and `["key"]` for keys with dots or slashes,
/// so a warning about `karpenter.sh/do-not-evict` stays unambiguous.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        join(prefix, key)
    } else {
        format!("{prefix}[{key:?}]")
    }
}

pub(crate) fn as_object<'a>(value: &'a Value, field: &str, ctx: &Ctx) -> Result<&'a Map<String, Value>, ConvertError> {
    value.as_object().ok_or_else(|| ctx.invalid(field, format!("expected a mapping, found {}", type_name(value))))
}

pub(crate) fn as_array<'a>(value: &'a Value, field: &str, ctx: &Ctx) -> Result<&'a Vec<Value>, ConvertError> {
    value.as_array().ok_or_else(|| ctx.invalid(field, format!("expected a list, found {}", type_name(value))))
}

pub(crate) fn as_str<'a>(value: &'a Value, field: &str, ctx: &Ctx) -> Result<&'a str, ConvertError> {
    value.as_str().ok_or_else(|| ctx.invalid(field, format!("expected a string, found {}", type_name(value))))
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Kubernetes string maps (labels, tags, selectors) are often written with unquoted
/// numbers or booleans; their meaning is the string form, so they are converted instead
/// of rejected.
pub(crate) fn scalar_string(value: &Value, field: &str, ctx: &Ctx) -> Result<String, ConvertError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(ctx.invalid(field, format!("expected a string, found {}", type_name(other)))),
    }
}

pub(crate) fn string_map(value: &Value, field: &str, ctx: &Ctx) -> Result<Vec<(String, String)>, ConvertError> {
    let map = as_object(value, field, ctx)?;
    map.iter().map(|(k, v)| Ok((k.clone(), scalar_string(v, &join_key(field, k), ctx)?))).collect()
}

pub(crate) fn to_object(pairs: Vec<(String, String)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
}

/// A whole number of seconds from a `ttlSeconds*` field.
pub(crate) fn seconds(value: &Value, field: &str, ctx: &Ctx) -> Result<u64, ConvertError> {
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| ctx.invalid(field, format!("expected a whole number of seconds, found {value}")))
}

/// Seconds as a Go-style duration without zero parts (`2592000` → `720h`, `90` → `1m30s`),
/// the form the v1 duration fields document.
pub(crate) fn duration(total: u64) -> String {
    if total == 0 {
        return "0s".to_string();
    }
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The old label that v1beta1 renamed and v1 restricts.
pub(crate) const OLD_NODEPOOL_LABEL: &str = "karpenter.sh/provisioner-name";
pub(crate) const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";
pub(crate) const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
pub(crate) const OLD_DO_NOT_DISRUPT: [&str; 2] = ["karpenter.sh/do-not-evict", "karpenter.sh/do-not-consolidate"];

/// Well-known `karpenter.k8s.aws/*` labels a v1 NodePool may use (from the v1 NodePool
/// CRD's validation rules); any other key in that domain is rejected by the API server.
const AWS_LABELS: &[&str] = &[
    "karpenter.k8s.aws/instance-tenancy",
    "karpenter.k8s.aws/capacity-reservation-type",
    "karpenter.k8s.aws/capacity-reservation-id",
    "karpenter.k8s.aws/capacity-reservation-interruptible",
    "karpenter.k8s.aws/ec2nodeclass",
    "karpenter.k8s.aws/instance-encryption-in-transit-supported",
    "karpenter.k8s.aws/instance-category",
    "karpenter.k8s.aws/instance-hypervisor",
    "karpenter.k8s.aws/instance-family",
    "karpenter.k8s.aws/instance-generation",
    "karpenter.k8s.aws/instance-local-nvme",
    "karpenter.k8s.aws/instance-size",
    "karpenter.k8s.aws/instance-cpu",
    "karpenter.k8s.aws/instance-cpu-manufacturer",
    "karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz",
    "karpenter.k8s.aws/instance-memory",
    "karpenter.k8s.aws/instance-ebs-bandwidth",
    "karpenter.k8s.aws/instance-network-bandwidth",
    "karpenter.k8s.aws/instance-gpu-name",
    "karpenter.k8s.aws/instance-gpu-manufacturer",
    "karpenter.k8s.aws/instance-gpu-count",
    "karpenter.k8s.aws/instance-gpu-memory",
    "karpenter.k8s.aws/instance-accelerator-name",
    "karpenter.k8s.aws/instance-accelerator-manufacturer",
    "karpenter.k8s.aws/instance-accelerator-count",
    "karpenter.k8s.aws/instance-capability-flex",
    "karpenter.k8s.aws/placement-group-id",
    "karpenter.k8s.aws/placement-group-partition",
];

fn domain(key: &str) -> &str {
    key.split_once('/').map(|(d, _)| d).unwrap_or("")
}

/// Why v1 rejects a label key in NodePool requirements or template labels, if it does.
/// The JSON schema cannot express these (they are CEL rules), so the converter checks
/// them itself: an output the API server refuses would be no conversion at all.
pub(crate) fn restricted_label(key: &str) -> Option<String> {
    if key == OLD_NODEPOOL_LABEL {
        return Some(format!(
            "renamed to {NODEPOOL_LABEL}, which Karpenter sets on every node itself and v1 rejects here"
        ));
    }
    if key == NODEPOOL_LABEL {
        return Some(format!("Karpenter sets {NODEPOOL_LABEL} on every node itself and v1 rejects it here"));
    }
    if key == "kubernetes.io/hostname" {
        return Some("v1 rejects kubernetes.io/hostname here".into());
    }
    let d = domain(key);
    if d.ends_with("karpenter.sh") && key != "karpenter.sh/capacity-type" {
        return Some(format!("v1 allows no {d} label except karpenter.sh/capacity-type here"));
    }
    if d.ends_with("karpenter.k8s.aws") && !AWS_LABELS.contains(&key) {
        return Some(format!("{key} is not a label Karpenter v1 knows, and v1 rejects unknown {d} labels"));
    }
    None
}

/// Renames old annotation keys to `karpenter.sh/do-not-disrupt`, keeping the first value
/// if several old and new keys are present.
pub(crate) fn rename_annotations(pairs: Vec<(String, String)>, field: &str, ctx: &mut Ctx) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, value) in pairs {
        let key = if OLD_DO_NOT_DISRUPT.contains(&key.as_str()) { DO_NOT_DISRUPT.to_string() } else { key };
        match out.iter().find(|(k, _)| *k == key) {
            Some((_, existing)) if *existing == value => {}
            Some(_) => ctx.warn(
                &join_key(field, &key),
                "set twice with different values (old and new annotation names); kept the first",
            ),
            None => out.push((key, value)),
        }
    }
    out
}

/// Object metadata for a converted object: name, labels and annotations. Everything else
/// is either set by the API server (uid, resourceVersion, status-like fields: dropped
/// without a warning, as `kubectl get -o yaml` output is valid input) or meaningless for
/// a cluster-scoped object of a new kind (namespace).
pub(crate) fn convert_metadata(doc: &Value, ctx: &mut Ctx) -> Result<(String, Map<String, Value>), ConvertError> {
    let metadata = doc
        .get("metadata")
        .ok_or_else(|| ctx.invalid("metadata.name", "missing; every Karpenter object needs a name"))?;
    let metadata = as_object(metadata, "metadata", ctx)?;
    let name = match metadata.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) if !other.is_null() => {
            return Err(ctx.invalid("metadata.name", format!("expected a string, found {}", type_name(other))))
        }
        _ => return Err(ctx.invalid("metadata.name", "missing; every Karpenter object needs a name")),
    };
    let mut out = Map::new();
    out.insert("name".into(), Value::String(name.clone()));
    for (key, value) in metadata {
        let field = join("metadata", key);
        match key.as_str() {
            "name" => {}
            "labels" => {
                let labels = string_map(value, &field, ctx)?;
                let labels: Vec<(String, String)> = labels
                    .into_iter()
                    .map(|(k, v)| if k == OLD_NODEPOOL_LABEL { (NODEPOOL_LABEL.to_string(), v) } else { (k, v) })
                    .collect();
                if !labels.is_empty() {
                    out.insert("labels".into(), Value::Object(to_object(labels)));
                }
            }
            "annotations" => {
                let annotations: Vec<(String, String)> = string_map(value, &field, ctx)?
                    .into_iter()
                    .filter(|(k, _)| k != "kubectl.kubernetes.io/last-applied-configuration")
                    .collect();
                let annotations = rename_annotations(annotations, &field, ctx);
                if !annotations.is_empty() {
                    out.insert("annotations".into(), Value::Object(to_object(annotations)));
                }
            }
            "namespace"
            | "uid"
            | "resourceVersion"
            | "generation"
            | "creationTimestamp"
            | "deletionTimestamp"
            | "deletionGracePeriodSeconds"
            | "managedFields"
            | "selfLink"
            | "finalizers"
            | "ownerReferences" => {}
            _ => ctx.warn(&field, "not carried over to the v1 object"),
        }
    }
    Ok((name, out))
}

/// Warns about keys a document outside Karpenter's API still uses (pods with
/// `karpenter.sh/do-not-evict`, selectors on `karpenter.sh/provisioner-name`): v1 ignores
/// them. The document itself is passed through unchanged.
pub(crate) fn warn_old_keys(doc: &Value, ctx: &mut Ctx) {
    let renames = [
        (OLD_NODEPOOL_LABEL, NODEPOOL_LABEL),
        (OLD_DO_NOT_DISRUPT[0], DO_NOT_DISRUPT),
        (OLD_DO_NOT_DISRUPT[1], DO_NOT_DISRUPT),
    ];
    for (old, new) in renames {
        if let Some(path) = find_string(doc, old, "") {
            let field = if path.is_empty() { "(document)".to_string() } else { path };
            ctx.warn(
                &field,
                format!("uses {old}, which Karpenter v1 no longer recognizes; use {new} (document passed through unchanged)"),
            );
        }
    }
}

/// Path of the first object key or string value equal to `needle`.
fn find_string(value: &Value, needle: &str, path: &str) -> Option<String> {
    match value {
        Value::String(s) if s == needle => Some(path.to_string()),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let child = join_key(path, k);
            if k == needle {
                Some(child)
            } else {
                find_string(v, needle, &child)
            }
        }),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| find_string(v, needle, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Ctx {
        Ctx::new(Position {
            source: "t".into(),
            document: 1,
            item: None,
            line: None,
            object: Some("Provisioner/p".into()),
        })
    }

    #[test]
    fn durations_are_compact() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(30), "30s");
        assert_eq!(duration(90), "1m30s");
        assert_eq!(duration(3600), "1h");
        assert_eq!(duration(2_592_000), "720h");
        assert_eq!(duration(3_661), "1h1m1s");
    }

    #[test]
    fn seconds_accepts_numbers_and_numeric_strings() {
        let c = ctx();
        assert_eq!(seconds(&json!(30), "f", &c).unwrap(), 30);
        assert_eq!(seconds(&json!("30"), "f", &c).unwrap(), 30);
        assert!(seconds(&json!(-1), "f", &c).is_err());
        assert!(seconds(&json!("30s"), "f", &c).is_err());
    }

    #[test]
    fn restricted_labels_match_the_v1_rules() {
        assert!(restricted_label("karpenter.sh/provisioner-name").is_some());
        assert!(restricted_label("karpenter.sh/nodepool").is_some());
        assert!(restricted_label("kubernetes.io/hostname").is_some());
        assert!(restricted_label("karpenter.k8s.aws/instance-pods").is_some());
        assert!(restricted_label("karpenter.sh/capacity-type").is_none());
        assert!(restricted_label("karpenter.k8s.aws/instance-family").is_none());
        assert!(restricted_label("team").is_none());
        assert!(restricted_label("node.kubernetes.io/instance-type").is_none());
    }

    #[test]
    fn annotations_are_renamed_once() {
        let mut c = ctx();
        let out = rename_annotations(
            vec![
                ("karpenter.sh/do-not-evict".into(), "true".into()),
                ("karpenter.sh/do-not-consolidate".into(), "true".into()),
                ("x".into(), "y".into()),
            ],
            "a",
            &mut c,
        );
        assert_eq!(out, vec![(DO_NOT_DISRUPT.to_string(), "true".to_string()), ("x".into(), "y".into())]);
        assert!(c.into_warnings().is_empty());
    }

    #[test]
    fn field_paths_quote_keys_with_separators() {
        assert_eq!(join_key("spec.labels", "team"), "spec.labels.team");
        assert_eq!(join_key("spec.labels", "a.b/c"), "spec.labels[\"a.b/c\"]");
    }

    #[test]
    fn old_keys_in_other_documents_are_reported_with_their_path() {
        let mut c = ctx();
        let doc = json!({"spec": {"template": {"metadata": {"annotations": {"karpenter.sh/do-not-evict": "true"}}}}});
        warn_old_keys(&doc, &mut c);
        let w = c.into_warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("spec.template.metadata.annotations[\"karpenter.sh/do-not-evict\"]"), "{w:?}");
    }

    #[test]
    fn metadata_keeps_name_labels_annotations() {
        let mut c = ctx();
        let doc = json!({"metadata": {"name": "a", "namespace": "karpenter", "uid": "x",
            "labels": {"karpenter.sh/provisioner-name": "a", "n": 1},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}});
        let (name, meta) = convert_metadata(&doc, &mut c).unwrap();
        assert_eq!(name, "a");
        assert_eq!(Value::Object(meta), json!({"name": "a", "labels": {"karpenter.sh/nodepool": "a", "n": "1"}}));
        assert!(convert_metadata(&json!({"metadata": {}}), &mut c).is_err());
    }
}
