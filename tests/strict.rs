//! karpctl against AWS's eventual consistency and asynchrony, as the emulator's strict
//! behaviours model them (`support/moto_ext.py`, section "issue 12 (part a)", switched on per
//! account with `Env::strict`): the compiled binary, so its stderr (what it waits for) is seen.
//! Each test failed before karpctl learnt to wait.

use crate::support;

use std::process::Output;

use serde_json::json;
use support::faults::FaultConfig;
use support::proxy::Proxy;
use support::Env;

const C: &str = "demo";

async fn demo(strict: serde_json::Value) -> Env {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    env.strict(strict);
    env
}

/// Run the binary as `env`'s account with extra environment variables.
async fn karpctl(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> (Output, String) {
    let proxy = Proxy::start(&env.account, FaultConfig::latency(std::time::Duration::ZERO));
    let mut cmd = proxy.command(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run karpctl")).await.expect("binary run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// `init` (AWS side) must succeed; its stderr.
async fn init_succeeds(env: &Env) -> String {
    let emit = tempfile::tempdir().unwrap();
    let (out, stderr) = karpctl(env, &strs(&init(&emit)), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

fn init(emit: &tempfile::TempDir) -> Vec<String> {
    let dir = emit.path().to_str().expect("utf-8 temp dir").to_string();
    ["init", "-c", C, "--yes", "--emit", &dir].iter().map(|s| s.to_string()).collect()
}

/// `teardown`, reaching this test's stand-in cluster.
fn teardown(env: &Env) -> Vec<String> {
    ["teardown", "-c", C, "--yes"].iter().map(|s| s.to_string()).chain(env.cluster.args()).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn init_waits_visibly_for_iam_to_propagate_fresh_roles_to_eks() {
    // Long enough that a loaded machine's slow answer to CreateRole cannot outlast it.
    let env = demo(json!({"iam_propagation": 4})).await;
    let stderr = init_succeeds(&env).await;
    // The access entry (node role) and the Pod Identity association (controller role).
    assert!(stderr.contains("waiting for IAM to propagate role KarpenterNodeRole-demo to EKS ("), "{stderr}");
    assert!(stderr.contains("waiting for IAM to propagate role KarpenterControllerRole-demo to EKS ("), "{stderr}");
}

#[tokio::test]
async fn a_propagation_wait_ends_at_its_limit_in_one_line_with_a_hint() {
    let env = demo(json!({"iam_propagation": 60})).await;
    let emit = tempfile::tempdir().unwrap();
    let (out, stderr) = karpctl(&env, &strs(&init(&emit)), &[("KARPCTL_WAIT_PROPAGATION_SECS", "1")]).await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(error.starts_with("error: gave up waiting for IAM to propagate role Karpenter"), "{stderr}");
    assert!(stderr.contains("InvalidParameterException: The specified principalArn is invalid"), "{stderr}");
    assert!(stderr.contains("set KARPCTL_WAIT_PROPAGATION_SECS to change it"), "{stderr}");
}

#[tokio::test]
async fn init_waits_for_the_pod_identity_agent_to_become_active() {
    let env = demo(json!({"addon_create": 1.0})).await;
    let stderr = init_succeeds(&env).await;
    assert!(stderr.contains("waiting for the eks-pod-identity-agent add-on to settle ("), "{stderr}");
    let addon = env.aws.eks.describe_addon().cluster_name(C).addon_name("eks-pod-identity-agent").send().await;
    let status = addon.unwrap().addon().and_then(|a| a.status().cloned());
    assert_eq!(status.map(|s| s.as_str().to_string()).as_deref(), Some("ACTIVE"));
}

#[tokio::test]
async fn a_degraded_agent_fails_init_and_doctor_names_its_health_issues() {
    let env = demo(json!({"addon_create": 0.2, "addon_outcome": "DEGRADED"})).await;
    let emit = tempfile::tempdir().unwrap();
    let (out, stderr) = karpctl(&env, &strs(&init(&emit)), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: the eks-pod-identity-agent add-on is DEGRADED"), "{stderr}");
    assert!(stderr.contains("caused by: InsufficientNumberOfReplicas"), "{stderr}");
    let (out, stderr) = karpctl(&env, &["doctor", "-c", C, "--only", "aws"], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "doctor's exit code for failed checks\n{stdout}\n{stderr}");
    assert!(stdout.contains("add-on is DEGRADED: InsufficientNumberOfReplicas"), "{stdout}");
}

#[tokio::test]
async fn teardown_then_init_waits_for_the_deleting_add_on_the_queue_name_and_the_rules() {
    // Windows long enough to outlast the teardown's own run, on a machine busy with the rest of
    // the suite (4 s did not: the add-on was gone before the init looked).
    let mut strict = support::short_strict_windows();
    strict["queue_deleted_recently"] = json!(12);
    strict["addon_delete"] = json!(10);
    let env = demo(strict).await;
    let emit = tempfile::tempdir().unwrap();
    let (out, stderr) = karpctl(&env, &strs(&init(&emit)), &[]).await;
    assert_eq!(out.status.code(), Some(0), "first init: {stderr}");
    let (out, stderr) = karpctl(&env, &strs(&teardown(&env)), &[]).await;
    assert_eq!(out.status.code(), Some(0), "teardown: {stderr}");
    // RemoveTargets failed its first entries, then DeleteRule still saw them; IAM refused the
    // role deletes right after the detaches.
    assert!(stderr.contains("waiting for other changes to EventBridge rule "), "{stderr}");
    assert!(stderr.contains("waiting for other changes to role Karpenter"), "{stderr}");
    let (out, stderr) = karpctl(&env, &strs(&init(&emit)), &[]).await;
    assert_eq!(out.status.code(), Some(0), "init right after teardown: {stderr}");
    assert!(stderr.contains("waiting for SQS to release the name of the deleted queue demo ("), "{stderr}");
    assert!(stderr.contains("waiting for the previous eks-pod-identity-agent add-on (DELETING) to settle"), "{stderr}");
    let (out, stderr) = karpctl(&env, &strs(&init(&emit)), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing to do") || !stderr.contains("waiting"), "{stderr}");
}

#[tokio::test]
async fn concurrent_writes_to_one_role_wait_their_turn() {
    let env = demo(json!({"role_write_window": 0.05})).await;
    let stderr = init_succeeds(&env).await;
    assert!(stderr.contains("waiting for other changes to role Karpenter"), "{stderr}");
}

#[tokio::test]
async fn an_updating_cluster_is_worked_on_with_a_warning_and_a_failed_one_refused() {
    let env = demo(json!({})).await;
    env.set_cluster_status(C, "UPDATING");
    let emit = tempfile::tempdir().unwrap();
    let (out, stderr) = karpctl(&env, &strs(&init(&emit)), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: cluster demo is UPDATING"), "{stderr}");
    let (out, stderr) = karpctl(&env, &["doctor", "-c", C, "--only", "aws"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    let (out, stderr) = karpctl(&env, &strs(&teardown(&env)), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: cluster demo is UPDATING"), "{stderr}");
    for (status, hint) in [("FAILED", "failed to create"), ("DELETING", "being deleted"), ("CREATING", "wait until")] {
        env.set_cluster_status(C, status);
        for args in [init(&emit), teardown(&env)] {
            let args = strs(&args);
            let (out, stderr) = karpctl(&env, &args, &[]).await;
            assert_eq!(out.status.code(), Some(1), "{status} {args:?}: {stderr}");
            assert!(stderr.contains(&format!("cluster demo is {status}, not ACTIVE")), "{stderr}");
            assert!(stderr.contains(hint), "{status}: {stderr}");
        }
    }
}
