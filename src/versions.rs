//! The Karpenter versions karpctl knows, one entry per supported minor: what differs between
//! releases (controller policies and their statements, event rules, CRDs, Kubernetes range) is
//! data here, read by rendering, planning, doctor and `upgrade`, so no code path hard-codes one
//! release. Each entry is checked against the official reference files of its release by
//! tests/conformance.rs; a version without reference data is not in the table.

use serde::Serialize;

use crate::desired::PolicyPart;
use crate::error::{Error, ErrorKind, Result};

/// How a policy or rule some other version uses says it is not part of this one (skipped by
/// init and doctor, retired by upgrade).
pub const NOT_USED: &str = "not used by Karpenter";

/// A Karpenter version `major.minor.patch`.
pub type Semver = (u32, u32, u32);

/// One interruption event rule: its kind (in the rule's name), source and detail-type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleSpec {
    /// The kind inside `Karpenter-C-<Kind>`.
    pub kind: &'static str,
    /// The event's `source`.
    pub source: &'static str,
    /// The event's `detail-type`.
    pub detail_type: &'static str,
}

/// Every rule any known version uses, in the reference template's order.
pub const ALL_RULES: [RuleSpec; 5] = [
    RuleSpec { kind: "ScheduledChange", source: "aws.health", detail_type: "AWS Health Event" },
    RuleSpec { kind: "SpotInterruption", source: "aws.ec2", detail_type: "EC2 Spot Instance Interruption Warning" },
    RuleSpec { kind: "Rebalance", source: "aws.ec2", detail_type: "EC2 Instance Rebalance Recommendation" },
    RuleSpec { kind: "InstanceStateChange", source: "aws.ec2", detail_type: "EC2 Instance State-change Notification" },
    RuleSpec {
        kind: "CapacityReservationInterruption",
        source: "aws.ec2",
        detail_type: "EC2 Capacity Reservation Instance Interruption Warning",
    },
];

/// The helm values keys karpctl sets on the controller chart (leaf paths). Every key must exist
/// in each version's chart values.yaml (conformance test); a key that does not is ignored by
/// the chart, which is how the v0.x `interruptionQueueName` silently broke installs.
pub const VALUES_KEYS: &[&str] = &[
    "additionalAnnotations.karpctl.io/managed-by",
    "settings.clusterName",
    "settings.interruptionQueue",
    "serviceAccount.annotations.eks.amazonaws.com/role-arn",
    "controller.resources.requests.cpu",
    "controller.resources.requests.memory",
    "controller.resources.limits.cpu",
    "controller.resources.limits.memory",
];

const CRDS_1_9: &[&str] = &[
    "ec2nodeclasses.karpenter.k8s.aws",
    "nodeclaims.karpenter.sh",
    "nodeoverlays.karpenter.sh",
    "nodepools.karpenter.sh",
];
const CRDS_1_14: &[&str] = &[
    "capacitybuffers.autoscaling.x-k8s.io",
    "ec2nodeclasses.karpenter.k8s.aws",
    "nodeclaims.karpenter.sh",
    "nodeoverlays.karpenter.sh",
    "nodepools.karpenter.sh",
];

const POLICIES_1_9: &[PolicyPart] = &[
    PolicyPart::NodeLifecycle,
    PolicyPart::IamIntegration,
    PolicyPart::EksIntegration,
    PolicyPart::Interruption,
    PolicyPart::ResourceDiscovery,
];
const POLICIES_1_12: &[PolicyPart] = &PolicyPart::ALL;
const RULES_1_9: &[RuleSpec] = &[ALL_RULES[0], ALL_RULES[1], ALL_RULES[2], ALL_RULES[3]];
const RULES_1_10: &[RuleSpec] = &ALL_RULES;

