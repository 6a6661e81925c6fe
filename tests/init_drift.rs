//! `karpctl init` after the install was changed behind its back: each drift is repaired by
//! exactly one change (and exactly the writes that repair it), after which the account equals
//! a fresh install and a further run writes nothing. Also IAM's five-version limit, and
//! resources with karpctl's names that karpctl did not make (blocked, then `--adopt`).

use crate::support;

use aws_sdk_ec2::types::Tag as Ec2Tag;
use aws_sdk_sqs::types::QueueAttributeName;
use karpctl::resources::managed_policy::{version_record, VERSION_TAG};
use karpctl::resources::policy_eq;
use karpctl::ErrorKind;
use serde_json::{json, Value};
use support::install::{
    attached, changes, detail, ec2_tags, iam_tags, ownership, pending, policy_document, policy_versions,
    queue_attributes, queue_url, render, role_trust, snapshot, target, write_ops,
};
use support::{Env, SeededCluster};

const INIT: &[&str] = &["init", "-c", "demo", "--yes"];

/// An account with a fresh install on `demo`, and the snapshot of that install.
async fn installed() -> (Env, SeededCluster, Value) {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    env.run(INIT).await.unwrap();
    let baseline = snapshot(&env, &seeded).await;
    env.recorder.clear();
    (env, seeded, baseline)
}

/// The next `init` repairs exactly `resource` with `action`, saying `why`, by exactly the writes
/// `ops` (sorted); the account then equals the fresh install, and another run writes nothing.
async fn assert_repaired(
    env: &Env,
    seeded: &SeededCluster,
    baseline: &Value,
    resource: &str,
    action: &str,
    why: &str,
    ops: &[&str],
) {
    // A dry run shows the same single change and writes nothing.
    let dry = env.run(&["init", "-c", "demo", "--dry-run", "--detailed-exitcode"]).await.unwrap();
    assert_eq!(pending(&dry), [(resource.to_string(), action.to_string())]);
    assert_eq!(dry.exit_code, 3);
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());

    let report = env.run(INIT).await.unwrap();
    assert_eq!(pending(&report), [(resource.to_string(), action.to_string())]);
    let d = detail(&report, resource);
    assert!(d.contains(why), "detail {d:?} should say {why:?}");
    assert_eq!(write_ops(env), ops);
    assert_eq!(&snapshot(env, seeded).await, baseline);

    env.recorder.clear();
    let again = env.run(INIT).await.unwrap();
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
}

/// The plan (`init --dry-run`) and `doctor` show the drift of `resource` as a diff of its
/// document: the same `diff` on the change and on the check, whose `-` lines contain each of
/// `removed` and `+` lines each of `added`, printed under the resource's line in the text output.
async fn assert_diff(env: &Env, resource: &str, removed: &[&str], added: &[&str]) {
    let dry = env.run(&["init", "-c", "demo", "--dry-run"]).await.unwrap();
    let change = dry.to_json()["changes"].as_array().unwrap().iter().find(|c| c["resource"] == resource).cloned();
    let diff = change.and_then(|c| c["diff"].as_str().map(str::to_string)).expect("the change has a diff");
    let lines = |sign: char| diff.lines().filter(|l| l.starts_with(sign)).collect::<Vec<_>>().join("\n");
    for r in removed {
        assert!(lines('-').contains(r), "{r:?} should be removed in:\n{diff}");
    }
    for a in added {
        assert!(lines('+').contains(a), "{a:?} should be added in:\n{diff}");
    }
    if removed.is_empty() {
        assert_eq!(lines('-'), "", "nothing is removed:\n{diff}");
    }
    let row = dry.text.lines().position(|l| l.contains(resource) && l.contains("update")).expect("an update row");
    let under: Vec<&str> = dry.text.lines().skip(row + 1).take(diff.lines().count()).map(str::trim).collect();
    assert_eq!(under, diff.lines().map(str::trim).collect::<Vec<_>>(), "the diff is printed under its row");

    let doctor = env.run(&["doctor", "-c", "demo", "--only", "aws"]).await.unwrap();
    let check = doctor.to_json()["checks"].as_array().unwrap().iter().find(|c| c["id"] == resource).cloned().unwrap();
    assert_eq!(check["status"], "fail");
    assert_eq!(check["diff"].as_str(), Some(diff.as_str()), "doctor shows the same diff");
    assert!(doctor.text.contains(diff.lines().last().unwrap().trim()), "{}", doctor.text);
    env.recorder.clear();
}

