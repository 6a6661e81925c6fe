//! Where the migration writes down what it changes, before it changes it, so a re-run
//! continues and `--rollback` restores exactly: a tag on each node group or self-managed
//! Auto Scaling group (its original min/max/desired), an annotation on the Cluster Autoscaler Deployment (its original
//! replicas), and an annotation on each node karpctl cordoned (so rollback uncordons only
//! those). A record is written once and never overwritten: a re-run after a partial migration
//! must not take the half-migrated state for the original.

use serde_json::json;

use super::discover::{Autoscaler, GroupKind, NodeGroup};
use super::Scaling;
use crate::aws::Aws;
use crate::error::{AwsContext, Result};
use crate::kube::Kube;

/// The node group tag holding its original scaling (`min=1,max=5,desired=3`).
pub const GROUP_TAG: &str = "karpctl.io/migrate-original-scaling";

/// The node group tag holding the floor the migration scales it to (what `doctor` checks).
pub const FLOOR_TAG: &str = "karpctl.io/migrate-floor";

/// The Cluster Autoscaler annotation holding its original replicas.
pub const AUTOSCALER_ANNOTATION: &str = "karpctl.io/migrate-original-replicas";

/// The node annotation saying karpctl's migration cordoned it.
pub const CORDONED_ANNOTATION: &str = "karpctl.io/migrate-cordoned";

/// Tag the group with its scaling now, unless a record is there already, and with the floor
/// it is to be scaled to (rewritten when a re-run chose another); returns the original.
pub async fn group(aws: &Aws, g: &NodeGroup, floor: Scaling) -> Result<Scaling> {
    if let (Some(original), true) = (g.original, g.floor == Some(floor)) {
        return Ok(original);
    }
    let mut tags = vec![(FLOOR_TAG, floor.to_string())];
    if g.original.is_none() {
        tags.push((GROUP_TAG, g.scaling.to_string()));
    }
    match g.kind {
        GroupKind::SelfManaged => super::asg::tag(aws, g, &tags).await?,
        GroupKind::Managed => {
            let mut req = aws.eks.tag_resource().resource_arn(&g.arn);
            for (k, v) in tags {
                req = req.tags(k, v);
            }
            req.send().await.or_aws(format!("failed to record node group {}'s scaling", g.name), "eks:TagResource")?;
        }
    }
    Ok(g.original.unwrap_or(g.scaling))
}

/// Remove the group's record (rollback, once its scaling is restored).
pub async fn forget_group(aws: &Aws, g: &NodeGroup) -> Result<()> {
    if g.kind == GroupKind::SelfManaged {
        return super::asg::untag(aws, g, &[GROUP_TAG, FLOOR_TAG]).await;
    }
    aws.eks
        .untag_resource()
        .resource_arn(&g.arn)
        .tag_keys(GROUP_TAG)
        .tag_keys(FLOOR_TAG)
        .send()
        .await
        .or_aws(format!("failed to remove node group {}'s record", g.name), "eks:UntagResource")?;
    Ok(())
}

/// Annotate the Deployment with its replicas now, unless recorded already; returns the original.
pub async fn autoscaler(kube: &Kube, ca: &Autoscaler) -> Result<i64> {
    if let Some(original) = ca.original {
        return Ok(original);
    }
    let patch = json!({"metadata": {"annotations": {AUTOSCALER_ANNOTATION: ca.replicas.to_string()}}});
    kube.merge_patch("apps/v1", "Deployment", Some(&ca.namespace), &ca.name, &patch, "record the replicas of").await?;
    Ok(ca.replicas)
}

/// Set the Deployment's replicas, and remove its record when `forget` (rollback).
pub async fn scale_autoscaler(kube: &Kube, ca: &Autoscaler, replicas: i64, forget: bool) -> Result<()> {
    let mut patch = json!({"spec": {"replicas": replicas}});
    if forget {
        patch["metadata"] = json!({"annotations": {AUTOSCALER_ANNOTATION: null}});
    }
    kube.merge_patch("apps/v1", "Deployment", Some(&ca.namespace), &ca.name, &patch, "scale").await?;
    Ok(())
}

/// Cordon a node (marking it as karpctl's doing), or uncordon one karpctl cordoned.
pub async fn cordon(kube: &Kube, node: &str, on: bool) -> Result<()> {
    let patch = if on {
        json!({"spec": {"unschedulable": true}, "metadata": {"annotations": {CORDONED_ANNOTATION: "true"}}})
    } else {
        json!({"spec": {"unschedulable": null}, "metadata": {"annotations": {CORDONED_ANNOTATION: null}}})
    };
    kube.merge_patch("v1", "Node", None, node, &patch, if on { "cordon" } else { "uncordon" }).await?;
    Ok(())
}

/// Set a node group's scaling (UpdateNodegroupConfig, or UpdateAutoScalingGroup, with all
/// three sizes, so EKS or Auto Scaling checks them together: min ≤ desired ≤ max).
pub async fn scale_group(aws: &Aws, cluster: &str, g: &NodeGroup, to: Scaling) -> Result<()> {
    if g.kind == GroupKind::SelfManaged {
        return super::asg::scale(aws, g, to).await;
    }
    let config = aws_sdk_eks::types::NodegroupScalingConfig::builder()
        .min_size(to.min)
        .max_size(to.max)
        .desired_size(to.desired)
        .build();
    aws.eks
        .update_nodegroup_config()
        .cluster_name(cluster)
        .nodegroup_name(&g.name)
        .scaling_config(config)
        .send()
        .await
        .or_aws(format!("failed to scale node group {} to {to}", g.name), "eks:UpdateNodegroupConfig")?;
    Ok(())
}