/// What one minor release needs and offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The newest patch of the minor karpctl has the reference files of (its default patch).
    pub version: &'static str,
    /// Whether the minor is a long-term-support line.
    pub lts: bool,
    /// The oldest and newest Kubernetes minor (`1.N`) it supports, as N.
    pub kubernetes: (u32, u32),
    /// The controller policies it needs, in the reference template's order.
    pub policies: &'static [PolicyPart],
    /// Its interruption event rules, in the reference template's order.
    pub rules: &'static [RuleSpec],
    /// Whether `AllowRegionalReadActions` includes `ec2:DescribePlacementGroups` and
    /// `RunInstances` may use placement groups (1.11 and later).
    pub placement_groups: bool,
    /// Whether `AllowRegionalReadActions` includes `ec2:DescribeInstanceStatus` (1.12 and later).
    pub instance_status: bool,
    /// The CRDs its karpenter-crd chart ships (metadata.name).
    pub crds: &'static [&'static str],
    /// The EC2NodeClass spec fields it reads that 1.9's CRD lacks: a CRD release older than
    /// the controller is told by their absence (helm never upgrades a chart's crds/).
    pub nodeclass_fields: &'static [&'static str],
    /// The chart values keys karpctl sets for it.
    pub values_keys: &'static [&'static str],
    /// Why moving to this minor from an older one replaces existing nodes, if it does.
    pub drifts_nodes: Option<&'static str>,
}

/// 1.9, the oldest supported minor: each newer entry below is written as its change from the
/// one before, as the upstream upgrade notes describe it.
const V1_9: Release = Release {
    version: "1.9.2",
    lts: true,
    kubernetes: (26, 35),
    policies: POLICIES_1_9,
    rules: RULES_1_9,
    placement_groups: false,
    instance_status: false,
    crds: CRDS_1_9,
    nodeclass_fields: &[],
    values_keys: VALUES_KEYS,
    drifts_nodes: None,
};
/// 1.10 adds the capacity-reservation interruption rule.
const V1_10: Release = Release { version: "1.10.2", lts: false, rules: RULES_1_10, ..V1_9 };
/// 1.11 may launch into placement groups and reads them, and configures network interfaces.
const V1_11: Release = Release {
    version: "1.11.3",
    placement_groups: true,
    nodeclass_fields: &["networkInterfaces", "placementGroupSelector"],
    ..V1_10
};
/// 1.12 splits out the ZonalShift policy, reads instance status, and writes a new CA bundle.
const V1_12: Release = Release {
    version: "1.12.2",
    policies: POLICIES_1_12,
    instance_status: true,
    drifts_nodes: Some("1.12 changes the CA bundle it writes into node user data"),
    ..V1_11
};
/// 1.13 supports Kubernetes 1.36 and sets CPU options and connection tracking.
const V1_13: Release = Release {
    version: "1.13.1",
    kubernetes: (26, 36),
    drifts_nodes: None,
    nodeclass_fields: &["connectionTracking", "cpuOptions", "networkInterfaces", "placementGroupSelector"],
    ..V1_12
};
/// 1.14, an LTS line, ships the CapacityBuffer CRD.
const V1_14: Release = Release { version: "1.14.1", lts: true, crds: CRDS_1_14, ..V1_13 };

/// Every supported minor, oldest first (reference data: ../shared/reference/karpenter/versions).
pub const TABLE: &[Release] = &[V1_9, V1_10, V1_11, V1_12, V1_13, V1_14];

/// The newest release in the table: the default, and what an unknown version renders with.
pub fn newest() -> &'static Release {
    &TABLE[TABLE.len() - 1]
}

/// Parse `X.Y.Z` (digits only, no leading `v`).
pub fn parse(v: &str) -> Option<Semver> {
    let mut it = v.split('.');
    let mut num = || it.next().filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))?.parse().ok();
    let out = (num()?, num()?, num()?);
    it.next().is_none().then_some(out)
}

impl Release {
    /// The release's own version, parsed.
    pub fn semver(&self) -> Semver {
        parse(self.version).unwrap_or((0, 0, 0))
    }

    /// `X.Y`.
    pub fn minor(&self) -> String {
        let (a, b, _) = self.semver();
        format!("{a}.{b}")
    }

    /// Whether the release runs on Kubernetes `1.N`.
    pub fn supports_kubernetes(&self, minor: u32) -> bool {
        (self.kubernetes.0..=self.kubernetes.1).contains(&minor)
    }

