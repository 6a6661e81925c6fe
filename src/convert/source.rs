//! Reading the input: YAML streams split into documents with their line numbers, lists
//! expanded, each object classified by apiVersion and kind.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::*;

/// One object to convert or pass through, with where it came from.
pub(super) struct Unit {
    pub(super) position: Position,
    pub(super) value: Value,
}

/// What a document is, decided from apiVersion and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Provisioner,
    AwsNodeTemplate,
    NodePoolV1beta1,
    Ec2NodeClassV1beta1,
    PassThrough,
}

pub(super) fn parse_source(name: &str, text: &str) -> Result<Vec<Unit>, ConvertError> {
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
pub(super) fn document_start_lines(text: &str) -> Vec<usize> {
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

pub(super) fn yaml_to_json(value: serde_yaml_ng::Value, position: &Position) -> Result<Value, ConvertError> {
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

pub(super) fn object_label(value: &Value) -> Option<String> {
    match (kind_of(value), name_of(value)) {
        (Some(kind), Some(name)) => Some(format!("{kind}/{name}")),
        (Some(kind), None) => Some(kind.to_string()),
        _ => None,
    }
}

/// `kubectl get provisioners -o yaml` wraps objects in a `List`; its items are converted
/// like top-level documents, otherwise they would pass through unconverted.
pub(super) fn expand_list(value: Value, position: Position) -> Vec<Unit> {
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

pub(super) fn classify(unit: &Unit) -> Result<Class, ConvertError> {
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
