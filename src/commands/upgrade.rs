//! `karpctl upgrade`: `init`'s walk towards another version, with the upgrade rules on top:
//! the installed version is read from the helm releases, forbidden paths are refused before
//! anything is written, the new version's permissions and rules are applied before its CRD
//! chart and controller (the set's dependencies order them), and what the new version no
//! longer needs is removed only once its controller runs.

use crate::cli::{GlobalArgs, UpgradeArgs};
use crate::context::Hooks;
use crate::desired::Desired;
use crate::error::{Error, ErrorKind, Result};
use crate::output::Report;
use crate::plan::{self, Action, Change, Planned};
use crate::resources::helm_release::{self, HelmRelease, CONTROLLER, CRDS};
use crate::resources::{self, Cx, Observed, Resource, Set};
use crate::versions::{self, UpgradePath};

/// Which command walks the set: `upgrade` needs an existing install, `init` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// `karpctl init`.
    Init,
    /// `karpctl upgrade`.
    Upgrade,
}

impl Walk {
    /// The command's name, for reports.
    pub fn command(self) -> &'static str {
        match self {
            Walk::Init => "init",
            Walk::Upgrade => "upgrade",
        }
    }
}

/// Run `upgrade`.
pub async fn run(g: &GlobalArgs, a: &UpgradeArgs, hooks: &Hooks) -> Result<Report> {
    let mut init = a.init.clone();
    if a.to.is_some() {
        init.install.karpenter_version = a.to.clone();
    }
    super::init::walk(&crate::settings::InitSettings::resolve(g, &init)?, hooks, Walk::Upgrade).await
}

/// The chart versions the two releases run (None: not installed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// The `karpenter` release's chart version.
    pub controller: Option<String>,
    /// The `karpenter-crd` release's chart version.
    pub crds: Option<String>,
}

impl Installed {
    /// Read from a plan's observations (no extra helm calls).
    pub fn from_planned(planned: &[Planned], namespace: &str) -> Self {
        let version = |name: &str| {
            let id = helm_release::id(namespace, name);
            planned
                .iter()
                .find(|p| p.change.resource == id)
                .and_then(|p| HelmRelease::installed_version(&p.seen))
                .map(str::to_string)
        };
        Installed { controller: version(CONTROLLER), crds: version(CRDS) }
    }

    /// Observe the two releases (doctor, which needs the version before its desired state).
    pub async fn observe(cx: &Cx) -> Result<Self> {
        if cx.api().is_err() {
            return Ok(Installed::default());
        }
        let (controller, crds) = (HelmRelease::controller(&cx.desired), HelmRelease::crds(&cx.desired));
        let (a, b) = tokio::join!(controller.observe(cx), crds.observe(cx));
        let version = |seen: Observed| HelmRelease::installed_version(&seen).map(str::to_string);
        Ok(Installed { controller: version(a?.erase()), crds: version(b?.erase()) })
    }

    /// The version an upgrade starts from: the older of the two (a half-done upgrade moved
    /// the CRD chart first), so the path rules see the oldest piece still running.
    pub fn from_version(&self) -> Option<&str> {
        match (self.controller.as_deref(), self.crds.as_deref()) {
            (Some(a), Some(b)) => Some(if versions::parse(b) < versions::parse(a) { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// Check the move from what is installed to the desired version, before any write. `None`
/// when nothing is installed (init) or the version stays the same.
pub fn check_path(installed: &Installed, d: &Desired, walk: Walk) -> Result<Option<UpgradePath>> {
    let to = &d.target.karpenter_version;
    match installed.from_version() {
        None if walk == Walk::Upgrade => Err(Error::new(
            ErrorKind::NotFound,
            format!("no Karpenter release in namespace {}: nothing to upgrade", d.target.namespace),
        )
        .with_hint("install it with karpctl init (pass --namespace if it lives elsewhere)")),
        None => Ok(None),
        Some(from) if from == to && installed.controller == installed.crds => Ok(None),
        Some(from) => versions::upgrade_path(from, to).map(Some),
    }
}

/// After the new controller runs: remove the policies and rules karpctl made that this
/// version no longer uses (never a foreign one).
pub async fn retire(cx: &Cx) -> Result<Vec<Change>> {
    let set: Set = resources::desired_set(&cx.desired, &cx.cluster, None)?
        .into_iter()
        .filter(|r| r.not_wanted(cx).is_some_and(|why| why.starts_with(versions::NOT_USED)))
        .collect();
    // The planner's removal over what this version does not use: only karpctl's goes, each
    // after what holds it.
    let planned = plan::plan_removal(plan::observe_all(cx, set, false).await?, &[]);
    let retired: Vec<&Planned> = planned.iter().filter(|p| p.change.action == Action::Delete).collect();
    plan::delete_graph(cx, &retired, &|_| {}).await?;
    let detail = format!("{} {}", versions::NOT_USED, cx.desired.target.karpenter_version);
    Ok(retired.iter().map(|p| Change::new(p.change.resource.clone(), Action::Delete, detail.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::tests::target;
    use crate::desired::AuthMode;

    fn installed(controller: &str, crds: &str) -> Installed {
        Installed { controller: Some(controller.into()), crds: Some(crds.into()) }
    }

    #[test]
    fn paths_start_from_the_oldest_release_and_upgrade_needs_an_install() {
        let d = Desired::new(target(AuthMode::PodIdentity)).unwrap();
        assert!(check_path(&installed("1.14.1", "1.14.1"), &d, Walk::Upgrade).unwrap().is_none());
        let p = check_path(&installed("1.9.2", "1.12.2"), &d, Walk::Init).unwrap().unwrap();
        assert_eq!(p.from, "1.9.2");
        assert!(check_path(&Installed::default(), &d, Walk::Init).unwrap().is_none());
        assert_eq!(check_path(&Installed::default(), &d, Walk::Upgrade).unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(check_path(&installed("0.37.7", "0.37.7"), &d, Walk::Init).unwrap_err().kind, ErrorKind::Refused);
    }
}
