//! Node access on CONFIG_MAP clusters: the node role's entry in the `aws-auth` ConfigMap's
//! `mapRoles` (karpenter-facts §4). Without it instances launch and never become nodes.
//!
//! The ConfigMap is shared with everyone else's mappings (node groups, admins, CI roles), often
//! hand-edited with comments, so the merge is textual: the existing `mapRoles` is kept byte for
//! byte and the entry is appended in the same indentation. The result is re-parsed and checked
//! to be exactly the old entries plus the new one; when the text is in a shape that makes that
//! impossible (a flow list, say), the list is re-serialised with every entry kept in order.
//!
//! Writes are read-modify-write with the object's `resourceVersion`, so a concurrent edit makes
//! the update fail and be redone on the fresh text instead of being overwritten.

use ::kube::api::{Api, DynamicObject, PostParams};
use serde_json::{json, Value};
use serde_yaml_ng::Value as Yaml;

use super::{api_resource, kube_error, Kube};
use crate::error::{Error, ErrorKind, Result};

/// Where the ConfigMap lives.
pub const NAMESPACE: &str = "kube-system";
/// Its fixed name.
pub const NAME: &str = "aws-auth";
/// The Kubernetes user EKS maps node instances to.
pub const NODE_USERNAME: &str = "system:node:{{EC2PrivateDNSName}}";
/// The groups nodes need to bootstrap and then act as nodes.
pub const NODE_GROUPS: [&str; 2] = ["system:bootstrappers", "system:nodes"];
/// How often a write that lost a race with another editor is redone.
const ATTEMPTS: usize = 5;

/// An entry for the node role that maps it to something else than nodes need: someone else's
/// mapping, which karpctl reports and does not touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignEntry {
    /// Its username, if any.
    pub username: Option<String>,
    /// Its groups.
    pub groups: Vec<String>,
}

impl std::fmt::Display for ForeignEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "username {}, groups [{}]", self.username.as_deref().unwrap_or("(none)"), self.groups.join(", "))
    }
}

/// What merging the node role into a `mapRoles` text gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// The entry was missing; this is the new text.
    Added(String),
    /// An entry with the node username and groups is there already: nothing to change.
    Present,
    /// Entries for the role map it differently; nothing was changed.
    Foreign(Vec<ForeignEntry>),
}

/// The entry nodes need, as a block-sequence item indented by `indent` spaces.
pub fn node_entry(role_arn: &str, indent: usize) -> String {
    let i = " ".repeat(indent);
    format!(
        "{i}- rolearn: {role_arn}\n{i}  username: {NODE_USERNAME}\n{i}  groups:\n{i}    - {}\n{i}    - {}\n",
        NODE_GROUPS[0], NODE_GROUPS[1]
    )
}

/// Merge the node role into `existing` (the `mapRoles` text; empty when there is none).
/// Pure and idempotent: merging its own output again gives [`Merge::Present`].
pub fn merge_map_roles(existing: &str, role_arn: &str) -> Result<Merge> {
    let entries = parse_entries(existing)?;
    let mine: Vec<&Yaml> = entries.iter().filter(|e| is_for_role(e, role_arn)).collect();
    let foreign: Vec<ForeignEntry> = mine.iter().filter(|e| !grants_node(e)).map(|e| foreign_entry(e)).collect();
    if !foreign.is_empty() {
        return Ok(Merge::Foreign(foreign));
    }
    if !mine.is_empty() {
        return Ok(Merge::Present);
    }
    let mut wanted = entries.clone();
    wanted.push(entry_value(role_arn));
    if let Some(text) = append_textually(existing, role_arn) {
        if parse_entries(&text).ok().as_ref() == Some(&wanted) {
            return Ok(Merge::Added(text));
        }
    }
    Ok(Merge::Added(serialise(&wanted)?))
}

