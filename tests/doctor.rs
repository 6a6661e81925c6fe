//! `karpctl doctor` against the emulator: a healthy install passes; breaking exactly one piece
//! fails exactly the matching check with its hint, and exit code 3. Doctor never writes.

use crate::support;

use karpctl::Report;
use serde_json::Value;
use support::Env;

const C: &str = "doc";

async fn installed(args: &[&str]) -> Env {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    let mut init = vec!["init", "-c", C, "--yes"];
    init.extend_from_slice(args);
    env.run(&init).await.expect("init");
    env
}

async fn doctor(env: &Env, args: &[&str]) -> Report {
    env.recorder.clear();
    let mut all = vec!["doctor", "-c", C, "--only", "aws"];
    all.extend_from_slice(args);
    let report = env.run(&all).await.expect("doctor runs");
    assert!(env.recorder.writes().is_empty(), "doctor wrote: {:?}", env.recorder.writes());
    report
}

fn failing(report: &Report) -> Vec<(String, String, String)> {
    report.to_json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["message"].as_str().unwrap().to_string(),
                c["hint"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Exactly one failing check, whose id is `id`; returns its message and hint.
fn only_failure(report: &Report, id: &str) -> (String, String) {
    let f = failing(report);
    assert_eq!(f.len(), 1, "expected exactly {id} to fail, got {f:#?}\n{}", report.text);
    assert_eq!(f[0].0, id, "{}", report.text);
    assert_eq!(report.exit_code, 3);
    assert_eq!(report.to_json()["ok"], false);
    (f[0].1.clone(), f[0].2.clone())
}

#[tokio::test]
async fn a_healthy_install_passes() {
    let env = installed(&[]).await;
    let report = doctor(&env, &[]).await;
    assert_eq!(failing(&report), vec![], "{}", report.text);
    assert_eq!(report.exit_code, 0);
    let json = report.to_json();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["command"], "doctor");
    assert_eq!(json["ok"], true);
    let statuses: Vec<(String, String)> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), c["status"].as_str().unwrap().to_string()))
        .collect();
    for id in [
        "aws.credentials",
        "cluster.status",
        "cluster.kubernetes-version",
        "discovery.subnets",
        "discovery.security-groups",
    ] {
        assert!(statuses.contains(&(id.to_string(), "pass".to_string())), "{id} in {statuses:?}");
    }
    assert!(statuses.contains(&(format!("iam-role/KarpenterNodeRole-{C}"), "pass".into())));
    // `--only aws`: the cluster side is skipped, with that reason.
    assert!(statuses.contains(&("karpenter.controller".into(), "skip".into())));
    assert!(statuses.contains(&("helm-release/kube-system/karpenter".to_string(), "skip".into())));
    assert!(report.text.contains("✓ iam-role/KarpenterNodeRole-doc"), "{}", report.text);
}

#[tokio::test]
async fn nothing_installed_fails_with_init_as_the_fix_and_skips_dependants() {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API")).await;
    let report = doctor(&env, &[]).await;
    assert_eq!(report.exit_code, 3);
    let checks = report.to_json()["checks"].clone();
    let find = |id: &str| checks.as_array().unwrap().iter().find(|c| c["id"] == id).cloned().unwrap();
    let node = find(&format!("iam-role/KarpenterNodeRole-{C}"));
    assert_eq!(node["status"], "fail");
    assert_eq!(node["hint"], format!("run `karpctl init --cluster {C}` to create it"));
    // The instance profile needs the node role: reported as skipped, not as a second failure.
    let profile = find(&format!("iam-instance-profile/KarpenterNodeInstanceProfile-{C}"));
    assert_eq!(profile["status"], "skip");
    assert!(profile["message"].as_str().unwrap().contains("KarpenterNodeRole-doc, which is missing"));
}

#[tokio::test]
async fn a_detached_controller_policy_fails_the_controller_role() {
    let env = installed(&[]).await;
    let arn = format!("arn:aws:iam::{}:policy/KarpenterControllerZonalShiftPolicy-{C}", env.account);
    env.aws
        .iam
        .detach_role_policy()
        .role_name(format!("KarpenterControllerRole-{C}"))
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    let (msg, hint) = only_failure(&doctor(&env, &[]).await, &format!("iam-role/KarpenterControllerRole-{C}"));
    assert_eq!(msg, format!("policy KarpenterControllerZonalShiftPolicy-{C} not attached"));
    assert_eq!(hint, format!("run `karpctl init --cluster {C}` to repair it"));
}