fn lambda_trust() -> String {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
        .to_string()
}

#[tokio::test]
async fn a_changed_trust_policy_is_restored() {
    let (env, seeded, baseline) = installed().await;
    let name = "KarpenterControllerRole-demo";
    env.aws.iam.update_assume_role_policy().role_name(name).policy_document(lambda_trust()).send().await.unwrap();
    assert_eq!(role_trust(&env, name).await["Statement"][0]["Principal"]["Service"], "lambda.amazonaws.com");
    let id = format!("iam-role/{name}");
    assert_diff(&env, &id, &["Service: lambda.amazonaws.com"], &["Service: pods.eks.amazonaws.com", "sts:TagSession"])
        .await;
    assert_repaired(&env, &seeded, &baseline, &id, "update", "trust policy differs", &["UpdateAssumeRolePolicy"]).await;
    let (_, docs) = render(target(&env, "demo").await);
    assert!(policy_eq(&role_trust(&env, name).await, &docs.controller_trust));
}

#[tokio::test]
async fn a_detached_aws_managed_policy_is_attached_again() {
    let (env, seeded, baseline) = installed().await;
    let arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";
    env.aws.iam.detach_role_policy().role_name("KarpenterNodeRole-demo").policy_arn(arn).send().await.unwrap();
    assert!(!attached(&env, "KarpenterNodeRole-demo").await.contains(&arn.to_string()));
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        "iam-role/KarpenterNodeRole-demo",
        "update",
        "policy AmazonSSMManagedInstanceCore not attached",
        &["AttachRolePolicy"],
    )
    .await;
}

#[tokio::test]
async fn a_detached_controller_policy_is_attached_again() {
    let (env, seeded, baseline) = installed().await;
    let arn = format!("arn:aws:iam::{}:policy/KarpenterControllerInterruptionPolicy-demo", env.account);
    env.aws.iam.detach_role_policy().role_name("KarpenterControllerRole-demo").policy_arn(&arn).send().await.unwrap();
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        "iam-role/KarpenterControllerRole-demo",
        "update",
        "policy KarpenterControllerInterruptionPolicy-demo not attached",
        &["AttachRolePolicy"],
    )
    .await;
}

/// The NodeLifecycle policy with its first statement removed, as an edit in the console would.
async fn edited_policy(env: &Env) -> (String, String) {
    let (d, docs) = render(target(env, "demo").await);
    let (_, name, doc) = &docs.policies[0];
    let mut edited = doc.clone();
    edited["Statement"].as_array_mut().unwrap().remove(0);
    (d.policy_arn(name), edited.to_string())
}

#[tokio::test]
async fn a_policy_document_edited_in_the_console_is_restored_as_a_new_default_version() {
    let (env, seeded, baseline) = installed().await;
    let (arn, edited) = edited_policy(&env).await;
    env.aws
        .iam
        .create_policy_version()
        .policy_arn(&arn)
        .policy_document(&edited)
        .set_as_default(true)
        .send()
        .await
        .unwrap();
    assert_eq!(policy_versions(&env, &arn).await, [("v1".into(), false), ("v2".into(), true)]);
    let (_, docs) = render(target(&env, "demo").await);
    let sid = format!("- Sid: {}", docs.policies[0].2["Statement"][0]["Sid"].as_str().unwrap());
    let id = "iam-policy/KarpenterControllerNodeLifecyclePolicy-demo";
    assert_diff(&env, id, &[], &[&sid]).await;
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        "iam-policy/KarpenterControllerNodeLifecyclePolicy-demo",
        "update",
        "policy document differs",
        // The new version, then its record on the policy (managed_policy::VERSION_TAG).
        &["CreatePolicyVersion", "TagPolicy"],
    )
    .await;
    assert_eq!(policy_versions(&env, &arn).await, [("v1".into(), false), ("v2".into(), false), ("v3".into(), true)]);
    let (_, docs) = render(target(&env, "demo").await);
    assert!(policy_eq(&policy_document(&env, &arn).await, &docs.policies[0].2));
}

