//! Doctor's judgements: pure functions from what was observed to pass / fail / warn / skip, each
//! with a one-line message and a hint that says the fix.

use serde::Serialize;

use crate::resources::{Observed, Presence};

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Pass,
    /// Broken: Karpenter will not work (fully) until it is fixed.
    Fail,
    /// Works, but deserves attention.
    Warn,
    /// Not checked, with the reason (not part of this install, or a prerequisite failed).
    Skip,
}

/// One check (the contract's `checks` entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable id: the resource id, or a dotted name for checks that are not about one resource.
    pub id: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub message: String,
    /// How to fix it (failures and warnings).
    pub hint: Option<String>,
    /// For a document that differs: the found one against the wanted one ([`crate::diff`]);
    /// left out of JSON when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

impl Check {
    /// A check with no hint.
    pub fn new(id: impl Into<String>, status: Status, message: impl Into<String>) -> Self {
        Check { id: id.into(), status, message: message.into(), hint: None, diff: None }
    }

    /// Attach the fix.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Judge one observed resource. `repair` is the command that fixes it (`karpctl init ...`).
pub fn judge<F: ?Sized>(id: &str, seen: &Observed<F>, repair: &str) -> Check {
    if let Some(reason) = &seen.skip {
        return Check::new(id, Status::Skip, reason.clone());
    }
    let drift: Vec<&str> = seen.drift.iter().map(|d| d.message.as_str()).collect();
    let drift_hint = seen.drift.iter().find_map(|d| d.hint.clone());
    let diff = crate::diff::join(seen.drift.iter().map(|d| d.diff.clone()));
    let check = match (seen.presence, drift.is_empty()) {
        (Presence::Absent, _) => {
            Check::new(id, Status::Fail, "missing").with_hint(format!("run `{repair}` to create it"))
        }
        (Presence::Owned, true) => Check::new(id, Status::Pass, "as desired"),
        (Presence::Shared, true) => Check::new(id, Status::Pass, "exists (not karpctl's; used as it is)"),
        (Presence::Foreign, true) => {
            Check::new(id, Status::Warn, "as desired, but not created by karpctl (no ownership tags)")
                .with_hint(format!("run `{repair} --adopt` to let karpctl manage it"))
        }
        (Presence::Foreign, false) => Check::new(id, Status::Fail, drift.join("; ")).with_hint(
            drift_hint.unwrap_or_else(|| format!("fix it by hand, or run `{repair} --adopt` to let karpctl repair it")),
        ),
        (_, false) => Check::new(id, Status::Fail, drift.join("; "))
            .with_hint(drift_hint.unwrap_or_else(|| format!("run `{repair}` to repair it"))),
    };
    Check { diff, ..check }
}

/// Minimum Karpenter version for each Kubernetes minor version, from the Karpenter
/// compatibility matrix (karpenter.sh/docs/upgrading/compatibility; also endoflife.date/karpenter).
/// Extend it when a new Kubernetes version is released.
pub const COMPATIBILITY: &[(u32, (u32, u32, u32))] = &[
    (29, (0, 34, 0)),
    (30, (0, 37, 0)),
    (31, (1, 0, 5)),
    (32, (1, 2, 0)),
    (33, (1, 5, 0)),
    (34, (1, 6, 0)),
    (35, (1, 9, 0)),
    (36, (1, 13, 0)),
];

fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.trim_start_matches('v').split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// Whether Karpenter `karpenter` supports Kubernetes `kubernetes` (`1.33`).
pub fn compatibility(kubernetes: &str, karpenter: &str) -> Check {
    let id = "cluster.kubernetes-version";
    let (Some((1, minor, _)), Some(kv)) = (parse_version(kubernetes), parse_version(karpenter)) else {
        return Check::new(
            id,
            Status::Warn,
            format!("cannot compare Kubernetes {kubernetes} with Karpenter {karpenter}"),
        );
    };
    match COMPATIBILITY.iter().find(|(m, _)| *m == minor) {
        Some((_, min)) if kv >= *min => {
            Check::new(id, Status::Pass, format!("Kubernetes {kubernetes} is supported by Karpenter {karpenter}"))
        }
        Some((_, (a, b, c))) => Check::new(
            id,
            Status::Fail,
            format!("Kubernetes {kubernetes} needs Karpenter {a}.{b}.{c} or later; the install uses {karpenter}"),
        )
        .with_hint(format!("upgrade Karpenter: karpctl init --karpenter-version {a}.{b}.{c} (or later)")),
        None if COMPATIBILITY.first().is_some_and(|(m, _)| minor < *m) => {
            Check::new(id, Status::Fail, format!("Kubernetes {kubernetes} is older than any Karpenter 1.x supports"))
                .with_hint("upgrade the cluster to a supported Kubernetes version")
        }
        None => {
            Check::new(id, Status::Warn, format!("Kubernetes {kubernetes} is newer than karpctl's compatibility table"))
                .with_hint("check karpenter.sh/docs/upgrading/compatibility for the Karpenter version it needs")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Drift;

    #[test]
    fn judgements() {
        let r = "karpctl init -c demo";
        assert_eq!(judge("x", &Observed::<()>::absent(), r).status, Status::Fail);
        assert_eq!(judge("x", &Observed::<()>::absent(), r).hint.unwrap(), "run `karpctl init -c demo` to create it");
        assert_eq!(judge("x", &Observed::present(true, vec![], ()), r).status, Status::Pass);
        assert_eq!(judge("x", &Observed::present(false, vec![], ()), r).status, Status::Warn);
        let d = Observed::present(true, vec![Drift::new("trust policy differs").with_hint("fix the trust")], ());
        let c = judge("x", &d, r);
        assert_eq!(
            (c.status, c.message.as_str(), c.hint.as_deref()),
            (Status::Fail, "trust policy differs", Some("fix the trust"))
        );
        assert_eq!(judge("x", &Observed::<()>::skipped("--no-interruption"), r).status, Status::Skip);
    }

    #[test]
    fn compatibility_table() {
        assert_eq!(compatibility("1.33", "1.14.1").status, Status::Pass);
        assert_eq!(compatibility("1.33", "1.4.0").status, Status::Fail);
        assert_eq!(compatibility("1.31", "1.0.5").status, Status::Pass);
        assert_eq!(compatibility("1.31", "1.0.4").status, Status::Fail);
        assert_eq!(compatibility("1.40", "1.14.1").status, Status::Warn);
        assert_eq!(compatibility("1.36", "1.12.2").status, Status::Fail);
        assert_eq!(compatibility("1.20", "1.14.1").status, Status::Fail);
    }
}
