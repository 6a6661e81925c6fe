//! Removal: teardown's (and upgrade's retiring) walk. The order is the reverse of the
//! dependency graph, a resource going once what holds it has let go ([`Resource::holds`]),
//! plus the edges resources declare ([`Resource::removed_after`]): the cluster side before the
//! AWS it runs on, NodePools before EC2NodeClasses before Karpenter's instances and the
//! releases. What karpctl does not own, or the `--keep-*` flags keep, is left in place.
//!
//! [`Resource::holds`]: crate::resources::Resource::holds
//! [`Resource::removed_after`]: crate::resources::Resource::removed_after

use tokio::sync::watch;

use super::{levels, waits_on_itself, Action, Change, Planned};
use crate::error::{Error, Result};
use crate::resources::{AnyResource, Cx, Hold, Keep, Observed, Presence, ResourceId};

/// The teardown change for one observation: only what karpctl owns is deleted. `keep`: the
/// `--keep-*` flag given that covers it; a kept CRD release is left whatever its state (it is
/// what keeps every NodePool and EC2NodeClass's kind), kept IAM only where it is there.
pub fn plan_delete(resource: ResourceId, seen: &Observed, keep: Option<Keep>) -> Change {
    if let Some(reason) = &seen.skip {
        return Change::new(resource, Action::Skip, reason.clone());
    }
    if keep == Some(Keep::Crds) {
        return Change::new(resource, Action::Skip, Keep::Crds.flag());
    }
    let (action, detail) = match (seen.presence, keep) {
        (Presence::Absent, _) => (Action::None, "already gone"),
        (_, Some(keep)) => (Action::Skip, keep.flag()),
        (Presence::Owned, None) => (Action::Delete, ""),
        (Presence::Shared, None) => (Action::Skip, "not karpctl's; left in place"),
        (Presence::Foreign, None) => (Action::Skip, "foreign: no karpctl ownership tags; left in place"),
    };
    Change::new(resource, action, detail)
}

/// Plan the removal of what was observed, in the order it goes ([`removal_order`]): each
/// resource's change by [`plan_delete`], with what the `kept` flags leave in place.
pub fn plan_removal(observed: Vec<(Box<dyn AnyResource>, Observed)>, kept: &[Keep]) -> Vec<Planned> {
    let rank = removal_order(observed.iter().map(|(r, _)| r));
    let mut planned: Vec<Planned> = observed
        .into_iter()
        .zip(rank)
        .map(|((resource, seen), level)| {
            let keep = resource.kept_by().filter(|k| kept.contains(k));
            let change = plan_delete(resource.id(), &seen, keep);
            Planned { resource, seen, change, level }
        })
        .collect();
    planned.sort_by_key(|p| p.level);
    planned
}

/// What must be gone before each resource of a removal goes (indices into the set).
struct Edges {
    /// The resources depending on it that hold it, with how long ([`Resource::holds`]).
    holding: Vec<Vec<(usize, Hold)>>,
    /// Those it is declared to go after ([`Resource::removed_after`]), waited for before it
    /// starts letting go of anything itself.
    after: Vec<Vec<usize>>,
}

/// The removal graph of `set`, counting only the resources `deleting` marks: one that stays
/// holds nothing and is waited for by nothing.
fn removal_edges(set: &[&dyn AnyResource], deleting: &[bool]) -> Edges {
    let ids: Vec<ResourceId> = set.iter().map(|r| r.id()).collect();
    let deps: Vec<Vec<ResourceId>> = set.iter().map(|r| r.depends_on().into_iter().map(|d| d.id).collect()).collect();
    let holds: Vec<Hold> = set.iter().zip(deleting).map(|(r, &d)| if d { r.holds() } else { Hold::No }).collect();
    let after = (0..set.len())
        .map(|i| (0..set.len()).filter(|&j| i != j && deleting[j] && set[i].removed_after(set[j])).collect())
        .collect();
    Edges { holding: dependents(&ids, &deps, &holds), after }
}

impl Edges {
    /// For each resource, every resource it waits for, whichever the reason.
    fn waits(&self) -> Vec<Vec<usize>> {
        self.holding
            .iter()
            .zip(&self.after)
            .map(|(h, a)| h.iter().map(|&(j, _)| j).chain(a.iter().copied()).collect())
            .collect()
    }
}

/// The removal rank of each resource: one more than the highest rank among what must be gone
/// before it ([`removal_edges`], all of the set removed), so sorting by it lists a set in an
/// order it can be removed in.
pub fn removal_order<'a>(set: impl IntoIterator<Item = &'a Box<dyn AnyResource>>) -> Vec<usize> {
    let set: Vec<&dyn AnyResource> = set.into_iter().map(|r| r.as_ref()).collect();
    let idx: Vec<usize> = (0..set.len()).collect();
    levels(&idx, &removal_edges(&set, &vec![true; set.len()]).waits())
}

