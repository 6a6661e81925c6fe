//! Observe → plan → apply over the resource set. Observation runs concurrently; the plan is a
//! pure function of what was observed; apply starts each resource as soon as what it depends
//! on is done (or, for what it needs only to exist, created), and teardown deletes each as
//! soon as what depends on it has let go of it.

use std::collections::HashMap;
use std::hash::Hash;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::resources::{AnyResource, Cx, Observed, Presence, ResourceId, Set};

mod remove;

pub use remove::{delete_graph, plan_delete, plan_removal, removal_order};

/// How many resources are observed or applied at once. Every AWS call is a round trip of tens of
/// milliseconds, so a run's time is its longest chain of calls made one after another, not the
/// number of calls: observing all of a set (about 30 resources, one to three reads each) at
/// once keeps observation to the two or three round trips of the slowest resource. The bound is
/// above any set karpctl builds; it only caps a surprise. Throttling, should a burst meet it, is
/// the SDK's to absorb (retries with backoff and jitter).
const CONCURRENCY: usize = 32;

/// What happens (or would happen) to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It does not exist and will be created.
    Create,
    /// It exists and differs; the differences will be repaired.
    Update,
    /// Nothing to do.
    None,
    /// It exists without karpctl's tags and will be tagged and managed (`--adopt`).
    Adopt,
    /// Not part of this install, or not karpctl's to touch.
    Skip,
    /// It will be removed (teardown).
    Delete,
}

impl Action {
    /// Whether the action writes anything.
    pub fn is_change(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Adopt | Action::Delete)
    }

    /// The action's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::None => "none",
            Action::Adopt => "adopt",
            Action::Skip => "skip",
            Action::Delete => "delete",
        }
    }
}

/// One row of the plan or of what was applied (the contract's `changes` entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The resource (`<kind>/<name>` in JSON).
    #[serde(serialize_with = "as_text")]
    pub resource: ResourceId,
    /// What happens.
    pub action: Action,
    /// Why, or what differs.
    pub detail: String,
    /// For an update (or adopt) of a document: the found document against the wanted one
    /// ([`crate::diff`]); left out of JSON when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

impl Change {
    /// A change without a document diff.
    pub fn new(resource: ResourceId, action: Action, detail: impl Into<String>) -> Self {
        Change { resource, action, detail: detail.into(), diff: None }
    }
}

