//! The desired state for one cluster: every fixed name and ARN karpctl uses, derived once from
//! the target (account, region, partition, cluster, options). Every command reads names from
//! here, so `init`, `doctor`, `teardown` and `render` can never disagree about them.

use crate::error::{Error, Result};
use crate::names::{self, fit, Name};
use crate::versions::{self, Release, RuleSpec, ALL_RULES};

/// The Karpenter version this release of karpctl installs by default: the newest in the
/// version table (`versions::newest`), spelled out for tests and docs.
pub const DEFAULT_KARPENTER_VERSION: &str = "1.14.1";
/// The controller's service account name (the chart's default, `karpenter`).
pub const SERVICE_ACCOUNT: &str = "karpenter";
/// Ownership tag key: its presence with value `karpctl` marks a resource karpctl created.
pub const TAG_MANAGED_BY: &str = "karpctl.io/managed-by";
/// Ownership tag value.
pub const TAG_MANAGED_BY_VALUE: &str = "karpctl";
/// Ownership tag key naming the cluster a resource belongs to.
pub const TAG_CLUSTER: &str = "karpctl.io/cluster";
/// The discovery tag key Karpenter's selectors use.
pub const DISCOVERY_TAG: &str = "karpenter.sh/discovery";
/// Marker karpctl puts beside a discovery tag it added, so teardown removes only its own tags.
pub const DISCOVERY_MARKER_TAG: &str = "karpctl.io/discovery-tagged";
/// The OIDC audience (client id) IRSA tokens carry.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// An AWS partition: decides ARNs and service principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Partition {
    /// Commercial regions.
    #[serde(rename = "aws")]
    Aws,
    /// China regions.
    #[serde(rename = "aws-cn")]
    AwsCn,
    /// GovCloud regions.
    #[serde(rename = "aws-us-gov")]
    AwsUsGov,
}

impl Partition {
    /// The partition as it appears in ARNs.
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
        }
    }

    /// The DNS suffix of service principals (`ec2.amazonaws.com.cn` in China).
    pub fn url_suffix(self) -> &'static str {
        match self {
            Partition::AwsCn => "amazonaws.com.cn",
            _ => "amazonaws.com",
        }
    }

    /// Parse the partition name (the second field of an ARN, or `--partition`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "aws" => Ok(Partition::Aws),
            "aws-cn" => Ok(Partition::AwsCn),
            "aws-us-gov" => Ok(Partition::AwsUsGov),
            _ => Err(Error::invalid(format!("unknown AWS partition {s:?}"), "use aws, aws-cn or aws-us-gov")),
        }
    }

    /// The partition named by an ARN such as the caller's identity.
    pub fn from_arn(arn: &str) -> Result<Self> {
        match arn.split(':').nth(1) {
            Some(p) => Partition::parse(p),
            None => Err(Error::invalid(format!("not an ARN: {arn:?}"), "expected arn:PARTITION:...")),
        }
    }

    /// The partition a region belongs to, for offline rendering without a caller ARN.
    pub fn from_region(region: &str) -> Self {
        if region.starts_with("cn-") {
            Partition::AwsCn
        } else if region.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else {
            Partition::Aws
        }
    }
}

/// How the controller gets its AWS identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// EKS Pod Identity association (the default).
    PodIdentity,
    /// IAM roles for service accounts through the cluster's OIDC provider.
    Irsa,
}

/// The six controller policies of the reference CloudFormation template, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyPart {
    /// EC2 launch/terminate, scoped by tags.
    NodeLifecycle,
    /// PassRole for the node role and instance profile management.
    IamIntegration,
    /// DescribeCluster on this cluster.
    EksIntegration,
    /// Reading the interruption queue.
    Interruption,
    /// Zonal shift status.
    ZonalShift,
    /// Read-only discovery of AMIs, subnets, prices, ...
    ResourceDiscovery,
}

impl PolicyPart {
    /// All parts in the template's order.
    pub const ALL: [PolicyPart; 6] = [
        PolicyPart::NodeLifecycle,
        PolicyPart::IamIntegration,
        PolicyPart::EksIntegration,
        PolicyPart::Interruption,
        PolicyPart::ZonalShift,
        PolicyPart::ResourceDiscovery,
    ];

