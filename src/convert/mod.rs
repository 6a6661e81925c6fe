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
mod nodeclass;
mod nodepool;

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

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

/// Where in the input something was found, so an error or warning can be acted on
/// without guessing which of many documents it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The name the caller gave the input: a file path, or `-` / `stdin`.
    pub source: String,
    /// 1-based index of the YAML document in that source (empty documents count, as they
    /// do for `kubectl`).
    pub document: usize,
    /// 1-based index inside a `kind: List` document, when the object came from one.
    pub item: Option<usize>,
    /// 1-based line: where the parser failed for invalid YAML, otherwise the first line
    /// of the document.
    pub line: Option<usize>,
    /// `Kind/name` of the object, when known.
    pub object: Option<String>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.source, self.document)?;
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        let mut details = Vec::new();
        if let Some(line) = self.line {
            details.push(format!("line {line}"));
        }
        if let Some(object) = &self.object {
            details.push(object.clone());
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

/// Why a conversion failed. `Display` is a single line naming what failed and where;
/// [`ConvertError::hint`] says how to fix it. The CLI maps every variant to exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input is not YAML.
    #[error("{position}: invalid YAML: {message}")]
    Yaml {
        /// Where the parser stopped.
        position: Box<Position>,
        /// The parser's message, without its own location suffix.
        message: String,
    },
    /// Valid YAML that has no JSON equivalent (a custom tag, a non-finite number).
    #[error("{position}: {what} cannot be represented in a Kubernetes manifest")]
    UnsupportedYaml {
        /// The document holding it.
        position: Box<Position>,
        /// What was found.
        what: String,
    },
    /// A `karpenter.sh` / `karpenter.k8s.aws` apiVersion this converter does not know.
    #[error("{position}: unknown apiVersion {api_version:?} for kind {kind:?}")]
    UnknownApiVersion {
        /// The document.
        position: Box<Position>,
        /// The apiVersion as written.
        api_version: String,
        /// The kind as written.
        kind: String,
    },
    /// A known Karpenter API version, but a kind that has no manifest to convert (for
    /// example a `Machine` or `NodeClaim`, which Karpenter creates itself).
    #[error("{position}: {api_version} {kind} cannot be converted")]
    UnsupportedKind {
        /// The document.
        position: Box<Position>,
        /// The apiVersion as written.
        api_version: String,
        /// The kind as written.
        kind: String,
    },
    /// A Provisioner with neither `spec.provider` nor `spec.providerRef`: there is nothing
    /// to build the EC2NodeClass from.
    #[error("{position}: Provisioner {name:?} has neither spec.provider nor spec.providerRef")]
    MissingProvider {
        /// The document.
        position: Box<Position>,
        /// The Provisioner's name.
        name: String,
    },
    /// A Provisioner with both `spec.provider` and `spec.providerRef` (the old API
    /// rejected this too).
    #[error("{position}: Provisioner {name:?} has both spec.provider and spec.providerRef")]
    AmbiguousProvider {
        /// The document.
        position: Box<Position>,
        /// The Provisioner's name.
        name: String,
    },
    /// A field that is missing, has the wrong type, or holds something v1 cannot express.
    #[error("{position}: {field}: {problem}")]
    InvalidField {
        /// The document.
        position: Box<Position>,
        /// Path of the field in the source document, e.g. `spec.amiSelector`.
        field: String,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// The EC2NodeClass would have neither `role` nor `instanceProfile`, which v1 rejects.
    #[error("{position}: EC2NodeClass {name:?} needs a node role: the source names no instance profile and --node-role was not given")]
    NoNodeRole {
        /// The document the EC2NodeClass comes from.
        position: Box<Position>,
        /// The EC2NodeClass name.
        name: String,
    },
    /// Two documents would produce the same NodePool or EC2NodeClass.
    #[error("{position}: {kind} {name:?} is produced twice (first by {first})")]
    Duplicate {
        /// The later document.
        position: Box<Position>,
        /// `NodePool` or `EC2NodeClass`.
        kind: String,
        /// The clashing name.
        name: String,
        /// The earlier document.
        first: Box<Position>,
    },
    /// `--strict` and at least one warning; this is the first one.
    #[error("{warning} (--strict makes warnings errors)")]
    StrictWarning {
        /// The warning text, as it would have been printed.
        warning: String,
    },
    /// The output could not be rendered as YAML.
    #[error("rendering YAML: {message}")]
    Render {
        /// The serializer's message.
        message: String,
    },
}

impl ConvertError {
    /// A stable identifier for the failure, for `error.kind` in `-o json` output, so
    /// scripts need not parse messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Yaml { .. } => "invalid-yaml",
            Self::UnsupportedYaml { .. } => "unsupported-yaml",
            Self::UnknownApiVersion { .. } => "unknown-api-version",
            Self::UnsupportedKind { .. } => "unsupported-kind",
            Self::MissingProvider { .. } => "missing-provider",
            Self::AmbiguousProvider { .. } => "ambiguous-provider",
            Self::InvalidField { .. } => "invalid-field",
            Self::NoNodeRole { .. } => "missing-node-role",
            Self::Duplicate { .. } => "duplicate-object",
            Self::StrictWarning { .. } => "strict-warning",
            Self::Render { .. } => "render",
        }
    }

    /// A one-line suggestion for the user, printed by the CLI under the error and carried
    /// as `error.hint` in `-o json` output.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Yaml { .. } => Some(
                "fix the YAML near that line; every document in the stream must parse".into(),
            ),
            Self::UnsupportedYaml { .. } => Some(
                "remove the YAML tag or value; Kubernetes manifests are plain JSON data".into(),
            ),
            Self::UnknownApiVersion { .. } => Some(
                "convert reads karpenter.sh/v1alpha5 Provisioner, karpenter.k8s.aws/v1alpha1 AWSNodeTemplate, karpenter.sh/v1beta1 NodePool and karpenter.k8s.aws/v1beta1 EC2NodeClass; v1 documents pass through unchanged".into(),
            ),
            Self::UnsupportedKind { .. } => Some(
                "convert reads Provisioner and NodePool (karpenter.sh), AWSNodeTemplate and EC2NodeClass (karpenter.k8s.aws); Machines and NodeClaims are created by Karpenter itself, remove them from the input".into(),
            ),
            Self::MissingProvider { .. } => Some(
                "add spec.providerRef.name naming the Provisioner's AWSNodeTemplate, or an inline spec.provider block".into(),
            ),
            Self::AmbiguousProvider { .. } => {
                Some("keep only one of spec.provider and spec.providerRef".into())
            }
            Self::InvalidField { hint, .. } => hint.clone(),
            Self::NoNodeRole { .. } => Some(
                "pass -c CLUSTER (for karpctl's KarpenterNodeRole-CLUSTER) or --node-role NAME; the old global defaultInstanceProfile setting no longer exists".into(),
            ),
            Self::Duplicate { .. } => Some(
                "rename one of the two objects; v1 NodePools and EC2NodeClasses are cluster-scoped and need unique names".into(),
            ),
            Self::StrictWarning { .. } => Some(
                "fix the source so the warning goes away, or run without --strict and review the warnings".into(),
            ),
            Self::Render { .. } => None,
        }
    }
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