/// Delete every planned deletion by the removal graph ([`removal_edges`]). Each resource first
/// waits for what it is declared to go after (the cluster side before the AWS it runs on,
/// NodePools before EC2NodeClasses before the controller release), then runs its
/// [`Resource::prepare_delete`], then its `delete` as soon as every resource depending on it
/// has let go of it ([`Resource::holds`]: deleted, or only prepared, or not held at all), not
/// when a whole level is. So a role's policies are detached while its instance profile takes
/// the role out, the role is deleted the moment both are done, and a policy the moment its
/// roles have detached it. All run concurrently: every one of them may be waiting on another,
/// so a bound on how many run could leave the waited-for ones unstarted. After a failure, what
/// the failed resource still holds or goes before is not deleted (a role stays while a profile
/// holding it could not be emptied); the rest finishes, and the first error is returned.
pub async fn delete_graph(cx: &Cx, planned: &[&Planned], on_done: &(dyn Fn(&Change) + Sync)) -> Result<()> {
    let set: Vec<&dyn AnyResource> = planned.iter().map(|p| p.resource.as_ref()).collect();
    let deleting: Vec<bool> = planned.iter().map(|p| p.change.action == Action::Delete).collect();
    let edges = removal_edges(&set, &deleting);
    if let Some(i) = in_cycle(&edges.waits()) {
        return Err(waits_on_itself(&planned[i].change.resource));
    }
    let (done_tx, done_rx): (Vec<_>, Vec<_>) = (0..planned.len()).map(|_| watch::channel(Gone::default())).unzip();
    let tasks = (0..planned.len()).filter(|&i| deleting[i]).map(|i| {
        let (p, holding, tx, rx) = (planned[i], &edges.holding[i], &done_tx[i], &done_rx);
        let first: Vec<(usize, Hold)> = edges.after[i].iter().map(|&j| (j, Hold::UntilDeleted)).collect();
        async move {
            let result = async {
                if !let_go(rx, &first).await {
                    return Ok(false);
                }
                p.resource.prepare_delete(cx, &p.seen).await?;
                tx.send_modify(|g| g.prepared = true);
                if !let_go(rx, holding).await {
                    return Ok(false);
                }
                p.resource.delete(cx, &p.seen).await?;
                on_done(&p.change);
                Ok::<_, Error>(true)
            }
            .await;
            tx.send_modify(|g| g.deleted = Some(*result.as_ref().unwrap_or(&false)));
            result
        }
    });
    let results = futures::future::join_all(tasks).await;
    results.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}

/// Wait until each of `waits` has let go (deleted, or prepared where that is enough); false
/// as soon as one of them finished without (it failed, or what it waited for could not go).
async fn let_go(rx: &[watch::Receiver<Gone>], waits: &[(usize, Hold)]) -> bool {
    for &(j, hold) in waits {
        let mut rx = rx[j].clone();
        let released = |g: &Gone| g.deleted == Some(true) || (hold == Hold::UntilPrepared && g.prepared);
        let seen = rx.wait_for(|g| released(g) || g.deleted.is_some()).await.map(|g| released(&g));
        if !seen.unwrap_or(false) {
            return false;
        }
    }
    true
}

/// How far a resource got in [`delete_graph`]: kept apart, so that one waiting for the
/// prepare of another sees it even when the delete that followed failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Gone {
    /// Its [`Resource::prepare_delete`] is done.
    prepared: bool,
    /// Finished: deleted (true), or not (false: it failed, or what holds it could not go).
    deleted: Option<bool>,
}

/// For each resource, the deleting resources of the set that depend on it and hold it
/// (indices, with how long): they must let go of it before it is deleted.
fn dependents<T: Eq>(ids: &[T], deps: &[Vec<T>], holds: &[Hold]) -> Vec<Vec<(usize, Hold)>> {
    ids.iter()
        .map(|id| {
            (0..ids.len())
                .filter(|&j| holds[j] != Hold::No && deps[j].iter().any(|d| d == id))
                .map(|j| (j, holds[j]))
                .collect()
        })
        .collect()
}

