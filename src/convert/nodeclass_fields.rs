//! The EC2NodeClass's field converters: selector terms (ids, names, tags, lists), block
//! device mappings, metadata options and tags.

use serde_json::{json, Map, Value};

use super::common::{as_array, as_object, as_str, join, join_key, string_map, to_object, Ctx};
use super::nodeclass::*;
use super::ConvertError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Selector {
    Subnet,
    SecurityGroup,
    Ami,
}

pub(super) fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// v1 allows at most this many terms per selector.
pub(super) const MAX_TERMS: usize = 30;

/// Turns a v1alpha1 selector map into v1 terms. Old selectors ANDed all keys and ORed
/// the comma-separated values of each; v1 terms are ORed, so the value lists are
/// multiplied out. `aws-ids` / `aws::ids` name objects directly and, since a v1 `id`
/// term cannot carry other filters, win over everything else in the selector.
pub(super) fn selector_terms(
    value: &Value,
    field: &str,
    kind: Selector,
    ctx: &mut Ctx,
) -> Result<Vec<Value>, ConvertError> {
    let pairs = string_map(value, field, ctx)?;
    let mut ids: Option<Vec<String>> = None;
    let mut names: Option<Vec<String>> = None;
    let mut owners: Option<Vec<String>> = None;
    let mut tags: Vec<(String, Vec<String>)> = Vec::new();
    for (key, raw) in pairs {
        match key.as_str() {
            "aws-ids" | "aws::ids" => ids.get_or_insert_with(Vec::new).extend(split_list(&raw)),
            "aws::name" if kind == Selector::Ami => names = Some(split_list(&raw)),
            "aws::owners" if kind == Selector::Ami => owners = Some(split_list(&raw)),
            _ => {
                // "" was the old wildcard; v1 rejects empty values and uses "*".
                let values = split_list(&raw);
                let values = if values.is_empty() { vec!["*".to_string()] } else { values };
                tags.push((key, values));
            }
        }
    }

    if let Some(ids) = ids {
        if ids.is_empty() {
            return Err(ctx.invalid(field, "aws-ids is empty"));
        }
        let mut dropped: Vec<String> = tags.iter().map(|(k, _)| k.clone()).collect();
        if names.is_some() {
            dropped.push("aws::name".into());
        }
        if owners.is_some() {
            dropped.push("aws::owners".into());
        }
        if !dropped.is_empty() {
            ctx.warn(
                field,
                format!(
                    "v1 id terms cannot be combined with other filters; kept the ids, dropped {}",
                    dropped.join(", ")
                ),
            );
        }
        return Ok(ids.into_iter().map(|id| json!({ "id": id })).collect());
    }

    if kind == Selector::Ami && tags.is_empty() && names.is_none() && owners.is_some() {
        return Err(ctx.invalid_with_hint(
            field,
            "aws::owners alone selects no AMI in v1",
            "add aws::name or tags to the selector",
        ));
    }

    let mut tag_sets: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (key, values) in &tags {
        let mut next = Vec::new();
        for value in values {
            for set in &tag_sets {
                let mut set = set.clone();
                set.push((key.clone(), value.clone()));
                next.push(set);
            }
        }
        tag_sets = next;
    }
    let names: Vec<Option<String>> = match names {
        Some(list) if !list.is_empty() => list.into_iter().map(Some).collect(),
        _ => vec![None],
    };
    let owners: Vec<Option<String>> = match owners {
        Some(list) if !list.is_empty() => list.into_iter().map(Some).collect(),
        _ => vec![None],
    };
    let total = tag_sets.len() * names.len() * owners.len();
    if total > MAX_TERMS {
        return Err(ctx.invalid_with_hint(
            field,
            format!("expands to {total} v1 terms (comma-separated values are multiplied out); v1 allows at most {MAX_TERMS}"),
            "use fewer comma-separated values, or a tag with a \"*\" value",
        ));
    }
    let mut out = Vec::new();
    for owner in &owners {
        for name in &names {
            for set in &tag_sets {
                let mut term = Map::new();
                if let Some(n) = name {
                    term.insert("name".into(), Value::String(n.clone()));
                }
                if let Some(o) = owner {
                    term.insert("owner".into(), Value::String(o.clone()));
                }
                if !set.is_empty() {
                    term.insert("tags".into(), Value::Object(to_object(set.clone())));
                }
                if !term.is_empty() {
                    out.push(Value::Object(term));
                }
            }
        }
    }
    Ok(out)
}

pub(super) fn is_v1_volume_size(size: &str) -> bool {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
        && matches!(unit, "Gi" | "G" | "Ti" | "T")
}

