//! Apply the plan's steps in order, each one skipped when already so, each change recorded
//! before it is made (record.rs), so a run killed at any point is finished by the next.

use serde_json::Value;

use super::discover::{NodeGroup, Workloads};
use super::infer;
use super::plan::{Plan, Step};
use super::record;
use crate::aws::Aws;
use crate::error::Result;
use crate::kube::{Kube, Wait};

/// What applying needs besides the plan.
pub struct Ctx<'a> {
    /// AWS clients.
    pub aws: &'a Aws,
    /// The cluster API.
    pub kube: &'a Kube,
    /// The cluster's name.
    pub cluster: &'a str,
    /// The Karpenter node role's name (the EC2NodeClasses' `role`).
    pub node_role: &'a str,
    /// Nodes drained at once.
    pub parallel: usize,
    /// One eviction's (and one node's) bound.
    pub drain: Wait,
    /// The NodePools' and EC2NodeClasses' wait for Ready.
    pub ready: Wait,
    /// Hears each step as it starts.
    pub progress: &'a (dyn Fn(&str) + Sync),
}

/// Apply every step not done yet; returns the steps, marked done, with what each did.
pub async fn apply(cx: &Ctx<'_>, plan: &Plan, groups: &[NodeGroup]) -> Result<Vec<Step>> {
    let progress = cx.progress;
    for pool in &plan.pools {
        progress(&format!("applying nodepool/{}", pool.name));
        cx.kube.apply(&infer::node_class(pool, cx.cluster, cx.node_role)).await?;
        cx.kube.apply(&infer::node_pool(pool)).await?;
    }
    for pool in &plan.pools {
        cx.kube.wait_ready("karpenter.k8s.aws/v1", "EC2NodeClass", None, &pool.name, cx.ready, progress).await?;
        cx.kube.wait_ready("karpenter.sh/v1", "NodePool", None, &pool.name, cx.ready, progress).await?;
    }
    // Every original is written down before anything is scaled.
    for g in groups {
        let floor = plan.groups.iter().find(|gp| gp.name == g.name).map_or(g.scaling, |gp| gp.target);
        record::group(cx.aws, g, floor).await?;
    }
    for ca in &plan.autoscalers {
        record::autoscaler(cx.kube, ca).await?;
    }
    for ca in &plan.autoscalers {
        if ca.replicas != 0 {
            progress(&format!("scaling deployment/{}/{} to 0", ca.namespace, ca.name));
            record::scale_autoscaler(cx.kube, ca, 0, false).await?;
        }
    }
    for gp in &plan.groups {
        progress(&format!("draining {}", gp.id));
        let evicted = super::drain::drain(cx.kube, &gp.drain_nodes, cx.parallel, cx.drain).await?;
        tracing::info!("{}: evicted {}", gp.id, evicted.join(", "));
        if let Some(g) = groups.iter().find(|g| g.name == gp.name) {
            if g.scaling != gp.target {
                progress(&format!("scaling {} to {}", gp.id, gp.target));
                record::scale_group(cx.aws, cx.cluster, g, gp.target).await?;
            }
        }
    }
    let applied: Vec<String> = plan.pools.iter().map(|p| p.name.clone()).collect();
    let now = super::discover::node_groups(cx.aws, cx.cluster).await?;
    let cas = super::discover::autoscalers(cx.kube).await?;
    let mut after = plan.clone();
    after.autoscalers = cas;
    Ok(after.steps(&now, &Workloads::observe(cx.kube).await?, &applied))
}

/// The names of the NodePools karpctl's migration applied.
pub async fn applied_pools(kube: &Kube) -> Result<Vec<String>> {
    let selector = format!("{}=true", super::MIGRATED_LABEL);
    Ok(kube
        .list("karpenter.sh/v1", "NodePool", None, Some(&selector))
        .await?
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .filter(crate::kube::karpenter::made_by_karpctl)
        .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string))
        .collect())
}