    /// The Kubernetes range as `1.26–1.35`.
    pub fn kubernetes_range(&self) -> String {
        format!("1.{}-1.{}", self.kubernetes.0, self.kubernetes.1)
    }
}

/// The table entry for the minor of `version`, if karpctl knows it.
pub fn lookup(version: &str) -> Option<&'static Release> {
    let (a, b, _) = parse(version)?;
    TABLE.iter().find(|r| {
        let (ra, rb, _) = r.semver();
        (ra, rb) == (a, b)
    })
}

/// The documents that apply to `version`: its minor's, or the newest known for a version
/// outside the table (only reachable through `--allow-unknown-version`).
pub fn documents_for(version: &str) -> &'static Release {
    lookup(version).unwrap_or_else(newest)
}

/// A `--karpenter-version` checked against the table.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// The version to install (chart and image tag).
    pub version: String,
    /// Whose documents apply.
    pub release: &'static Release,
    /// False when the version is outside the table (and `--allow-unknown-version` let it in).
    pub known: bool,
}

/// Resolve the requested version (default: the newest in the table). A version outside the
/// table is refused unless `allow_unknown`, which renders the newest minor's documents and
/// warns: karpctl cannot know the permissions of a release it has no reference data for.
pub fn choose(requested: Option<&str>, allow_unknown: bool) -> Result<Chosen> {
    let Some(v) = requested else {
        return Ok(Chosen { version: newest().version.to_string(), release: newest(), known: true });
    };
    crate::names::validate_version(v)?;
    if let Some(release) = lookup(v) {
        return Ok(Chosen { version: v.to_string(), release, known: true });
    }
    if allow_unknown {
        crate::output::warn(&format!(
            "Karpenter {v} is not in karpctl's version table; using the documents (permissions, rules, values) of {}, \
             which may be wrong for {v}",
            newest().version
        ));
        return Ok(Chosen { version: v.to_string(), release: newest(), known: false });
    }
    Err(Error::invalid(
        format!("Karpenter {v} is not a version karpctl supports ({})", supported_minors()),
        format!(
            "use a patch of a supported minor (newest known: {}; see `karpctl versions`), or pass \
             --allow-unknown-version to render {}'s documents for it",
            newest().version,
            newest().version
        ),
    ))
}

fn supported_minors() -> String {
    let first = TABLE[0].minor();
    format!("{first}.x to {}.x", newest().minor())
}

/// Refuse a Kubernetes version the release does not support, before anything is written.
pub fn check_kubernetes(kubernetes: &str, version: &str, release: &Release) -> Result<()> {
    let Some(minor) = kubernetes_minor(kubernetes) else {
        crate::output::warn(&format!("cannot read the cluster's Kubernetes version {kubernetes:?}; not checked"));
        return Ok(());
    };
    if release.supports_kubernetes(minor) {
        return Ok(());
    }
    let fits: Vec<&str> = TABLE.iter().filter(|r| r.supports_kubernetes(minor)).map(|r| r.version).collect();
    let hint = match fits.last() {
        Some(v) => format!("use --karpenter-version {v} (supported for Kubernetes {kubernetes}: {})", fits.join(", ")),
        None => format!(
            "no Karpenter release karpctl knows supports Kubernetes {kubernetes}; upgrade the cluster to {}",
            newest().kubernetes_range()
        ),
    };
    Err(Error::new(
        ErrorKind::ClusterState,
        format!(
            "Karpenter {version} does not support the cluster's Kubernetes {kubernetes} (it supports {})",
            release.kubernetes_range()
        ),
    )
    .with_hint(hint))
}

/// `1.33` (or `1.33.2`, `v1.33`) → 33.
pub fn kubernetes_minor(v: &str) -> Option<u32> {
    let mut it = v.trim_start_matches('v').split('.');
    (it.next()? == "1").then_some(())?;
    it.next()?.parse().ok()
}

