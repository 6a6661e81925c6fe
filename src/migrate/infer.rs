//! The NodePools and EC2NodeClasses a set of node groups becomes: one NodePool (and its own
//! EC2NodeClass) per distinct labels, taints and capacity type, so a pod that fitted a group
//! fits the NodePool made from it. Instance types stay exactly as the groups had them, or with
//! `--widen` become their whole families (Karpenter picks the size). Subnets are the groups'
//! own; security groups are the launch template's when a group has one (with its disks and
//! metadata options, src/migrate/template.rs), else the cluster's (the discovery tag init puts on them).
//! The image (an alias, or a custom AMI by id) and the user data follow src/migrate/ami.rs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::ami::{self, Image};
use super::discover::{NodeGroup, Taint};
use super::{MIGRATED_FROM, MIGRATED_LABEL};
use crate::desired::DISCOVERY_TAG;

/// One inferred NodePool (with an EC2NodeClass of the same name).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pool {
    /// The NodePool's (and EC2NodeClass's) name: the first group's.
    pub name: String,
    /// The node groups it replaces.
    pub groups: Vec<String>,
    /// Labels its nodes get.
    pub labels: BTreeMap<String, String>,
    /// Taints its nodes get.
    pub taints: Vec<Taint>,
    /// `on-demand` and/or `spot` (Karpenter's spelling; both for a mixed Auto Scaling group).
    pub capacity_types: Vec<String>,
    /// The instance types (or families, widened).
    pub instance_types: Vec<String>,
    /// Whether `instance_types` are families.
    pub widened: bool,
    /// `amd64` and/or `arm64`, from the AMI types.
    pub arch: Vec<String>,
    /// The image: an alias, or a custom AMI by id with its family; the user data carried.
    pub image: Image,
    /// The groups' subnets.
    pub subnets: Vec<String>,
    /// The first of its groups' launch templates (security groups, disks, IMDS), if any.
    pub template: Option<super::template::Template>,
}

fn capacity(eks: &str) -> Vec<String> {
    match eks {
        "SPOT" => vec!["spot".into()],
        "MIXED" => vec!["spot".into(), "on-demand".into()],
        _ => vec!["on-demand".into()],
    }
}

/// A Kubernetes object name from a group's (Auto Scaling group names may hold capitals,
/// spaces and more): lower case, anything else a dash.
fn object_name(group: &str) -> String {
    let s: String = group
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .collect();
    let s = s.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    s.chars().take(63).collect()
}

/// The family of an instance type (`m5.large` → `m5`).
fn family(instance_type: &str) -> &str {
    instance_type.split('.').next().unwrap_or(instance_type)
}

/// Group the node groups (given by name) into pools.
pub fn pools(groups: &[NodeGroup], widen: bool) -> Vec<Pool> {
    let mut out: Vec<Pool> = Vec::new();
    for g in groups {
        let mut taints = g.taints.clone();
        taints.sort();
        let cap = capacity(&g.capacity_type);
        let at = match out.iter().position(|p| p.labels == g.labels && p.taints == taints && p.capacity_types == cap) {
            Some(i) => i,
            None => {
                let name = object_name(&g.name);
                out.push(Pool {
                    image: ami::image(&name, g, g.template.as_ref()),
                    name,
                    groups: Vec::new(),
                    labels: g.labels.clone(),
                    taints,
                    capacity_types: cap,
                    instance_types: Vec::new(),
                    widened: widen,
                    arch: Vec::new(),
                    subnets: Vec::new(),
                    template: None,
                });
                out.len() - 1
            }
        };
        let pool = &mut out[at];
        pool.groups.push(g.name.clone());
        if pool.template.is_none() && g.template.is_some() {
            pool.template.clone_from(&g.template);
            pool.image = ami::image(&pool.name, g, g.template.as_ref());
        } else if g.template.is_some() && g.template != pool.template {
            let first = pool.groups.first().cloned().unwrap_or_default();
            pool.image.notes.push(format!(
                "{}: {}'s launch template differs from the one the pool takes ({first}'s); its disks, security groups and AMI are not carried over",
                pool.name, g.name
            ));
        }
        let types: BTreeSet<String> = pool
            .instance_types
            .iter()
            .cloned()
            .chain(g.instance_types.iter().map(|t| if widen { family(t).to_string() } else { t.clone() }))
            .collect();
        pool.instance_types = types.into_iter().collect();
        for a in ami::arches(g) {
            if !pool.arch.iter().any(|x| x == a) {
                pool.arch.push(a.to_string());
            }
        }
        for s in &g.subnets {
            if !pool.subnets.contains(s) {
                pool.subnets.push(s.clone());
            }
        }
    }
    out
}