/// Remove the node role's entry, if it is exactly the one karpctl adds (teardown); entries that
/// map the role otherwise are someone else's and stay. None when there is nothing to remove.
pub fn remove_map_role(existing: &str, role_arn: &str) -> Result<Option<String>> {
    let entries = parse_entries(existing)?;
    let is_ours = |e: &Yaml| is_for_role(e, role_arn) && is_exactly_node(e);
    if !entries.iter().any(is_ours) {
        return Ok(None);
    }
    let wanted: Vec<Yaml> = entries.iter().filter(|e| !is_ours(e)).cloned().collect();
    if let Some((head, items)) = block_items(existing) {
        let mut text = head.to_string();
        for item in items {
            match parse_entries(&dedent(item)) {
                Ok(one) if one.len() == 1 && is_ours(&one[0]) => {}
                _ => text.push_str(item),
            }
        }
        if parse_entries(&text).ok().as_ref() == Some(&wanted) {
            return Ok(Some(text));
        }
    }
    Ok(Some(serialise(&wanted)?))
}

fn parse_entries(text: &str) -> Result<Vec<Yaml>> {
    let invalid = |cause: String| {
        Error::new(ErrorKind::ClusterState, format!("the {NAME} ConfigMap's mapRoles is not a YAML list of mappings"))
            .with_cause(cause)
            .with_hint(format!("fix it with kubectl edit configmap {NAME} -n {NAMESPACE}, then run again"))
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_yaml_ng::from_str::<Yaml>(text).map_err(|e| invalid(e.to_string()))? {
        Yaml::Null => Ok(Vec::new()),
        Yaml::Sequence(items) => {
            if items.iter().all(Yaml::is_mapping) {
                Ok(items)
            } else {
                Err(invalid("an item is not a mapping".into()))
            }
        }
        _ => Err(invalid("it is not a list".into())),
    }
}

fn str_field<'a>(e: &'a Yaml, key: &str) -> Option<&'a str> {
    e.get(key).and_then(Yaml::as_str)
}

fn groups(e: &Yaml) -> Vec<String> {
    e.get("groups")
        .and_then(Yaml::as_sequence)
        .map(|g| g.iter().filter_map(Yaml::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// ARNs compare case-insensitively, as IAM and the EKS authenticator treat role names.
fn is_for_role(e: &Yaml, role_arn: &str) -> bool {
    str_field(e, "rolearn").is_some_and(|a| a.trim().eq_ignore_ascii_case(role_arn))
}

/// The node username and at least the node groups (Windows nodes add one more).
fn grants_node(e: &Yaml) -> bool {
    let g = groups(e);
    str_field(e, "username") == Some(NODE_USERNAME) && NODE_GROUPS.iter().all(|n| g.iter().any(|x| x == n))
}

fn is_exactly_node(e: &Yaml) -> bool {
    let mut g = groups(e);
    g.sort();
    grants_node(e) && g == NODE_GROUPS && e.as_mapping().map(|m| m.len()) == Some(3)
}

fn foreign_entry(e: &Yaml) -> ForeignEntry {
    ForeignEntry { username: str_field(e, "username").map(str::to_string), groups: groups(e) }
}

fn entry_value(role_arn: &str) -> Yaml {
    // Parsed from the same text that is appended, so the comparison after appending is exact.
    serde_yaml_ng::from_str::<Vec<Yaml>>(&node_entry(role_arn, 0)).ok().and_then(|mut v| v.pop()).unwrap_or(Yaml::Null)
}

fn serialise(entries: &[Yaml]) -> Result<String> {
    serde_yaml_ng::to_string(entries).map_err(|e| {
        Error::new(ErrorKind::Render, format!("failed to write the {NAME} mapRoles")).with_cause(e.to_string())
    })
}

/// The existing text with the entry appended at the list's own indentation; None when the text
/// is not a block list (a flow list `[...]`, a scalar) and cannot be appended to.
fn append_textually(existing: &str, role_arn: &str) -> Option<String> {
    let indent = if existing.trim().is_empty() {
        0
    } else {
        let (_, items) = block_items(existing)?;
        items.first().map(|i| i.len() - i.trim_start_matches(' ').len())?
    };
    let mut text = if existing.trim().is_empty() { String::new() } else { existing.to_string() };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&node_entry(role_arn, indent));
    Some(text)
}

/// Split a block list into what comes before its first item (blank lines, comments) and its
/// items, each item running up to the next one. None unless the text is such a list.
fn block_items(text: &str) -> Option<(&str, Vec<&str>)> {
    let is_item = |line: &str, indent: usize| {
        line.len() > indent
            && line[..indent].bytes().all(|b| b == b' ')
            && line[indent..].starts_with('-')
            && line[indent + 1..].chars().next().is_none_or(|c| c == ' ' || c == '\n' || c == '\r')
    };
    let mut offset = 0;
    let mut indent = None;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start_matches(' ');
        if t.trim().is_empty() || t.starts_with('#') {
            offset += line.len();
            continue;
        }
        let i = line.len() - t.len();
        if !is_item(line, i) {
            return None;
        }
        indent = Some(i);
        break;
    }
    let indent = indent?;
    let head = &text[..offset];
    let mut items: Vec<&str> = Vec::new();
    let mut start = offset;
    let mut pos = offset;
    for line in text[offset..].split_inclusive('\n') {
        if pos > start && is_item(line, indent) {
            items.push(&text[start..pos]);
            start = pos;
        }
        pos += line.len();
    }
    items.push(&text[start..]);
    Some((head, items))
}

/// An item's text moved to column 0, to be parsed on its own.
fn dedent(item: &str) -> String {
    let indent = item.len() - item.trim_start_matches(' ').len();
    item.split_inclusive('\n')
        .map(|l| if l.len() >= indent && l[..indent].trim().is_empty() { &l[indent..] } else { l })
        .collect()
}

/// What [`ensure_node_role`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsAuthChange {
    /// There was no aws-auth ConfigMap; it now holds just the node entry.
    Created,
    /// The entry was appended.
    Updated,
    /// The entry was there already.
    Unchanged,
    /// The role is mapped otherwise; nothing was written.
    Foreign(Vec<ForeignEntry>),
}

