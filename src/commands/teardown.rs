//! `karpctl teardown`: remove what karpctl made, in reverse dependency order, then sweep what
//! Karpenter left behind for this cluster. Never touches a resource without karpctl's (or, for
//! leftovers, Karpenter's) tags for this cluster. Works when the cluster is already gone.

use std::collections::HashSet;
use std::fmt::Write as _;

use aws_sdk_ec2::types::Filter;
use serde_json::json;

use crate::aws::Aws;
use crate::cli::{GlobalArgs, TeardownArgs};
use crate::cluster::{self, ClusterInfo};
use crate::context::Hooks;
use crate::desired::{Desired, DISCOVERY_MARKER_TAG, DISCOVERY_TAG};
use crate::error::{Error, ErrorKind, Result};
use crate::helm::ExtraValues;
use crate::kube::Wait;
use crate::output::{self, Report};
use crate::plan::{self, Action, Change, Planned};
use crate::render::Documents;
use crate::resources::manifest::Manifest;
use crate::resources::{
    self, discovery_tags::DiscoveryTags, helm_release, oidc_provider, orphans, ClusterSide, Cx, Resource,
};
use crate::settings::{self, InstallOptions};

/// Run `teardown`.
pub async fn run(g: &GlobalArgs, a: &TeardownArgs, hooks: &Hooks) -> Result<Report> {
    let cluster_name = settings::require_cluster(g)?;
    let mut opts = InstallOptions::from_args(&a.install)?;
    // Teardown removes whatever karpctl made, whichever options init had.
    opts.interruption = true;
    let aws = Aws::connect(&settings::aws_options(g)?, hooks).await?;
    let info = match cluster::discover(&aws, &cluster_name).await {
        Ok(info) => info,
        Err(e) if e.kind == ErrorKind::NotFound => {
            output::warn(&format!(
                "cluster {cluster_name} not found in {}: removing karpctl's AWS resources and Karpenter's leftovers only",
                aws.region()
            ));
            ClusterInfo::gone(&cluster_name, &aws.region(), cluster::caller(&aws).await?)
        }
        Err(e) => return Err(e),
    };
    let mut target = opts.target_for(&info);
    // The auth mode decides nothing here (both identities are looked for); pod-identity needs no issuer.
    target.auth = crate::desired::AuthMode::PodIdentity;
    let desired = Desired::new(target)?;
    let docs = Documents::render(&desired)?;
    let cluster_side = if !info.exists() {
        ClusterSide::Off("the cluster is gone".into())
    } else {
        match super::connect_cluster(&a.cluster, &info, &aws, ExtraValues::default(), false, &[]).await {
            Ok(side) => side,
            Err(e) => {
                output::warn(&format!(
                    "cannot reach the cluster API ({e}): NodePools and helm releases are left alone; Karpenter's instances are swept from AWS instead"
                ));
                ClusterSide::Off("the cluster API is unreachable".into())
            }
        }
    };
    let cx = Cx { aws, desired, docs, cluster: info, cluster_side };

    let spinner = output::spinner("looking for what karpctl and Karpenter made");
    let found = find_set(&cx).await;
    spinner.finish_and_clear();
    let (mut set, leftovers) = found?;
    if a.all_nodepools {
        if let Ok(api) = cx.api() {
            for np in api.kube.list("karpenter.sh/v1", "NodePool", None, None).await? {
                let name = np.metadata.name.unwrap_or_default();
                if name != "default" && !name.is_empty() {
                    set.push(Box::new(Manifest::any_node_pool(&name)));
                }
            }
        }
    }
    let is_iam: Vec<bool> = set.iter().map(|r| r.is_iam()).collect();
    let ids: Vec<String> = set.iter().map(|r| r.id()).collect();
    let deps: Vec<Vec<String>> = set.iter().map(|r| r.depends_on()).collect();
    let levels = plan::levels(&ids, &deps);
    let observed = plan::observe_all(&cx, set, false).await?;
    let mut main: Vec<Planned> = observed
        .into_iter()
        .zip(levels)
        .zip(is_iam)
        .map(|(((resource, seen), level), iam)| {
            let id = resource.id();
            let mut change = plan::plan_delete(id.clone(), &seen, a.keep_iam && iam);
            if let (true, Err(reason)) = (resource.is_cluster_side(), cx.api()) {
                change = Change::new(id, Action::Skip, reason);
            } else if a.keep_crds && id == helm_release::id(&cx.desired.target.namespace, helm_release::CRDS) {
                change = Change::new(id, Action::Skip, "--keep-crds");
            }
            Planned { resource, seen, change, level }
        })
        .collect();
    // Shown in the order of removal: NodePools first, while the controller still runs to drain
    // its nodes, then the EC2NodeClasses, the releases, then the AWS side, each in reverse
    // dependency order.
    main.sort_by_key(|p| (phase(&p.change.resource), std::cmp::Reverse(p.level)));
    let mut sweep = Vec::new();
    for orphan in leftovers {
        let seen = orphan.observe(&cx).await?;
        let change = plan::plan_delete(orphan.id(), &seen, false);
        // Instances (the higher level) go before their launch templates and instance profiles.
        let level = usize::from(orphan.kind() == orphans::OrphanKind::Instance);
        sweep.push(Planned { resource: Box::new(orphan), seen, change, level });
    }
    sweep.sort_by_key(|p| std::cmp::Reverse(p.level));
    let changes: Vec<Change> = main.iter().chain(&sweep).map(|p| p.change.clone()).collect();
    let pending = changes.iter().filter(|c| c.action.is_change()).count();
    if a.dry_run || pending == 0 {
        return Ok(report(&cx, &changes, a.dry_run));
    }
    if !g.yes {
        confirm(&cx, &changes, pending, hooks.interactive).await?;
    }
    let bar = output::spinner(&format!("removing {pending} resources"));
    let on_done = |c: &Change| output::progress(&bar, &format!("deleted {}", c.resource));
    let result = async {
        for n in 0..PHASES {
            let batch: Vec<&Planned> = main.iter().filter(|p| phase(&p.change.resource) == n).collect();
            plan::delete_refs(&cx, &batch, &on_done).await?;
            if n == 0 && batch.iter().any(|p| p.change.action == Action::Delete) {
                drain(&cx, &bar, a.all_nodepools).await?;
            }
        }
        plan::delete(&cx, &sweep, &on_done).await
    }
    .await;
    bar.finish_and_clear();
    result.map_err(|e| e.resumable("teardown"))?;
    Ok(report(&cx, &changes, false))
}

