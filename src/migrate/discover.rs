//! What the migration starts from: the cluster's managed node groups (EKS) and self-managed
//! Auto Scaling groups (asg.rs), the Cluster Autoscaler Deployment (any namespace, found by its image), and the nodes, pods and
//! PodDisruptionBudgets the drain works with. Read-only.

use std::collections::BTreeMap;

use serde_json::Value;

use super::record;
use super::{Scaling, NODEGROUP_LABEL};
use crate::aws::Aws;
use crate::error::{AwsContext, Error, Result};
use crate::kube::survey::workloads_running;
use crate::kube::Kube;

/// A node taint in Kubernetes' spelling (EKS says `NO_SCHEDULE`, a node says `NoSchedule`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Taint {
    /// The key.
    pub key: String,
    /// The value (may be empty).
    pub value: String,
    /// NoSchedule, PreferNoSchedule or NoExecute.
    pub effect: String,
}

/// Which API owns a group's scaling and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupKind {
    /// An EKS managed node group (eks:UpdateNodegroupConfig, eks:TagResource).
    Managed,
    /// A self-managed Auto Scaling group (autoscaling:UpdateAutoScalingGroup, CreateOrUpdateTags).
    SelfManaged,
}

/// One node group: a managed one as DescribeNodegroup tells it, or a self-managed Auto Scaling
/// group as asg.rs reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeGroup {
    /// Managed or self-managed.
    pub kind: GroupKind,
    /// Its name.
    pub name: String,
    /// Its ARN (where the original scaling is tagged).
    pub arn: String,
    /// Instance types.
    pub instance_types: Vec<String>,
    /// `ON_DEMAND` or `SPOT` (EKS's spelling).
    pub capacity_type: String,
    /// The AMI type (`AL2023_x86_64_STANDARD`, `BOTTLEROCKET_ARM_64`, ...).
    pub ami_type: String,
    /// Kubernetes labels EKS puts on its nodes.
    pub labels: BTreeMap<String, String>,
    /// Kubernetes taints EKS puts on its nodes.
    pub taints: Vec<Taint>,
    /// Its subnets.
    pub subnets: Vec<String>,
    /// Its scaling now.
    pub scaling: Scaling,
    /// The scaling recorded before the migration changed it (its tag), if any.
    pub original: Option<Scaling>,
    /// The floor the migration scales it to (its tag), once recorded.
    pub floor: Option<Scaling>,
    /// The launch template's name or id, when it has one.
    pub launch_template: Option<String>,
    /// What the EC2NodeClass takes from that launch template, once read.
    pub template: Option<super::template::Template>,
    /// A self-managed group's EC2 instance ids (its nodes are found by their providerID; a
    /// managed group's by EKS's label). Empty for a managed group.
    pub instances: Vec<String>,
}

impl NodeGroup {
    /// How steps and checks name it: `nodegroup/NAME` or `asg/NAME`.
    pub fn target(&self) -> String {
        match self.kind {
            GroupKind::Managed => format!("nodegroup/{}", self.name),
            GroupKind::SelfManaged => format!("asg/{}", self.name),
        }
    }

    /// How messages name it: `node group NAME` or `Auto Scaling group NAME`.
    pub fn describe(&self) -> String {
        match self.kind {
            GroupKind::Managed => format!("node group {}", self.name),
            GroupKind::SelfManaged => format!("Auto Scaling group {}", self.name),
        }
    }

    /// A managed group with nothing set, for the unit tests to fill in.
    #[cfg(test)]
    pub fn sample(name: &str) -> NodeGroup {
        NodeGroup {
            kind: GroupKind::Managed,
            name: name.into(),
            arn: format!("arn:{name}"),
            instance_types: vec![],
            capacity_type: "ON_DEMAND".into(),
            ami_type: "AL2023_x86_64_STANDARD".into(),
            labels: BTreeMap::new(),
            taints: vec![],
            subnets: vec![],
            scaling: Scaling { min: 0, max: 0, desired: 0 },
            original: None,
            floor: None,
            launch_template: None,
            template: None,
            instances: vec![],
        }
    }

    /// Whether a Node (JSON) is one of this group's: EKS's node group label, or an instance id
    /// of the Auto Scaling group at the end of its `spec.providerID` (`aws:///ZONE/i-...`).
    pub fn owns(&self, node: &Value) -> bool {
        match self.kind {
            GroupKind::Managed => {
                node.pointer("/metadata/labels").and_then(|l| l.get(NODEGROUP_LABEL)).and_then(Value::as_str)
                    == Some(self.name.as_str())
            }
            GroupKind::SelfManaged => {
                let id = str_at(node, "/spec/providerID").rsplit('/').next().unwrap_or_default();
                !id.is_empty() && self.instances.iter().any(|i| i == id)
            }
        }
    }
}