/// How the cluster maps the node role today, for `doctor` and for planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRoleMapping {
    /// No aws-auth ConfigMap at all.
    NoConfigMap,
    /// The ConfigMap exists without an entry for the role.
    Missing,
    /// The entry nodes need is there.
    Present,
    /// The role is mapped otherwise.
    Foreign(Vec<ForeignEntry>),
}

fn configmaps(client: ::kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client, NAMESPACE, &api_resource("v1", "ConfigMap"))
}

fn map_roles(cm: &DynamicObject) -> &str {
    cm.data.pointer("/data/mapRoles").and_then(Value::as_str).unwrap_or("")
}

/// Read the node role's mapping without changing anything.
pub async fn observe_node_role(kube: &Kube, role_arn: &str) -> Result<NodeRoleMapping> {
    let api = configmaps(kube.client().await?);
    let cm = api.get_opt(NAME).await.map_err(|e| kube_error(read_msg(), &kube.server(), e))?;
    let Some(cm) = cm else { return Ok(NodeRoleMapping::NoConfigMap) };
    Ok(match merge_map_roles(map_roles(&cm), role_arn)? {
        Merge::Added(_) => NodeRoleMapping::Missing,
        Merge::Present => NodeRoleMapping::Present,
        Merge::Foreign(f) => NodeRoleMapping::Foreign(f),
    })
}

