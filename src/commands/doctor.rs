//! `karpctl doctor`: observe every piece of the install (the same resource set `init` converges)
//! and judge it, explaining each failure and its fix. Read-only.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use aws_sdk_ec2::types::Filter;
use serde_json::json;

use crate::aws::Aws;
use crate::checks::{self, Check, Status};
use crate::cli::{DoctorArgs, GlobalArgs, Only};
use crate::cluster::{self, ClusterInfo};
use crate::context::Hooks;
use crate::desired::{AuthMode, Desired, DISCOVERY_TAG};
use crate::error::{Error, Result};
use crate::output::Report;
use crate::plan;
use crate::render::{policy_size, Documents, POLICY_SIZE_MAX};
use crate::resources::{self, Cx, Presence};
use crate::settings::{self, InstallOptions};

/// Run `doctor`.
pub async fn run(g: &GlobalArgs, a: &DoctorArgs, hooks: &Hooks) -> Result<Report> {
    let cluster_name = settings::require_cluster(g)?;
    let opts = InstallOptions::from_args(&a.install)?;
    let aws = Aws::connect(&settings::aws_options(g)?, &hooks.interceptors).await?;
    let info = cluster::discover(&aws, &cluster_name).await?;
    let mut checks = cluster_checks(&info, &opts.karpenter_version);
    let desired = Desired::new(opts.target_for(&info))?;
    let docs = Documents::render(&desired)?;
    let repair = repair_command(&desired);
    let cx = Cx { aws, desired, docs, cluster: info };

    let set = resources::desired_set(&cx.desired, &cx.cluster);
    let deps: Vec<Vec<String>> = set.iter().map(|r| r.depends_on()).collect();
    let (observed, discovery) = tokio::join!(plan::observe_all(&cx, set, true), discovery_checks(&cx));
    let observed = observed?;
    let missing: HashMap<String, bool> =
        observed.iter().map(|(r, seen)| (r.id(), seen.presence == Presence::Absent && seen.skip.is_none())).collect();
    for ((r, seen), deps) in observed.iter().zip(deps) {
        let id = r.id();
        // A missing prerequisite explains its dependants: report it once, not as a cascade.
        if let Some(dep) = deps.iter().find(|d| missing.get(*d).copied().unwrap_or(false)) {
            checks.push(Check::new(id, Status::Skip, format!("needs {dep}, which is missing")));
            continue;
        }
        let mut check = checks::judge(&id, seen, &repair);
        if let Some(size) = policy_margin(&cx, &id) {
            check = size_note(check, size);
        }
        checks.push(check);
    }
    checks.extend(discovery?);
    let skip_reason = match a.only {
        Some(Only::Aws) => "--only aws",
        _ => {
            "cluster-side checks (helm releases, CRDs, controller, EC2NodeClass conditions) are not in this version yet"
        }
    };
    checks.push(Check::new("cluster-side", Status::Skip, skip_reason));
    Ok(report(&cx.cluster, checks))
}

/// What to tell the user to run: `init` with the same shape options doctor checked against.
fn repair_command(d: &Desired) -> String {
    let t = &d.target;
    let mut cmd = format!("karpctl init --cluster {}", t.cluster);
    if t.auth == AuthMode::Irsa {
        cmd.push_str(" --auth irsa");
    }
    if t.namespace != "kube-system" {
        cmd.push_str(&format!(" --namespace {}", t.namespace));
    }
    if !t.interruption {
        cmd.push_str(" --no-interruption");
    }
    cmd
}

fn cluster_checks(c: &ClusterInfo, karpenter_version: &str) -> Vec<Check> {
    let mut out = vec![Check::new(
        "aws.credentials",
        Status::Pass,
        format!("calling as {} (account {})", c.caller.arn, c.caller.account),
    )];
    out.push(match c.require_installable() {
        Ok(()) => Check::new("cluster.status", Status::Pass, format!("{} is ACTIVE in {}", c.name, c.region)),
        Err(e) => {
            let check = Check::new("cluster.status", Status::Fail, e.message);
            match e.hint {
                Some(h) => check.with_hint(h),
                None => check,
            }
        }
    });
    out.push(checks::compatibility(&c.version, karpenter_version));
    out
}

/// The size of a controller policy, when `id` names one.
fn policy_margin(cx: &Cx, id: &str) -> Option<usize> {
    let name = id.strip_prefix("iam-policy/")?;
    cx.docs.policies.iter().find(|(_, n, _)| n == name).map(|(_, _, doc)| policy_size(doc))
}