fn metadata(pool: &Pool) -> Value {
    json!({"name": pool.name, "labels": {MIGRATED_LABEL: "true"},
           "annotations": {MIGRATED_FROM: pool.groups.join(",")}})
}

/// The pool's EC2NodeClass.
pub fn node_class(pool: &Pool, cluster: &str, node_role: &str) -> Value {
    let mut class = json!({
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": metadata(pool),
        "spec": {
            "role": node_role,
            "amiSelectorTerms": match (&pool.image.alias, &pool.image.id) {
                (_, Some(id)) => json!([{"id": id}]),
                (alias, None) => json!([{"alias": alias.as_deref().unwrap_or("al2023@latest")}]),
            },
            "subnetSelectorTerms": pool.subnets.iter().map(|s| json!({"id": s})).collect::<Vec<_>>(),
            "securityGroupSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster}}],
        }
    });
    if let Some(family) = &pool.image.family {
        class["spec"]["amiFamily"] = json!(family);
    }
    if let Some(u) = &pool.image.user_data {
        class["spec"]["userData"] = json!(u);
    }
    if let Some(t) = &pool.template {
        if !t.security_groups.is_empty() {
            class["spec"]["securityGroupSelectorTerms"] =
                json!(t.security_groups.iter().map(|id| json!({"id": id})).collect::<Vec<_>>());
        }
        if !t.block_devices.is_empty() {
            class["spec"]["blockDeviceMappings"] = json!(t.block_devices);
        }
        if let Some(m) = &t.metadata {
            class["spec"]["metadataOptions"] = m.clone();
        }
    }
    class
}

