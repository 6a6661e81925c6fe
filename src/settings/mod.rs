//! Raw flags and environment resolved into checked settings once, before the first AWS call:
//! bad input fails here with a hint and nothing has been read or written yet.

mod commands;

pub use commands::{
    ClusterAccess, Common, DoctorSettings, InitSettings, MigrateMode, MigrateSettings, RenderSettings, RenderSource,
    SmokeSettings, TeardownSettings,
};

use crate::aws::AwsOptions;
use crate::cli::{GlobalArgs, InstallArgs};
use crate::cluster::ClusterInfo;
use crate::desired::{AuthMode, Partition, Target};
use crate::error::{Error, ErrorKind, Result};
use crate::names;
use crate::versions;

/// The install's shape, validated.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Controller namespace.
    pub namespace: String,
    /// Controller identity mode.
    pub auth: AuthMode,
    /// Karpenter version.
    pub karpenter_version: String,
    /// Whether `--karpenter-version` was given (doctor otherwise checks the installed version).
    pub version_given: bool,
    /// Interruption queue and rules wanted.
    pub interruption: bool,
    /// Default NodePool/EC2NodeClass wanted.
    pub default_nodepool: bool,
    /// The subnets to tag for discovery (`--subnets`); None: the cluster's private ones.
    pub subnets: Option<Vec<String>>,
}

impl InstallOptions {
    /// Validate the install flags.
    pub fn from_args(a: &InstallArgs) -> Result<Self> {
        let karpenter_version = versions::choose(a.karpenter_version.as_deref(), a.allow_unknown_version)?.version;
        names::validate_namespace(&a.namespace)?;
        let subnets = a.subnets.as_deref().map(validate_subnets).transpose()?;
        Ok(InstallOptions {
            namespace: a.namespace.clone(),
            auth: a.auth,
            karpenter_version,
            version_given: a.karpenter_version.is_some(),
            interruption: !a.no_interruption,
            default_nodepool: !a.no_default_nodepool,
            subnets,
        })
    }

    /// The target for a discovered cluster.
    pub fn target_for(&self, c: &ClusterInfo) -> Target {
        self.target(&c.name, &c.caller.account, &c.region, c.caller.partition, c.issuer.clone())
    }

    /// The target from explicit facts (offline rendering).
    pub fn target(
        &self,
        cluster: &str,
        account: &str,
        region: &str,
        partition: Partition,
        issuer: Option<String>,
    ) -> Target {
        Target {
            cluster: cluster.to_string(),
            account: account.to_string(),
            region: region.to_string(),
            partition,
            issuer,
            namespace: self.namespace.clone(),
            auth: self.auth,
            karpenter_version: self.karpenter_version.clone(),
            interruption: self.interruption,
            default_nodepool: self.default_nodepool,
        }
    }
}

/// The cluster name, required and valid.
pub fn require_cluster(g: &GlobalArgs) -> Result<String> {
    let name = g.cluster.clone().ok_or_else(|| {
        Error::new(ErrorKind::Usage, "no cluster given").with_hint("pass --cluster NAME (or set KARPCTL_CLUSTER)")
    })?;
    names::validate_cluster_name(&name)?;
    Ok(name)
}

/// The AWS connection options from the global flags.
pub fn aws_options(g: &GlobalArgs) -> Result<AwsOptions> {
    if let Some(r) = &g.region {
        names::validate_region(r)?;
    }
    if let Some(u) = &g.endpoint_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(Error::invalid(
                format!("invalid --endpoint-url {u:?}"),
                "give a URL such as http://127.0.0.1:5000",
            ));
        }
    }
    Ok(AwsOptions { region: g.region.clone(), profile: g.profile.clone(), endpoint_url: g.endpoint_url.clone() })
}

/// The region for offline work: `--region`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`.
pub fn offline_region(g: &GlobalArgs) -> Result<String> {
    let region = g
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok().filter(|s| !s.is_empty()))
        .ok_or_else(|| Error::invalid("offline rendering needs a region", "pass --region (or set AWS_REGION)"))?;
    names::validate_region(&region)?;
    Ok(region)
}

/// `--subnets`: subnet ids (`subnet-` and hex), at least one, duplicates dropped.
fn validate_subnets(ids: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for id in ids.iter().map(|s| s.trim()) {
        let hex = id.strip_prefix("subnet-").unwrap_or_default();
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(crate::error::Error::new(
                crate::error::ErrorKind::InvalidInput,
                format!("--subnets: {id:?} is not a subnet id"),
            )
            .with_hint("give subnet ids separated by commas, e.g. --subnets subnet-0abc123,subnet-0def456"));
        }
        if !out.iter().any(|o| o == id) {
            out.push(id.to_string());
        }
    }
    if out.is_empty() {
        return Err(crate::error::Error::new(crate::error::ErrorKind::InvalidInput, "--subnets is empty")
            .with_hint("give subnet ids separated by commas, or leave --subnets out to tag the private subnets"));
    }
    Ok(out)
}

#[cfg(test)]
mod subnet_tests {
    use super::validate_subnets;

    #[test]
    fn subnets_must_be_subnet_ids() {
        let ok = validate_subnets(&["subnet-0abc".into(), "subnet-0abc".into(), " subnet-12 ".into()]).unwrap();
        assert_eq!(ok, vec!["subnet-0abc", "subnet-12"]);
        assert!(validate_subnets(&["sg-123".into()]).is_err());
        assert!(validate_subnets(&["subnet-xyz".into()]).is_err());
        assert!(validate_subnets(&[]).is_err());
    }
}