/// A Deployment running the cluster-autoscaler image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Autoscaler {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its replicas now.
    pub replicas: i64,
    /// The replicas recorded before the migration scaled it (its annotation), if any.
    pub original: Option<i64>,
}

/// The image every Cluster Autoscaler build runs (registry.k8s.io/autoscaling/cluster-autoscaler).
pub const AUTOSCALER_IMAGE: &str = "cluster-autoscaler";

/// The cluster's node groups: the managed ones by name, then the self-managed Auto Scaling
/// groups by name.
pub async fn node_groups(aws: &Aws, cluster: &str) -> Result<Vec<NodeGroup>> {
    // Managed and self-managed groups at once, and each group's reads beside the others': doctor
    // runs this on every cluster, and one group after another made it a chain of round trips
    // as long as the cluster has groups.
    let (managed, own) = tokio::join!(managed_groups(aws, cluster), super::asg::groups(aws, cluster));
    let mut out = managed?;
    out.extend(own?);
    Ok(out)
}

async fn managed_groups(aws: &Aws, cluster: &str) -> Result<Vec<NodeGroup>> {
    const WHAT: &str = "failed to read the cluster's node groups";
    let mut names: Vec<String> = Vec::new();
    let mut pages = aws.eks.list_nodegroups().cluster_name(cluster).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.or_aws(WHAT, "eks:ListNodegroups")?;
        names.extend(page.nodegroups().iter().cloned());
    }
    names.sort();
    let groups = names.iter().map(|name| async move {
        let got = aws
            .eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send()
            .await
            .or_aws(format!("failed to read node group {name}"), "eks:DescribeNodegroup")?;
        let Some(g) = got.nodegroup() else { return Ok(None) };
        let mut group = from_sdk(g);
        if let Some(spec) = g.launch_template() {
            group.template = super::template::read(aws, &spec.into()).await?;
        }
        Ok::<_, Error>(Some(group))
    });
    Ok(futures::future::try_join_all(groups).await?.into_iter().flatten().collect())
}

fn from_sdk(g: &aws_sdk_eks::types::Nodegroup) -> NodeGroup {
    let scaling = g.scaling_config().map_or(Scaling { min: 0, max: 0, desired: 0 }, |s| Scaling {
        min: s.min_size().unwrap_or(0),
        max: s.max_size().unwrap_or(0),
        desired: s.desired_size().unwrap_or(0),
    });
    let effect = |e: Option<&aws_sdk_eks::types::TaintEffect>| {
        match e.map(|e| e.as_str()).unwrap_or("NO_SCHEDULE") {
            "NO_EXECUTE" => "NoExecute",
            "PREFER_NO_SCHEDULE" => "PreferNoSchedule",
            _ => "NoSchedule",
        }
        .to_string()
    };
    let tags = g.tags().cloned().unwrap_or_default();
    NodeGroup {
        kind: GroupKind::Managed,
        name: g.nodegroup_name().unwrap_or_default().to_string(),
        arn: g.nodegroup_arn().unwrap_or_default().to_string(),
        instance_types: g.instance_types().to_vec(),
        capacity_type: g.capacity_type().map_or("ON_DEMAND", |c| c.as_str()).to_string(),
        ami_type: g.ami_type().map_or("AL2023_x86_64_STANDARD", |a| a.as_str()).to_string(),
        labels: g.labels().map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
        taints: g
            .taints()
            .iter()
            .map(|t| Taint {
                key: t.key().unwrap_or_default().to_string(),
                value: t.value().unwrap_or_default().to_string(),
                effect: effect(t.effect()),
            })
            .collect(),
        subnets: g.subnets().to_vec(),
        scaling,
        original: tags.get(record::GROUP_TAG).and_then(|v| Scaling::parse(v)),
        floor: tags.get(record::FLOOR_TAG).and_then(|v| Scaling::parse(v)),
        launch_template: g.launch_template().and_then(|l| l.name().or(l.id())).map(str::to_string),
        template: None,
        instances: Vec::new(),
    }
}

/// The Cluster Autoscaler Deployments (usually one), with what karpctl recorded on them.
pub async fn autoscalers(kube: &Kube) -> Result<Vec<Autoscaler>> {
    let mut out = Vec::new();
    for w in workloads_running(kube, AUTOSCALER_IMAGE).await?.into_iter().filter(|w| w.kind == "Deployment") {
        let obj = kube.get("apps/v1", "Deployment", Some(&w.namespace), &w.name).await?;
        let original = obj
            .as_ref()
            .and_then(|o| o.metadata.annotations.as_ref())
            .and_then(|a| a.get(record::AUTOSCALER_ANNOTATION))
            .and_then(|v| v.parse().ok());
        out.push(Autoscaler { namespace: w.namespace, name: w.name, replicas: w.replicas, original });
    }
    Ok(out)
}