/// What moving an install from one version to another involves: refused paths with the
/// reason, and for allowed ones what changes, for the plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpgradePath {
    /// The installed version.
    pub from: String,
    /// The version moved to.
    pub to: String,
    /// Controller policies the new version adds.
    pub added_policies: Vec<String>,
    /// Controller policies the new version no longer needs (removed once it runs).
    pub removed_policies: Vec<String>,
    /// Event rules added (by kind).
    pub added_rules: Vec<String>,
    /// Event rules no longer needed.
    pub removed_rules: Vec<String>,
    /// CRDs the new CRD chart adds.
    pub added_crds: Vec<String>,
    /// Why existing nodes will drift and be replaced, if they will.
    pub drift: Vec<String>,
    /// Only the charts change (same minor, or minors with identical documents).
    pub chart_only: bool,
}

/// Check an upgrade from `from` to `to` against the upstream rules: nothing older than 1.0
/// (the v1 migration is a separate, manual procedure), and no downgrade across a minor (CRDs
/// and stored objects of a newer minor are not readable by an older controller).
pub fn upgrade_path(from: &str, to: &str) -> Result<UpgradePath> {
    let (Some(f), Some(t)) = (parse(from), parse(to)) else {
        return Err(Error::new(
            ErrorKind::ClusterState,
            format!("cannot read the installed Karpenter version {from:?} (moving to {to})"),
        )
        .with_hint("check `helm list -A`; the karpenter release's chart version must be X.Y.Z"));
    };
    let refuse = |why: String, hint: &str| Err(Error::new(ErrorKind::Refused, why).with_hint(hint.to_string()));
    if f.0 < 1 {
        return refuse(
            format!("Karpenter {from} is older than 1.0: an upgrade to {to} must go through the v1 migration first; nothing was changed"),
            "follow the upstream v1 migration guide (latest patch of the minor, v1 policy, CRD chart then controller at 1.0.x), then run karpctl upgrade",
        );
    }
    if (t.0, t.1) < (f.0, f.1) {
        return refuse(
            format!("Karpenter {to} is older than the installed {from}: downgrading across a minor is not supported; nothing was changed"),
            "pick a patch of the installed minor or a newer one (karpctl versions lists them)",
        );
    }
    let (old, new) = (documents_for(from), documents_for(to));
    let names = |ps: &[PolicyPart], other: &[PolicyPart]| -> Vec<String> {
        ps.iter().filter(|p| !other.contains(p)).map(|p| p.name().to_string()).collect()
    };
    let kinds = |rs: &[RuleSpec], other: &[RuleSpec]| -> Vec<String> {
        rs.iter().filter(|r| !other.contains(r)).map(|r| r.kind.to_string()).collect()
    };
    let drift = TABLE
        .iter()
        .filter(|r| {
            let (a, b, _) = r.semver();
            (a, b) > (f.0, f.1) && (a, b) <= (t.0, t.1)
        })
        .filter_map(|r| r.drifts_nodes.map(|why| format!("{why}: existing nodes drift and are replaced")))
        .collect();
    let same_documents = old.policies == new.policies
        && old.rules == new.rules
        && old.placement_groups == new.placement_groups
        && old.instance_status == new.instance_status
        && old.crds == new.crds;
    Ok(UpgradePath {
        from: from.to_string(),
        to: to.to_string(),
        added_policies: names(new.policies, old.policies),
        removed_policies: names(old.policies, new.policies),
        added_rules: kinds(new.rules, old.rules),
        removed_rules: kinds(old.rules, new.rules),
        added_crds: new.crds.iter().filter(|c| !old.crds.contains(c)).map(|c| c.to_string()).collect(),
        drift,
        chart_only: same_documents,
    })
}

