//! v1alpha1 `AWSNodeTemplate` (or a Provisioner's inline `spec.provider`) and v1beta1
//! `EC2NodeClass` → v1 `EC2NodeClass`.

use serde_json::{json, Map, Value};

use super::common::{as_array, as_object, as_str, convert_metadata, join, type_name, Ctx};
use super::nodeclass_fields::*;
use super::nodepool::warn_top_level;
use super::{ConvertError, ConvertOptions};

/// AMI families that have a v1 alias (`family@latest`) picking the newest EKS-optimized AMI,
/// which is what these families did when no AMI was selected.
pub(super) const ALIAS_FAMILIES: &[&str] =
    &["AL2", "AL2023", "Bottlerocket", "Windows2019", "Windows2022", "Windows2025"];

/// Instance metadata defaults of v1alpha1 and v1beta1. v1 lowered the hop limit to 1,
/// which cuts pods without host networking off from IMDS; the old values are written out
/// so converted nodes behave as before.
pub(super) const METADATA_KEYS: [&str; 4] =
    ["httpEndpoint", "httpProtocolIPv6", "httpPutResponseHopLimit", "httpTokens"];

pub(super) fn old_metadata_default(key: &str) -> Value {
    match key {
        "httpEndpoint" => Value::String("enabled".into()),
        "httpProtocolIPv6" => Value::String("disabled".into()),
        "httpPutResponseHopLimit" => Value::from(2),
        _ => Value::String("required".into()),
    }
}

/// What Karpenter's own v1 conversion gives Ubuntu nodes, whose root device differs from
/// AL2's, when the source had no block devices.
pub(super) fn ubuntu_root_volume() -> Value {
    json!({"deviceName": "/dev/sda1", "rootVolume": true, "ebs": {"encrypted": true, "volumeType": "gp3", "volumeSize": "20Gi"}})
}

#[derive(Default)]
pub(super) struct Parts {
    ami_family: Option<String>,
    ami_terms: Vec<Value>,
    role: Option<String>,
    instance_profile: Option<String>,
    subnet_terms: Vec<Value>,
    security_group_terms: Vec<Value>,
    kubelet: Option<Value>,
    block_device_mappings: Option<Vec<Value>>,
    metadata_options: Value,
    tags: Option<Map<String, Value>>,
    user_data: Option<Value>,
    detailed_monitoring: Option<Value>,
    associate_public_ip_address: Option<Value>,
    instance_store_policy: Option<Value>,
    context: Option<Value>,
}

pub(super) fn assemble(metadata: Map<String, Value>, parts: Parts) -> Value {
    let mut spec = Map::new();
    if let Some(f) = parts.ami_family {
        spec.insert("amiFamily".into(), Value::String(f));
    }
    spec.insert("amiSelectorTerms".into(), Value::Array(parts.ami_terms));
    if let Some(r) = parts.role {
        spec.insert("role".into(), Value::String(r));
    }
    if let Some(p) = parts.instance_profile {
        spec.insert("instanceProfile".into(), Value::String(p));
    }
    spec.insert("subnetSelectorTerms".into(), Value::Array(parts.subnet_terms));
    spec.insert("securityGroupSelectorTerms".into(), Value::Array(parts.security_group_terms));
    let optional = [
        ("kubelet", parts.kubelet),
        ("blockDeviceMappings", parts.block_device_mappings.map(Value::Array)),
        ("metadataOptions", Some(parts.metadata_options)),
        ("tags", parts.tags.map(Value::Object)),
        ("userData", parts.user_data),
        ("detailedMonitoring", parts.detailed_monitoring),
        ("associatePublicIPAddress", parts.associate_public_ip_address),
        ("instanceStorePolicy", parts.instance_store_policy),
        ("context", parts.context),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            spec.insert(key.into(), v);
        }
    }
    json!({
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": Value::Object(metadata),
        "spec": Value::Object(spec),
    })
}

/// Converts a v1alpha1 AWSNodeTemplate document.
pub(crate) fn from_aws_node_template(
    doc: &Value,
    kubelet: Option<Value>,
    opts: &ConvertOptions,
    ctx: &mut Ctx,
) -> Result<Value, ConvertError> {
    warn_top_level(doc, ctx);
    let (name, metadata) = convert_metadata(doc, ctx)?;
    let empty = Value::Object(Map::new());
    let spec = doc.get("spec").filter(|v| !v.is_null()).unwrap_or(&empty);
    from_v1alpha1(spec, &name, "spec", Some(metadata), kubelet, opts, ctx)
}

