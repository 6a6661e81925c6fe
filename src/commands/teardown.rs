//! `karpctl teardown`: remove what karpctl made, in reverse dependency order, then sweep what
//! Karpenter left behind for this cluster. Never touches a resource without karpctl's (or, for
//! leftovers, Karpenter's) tags for this cluster. Works when the cluster is already gone.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use serde_json::json;

use crate::cli::{GlobalArgs, TeardownArgs};
use crate::context::Hooks;
use crate::desired::{DISCOVERY_MARKER_TAG, DISCOVERY_TAG};
use crate::error::{AwsContext, Error, ErrorKind, Result};
use crate::helm::ExtraValues;
use crate::kube::{karpenter, Wait};
use crate::output::{self, Report};
use crate::plan::{self, Action, Change, Planned};
use crate::resources::manifest::Manifest;
use crate::resources::{
    self, discovery_tags::DiscoveryTags, helm_release, oidc_provider, orphans, AnyResource, ClusterApi, ClusterSide,
    Cx, Kind, Observed, ResourceId, Set,
};
use crate::settings::TeardownSettings;

use super::plan_view::{confirm, table, Ask, Tense};
use super::session::{IfGone, Session};

/// Run `teardown`.
pub async fn run(g: &GlobalArgs, a: &TeardownArgs, hooks: &Hooks) -> Result<Report> {
    remove(&TeardownSettings::resolve(g, a)?, hooks).await
}

