//! The migration's plan: which node group keeps the controller, each group's floor and the
//! nodes it keeps and drains, the inferred pools, the workloads a drain interrupts, and the
//! ordered steps, each marked done when what it changes is already so (a re-run skips it).
//! Pure: computed from what `discover` read.

use serde_json::Value;

use super::discover::{str_at, Autoscaler, GroupKind, NodeGroup, Workloads};
use super::infer::{self, Pool};
use super::record::CORDONED_ANNOTATION;
use super::Scaling;
use crate::error::{Error, Result};

/// What the user chose.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes the controller's group keeps.
    pub keep: u32,
    /// The group that hosts the controller (None: chosen).
    pub controller_group: Option<String>,
    /// Widen instance types to families.
    pub widen: bool,
}

/// One node group's part of the plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupPlan {
    /// The group.
    pub name: String,
    /// How steps name it (`nodegroup/NAME`, `asg/NAME`).
    pub id: String,
    /// Its scaling before the migration (recorded, or now).
    pub original: Scaling,
    /// Its scaling after.
    pub target: Scaling,
    /// Nodes that stay.
    pub keep_nodes: Vec<String>,
    /// Nodes cordoned and drained.
    pub drain_nodes: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The group the controller is pinned to.
    pub controller_group: String,
    /// The inferred NodePools.
    pub pools: Vec<Pool>,
    /// Each group, the controller's last (its nodes take the others' pods until Karpenter's come).
    pub groups: Vec<GroupPlan>,
    /// The Cluster Autoscaler Deployments, scaled to 0.
    pub autoscalers: Vec<Autoscaler>,
    /// Pods the drain interrupts with nothing to keep them available: `ns/name on node (why)`.
    pub interrupted: Vec<String>,
}

/// One step, as the plan and the report show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// What it does: apply, record, scale, drain.
    pub step: String,
    /// What it acts on (`nodepool/x`, `nodegroup/x`, `deployment/ns/x`).
    pub target: String,
    /// The change, in words.
    pub detail: String,
    /// Already so: a run skips it.
    pub done: bool,
}

/// Whether the controller can be pinned to a group: a managed group's nodes carry EKS's
/// node group label; a self-managed group's only the labels its node-template tags declare.
fn pinnable(g: &NodeGroup) -> bool {
    g.kind == GroupKind::Managed || !g.labels.is_empty()
}

/// The group the controller stays on: the one asked for, else the first untainted on-demand
/// managed group, else the first such self-managed group with node-template labels to pin by.
fn controller_group(groups: &[NodeGroup], asked: Option<&str>) -> Result<String> {
    if let Some(name) = asked {
        return match groups.iter().find(|g| g.name == name) {
            Some(g) if pinnable(g) => Ok(g.name.clone()),
            Some(g) => Err(Error::invalid(
                format!("--controller-nodegroup {name}: Auto Scaling group {} declares no node labels to pin the controller by", g.name),
                format!("give it a {}KEY tag its nodes carry, or name a managed node group", super::asg::LABEL_TAG),
            )),
            None => Err(Error::invalid(
                format!("--controller-nodegroup {name}: the cluster has no such node group"),
                format!("pick one of: {}", groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")),
            )),
        };
    }
    let fits = |g: &&NodeGroup| g.taints.is_empty() && g.capacity_type == "ON_DEMAND" && pinnable(g);
    let managed = groups.iter().filter(|g| g.kind == GroupKind::Managed).find(fits);
    managed.or_else(|| groups.iter().find(fits)).map(|g| g.name.clone()).ok_or_else(|| {
        Error::invalid(
            "no untainted on-demand node group to keep the Karpenter controller on",
            "name one with --controller-nodegroup (its taints must be tolerated through --set tolerations...)",
        )
    })
}

fn cordoned_by_us(w: &Workloads, node: &str) -> bool {
    w.nodes.iter().any(|n| {
        str_at(n, "/metadata/name") == node
            && n.pointer(&format!("/metadata/annotations/{}", CORDONED_ANNOTATION.replace('/', "~1"))).is_some()
    })
}

fn hosts_karpenter(w: &Workloads, node: &str) -> bool {
    w.pods.iter().any(|p| {
        str_at(p, "/spec/nodeName") == node && str_at(p, "/metadata/labels/app.kubernetes.io~1name") == "karpenter"
    })
}

/// Compute the plan.
pub fn plan(groups: &[NodeGroup], autoscalers: &[Autoscaler], w: &Workloads, opts: &Options) -> Result<Plan> {
    if groups.is_empty() {
        return Err(Error::invalid(
            "the cluster has no managed node groups or self-managed Auto Scaling groups to migrate from",
            "an Auto Scaling group is the cluster's when tagged kubernetes.io/cluster/CLUSTER=owned (or k8s.io/cluster-autoscaler/CLUSTER with k8s.io/cluster-autoscaler/enabled); else run karpctl init",
        ));
    }
    let controller = controller_group(groups, opts.controller_group.as_deref())?;
    let mut plans = Vec::new();
    for g in groups {
        let original = g.original.unwrap_or(g.scaling);
        let floor = if g.name == controller { opts.keep as i32 } else { 0 };
        let target = original.at_floor(floor);
        let mut nodes = w.group_nodes(g);
        // Kept: nodes not yet drained, the controller's first, then by name; stable across re-runs.
        nodes.sort_by_key(|n| (cordoned_by_us(w, n), !hosts_karpenter(w, n), n.clone()));
        let cut = (target.desired.max(0) as usize).min(nodes.len());
        let drain_nodes = nodes.split_off(cut);
        plans.push(GroupPlan {
            name: g.name.clone(),
            id: g.target(),
            original,
            target,
            keep_nodes: nodes,
            drain_nodes,
        });
    }
    plans.sort_by_key(|p| p.name == controller);
    let mut interrupted = Vec::new();
    for node in plans.iter().flat_map(|p| &p.drain_nodes) {
        for pod in w.evictable_on(node) {
            let why = if pod.pointer("/metadata/ownerReferences/0").is_none() {
                Some("no controller recreates it")
            } else if w.pdbs_of(pod).next().is_none() && w.siblings(pod) <= 1 {
                Some("a single replica and no PodDisruptionBudget")
            } else {
                None
            };
            if let Some(why) = why {
                interrupted.push(format!(
                    "{}/{} on {node} ({why})",
                    str_at(pod, "/metadata/namespace"),
                    str_at(pod, "/metadata/name")
                ));
            }
        }
    }
    Ok(Plan {
        controller_group: controller,
        pools: infer::pools(groups, opts.widen),
        groups: plans,
        autoscalers: autoscalers.to_vec(),
        interrupted,
    })
}

fn node<'a>(w: &'a Workloads, name: &str) -> Option<&'a Value> {
    w.nodes.iter().find(|n| str_at(n, "/metadata/name") == name)
}

