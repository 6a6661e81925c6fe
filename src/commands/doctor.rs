//! `karpctl doctor`: observe every piece of the install (the same resource set `init` converges)
//! and judge it, explaining each failure and its fix. Read-only.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use aws_sdk_ec2::types::Filter;
use serde_json::json;

use crate::checks::{self, Check, Status};
use crate::cli::{DoctorArgs, GlobalArgs, Only};
use crate::cluster::ClusterInfo;
use crate::context::Hooks;
use crate::desired::{AuthMode, Desired, DISCOVERY_TAG};
use crate::error::{AwsContext, Result};
use std::time::Duration;

use super::smoke::Smoke;
use crate::helm::ExtraValues;
use crate::kube::survey;
use crate::kube::{deployment_readiness, readiness, Readiness};
use crate::output::Report;
use crate::plan;
use crate::render::{policy_size, Documents, POLICY_SIZE_MAX};
use crate::resources::helm_release::{HelmRelease, CONTROLLER};
use crate::resources::{self, discovery_tags, AnyResource, ClusterSide, Cx, Kind, Observed, ResourceId};
use crate::settings::DoctorSettings;
use crate::versions::lookup;

use super::session::{IfGone, Session};
use super::upgrade::Installed;

/// Run `doctor`.
pub async fn run(g: &GlobalArgs, a: &DoctorArgs, hooks: &Hooks) -> Result<Report> {
    check(&DoctorSettings::resolve(g, a)?, hooks).await
}

/// Observe and judge every piece of the install.
pub async fn check(s: &DoctorSettings, hooks: &Hooks) -> Result<Report> {
    let opts = &s.install;
    let session = Session::open(&s.common, hooks, IfGone::Fail, Some(&s.install)).await?;
    let mut checks = cluster_checks(&session.cluster);
    let desired = super::session::desired(opts.target_for(&session.cluster))?;
    let cluster_side = match s.only {
        Some(Only::Aws) => ClusterSide::Off("--only aws".into()),
        None => match session.connect(&s.access, ExtraValues::default(), false, &[]).await {
            Ok(side) => {
                checks.push(Check::new("cluster.api", Status::Pass, "the cluster API answers"));
                side
            }
            Err(e) => {
                let mut check = Check::new("cluster.api", Status::Fail, e.to_string());
                check.hint = Some(e.hint.unwrap_or_else(|| "pass --kubeconfig/--context, or --only aws".into()));
                checks.push(check);
                ClusterSide::Off("needs cluster.api, which failed".into())
            }
        },
    };
    let mut cx = session.cx(desired, cluster_side)?;
    // Judge the install against the version it runs, not karpctl's newest, unless told otherwise.
    let installed = Installed::observe(&cx).await?;
    if let (false, Some(v)) = (opts.version_given, installed.controller.as_deref()) {
        let mut t = cx.desired.target.clone();
        t.karpenter_version = v.to_string();
        cx.desired = Desired::new(t)?;
        cx.docs = Documents::render(&cx.desired)?;
    }
    checks.push(checks::compatibility(&cx.cluster.version, &cx.desired.target.karpenter_version));
    checks.extend(version_checks(&installed, &cx.desired));
    let repair = repair_command(&cx.desired);

    let set = resources::desired_set(&cx.desired, &cx.cluster, opts.subnets.as_deref())?;
    // The migration checks read node groups and the cluster, nothing observation reads: at once.
    let migration = crate::migrate::checks::doctor(&cx.aws, &cx.cluster.name, cx.api().map(|a| &a.kube));
    let (observed, discovery, migration) =
        tokio::join!(plan::observe_all(&cx, set, true), discovery_checks(&cx), migration);
    let observed = observed?;
    for ((r, seen), missing) in observed.iter().zip(plan::missing_dependency(&observed)) {
        let id = r.id();
        // A missing prerequisite explains its dependants: report it once, not as a cascade.
        if let Some(dep) = missing {
            checks.push(Check::new(id.to_string(), Status::Skip, format!("needs {dep}, which is missing")));
            continue;
        }
        let mut check = checks::judge(&id.to_string(), seen, &repair);
        if let Some(size) = policy_margin(&cx, &id) {
            check = size_note(check, size);
        }
        checks.push(check);
    }
    checks.extend(discovery?);
    checks.extend(runtime_checks(&cx, &observed).await?);
    checks.extend(migration);
    if let Some(smoke) = &s.smoke {
        // Only on an install that passes: a smoke test of a broken one proves nothing new.
        checks.push(match (cx.api(), checks.iter().any(|c| c.status == Status::Fail)) {
            (Ok(api), false) => {
                let smoke = Smoke {
                    replicas: smoke.replicas,
                    timeout: smoke.timeout,
                    // Often enough to time a node's arrival well, rarely enough to spare the API server.
                    interval: (smoke.timeout / 20).clamp(Duration::from_millis(50), Duration::from_secs(2)),
                    wait_scale_down: smoke.wait_scale_down,
                };
                super::smoke::run(&api.kube, smoke).await?
            }
            (Err(reason), _) => Check::new("smoke", Status::Skip, reason),
            (_, true) => Check::new("smoke", Status::Skip, "a check above failed"),
        });
    }
    Ok(report(&cx.cluster, checks))
}