/// How many phases [`phase`] knows.
const PHASES: usize = 4;

/// The removal phase of a resource: NodePools, EC2NodeClasses, helm releases, the rest.
fn phase(id: &str) -> usize {
    if id.starts_with("nodepool/") {
        0
    } else if id.starts_with("ec2nodeclass/") {
        1
    } else if id.starts_with("helm-release/") {
        2
    } else {
        3
    }
}

/// Wait until the deleted NodePools' NodeClaims are gone: Karpenter drains and terminates its
/// own instances only while the controller runs.
async fn drain(cx: &Cx, bar: &indicatif::ProgressBar, all: bool) -> Result<()> {
    let Ok(api) = cx.api() else { return Ok(()) };
    let selector = if all { None } else { Some("karpenter.sh/nodepool=default") };
    let progress = |msg: &str| bar.set_message(msg.to_string());
    api.kube.wait_gone("karpenter.sh/v1", "NodeClaim", None, selector, Wait::DRAIN, &progress).await
}

/// The resources to consider: the desired set (for the names karpctl uses), plus what only
/// tags can find once the cluster is gone or changed: karpctl's OIDC providers and the
/// subnets and security groups it tagged, and Karpenter's leftovers.
async fn find_set(cx: &Cx) -> Result<(Vec<Box<dyn Resource>>, Vec<orphans::Orphan>)> {
    let (providers, tagged, leftovers) =
        tokio::join!(oidc_provider::find_owned(cx), tagged_by_karpctl(cx), orphans::find(cx));
    let mut set = resources::desired_set(&cx.desired, &cx.cluster);
    let mut seen: HashSet<String> = set.iter().map(|r| r.id()).collect();
    for arn in providers? {
        let r = oidc_provider::OidcProvider::with_arn(&arn);
        if seen.insert(r.id()) {
            set.insert(0, Box::new(r));
        }
    }
    for id in tagged? {
        let r = DiscoveryTags::new(id);
        if seen.insert(r.id()) {
            set.push(Box::new(r));
        }
    }
    Ok((set, leftovers?))
}

