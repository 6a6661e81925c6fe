//! `karpctl teardown` against the emulator: after a full init plus Karpenter-style leftovers,
//! a second cluster's look-alikes and foreign resources, teardown removes exactly what karpctl
//! and Karpenter made for this cluster, a second run does nothing, a run stopped midway is
//! finished by the next, and a deleted cluster is still cleaned up.

use crate::support;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use karpctl::ErrorKind;
use support::Env;

const C: &str = "td";
const OTHER: &str = "other";

fn tags(pairs: &[(&str, &str)], kind: ResourceType) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(kind);
    for (k, v) in pairs {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    spec.build()
}

/// What Karpenter leaves for `cluster` when removed too early: an instance, a launch template
/// and an instance profile holding the node role. Returns (instance id, template id, profile).
async fn leftovers(env: &Env, cluster: &str) -> (String, String, String) {
    let ec2 = &env.aws.ec2;
    let image =
        ec2.describe_images().owners("amazon").send().await.unwrap().images()[0].image_id().unwrap().to_string();
    let cluster_tag = format!("kubernetes.io/cluster/{cluster}");
    let run = ec2
        .run_instances()
        .image_id(image)
        .min_count(1)
        .max_count(1)
        .tag_specifications(tags(
            &[("karpenter.sh/nodepool", "default"), (&cluster_tag, "owned")],
            ResourceType::Instance,
        ))
        .send()
        .await
        .unwrap();
    let instance = run.instances()[0].instance_id().unwrap().to_string();
    let lt = ec2
        .create_launch_template()
        .launch_template_name(format!("karpenter.k8s.aws/{cluster}-123"))
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder().instance_type("m5.large".into()).build(),
        )
        .tag_specifications(tags(&[("karpenter.k8s.aws/cluster", cluster)], ResourceType::LaunchTemplate))
        .send()
        .await
        .unwrap();
    let lt_id = lt.launch_template().unwrap().launch_template_id().unwrap().to_string();
    let profile = format!("{cluster}_1234567890");
    let iam = &env.aws.iam;
    // Where Karpenter puts them: /karpenter/<region>/<cluster>/<EC2NodeClass uid>/.
    iam.create_instance_profile()
        .instance_profile_name(&profile)
        .path(format!("/karpenter/{}/{cluster}/8a3f7c2e-0000-4000-8000-000000000001/", support::REGION))
        .tags(aws_sdk_iam::types::Tag::builder().key(&cluster_tag).value("owned").build().unwrap())
        .tags(
            aws_sdk_iam::types::Tag::builder().key("karpenter.k8s.aws/ec2nodeclass").value("default").build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name(&profile)
        .role_name(format!("KarpenterNodeRole-{cluster}"))
        .send()
        .await
        .unwrap();
    (instance, lt_id, profile)
}

async fn instance_state(env: &Env, id: &str) -> String {
    let out = env.aws.ec2.describe_instances().instance_ids(id).send().await.unwrap();
    out.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string()
}

async fn role_exists(env: &Env, name: &str) -> bool {
    env.aws.iam.get_role().role_name(name).send().await.is_ok()
}

async fn profile_exists(env: &Env, name: &str) -> bool {
    env.aws.iam.get_instance_profile().instance_profile_name(name).send().await.is_ok()
}

async fn queue_exists(env: &Env, name: &str) -> bool {
    env.aws.sqs.get_queue_url().queue_name(name).send().await.is_ok()
}

async fn rule_names(env: &Env) -> Vec<String> {
    let out = env.aws.events.list_rules().send().await.unwrap();
    out.rules().iter().filter_map(|r| r.name().map(str::to_string)).collect()
}

async fn discovery_value(env: &Env, resource: &str) -> Option<String> {
    let out = env
        .aws
        .ec2
        .describe_tags()
        .filters(aws_sdk_ec2::types::Filter::builder().name("resource-id").values(resource).build())
        .filters(aws_sdk_ec2::types::Filter::builder().name("key").values("karpenter.sh/discovery").build())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap();
    out.first().and_then(|t| t.value().map(str::to_string))
}

fn actions(report: &karpctl::Report) -> Vec<(String, String)> {
    report.to_json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["resource"].as_str().unwrap().to_string(), c["action"].as_str().unwrap().to_string()))
        .collect()
}