#[tokio::test]
async fn an_edited_policy_document_fails_that_policy() {
    let env = installed(&[]).await;
    let arn = format!("arn:aws:iam::{}:policy/KarpenterControllerEKSIntegrationPolicy-{C}", env.account);
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"eks:*","Resource":"*"}]}"#;
    env.aws
        .iam
        .create_policy_version()
        .policy_arn(&arn)
        .policy_document(doc)
        .set_as_default(true)
        .send()
        .await
        .unwrap();
    let (msg, _) =
        only_failure(&doctor(&env, &[]).await, &format!("iam-policy/KarpenterControllerEKSIntegrationPolicy-{C}"));
    assert_eq!(msg, "policy document differs");
}

#[tokio::test]
async fn a_trust_subject_in_the_wrong_namespace_is_named() {
    let env = installed(&["--auth", "irsa"]).await;
    let role = format!("KarpenterControllerRole-{C}");
    let got = env.aws.iam.get_role().role_name(&role).send().await.unwrap();
    let doc = karpctl::resources::parse_policy(got.role().unwrap().assume_role_policy_document().unwrap()).unwrap();
    let edited = doc
        .to_string()
        .replace("system:serviceaccount:kube-system:karpenter", "system:serviceaccount:karpenter:karpenter");
    env.aws.iam.update_assume_role_policy().role_name(&role).policy_document(edited).send().await.unwrap();
    let (msg, hint) = only_failure(&doctor(&env, &["--auth", "irsa"]).await, &format!("iam-role/{role}"));
    assert_eq!(
        msg,
        "trust policy allows system:serviceaccount:karpenter:karpenter, not system:serviceaccount:kube-system:karpenter"
    );
    assert!(hint.contains("namespace"), "{hint}");
}

/// The Pod Identity trust policy karpctl wrote before it was scoped: any association in the
/// account could assume the role.
const UNSCOPED_POD_IDENTITY_TRUST: &str = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]}"#;

#[tokio::test]
async fn an_unscoped_pod_identity_trust_fails_and_init_scopes_it() {
    let env = installed(&[]).await;
    let role = format!("KarpenterControllerRole-{C}");
    let iam = &env.aws.iam;
    iam.update_assume_role_policy().role_name(&role).policy_document(UNSCOPED_POD_IDENTITY_TRUST).send().await.unwrap();
    let (msg, hint) = only_failure(&doctor(&env, &[]).await, &format!("iam-role/{role}"));
    assert!(msg.starts_with("trust policy is not scoped to SourceAccount="), "{msg}");
    assert!(
        msg.contains(&format!(
            "eks-cluster-name={C}, kubernetes-namespace=kube-system, kubernetes-service-account=karpenter"
        )),
        "{msg}"
    );
    assert!(hint.contains("karpctl init"), "{hint}");
    env.run(&["init", "-c", C, "--yes"]).await.expect("init repairs the trust");
    let got = iam.get_role().role_name(&role).send().await.unwrap();
    let doc = karpctl::resources::parse_policy(got.role().unwrap().assume_role_policy_document().unwrap()).unwrap();
    let cond = &doc["Statement"][0]["Condition"]["StringEquals"];
    assert_eq!(cond["aws:RequestTag/eks-cluster-name"], C);
    assert_eq!(cond["aws:RequestTag/kubernetes-namespace"], "kube-system");
    assert_eq!(cond["aws:RequestTag/kubernetes-service-account"], "karpenter");
    assert_eq!(cond["aws:SourceAccount"].as_str().map(str::len), Some(12));
    assert_eq!(failing(&doctor(&env, &[]).await), vec![]);
}

#[tokio::test]
async fn a_deleted_oidc_provider_fails_it_and_skips_nothing_else() {
    let env = installed(&["--auth", "irsa"]).await;
    let list = env.aws.iam.list_open_id_connect_providers().send().await.unwrap();
    let arn = list.open_id_connect_provider_list()[0].arn().unwrap().to_string();
    env.aws.iam.delete_open_id_connect_provider().open_id_connect_provider_arn(&arn).send().await.unwrap();
    let report = doctor(&env, &["--auth", "irsa"]).await;
    let (msg, hint) = only_failure(&report, &format!("oidc-provider/{}", arn.split_once("oidc-provider/").unwrap().1));
    assert_eq!(msg, "missing");
    assert!(hint.contains("--auth irsa"), "{hint}");
}

#[tokio::test]
async fn an_instance_profile_without_the_node_role_fails() {
    let env = installed(&[]).await;
    env.aws
        .iam
        .remove_role_from_instance_profile()
        .instance_profile_name(format!("KarpenterNodeInstanceProfile-{C}"))
        .role_name(format!("KarpenterNodeRole-{C}"))
        .send()
        .await
        .unwrap();
    let (msg, _) =
        only_failure(&doctor(&env, &[]).await, &format!("iam-instance-profile/KarpenterNodeInstanceProfile-{C}"));
    assert_eq!(msg, format!("does not hold role KarpenterNodeRole-{C}"));
}