/// Subnets and security groups carrying karpctl's discovery marker for this cluster.
async fn tagged_by_karpctl(cx: &Cx) -> Result<Vec<String>> {
    let out = cx
        .aws
        .ec2
        .describe_tags()
        .filters(Filter::builder().name("key").values(DISCOVERY_MARKER_TAG).build())
        .send()
        .await
        .map_err(|e| Error::aws("failed to look for karpctl's discovery tags", "ec2:DescribeTags", e))?;
    let marked: Vec<String> = out.tags().iter().filter_map(|t| t.resource_id().map(str::to_string)).collect();
    if marked.is_empty() {
        return Ok(marked);
    }
    // Only those tagged for this cluster: another cluster's marked subnets are not ours to untag.
    let ours = cx
        .aws
        .ec2
        .describe_tags()
        .filters(Filter::builder().name("resource-id").set_values(Some(marked)).build())
        .filters(Filter::builder().name("key").values(DISCOVERY_TAG).build())
        .filters(Filter::builder().name("value").values(&cx.desired.target.cluster).build())
        .send()
        .await
        .map_err(|e| Error::aws("failed to read discovery tags", "ec2:DescribeTags", e))?;
    let mut ids: Vec<String> = ours.tags().iter().filter_map(|t| t.resource_id().map(str::to_string)).collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Ask before deleting: on a terminal the user types the cluster name; without one, `--yes`.
async fn confirm(cx: &Cx, changes: &[Change], pending: usize, interactive: bool) -> Result<()> {
    if !interactive {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{pending} deletions need confirmation and there is no terminal to ask"),
        )
        .with_hint("review them with --dry-run, then run again with --yes"));
    }
    eprint!("{}", text(cx, changes, true));
    let name = cx.cluster.name.clone();
    let prompt = format!("Type the cluster name ({name}) to delete these {pending} resources");
    let typed = output::ask(move || dialoguer::Input::<String>::new().with_prompt(prompt).interact_text()).await?;
    if typed.trim() == cx.cluster.name {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Refused, "the name did not match; nothing was deleted")
            .with_hint("type the cluster name exactly, or pass --yes"))
    }
}

fn text(cx: &Cx, changes: &[Change], dry_run: bool) -> String {
    let mut out =
        format!("Teardown of {} ({}, account {})\n", cx.cluster.name, cx.cluster.region, cx.cluster.caller.account);
    let width = changes.iter().map(|c| c.resource.len()).max().unwrap_or(0);
    for ch in changes {
        let action = match ch.action {
            Action::Delete => console::style(ch.action.as_str()).red(),
            _ => console::style(ch.action.as_str()).dim(),
        };
        let line = format!("  {:<6}  {:<width$}  {}", action, ch.resource, ch.detail, width = width);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let count = |a: Action| changes.iter().filter(|c| c.action == a).count();
    let (delete, skip) = (count(Action::Delete), count(Action::Skip));
    let _ = if delete == 0 {
        writeln!(out, "Nothing to remove: {} already gone, {skip} left in place.", count(Action::None))
    } else if dry_run {
        writeln!(out, "Plan: {delete} to delete, {skip} left in place.")
    } else {
        writeln!(out, "Removed: {delete} deleted, {skip} left in place.")
    };
    out
}

fn report(cx: &Cx, changes: &[Change], dry_run: bool) -> Report {
    let mut r = Report::raw("teardown", text(cx, changes, dry_run));
    r.raw = false;
    r.body.insert("cluster".into(), json!(cx.cluster.name));
    r.body.insert("dry_run".into(), json!(dry_run));
    r.body.insert("changes".into(), json!(changes));
    r
}