/// Two clusters installed by karpctl in one account, leftovers for both, and one subnet of
/// this cluster tagged before karpctl came (so not karpctl's tag to remove).
struct World {
    env: Env,
    seeded: support::SeededCluster,
    mine: (String, String, String),
    theirs: (String, String, String),
}

async fn world() -> World {
    let env = Env::new().await;
    let seeded = env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    env.aws
        .ec2
        .create_tags()
        .resources(&seeded.subnet_ids[0])
        .tags(Tag::builder().key("karpenter.sh/discovery").value(C).build())
        .send()
        .await
        .unwrap();
    env.seed_cluster(OTHER, Some("API")).await;
    env.run(&["init", "-c", C, "--yes"]).await.unwrap();
    env.run(&["init", "-c", OTHER, "--yes", "--no-interruption"]).await.unwrap();
    let mine = leftovers(&env, C).await;
    let theirs = leftovers(&env, OTHER).await;
    World { env, seeded, mine, theirs }
}

async fn assert_other_cluster_untouched(w: &World) {
    let env = &w.env;
    assert!(role_exists(env, &format!("KarpenterNodeRole-{OTHER}")).await);
    assert!(role_exists(env, &format!("KarpenterControllerRole-{OTHER}")).await);
    assert!(profile_exists(env, &format!("KarpenterNodeInstanceProfile-{OTHER}")).await);
    assert!(profile_exists(env, &w.theirs.2).await);
    assert_eq!(instance_state(env, &w.theirs.0).await, "running");
    let lts = env.aws.ec2.describe_launch_templates().launch_template_ids(&w.theirs.1).send().await.unwrap();
    assert_eq!(lts.launch_templates().len(), 1);
}

async fn assert_mine_gone(w: &World) {
    let env = &w.env;
    for role in [format!("KarpenterNodeRole-{C}"), format!("KarpenterControllerRole-{C}")] {
        assert!(!role_exists(env, &role).await, "{role} still exists");
    }
    let policies = env.aws.iam.list_policies().scope(aws_sdk_iam::types::PolicyScopeType::Local).into_paginator();
    let policies = policies.items().send().try_collect().await.unwrap();
    let left: Vec<&str> =
        policies.iter().filter_map(|p| p.policy_name()).filter(|n| n.ends_with(&format!("-{C}"))).collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!profile_exists(env, &format!("KarpenterNodeInstanceProfile-{C}")).await);
    assert!(!queue_exists(env, C).await);
    assert!(rule_names(env).await.iter().all(|r| !r.starts_with(&format!("Karpenter-{C}-"))));
    // Leftovers: terminated, deleted.
    assert_eq!(instance_state(env, &w.mine.0).await, "terminated");
    let lts = env.aws.ec2.describe_launch_templates().into_paginator().items().send().try_collect().await.unwrap();
    assert!(lts.iter().all(|t| t.launch_template_id() != Some(w.mine.1.as_str())));
    assert!(!profile_exists(env, &w.mine.2).await);
    // Discovery tags karpctl added are gone; the one that was there before stays.
    assert_eq!(discovery_value(env, &w.seeded.subnet_ids[0]).await.as_deref(), Some(C));
    assert_eq!(discovery_value(env, &w.seeded.subnet_ids[1]).await, None);
    assert_eq!(discovery_value(env, &w.seeded.security_group_id).await, None);
}