/// How Karpenter is doing in the cluster: the controller Deployment, the default EC2NodeClass
/// and NodePool conditions (with the condition's own message), and the interruption queue the
/// controller was given.
async fn runtime_checks(cx: &Cx, observed: &[(Box<dyn AnyResource>, Observed)]) -> Result<Vec<Check>> {
    let ns = &cx.desired.target.namespace;
    let api = match cx.api() {
        Ok(api) => api,
        Err(reason) => {
            let queue = cx.desired.target.interruption.then_some("karpenter.interruption-queue");
            return Ok(["karpenter.controller", "ec2nodeclass.ready", "nodepool.ready", "karpenter.crds"]
                .into_iter()
                .chain(queue)
                .map(|id| Check::new(id, Status::Skip, reason.clone()))
                .collect());
        }
    };
    let mut out = Vec::new();
    let deployment = api.kube.get("apps/v1", "Deployment", Some(ns), CONTROLLER).await?;
    out.push(match deployment.map(|d| serde_json::to_value(d).unwrap_or_default()) {
        None => Check::new("karpenter.controller", Status::Fail, format!("no deployment {ns}/{CONTROLLER}"))
            .with_hint(format!("run `{}` to install the controller", repair_command(&cx.desired))),
        Some(d) => match deployment_readiness(&d) {
            Readiness::Ready => Check::new("karpenter.controller", Status::Pass, "the controller is available"),
            Readiness::NotReady(c) => {
                let pending = survey::pending_reasons(&api.kube, ns).await?;
                let check = Check::new(
                    "karpenter.controller",
                    Status::Fail,
                    format!(
                        "the controller is not available: {}{}",
                        c.map(|c| c.to_string()).unwrap_or_else(|| "no status yet".into()),
                        if pending.is_empty() {
                            String::new()
                        } else {
                            format!("; pods Pending: {}", pending.join("; "))
                        }
                    ),
                );
                if pending.is_empty() {
                    check.with_hint(format!(
                        "kubectl -n {ns} describe deploy/{CONTROLLER}; kubectl -n {ns} logs deploy/{CONTROLLER}"
                    ))
                } else {
                    check.with_hint(survey::PENDING_HINT)
                }
            }
        },
    });
    out.push(survey::crd_check(&api.kube, cx.desired.release).await?);
    out.extend(survey::neighbour_checks(&api.kube).await?);
    let foreign = survey::foreign_controllers(&api.kube, ns).await?;
    out.push(if foreign.is_empty() {
        Check::new("karpenter.foreign-controller", Status::Pass, "no other Karpenter controller runs")
    } else {
        let e = survey::foreign_controller_error(&foreign);
        Check::new("karpenter.foreign-controller", Status::Fail, e.message).with_hint(e.hint.unwrap_or_default())
    });
    for (id, api_version, kind) in [
        ("ec2nodeclass.ready", "karpenter.k8s.aws/v1", "EC2NodeClass"),
        ("nodepool.ready", "karpenter.sh/v1", "NodePool"),
    ] {
        if !cx.desired.target.default_nodepool {
            out.push(Check::new(id, Status::Skip, "--no-default-nodepool"));
            continue;
        }
        let Some(obj) = api.kube.get(api_version, kind, None, "default").await? else {
            out.push(Check::new(id, Status::Skip, format!("no {kind} default")));
            continue;
        };
        let obj = serde_json::to_value(obj).unwrap_or_default();
        out.push(match readiness(&obj, "Ready") {
            Readiness::Ready => Check::new(id, Status::Pass, format!("{kind} default is Ready")),
            Readiness::NotReady(c) => {
                let why = c.map(|c| c.to_string()).unwrap_or_else(|| "no conditions yet".into());
                Check::new(id, Status::Fail, format!("{kind} default is not Ready: {why}"))
                    .with_hint(format!("kubectl describe {} default", kind.to_ascii_lowercase()))
            }
        });
    }
    // The controller must be told the queue by name (the v0.x key interruptionQueueName is ignored).
    let controller = observed.iter().find(|(r, _)| r.id() == crate::resources::helm_release::id(ns, CONTROLLER));
    if api.helm.is_none() && cx.desired.target.interruption {
        out.push(Check::new("karpenter.interruption-queue", Status::Skip, "helm not found (pass --helm PATH)"));
    }
    // Read from the release's observation: helm was asked once already.
    if let Some(values) = controller.and_then(|(_, seen)| HelmRelease::installed_values(seen)) {
        if cx.desired.target.interruption {
            let queue = &cx.desired.names.queue.name;
            out.push(match values["settings"]["interruptionQueue"].as_str() {
                Some(q) if q == queue => {
                    Check::new("karpenter.interruption-queue", Status::Pass, format!("the controller reads queue {q}"))
                }
                other => Check::new(
                    "karpenter.interruption-queue",
                    Status::Fail,
                    format!(
                        "the release's settings.interruptionQueue is {:?}, not {queue:?}: interruptions are not handled",
                        other.unwrap_or("")
                    ),
                )
                .with_hint(format!("run `{}` to set it", repair_command(&cx.desired))),
            });
        }
    }
    Ok(out)
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

/// The releases agree with each other and with the version table: a CRD chart behind the
/// controller (or a version karpctl has no documents for) explains failures nothing else would.
fn version_checks(installed: &Installed, d: &Desired) -> Vec<Check> {
    let id = "karpenter.versions";
    let v = &d.target.karpenter_version;
    let check = match (installed.controller.as_deref(), installed.crds.as_deref()) {
        (None, None) => return Vec::new(),
        (Some(c), Some(k)) if c == k && lookup(c).is_some() => Check::new(
            id,
            Status::Pass,
            format!("controller and CRD chart run {c} (documents of {})", d.release.version),
        ),
        (Some(c), Some(k)) if c == k => {
            Check::new(id, Status::Warn, format!("Karpenter {c} is not in karpctl's version table"))
                .with_hint(format!("checked against {}'s documents; see karpctl versions", d.release.version))
        }
        (c, k) => Check::new(
            id,
            Status::Fail,
            format!(
                "controller chart {}, CRD chart {}: they must match",
                c.unwrap_or("missing"),
                k.unwrap_or("missing")
            ),
        )
        .with_hint(format!("run `karpctl upgrade --cluster {} --to {v}` to bring both to {v}", d.target.cluster)),
    };
    vec![check]
}

fn cluster_checks(c: &ClusterInfo) -> Vec<Check> {
    let mut out = vec![Check::new(
        "aws.credentials",
        Status::Pass,
        format!("calling as {} (account {})", c.caller.arn, c.caller.account),
    )];
    out.push(match c.require_installable() {
        Ok(None) => Check::new("cluster.status", Status::Pass, format!("{} is ACTIVE in {}", c.name, c.region)),
        Ok(Some(warning)) => Check::new("cluster.status", Status::Warn, warning),
        Err(e) => {
            let check = Check::new("cluster.status", Status::Fail, e.message);
            match e.hint {
                Some(h) => check.with_hint(h),
                None => check,
            }
        }
    });
    out
}

/// The size of a controller policy, when `id` names one.
fn policy_margin(cx: &Cx, id: &ResourceId) -> Option<usize> {
    if id.kind != Kind::IamPolicy {
        return None;
    }
    cx.docs.policies.iter().find(|(_, n, _)| *n == id.name).map(|(_, _, doc)| policy_size(doc))
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
    let (cluster_subnets, tagged_subnets, tagged_groups, tables) = tokio::join!(
        async {
            if cx.cluster.subnet_ids.is_empty() {
                return Ok(None);
            }
            let ids = Some(cx.cluster.subnet_ids.clone());
            ec2.describe_subnets().set_subnet_ids(ids).into_paginator().items().send().try_collect().await.map(Some)
        },
        ec2.describe_subnets().filters(tag.clone()).into_paginator().items().send().try_collect(),
        ec2.describe_security_groups().filters(tag).into_paginator().items().send().try_collect(),
        discovery_tags::route_tables(cx, cx.cluster.vpc_id.as_deref())
    );
    let zones = |subnets: &[aws_sdk_ec2::types::Subnet]| -> BTreeSet<String> {
        subnets.iter().filter_map(|s| s.availability_zone().map(str::to_string)).collect()
    };
    let used = cluster_subnets
        .or_aws("failed to read the cluster's subnets", "ec2:DescribeSubnets")?
        .map(|o| zones(&o))
        .unwrap_or_default();
    let tagged = tagged_subnets.or_aws("failed to find tagged subnets", "ec2:DescribeSubnets")?;
    let covered = zones(&tagged);
    let uncovered: Vec<&String> = used.iter().filter(|z| !covered.contains(*z)).collect();
    let hint = format!(
        "tag a subnet in each zone with {DISCOVERY_TAG}={cluster} (karpctl init does it for the cluster's subnets)"
    );
    let subnets = if tagged.is_empty() {
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
            format!("{} tagged subnets cover {}", tagged.len(), covered.into_iter().collect::<Vec<_>>().join(", ")),
        )
    };
    let groups = tagged_groups.or_aws("failed to find tagged security groups", "ec2:DescribeSecurityGroups")?;
    let sg = if groups.is_empty() {
        Check::new(
            "discovery.security-groups",
            Status::Fail,
            format!("no security group is tagged {DISCOVERY_TAG}={cluster}"),
        )
        .with_hint(format!("tag the cluster security group with {DISCOVERY_TAG}={cluster} (karpctl init does it)"))
    } else {
        Check::new("discovery.security-groups", Status::Pass, format!("{} tagged security groups", groups.len()))
    };
    // Karpenter launches into every subnet its selector matches: a public one puts nodes
    // where the internet reaches them.
    let tables = tables?;
    let public: Vec<String> = tagged
        .iter()
        .filter_map(|s| {
            discovery_tags::public_reason(s, &tables)
                .map(|why| format!("{} ({why})", s.subnet_id().unwrap_or_default()))
        })
        .collect();
    let exposure = if public.is_empty() {
        Check::new("discovery.public-subnets", Status::Pass, "no tagged subnet is public")
    } else {
        Check::new(
            "discovery.public-subnets",
            Status::Warn,
            format!("tagged subnets are public: {}", public.join(", ")),
        )
        .with_hint(format!(
            "Karpenter launches nodes into public subnets too; remove {DISCOVERY_TAG} from them, or keep it on purpose"
        ))
    };
    Ok(vec![subnets, sg, exposure])
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
            if let Some(d) = &ch.diff {
                text.push_str(&crate::output::diff_text(d, 4));
            }
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