/// Converts v1alpha1 provider settings, either an AWSNodeTemplate's spec or a
/// Provisioner's inline `spec.provider` (`prefix` names which, for messages).
pub(crate) fn from_v1alpha1(
    spec: &Value,
    name: &str,
    prefix: &str,
    metadata: Option<Map<String, Value>>,
    kubelet: Option<Value>,
    opts: &ConvertOptions,
    ctx: &mut Ctx,
) -> Result<Value, ConvertError> {
    let spec = as_object(spec, prefix, ctx)?;
    let field = |key: &str| join(prefix, key);
    let inline = metadata.is_none();
    let get = |key: &str| spec.get(key).filter(|v| !v.is_null());

    for key in spec.keys() {
        match key.as_str() {
            "amiFamily"
            | "amiSelector"
            | "subnetSelector"
            | "securityGroupSelector"
            | "instanceProfile"
            | "tags"
            | "userData"
            | "blockDeviceMappings"
            | "metadataOptions"
            | "detailedMonitoring"
            | "launchTemplate"
            | "context" => {}
            // The inline provider carried its own type header; it has no meaning in v1.
            "apiVersion" | "kind" if inline => {}
            _ => ctx.warn(&field(key), "no v1 equivalent; not converted"),
        }
    }

    let mut parts = Parts::default();
    let launch_template = get("launchTemplate");
    if let Some(lt) = launch_template {
        ctx.warn(
            &field("launchTemplate"),
            format!(
                "no v1 equivalent: Karpenter v1 always generates its own launch templates; move the AMI, security groups, user data and block devices of launch template {lt} into this EC2NodeClass; not converted"
            ),
        );
    }

    parts.subnet_terms = match get("subnetSelector") {
        Some(v) => selector_terms(v, &field("subnetSelector"), Selector::Subnet, ctx)?,
        None => Vec::new(),
    };
    if parts.subnet_terms.is_empty() {
        return Err(ctx.invalid_with_hint(
            &field("subnetSelector"),
            "missing; v1 requires subnetSelectorTerms",
            "add subnetSelector: {karpenter.sh/discovery: CLUSTER} (or aws-ids: subnet-…)",
        ));
    }
    parts.security_group_terms = match get("securityGroupSelector") {
        Some(v) => selector_terms(v, &field("securityGroupSelector"), Selector::SecurityGroup, ctx)?,
        None => Vec::new(),
    };
    if parts.security_group_terms.is_empty() {
        let hint = if launch_template.is_some() {
            "v1 has no launch templates: add securityGroupSelector with the launch template's security groups (aws-ids: sg-…)"
        } else {
            "add securityGroupSelector: {karpenter.sh/discovery: CLUSTER} (or aws-ids: sg-…)"
        };
        return Err(ctx.invalid_with_hint(
            &field("securityGroupSelector"),
            "missing; v1 requires securityGroupSelectorTerms",
            hint,
        ));
    }

    let ami_terms = match get("amiSelector") {
        Some(v) => selector_terms(v, &field("amiSelector"), Selector::Ami, ctx)?,
        None => Vec::new(),
    };
    let family = match get("amiFamily") {
        Some(v) => Some(as_str(v, &field("amiFamily"), ctx)?.to_string()),
        None => None,
    };
    parts.block_device_mappings = match get("blockDeviceMappings") {
        Some(v) => Some(block_device_mappings(v, &field("blockDeviceMappings"), ctx)?).filter(|l| !l.is_empty()),
        None => None,
    };
    let (ami_family, ami_terms) = resolve_ami(
        family.as_deref(),
        ami_terms,
        &field("amiFamily"),
        &field("amiSelector"),
        &mut parts.block_device_mappings,
        ctx,
    )?;
    parts.ami_family = ami_family;
    parts.ami_terms = ami_terms;

    let instance_profile = match get("instanceProfile") {
        Some(v) => Some(as_str(v, &field("instanceProfile"), ctx)?.to_string()),
        None => None,
    };
    (parts.role, parts.instance_profile) = role_or_profile(None, instance_profile, name, opts, ctx)?;
    parts.kubelet = kubelet;
    parts.metadata_options = metadata_options(get("metadataOptions"), &field("metadataOptions"), ctx)?;
    parts.tags = match get("tags") {
        Some(v) => tags(v, &field("tags"), ctx)?,
        None => None,
    };
    parts.user_data = typed(get("userData"), &field("userData"), Value::is_string, "a string", ctx)?;
    parts.detailed_monitoring =
        typed(get("detailedMonitoring"), &field("detailedMonitoring"), Value::is_boolean, "true or false", ctx)?;
    parts.context = typed(get("context"), &field("context"), Value::is_string, "a string", ctx)?;

    let mut metadata = metadata.unwrap_or_default();
    metadata.entry("name").or_insert_with(|| Value::String(name.to_string()));
    Ok(assemble(metadata, parts))
}