/// What the drain reads: every node, pod and PodDisruptionBudget, as JSON.
#[derive(Debug, Clone, Default)]
pub struct Workloads {
    /// Nodes.
    pub nodes: Vec<Value>,
    /// Pods in every namespace.
    pub pods: Vec<Value>,
    /// PodDisruptionBudgets in every namespace.
    pub pdbs: Vec<Value>,
}

async fn all(kube: &Kube, api_version: &str, kind: &str) -> Result<Vec<Value>> {
    Ok(kube
        .list(api_version, kind, None, None)
        .await?
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

impl Workloads {
    /// Read them.
    pub async fn observe(kube: &Kube) -> Result<Workloads> {
        Ok(Workloads {
            nodes: all(kube, "v1", "Node").await?,
            pods: all(kube, "v1", "Pod").await?,
            pdbs: all(kube, "policy/v1", "PodDisruptionBudget").await?,
        })
    }

    /// The names of a node group's nodes, by name.
    pub fn group_nodes(&self, group: &NodeGroup) -> Vec<String> {
        let mut out: Vec<String> =
            self.nodes.iter().filter(|n| group.owns(n)).map(|n| str_at(n, "/metadata/name").to_string()).collect();
        out.sort();
        out
    }

    /// The pods a drain of `node` evicts: bound there, not finished, not deleting, not a
    /// DaemonSet's (it would come straight back) nor a mirror pod (the kubelet's own).
    pub fn evictable_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.pods.iter().filter(move |p| str_at(p, "/spec/nodeName") == node && evictable(p))
    }

    /// The PodDisruptionBudgets selecting a pod.
    pub fn pdbs_of<'a>(&'a self, pod: &'a Value) -> impl Iterator<Item = &'a Value> + 'a {
        self.pdbs.iter().filter(move |b| {
            str_at(b, "/metadata/namespace") == str_at(pod, "/metadata/namespace")
                && b.pointer("/spec/selector").is_some_and(|s| selects(s, pod))
        })
    }

    /// Pods with the same owner as `pod` (itself included), not deleting.
    pub fn siblings(&self, pod: &Value) -> usize {
        let owner = owner_uid(pod);
        self.pods
            .iter()
            .filter(|p| owner.is_some() && owner_uid(p) == owner && p.pointer("/metadata/deletionTimestamp").is_none())
            .count()
    }
}

/// A string at a JSON pointer, or "".
pub fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn owner_uid(pod: &Value) -> Option<String> {
    let r = pod.pointer("/metadata/ownerReferences/0")?;
    Some(format!("{}/{}", str_at(r, "/kind"), str_at(r, "/name")))
}

/// Whether a drain evicts this pod (see [`Workloads::evictable_on`]).
pub fn evictable(p: &Value) -> bool {
    let phase = str_at(p, "/status/phase");
    let daemon = p
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|o| str_at(o, "/kind") == "DaemonSet"));
    let mirror = p.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
    p.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null)
        && phase != "Succeeded"
        && phase != "Failed"
        && !daemon
        && !mirror
}

/// A LabelSelector (`matchLabels`, `matchExpressions` In/NotIn/Exists/DoesNotExist) against a
/// pod's labels.
pub fn selects(selector: &Value, pod: &Value) -> bool {
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let by_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let by_expressions = selector.get("matchExpressions").and_then(Value::as_array).is_none_or(|es| {
        es.iter().all(|e| {
            let key = str_at(e, "/key");
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match str_at(e, "/operator") {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        })
    });
    by_labels && by_expressions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let pod = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        assert!(selects(&json!({"matchLabels": {"app": "web"}}), &pod));
        assert!(!selects(&json!({"matchLabels": {"app": "db"}}), &pod));
        assert!(selects(&json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}), &pod));
        assert!(!selects(&json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}), &pod));
        assert!(selects(&json!({}), &pod), "an empty selector selects every pod");
    }

    #[test]
    fn daemonset_mirror_finished_and_deleting_pods_are_not_evicted() {
        let base = json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}});
        assert!(evictable(&base));
        let mut d = base.clone();
        d["metadata"]["ownerReferences"] = json!([{"kind": "DaemonSet", "name": "x"}]);
        assert!(!evictable(&d));
        let mut m = base.clone();
        m["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
        assert!(!evictable(&m));
        let mut f = base.clone();
        f["status"]["phase"] = json!("Succeeded");
        assert!(!evictable(&f));
        let mut g = base;
        g["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!evictable(&g));
    }
}
