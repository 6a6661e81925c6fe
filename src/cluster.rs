//! Cluster discovery: `DescribeCluster` and STS `GetCallerIdentity` → one typed value that every
//! command starts from.

use aws_sdk_eks::types::AuthenticationMode;

use crate::aws::Aws;
use crate::desired::Partition;
use crate::error::{AwsContext, Error, ErrorKind, Result};

/// The status karpctl gives a cluster that does not exist (EKS has no such status).
pub const NOT_FOUND: &str = "NOT_FOUND";

/// How the cluster authenticates nodes: decides access entry vs aws-auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterAuth {
    /// Only the aws-auth ConfigMap (also what a cluster without `accessConfig` does).
    ConfigMap,
    /// Only EKS access entries.
    Api,
    /// Both.
    ApiAndConfigMap,
}

impl ClusterAuth {
    /// The mode as EKS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterAuth::ConfigMap => "CONFIG_MAP",
            ClusterAuth::Api => "API",
            ClusterAuth::ApiAndConfigMap => "API_AND_CONFIG_MAP",
        }
    }

    /// Whether EKS access entries work on this cluster.
    pub fn has_api(self) -> bool {
        matches!(self, ClusterAuth::Api | ClusterAuth::ApiAndConfigMap)
    }
}

/// Who is calling AWS: the account and partition every ARN is built from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Caller {
    /// The caller's ARN.
    pub arn: String,
    /// The account id.
    pub account: String,
    /// The partition, from the ARN.
    pub partition: Partition,
}

/// Everything karpctl needs to know about the cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterInfo {
    /// Cluster name.
    pub name: String,
    /// Cluster ARN.
    pub arn: String,
    /// Region it runs in.
    pub region: String,
    /// The caller's identity (account, partition).
    pub caller: Caller,
    /// Kubernetes version, e.g. `1.33`.
    pub version: String,
    /// EKS status (`ACTIVE`, `CREATING`, ...).
    pub status: String,
    /// API server endpoint.
    pub endpoint: Option<String>,
    /// Base64 PEM of the cluster CA.
    #[serde(skip)]
    pub ca_data: Option<String>,
    /// OIDC issuer URL, for IRSA.
    pub issuer: Option<String>,
    /// The cluster's VPC.
    pub vpc_id: Option<String>,
    /// The subnets the control plane uses.
    pub subnet_ids: Vec<String>,
    /// The EKS-created cluster security group.
    pub cluster_security_group_id: Option<String>,
    /// Node authentication mode.
    pub auth_mode: ClusterAuth,
    /// Whether EKS Auto Mode (with its built-in Karpenter) is on.
    pub auto_mode: bool,
}

/// Read the caller's identity.
pub async fn caller(aws: &Aws) -> Result<Caller> {
    let out = aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .or_aws("failed to read the caller's AWS identity", "sts:GetCallerIdentity")?;
    let arn = out.arn().unwrap_or_default().to_string();
    let account = out.account().unwrap_or_default().to_string();
    Ok(Caller { partition: Partition::from_arn(&arn)?, arn, account })
}

/// Discover the cluster and the caller concurrently. A missing cluster is an error that lists
/// the clusters that do exist in the region, since a wrong region or a typo is the usual cause.
pub async fn discover(aws: &Aws, name: &str) -> Result<ClusterInfo> {
    let region = aws.region();
    let (who, described) = tokio::join!(caller(aws), aws.eks.describe_cluster().name(name).send());
    let who = who?;
    let out = match described {
        Ok(o) => o,
        Err(e) => {
            let err =
                Error::aws(format!("failed to describe EKS cluster {name} in {region}"), "eks:DescribeCluster", e);
            if err.kind == ErrorKind::NotFound {
                return Err(not_found(aws, name, &region).await);
            }
            return Err(err);
        }
    };
    let c = out.cluster().ok_or_else(|| {
        Error::new(ErrorKind::Aws, format!("EKS returned no cluster for {name}"))
            .with_hint("run again; report it if it persists")
    })?;
    let vpc = c.resources_vpc_config();
    let auth_mode = match c.access_config().and_then(|a| a.authentication_mode()) {
        Some(AuthenticationMode::Api) => ClusterAuth::Api,
        Some(AuthenticationMode::ApiAndConfigMap) => ClusterAuth::ApiAndConfigMap,
        _ => ClusterAuth::ConfigMap,
    };
    Ok(ClusterInfo {
        name: c.name().unwrap_or(name).to_string(),
        arn: c.arn().unwrap_or_default().to_string(),
        region,
        caller: who,
        version: c.version().unwrap_or_default().to_string(),
        status: c.status().map(|s| s.as_str().to_string()).unwrap_or_else(|| "UNKNOWN".into()),
        endpoint: c.endpoint().map(str::to_string),
        ca_data: c.certificate_authority().and_then(|ca| ca.data()).map(str::to_string),
        issuer: c.identity().and_then(|i| i.oidc()).and_then(|o| o.issuer()).map(str::to_string),
        vpc_id: vpc.and_then(|v| v.vpc_id()).map(str::to_string),
        subnet_ids: vpc.map(|v| v.subnet_ids().to_vec()).unwrap_or_default(),
        cluster_security_group_id: vpc.and_then(|v| v.cluster_security_group_id()).map(str::to_string),
        auth_mode,
        auto_mode: c.compute_config().and_then(|cc| cc.enabled()).unwrap_or(false),
    })
}

