//! Self-managed Auto Scaling groups that belong to the cluster: found by their tags
//! (`kubernetes.io/cluster/C = owned`, or Cluster Autoscaler's auto-discovery pair
//! `k8s.io/cluster-autoscaler/C` + `k8s.io/cluster-autoscaler/enabled`), read into the same
//! [`NodeGroup`] a managed group is, so inference, the plan, the records, rollback and doctor
//! treat both alike. Managed node groups' own Auto Scaling groups (tag `eks:nodegroup-name`)
//! are left out: EKS owns their scaling, and the managed group is discovered already.
//!
//! What a group gives its NodePool: the instance types of its mixed instances policy's
//! overrides, else its launch template's; the capacity type from the on-demand/spot split
//! (`OnDemandPercentageAboveBaseCapacity`, `OnDemandBaseCapacity`) or the template's market
//! type; labels and taints from Cluster Autoscaler's node-template tags (its scale-from-zero
//! convention: `k8s.io/cluster-autoscaler/node-template/label/KEY = VALUE`,
//! `.../taint/KEY = VALUE:EFFECT`); subnets from `VPCZoneIdentifier`.

use std::collections::BTreeMap;

use aws_sdk_autoscaling::types::{AutoScalingGroup, Filter, Tag};

use super::discover::{GroupKind, NodeGroup, Taint};
use super::record::{FLOOR_TAG, GROUP_TAG};
use super::template::{self, TemplateRef};
use super::Scaling;
use crate::aws::Aws;
use crate::error::{Error, Result};

/// Cluster Autoscaler's node-template label tag prefix.
pub const LABEL_TAG: &str = "k8s.io/cluster-autoscaler/node-template/label/";

/// Cluster Autoscaler's node-template taint tag prefix.
pub const TAINT_TAG: &str = "k8s.io/cluster-autoscaler/node-template/taint/";

/// The tag EKS puts on a managed node group's own Auto Scaling group.
const MANAGED_TAG: &str = "eks:nodegroup-name";

/// The tags an Auto Scaling group of cluster `c` carries (either is enough to be looked at).
fn cluster_tags(c: &str) -> [String; 2] {
    [format!("kubernetes.io/cluster/{c}"), format!("k8s.io/cluster-autoscaler/{c}")]
}

/// Whether an Auto Scaling group with these tags is one of the cluster's self-managed groups.
pub fn belongs(tags: &BTreeMap<String, String>, cluster: &str) -> bool {
    let [owned, ca] = cluster_tags(cluster);
    let by_ownership = tags.get(&owned).is_some_and(|v| v == "owned");
    let by_autoscaler = tags.contains_key(&ca) && tags.contains_key("k8s.io/cluster-autoscaler/enabled");
    !tags.contains_key(MANAGED_TAG) && (by_ownership || by_autoscaler)
}