/// Five console edits: the fifth finds IAM's limit of five versions and deletes the oldest.
async fn five_edits(env: &Env, arn: &str, edited: &str) {
    let iam = &env.aws.iam;
    for _ in 0..4 {
        iam.create_policy_version().policy_arn(arn).policy_document(edited).set_as_default(true).send().await.unwrap();
    }
    let sixth = iam.create_policy_version().policy_arn(arn).policy_document(edited).set_as_default(true).send().await;
    assert!(sixth.is_err(), "the emulator enforces IAM's limit of five versions");
    iam.delete_policy_version().policy_arn(arn).version_id("v1").send().await.unwrap();
    iam.create_policy_version().policy_arn(arn).policy_document(edited).set_as_default(true).send().await.unwrap();
}

#[tokio::test]
async fn after_five_edits_the_oldest_non_default_version_makes_room() {
    let (env, seeded, baseline) = installed().await;
    let (arn, edited) = edited_policy(&env).await;
    five_edits(&env, &arn, &edited).await;
    let versions = |ids: &[&str], default: &str| -> Vec<(String, bool)> {
        ids.iter().map(|v| (v.to_string(), *v == default)).collect()
    };
    assert_eq!(policy_versions(&env, &arn).await, versions(&["v2", "v3", "v4", "v5", "v6"], "v6"));
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        "iam-policy/KarpenterControllerNodeLifecyclePolicy-demo",
        "update",
        "policy document differs",
        &["CreatePolicyVersion", "DeletePolicyVersion", "TagPolicy"],
    )
    .await;
    assert_eq!(policy_versions(&env, &arn).await, versions(&["v3", "v4", "v5", "v6", "v7"], "v7"));
}

#[tokio::test]
async fn the_oldest_version_stays_when_it_is_the_default() {
    let (env, seeded, baseline) = installed().await;
    let (arn, edited) = edited_policy(&env).await;
    five_edits(&env, &arn, &edited).await;
    env.aws.iam.set_default_policy_version().policy_arn(&arn).version_id("v2").send().await.unwrap();
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        "iam-policy/KarpenterControllerNodeLifecyclePolicy-demo",
        "update",
        "policy document differs",
        &["CreatePolicyVersion", "DeletePolicyVersion", "TagPolicy"],
    )
    .await;
    let ids: Vec<String> = policy_versions(&env, &arn).await.into_iter().map(|(v, _)| v).collect();
    assert_eq!(ids, ["v2", "v4", "v5", "v6", "v7"], "v3, the oldest non-default version, made room");
}

#[tokio::test]
async fn a_removed_discovery_tag_is_put_back() {
    let (env, seeded, baseline) = installed().await;
    let subnet = &seeded.subnet_ids[1];
    let tag = Ec2Tag::builder().key("karpenter.sh/discovery").build();
    env.aws.ec2.delete_tags().resources(subnet).tags(tag).send().await.unwrap();
    assert!(!ec2_tags(&env, subnet).await.contains_key("karpenter.sh/discovery"));
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        &format!("ec2-tags/{subnet}"),
        "update",
        "karpenter.sh/discovery",
        &["CreateTags"],
    )
    .await;
    assert_eq!(ec2_tags(&env, subnet).await["karpenter.sh/discovery"], "demo");
}

#[tokio::test]
async fn a_deleted_rule_target_is_put_back() {
    let (env, seeded, baseline) = installed().await;
    let rule = "Karpenter-demo-Rebalance";
    env.aws.events.remove_targets().rule(rule).ids("KarpenterInterruptionQueueTarget").send().await.unwrap();
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        &format!("event-rule/{rule}"),
        "update",
        "does not target the queue",
        &["PutTargets"],
    )
    .await;
}

#[tokio::test]
async fn a_disabled_rule_is_enabled_again() {
    let (env, seeded, baseline) = installed().await;
    let rule = "Karpenter-demo-InstanceStateChange";
    env.aws.events.disable_rule().name(rule).send().await.unwrap();
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        &format!("event-rule/{rule}"),
        "update",
        "rule is disabled",
        &["PutRule"],
    )
    .await;
}

#[tokio::test]
async fn a_changed_event_pattern_is_restored() {
    let (env, seeded, baseline) = installed().await;
    let rule = "Karpenter-demo-ScheduledChange";
    let pattern = json!({"source": ["aws.health"], "detail-type": ["Something Else"]});
    env.aws.events.put_rule().name(rule).event_pattern(pattern.to_string()).send().await.unwrap();
    let id = format!("event-rule/{rule}");
    assert_diff(&env, &id, &["- Something Else"], &["- AWS Health Event"]).await;
    assert_repaired(&env, &seeded, &baseline, &id, "update", "event pattern differs", &["PutRule"]).await;
}