#[tokio::test]
async fn teardown_removes_exactly_what_karpctl_and_karpenter_made() {
    let w = world().await;
    let dry = w.env.run(&["teardown", "-c", C, "--dry-run"]).await.unwrap();
    assert!(w.env.recorder.writes().iter().all(|c| c.operation != "DeleteRole"), "dry run deleted");
    let planned = actions(&dry);
    assert!(planned.contains(&(format!("ec2-instance/{}", w.mine.0), "delete".into())), "{planned:?}");
    assert!(planned.contains(&(format!("ec2-tags/{}", w.seeded.subnet_ids[0]), "skip".into())), "{planned:?}");
    assert!(planned.contains(&("service-linked-role/AWSServiceRoleForEC2Spot".into(), "skip".into())));
    assert!(!planned.iter().any(|(r, _)| r.contains(OTHER) || r.contains(&w.theirs.0)), "{planned:?}");

    w.env.recorder.clear();
    let report = w.env.run(&["teardown", "-c", C, "--yes"]).await.unwrap();
    assert_eq!(report.to_json()["dry_run"], false);
    assert_mine_gone(&w).await;
    assert_other_cluster_untouched(&w).await;
    assert!(
        w.env
            .aws
            .iam
            .list_roles()
            .path_prefix("/aws-service-role/spot.amazonaws.com/")
            .send()
            .await
            .unwrap()
            .roles()
            .len()
            == 1
    );

    // A second run finds nothing of karpctl's and changes nothing.
    w.env.recorder.clear();
    let again = w.env.run(&["teardown", "-c", C, "--yes"]).await.unwrap();
    assert!(actions(&again).iter().all(|(_, a)| a != "delete"), "{:?}", actions(&again));
    assert!(w.env.recorder.writes().is_empty(), "{:?}", w.env.recorder.writes());
    assert!(again.text.contains("Nothing to remove"), "{}", again.text);
}

#[tokio::test]
async fn a_teardown_stopped_midway_is_finished_by_the_next() {
    for stop_after in [1, 4, 9] {
        let w = world().await;
        w.env.recorder.clear();
        *w.env.recorder.fail_after_writes.lock().unwrap() = Some(stop_after);
        let err = w.env.run(&["teardown", "-c", C, "--yes"]).await.unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert!(err.hint.as_deref().unwrap_or_default().contains("run teardown again"), "{err:?}");
        assert_eq!(w.env.recorder.writes().len(), stop_after);
        *w.env.recorder.fail_after_writes.lock().unwrap() = None;
        w.env.run(&["teardown", "-c", C, "--yes"]).await.unwrap();
        assert_mine_gone(&w).await;
        assert_other_cluster_untouched(&w).await;
    }
}

#[tokio::test]
async fn a_deleted_cluster_is_still_cleaned_up() {
    let w = world().await;
    w.env.aws.eks.delete_cluster().name(C).send().await.unwrap();
    let report = w.env.run(&["teardown", "-c", C, "--yes"]).await.unwrap();
    assert!(actions(&report).iter().any(|(r, a)| r == &format!("iam-role/KarpenterNodeRole-{C}") && a == "delete"));
    assert_mine_gone(&w).await;
    assert_other_cluster_untouched(&w).await;
}

#[tokio::test]
async fn keep_iam_keeps_roles_and_policies() {
    let w = world().await;
    let report = w.env.run(&["teardown", "-c", C, "--yes", "--keep-iam"]).await.unwrap();
    let a = actions(&report);
    assert!(a.contains(&(format!("iam-role/KarpenterNodeRole-{C}"), "skip".into())), "{a:?}");
    assert!(role_exists(&w.env, &format!("KarpenterNodeRole-{C}")).await);
    assert!(role_exists(&w.env, &format!("KarpenterControllerRole-{C}")).await);
    assert!(!queue_exists(&w.env, C).await);
}

#[tokio::test]
async fn foreign_resources_with_karpctls_names_are_left_alone() {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API")).await;
    // Made by someone else, with karpctl's names but without its tags.
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    env.aws
        .iam
        .create_role()
        .role_name(format!("KarpenterNodeRole-{C}"))
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
    env.aws.sqs.create_queue().queue_name(C).send().await.unwrap();
    let report = env.run(&["teardown", "-c", C, "--yes"]).await.unwrap();
    let a = actions(&report);
    assert!(a.contains(&(format!("iam-role/KarpenterNodeRole-{C}"), "skip".into())), "{a:?}");
    assert!(a.contains(&(format!("sqs-queue/{C}"), "skip".into())), "{a:?}");
    assert!(role_exists(&env, &format!("KarpenterNodeRole-{C}")).await);
    assert!(queue_exists(&env, C).await);
    assert!(env.recorder.writes().is_empty(), "{:?}", env.recorder.writes());
}

#[tokio::test]
async fn without_a_terminal_teardown_needs_yes() {
    let w = world().await;
    w.env.recorder.clear();
    let err = w.env.run(&["teardown", "-c", C]).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Refused);
    assert!(err.hint.unwrap().contains("--yes"));
    assert!(w.env.recorder.writes().is_empty());
}