/// An id as the contract's string.
fn as_text<S: serde::Serializer>(id: &ResourceId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A resource with what was observed and what will be done.
pub struct Planned {
    /// The resource.
    pub resource: Box<dyn AnyResource>,
    /// Its observation.
    pub seen: Observed,
    /// The planned change.
    pub change: Change,
    /// Its place in the walk's order: its dependency level in a plan (0: depends on nothing
    /// in the set), its removal rank in a removal ([`removal_order`]).
    pub level: usize,
}

/// Observe every resource concurrently, keeping the set's order. With `wanted_only`, resources
/// that are not part of this install are marked skipped without being read.
pub async fn observe_all(cx: &Cx, set: Set, wanted_only: bool) -> Result<Vec<(Box<dyn AnyResource>, Observed)>> {
    stream::iter(set)
        .map(|r| async move {
            // Without the cluster API a cluster-side resource is skipped, with the reason, by
            // every walk (teardown too: it cannot remove what it cannot reach).
            let off = || cx.api().err().filter(|_| r.is_cluster_side());
            let seen = match r.not_wanted(cx).filter(|_| wanted_only).or_else(off) {
                Some(reason) => Observed::skipped(reason),
                None => r.observe(cx).await?,
            };
            Ok::<_, Error>((r, seen))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// The change for one observation: pure, so it is unit-tested without AWS.
pub fn plan_one(resource: ResourceId, seen: &Observed, adopt: bool) -> Change {
    let drift = seen.drift.iter().map(|d| d.message.as_str()).collect::<Vec<_>>().join("; ");
    let (action, detail) = if let Some(reason) = &seen.skip {
        (Action::Skip, reason.clone())
    } else {
        match seen.presence {
            Presence::Absent => (Action::Create, String::new()),
            Presence::Owned | Presence::Shared if seen.drift.is_empty() => {
                let d = if seen.presence == Presence::Shared { "exists; not karpctl's, used as it is" } else { "" };
                (Action::None, d.to_string())
            }
            Presence::Owned | Presence::Shared => (Action::Update, drift),
            Presence::Foreign if adopt => {
                let d = if drift.is_empty() {
                    "tag as karpctl's".to_string()
                } else {
                    format!("tag as karpctl's; {drift}")
                };
                (Action::Adopt, d)
            }
            Presence::Foreign => {
                let d = if drift.is_empty() { String::new() } else { format!(" ({drift})") };
                (Action::Skip, format!("foreign: exists without karpctl's ownership tags{d}"))
            }
        }
    };
    let diff = match action {
        Action::Update | Action::Adopt | Action::Skip => crate::diff::join(seen.drift.iter().map(|d| d.diff.clone())),
        _ => None,
    };
    Change { resource, action, detail, diff }
}

/// Dependency levels: a resource's level is one more than the highest level among the
/// resources it depends on that are in the set.
pub fn levels<T: Eq + Hash>(ids: &[T], deps: &[Vec<T>]) -> Vec<usize> {
    let index: HashMap<&T, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut level: Vec<Option<usize>> = vec![None; ids.len()];
    fn visit<T: Eq + Hash>(
        i: usize,
        deps: &[Vec<T>],
        index: &HashMap<&T, usize>,
        level: &mut Vec<Option<usize>>,
        depth: usize,
    ) -> usize {
        if let Some(l) = level[i] {
            return l;
        }
        // The set is built acyclic; the depth bound only guards against a future mistake.
        let l = if depth > deps.len() {
            0
        } else {
            deps[i]
                .iter()
                .filter_map(|d| index.get(d))
                .map(|&j| visit(j, deps, index, level, depth + 1) + 1)
                .max()
                .unwrap_or(0)
        };
        level[i] = Some(l);
        l
    }
    (0..ids.len()).map(|i| visit(i, deps, &index, &mut level, 0)).collect()
}

/// For each observed resource, the first resource of the set it depends on that is missing
/// (absent, and part of this install): what doctor reports instead of a cascade of failures.
pub fn missing_dependency(observed: &[(Box<dyn AnyResource>, Observed)]) -> Vec<Option<ResourceId>> {
    let missing: HashMap<ResourceId, bool> =
        observed.iter().map(|(r, seen)| (r.id(), seen.presence == Presence::Absent && seen.skip.is_none())).collect();
    let deps = dep_ids(observed.iter().map(|(r, _)| r));
    deps.into_iter().map(|ds| ds.into_iter().find(|d| missing.get(d).copied().unwrap_or(false))).collect()
}

/// Observe and plan the whole set.
pub async fn plan(cx: &Cx, set: Set, adopt: bool) -> Result<Vec<Planned>> {
    let ids: Vec<ResourceId> = set.iter().map(|r| r.id()).collect();
    let deps = dep_ids(&set);
    let lv = levels(&ids, &deps);
    let observed = observe_all(cx, set, true).await?;
    Ok(observed
        .into_iter()
        .zip(lv)
        .map(|((resource, seen), level)| {
            let change = plan_one(resource.id(), &seen, adopt);
            Planned { resource, seen, change, level }
        })
        .collect())
}

/// The resources that block `init` without `--adopt`.
pub fn foreign(planned: &[Planned], adopt: bool) -> Vec<ResourceId> {
    if adopt {
        return Vec::new();
    }
    planned
        .iter()
        .filter(|p| p.seen.presence == Presence::Foreign && p.seen.skip.is_none())
        .map(|p| p.change.resource.clone())
        .collect()
}

/// The error for foreign resources in the way.
pub fn foreign_error(ids: &[ResourceId]) -> Error {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    Error::new(
        ErrorKind::Foreign,
        format!("{} exist without karpctl's ownership tags; nothing was changed", ids.join(", ")),
    )
    .with_hint("if these are from an earlier install you want karpctl to manage, run again with --adopt; otherwise remove or rename them")
}

/// Apply every planned change in dependency order: each resource starts as soon as the
/// resources it depends on are done (not when a whole dependency level is), so a chain of
/// calls inside one resource (create a role, then attach its policies) does not hold up
/// resources that only wait for something else. Up to [`CONCURRENCY`] run at once. `on_done`
/// is told about each applied change. After a failure nothing new starts, the changes already
/// under way finish, and of their errors the one earliest in the set is returned: two waits
/// that give up at the same limit report the same error on every run, not whichever lost the
/// race to finish.
pub async fn apply(cx: &Cx, planned: &[Planned], on_done: &(dyn Fn(&Change) + Sync)) -> Result<()> {
    let ids: Vec<ResourceId> = planned.iter().map(|p| p.change.resource.clone()).collect();
    let wanted: Vec<bool> = planned.iter().map(|p| p.change.action.is_change()).collect();
    // What a resource needs only created is waited for inside its task (through
    // `cx.progress`), not here: here it waits for what it needs done.
    let deps: Vec<Vec<ResourceId>> = planned
        .iter()
        .map(|p| {
            let created = p.resource.needs_created();
            p.resource.depends_on().into_iter().map(|d| d.id).filter(|d| !created.contains(d)).collect()
        })
        .collect();
    let mut waits = waits_for(&ids, &deps, &wanted);
    cx.progress.begin();
    let mut started = vec![false; planned.len()];
    let mut running = futures::stream::FuturesUnordered::new();
    let mut failure: Option<(usize, Error)> = None;
    loop {
        if failure.is_none() {
            for i in 0..planned.len() {
                if running.len() >= CONCURRENCY {
                    break;
                }
                if wanted[i] && !started[i] && waits[i].is_empty() {
                    started[i] = true;
                    let p = &planned[i];
                    let created = created_first(&ids, &p.resource.needs_created(), planned);
                    running.push(async move {
                        if !cx.progress.wait_created(&created).await {
                            // The apply stopped on another failure before these were made.
                            return (i, None);
                        }
                        (i, Some(apply_one(cx, p).await))
                    });
                }
            }
        }
        let Some((i, result)) = running.next().await else { break };
        match result {
            Some(Ok(())) => {
                cx.progress.created(&ids[i]);
                on_done(&planned[i].change);
                for w in &mut waits {
                    w.retain(|&j| j != i);
                }
            }
            Some(Err(e)) => {
                if failure.as_ref().is_none_or(|(first, _)| i < *first) {
                    failure = Some((i, e));
                }
                cx.progress.stop();
            }
            None => {}
        }
    }
    if let Some((_, e)) = failure {
        return Err(e);
    }
    if let Some(i) = (0..planned.len()).find(|&i| wanted[i] && !started[i]) {
        // Only a dependency cycle leaves a change unstarted; the set is built without one.
        return Err(waits_on_itself(&ids[i]));
    }
    Ok(())
}

/// The error for a resource on a dependency cycle: the set is built without one, so a walk
/// that meets one (apply, or a removal) stops instead of waiting forever.
fn waits_on_itself(id: &ResourceId) -> Error {
    Error::defect(format!("{id} waits on itself through its dependencies"))
}

/// Of `needed` (ids a resource needs created), those this apply creates: the ones it does
/// not touch, or only updates, exist already.
fn created_first(ids: &[ResourceId], needed: &[ResourceId], planned: &[Planned]) -> Vec<ResourceId> {
    needed
        .iter()
        .filter(|d| ids.iter().position(|id| id == *d).is_some_and(|j| planned[j].change.action == Action::Create))
        .cloned()
        .collect()
}

/// How many times a resource is observed again and re-applied after its create found it made.
const RACES: usize = 3;

/// Apply one resource. A create that finds its resource already made (AlreadyExists, or the
/// instance-profile quota of a role added twice) lost a race: against its own earlier attempt
/// whose reply was lost (the SDK's retry then meets the write that did happen), or against a
/// concurrent karpctl. Either way the resource is observed again: karpctl's and as desired is
/// done; karpctl's with drift (a role whose policies the other run has not attached yet) is
/// applied again from the fresh observation; foreign is refused as at plan time.
async fn apply_one(cx: &Cx, p: &Planned) -> Result<()> {
    if p.seen.presence == Presence::Foreign {
        // Adopting (a foreign one is planned only with --adopt): karpctl's tags first, so a
        // failure midway leaves one the next run sees as karpctl's and repairs.
        p.resource.tag(cx, &p.seen).await?;
    }
    let mut fresh: Option<Observed> = None;
    let mut races = 0;
    loop {
        let err = match p.resource.apply(cx, fresh.as_ref().unwrap_or(&p.seen)).await {
            Ok(()) => return Ok(()),
            Err(e) if crate::retry::lost_race(&e) && races < RACES => e,
            Err(e) => return Err(e),
        };
        races += 1;
        let seen = p.resource.observe(cx).await?;
        tracing::debug!("{}: {err}; observed again: {seen:?}", p.change.resource);
        match seen.presence {
            Presence::Owned | Presence::Shared if seen.drift.is_empty() => return Ok(()),
            Presence::Owned | Presence::Shared => fresh = Some(seen),
            Presence::Foreign => return Err(foreign_error(std::slice::from_ref(&p.change.resource))),
            // Not visible yet (IAM reads lag its writes): try again, within `RACES`.
            Presence::Absent => fresh = None,
        }
    }
}

/// For each resource, the changing resources of the set it must wait for (indices). A
/// dependency that is not in the set or has nothing to do is no reason to wait.
fn waits_for<T: Eq + Hash>(ids: &[T], deps: &[Vec<T>], changing: &[bool]) -> Vec<Vec<usize>> {
    let index: HashMap<&T, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    deps.iter().map(|ds| ds.iter().filter_map(|d| index.get(d).copied()).filter(|&j| changing[j]).collect()).collect()
}

/// The ids each resource depends on. The set was checked when it was built ([`crate::resources::checked`]):
/// a dependency missing from it here is an optional one, and orders nothing.
fn dep_ids<'a>(set: impl IntoIterator<Item = &'a Box<dyn AnyResource>>) -> Vec<Vec<ResourceId>> {
    set.into_iter().map(|r| r.depends_on().into_iter().map(|d| d.id).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Drift;

    #[test]
    fn plans_follow_presence_drift_and_adopt() {
        let id = || crate::resources::role::id("x");
        assert_eq!(plan_one(id(), &Observed::absent(), false).action, Action::Create);
        let owned = Observed::present(true, vec![], ()).erase();
        assert_eq!(plan_one(id(), &owned, false).action, Action::None);
        let drifted = Observed::present(true, vec![Drift::new("trust policy differs")], ()).erase();
        let c = plan_one(id(), &drifted, false);
        assert_eq!((c.action, c.detail.as_str()), (Action::Update, "trust policy differs"));
        let foreign = Observed::present(false, vec![], ()).erase();
        assert_eq!(plan_one(id(), &foreign, false).action, Action::Skip);
        assert_eq!(plan_one(id(), &foreign, true).action, Action::Adopt);
        let skipped = Observed::skipped("--no-interruption");
        let c = plan_one(id(), &skipped, true);
        assert_eq!((c.action, c.detail.as_str()), (Action::Skip, "--no-interruption"));
        let mut shared = Observed::present(false, vec![], ()).erase();
        shared.presence = Presence::Shared;
        assert_eq!(plan_one(id(), &shared, false).action, Action::None);
    }

    #[test]
    fn only_changing_dependencies_in_the_set_are_waited_for() {
        let ids: Vec<String> = ["policy", "role", "assoc"].iter().map(|s| s.to_string()).collect();
        let deps = vec![vec![], vec!["policy".into(), "absent-oidc".into()], vec!["role".into()]];
        assert_eq!(waits_for(&ids, &deps, &[true, true, true]), vec![vec![], vec![0], vec![1]]);
        assert_eq!(waits_for(&ids, &deps, &[false, true, true]), vec![vec![], vec![], vec![1]]);
    }

    #[test]
    fn a_missing_dependency_is_named_once_not_cascaded() {
        use crate::resources::{instance_profile::InstanceProfile, role::Role};
        let d =
            crate::desired::Desired::new(crate::desired::tests::target(crate::desired::AuthMode::PodIdentity)).unwrap();
        let set = |role: Observed| -> Vec<(Box<dyn AnyResource>, Observed)> {
            vec![
                (Box::new(Role::node(&d)), role),
                (Box::new(InstanceProfile::new(&d)), Observed::<()>::absent().erase()),
            ]
        };
        let role = crate::resources::role::id(&d.names.node_role.name);
        assert_eq!(missing_dependency(&set(Observed::<()>::absent().erase())), vec![None, Some(role)]);
        assert_eq!(missing_dependency(&set(Observed::<()>::skipped("not here").erase())), vec![None, None]);
    }

    #[test]
    fn levels_follow_dependencies() {
        let ids: Vec<String> = ["policy", "role", "assoc", "queue", "rule"].iter().map(|s| s.to_string()).collect();
        let deps = vec![
            vec![],
            vec!["policy".into(), "absent-oidc".into()],
            vec!["role".into()],
            vec![],
            vec!["queue".into()],
        ];
        assert_eq!(levels(&ids, &deps), vec![0, 1, 2, 0, 1]);
    }
}
