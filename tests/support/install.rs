//! Reading an install back from an emulator account, for the `init` tests: the documents karpctl
//! should have written (rendered by its own renderer from the cluster's facts, so tests do not
//! hand-copy them), the report's `changes`, and a normalized snapshot of every resource an
//! install consists of, comparable across accounts.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use aws_sdk_iam::types::PolicyScopeType;
use aws_sdk_sqs::types::QueueAttributeName;
use karpctl::desired::{AuthMode, Desired, Partition, Target, DEFAULT_KARPENTER_VERSION};
use karpctl::render::Documents;
use karpctl::resources::managed_policy::VERSION_TAG;
use karpctl::resources::parse_policy;
use serde_json::{json, Value};

use super::{Env, SeededCluster, REGION};

/// The report's `changes` as (resource, action) pairs, in the report's order.
pub fn changes(report: &karpctl::Report) -> Vec<(String, String)> {
    report.to_json()["changes"]
        .as_array()
        .expect("changes is an array")
        .iter()
        .map(|c| (c["resource"].as_str().unwrap().to_string(), c["action"].as_str().unwrap().to_string()))
        .collect()
}

/// The changes that write something (neither `none` nor `skip`).
pub fn pending(report: &karpctl::Report) -> Vec<(String, String)> {
    changes(report).into_iter().filter(|(_, a)| a != "none" && a != "skip").collect()
}