/// Remove what karpctl made for the cluster, and Karpenter's leftovers.
pub async fn remove(a: &TeardownSettings, hooks: &Hooks) -> Result<Report> {
    let opts = &a.install;
    let session = Session::open(&a.common, hooks, IfGone::AwsOnly, None).await?;
    let info = &session.cluster;
    if let Some(w) = info.exists().then(|| info.require_usable()).transpose()?.flatten() {
        output::warn(&w);
    }
    let mut target = opts.target_for(info);
    // The auth mode decides nothing here (both identities are looked for); pod-identity needs no issuer.
    target.auth = crate::desired::AuthMode::PodIdentity;
    let desired = super::session::desired(target)?;
    let cluster_side = if !info.exists() {
        ClusterSide::Off("the cluster is gone".into())
    } else {
        match session.connect(&a.access, ExtraValues::default(), false, &[]).await {
            Ok(side) => side,
            Err(e) => {
                output::warn(&format!(
                    "cannot reach the cluster API ({e}): NodePools and helm releases are left alone; Karpenter's instances are swept from AWS instead"
                ));
                ClusterSide::Off("the cluster API is unreachable".into())
            }
        }
    };
    let cx = session.cx(desired, cluster_side)?;

    let spinner = output::spinner("looking for what karpctl and Karpenter made");
    let mut set = resources::desired_set(&cx.desired, &cx.cluster, opts.subnets.as_deref())?;
    let controller = match cx.api() {
        Ok(api) => Some(survey(api, &cx, a, &mut set).await?),
        Err(_) => None,
    };
    // Looking for what only tags find runs alongside observing the set: each search already
    // reads what observing its finds would, so they need no second look.
    let (found, observed) = tokio::join!(find_more(&cx), plan::observe_all(&cx, set, false));
    spinner.finish_and_clear();
    let (extra, leftovers) = found?;
    let mut observed = observed?;
    let mut known: HashSet<ResourceId> = observed.iter().map(|(r, _)| r.id()).collect();
    observed.extend(extra.into_iter().filter(|(r, _)| known.insert(r.id())));
    let is_iam: Vec<bool> = observed.iter().map(|(r, _)| r.is_iam()).collect();
    let ids: Vec<ResourceId> = observed.iter().map(|(r, _)| r.id()).collect();
    let deps: Vec<Vec<ResourceId>> =
        observed.iter().map(|(r, _)| r.depends_on().into_iter().map(|d| d.id).collect()).collect();
    let levels = plan::levels(&ids, &deps);
    let mut main: Vec<Planned> = observed
        .into_iter()
        .zip(levels)
        .zip(is_iam)
        .map(|(((resource, seen), level), iam)| {
            let id = resource.id();
            let mut change = plan::plan_delete(id.clone(), &seen, a.keep_iam && iam);
            if a.keep_crds
                && seen.skip.is_none()
                && id == helm_release::id(&cx.desired.target.namespace, helm_release::CRDS)
            {
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
        let seen = AnyResource::observe(&orphan, &cx).await?;
        let change = plan::plan_delete(AnyResource::id(&orphan), &seen, false);
        // Instances (the higher level) go before their launch templates and instance profiles.
        let level = usize::from(orphan.kind() == orphans::OrphanKind::Instance);
        sweep.push(Planned { resource: Box::new(orphan), seen, change, level });
    }
    sweep.sort_by_key(|p| std::cmp::Reverse(p.level));
    // The set is complete only now (NodePools and EC2NodeClasses of any owner, what only tags
    // find, Karpenter's leftovers): every dependency must name one of its resources.
    let members: Vec<_> = main.iter().chain(&sweep).map(|p| (p.resource.id(), p.resource.depends_on())).collect();
    resources::check_set(&members)?;
    let changes: Vec<Change> = main.iter().chain(&sweep).map(|p| p.change.clone()).collect();
    let pending = changes.iter().filter(|c| c.action.is_change()).count();
    let mut notes = Vec::new();
    if controller == Some(false) && pending > 0 {
        let note = "the Karpenter controller is not running: teardown terminates its instances by tag and removes its finalizers itself";
        output::warn(note);
        notes.push(note.to_string());
    }
    if a.dry_run || pending == 0 {
        return Ok(report(&cx, &changes, a.dry_run, &notes));
    }
    if !a.common.yes {
        let name = cx.cluster.name.clone();
        let prompt = format!("Type the cluster name ({name}) to delete these {pending} resources");
        let plan = text(&cx, &changes, true, &[]);
        confirm("deletions", pending, hooks.interactive, &plan, Ask::Type { expected: name, prompt }).await?;
    }
    let bar = output::spinner(&format!("removing {pending} resources"));
    let on_done = |c: &Change| output::progress(&bar, &format!("deleted {}", c.resource));
    let (instances, rest): (Vec<Planned>, Vec<Planned>) =
        sweep.into_iter().partition(|p| p.change.resource.kind == Kind::Ec2Instance);
    let result = async {
        let wait =
            Wait::new((a.wait_timeout / 20).clamp(Duration::from_millis(100), Wait::DRAIN.interval), a.wait_timeout);
        let mut running = controller.unwrap_or(false);
        let mut instances_gone = false;
        for n in 0..AWS_PHASE {
            let batch: Vec<&Planned> = main.iter().filter(|p| phase(&p.change.resource) == n).collect();
            if n == 2 && controller.is_some() && !running {
                // No controller (any more): nothing else will terminate the instances or
                // release the finalizers that keep the objects, and so the CRDs, from going.
                plan::delete_refs(&cx, &instances.iter().collect::<Vec<_>>(), &on_done).await?;
                instances_gone = true;
                notes.push(release(&cx).await?);
            }
            plan::delete_refs(&cx, &batch, &on_done).await?;
            let deleted: Vec<String> = batch
                .iter()
                .filter(|p| p.change.action == Action::Delete)
                .map(|p| p.change.resource.name.clone())
                .collect();
            if running && n < 2 && !deleted.is_empty() {
                // NodePools first (their NodeClaims drain), then the EC2NodeClasses: Karpenter
                // removes their finalizers, and the instance profiles they made, while it runs.
                let gone = settle(&cx, &bar, n, &deleted, wait).await;
                match gone {
                    Ok(()) => {}
                    Err(e) if e.kind == ErrorKind::Timeout && a.force => {
                        output::warn(&format!("{e}: --force: going on without the controller"));
                        running = false;
                    }
                    Err(e) if e.kind == ErrorKind::Timeout => {
                        return Err(e.with_hint(
                            "the controller is still installed, so a rerun can still finish cleanly; \
                             or pass --force to terminate Karpenter's instances by tag and remove its finalizers",
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // The AWS side and Karpenter's leftovers together, by the dependency graph: a role
        // waits for the profiles holding it (karpctl's and Karpenter's), a policy for the role
        // it is attached to, the queue for its rules, a launch template for its instances, and
        // nothing else waits.
        let aws: Vec<&Planned> = main
            .iter()
            .filter(|p| phase(&p.change.resource) == AWS_PHASE)
            .chain(&rest)
            .chain(instances.iter().filter(|_| !instances_gone))
            .collect();
        plan::delete_graph(&cx, &aws, &on_done).await
    }
    .await;
    bar.finish_and_clear();
    result.map_err(|e| e.resumable("teardown"))?;
    Ok(report(&cx, &changes, false, &notes))
}

/// Before anything is planned: refuse NodePools karpctl did not make (unless
/// `--all-nodepools`, which adds them to the set), add the EC2NodeClasses the CRDs' removal
/// would take with them, and tell whether the controller runs.
async fn survey(api: &ClusterApi, cx: &Cx, a: &TeardownSettings, set: &mut Set) -> Result<bool> {
    let foreign = karpenter::foreign_pools(&api.kube).await?;
    if !foreign.is_empty() && !a.all_nodepools {
        let list: Vec<String> = foreign.iter().map(ToString::to_string).collect();
        return Err(Error::new(
            ErrorKind::Refused,
            format!("NodePools karpctl did not make: {}; teardown would strand their nodes", list.join(", ")),
        )
        .with_hint(
            "delete them first, or pass --all-nodepools to remove them too (Karpenter drains their nodes while it still runs)",
        ));
    }
    let mut replace = |r: Manifest| {
        let id = AnyResource::id(&r);
        set.retain(|x| x.id() != id);
        set.push(Box::new(r));
    };
    for pool in &foreign {
        replace(Manifest::any_node_pool(&pool.name));
    }
    if !a.keep_crds {
        for name in karpenter::node_classes(&api.kube).await? {
            if name != "default" {
                replace(Manifest::any_node_class(&name));
            }
        }
    }
    karpenter::controller_runs(&api.kube, &cx.desired.target.namespace).await
}

/// Wait, after phase `n` deleted `names`, until the controller has finished: every NodeClaim
/// gone after the NodePools, the deleted EC2NodeClasses gone after them.
async fn settle(cx: &Cx, bar: &indicatif::ProgressBar, n: usize, names: &[String], wait: Wait) -> Result<()> {
    let Ok(api) = cx.api() else { return Ok(()) };
    let progress = |msg: &str| output::progress(bar, msg);
    let ((api_version, kind), only) =
        if n == 0 { (karpenter::NODECLAIM, None) } else { (karpenter::NODECLASS, Some(names)) };
    api.kube.wait_gone(api_version, kind, None, None, only, wait, &progress).await
}

/// Release what only the controller would have: its finalizers; the line the report shows.
async fn release(cx: &Cx) -> Result<String> {
    let api = cx.api().map_err(|r| Error::new(ErrorKind::ClusterState, r))?;
    let done = karpenter::release_finalizers(&api.kube).await?;
    let line = format!(
        "without the controller: Karpenter's instances terminated by tag; finalizers removed from {} NodeClaims, {} EC2NodeClasses and {} Nodes",
        done.node_claims, done.node_classes, done.nodes
    );
    output::warn(&line);
    Ok(line)
}

/// The phase of [`phase`] that holds the AWS side, after the cluster side's three.
const AWS_PHASE: usize = 3;

/// The removal phase of a resource: NodePools, EC2NodeClasses, helm releases, the rest.
fn phase(id: &ResourceId) -> usize {
    match id.kind {
        Kind::NodePool => 0,
        Kind::Ec2NodeClass => 1,
        Kind::HelmRelease => 2,
        _ => AWS_PHASE,
    }
}

/// What only tags find once the cluster is gone or changed: karpctl's OIDC providers and the
/// subnets and security groups it tagged (observed by the search itself: both are karpctl's,
/// found by its tags for this cluster), and Karpenter's leftovers.
async fn find_more(cx: &Cx) -> Result<(Vec<(Box<dyn AnyResource>, Observed)>, Vec<orphans::Orphan>)> {
    let (providers, tagged, leftovers) =
        tokio::join!(oidc_provider::find_owned(cx), tagged_by_karpctl(cx), orphans::find(cx));
    let owned = || Observed::present(true, Vec::new(), ()).erase();
    let mut extra: Vec<(Box<dyn AnyResource>, Observed)> = Vec::new();
    for arn in providers? {
        extra.push((Box::new(oidc_provider::OidcProvider::with_arn(&arn)), owned()));
    }
    for id in tagged? {
        extra.push((Box::new(DiscoveryTags::new(id)), owned()));
    }
    Ok((extra, leftovers?))
}

/// Subnets and security groups carrying karpctl's discovery marker and the discovery tag for
/// this cluster (another cluster's marked subnets are not ours to untag). Both searches at
/// once; every page read.
async fn tagged_by_karpctl(cx: &Cx) -> Result<Vec<String>> {
    let ec2 = &cx.aws.ec2;
    let search = |filters: Vec<Filter>| async {
        let tags = ec2.describe_tags().set_filters(Some(filters)).into_paginator().items().send().try_collect().await;
        let tags = tags.or_aws("failed to look for karpctl's discovery tags", "ec2:DescribeTags")?;
        Ok::<HashSet<String>, Error>(tags.iter().filter_map(|t| t.resource_id().map(str::to_string)).collect())
    };
    let (marked, ours) = tokio::join!(
        search(vec![Filter::builder().name("key").values(DISCOVERY_MARKER_TAG).build()]),
        search(vec![
            Filter::builder().name("key").values(DISCOVERY_TAG).build(),
            Filter::builder().name("value").values(&cx.desired.target.cluster).build(),
        ])
    );
    let ours = ours?;
    let mut ids: Vec<String> = marked?.into_iter().filter(|id| ours.contains(id)).collect();
    ids.sort();
    Ok(ids)
}

fn text(cx: &Cx, changes: &[Change], dry_run: bool, notes: &[String]) -> String {
    let mut out =
        format!("Teardown of {} ({}, account {})\n", cx.cluster.name, cx.cluster.region, cx.cluster.caller.account);
    table(&mut out, changes, Tense::Planned);
    let count = |a: Action| changes.iter().filter(|c| c.action == a).count();
    let (delete, skip) = (count(Action::Delete), count(Action::Skip));
    let _ = if delete == 0 {
        writeln!(out, "Nothing to remove: {} already gone, {skip} left in place.", count(Action::None))
    } else if dry_run {
        writeln!(out, "Plan: {delete} to delete, {skip} left in place.")
    } else {
        writeln!(out, "Removed: {delete} deleted, {skip} left in place.")
    };
    for n in notes {
        let _ = writeln!(out, "Note: {n}");
    }
    out
}

fn report(cx: &Cx, changes: &[Change], dry_run: bool, notes: &[String]) -> Report {
    let mut r = Report::raw("teardown", text(cx, changes, dry_run, notes));
    r.body.insert("notes".into(), json!(notes));
    r.raw = false;
    r.body.insert("cluster".into(), json!(cx.cluster.name));
    r.body.insert("dry_run".into(), json!(dry_run));
    r.body.insert("changes".into(), json!(changes));
    r
}
