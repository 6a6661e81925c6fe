//! Which image an inferred EC2NodeClass launches, and what becomes of the group's user data.
//!
//! - A group on an EKS-optimized AMI type (`AL2023_*`, `AL2_*`, `BOTTLEROCKET_*`) gets that
//!   family's alias (`al2023@latest`, ...). Its launch template's user data is what EKS merged
//!   into the bootstrap it generates; Karpenter merges an EC2NodeClass's `userData` into its own
//!   bootstrap for these families the same way (the EC2NodeClass CRD: "Karpenter will merge
//!   certain fields into this UserData"), so it is carried into `spec.userData`.
//! - A group on a custom AMI (amiType `CUSTOM`, or any self-managed Auto Scaling group: its
//!   template names the image) gets `amiSelectorTerms: [{id: ami-...}]`. Without an alias
//!   term v1 requires `amiFamily` (the CRD's rule "must specify amiFamily if amiSelectorTerms
//!   does not contain an alias"): the family the group's user data is written for (nodeadm's
//!   NodeConfig: AL2023; /etc/eks/bootstrap.sh: AL2; Bottlerocket's TOML settings:
//!   Bottlerocket), else `Custom`. That user data is not carried: on a custom AMI it is the
//!   node's whole bootstrap, which Karpenter writes itself for a known family (carrying it
//!   would bootstrap twice), and for `Custom` Karpenter uses `userData` verbatim with nothing
//!   of its own, so karpctl cannot write a correct one. The plan says so, per pool.

use super::discover::NodeGroup;
use super::template::{Template, UNREADABLE};

/// The image part of an EC2NodeClass, with what the plan must say about it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Image {
    /// The alias term (`al2023@latest`), for an EKS-optimized AMI type.
    pub alias: Option<String>,
    /// The AMI id term, for a custom AMI.
    pub id: Option<String>,
    /// `amiFamily`, set with an id term.
    pub family: Option<String>,
    /// `userData`, where Karpenter merges it.
    pub user_data: Option<String>,
    /// What was not carried over, and why.
    pub notes: Vec<String>,
}

/// The alias of an EKS AMI type.
fn alias(ami_type: &str) -> &'static str {
    if ami_type.starts_with("BOTTLEROCKET") {
        "bottlerocket@latest"
    } else if ami_type.starts_with("AL2_") {
        "al2@latest"
    } else {
        "al2023@latest"
    }
}

/// The AMI family a custom AMI's user data is written for; None: not one Karpenter knows.
pub fn family_of(user_data: &str) -> Option<&'static str> {
    if user_data.contains("node.eks.aws/") || user_data.contains("kind: NodeConfig") {
        Some("AL2023")
    } else if user_data.contains("/etc/eks/bootstrap.sh") {
        Some("AL2")
    } else if user_data.contains("[settings.kubernetes]") {
        Some("Bottlerocket")
    } else {
        None
    }
}

/// Whether an instance type is Graviton (arm64): a family with `g` right after its generation
/// digits (`m6g`, `c7gn`, `t4g`, `x2gd`), or `a1`.
pub fn is_arm_type(instance_type: &str) -> bool {
    let family = instance_type.split('.').next().unwrap_or(instance_type);
    let rest = family.trim_start_matches(|c: char| c.is_ascii_lowercase());
    let after_digits = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    family == "a1" || (after_digits.len() < rest.len() && after_digits.starts_with('g'))
}

/// The architectures of a group: from its AMI type, or for a custom AMI from its instance types.
pub fn arches(g: &NodeGroup) -> Vec<&'static str> {
    if g.ami_type != "CUSTOM" {
        return vec![if g.ami_type.contains("ARM") { "arm64" } else { "amd64" }];
    }
    let mut out = Vec::new();
    for t in &g.instance_types {
        let a = if is_arm_type(t) { "arm64" } else { "amd64" };
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        out.push("amd64");
    }
    out
}

