//! Validates NodePool / EC2NodeClass manifests against the `v1` schema of the reference
//! Karpenter CRDs, so tests check generated YAML against what the API server accepts
//! instead of against the generator's own idea of it.
//!
//! The CRDs are read from `$KARPCTL_REFERENCE_DIR/crds/` (the directory holding the
//! official release files). Two deliberate differences from a plain JSON-schema check:
//! - objects that list `properties` reject unknown fields, as `kubectl apply` does by
//!   default (server-side strict field validation) instead of silently pruning them;
//! - `x-kubernetes-*` extensions, CEL rules included, are not evaluated: JSON Schema
//!   has no equivalent for them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The environment variable naming the reference directory.
pub const ENV: &str = "KARPCTL_REFERENCE_DIR";

const NODEPOOL_CRD: &str = "crds/karpenter.sh_nodepools.yaml";
const EC2NODECLASS_CRD: &str = "crds/karpenter.k8s.aws_ec2nodeclasses.yaml";

/// The reference directory, or `None` (after saying so on stderr) when the variable is
/// unset so schema checks can be skipped on machines without the files. A variable that
/// is set but points at missing or unreadable CRDs is a broken setup, and panics.
pub fn reference_dir() -> Option<PathBuf> {
    let Some(raw) = std::env::var_os(ENV) else {
        eprintln!("skipping: {ENV} is not set");
        return None;
    };
    let dir = PathBuf::from(raw);
    assert!(
        dir.is_dir(),
        "{ENV}={} is not a directory; point it at the Karpenter reference files (with crds/ inside) or unset it",
        dir.display()
    );
    for file in [NODEPOOL_CRD, EC2NODECLASS_CRD] {
        load_schema(&dir.join(file));
    }
    Some(dir)
}

/// Validates one manifest against the CRD for its kind; returns one message per problem,
/// empty when the manifest is valid.
pub fn validate_manifest(dir: &Path, doc: &Value) -> Vec<String> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let (file, api_version) = match kind {
        "NodePool" => (NODEPOOL_CRD, "karpenter.sh/v1"),
        "EC2NodeClass" => (EC2NODECLASS_CRD, "karpenter.k8s.aws/v1"),
        other => return vec![format!("no reference CRD for kind {other:?}")],
    };
    let mut errors = Vec::new();
    if doc.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        errors.push(format!("apiVersion is {}, expected {api_version}", doc.get("apiVersion").unwrap_or(&Value::Null)));
    }
    let schema = load_schema(&dir.join(file));
    let validator = match jsonschema::draft4::new(&schema) {
        Ok(v) => v,
        Err(e) => panic!("the v1 schema in {file} does not compile: {e}"),
    };
    for error in validator.iter_errors(doc) {
        errors.push(format!("{}: {error}", error.instance_path));
    }
    errors
}

/// Reads a CRD file and returns the `v1` version's openAPIV3Schema, made strict.
fn load_schema(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read reference CRD {}: {e}", path.display()));
    let crd: Value = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("reference CRD {} is not valid YAML: {e}", path.display()));
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("reference CRD {} has no spec.versions", path.display()));
    let mut schema = versions
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some("v1"))
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
        .cloned()
        .unwrap_or_else(|| panic!("reference CRD {} has no v1 version with schema.openAPIV3Schema", path.display()));
    reject_unknown_fields(&mut schema);
    schema
}

/// Adds `additionalProperties: false` wherever a schema lists its properties and does not
/// say otherwise, mirroring the API server's strict field validation.
fn reject_unknown_fields(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    let preserve = map.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool).unwrap_or(false);
    if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserve {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        for child in props.values_mut() {
            reject_unknown_fields(child);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get_mut(key) {
            reject_unknown_fields(child);
        }
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        if let Some(Value::Array(children)) = map.get_mut(key) {
            for child in children {
                reject_unknown_fields(child);
            }
        }
    }
}