fn size_note(check: Check, size: usize) -> Check {
    if check.status != Status::Pass {
        return check;
    }
    let note = format!("{size} of {POLICY_SIZE_MAX} characters");
    if size * 10 > POLICY_SIZE_MAX * 9 {
        return Check::new(check.id, Status::Warn, format!("{}; {note}, close to IAM's limit", check.message))
            .with_hint("a shorter cluster name leaves more room");
    }
    Check { message: format!("{} ({note})", check.message), ..check }
}

/// Discovery as Karpenter sees it: every zone the cluster's subnets span has a tagged subnet,
/// and some security group is tagged.
async fn discovery_checks(cx: &Cx) -> Result<Vec<Check>> {
    let ec2 = &cx.aws.ec2;
    let cluster = &cx.desired.target.cluster;
    let tag = Filter::builder().name(format!("tag:{DISCOVERY_TAG}")).values(cluster).build();
    let (cluster_subnets, tagged_subnets, tagged_groups) = tokio::join!(
        async {
            if cx.cluster.subnet_ids.is_empty() {
                return Ok(None);
            }
            ec2.describe_subnets().set_subnet_ids(Some(cx.cluster.subnet_ids.clone())).send().await.map(Some)
        },
        ec2.describe_subnets().filters(tag.clone()).send(),
        ec2.describe_security_groups().filters(tag).send()
    );
    let zones = |subnets: &[aws_sdk_ec2::types::Subnet]| -> BTreeSet<String> {
        subnets.iter().filter_map(|s| s.availability_zone().map(str::to_string)).collect()
    };
    let used = cluster_subnets
        .map_err(|e| Error::aws("failed to read the cluster's subnets", "ec2:DescribeSubnets", e))?
        .map(|o| zones(o.subnets()))
        .unwrap_or_default();
    let tagged = tagged_subnets.map_err(|e| Error::aws("failed to find tagged subnets", "ec2:DescribeSubnets", e))?;
    let covered = zones(tagged.subnets());
    let uncovered: Vec<&String> = used.iter().filter(|z| !covered.contains(*z)).collect();
    let hint = format!(
        "tag a subnet in each zone with {DISCOVERY_TAG}={cluster} (karpctl init does it for the cluster's subnets)"
    );
    let subnets = if tagged.subnets().is_empty() {
        Check::new(
            "discovery.subnets",
            Status::Fail,
            format!(
                "no subnet is tagged {DISCOVERY_TAG}={cluster}: NodeClaims fail with \"no subnets matched selector\""
            ),
        )
        .with_hint(hint)
    } else if !uncovered.is_empty() {
        let list: Vec<&str> = uncovered.iter().map(|z| z.as_str()).collect();
        Check::new("discovery.subnets", Status::Fail, format!("no tagged subnet in {}", list.join(", ")))
            .with_hint(hint)
    } else {
        Check::new(
            "discovery.subnets",
            Status::Pass,
            format!(
                "{} tagged subnets cover {}",
                tagged.subnets().len(),
                covered.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
    };
    let groups = tagged_groups
        .map_err(|e| Error::aws("failed to find tagged security groups", "ec2:DescribeSecurityGroups", e))?;
    let sg = if groups.security_groups().is_empty() {
        Check::new(
            "discovery.security-groups",
            Status::Fail,
            format!("no security group is tagged {DISCOVERY_TAG}={cluster}"),
        )
        .with_hint(format!("tag the cluster security group with {DISCOVERY_TAG}={cluster} (karpctl init does it)"))
    } else {
        Check::new(
            "discovery.security-groups",
            Status::Pass,
            format!("{} tagged security groups", groups.security_groups().len()),
        )
    };
    Ok(vec![subnets, sg])
}

fn report(c: &ClusterInfo, checks: Vec<Check>) -> Report {
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    let mut text = format!("Karpenter install on {} ({}, account {})\n", c.name, c.region, c.caller.account);
    for ch in &checks {
        let mark = match ch.status {
            Status::Pass => console::style("✓").green(),
            Status::Fail => console::style("✗").red(),
            Status::Warn => console::style("!").yellow(),
            Status::Skip => console::style("-").dim(),
        };
        let _ = writeln!(text, "{mark} {}  {}", ch.id, ch.message);
        if matches!(ch.status, Status::Fail | Status::Warn) {
            if let Some(h) = &ch.hint {
                let _ = writeln!(text, "    hint: {h}");
            }
        }
    }
    let _ = writeln!(
        text,
        "{}",
        if failed == 0 {
            format!("OK: no check failed ({warned} warnings).")
        } else {
            format!("{failed} checks failed, {warned} warnings.")
        }
    );
    let mut r = Report::raw("doctor", text);
    r.raw = false;
    r.body.insert("cluster".into(), json!(c.name));
    r.body.insert("checks".into(), json!(checks));
    r.body.insert("ok".into(), json!(failed == 0));
    r.exit_code = if failed == 0 { 0 } else { 3 };
    r
}