/// Make sure the node role is mapped: create the ConfigMap if there is none, else append the
/// entry (read-modify-write on `resourceVersion`, redone if someone else wrote meanwhile).
pub async fn ensure_node_role(kube: &Kube, role_arn: &str) -> Result<AwsAuthChange> {
    for _ in 0..ATTEMPTS {
        let api = configmaps(kube.client().await?);
        let current = api.get_opt(NAME).await.map_err(|e| kube_error(read_msg(), &kube.server(), e))?;
        let Some(mut cm) = current else {
            let fresh: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": NAME, "namespace": NAMESPACE},
                "data": {"mapRoles": node_entry(role_arn, 0)},
            }))
            .map_err(|e| {
                Error::new(ErrorKind::Render, "failed to build the aws-auth ConfigMap").with_cause(e.to_string())
            })?;
            match api
                .create(&PostParams { field_manager: Some(super::FIELD_MANAGER.into()), ..Default::default() }, &fresh)
                .await
            {
                Ok(_) => return Ok(AwsAuthChange::Created),
                Err(::kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(kube_error(format!("failed to create the {NAME} ConfigMap"), &kube.server(), e)),
            }
        };
        let text = match merge_map_roles(map_roles(&cm), role_arn)? {
            Merge::Present => return Ok(AwsAuthChange::Unchanged),
            Merge::Foreign(f) => return Ok(AwsAuthChange::Foreign(f)),
            Merge::Added(text) => text,
        };
        set_map_roles(&mut cm, text);
        // `cm` carries the resourceVersion it was read at: the server refuses the write (409)
        // if anyone changed the ConfigMap since, and the loop starts over from a fresh read.
        let pp = PostParams { field_manager: Some(super::FIELD_MANAGER.into()), ..Default::default() };
        match api.replace(NAME, &pp, &cm).await {
            Ok(_) => return Ok(AwsAuthChange::Updated),
            Err(::kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(kube_error(format!("failed to update the {NAME} ConfigMap"), &kube.server(), e)),
        }
    }
    Err(conflict())
}