/// One object to convert or pass through, with where it came from.
struct Unit {
    position: Position,
    value: Value,
}

/// What a document is, decided from apiVersion and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Provisioner,
    AwsNodeTemplate,
    NodePoolV1beta1,
    Ec2NodeClassV1beta1,
    PassThrough,
}

fn parse_source(name: &str, text: &str) -> Result<Vec<Unit>, ConvertError> {
    let starts = document_start_lines(text);
    let mut units = Vec::new();
    let mut count = 0;
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        count += 1;
        let document = count;
        let parsed = serde_yaml_ng::Value::deserialize(de).and_then(|mut v| {
            v.apply_merge()?;
            Ok(v)
        });
        let yaml = match parsed {
            Ok(v) => v,
            Err(e) => {
                let location = e.location();
                let mut message = e.to_string();
                if let Some(loc) = &location {
                    let suffix = format!(" at line {} column {}", loc.line(), loc.column());
                    message = message.replacen(&suffix, "", 1);
                }
                return Err(ConvertError::Yaml {
                    position: Box::new(Position {
                        source: name.to_string(),
                        document,
                        item: None,
                        line: location.map(|l| l.line()),
                        object: None,
                    }),
                    message: message.replace('\n', " "),
                });
            }
        };
        let mut position = Position { source: name.to_string(), document, item: None, line: None, object: None };
        let value = yaml_to_json(yaml, &position)?;
        if value.is_null() {
            continue;
        }
        position.object = object_label(&value);
        units.extend(expand_list(value, position));
    }
    // The line scan is a heuristic; only trust it when it found the same documents.
    if starts.len() == count {
        for unit in &mut units {
            unit.position.line = starts.get(unit.position.document - 1).copied();
        }
    }
    Ok(units)
}

/// First content line of each document, by looking for `---` markers at column 0 (the
/// YAML parser does not report where documents start).
fn document_start_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut current: Option<Option<usize>> = None;
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            if let Some(start) = current.take() {
                starts.push(start.unwrap_or(number));
            }
            let rest = line[3..].trim();
            current = Some(if rest.is_empty() || rest.starts_with('#') { None } else { Some(number) });
            continue;
        }
        let trimmed = line.trim();
        // Blank lines, comments, directives and end markers are not document content.
        let is_content = !(trimmed.is_empty()
            || trimmed.starts_with('#')
            || line.starts_with('%')
            || line == "..."
            || line.starts_with("... "));
        match &mut current {
            Some(start @ None) if is_content => *start = Some(number),
            None if is_content => current = Some(Some(number)),
            _ => {}
        }
    }
    if let Some(start) = current {
        starts.push(start.unwrap_or_else(|| text.lines().count().max(1)));
    }
    starts
}