    /// The part's name inside `KarpenterController<Part>Policy-C`.
    pub fn name(self) -> &'static str {
        match self {
            PolicyPart::NodeLifecycle => "NodeLifecycle",
            PolicyPart::IamIntegration => "IAMIntegration",
            PolicyPart::EksIntegration => "EKSIntegration",
            PolicyPart::Interruption => "Interruption",
            PolicyPart::ZonalShift => "ZonalShift",
            PolicyPart::ResourceDiscovery => "ResourceDiscovery",
        }
    }

    /// The template that renders the part's document.
    pub fn template(self) -> &'static str {
        match self {
            PolicyPart::NodeLifecycle => "policies/node-lifecycle.json.j2",
            PolicyPart::IamIntegration => "policies/iam-integration.json.j2",
            PolicyPart::EksIntegration => "policies/eks-integration.json.j2",
            PolicyPart::Interruption => "policies/interruption.json.j2",
            PolicyPart::ZonalShift => "policies/zonal-shift.json.j2",
            PolicyPart::ResourceDiscovery => "policies/resource-discovery.json.j2",
        }
    }
}

/// The AWS managed policies the node role needs (karpenter-facts §3: all four).
pub const NODE_MANAGED_POLICIES: [&str; 4] = [
    "AmazonEKS_CNI_Policy",
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
];

/// What the desired state is computed from: the facts about the cluster and the user's options.
#[derive(Debug, Clone)]
pub struct Target {
    /// EKS cluster name.
    pub cluster: String,
    /// AWS account id.
    pub account: String,
    /// AWS region.
    pub region: String,
    /// AWS partition.
    pub partition: Partition,
    /// The cluster's OIDC issuer URL (`https://oidc.eks...`), needed for IRSA.
    pub issuer: Option<String>,
    /// The controller's namespace.
    pub namespace: String,
    /// How the controller authenticates.
    pub auth: AuthMode,
    /// The Karpenter version (`X.Y.Z`).
    pub karpenter_version: String,
    /// Whether the interruption queue and rules are part of the install.
    pub interruption: bool,
    /// Whether the default NodePool/EC2NodeClass are part of the install.
    pub default_nodepool: bool,
}

/// Names of everything karpctl may manage for one cluster, for every known version (teardown
/// removes a policy or rule an older or newer version used); `Desired` says which are wanted.
#[derive(Debug, Clone)]
pub struct Names {
    /// `KarpenterControllerRole-C`.
    pub controller_role: Name,
    /// `KarpenterNodeRole-C`.
    pub node_role: Name,
    /// `KarpenterController<Part>Policy-C`, in `PolicyPart::ALL` order.
    pub policies: Vec<(PolicyPart, Name)>,
    /// `KarpenterNodeInstanceProfile-C`.
    pub instance_profile: Name,
    /// The interruption queue, named after the cluster.
    pub queue: Name,
    /// `Karpenter-C-<Kind>`, in `versions::ALL_RULES` order.
    pub rules: Vec<Name>,
}

impl Names {
    /// Derive every name from the cluster name.
    pub fn for_cluster(cluster: &str) -> Self {
        Names {
            controller_role: fit(&format!("KarpenterControllerRole-{cluster}"), names::ROLE_NAME_MAX),
            node_role: names::node_role(cluster),
            policies: PolicyPart::ALL
                .iter()
                .map(|p| (*p, fit(&format!("KarpenterController{}Policy-{cluster}", p.name()), names::POLICY_NAME_MAX)))
                .collect(),
            instance_profile: fit(&format!("KarpenterNodeInstanceProfile-{cluster}"), names::INSTANCE_PROFILE_NAME_MAX),
            queue: fit(cluster, names::QUEUE_NAME_MAX),
            rules: ALL_RULES
                .iter()
                .map(|r| fit(&format!("Karpenter-{cluster}-{}", r.kind), names::RULE_NAME_MAX))
                .collect(),
        }
    }

    /// Every name that was shortened, as (full, short), for reporting.
    pub fn shortened(&self) -> Vec<(String, String)> {
        let mut all: Vec<&Name> = vec![&self.controller_role, &self.node_role, &self.instance_profile, &self.queue];
        all.extend(self.policies.iter().map(|(_, n)| n));
        all.extend(self.rules.iter());
        all.into_iter().filter_map(|n| n.shortened_from.clone().map(|f| (f, n.name.clone()))).collect()
    }
}