/// Remove the node role's entry if it is exactly karpctl's (teardown). `Ok(false)`: nothing to
/// remove (no ConfigMap, no entry, or only someone else's mapping of the role).
pub async fn remove_node_role(kube: &Kube, role_arn: &str) -> Result<bool> {
    for _ in 0..ATTEMPTS {
        let api = configmaps(kube.client().await?);
        let current = api.get_opt(NAME).await.map_err(|e| kube_error(read_msg(), &kube.server(), e))?;
        let Some(mut cm) = current else { return Ok(false) };
        let Some(text) = remove_map_role(map_roles(&cm), role_arn)? else { return Ok(false) };
        set_map_roles(&mut cm, text);
        let pp = PostParams { field_manager: Some(super::FIELD_MANAGER.into()), ..Default::default() };
        match api.replace(NAME, &pp, &cm).await {
            Ok(_) => return Ok(true),
            Err(::kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(kube_error(format!("failed to update the {NAME} ConfigMap"), &kube.server(), e)),
        }
    }
    Err(conflict())
}

fn set_map_roles(cm: &mut DynamicObject, text: String) {
    if !cm.data.is_object() {
        cm.data = json!({});
    }
    match cm.data.get_mut("data").and_then(Value::as_object_mut) {
        Some(data) => {
            data.insert("mapRoles".into(), Value::String(text));
        }
        None => {
            cm.data["data"] = json!({"mapRoles": text});
        }
    }
}

fn read_msg() -> String {
    format!("failed to read the {NAME} ConfigMap in {NAMESPACE}")
}

fn conflict() -> Error {
    Error::new(ErrorKind::AlreadyExists, format!("the {NAME} ConfigMap kept changing while karpctl updated it"))
        .with_hint("something else is editing it right now; run again in a minute")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:iam::123456789012:role/KarpenterNodeRole-demo";

    const EKSCTL: &str = "- groups:\n  - system:bootstrappers\n  - system:nodes\n  rolearn: arn:aws:iam::123456789012:role/ng-1\n  username: system:node:{{EC2PrivateDNSName}}\n";

    #[test]
    fn empty_gets_just_the_entry() {
        let Merge::Added(t) = merge_map_roles("", ARN).unwrap() else { panic!() };
        assert_eq!(t, node_entry(ARN, 0));
        assert_eq!(
            t,
            "- rolearn: arn:aws:iam::123456789012:role/KarpenterNodeRole-demo\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n"
        );
        assert_eq!(merge_map_roles("\n  \n", ARN).unwrap(), Merge::Added(node_entry(ARN, 0)));
    }

    #[test]
    fn existing_text_is_kept_byte_for_byte_and_the_entry_appended() {
        let existing = format!("# managed by hand, do not reorder\n{EKSCTL}- rolearn: arn:aws:iam::123456789012:role/admin # ops\n  username: admin\n  groups: [system:masters]\n");
        let Merge::Added(t) = merge_map_roles(&existing, ARN).unwrap() else { panic!() };
        assert_eq!(t, format!("{existing}{}", node_entry(ARN, 0)));
        // Idempotent.
        assert_eq!(merge_map_roles(&t, ARN).unwrap(), Merge::Present);
    }

    #[test]
    fn indented_lists_and_missing_final_newline() {
        let existing = "  - rolearn: arn:aws:iam::1:role/a\n    username: a\n    groups:\n      - g";
        let Merge::Added(t) = merge_map_roles(existing, ARN).unwrap() else { panic!() };
        assert_eq!(t, format!("{existing}\n{}", node_entry(ARN, 2)));
        assert_eq!(parse_entries(&t).unwrap().len(), 2);
    }

    #[test]
    fn flow_lists_are_reserialised_keeping_every_entry_in_order() {
        let existing = "[{rolearn: 'arn:aws:iam::1:role/a', username: a, groups: [g]}, {rolearn: 'arn:aws:iam::1:role/b', username: b}]";
        let Merge::Added(t) = merge_map_roles(existing, ARN).unwrap() else { panic!() };
        let e = parse_entries(&t).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(str_field(&e[0], "rolearn"), Some("arn:aws:iam::1:role/a"));
        assert_eq!(str_field(&e[1], "username"), Some("b"));
        assert!(is_for_role(&e[2], ARN) && grants_node(&e[2]));
    }

    #[test]
    fn already_containing_in_another_layout_is_present() {
        let existing = format!("{EKSCTL}- username: system:node:{{{{EC2PrivateDNSName}}}}\n  groups: [system:nodes, system:bootstrappers]\n  rolearn: {}\n", ARN.to_uppercase().replace("ARN:AWS:IAM", "arn:aws:iam"));
        assert_eq!(merge_map_roles(&existing, ARN).unwrap(), Merge::Present);
    }

    #[test]
    fn same_role_mapped_otherwise_is_foreign_and_untouched() {
        let existing =
            format!("{EKSCTL}- rolearn: {ARN}\n  username: karpenter-admin\n  groups:\n    - system:masters\n");
        assert_eq!(
            merge_map_roles(&existing, ARN).unwrap(),
            Merge::Foreign(vec![ForeignEntry {
                username: Some("karpenter-admin".into()),
                groups: vec!["system:masters".into()]
            }])
        );
        let missing_group = format!("- rolearn: {ARN}\n  username: {NODE_USERNAME}\n  groups: [system:nodes]\n");
        assert!(matches!(merge_map_roles(&missing_group, ARN).unwrap(), Merge::Foreign(_)));
    }

    #[test]
    fn not_a_list_is_a_clear_error() {
        let e = merge_map_roles("rolearn: x\n", ARN).unwrap_err();
        assert!(e.message.contains("not a YAML list"), "{e}");
        assert!(e.hint.unwrap().contains("kubectl edit configmap aws-auth"));
        assert!(merge_map_roles("- just a string\n", ARN).is_err());
    }

    #[test]
    fn remove_takes_out_only_karpctls_entry() {
        let existing = format!("# keep me\n{EKSCTL}");
        let Merge::Added(with) = merge_map_roles(&existing, ARN).unwrap() else { panic!() };
        assert_eq!(remove_map_role(&with, ARN).unwrap(), Some(existing.clone()));
        assert_eq!(remove_map_role(&existing, ARN).unwrap(), None);
        let foreign = format!("{EKSCTL}- rolearn: {ARN}\n  username: someone\n  groups: [system:masters]\n");
        assert_eq!(remove_map_role(&foreign, ARN).unwrap(), None);
        // Ours in the middle: the others keep their text and order.
        let middle = format!("{}{EKSCTL}", node_entry(ARN, 0));
        assert_eq!(remove_map_role(&middle, ARN).unwrap(), Some(EKSCTL.to_string()));
    }
}