/// The cluster's self-managed Auto Scaling groups, by name, with their launch templates read.
pub async fn groups(aws: &Aws, cluster: &str) -> Result<Vec<NodeGroup>> {
    const WHAT: &str = "failed to read the cluster's Auto Scaling groups";
    let filter = Filter::builder().name("tag-key").set_values(Some(cluster_tags(cluster).to_vec())).build();
    let mut found: Vec<AutoScalingGroup> = Vec::new();
    let mut pages = aws.autoscaling.describe_auto_scaling_groups().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::aws(WHAT, "autoscaling:DescribeAutoScalingGroups", e))?;
        found.extend(page.auto_scaling_groups().iter().cloned());
    }
    // Each group's launch template beside the others'.
    let groups = found.iter().map(|a| async move {
        let Some(mut g) = from_sdk(a, cluster) else { return Ok(None) };
        let mixed = a.mixed_instances_policy();
        let spec = a
            .launch_template()
            .or_else(|| mixed.and_then(|m| m.launch_template()).and_then(|t| t.launch_template_specification()));
        let Some(spec) = spec else {
            return Err(Error::invalid(
                format!("Auto Scaling group {} has no launch template (a launch configuration?)", g.name),
                "karpctl reads instance types and the AMI from launch templates only; move the group to a launch template first",
            ));
        };
        let t = template::read(aws, &TemplateRef::from(spec)).await?;
        if g.instance_types.is_empty() {
            g.instance_types.extend(t.as_ref().and_then(|t| t.instance_type.clone()));
        }
        if mixed.is_none() && t.as_ref().is_some_and(|t| t.spot) {
            g.capacity_type = "SPOT".into();
        }
        if g.instance_types.is_empty() {
            return Err(Error::invalid(
                format!("Auto Scaling group {} names no instance type", g.name),
                "give its launch template an instance type, or its mixed instances policy overrides",
            ));
        }
        g.launch_template = spec.launch_template_name().or(spec.launch_template_id()).map(str::to_string);
        g.template = t;
        Ok(Some(g))
    });
    let mut out: Vec<NodeGroup> = futures::future::try_join_all(groups).await?.into_iter().flatten().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The group as karpctl reads it (None: not the cluster's); the launch template is read after.
fn from_sdk(a: &AutoScalingGroup, cluster: &str) -> Option<NodeGroup> {
    let tags: BTreeMap<String, String> = a
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
        .collect();
    if !belongs(&tags, cluster) {
        return None;
    }
    let labels = tags.iter().filter_map(|(k, v)| Some((k.strip_prefix(LABEL_TAG)?.to_string(), v.clone()))).collect();
    let mut taints: Vec<Taint> = tags
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix(TAINT_TAG)?;
            let (value, effect) = v.rsplit_once(':').unwrap_or((v.as_str(), "NoSchedule"));
            Some(Taint { key: key.into(), value: value.into(), effect: effect.into() })
        })
        .collect();
    taints.sort();
    let mixed = a.mixed_instances_policy();
    let instance_types = mixed
        .and_then(|m| m.launch_template())
        .map(|t| t.overrides().iter().filter_map(|o| o.instance_type()).map(str::to_string).collect())
        .unwrap_or_default();
    let capacity_type = match mixed.and_then(|m| m.instances_distribution()) {
        Some(d) => split(d.on_demand_base_capacity().unwrap_or(0), d.on_demand_percentage_above_base_capacity()),
        None => "ON_DEMAND",
    };
    Some(NodeGroup {
        kind: GroupKind::SelfManaged,
        name: a.auto_scaling_group_name().unwrap_or_default().to_string(),
        arn: a.auto_scaling_group_arn().unwrap_or_default().to_string(),
        instance_types,
        capacity_type: capacity_type.to_string(),
        ami_type: "CUSTOM".into(),
        labels,
        taints,
        subnets: a
            .vpc_zone_identifier()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        scaling: Scaling {
            min: a.min_size().unwrap_or(0),
            max: a.max_size().unwrap_or(0),
            desired: a.desired_capacity().unwrap_or(0),
        },
        original: tags.get(GROUP_TAG).and_then(|v| Scaling::parse(v)),
        floor: tags.get(FLOOR_TAG).and_then(|v| Scaling::parse(v)),
        launch_template: None,
        template: None,
        instances: a.instances().iter().filter_map(|i| i.instance_id()).map(str::to_string).collect(),
    })
}

/// The capacity type of an on-demand/spot split: all on-demand (the default, 100 % above a
/// base), all spot (no base, 0 %), or both (`MIXED`: the NodePool allows either).
fn split(base: i32, percent_above_base: Option<i32>) -> &'static str {
    match (base, percent_above_base.unwrap_or(100)) {
        (_, 100) => "ON_DEMAND",
        (0, 0) => "SPOT",
        _ => "MIXED",
    }
}

/// Put tags on the group (not propagated to its instances: they are the group's records).
pub async fn tag(aws: &Aws, g: &NodeGroup, tags: &[(&str, String)]) -> Result<()> {
    let what = || format!("failed to record Auto Scaling group {}'s scaling", g.name);
    let mut req = aws.autoscaling.create_or_update_tags();
    for (k, v) in tags {
        let t = Tag::builder()
            .resource_id(&g.name)
            .resource_type("auto-scaling-group")
            .key(*k)
            .value(v)
            .propagate_at_launch(false)
            .build();
        req = req.tags(t);
    }
    req.send().await.map_err(|e| Error::aws(what(), "autoscaling:CreateOrUpdateTags", e))?;
    Ok(())
}

/// Remove tags from the group.
pub async fn untag(aws: &Aws, g: &NodeGroup, keys: &[&str]) -> Result<()> {
    let what = || format!("failed to remove Auto Scaling group {}'s record", g.name);
    let mut req = aws.autoscaling.delete_tags();
    for k in keys {
        let t = Tag::builder().resource_id(&g.name).resource_type("auto-scaling-group").key(*k).build();
        req = req.tags(t);
    }
    req.send().await.map_err(|e| Error::aws(what(), "autoscaling:DeleteTags", e))?;
    Ok(())
}