fn yaml_to_json(value: serde_yaml_ng::Value, position: &Position) -> Result<Value, ConvertError> {
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match serde_json::Number::from_f64(f) {
                    Some(num) => Value::Number(num),
                    None => {
                        return Err(ConvertError::UnsupportedYaml {
                            position: Box::new(position.clone()),
                            what: format!("the number {n}"),
                        })
                    }
                }
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(|v| yaml_to_json(v, position)).collect::<Result<_, _>>()?)
        }
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (k, v) in mapping {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_string(),
                    other => {
                        return Err(ConvertError::UnsupportedYaml {
                            position: Box::new(position.clone()),
                            what: format!("a non-scalar mapping key ({other:?})"),
                        })
                    }
                };
                map.insert(key, yaml_to_json(v, position)?);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => {
            return Err(ConvertError::UnsupportedYaml {
                position: Box::new(position.clone()),
                what: format!("the YAML tag {}", tagged.tag),
            })
        }
    })
}

fn object_label(value: &Value) -> Option<String> {
    match (kind_of(value), name_of(value)) {
        (Some(kind), Some(name)) => Some(format!("{kind}/{name}")),
        (Some(kind), None) => Some(kind.to_string()),
        _ => None,
    }
}

/// `kubectl get provisioners -o yaml` wraps objects in a `List`; its items are converted
/// like top-level documents, otherwise they would pass through unconverted.
fn expand_list(value: Value, position: Position) -> Vec<Unit> {
    let kind = kind_of(&value).unwrap_or_default().to_string();
    let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let (group, _) = api_group_version(&api_version);
    let is_list = kind.ends_with("List") && value.get("items").is_some_and(Value::is_array);
    if !is_list {
        return vec![Unit { position, value }];
    }
    let typed_list = common::is_karpenter_group(group);
    let items = value.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let any_karpenter = typed_list
        || items.iter().any(|item| {
            let v = item.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
            common::is_karpenter_group(api_group_version(v).0)
        });
    if !any_karpenter {
        return vec![Unit { position, value }];
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if typed_list {
                if let Value::Object(map) = &mut item {
                    if !map.contains_key("apiVersion") {
                        map.insert("apiVersion".into(), Value::String(api_version.clone()));
                    }
                    if !map.contains_key("kind") {
                        let item_kind = kind.trim_end_matches("List").to_string();
                        map.insert("kind".into(), Value::String(item_kind));
                    }
                }
            }
            let mut pos = position.clone();
            pos.item = Some(i + 1);
            pos.object = object_label(&item);
            Unit { position: pos, value: item }
        })
        .collect()
}

fn classify(unit: &Unit) -> Result<Class, ConvertError> {
    let Some(api_version) = unit.value.get("apiVersion").and_then(Value::as_str) else {
        return Ok(Class::PassThrough);
    };
    let kind = kind_of(&unit.value).unwrap_or_default();
    let (group, version) = api_group_version(api_version);
    if !common::is_karpenter_group(group) {
        return Ok(Class::PassThrough);
    }
    let unsupported = || ConvertError::UnsupportedKind {
        position: Box::new(unit.position.clone()),
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    };
    match (group, version, kind) {
        ("karpenter.sh", "v1alpha5", "Provisioner") => Ok(Class::Provisioner),
        // Never a real API, but course notes and blog posts wrote one: the fields are v1alpha5's.
        ("karpenter.sh", "v1beta1", "Provisioner") => Ok(Class::Provisioner),
        ("karpenter.k8s.aws", "v1alpha1", "AWSNodeTemplate") => Ok(Class::AwsNodeTemplate),
        ("karpenter.sh", "v1beta1", "NodePool") => Ok(Class::NodePoolV1beta1),
        ("karpenter.k8s.aws", "v1beta1", "EC2NodeClass") => Ok(Class::Ec2NodeClassV1beta1),
        ("karpenter.sh" | "karpenter.k8s.aws", "v1", _) => Ok(Class::PassThrough),
        // NodeOverlay is a current (alpha) API, not an old one.
        ("karpenter.sh", "v1alpha1", "NodeOverlay") => Ok(Class::PassThrough),
        ("karpenter.sh", "v1alpha5" | "v1beta1" | "v1alpha1", _) | ("karpenter.k8s.aws", "v1alpha1" | "v1beta1", _) => {
            Err(unsupported())
        }
        _ => Err(ConvertError::UnknownApiVersion {
            position: Box::new(unit.position.clone()),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        }),
    }
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