/// Converts a v1beta1 EC2NodeClass: the AMI family becomes an alias where it can, Ubuntu
/// maps to AL2, the old metadata defaults are kept, and kubelet settings arrive from the
/// NodePools that use it.
pub(crate) fn from_v1beta1(
    doc: &Value,
    kubelet: Option<Value>,
    opts: &ConvertOptions,
    ctx: &mut Ctx,
) -> Result<Value, ConvertError> {
    warn_top_level(doc, ctx);
    let (name, metadata) = convert_metadata(doc, ctx)?;
    let empty = Map::new();
    let spec = match doc.get("spec").filter(|v| !v.is_null()) {
        Some(s) => as_object(s, "spec", ctx)?,
        None => &empty,
    };
    let get = |key: &str| spec.get(key).filter(|v| !v.is_null());
    for key in spec.keys() {
        match key.as_str() {
            "subnetSelectorTerms"
            | "securityGroupSelectorTerms"
            | "amiSelectorTerms"
            | "amiFamily"
            | "userData"
            | "role"
            | "instanceProfile"
            | "tags"
            | "blockDeviceMappings"
            | "instanceStorePolicy"
            | "detailedMonitoring"
            | "associatePublicIPAddress"
            | "metadataOptions"
            | "context" => {}
            _ => ctx.warn(&join("spec", key), "no v1 equivalent; not converted"),
        }
    }
    let mut parts = Parts {
        subnet_terms: terms(get("subnetSelectorTerms"), "spec.subnetSelectorTerms", ctx)?,
        security_group_terms: terms(get("securityGroupSelectorTerms"), "spec.securityGroupSelectorTerms", ctx)?,
        ..Parts::default()
    };
    for (terms, field) in [
        (&parts.subnet_terms, "spec.subnetSelectorTerms"),
        (&parts.security_group_terms, "spec.securityGroupSelectorTerms"),
    ] {
        if terms.is_empty() {
            return Err(ctx.invalid(field, "missing; v1 requires at least one term"));
        }
    }
    let ami_terms = terms(get("amiSelectorTerms"), "spec.amiSelectorTerms", ctx)?;
    let family = match get("amiFamily") {
        Some(v) => Some(as_str(v, "spec.amiFamily", ctx)?.to_string()),
        None => None,
    };
    parts.block_device_mappings = match get("blockDeviceMappings") {
        Some(v) => Some(block_device_mappings(v, "spec.blockDeviceMappings", ctx)?).filter(|l| !l.is_empty()),
        None => None,
    };
    let (ami_family, ami_terms) = resolve_ami(
        family.as_deref(),
        ami_terms,
        "spec.amiFamily",
        "spec.amiSelectorTerms",
        &mut parts.block_device_mappings,
        ctx,
    )?;
    parts.ami_family = ami_family;
    parts.ami_terms = ami_terms;
    let role = match get("role") {
        Some(v) => Some(as_str(v, "spec.role", ctx)?.to_string()),
        None => None,
    };
    let profile = match get("instanceProfile") {
        Some(v) => Some(as_str(v, "spec.instanceProfile", ctx)?.to_string()),
        None => None,
    };
    (parts.role, parts.instance_profile) = role_or_profile(role, profile, &name, opts, ctx)?;
    parts.kubelet = kubelet;
    parts.metadata_options = metadata_options(get("metadataOptions"), "spec.metadataOptions", ctx)?;
    parts.tags = match get("tags") {
        Some(v) => tags(v, "spec.tags", ctx)?,
        None => None,
    };
    parts.user_data = typed(get("userData"), "spec.userData", Value::is_string, "a string", ctx)?;
    parts.detailed_monitoring =
        typed(get("detailedMonitoring"), "spec.detailedMonitoring", Value::is_boolean, "true or false", ctx)?;
    parts.associate_public_ip_address = typed(
        get("associatePublicIPAddress"),
        "spec.associatePublicIPAddress",
        Value::is_boolean,
        "true or false",
        ctx,
    )?;
    parts.instance_store_policy =
        typed(get("instanceStorePolicy"), "spec.instanceStorePolicy", Value::is_string, "a string", ctx)?;
    parts.context = typed(get("context"), "spec.context", Value::is_string, "a string", ctx)?;
    Ok(assemble(metadata, parts))
}