impl Plan {
    /// The steps after the install, in order; `pools_ready` names the NodePools already applied
    /// as karpctl's, `groups` the node groups as they are now.
    pub fn steps(&self, groups: &[NodeGroup], w: &Workloads, pools_applied: &[String]) -> Vec<Step> {
        let step =
            |step: &str, target: String, detail: String, done: bool| Step { step: step.into(), target, detail, done };
        let mut out = Vec::new();
        for p in &self.pools {
            let done = pools_applied.contains(&p.name);
            let from = format!("from node group{} {}", if p.groups.len() > 1 { "s" } else { "" }, p.groups.join(", "));
            out.push(step("apply", format!("ec2nodeclass/{}", p.name), from.clone(), done));
            let what = if p.widened { "families" } else { "instance types" };
            out.push(step(
                "apply",
                format!("nodepool/{}", p.name),
                format!("{from}: {} {} {what}", p.capacity_types.join("+"), p.instance_types.join(",")),
                done,
            ));
        }
        for g in groups {
            out.push(step(
                "record",
                g.target(),
                format!("tag its scaling {}", g.original.unwrap_or(g.scaling)),
                g.original.is_some(),
            ));
        }
        for ca in &self.autoscalers {
            let target = format!("deployment/{}/{}", ca.namespace, ca.name);
            let replicas = ca.original.unwrap_or(ca.replicas);
            out.push(step(
                "record",
                target.clone(),
                format!("annotate its replicas {replicas}"),
                ca.original.is_some(),
            ));
            out.push(step(
                "scale",
                target,
                format!("replicas {replicas} -> 0"),
                ca.replicas == 0 && ca.original.is_some(),
            ));
        }
        for gp in &self.groups {
            let drained = gp.drain_nodes.iter().all(|n| {
                node(w, n).is_none_or(|o| o.pointer("/spec/unschedulable") == Some(&Value::Bool(true)))
                    && w.evictable_on(n).next().is_none()
            });
            let list = if gp.drain_nodes.is_empty() { "no nodes".to_string() } else { gp.drain_nodes.join(", ") };
            out.push(step("drain", gp.id.clone(), format!("cordon and drain {list}"), drained));
            let now = groups.iter().find(|g| g.name == gp.name);
            let done = now.is_some_and(|g| g.scaling == gp.target && g.original.is_some());
            out.push(step("scale", gp.id.clone(), format!("{} -> {}", gp.original, gp.target), done));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::discover::Taint;
    use serde_json::json;

    fn group(name: &str, cap: &str, tainted: bool, desired: i32) -> NodeGroup {
        NodeGroup {
            instance_types: vec!["m5.large".into()],
            capacity_type: cap.into(),
            taints: if tainted {
                vec![Taint { key: "k".into(), value: "v".into(), effect: "NoSchedule".into() }]
            } else {
                vec![]
            },
            scaling: Scaling { min: 1, max: 5, desired },
            ..NodeGroup::sample(name)
        }
    }

    fn node(name: &str, group: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"eks.amazonaws.com/nodegroup": group}}, "spec": {}})
    }

    fn pod(name: &str, node: &str, owner: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "apps", "labels": {"app": name}},
                           "spec": {"nodeName": node}, "status": {"phase": "Running"}});
        if let Some(o) = owner {
            p["metadata"]["ownerReferences"] = json!([{"kind": "ReplicaSet", "name": o}]);
        }
        p
    }

    #[test]
    fn the_untainted_on_demand_group_keeps_its_floor_and_single_replicas_are_listed() {
        let groups = vec![
            group("gpu", "ON_DEMAND", true, 2),
            group("spot", "SPOT", false, 2),
            group("sys", "ON_DEMAND", false, 3),
        ];
        let w = Workloads {
            nodes: vec![
                node("s1", "spot"),
                node("s2", "spot"),
                node("y1", "sys"),
                node("y2", "sys"),
                node("y3", "sys"),
            ],
            pods: vec![
                pod("lonely", "s1", Some("rs-lonely")),
                pod("bare", "s2", None),
                pod("web-1", "s1", Some("rs-web")),
                pod("web-2", "y1", Some("rs-web")),
                pod("guarded", "s2", Some("rs-guarded")),
            ],
            pdbs: vec![
                json!({"metadata": {"name": "g", "namespace": "apps"}, "spec": {"selector": {"matchLabels": {"app": "guarded"}}}}),
            ],
        };
        let opts = Options { keep: 2, controller_group: None, widen: false };
        let plan = plan(&groups, &[], &w, &opts).unwrap();
        assert_eq!(plan.controller_group, "sys");
        let sys = plan.groups.iter().find(|g| g.name == "sys").unwrap();
        assert_eq!(sys.target, Scaling { min: 1, max: 5, desired: 2 });
        assert_eq!(
            (sys.keep_nodes.clone(), sys.drain_nodes.clone()),
            (vec!["y1".into(), "y2".into()], vec!["y3".into()])
        );
        let spot = plan.groups.iter().find(|g| g.name == "spot").unwrap();
        assert_eq!(spot.target, Scaling { min: 0, max: 5, desired: 0 });
        assert_eq!(plan.groups.last().unwrap().name, "sys", "the controller's group is drained last");
        assert_eq!(
            plan.interrupted,
            vec![
                "apps/lonely on s1 (a single replica and no PodDisruptionBudget)".to_string(),
                "apps/bare on s2 (no controller recreates it)".to_string()
            ]
        );
        let steps = plan.steps(&groups, &w, &[]);
        // A drain of no nodes (the gpu group has none) is done already.
        assert!(steps.iter().all(|s| s.done == (s.detail == "cordon and drain no nodes")), "{steps:#?}");
        assert!(plan_err("nope").contains("no such node group"));
    }

    #[test]
    fn the_controller_stays_on_a_managed_group_or_a_self_managed_one_with_labels_to_pin_by() {
        let asg = |labels: &[(&str, &str)]| NodeGroup {
            kind: GroupKind::SelfManaged,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..group("asg", "ON_DEMAND", false, 1)
        };
        let w = Workloads::default();
        let opts = |asked: Option<&str>| Options { keep: 1, controller_group: asked.map(str::to_string), widen: false };
        // A managed group first, even when an Auto Scaling group comes before it by name.
        let both = [asg(&[("role", "system")]), group("sys", "ON_DEMAND", false, 1)];
        assert_eq!(plan(&both, &[], &w, &opts(None)).unwrap().controller_group, "sys");
        assert_eq!(plan(&[asg(&[("role", "system")])], &[], &w, &opts(None)).unwrap().controller_group, "asg");
        let err = plan(&[asg(&[])], &[], &w, &opts(Some("asg"))).unwrap_err();
        assert!(err.message.contains("declares no node labels"), "{}", err.message);
        assert!(plan(&[asg(&[])], &[], &w, &opts(None)).is_err(), "nothing to pin the controller by");
        let steps = plan(&both, &[], &w, &opts(None)).unwrap().steps(&both, &w, &[]);
        assert!(steps.iter().any(|s| s.step == "scale" && s.target == "asg/asg"), "{steps:#?}");
    }

    fn plan_err(asked: &str) -> String {
        let opts = Options { keep: 2, controller_group: Some(asked.into()), widen: false };
        plan(&[group("a", "ON_DEMAND", false, 1)], &[], &Workloads::default(), &opts).unwrap_err().message
    }
}