/// Set the group's min, max and desired in one call (Auto Scaling checks min ≤ desired ≤ max
/// against the three together).
pub async fn scale(aws: &Aws, g: &NodeGroup, to: Scaling) -> Result<()> {
    aws.autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&g.name)
        .min_size(to.min)
        .max_size(to.max)
        .desired_capacity(to.desired)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                format!("failed to scale Auto Scaling group {} to {to}", g.name),
                "autoscaling:UpdateAutoScalingGroup",
                e,
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_autoscaling::types::{
        Instance, InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, MixedInstancesPolicy, TagDescription,
    };

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_group_belongs_by_ownership_or_by_autoscaler_discovery_but_not_when_managed() {
        assert!(belongs(&tags(&[("kubernetes.io/cluster/c", "owned")]), "c"));
        assert!(!belongs(&tags(&[("kubernetes.io/cluster/c", "shared")]), "c"));
        assert!(!belongs(&tags(&[("kubernetes.io/cluster/other", "owned")]), "c"));
        assert!(belongs(
            &tags(&[("k8s.io/cluster-autoscaler/c", "owned"), ("k8s.io/cluster-autoscaler/enabled", "true")]),
            "c"
        ));
        assert!(!belongs(&tags(&[("k8s.io/cluster-autoscaler/c", "owned")]), "c"), "discovery needs both tags");
        assert!(!belongs(&tags(&[("kubernetes.io/cluster/c", "owned"), (MANAGED_TAG, "web")]), "c"));
    }

    fn tag(k: &str, v: &str) -> TagDescription {
        TagDescription::builder().key(k).value(v).build()
    }

    #[test]
    fn node_template_tags_mixed_policy_and_subnets() {
        let policy = MixedInstancesPolicy::builder()
            .launch_template(
                LaunchTemplate::builder()
                    .overrides(LaunchTemplateOverrides::builder().instance_type("m5.large").build())
                    .overrides(LaunchTemplateOverrides::builder().instance_type("m5a.large").build())
                    .build(),
            )
            .instances_distribution(
                InstancesDistribution::builder().on_demand_percentage_above_base_capacity(0).build(),
            )
            .build();
        let a = AutoScalingGroup::builder()
            .auto_scaling_group_name("workers")
            .min_size(1)
            .max_size(5)
            .desired_capacity(3)
            .vpc_zone_identifier("subnet-a, subnet-b")
            .mixed_instances_policy(policy)
            .instances(Instance::builder().instance_id("i-1").build())
            .tags(tag("kubernetes.io/cluster/c", "owned"))
            .tags(tag(&format!("{LABEL_TAG}team"), "web"))
            .tags(tag(&format!("{TAINT_TAG}dedicated"), "batch:NoExecute"))
            .tags(tag(GROUP_TAG, "min=1,max=5,desired=4"))
            .build();
        let g = from_sdk(&a, "c").expect("the cluster's");
        assert_eq!(g.kind, GroupKind::SelfManaged);
        assert_eq!(g.instance_types, vec!["m5.large", "m5a.large"]);
        assert_eq!(g.capacity_type, "SPOT");
        assert_eq!(g.labels, tags(&[("team", "web")]));
        assert_eq!(
            g.taints,
            vec![Taint { key: "dedicated".into(), value: "batch".into(), effect: "NoExecute".into() }]
        );
        assert_eq!(g.subnets, vec!["subnet-a", "subnet-b"]);
        assert_eq!(g.scaling, Scaling { min: 1, max: 5, desired: 3 });
        assert_eq!(g.original, Some(Scaling { min: 1, max: 5, desired: 4 }));
        assert_eq!(g.instances, vec!["i-1"]);
        assert!(from_sdk(&a, "other").is_none());
    }

    #[test]
    fn the_on_demand_spot_split() {
        assert_eq!(split(0, None), "ON_DEMAND");
        assert_eq!(split(2, Some(100)), "ON_DEMAND");
        assert_eq!(split(0, Some(0)), "SPOT");
        assert_eq!(split(1, Some(0)), "MIXED");
        assert_eq!(split(0, Some(50)), "MIXED");
    }
}