pub(super) fn block_device_mappings(value: &Value, field: &str, ctx: &mut Ctx) -> Result<Vec<Value>, ConvertError> {
    let items = as_array(value, field, ctx)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let obj = as_object(item, &item_field, ctx)?;
        let has_ebs = obj.get("ebs").is_some_and(|v| !v.is_null());
        if let (Some(virtual_name), false) = (obj.get("virtualName").filter(|v| !v.is_null()), has_ebs) {
            ctx.warn(
                &item_field,
                format!(
                    "instance store mapping (virtualName {}) has no v1 equivalent (v1 configures instance store volumes with instanceStorePolicy); mapping not converted",
                    virtual_name.as_str().unwrap_or_default()
                ),
            );
            continue;
        }
        let mut bdm = Map::new();
        if let Some(d) = obj.get("deviceName").filter(|v| !v.is_null()) {
            bdm.insert("deviceName".into(), Value::String(as_str(d, &join(&item_field, "deviceName"), ctx)?.into()));
        }
        if let Some(r) = obj.get("rootVolume").filter(|v| !v.is_null()) {
            if !r.is_boolean() {
                return Err(ctx.invalid(&join(&item_field, "rootVolume"), "expected true or false"));
            }
            bdm.insert("rootVolume".into(), r.clone());
        }
        if let Some(ebs) = obj.get("ebs").filter(|v| !v.is_null()) {
            let ebs_field = join(&item_field, "ebs");
            let ebs = as_object(ebs, &ebs_field, ctx)?;
            let mut out_ebs = Map::new();
            for (key, v) in ebs {
                let f = join(&ebs_field, key);
                match key.as_str() {
                    "volumeSize" => {
                        let size =
                            match v {
                                Value::String(s) if is_v1_volume_size(s) => s.clone(),
                                other => return Err(ctx.invalid_with_hint(
                                    &f,
                                    format!("{other} is not a volume size v1 accepts"),
                                    "write the size with a unit, e.g. 20Gi (a bare number meant bytes in the old API)",
                                )),
                            };
                        out_ebs.insert(key.clone(), Value::String(size));
                    }
                    "deleteOnTermination"
                    | "encrypted"
                    | "iops"
                    | "kmsKeyID"
                    | "snapshotID"
                    | "throughput"
                    | "volumeType"
                    | "volumeInitializationRate" => {
                        if !v.is_null() {
                            out_ebs.insert(key.clone(), v.clone());
                        }
                    }
                    _ => ctx.warn(&f, "no v1 equivalent; not converted"),
                }
            }
            bdm.insert("ebs".into(), Value::Object(out_ebs));
        }
        for key in obj.keys() {
            match key.as_str() {
                "deviceName" | "rootVolume" | "ebs" => {}
                "virtualName" => ctx.warn(
                    &join(&item_field, key),
                    "no v1 equivalent (v1 configures instance store volumes with instanceStorePolicy); not converted",
                ),
                _ => ctx.warn(&join(&item_field, key), "no v1 equivalent; not converted"),
            }
        }
        out.push(Value::Object(bdm));
    }
    Ok(out)
}

pub(super) fn metadata_options(value: Option<&Value>, field: &str, ctx: &mut Ctx) -> Result<Value, ConvertError> {
    let empty = Map::new();
    let given = match value {
        Some(v) => as_object(v, field, ctx)?,
        None => &empty,
    };
    let mut out = Map::new();
    for key in METADATA_KEYS {
        let v = given.get(key).filter(|v| !v.is_null()).cloned().unwrap_or_else(|| old_metadata_default(key));
        out.insert(key.to_string(), v);
    }
    for key in given.keys() {
        if !METADATA_KEYS.contains(&key.as_str()) {
            ctx.warn(&join(field, key), "no v1 equivalent; not converted");
        }
    }
    Ok(Value::Object(out))
}

/// Why v1 refuses a tag key, if it does: Karpenter sets these itself.
pub(super) fn restricted_tag(key: &str) -> bool {
    key.is_empty()
        || key == "eks:eks-cluster-name"
        || key.starts_with("kubernetes.io/cluster")
        || key == "karpenter.sh/nodepool"
        || key == "karpenter.sh/nodeclaim"
        || key == "karpenter.k8s.aws/ec2nodeclass"
}

pub(super) fn tags(value: &Value, field: &str, ctx: &mut Ctx) -> Result<Option<Map<String, Value>>, ConvertError> {
    let mut out = Vec::new();
    for (key, v) in string_map(value, field, ctx)? {
        if restricted_tag(&key) {
            ctx.warn(
                &join_key(field, &key),
                "Karpenter v1 sets this tag itself and rejects it in an EC2NodeClass; dropped",
            );
            continue;
        }
        out.push((key, v));
    }
    Ok(if out.is_empty() { None } else { Some(to_object(out)) })
}