pub(super) fn typed(
    value: Option<&Value>,
    field: &str,
    check: fn(&Value) -> bool,
    expected: &str,
    ctx: &Ctx,
) -> Result<Option<Value>, ConvertError> {
    match value {
        None => Ok(None),
        Some(v) if check(v) => Ok(Some(v.clone())),
        Some(v) => Err(ctx.invalid(field, format!("expected {expected}, found {}", type_name(v)))),
    }
}

pub(super) fn terms(value: Option<&Value>, field: &str, ctx: &Ctx) -> Result<Vec<Value>, ConvertError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let items = as_array(value, field, ctx)?;
    for (i, item) in items.iter().enumerate() {
        as_object(item, &format!("{field}[{i}]"), ctx)?;
    }
    Ok(items.clone())
}

/// v1 picks AMIs by `amiSelectorTerms`, either an alias (family@version) or explicit
/// terms plus `amiFamily` for the user data format.
pub(super) fn resolve_ami(
    family: Option<&str>,
    terms: Vec<Value>,
    family_field: &str,
    selector_field: &str,
    block_device_mappings: &mut Option<Vec<Value>>,
    ctx: &mut Ctx,
) -> Result<(Option<String>, Vec<Value>), ConvertError> {
    let family = match family {
        Some(f) => f,
        None => {
            let what = if terms.is_empty() { "alias al2@latest" } else { "amiFamily AL2 with the selected AMIs" };
            ctx.warn(
                family_field,
                format!(
                    "not set; the old API defaulted to AL2, so the EC2NodeClass uses {what}. AL2 is deprecated and has no AMIs for Kubernetes 1.33 and later: move to AL2023 (alias al2023@latest) once the user data is ready for it"
                ),
            );
            "AL2"
        }
    };
    match family {
        f if ALIAS_FAMILIES.contains(&f) => {
            if terms.is_empty() {
                let alias = format!("{}@latest", f.to_ascii_lowercase());
                Ok((None, vec![json!({ "alias": alias })]))
            } else {
                Ok((Some(f.to_string()), terms))
            }
        }
        "Ubuntu" => {
            if terms.is_empty() {
                return Err(ctx.invalid_with_hint(
                    family_field,
                    "Ubuntu is not an AMI family in v1 and the source selects no AMI, so there is nothing to launch",
                    format!("add {selector_field} naming the Ubuntu AMIs (e.g. aws::ids), or move to AL2023"),
                ));
            }
            let mut message = "Ubuntu is not an AMI family in v1; converted to AL2, whose user data format Ubuntu shares (as Karpenter's own conversion does). Compatibility is not guaranteed long-term".to_string();
            if block_device_mappings.is_none() {
                *block_device_mappings = Some(vec![ubuntu_root_volume()]);
                message.push_str("; added Ubuntu's root volume /dev/sda1 (20Gi gp3, encrypted) as blockDeviceMappings");
            }
            ctx.warn(family_field, message);
            Ok((Some("AL2".to_string()), terms))
        }
        "Custom" => {
            if terms.is_empty() {
                return Err(ctx.invalid_with_hint(
                    selector_field,
                    "missing; amiFamily Custom needs explicit AMIs",
                    format!("add {selector_field} naming the AMIs"),
                ));
            }
            ctx.warn(
                family_field,
                "Custom: in v1 the user data must register nodes with the taint karpenter.sh/unregistered:NoExecute, which Karpenter removes; check userData",
            );
            Ok((Some("Custom".to_string()), terms))
        }
        other => Err(ctx.invalid(
            family_field,
            format!("unknown AMI family {other:?} (expected AL2, AL2023, Bottlerocket, Ubuntu, Windows2019, Windows2022 or Custom)"),
        )),
    }
}