#[tokio::test]
async fn a_deleted_rule_is_created_again() {
    // A rule that is gone is a `create` (the contract: it does not exist and will be created),
    // and only that rule is touched.
    let (env, seeded, baseline) = installed().await;
    let rule = "Karpenter-demo-SpotInterruption";
    env.aws.events.remove_targets().rule(rule).ids("KarpenterInterruptionQueueTarget").send().await.unwrap();
    env.aws.events.delete_rule().name(rule).send().await.unwrap();
    assert_repaired(&env, &seeded, &baseline, &format!("event-rule/{rule}"), "create", "", &["PutRule", "PutTargets"])
        .await;
}

#[tokio::test]
async fn a_changed_queue_attribute_is_restored() {
    let (env, seeded, baseline) = installed().await;
    let url = queue_url(&env, "demo").await;
    let sqs = &env.aws.sqs;
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .unwrap();
    assert_diff(&env, "sqs-queue/demo", &["MessageRetentionPeriod: '1209600'"], &["MessageRetentionPeriod: '300'"])
        .await;
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        "sqs-queue/demo",
        "update",
        "MessageRetentionPeriod differs",
        &["SetQueueAttributes"],
    )
    .await;
    assert_eq!(queue_attributes(&env, &url).await["MessageRetentionPeriod"], "300");
}

#[tokio::test]
async fn a_changed_queue_policy_is_restored() {
    let (env, seeded, baseline) = installed().await;
    let url = queue_url(&env, "demo").await;
    let open = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:*", "Resource": "*"}]});
    env.aws
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::Policy, open.to_string())
        .send()
        .await
        .unwrap();
    assert_diff(&env, "sqs-queue/demo", &["Resource: '*'"], &["- events.amazonaws.com", "Action: sqs:SendMessage"])
        .await;
    assert_repaired(&env, &seeded, &baseline, "sqs-queue/demo", "update", "Policy differs", &["SetQueueAttributes"])
        .await;
}

#[tokio::test]
async fn a_role_taken_out_of_the_instance_profile_is_put_back() {
    let (env, seeded, baseline) = installed().await;
    let profile = "KarpenterNodeInstanceProfile-demo";
    env.aws
        .iam
        .remove_role_from_instance_profile()
        .instance_profile_name(profile)
        .role_name("KarpenterNodeRole-demo")
        .send()
        .await
        .unwrap();
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        &format!("iam-instance-profile/{profile}"),
        "update",
        "does not hold role KarpenterNodeRole-demo",
        &["AddRoleToInstanceProfile"],
    )
    .await;
}

#[tokio::test]
async fn a_pod_identity_association_pointing_elsewhere_is_pointed_back() {
    let (env, seeded, baseline) = installed().await;
    let eks = &env.aws.eks;
    let list = eks.list_pod_identity_associations().cluster_name("demo").send().await.unwrap();
    let id = list.associations()[0].association_id().unwrap().to_string();
    let other = format!("arn:aws:iam::{}:role/SomethingElse", env.account);
    eks.update_pod_identity_association()
        .cluster_name("demo")
        .association_id(&id)
        .role_arn(&other)
        .send()
        .await
        .unwrap();
    assert_repaired(
        &env,
        &seeded,
        &baseline,
        "pod-identity-association/kube-system/karpenter",
        "update",
        &format!("uses role {other}"),
        &["UpdatePodIdentityAssociation"],
    )
    .await;
}