/// The pool's NodePool.
pub fn node_pool(pool: &Pool) -> Value {
    let types_key = if pool.widened { "karpenter.k8s.aws/instance-family" } else { "node.kubernetes.io/instance-type" };
    let mut template = json!({
        "spec": {
            "requirements": [
                {"key": types_key, "operator": "In", "values": pool.instance_types},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": pool.capacity_types},
                {"key": "kubernetes.io/arch", "operator": "In", "values": pool.arch},
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            ],
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": pool.name},
            "expireAfter": "720h",
        }
    });
    if !pool.labels.is_empty() {
        template["metadata"] = json!({"labels": pool.labels});
    }
    if !pool.taints.is_empty() {
        template["spec"]["taints"] = json!(pool
            .taints
            .iter()
            .map(|t| if t.value.is_empty() {
                json!({"key": t.key, "effect": t.effect})
            } else {
                json!({"key": t.key, "value": t.value, "effect": t.effect})
            })
            .collect::<Vec<_>>());
    }
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": metadata(pool),
        "spec": {
            "template": template,
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "1m"},
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::Scaling;

    fn group(name: &str, cap: &str, types: &[&str], taint: Option<&str>) -> NodeGroup {
        NodeGroup {
            instance_types: types.iter().map(|s| s.to_string()).collect(),
            capacity_type: cap.into(),
            labels: BTreeMap::from([("team".to_string(), "a".to_string())]),
            taints: taint
                .map(|k| vec![Taint { key: k.into(), value: "true".into(), effect: "NoSchedule".into() }])
                .unwrap_or_default(),
            subnets: vec![format!("subnet-{name}")],
            scaling: Scaling { min: 1, max: 3, desired: 2 },
            ..NodeGroup::sample(name)
        }
    }

    #[test]
    fn one_pool_per_distinct_labels_taints_and_capacity_type() {
        let groups = vec![
            group("a", "ON_DEMAND", &["m5.large"], None),
            group("b", "ON_DEMAND", &["m5.xlarge", "c5.large"], None),
            group("c", "SPOT", &["m5.large"], None),
            group("d", "ON_DEMAND", &["r5.large"], Some("gpu")),
        ];
        let pools = pools(&groups, false);
        let names: Vec<(&str, Vec<String>)> = pools.iter().map(|p| (p.name.as_str(), p.groups.clone())).collect();
        assert_eq!(names, vec![("a", vec!["a".into(), "b".into()]), ("c", vec!["c".into()]), ("d", vec!["d".into()])]);
        assert_eq!(pools[0].instance_types, vec!["c5.large", "m5.large", "m5.xlarge"]);
        assert_eq!(pools[0].subnets, vec!["subnet-a", "subnet-b"]);
        let np = node_pool(&pools[2]);
        assert_eq!(
            np["spec"]["template"]["spec"]["taints"],
            json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}])
        );
        assert_eq!(np["spec"]["template"]["metadata"]["labels"]["team"], "a");
        let spot = node_pool(&pools[1]);
        assert_eq!(spot["spec"]["template"]["spec"]["requirements"][1]["values"], json!(["spot"]));
    }

    #[test]
    fn widen_turns_types_into_families() {
        let pools = pools(&[group("a", "ON_DEMAND", &["m5.large", "m5.2xlarge", "c6i.large"], None)], true);
        assert_eq!(pools[0].instance_types, vec!["c6i", "m5"]);
        let req = &node_pool(&pools[0])["spec"]["template"]["spec"]["requirements"][0];
        assert_eq!(req["key"], "karpenter.k8s.aws/instance-family");
        let class = node_class(&pools[0], "demo", "KarpenterNodeRole-demo");
        assert_eq!(class["spec"]["subnetSelectorTerms"], json!([{"id": "subnet-a"}]));
        assert_eq!(class["spec"]["role"], "KarpenterNodeRole-demo");
    }

    #[test]
    fn the_launch_template_gives_the_node_class_its_security_groups_disks_and_imds() {
        let t = crate::migrate::template::Template {
            security_groups: vec!["sg-1".into()],
            block_devices: vec![json!({"deviceName": "/dev/xvda", "ebs": {"volumeSize": "100Gi"}})],
            metadata: Some(json!({"httpTokens": "required"})),
            ..Default::default()
        };
        let mut b = group("b", "ON_DEMAND", &["m5.large"], None);
        b.template = Some(t.clone());
        let pools = pools(&[group("a", "ON_DEMAND", &["m5.large"], None), b], false);
        assert_eq!(pools[0].template, Some(t), "the first group with a template gives it");
        let class = node_class(&pools[0], "demo", "role");
        assert_eq!(class["spec"]["securityGroupSelectorTerms"], json!([{"id": "sg-1"}]));
        assert_eq!(class["spec"]["blockDeviceMappings"][0]["ebs"]["volumeSize"], "100Gi");
        assert_eq!(class["spec"]["metadataOptions"], json!({"httpTokens": "required"}));
        // Without a template: the cluster's tagged security groups, Karpenter's default disks.
        let plain = node_class(&super::pools(&[group("c", "SPOT", &["m5.large"], None)], false)[0], "demo", "role");
        assert_eq!(plain["spec"]["securityGroupSelectorTerms"], json!([{"tags": {DISCOVERY_TAG: "demo"}}]));
        assert!(plain["spec"].get("blockDeviceMappings").is_none());
    }
}