async fn not_found(aws: &Aws, name: &str, region: &str) -> Error {
    let err = Error::new(ErrorKind::NotFound, format!("EKS cluster {name} not found in {region}"));
    match aws.eks.list_clusters().into_paginator().items().send().try_collect().await {
        Ok(l) if l.is_empty() => {
            err.with_hint(format!("there are no EKS clusters in {region}; check --region and --profile"))
        }
        Ok(l) => {
            err.with_hint(format!("clusters in {region}: {}; check the name, --region and --profile", l.join(", ")))
        }
        Err(_) => err.with_hint("check the name, --region and --profile"),
    }
}

impl ClusterInfo {
    /// What teardown works from when the cluster is already gone: the caller's identity and
    /// the name, nothing the cluster would have told.
    pub fn gone(name: &str, region: &str, caller: Caller) -> Self {
        ClusterInfo {
            name: name.to_string(),
            arn: String::new(),
            region: region.to_string(),
            caller,
            version: String::new(),
            status: NOT_FOUND.to_string(),
            endpoint: None,
            ca_data: None,
            issuer: None,
            vpc_id: None,
            subnet_ids: Vec::new(),
            cluster_security_group_id: None,
            auth_mode: ClusterAuth::ConfigMap,
            auto_mode: false,
        }
    }

    /// Whether the cluster exists (false for `gone`).
    pub fn exists(&self) -> bool {
        self.status != NOT_FOUND
    }

    /// Refuse clusters karpctl must not install into: Auto Mode (whose built-in Karpenter would
    /// fight a second one), or a status [`require_usable`](Self::require_usable) refuses.
    /// `Ok(Some(warning))` for a cluster that is usable with a caveat.
    pub fn require_installable(&self) -> Result<Option<String>> {
        if self.auto_mode {
            return Err(Error::new(ErrorKind::ClusterState, format!("cluster {} runs EKS Auto Mode", self.name))
                .with_hint("Auto Mode has Karpenter built in; use its NodePools instead of installing Karpenter"));
        }
        self.require_usable()
    }

    /// Refuse a cluster whose status makes EKS refuse (or pointless) the calls karpctl makes:
    /// CREATING, DELETING, FAILED (and any status EKS may add). UPDATING (a version upgrade or a
    /// configuration change in progress) is usable: EKS accepts access entries, add-ons and Pod
    /// Identity associations then, so the answer is a warning, not a refusal.
    pub fn require_usable(&self) -> Result<Option<String>> {
        match self.status.as_str() {
            "ACTIVE" => Ok(None),
            "UPDATING" => Ok(Some(format!(
                "cluster {} is UPDATING (an upgrade or configuration change is in progress); continuing, as EKS accepts these changes meanwhile",
                self.name
            ))),
            status => {
                let hint = match status {
                    "CREATING" => "wait until the cluster is ACTIVE (aws eks wait cluster-active), then run again",
                    "DELETING" => "the cluster is being deleted; nothing of Karpenter can be set up or checked in it",
                    "FAILED" => "the cluster failed to create; see `aws eks describe-cluster` and re-create it",
                    _ => "wait until the cluster is ACTIVE (aws eks wait cluster-active), then run again",
                };
                Err(Error::new(ErrorKind::ClusterState, format!("cluster {} is {status}, not ACTIVE", self.name))
                    .with_hint(hint))
            }
        }
    }
}