impl UpgradePath {
    /// The plan's lines about the version change.
    pub fn describe(&self) -> Vec<String> {
        let mut out = vec![format!("Karpenter {} -> {}", self.from, self.to)];
        if self.chart_only {
            out.push("  chart-only: the permissions, rules and CRD set stay the same".into());
        }
        let mut line = |what: &str, items: &[String]| {
            if !items.is_empty() {
                out.push(format!("  {what}: {}", items.join(", ")));
            }
        };
        line("adds controller policy", &self.added_policies);
        line("adds event rule", &self.added_rules);
        line("adds CRD", &self.added_crds);
        line("removes (after the new controller runs) policy", &self.removed_policies);
        line("removes (after the new controller runs) rule", &self.removed_rules);
        for d in &self.drift {
            out.push(format!("  warning: {d}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_ordered_and_each_entry_differs_where_the_reference_says() {
        assert!(TABLE.windows(2).all(|w| w[0].semver() < w[1].semver()));
        assert_eq!(newest().version, "1.14.1");
        assert_eq!(lookup("1.9.0").unwrap().policies.len(), 5);
        assert_eq!(lookup("1.9.7").unwrap().rules.len(), 4);
        assert_eq!(lookup("1.10.2").unwrap().rules.len(), 5);
        assert!(lookup("1.11.0").unwrap().placement_groups && !lookup("1.10.0").unwrap().placement_groups);
        assert!(lookup("1.12.0").unwrap().policies.contains(&PolicyPart::ZonalShift));
        assert!(lookup("1.14.3").unwrap().crds.contains(&"capacitybuffers.autoscaling.x-k8s.io"));
        assert!(lookup("1.15.0").is_none() && lookup("0.37.7").is_none());
        let lts: Vec<&str> = TABLE.iter().filter(|r| r.lts).map(|r| r.version).collect();
        assert_eq!(lts, ["1.9.2", "1.14.1"]);
    }

    #[test]
    fn choosing_a_version() {
        assert_eq!(choose(None, false).unwrap().version, "1.14.1");
        let c = choose(Some("1.14.3"), false).unwrap();
        assert_eq!((c.version.as_str(), c.release.version, c.known), ("1.14.3", "1.14.1", true));
        for v in ["2.0.0", "0.37.7", "1.15.0", "1.8.9"] {
            let e = choose(Some(v), false).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{v}");
            assert!(e.hint.unwrap().contains("1.14.1"), "{v}");
        }
        let c = choose(Some("1.15.0"), true).unwrap();
        assert_eq!((c.release.version, c.known), ("1.14.1", false));
        assert!(choose(Some("v1.14.1"), true).is_err());
    }

    #[test]
    fn kubernetes_ranges() {
        assert!(check_kubernetes("1.35", "1.9.2", &TABLE[0]).is_ok());
        let e = check_kubernetes("1.36", "1.9.2", &TABLE[0]).unwrap_err();
        assert!(e.hint.unwrap().contains("1.14.1"));
        assert!(check_kubernetes("1.36", "1.13.1", lookup("1.13.1").unwrap()).is_ok());
        assert!(check_kubernetes("1.25", "1.14.1", newest()).unwrap_err().hint.unwrap().contains("no Karpenter"));
        assert_eq!(kubernetes_minor("1.33"), Some(33));
        assert_eq!(kubernetes_minor("2.1"), None);
    }

    #[test]
    fn upgrade_paths() {
        let p = upgrade_path("1.9.2", "1.14.1").unwrap();
        assert_eq!(p.added_policies, ["ZonalShift"]);
        assert_eq!(p.added_rules, ["CapacityReservationInterruption"]);
        assert_eq!(p.added_crds, ["capacitybuffers.autoscaling.x-k8s.io"]);
        assert_eq!(p.drift.len(), 1);
        assert!(!p.chart_only);
        let p = upgrade_path("1.14.1", "1.14.3").unwrap();
        assert!(p.chart_only && p.drift.is_empty() && p.added_policies.is_empty());
        assert!(upgrade_path("1.12.2", "1.13.1").unwrap().drift.is_empty());
        assert_eq!(upgrade_path("0.37.7", "1.14.1").unwrap_err().kind, ErrorKind::Refused);
        assert_eq!(upgrade_path("1.14.1", "1.13.1").unwrap_err().kind, ErrorKind::Refused);
        assert!(upgrade_path("1.14.1", "1.14.0").is_ok());
    }
}