/// The desired state: target plus names plus derived ARNs.
#[derive(Debug, Clone)]
pub struct Desired {
    /// What it was computed from.
    pub target: Target,
    /// Every resource name.
    pub names: Names,
    /// The version table entry whose documents apply to `target.karpenter_version`.
    pub release: &'static Release,
}

impl Desired {
    /// Validate the target and derive names. Fails before anything touches AWS.
    pub fn new(target: Target) -> Result<Self> {
        names::validate_cluster_name(&target.cluster)?;
        names::validate_account(&target.account)?;
        names::validate_region(&target.region)?;
        names::validate_namespace(&target.namespace)?;
        names::validate_version(&target.karpenter_version)?;
        if target.auth == AuthMode::Irsa {
            match &target.issuer {
                None => {
                    return Err(Error::invalid(
                        "IRSA needs the cluster's OIDC issuer",
                        "pass --issuer https://oidc.eks.REGION.amazonaws.com/id/ID, or use --auth pod-identity",
                    ))
                }
                Some(i) => {
                    issuer_host_path(i)?;
                }
            }
        }
        let names = Names::for_cluster(&target.cluster);
        let release = versions::documents_for(&target.karpenter_version);
        Ok(Desired { target, names, release })
    }

    /// Whether this version uses the controller policy `part`.
    pub fn wants_policy(&self, part: PolicyPart) -> bool {
        self.release.policies.contains(&part)
    }

    /// The controller policies this version uses, with their names.
    pub fn wanted_policies(&self) -> impl Iterator<Item = &(PolicyPart, Name)> {
        self.names.policies.iter().filter(|(p, _)| self.wants_policy(*p))
    }

    /// The event rules this version uses, with their names.
    pub fn wanted_rules(&self) -> impl Iterator<Item = (&'static RuleSpec, &Name)> {
        ALL_RULES.iter().zip(&self.names.rules).filter(|(r, _)| self.release.rules.contains(r))
    }

    fn iam_arn(&self, kind: &str, name: &str) -> String {
        format!("arn:{}:iam::{}:{kind}/{name}", self.target.partition.as_str(), self.target.account)
    }

    /// The node role's ARN.
    pub fn node_role_arn(&self) -> String {
        self.iam_arn("role", &self.names.node_role.name)
    }

    /// The controller role's ARN.
    pub fn controller_role_arn(&self) -> String {
        self.iam_arn("role", &self.names.controller_role.name)
    }

    /// A controller policy's ARN.
    pub fn policy_arn(&self, name: &str) -> String {
        self.iam_arn("policy", name)
    }

    /// An AWS managed policy's ARN (`arn:P:iam::aws:policy/NAME`).
    pub fn aws_managed_policy_arn(&self, name: &str) -> String {
        format!("arn:{}:iam::aws:policy/{name}", self.target.partition.as_str())
    }

    /// The interruption queue's ARN.
    pub fn queue_arn(&self) -> String {
        format!(
            "arn:{}:sqs:{}:{}:{}",
            self.target.partition.as_str(),
            self.target.region,
            self.target.account,
            self.names.queue.name
        )
    }

    /// The cluster's ARN.
    pub fn cluster_arn(&self) -> String {
        format!(
            "arn:{}:eks:{}:{}:cluster/{}",
            self.target.partition.as_str(),
            self.target.region,
            self.target.account,
            self.target.cluster
        )
    }

    /// The IAM OIDC provider's ARN: the issuer without its scheme (the seed document's bug was keeping it).
    pub fn oidc_provider_arn(&self) -> Option<String> {
        let hp = self.target.issuer.as_deref().and_then(|i| issuer_host_path(i).ok())?;
        Some(self.iam_arn("oidc-provider", &hp))
    }

    /// The ownership tags every created resource carries.
    pub fn ownership_tags(&self) -> Vec<(String, String)> {
        vec![
            (TAG_MANAGED_BY.to_string(), TAG_MANAGED_BY_VALUE.to_string()),
            (TAG_CLUSTER.to_string(), self.target.cluster.clone()),
        ]
    }