#[tokio::test]
async fn a_foreign_role_blocks_init_and_adopt_takes_it_over() {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    let name = "KarpenterNodeRole-demo";
    env.aws.iam.create_role().role_name(name).assume_role_policy_document(lambda_trust()).send().await.unwrap();

    for args in [INIT, &["init", "-c", "demo", "--dry-run"]] {
        let err = env.run(args).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Foreign, "{args:?}");
        assert_eq!(err.exit_code(), 1);
        assert!(err.message.contains(&format!("iam-role/{name}")), "{}", err.message);
        assert!(err.hint.as_deref().unwrap_or_default().contains("--adopt"), "{:?}", err.hint);
    }
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
    assert_eq!(role_trust(&env, name).await["Statement"][0]["Principal"]["Service"], "lambda.amazonaws.com");

    let report = env.run(&["init", "-c", "demo", "--yes", "--adopt"]).await.unwrap();
    assert!(changes(&report).contains(&(format!("iam-role/{name}"), "adopt".into())));
    let d = detail(&report, &format!("iam-role/{name}"));
    assert!(d.starts_with("tag as karpctl's; trust policy differs"), "{d}");
    let role = env.aws.iam.get_role().role_name(name).send().await.unwrap();
    assert_eq!(iam_tags(role.role().unwrap().tags()), ownership("demo"));
    assert_eq!(attached(&env, name).await.len(), 4);

    // Taken over: the account now holds exactly what a clean install makes, and it is karpctl's.
    let clean = Env::new().await;
    let clean_seeded = clean.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    clean.run(INIT).await.unwrap();
    assert_eq!(snapshot(&env, &seeded).await, snapshot(&clean, &clean_seeded).await);
    env.recorder.clear();
    let again = env.run(INIT).await.unwrap();
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
}

#[tokio::test]
async fn an_adopted_policy_with_the_wanted_document_gets_its_record_and_is_not_read_again() {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    let (d, docs) = render(target(&env, "demo").await);
    let (_, name, doc) = &docs.policies[0];
    // Made by hand with exactly the document karpctl wants, and no tags.
    env.aws.iam.create_policy().policy_name(name).policy_document(doc.to_string()).send().await.unwrap();
    let err = env.run(INIT).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Foreign);
    assert!(err.message.contains(&format!("iam-policy/{name}")), "{}", err.message);

    let report = env.run(&["init", "-c", "demo", "--yes", "--adopt"]).await.unwrap();
    assert!(changes(&report).contains(&(format!("iam-policy/{name}"), "adopt".into())));
    // Ownership and, the document being the wanted one, the record of its version.
    let got = env.aws.iam.get_policy().policy_arn(d.policy_arn(name)).send().await.unwrap();
    let mut tags = ownership("demo");
    tags.insert(VERSION_TAG.to_string(), version_record("v1", &doc.to_string()));
    assert_eq!(iam_tags(got.policy().unwrap().tags()), tags);
    let clean = Env::new().await;
    let clean_seeded = clean.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    clean.run(INIT).await.unwrap();
    assert_eq!(snapshot(&env, &seeded).await, snapshot(&clean, &clean_seeded).await);

    // The record answers for the document: the next run reads no policy version at all.
    env.recorder.clear();
    let again = env.run(INIT).await.unwrap();
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
    let calls: Vec<String> = env.recorder.calls().into_iter().map(|c| c.operation).collect();
    assert!(!calls.iter().any(|c| c == "GetPolicyVersion"), "{calls:?}");
    assert!(calls.iter().any(|c| c == "GetPolicy"), "{calls:?}");
}

#[tokio::test]
async fn a_standard_access_entry_blocks_init_and_adopt_replaces_it_with_ec2_linux() {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", Some("API")).await;
    let principal = format!("arn:aws:iam::{}:role/KarpenterNodeRole-demo", env.account);
    let eks = &env.aws.eks;
    eks.create_access_entry()
        .cluster_name("demo")
        .principal_arn(&principal)
        .r#type("STANDARD")
        .kubernetes_groups("karpenter-nodes")
        .send()
        .await
        .unwrap();
    let id = format!("access-entry/{principal}");

    let err = env.run(INIT).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Foreign);
    assert!(err.message.contains(&id), "{}", err.message);
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());

    let report = env.run(&["init", "-c", "demo", "--yes", "--adopt"]).await.unwrap();
    assert!(changes(&report).contains(&(id.clone(), "adopt".into())));
    assert!(detail(&report, &id).contains("type is STANDARD, not EC2_LINUX"), "{}", detail(&report, &id));
    let ops = write_ops(&env);
    assert_eq!(
        ops.iter().filter(|o| o.contains("AccessEntry")).collect::<Vec<_>>(),
        ["CreateAccessEntry", "DeleteAccessEntry"]
    );
    let state = snapshot(&env, &seeded).await;
    let entry = &state["access_entries"]["arn:aws:iam::ACCOUNT:role/KarpenterNodeRole-demo"];
    assert_eq!(entry["type"], "EC2_LINUX");
    assert_eq!(entry["groups"], json!(["system:nodes"]));
    assert_eq!(entry["tags"], json!(ownership("demo")));

    env.recorder.clear();
    let again = env.run(INIT).await.unwrap();
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
}