/// The `detail` of one resource's change.
pub fn detail(report: &karpctl::Report, resource: &str) -> String {
    report.to_json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["resource"] == resource)
        .unwrap_or_else(|| panic!("no change for {resource}"))["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The operation names of the mutating calls karpctl sent, sorted.
pub fn write_ops(env: &Env) -> Vec<String> {
    let mut ops: Vec<String> = env.recorder.writes().into_iter().map(|c| c.operation).collect();
    ops.sort();
    ops
}

/// The target karpctl computes for `cluster` in this account with default options (the issuer
/// read from the emulator, as discovery does).
pub async fn target(env: &Env, cluster: &str) -> Target {
    let described = env.aws.eks.describe_cluster().name(cluster).send().await.expect("describe cluster");
    let issuer = described.cluster().and_then(|c| c.identity()).and_then(|i| i.oidc()).and_then(|o| o.issuer());
    Target {
        cluster: cluster.to_string(),
        account: env.account.clone(),
        region: REGION.to_string(),
        partition: Partition::Aws,
        issuer: issuer.map(str::to_string),
        namespace: "kube-system".to_string(),
        auth: AuthMode::PodIdentity,
        karpenter_version: DEFAULT_KARPENTER_VERSION.to_string(),
        interruption: true,
        default_nodepool: true,
    }
}

/// Names, ARNs and rendered documents for a target.
pub fn render(target: Target) -> (Desired, Documents) {
    let d = Desired::new(target).expect("valid target");
    let docs = Documents::render(&d).expect("render");
    (d, docs)
}

fn tag_map<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    tags.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// IAM tags as a sorted map.
pub fn iam_tags(tags: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    tag_map(tags.iter().map(|t| (t.key(), t.value())))
}

/// karpctl's ownership tags for a cluster.
pub fn ownership(cluster: &str) -> BTreeMap<String, String> {
    tag_map([("karpctl.io/managed-by", "karpctl"), ("karpctl.io/cluster", cluster)])
}

/// A role's trust policy, parsed.
pub async fn role_trust(env: &Env, name: &str) -> Value {
    let role = env.aws.iam.get_role().role_name(name).send().await.expect("get role");
    parse_policy(role.role().and_then(|r| r.assume_role_policy_document()).expect("trust")).expect("trust is JSON")
}

/// The ARNs attached to a role, sorted.
pub async fn attached(env: &Env, name: &str) -> Vec<String> {
    let out = env.aws.iam.list_attached_role_policies().role_name(name).into_paginator().items().send();
    let out = out.try_collect().await.expect("list attached");
    let mut arns: Vec<String> = out.iter().filter_map(|p| p.policy_arn()).map(String::from).collect();
    arns.sort();
    arns
}

/// A managed policy's default version document, parsed.
pub async fn policy_document(env: &Env, arn: &str) -> Value {
    let p = env.aws.iam.get_policy().policy_arn(arn).send().await.expect("get policy");
    let version = p.policy().and_then(|p| p.default_version_id()).expect("default version").to_string();
    let v = env.aws.iam.get_policy_version().policy_arn(arn).version_id(version).send().await.expect("get version");
    parse_policy(v.policy_version().and_then(|v| v.document()).expect("document")).expect("policy is JSON")
}

/// (version id, is default) of a managed policy, in IAM's order.
pub async fn policy_versions(env: &Env, arn: &str) -> Vec<(String, bool)> {
    let out = env.aws.iam.list_policy_versions().policy_arn(arn).into_paginator().items().send();
    let out = out.try_collect().await.expect("list versions");
    out.iter().map(|v| (v.version_id().unwrap_or_default().to_string(), v.is_default_version())).collect()
}

/// The interruption queue's URL.
pub async fn queue_url(env: &Env, name: &str) -> String {
    let out = env.aws.sqs.get_queue_url().queue_name(name).send().await.expect("queue url");
    out.queue_url().expect("url").to_string()
}

/// Every attribute of a queue.
pub async fn queue_attributes(env: &Env, url: &str) -> BTreeMap<String, String> {
    let out = env
        .aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes");
    out.attributes().into_iter().flatten().map(|(k, v)| (k.as_str().to_string(), v.clone())).collect()
}

/// The tags on an EC2 resource.
pub async fn ec2_tags(env: &Env, id: &str) -> BTreeMap<String, String> {
    let out = env
        .aws
        .ec2
        .describe_tags()
        .filters(Filter::builder().name("resource-id").values(id).build())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("describe tags");
    out.iter().map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect()
}

/// Everything an install consists of in this account, with the account id and the seeded
/// subnet and security group ids replaced by placeholders, so that two accounts' installs
/// compare equal when they are the same install. Policy version counts are left out (they
/// record history, not state).
pub async fn snapshot(env: &Env, seeded: &SeededCluster) -> Value {
    let iam = &env.aws.iam;
    let mut roles = BTreeMap::new();
    let mut service_linked = Vec::new();
    for r in &iam.list_roles().into_paginator().items().send().try_collect().await.expect("list roles") {
        let name = r.role_name().to_string();
        if r.path().starts_with("/aws-service-role/") {
            service_linked.push(r.path().to_string());
            continue;
        }
        let got = iam.get_role().role_name(&name).send().await.expect("get role");
        let role = got.role().expect("role");
        roles.insert(
            name.clone(),
            json!({"trust": role_trust(env, &name).await, "policies": attached(env, &name).await, "tags": iam_tags(role.tags())}),
        );
    }
    service_linked.sort();
    let mut policies = BTreeMap::new();
    let local = iam.list_policies().scope(PolicyScopeType::Local).into_paginator().items().send();
    for p in &local.try_collect().await.expect("list policies") {
        let arn = p.arn().expect("arn").to_string();
        let got = iam.get_policy().policy_arn(&arn).send().await.expect("get policy");
        let mut tags = iam_tags(got.policy().map(|p| p.tags()).unwrap_or_default());
        // The record names the default version and the document's hash, which differs with the
        // account the document names: checked to name the default version and to be a hash.
        if let Some(record) = tags.get_mut(VERSION_TAG) {
            let default = got.policy().and_then(|p| p.default_version_id()).unwrap_or_default();
            let hash = record.strip_prefix(&format!("{default}:")).unwrap_or_default();
            assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{p:?}: record {record}");
            *record = "default-version:sha256".into();
        }
        policies.insert(
            p.policy_name().expect("name").to_string(),
            json!({"document": policy_document(env, &arn).await, "tags": tags}),
        );
    }
    let mut profiles = BTreeMap::new();
    for p in &iam.list_instance_profiles().into_paginator().items().send().try_collect().await.expect("list profiles") {
        let got = iam.get_instance_profile().instance_profile_name(p.instance_profile_name()).send().await.unwrap();
        let p = got.instance_profile().expect("profile");
        let roles: Vec<&str> = p.roles().iter().map(|r| r.role_name()).collect();
        profiles.insert(p.instance_profile_name().to_string(), json!({"roles": roles, "tags": iam_tags(p.tags())}));
    }
    let mut oidc = BTreeMap::new();
    for p in iam.list_open_id_connect_providers().send().await.expect("list oidc").open_id_connect_provider_list() {
        let arn = p.arn().expect("arn").to_string();
        let got = iam.get_open_id_connect_provider().open_id_connect_provider_arn(&arn).send().await.unwrap();
        oidc.insert(arn, json!({"client_ids": got.client_id_list(), "tags": iam_tags(got.tags())}));
    }
    let mut queues = BTreeMap::new();
    for url in env.aws.sqs.list_queues().send().await.expect("list queues").queue_urls() {
        let attrs = queue_attributes(env, url).await;
        let tags = env.aws.sqs.list_queue_tags().queue_url(url).send().await.expect("queue tags");
        let policy = attrs.get("Policy").map(|p| parse_policy(p).expect("queue policy is JSON"));
        queues.insert(
            url.rsplit('/').next().unwrap().to_string(),
            json!({
                "MessageRetentionPeriod": attrs.get("MessageRetentionPeriod"),
                "SqsManagedSseEnabled": attrs.get("SqsManagedSseEnabled"),
                "Policy": policy,
                "tags": tags.tags().cloned().unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
            }),
        );
    }
    let ev = &env.aws.events;
    let mut rules = BTreeMap::new();
    for r in ev.list_rules().send().await.expect("list rules").rules() {
        let name = r.name().expect("name").to_string();
        let got = ev.describe_rule().name(&name).send().await.expect("describe rule");
        let targets = ev.list_targets_by_rule().rule(&name).send().await.expect("targets");
        let targets: Vec<Value> = targets.targets().iter().map(|t| json!({"id": t.id(), "arn": t.arn()})).collect();
        let tags = ev.list_tags_for_resource().resource_arn(got.arn().unwrap()).send().await.expect("rule tags");
        let pattern: Value = serde_json::from_str(got.event_pattern().expect("pattern")).expect("pattern is JSON");
        rules.insert(
            name,
            json!({
                "pattern": pattern,
                "state": got.state().map(|s| s.as_str()),
                "targets": targets,
                "tags": tag_map(tags.tags().iter().map(|t| (t.key(), t.value()))),
            }),
        );
    }
    let eks = &env.aws.eks;
    let cluster = &seeded.name;
    let mut entries = BTreeMap::new();
    // A CONFIG_MAP cluster refuses the access entry APIs: no entries.
    if let Ok(list) =
        eks.list_access_entries().cluster_name(cluster).into_paginator().items().send().try_collect().await
    {
        for principal in &list {
            let got = eks.describe_access_entry().cluster_name(cluster).principal_arn(principal).send().await.unwrap();
            let e = got.access_entry().expect("entry");
            let tags: BTreeMap<_, _> = e.tags().cloned().unwrap_or_default().into_iter().collect();
            entries.insert(
                principal.clone(),
                json!({"type": e.r#type(), "username": e.username(), "groups": e.kubernetes_groups(), "tags": tags}),
            );
        }
    }
    let mut associations = Vec::new();
    let list = eks.list_pod_identity_associations().cluster_name(cluster).into_paginator().items().send();
    for a in &list.try_collect().await.expect("list associations") {
        let got = eks
            .describe_pod_identity_association()
            .cluster_name(cluster)
            .association_id(a.association_id().unwrap())
            .send()
            .await
            .unwrap();
        let a = got.association().expect("association");
        let tags: BTreeMap<_, _> = a.tags().cloned().unwrap_or_default().into_iter().collect();
        associations.push(json!({
            "namespace": a.namespace(), "serviceAccount": a.service_account(), "roleArn": a.role_arn(), "tags": tags,
        }));
    }
    let mut addons = BTreeMap::new();
    let list = eks.list_addons().cluster_name(cluster).into_paginator().items().send();
    for name in &list.try_collect().await.expect("list add-ons") {
        let got = eks.describe_addon().cluster_name(cluster).addon_name(name).send().await.expect("describe add-on");
        let a = got.addon().expect("add-on");
        let tags: BTreeMap<_, _> = a.tags().cloned().unwrap_or_default().into_iter().collect();
        addons.insert(name.clone(), json!({"status": a.status().map(|s| s.as_str()), "tags": tags}));
    }
    let mut tagged = BTreeMap::new();
    for (i, id) in seeded.subnet_ids.iter().enumerate() {
        tagged.insert(format!("subnet-{i}"), ec2_tags(env, id).await);
    }
    tagged.insert("cluster-sg".to_string(), ec2_tags(env, &seeded.security_group_id).await);
    let all = json!({
        "roles": roles,
        "service_linked_roles": service_linked,
        "policies": policies,
        "instance_profiles": profiles,
        "oidc_providers": oidc,
        "queues": queues,
        "rules": rules,
        "access_entries": entries,
        "pod_identity_associations": associations,
        "addons": addons,
        "ec2_tags": tagged,
    });
    let mut text = all.to_string().replace(&env.account, "ACCOUNT");
    for (i, id) in seeded.subnet_ids.iter().enumerate() {
        text = text.replace(id, &format!("SUBNET{i}"));
    }
    text = text.replace(&seeded.security_group_id, "CLUSTER_SG");
    serde_json::from_str(&text).expect("snapshot")
}
