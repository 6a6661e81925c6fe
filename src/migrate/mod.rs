//! `karpctl migrate`: from Cluster Autoscaler and node groups to Karpenter as a planned,
//! resumable, reversible walk. Discover what runs (`discover`), infer the NodePools
//! (`infer`), plan the steps (`plan`), apply them one by one with what they change recorded
//! where a re-run and `--rollback` read it back (`record`, `steps`, `drain`), and undo it
//! (`rollback`). The Karpenter install itself is init's walk (src/commands/migrate.rs).

pub mod ami;
pub mod asg;
pub mod checks;
pub mod discover;
pub mod drain;
pub mod infer;
pub mod plan;
pub mod record;
pub mod rollback;
pub mod steps;
pub mod template;

/// The label on nodes of a managed node group (set by EKS).
pub const NODEGROUP_LABEL: &str = "eks.amazonaws.com/nodegroup";

/// The label karpctl puts on the NodePools and EC2NodeClasses it inferred, so rollback finds them.
pub const MIGRATED_LABEL: &str = "karpctl.io/migrated";

/// The annotation naming the node groups a NodePool was inferred from.
pub const MIGRATED_FROM: &str = "karpctl.io/migrated-from";

/// One node group's scaling: what is recorded, and what is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Scaling {
    /// minSize.
    pub min: i32,
    /// maxSize.
    pub max: i32,
    /// desiredSize.
    pub desired: i32,
}

impl std::fmt::Display for Scaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "min={},max={},desired={}", self.min, self.max, self.desired)
    }
}

impl Scaling {
    /// Parse what `Display` wrote (a node group tag's value); None for anything else.
    pub fn parse(s: &str) -> Option<Scaling> {
        let mut min = None;
        let mut max = None;
        let mut desired = None;
        for part in s.split(',') {
            let (k, v) = part.split_once('=')?;
            let v: i32 = v.trim().parse().ok()?;
            match k.trim() {
                "min" => min = Some(v),
                "max" => max = Some(v),
                "desired" => desired = Some(v),
                _ => return None,
            }
        }
        Some(Scaling { min: min?, max: max?, desired: desired? })
    }

    /// The scaling that leaves `floor` nodes (never more than there were): the maximum stays,
    /// so the group remains valid for EKS (maxSize ≥ 1) and can be scaled back by hand.
    pub fn at_floor(self, floor: i32) -> Scaling {
        let floor = floor.min(self.desired).max(0);
        Scaling { min: floor.min(self.min), max: self.max, desired: floor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_round_trips_and_refuses_other_text() {
        let s = Scaling { min: 1, max: 5, desired: 3 };
        assert_eq!(Scaling::parse(&s.to_string()), Some(s));
        assert_eq!(Scaling::parse("min=1,max=5"), None);
        assert_eq!(Scaling::parse("min=1,max=5,desired=x"), None);
        assert_eq!(Scaling::parse("min=1,max=5,desired=3,extra=1"), None);
    }

    #[test]
    fn floor_never_raises_a_group_and_keeps_its_maximum() {
        let s = Scaling { min: 3, max: 6, desired: 4 };
        assert_eq!(s.at_floor(2), Scaling { min: 2, max: 6, desired: 2 });
        assert_eq!(s.at_floor(0), Scaling { min: 0, max: 6, desired: 0 });
        assert_eq!(Scaling { min: 0, max: 3, desired: 1 }.at_floor(2), Scaling { min: 0, max: 3, desired: 1 });
    }
}
