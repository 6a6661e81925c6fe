//! `karpctl migrate --rollback`: put back what the records say, in the order that keeps pods
//! running: node groups to their original scaling (capacity first), the nodes karpctl cordoned
//! uncordoned, Cluster Autoscaler to its replicas, and only then the inferred NodePools and
//! EC2NodeClasses deleted (Karpenter drains its nodes onto the groups). Each record is removed
//! once what it holds is restored, so a rollback killed midway is finished by the next. The
//! Karpenter install stays (`karpctl teardown` removes it).

use super::discover::{self, str_at, NodeGroup, Workloads};
use super::plan::Step;
use super::record::{self, CORDONED_ANNOTATION};
use super::MIGRATED_LABEL;
use crate::error::Result;

/// Undo; returns what was restored, as steps.
pub async fn rollback(cx: &super::steps::Ctx<'_>) -> Result<Vec<Step>> {
    let mut out = Vec::new();
    let done = |step: &str, target: String, detail: String| Step { step: step.into(), target, detail, done: true };
    for g in discover::node_groups(cx.aws, cx.cluster).await? {
        let Some(original) = g.original else { continue };
        if g.scaling != original {
            (cx.progress)(&format!("restoring {}", g.target()));
            record::scale_group(cx.aws, cx.cluster, &g, original).await?;
        }
        out.push(done("restore", g.target(), format!("{} -> {original}", g.scaling)));
        uncordon(cx, &Workloads::observe(cx.kube).await?, Some(&g), &mut out).await?;
        record::forget_group(cx.aws, &g).await?;
    }
    // Nodes cordoned by a migration whose group is gone (or was never recorded).
    uncordon(cx, &Workloads::observe(cx.kube).await?, None, &mut out).await?;
    for ca in discover::autoscalers(cx.kube).await? {
        let Some(original) = ca.original else { continue };
        record::scale_autoscaler(cx.kube, &ca, original, true).await?;
        out.push(done(
            "restore",
            format!("deployment/{}/{}", ca.namespace, ca.name),
            format!("replicas {} -> {original}", ca.replicas),
        ));
    }
    let selector = format!("{MIGRATED_LABEL}=true");
    for (api_version, kind) in [("karpenter.sh/v1", "NodePool"), ("karpenter.k8s.aws/v1", "EC2NodeClass")] {
        let names: Vec<String> = cx
            .kube
            .list(api_version, kind, None, Some(&selector))
            .await?
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .filter(crate::kube::karpenter::made_by_karpctl)
            .map(|o| str_at(&o, "/metadata/name").to_string())
            .collect();
        for name in &names {
            (cx.progress)(&format!("deleting {} {name}", kind.to_lowercase()));
            cx.kube.delete(api_version, kind, None, name).await?;
            out.push(done("delete", format!("{}/{name}", kind.to_lowercase()), "inferred by the migration".into()));
        }
        if !names.is_empty() {
            cx.kube.wait_gone(api_version, kind, None, Some(&selector), Some(&names), cx.drain, cx.progress).await?;
        }
    }
    Ok(out)
}

async fn uncordon(
    cx: &super::steps::Ctx<'_>,
    w: &Workloads,
    group: Option<&NodeGroup>,
    out: &mut Vec<Step>,
) -> Result<()> {
    let key = format!("/metadata/annotations/{}", CORDONED_ANNOTATION.replace('/', "~1"));
    for n in &w.nodes {
        let in_group = group.is_none_or(|g| g.owns(n));
        if in_group
            && n.pointer(&key).is_some_and(|v| !v.is_null())
            && n.pointer("/metadata/deletionTimestamp").is_none()
        {
            let name = str_at(n, "/metadata/name");
            record::cordon(cx.kube, name, false).await?;
            out.push(Step {
                step: "uncordon".into(),
                target: format!("node/{name}"),
                detail: String::new(),
                done: true,
            });
        }
    }
    Ok(())
}