/// A resource on a cycle of `waits` (the set is built without one; a cycle would wait forever).
fn in_cycle(waits: &[Vec<usize>]) -> Option<usize> {
    let mut left: Vec<usize> = waits.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..waits.len()).filter(|&i| left[i] == 0).collect();
    let mut done = vec![false; waits.len()];
    while let Some(j) = ready.pop() {
        done[j] = true;
        for (i, w) in waits.iter().enumerate() {
            if !done[i] && w.contains(&j) {
                left[i] -= w.iter().filter(|&&k| k == j).count();
                if left[i] == 0 {
                    ready.push(i);
                }
            }
        }
    }
    done.iter().position(|d| !d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Kind;

    #[test]
    fn teardown_deletes_only_what_karpctl_owns() {
        let id = || crate::resources::role::id("x");
        let owned = || Observed::present(true, vec![], ()).erase();
        assert_eq!(plan_delete(id(), &owned(), None).action, Action::Delete);
        let kept = plan_delete(id(), &owned(), Some(Keep::Iam));
        assert_eq!((kept.action, kept.detail.as_str()), (Action::Skip, "--keep-iam"));
        assert_eq!(plan_delete(id(), &Observed::absent(), Some(Keep::Iam)).action, Action::None);
        // The CRD release is kept whatever its state.
        assert_eq!(plan_delete(id(), &Observed::absent(), Some(Keep::Crds)).detail, "--keep-crds");
        assert_eq!(plan_delete(id(), &Observed::present(false, vec![], ()).erase(), None).action, Action::Skip);
        assert_eq!(plan_delete(id(), &Observed::absent(), None).action, Action::None);
        let mut shared = Observed::present(false, vec![], ()).erase();
        shared.presence = Presence::Shared;
        assert_eq!(plan_delete(id(), &shared, None).action, Action::Skip);
    }

    #[test]
    fn a_resource_waits_for_the_deleting_resources_that_hold_it() {
        let ids: Vec<String> = ["role", "profile", "policy", "other", "rule"].iter().map(|s| s.to_string()).collect();
        let deps = vec![vec!["policy".into()], vec!["role".into()], vec![], vec!["role".into()], vec!["role".into()]];
        let (d, p, no) = (Hold::UntilDeleted, Hold::UntilPrepared, Hold::No);
        // `other` is not being deleted (No), nor does `rule` hold what it depends on: nothing
        // waits for them; the role waits for its profile to be prepared, the policy for the role.
        assert_eq!(
            dependents(&ids, &deps, &[p, p, d, no, no]),
            vec![vec![(1, p)], vec![], vec![(0, p)], vec![], vec![]]
        );
        let plain =
            |w: Vec<Vec<(usize, Hold)>>| w.into_iter().map(|w| w.into_iter().map(|(j, _)| j).collect()).collect();
        let plain: Vec<Vec<usize>> = plain(dependents(&ids, &deps, &[d; 5]));
        assert_eq!(in_cycle(&plain), None);
        assert_eq!(in_cycle(&[vec![1], vec![0], vec![]]), Some(0));
    }

    #[test]
    fn every_set_can_be_removed_in_order_nodepools_classes_instances_releases_then_aws() {
        for (what, set) in crate::resources::tests::every_set() {
            let refs: Vec<&dyn AnyResource> = set.iter().map(|r| r.as_ref()).collect();
            let waits = removal_edges(&refs, &vec![true; refs.len()]).waits();
            let rank = removal_order(&set);
            // A cycle could not be ranked so: every edge goes from a lower rank to a higher one.
            for (i, before) in waits.iter().enumerate() {
                for &j in before {
                    assert!(rank[j] < rank[i], "{what}: {} goes before {}, ranks {rank:?}", set[j].id(), set[i].id());
                }
            }
            let of = |pred: &dyn Fn(&ResourceId) -> bool| -> Vec<usize> {
                set.iter().zip(&rank).filter(|(r, _)| pred(&r.id())).map(|(_, &k)| k).collect()
            };
            let kind = |k: Kind| move |id: &ResourceId| id.kind == k;
            let release =
                |name: &'static str| move |id: &ResourceId| id.kind == Kind::HelmRelease && id.name.ends_with(name);
            let aws = of(&|id| {
                !matches!(
                    id.kind,
                    Kind::NodePool | Kind::Ec2NodeClass | Kind::HelmRelease | Kind::AwsAuth | Kind::Ec2Instance
                )
            });
            let order = [
                of(&kind(Kind::NodePool)),
                of(&kind(Kind::Ec2NodeClass)),
                of(&kind(Kind::Ec2Instance)),
                of(&release("/karpenter")),
                of(&release("/karpenter-crd")),
                of(&kind(Kind::AwsAuth)),
                aws,
            ];
            let present: Vec<&Vec<usize>> = order.iter().filter(|o| !o.is_empty()).collect();
            for w in present.windows(2) {
                let (a, b) = (w[0].iter().max(), w[1].iter().min());
                assert!(a < b, "{what}: ranks {:?} not before {:?}", w[0], w[1]);
            }
        }
    }
}