    /// Whether a tag map (EKS, SQS) marks a resource as karpctl's, for this cluster.
    pub fn owns_map(&self, tags: Option<&std::collections::HashMap<String, String>>) -> bool {
        tags.is_some_and(|t| self.is_owned(t.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }

    /// Whether a resource's tags mark it as karpctl's, for this cluster.
    pub fn is_owned<'a>(&self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        let mut managed = false;
        let mut cluster = false;
        for (k, v) in tags {
            managed |= k == TAG_MANAGED_BY && v == TAG_MANAGED_BY_VALUE;
            cluster |= k == TAG_CLUSTER && v == self.target.cluster;
        }
        managed && cluster
    }
}

/// `https://oidc.eks.R.amazonaws.com/id/XYZ` → `oidc.eks.R.amazonaws.com/id/XYZ`.
pub fn issuer_host_path(issuer: &str) -> Result<String> {
    let hp = issuer.strip_prefix("https://").unwrap_or(issuer).trim_end_matches('/');
    let valid = !hp.is_empty()
        && hp.contains('/')
        && !hp.contains("://")
        && hp.chars().all(|c| c.is_ascii_alphanumeric() || "-._/".contains(c));
    if valid {
        Ok(hp.to_string())
    } else {
        Err(Error::invalid(
            format!("invalid OIDC issuer {issuer:?}"),
            "the issuer looks like https://oidc.eks.REGION.amazonaws.com/id/ID (aws eks describe-cluster shows it)",
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn target(auth: AuthMode) -> Target {
        Target {
            cluster: "demo".into(),
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            partition: Partition::Aws,
            issuer: Some("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC123".into()),
            namespace: "kube-system".into(),
            auth,
            karpenter_version: DEFAULT_KARPENTER_VERSION.into(),
            interruption: true,
            default_nodepool: true,
        }
    }

    #[test]
    fn arns_follow_the_partition() {
        let d = Desired::new(target(AuthMode::Irsa)).unwrap();
        assert_eq!(d.node_role_arn(), "arn:aws:iam::111122223333:role/KarpenterNodeRole-demo");
        assert_eq!(d.queue_arn(), "arn:aws:sqs:eu-west-1:111122223333:demo");
        assert_eq!(
            d.oidc_provider_arn().unwrap(),
            "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC123"
        );
        let mut t = target(AuthMode::Irsa);
        t.partition = Partition::AwsCn;
        t.region = "cn-north-1".into();
        let d = Desired::new(t).unwrap();
        assert_eq!(d.node_role_arn(), "arn:aws-cn:iam::111122223333:role/KarpenterNodeRole-demo");
        assert_eq!(d.aws_managed_policy_arn("X"), "arn:aws-cn:iam::aws:policy/X");
    }

    #[test]
    fn partitions() {
        assert_eq!(Partition::from_arn("arn:aws-us-gov:iam::1:user/x").unwrap(), Partition::AwsUsGov);
        assert_eq!(Partition::from_region("cn-northwest-1"), Partition::AwsCn);
        assert_eq!(Partition::AwsCn.url_suffix(), "amazonaws.com.cn");
        assert!(Partition::parse("aws-moon").is_err());
    }

    #[test]
    fn irsa_needs_a_valid_issuer() {
        let mut t = target(AuthMode::Irsa);
        t.issuer = None;
        assert!(Desired::new(t.clone()).is_err());
        t.issuer = Some("https://oidc.eks.x/id/https://oops".into());
        assert!(Desired::new(t.clone()).is_err());
        t.auth = AuthMode::PodIdentity;
        t.issuer = None;
        assert!(Desired::new(t).is_ok());
    }

    #[test]
    fn long_cluster_names_shorten_every_limited_name() {
        let mut t = target(AuthMode::PodIdentity);
        t.cluster = "c".repeat(90);
        let d = Desired::new(t).unwrap();
        assert!(d.names.controller_role.name.len() <= 64);
        assert!(d.names.queue.name.len() <= 80);
        assert!(d.names.rules.iter().all(|r| r.name.len() <= 64));
        assert!(d.names.shortened().len() >= 8);
    }

    #[test]
    fn ownership_needs_both_tags_for_this_cluster() {
        let d = Desired::new(target(AuthMode::PodIdentity)).unwrap();
        assert!(d.is_owned([(TAG_MANAGED_BY, "karpctl"), (TAG_CLUSTER, "demo")]));
        assert!(!d.is_owned([(TAG_MANAGED_BY, "karpctl"), (TAG_CLUSTER, "other")]));
        assert!(!d.is_owned([(TAG_CLUSTER, "demo")]));
    }
}