/// The image of a pool whose launch template (if any) is `t`, taken from group `g`.
pub fn image(pool: &str, g: &NodeGroup, t: Option<&Template>) -> Image {
    let user_data = t.and_then(|t| t.user_data.clone());
    let mut out = Image::default();
    let custom_id = t.and_then(|t| t.image_id.clone()).filter(|_| g.ami_type == "CUSTOM");
    match custom_id {
        Some(id) => {
            let family = user_data.as_deref().and_then(family_of).unwrap_or("Custom");
            out.notes.push(format!(
                "{pool}: custom AMI {id} (from {}'s launch template) kept as amiSelectorTerms [{{id: {id}}}], amiFamily {family}",
                g.name
            ));
            if let Some(u) = &user_data {
                out.notes.push(format!(
                    "{pool}: user data not carried over ({} bytes): on a custom AMI it is the node's own bootstrap{}",
                    u.len(),
                    if family == "Custom" { "" } else { ", which Karpenter writes itself for this family" }
                ));
            }
            if family == "Custom" {
                out.notes.push(format!(
                    "{pool}: amiFamily Custom: Karpenter adds no bootstrap; set spec.userData to one that joins the node before the NodePool launches any"
                ));
            }
            out.id = Some(id);
            out.family = Some(family.to_string());
        }
        None => {
            if g.ami_type == "CUSTOM" {
                out.notes.push(format!(
                    "{pool}: {} runs a custom AMI but its launch template names none; al2023@latest instead",
                    g.name
                ));
            }
            out.alias = Some(alias(&g.ami_type).to_string());
            match user_data {
                Some(u) if u == UNREADABLE || g.ami_type == "CUSTOM" => {
                    out.notes.push(format!("{pool}: user data not carried over: {u}"));
                }
                Some(u) => out.user_data = Some(u),
                None => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(ami_type: &str, types: &[&str]) -> NodeGroup {
        NodeGroup {
            ami_type: ami_type.into(),
            instance_types: types.iter().map(|s| s.to_string()).collect(),
            ..NodeGroup::sample("g")
        }
    }

    fn template(image: Option<&str>, user_data: Option<&str>) -> Template {
        Template {
            image_id: image.map(str::to_string),
            user_data: user_data.map(str::to_string),
            ..Template::default()
        }
    }

    #[test]
    fn graviton_types_are_arm() {
        for t in ["m6g.large", "c7gn.xlarge", "t4g.small", "x2gd.medium", "a1.large", "g5g.xlarge", "im4gn.large"] {
            assert!(is_arm_type(t), "{t}");
        }
        for t in ["m5.large", "m6i.large", "m6a.large", "g5.xlarge", "c5n.large", "p4d.24xlarge"] {
            assert!(!is_arm_type(t), "{t}");
        }
        assert_eq!(arches(&group("CUSTOM", &["m6g.large", "m5.large"])), vec!["arm64", "amd64"]);
        assert_eq!(arches(&group("AL2023_ARM_64_STANDARD", &["m5.large"])), vec!["arm64"]);
    }

    #[test]
    fn an_eks_ami_type_keeps_its_alias_and_its_user_data() {
        let mime = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\n\necho hi\n--B--\n";
        let i = image("web", &group("AL2023_x86_64_STANDARD", &[]), Some(&template(None, Some(mime))));
        assert_eq!(i.alias.as_deref(), Some("al2023@latest"));
        assert_eq!(i.user_data.as_deref(), Some(mime));
        assert!(i.notes.is_empty(), "{:?}", i.notes);
        let b = image("b", &group("BOTTLEROCKET_x86_64", &[]), None);
        assert_eq!((b.alias.as_deref(), b.user_data), (Some("bottlerocket@latest"), None));
        let bad = image("x", &group("AL2_x86_64", &[]), Some(&template(None, Some(UNREADABLE))));
        assert_eq!(bad.user_data, None);
        assert!(bad.notes[0].contains("not carried"), "{:?}", bad.notes);
    }

    #[test]
    fn a_custom_ami_is_kept_by_id_with_the_family_its_user_data_is_for_and_the_user_data_left_out() {
        let nodeadm = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: c\n";
        let i = image("web", &group("CUSTOM", &[]), Some(&template(Some("ami-1"), Some(nodeadm))));
        assert_eq!((i.alias, i.id.as_deref(), i.family.as_deref()), (None, Some("ami-1"), Some("AL2023")));
        assert_eq!(i.user_data, None);
        assert!(i.notes.iter().any(|n| n.contains("user data not carried over")), "{:?}", i.notes);
        let al2 = image("w", &group("CUSTOM", &[]), Some(&template(Some("ami-2"), Some("/etc/eks/bootstrap.sh c"))));
        assert_eq!(al2.family.as_deref(), Some("AL2"));
        let unknown = image("w", &group("CUSTOM", &[]), Some(&template(Some("ami-3"), Some("#!/bin/sh\nmy-join"))));
        assert_eq!(unknown.family.as_deref(), Some("Custom"));
        assert!(unknown.notes.iter().any(|n| n.contains("Karpenter adds no bootstrap")), "{:?}", unknown.notes);
        let none = image("w", &group("CUSTOM", &[]), Some(&template(None, None)));
        assert_eq!(none.alias.as_deref(), Some("al2023@latest"));
        assert!(none.notes[0].contains("names none"), "{:?}", none.notes);
    }
}
