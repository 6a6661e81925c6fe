//! `karpctl teardown`: remove what karpctl made, in reverse dependency order, then sweep what
//! Karpenter left behind for this cluster. Never touches a resource without karpctl's (or, for
//! leftovers, Karpenter's) tags for this cluster. Works when the cluster is already gone.

use std::collections::HashSet;
use std::fmt::Write as _;

use aws_sdk_ec2::types::Filter;
use serde_json::json;

use crate::cli::{GlobalArgs, TeardownArgs};
use crate::context::Hooks;
use crate::desired::{DISCOVERY_MARKER_TAG, DISCOVERY_TAG};
use crate::error::{AwsContext, Error, ErrorKind, Result};
use crate::helm::ExtraValues;
use crate::kube::karpenter;
use crate::output::{self, Report};
use crate::plan::{self, Action, Change, Planned};
use crate::resources::manifest::Manifest;
use crate::resources::{
    self, discovery_tags::DiscoveryTags, oidc_provider, orphans, removal::Removal, AnyResource, ClusterApi,
    ClusterSide, Cx, Keep, Observed, ResourceId, Set,
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
    let mut cx = session.cx(desired, cluster_side)?;

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
    for orphan in leftovers {
        let seen = AnyResource::observe(&orphan, &cx).await?;
        observed.push((Box::new(orphan), seen));
    }
    let kept: Vec<Keep> = [(a.keep_iam, Keep::Iam), (a.keep_crds, Keep::Crds)]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect();
    // Shown in the order of removal: NodePools first, while the controller still runs to drain
    // its nodes, then the EC2NodeClasses, the releases, then the AWS side and Karpenter's
    // leftovers, each after what depends on it.
    let planned = plan::plan_removal(observed, &kept);
    // The set is complete only now (NodePools and EC2NodeClasses of any owner, what only tags
    // find, Karpenter's leftovers): every dependency must name one of its resources.
    let members: Vec<_> = planned.iter().map(|p| (p.resource.id(), p.resource.depends_on())).collect();
    resources::check_set(&members)?;
    let changes: Vec<Change> = planned.iter().map(|p| p.change.clone()).collect();
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
    // One walk by the removal graph: the cluster side first, NodePools, EC2NodeClasses (each
    // gone only once the controller has finished with it), Karpenter's instances, the releases;
    // then the AWS side and the leftovers, each once what holds it has let go.
    cx.removal = Removal::new(controller, a.wait_timeout, a.force);
    let all: Vec<&Planned> = planned.iter().collect();
    let result = async {
        plan::delete_graph(&cx, &all, &on_done).await?;
        // No release was removed (gone already, or not karpctl's): what only the controller
        // would have let go is released now all the same.
        cx.removal.release_if_stopped(&cx).await
    }
    .await;
    notes.extend(cx.removal.note());
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
