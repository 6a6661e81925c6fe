//! Fixed, predictable resource names (the contract's "Resource names"), and the deterministic
//! shortening used when a long cluster name would push a name past its service's limit.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Longest IAM role name.
pub const ROLE_NAME_MAX: usize = 64;
/// Longest IAM managed policy name.
pub const POLICY_NAME_MAX: usize = 128;
/// Longest IAM instance profile name.
pub const INSTANCE_PROFILE_NAME_MAX: usize = 128;
/// Longest SQS queue name.
pub const QUEUE_NAME_MAX: usize = 80;
/// Longest EventBridge rule name.
pub const RULE_NAME_MAX: usize = 64;

/// A name that may have been shortened; `full` is kept so the shortening can be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// The name karpctl uses.
    pub name: String,
    /// The name before shortening, when it was shortened.
    pub shortened_from: Option<String>,
}

/// `full` if it fits `max`, else its first characters, a dash and 8 hex digits of its SHA-256:
/// the same input always gives the same name, and two long names that share a prefix differ.
pub fn fit(full: &str, max: usize) -> Name {
    if full.len() <= max {
        return Name { name: full.to_string(), shortened_from: None };
    }
    let digest = Sha256::digest(full.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let keep = max - hash.len() - 1;
    let prefix = full[..keep].trim_end_matches(['-', '_', '.']);
    Name { name: format!("{prefix}-{hash}"), shortened_from: Some(full.to_string()) }
}

/// The node role of cluster `cluster` (`KarpenterNodeRole-C`, shortened like every name), which
/// `init` creates and `convert -c C` writes into converted EC2NodeClasses.
pub fn node_role(cluster: &str) -> Name {
    fit(&format!("KarpenterNodeRole-{cluster}"), ROLE_NAME_MAX)
}

/// Validate an EKS cluster name: 1–100 characters, starting with a letter or digit, then letters,
/// digits, `-` and `_` (EKS's own rule). Everything karpctl names derives from it, so it is
/// checked before anything else happens.
pub fn validate_cluster_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("invalid cluster name {name:?}"),
            "an EKS cluster name has 1-100 characters: letters, digits, '-' and '_', starting with a letter or digit",
        ))
    }
}

/// Validate a Kubernetes namespace (an RFC 1123 DNS label).
pub fn validate_namespace(ns: &str) -> Result<()> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("invalid namespace {ns:?}"),
            "a namespace is a DNS label: at most 63 lowercase letters, digits and '-', not starting or ending with '-'",
        ))
    }
}

/// Validate a Karpenter version: `X.Y.Z` without a leading `v` (the chart's own spelling).
pub fn validate_version(v: &str) -> Result<()> {
    let parts: Vec<&str> = v.split('.').collect();
    let ok = parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        let hint = if let Some(rest) = v.strip_prefix('v') {
            format!("write the version without the leading 'v': {rest}")
        } else {
            "give the version as X.Y.Z, e.g. 1.14.1".to_string()
        };
        Err(Error::invalid(format!("invalid Karpenter version {v:?}"), hint))
    }
}

/// Validate an AWS region name such as `eu-west-1` or `us-gov-west-1`: it is interpolated into ARNs.
pub fn validate_region(r: &str) -> Result<()> {
    let parts: Vec<&str> = r.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("invalid AWS region {r:?}"), "give a region such as us-east-1 or eu-west-1"))
    }
}

/// Validate a 12-digit AWS account id.
pub fn validate_account(a: &str) -> Result<()> {
    if a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Error::invalid(format!("invalid AWS account id {a:?}"), "an account id is 12 digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        let n = fit("KarpenterNodeRole-demo", ROLE_NAME_MAX);
        assert_eq!(n.name, "KarpenterNodeRole-demo");
        assert_eq!(n.shortened_from, None);
    }

    #[test]
    fn long_names_are_shortened_deterministically_within_the_limit() {
        let full = format!("KarpenterControllerRole-{}", "a".repeat(60));
        let a = fit(&full, ROLE_NAME_MAX);
        let b = fit(&full, ROLE_NAME_MAX);
        assert_eq!(a, b);
        assert_eq!(a.name.len(), ROLE_NAME_MAX);
        assert!(a.name.starts_with("KarpenterControllerRole-aaa"));
        assert_eq!(a.shortened_from.as_deref(), Some(full.as_str()));
        let other = fit(&format!("KarpenterControllerRole-{}b", "a".repeat(60)), ROLE_NAME_MAX);
        assert_ne!(a.name, other.name);
    }

    #[test]
    fn validation() {
        assert!(validate_cluster_name("demo-1_x").is_ok());
        assert!(validate_cluster_name("-demo").is_err());
        assert!(validate_cluster_name("de mo").is_err());
        assert!(validate_cluster_name(&"a".repeat(101)).is_err());
        assert!(validate_namespace("kube-system").is_ok());
        assert!(validate_namespace("Kube").is_err());
        assert!(validate_version("1.14.1").is_ok());
        let e = validate_version("v1.14.1").unwrap_err();
        assert!(e.hint.unwrap().contains("1.14.1"));
        assert!(validate_version("1.14").is_err());
        assert!(validate_region("us-gov-west-1").is_ok());
        assert!(validate_region("cn-north-1").is_ok());
        assert!(validate_region("us-east").is_err());
        assert!(validate_account("123456789012").is_ok());
        assert!(validate_account("12345").is_err());
    }
}