#[tokio::test]
async fn a_deleted_access_entry_fails() {
    let env = installed(&[]).await;
    let principal = format!("arn:aws:iam::{}:role/KarpenterNodeRole-{C}", env.account);
    env.aws.eks.delete_access_entry().cluster_name(C).principal_arn(&principal).send().await.unwrap();
    let (msg, _) = only_failure(&doctor(&env, &[]).await, &format!("access-entry/{principal}"));
    assert_eq!(msg, "missing");
}

#[tokio::test]
async fn a_standard_access_entry_fails_with_the_fix() {
    let env = installed(&[]).await;
    let principal = format!("arn:aws:iam::{}:role/KarpenterNodeRole-{C}", env.account);
    env.aws.eks.delete_access_entry().cluster_name(C).principal_arn(&principal).send().await.unwrap();
    env.aws
        .eks
        .create_access_entry()
        .cluster_name(C)
        .principal_arn(&principal)
        .r#type("STANDARD")
        .kubernetes_groups("nodes")
        .send()
        .await
        .unwrap();
    let (msg, hint) = only_failure(&doctor(&env, &[]).await, &format!("access-entry/{principal}"));
    assert_eq!(msg, "type is STANDARD, not EC2_LINUX: nodes launch but never join");
    assert!(hint.contains("--adopt"), "{hint}");
}

#[tokio::test]
async fn removed_subnet_tags_fail_the_tag_and_the_zone_coverage() {
    let env = Env::new().await;
    let seeded = env.seed_cluster(C, Some("API")).await;
    env.run(&["init", "-c", C, "--yes"]).await.unwrap();
    let subnet = &seeded.subnet_ids[1];
    env.aws
        .ec2
        .delete_tags()
        .resources(subnet)
        .tags(aws_sdk_ec2::types::Tag::builder().key("karpenter.sh/discovery").build())
        .send()
        .await
        .unwrap();
    let report = doctor(&env, &[]).await;
    let f = failing(&report);
    let ids: Vec<&str> = f.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, vec![format!("ec2-tags/{subnet}").as_str(), "discovery.subnets"], "{}", report.text);
    assert_eq!(f[1].1, format!("no tagged subnet in {}b", support::REGION));
    assert_eq!(report.exit_code, 3);
}

#[tokio::test]
async fn a_deleted_rule_or_target_fails_that_rule() {
    let env = installed(&[]).await;
    let rule = format!("Karpenter-{C}-Rebalance");
    env.aws.events.remove_targets().rule(&rule).ids("KarpenterInterruptionQueueTarget").send().await.unwrap();
    let (msg, _) = only_failure(&doctor(&env, &[]).await, &format!("event-rule/{rule}"));
    assert_eq!(msg, "does not target the queue");
    env.aws.events.delete_rule().name(&rule).send().await.unwrap();
    let (msg, _) = only_failure(&doctor(&env, &[]).await, &format!("event-rule/{rule}"));
    assert_eq!(msg, "missing");
}

#[tokio::test]
async fn a_deleted_queue_policy_fails_the_queue() {
    let env = installed(&[]).await;
    let url = env.aws.sqs.get_queue_url().queue_name(C).send().await.unwrap().queue_url().unwrap().to_string();
    env.aws
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, "")
        .send()
        .await
        .unwrap();
    let (msg, _) = only_failure(&doctor(&env, &[]).await, &format!("sqs-queue/{C}"));
    assert_eq!(msg, "Policy differs");
}

#[tokio::test]
async fn an_old_karpenter_for_the_kubernetes_version_fails() {
    let env = installed(&[]).await;
    // 1.4 is outside karpctl's table: refused before any AWS call, unless explicitly allowed.
    let refused = env.run(&["doctor", "-c", C, "--only", "aws", "--karpenter-version", "1.4.0"]).await.unwrap_err();
    assert_eq!(refused.kind, karpctl::ErrorKind::InvalidInput);
    assert!(refused.hint.unwrap().contains("newest known: 1.14.1"));
    let report = doctor(&env, &["--karpenter-version", "1.4.0", "--allow-unknown-version"]).await;
    let (msg, hint) = only_failure(&report, "cluster.kubernetes-version");
    assert_eq!(msg, "Kubernetes 1.33 needs Karpenter 1.5.0 or later; the install uses 1.4.0");
    assert!(hint.contains("--karpenter-version 1.5.0"));
}

#[test]
fn binary_doctor_exit_code_is_3_on_failure_and_json_is_one_document() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(Env::default_account());
    rt.block_on(env.seed_cluster("doctor-bin", Some("API")));
    let out = support::karpctl_bin(&["doctor", "-c", "doctor-bin", "--only", "aws", "-o", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
}
