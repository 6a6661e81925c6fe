//! The NodePool's field converters: template labels, requirements (with the old API's
//! silent defaults written out), taints, kubelet settings, limits and weight.

use serde_json::{json, Map, Value};

use super::common::{
    as_array, as_object, as_str, join, join_key, restricted_label, scalar_string, string_map, type_name, Ctx,
};
use super::nodepool::*;
use super::ConvertError;

/// Node labels for the template: the old NodePool label and other keys v1 reserves are
/// dropped with a warning, since the API server would refuse the whole NodePool.
pub(super) fn template_labels(
    value: &Value,
    field: &str,
    ctx: &mut Ctx,
) -> Result<Vec<(String, String)>, ConvertError> {
    let mut out = Vec::new();
    for (key, v) in string_map(value, field, ctx)? {
        if let Some(reason) = restricted_label(&key) {
            ctx.warn(&join_key(field, &key), format!("{reason}; dropped"));
            continue;
        }
        out.push((key, v));
    }
    Ok(out)
}

pub(super) fn convert_requirements(value: &Value, field: &str, ctx: &mut Ctx) -> Result<Vec<Value>, ConvertError> {
    let items = as_array(value, field, ctx)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let obj = as_object(item, &item_field, ctx)?;
        let key = match obj.get("key") {
            Some(k) => as_str(k, &join(&item_field, "key"), ctx)?.to_string(),
            None => return Err(ctx.invalid(&join(&item_field, "key"), "missing")),
        };
        let operator = match obj.get("operator") {
            Some(op) => as_str(op, &join(&item_field, "operator"), ctx)?.to_string(),
            None => return Err(ctx.invalid(&join(&item_field, "operator"), "missing")),
        };
        if !OPERATORS.contains(&operator.as_str()) {
            return Err(ctx.invalid(
                &join(&item_field, "operator"),
                format!("{operator:?} is not one of {}", OPERATORS.join(", ")),
            ));
        }
        if let Some(reason) = restricted_label(&key) {
            ctx.warn(&format!("{item_field} ({key})"), format!("{reason}; requirement dropped"));
            continue;
        }
        let mut req = Map::new();
        req.insert("key".into(), Value::String(key));
        req.insert("operator".into(), Value::String(operator));
        for (k, v) in obj {
            let f = join(&item_field, k);
            match k.as_str() {
                "key" | "operator" => {}
                "values" if !v.is_null() => {
                    let values = as_array(v, &f, ctx)?
                        .iter()
                        .enumerate()
                        .map(|(j, x)| scalar_string(x, &format!("{f}[{j}]"), ctx).map(Value::String))
                        .collect::<Result<Vec<_>, _>>()?;
                    req.insert("values".into(), Value::Array(values));
                }
                "minValues" if !v.is_null() => {
                    req.insert("minValues".into(), v.clone());
                }
                "values" | "minValues" => {}
                _ => ctx.warn(&f, "no v1 equivalent; not converted"),
            }
        }
        out.push(Value::Object(req));
    }
    Ok(out)
}

/// The v1alpha5 webhook added these when a Provisioner did not constrain the key (in
/// requirements or labels); v1 adds nothing, so without them a converted NodePool would
/// suddenly launch arm64, Windows, spot or exotic instance types.
pub(super) fn add_old_default_requirements(requirements: &mut Vec<Value>, labels: &[(String, String)]) {
    let constrained = |reqs: &Vec<Value>, key: &str| {
        reqs.iter().any(|r| r.get("key").and_then(Value::as_str) == Some(key)) || labels.iter().any(|(k, _)| k == key)
    };
    let shape_constrained = INSTANCE_SHAPE_KEYS.iter().any(|k| constrained(requirements, k));
    let defaults =
        [("kubernetes.io/os", "linux"), ("kubernetes.io/arch", "amd64"), ("karpenter.sh/capacity-type", "on-demand")];
    for (key, value) in defaults {
        if !constrained(requirements, key) {
            requirements.push(json!({"key": key, "operator": "In", "values": [value]}));
        }
    }
    if !shape_constrained {
        requirements
            .push(json!({"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m", "r"]}));
        requirements.push(json!({"key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": ["2"]}));
    }
}

pub(super) fn convert_taints(value: &Value, field: &str, ctx: &mut Ctx) -> Result<Vec<Value>, ConvertError> {
    let items = as_array(value, field, ctx)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let obj = as_object(item, &item_field, ctx)?;
        let mut taint = Map::new();
        match obj.get("key") {
            Some(k) => {
                taint.insert("key".into(), Value::String(as_str(k, &join(&item_field, "key"), ctx)?.into()));
            }
            None => return Err(ctx.invalid(&join(&item_field, "key"), "missing")),
        }
        if let Some(v) = obj.get("value").filter(|v| !v.is_null()) {
            taint.insert("value".into(), Value::String(scalar_string(v, &join(&item_field, "value"), ctx)?));
        }
        match obj.get("effect") {
            Some(e) => {
                taint.insert("effect".into(), Value::String(as_str(e, &join(&item_field, "effect"), ctx)?.into()));
            }
            None => return Err(ctx.invalid(&join(&item_field, "effect"), "missing")),
        }
        if let Some(t) = obj.get("timeAdded").filter(|v| !v.is_null()) {
            taint.insert("timeAdded".into(), t.clone());
        }
        for k in obj.keys() {
            if !matches!(k.as_str(), "key" | "value" | "effect" | "timeAdded") {
                ctx.warn(&join(&item_field, k), "no v1 equivalent; not converted");
            }
        }
        out.push(Value::Object(taint));
    }
    Ok(out)
}

/// The kubelet settings v1 still supports; `containerRuntime` and unknown keys are
/// reported. Returns `None` when nothing is left.
pub(super) fn convert_kubelet(value: &Value, field: &str, ctx: &mut Ctx) -> Result<Option<Value>, ConvertError> {
    let obj = as_object(value, field, ctx)?;
    let mut out = Map::new();
    for (key, v) in obj {
        let f = join(field, key);
        if KUBELET_FIELDS.contains(&key.as_str()) {
            if !v.is_null() {
                out.insert(key.clone(), v.clone());
            }
        } else if key == "containerRuntime" {
            ctx.warn(&f, "no v1 equivalent (Karpenter v1 nodes always run containerd); not converted");
        } else {
            ctx.warn(&f, "no v1 equivalent; not converted");
        }
    }
    Ok(if out.is_empty() { None } else { Some(Value::Object(out)) })
}

pub(super) fn convert_limits(value: &Value, field: &str, ctx: &mut Ctx) -> Result<Value, ConvertError> {
    let obj = as_object(value, field, ctx)?;
    let mut out = Map::new();
    for (key, v) in obj {
        let converted = match v {
            Value::String(_) => v.clone(),
            Value::Number(n) if n.is_u64() || n.is_i64() => v.clone(),
            // A quantity like 1.5 is valid, but only as a string in v1's schema.
            Value::Number(n) => Value::String(n.to_string()),
            other => {
                return Err(
                    ctx.invalid(&join_key(field, key), format!("expected a quantity, found {}", type_name(other)))
                )
            }
        };
        out.insert(key.clone(), converted);
    }
    Ok(Value::Object(out))
}

pub(super) fn convert_weight(value: &Value, field: &str, ctx: &Ctx) -> Result<Value, ConvertError> {
    match value.as_u64() {
        Some(w) if (1..=100).contains(&w) => Ok(Value::from(w)),
        _ => Err(ctx.invalid(field, format!("expected a whole number from 1 to 100, found {value}"))),
    }
}