pub(super) fn role_or_profile(
    role: Option<String>,
    profile: Option<String>,
    name: &str,
    opts: &ConvertOptions,
    ctx: &mut Ctx,
) -> Result<(Option<String>, Option<String>), ConvertError> {
    match (role, profile, &opts.node_role) {
        (Some(role), profile, _) => {
            if profile.is_some() {
                ctx.warn(
                    "spec.instanceProfile",
                    "v1 allows only one of role and instanceProfile; kept role, instanceProfile not converted",
                );
            }
            Ok((Some(role), None))
        }
        // --node-role asks for Karpenter-managed instance profiles.
        (None, _, Some(node_role)) => Ok((Some(node_role.clone()), None)),
        (None, Some(profile), None) => Ok((None, Some(profile))),
        (None, None, None) => {
            Err(ConvertError::NoNodeRole { position: Box::new(ctx.position.clone()), name: name.to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::Position;

    fn ctx() -> Ctx {
        Ctx::new(Position { source: "t".into(), document: 1, item: None, line: None, object: None })
    }

    #[test]
    fn tag_values_are_multiplied_out() {
        let mut c = ctx();
        let terms = selector_terms(&json!({"a": "1,2", "b": "x"}), "s", Selector::Subnet, &mut c).unwrap();
        assert_eq!(terms, vec![json!({"tags": {"a": "1", "b": "x"}}), json!({"tags": {"a": "2", "b": "x"}})]);
    }

    #[test]
    fn ids_win_over_tags_with_a_warning() {
        let mut c = ctx();
        let terms =
            selector_terms(&json!({"aws::ids": "sg-1, sg-2", "Name": "x"}), "s", Selector::SecurityGroup, &mut c)
                .unwrap();
        assert_eq!(terms, vec![json!({"id": "sg-1"}), json!({"id": "sg-2"})]);
        assert_eq!(c.into_warnings().len(), 1);
    }

    #[test]
    fn ami_names_and_owners_cross() {
        let mut c = ctx();
        let terms =
            selector_terms(&json!({"aws::name": "n1,n2", "aws::owners": "self,amazon"}), "s", Selector::Ami, &mut c)
                .unwrap();
        assert_eq!(terms.len(), 4);
        assert_eq!(terms[1], json!({"name": "n2", "owner": "self"}));
    }

    #[test]
    fn empty_tag_value_becomes_wildcard() {
        let mut c = ctx();
        let terms = selector_terms(&json!({"k": ""}), "s", Selector::Subnet, &mut c).unwrap();
        assert_eq!(terms, vec![json!({"tags": {"k": "*"}})]);
    }

    #[test]
    fn owners_alone_and_huge_products_are_errors() {
        let mut c = ctx();
        assert!(selector_terms(&json!({"aws::owners": "self"}), "s", Selector::Ami, &mut c).is_err());
        let big = json!({"a": "1,2,3,4", "b": "1,2,3,4", "c": "1,2"});
        assert!(selector_terms(&big, "s", Selector::Subnet, &mut c).is_err());
    }

    #[test]
    fn volume_sizes() {
        assert!(is_v1_volume_size("20Gi"));
        assert!(is_v1_volume_size("1T"));
        assert!(!is_v1_volume_size("20"));
        assert!(!is_v1_volume_size("100Mi"));
        assert!(!is_v1_volume_size("Gi"));
    }

    #[test]
    fn ami_resolution() {
        let mut c = ctx();
        let mut bdm = None;
        let (f, t) = resolve_ami(Some("Bottlerocket"), vec![], "f", "s", &mut bdm, &mut c).unwrap();
        assert_eq!((f, t), (None, vec![json!({"alias": "bottlerocket@latest"})]));
        let (f, _) = resolve_ami(Some("AL2023"), vec![json!({"id": "ami-1"})], "f", "s", &mut bdm, &mut c).unwrap();
        assert_eq!(f.as_deref(), Some("AL2023"));
        assert!(resolve_ami(Some("Ubuntu"), vec![], "f", "s", &mut bdm, &mut c).is_err());
        assert!(resolve_ami(Some("Custom"), vec![], "f", "s", &mut bdm, &mut c).is_err());
        assert!(resolve_ami(Some("Gentoo"), vec![], "f", "s", &mut bdm, &mut c).is_err());
        let (f, _) = resolve_ami(Some("Ubuntu"), vec![json!({"id": "ami-1"})], "f", "s", &mut bdm, &mut c).unwrap();
        assert_eq!(f.as_deref(), Some("AL2"));
        assert_eq!(bdm, Some(vec![ubuntu_root_volume()]));
    }

    #[test]
    fn metadata_defaults_fill_gaps() {
        let mut c = ctx();
        let out = metadata_options(Some(&json!({"httpTokens": "optional"})), "m", &mut c).unwrap();
        assert_eq!(
            out,
            json!({"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled", "httpPutResponseHopLimit": 2, "httpTokens": "optional"})
        );
    }

    #[test]
    fn node_role_choice() {
        let mut c = ctx();
        let with_role = ConvertOptions { node_role: Some("R".into()), strict: false };
        let none = ConvertOptions::default();
        assert_eq!(role_or_profile(None, Some("P".into()), "n", &with_role, &mut c).unwrap(), (Some("R".into()), None));
        assert_eq!(role_or_profile(None, Some("P".into()), "n", &none, &mut c).unwrap(), (None, Some("P".into())));
        assert_eq!(role_or_profile(Some("X".into()), None, "n", &with_role, &mut c).unwrap(), (Some("X".into()), None));
        assert!(matches!(role_or_profile(None, None, "n", &none, &mut c), Err(ConvertError::NoNodeRole { .. })));
    }
}
