//! Cluster discovery against the emulator: found, not found, wrong region, not ACTIVE, Auto Mode,
//! and the binary's one-line errors and exit codes.

mod support;

use karpctl::aws::{Aws, AwsOptions};
use karpctl::cluster::{self, ClusterAuth};
use karpctl::ErrorKind;
use support::{karpctl_bin, Env, REGION};

async fn aws_in(env: &Env, region: &str) -> Aws {
    let opts =
        AwsOptions { region: Some(region.into()), profile: None, endpoint_url: Some(support::emulator().url.clone()) };
    Aws::connect(&opts, &env.hooks()).await.unwrap()
}

#[tokio::test]
async fn discovers_every_fact_of_a_cluster() {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    let info = cluster::discover(&aws_in(&env, REGION).await, "demo").await.unwrap();
    assert_eq!(info.name, "demo");
    assert_eq!(info.region, REGION);
    assert_eq!(info.caller.account, env.account);
    assert_eq!(info.caller.partition.as_str(), "aws");
    assert_eq!(info.status, "ACTIVE");
    assert_eq!(info.version, "1.33");
    assert!(info.arn.ends_with(":cluster/demo"), "{}", info.arn);
    assert_eq!(info.subnet_ids, seeded.subnet_ids);
    assert_eq!(info.vpc_id.as_deref(), Some(seeded.vpc_id.as_str()));
    assert_eq!(info.cluster_security_group_id.as_deref(), Some(seeded.security_group_id.as_str()));
    assert_eq!(info.auth_mode, ClusterAuth::ApiAndConfigMap);
    assert!(info.issuer.as_deref().is_some_and(|i| i.starts_with("https://")), "{:?}", info.issuer);
    assert!(info.endpoint.is_some());
    assert!(!info.auto_mode);
    info.require_installable().unwrap();
}

#[tokio::test]
async fn a_cluster_without_access_config_is_config_map() {
    let env = Env::new().await;
    env.seed_cluster("legacy", None).await;
    let info = cluster::discover(&aws_in(&env, REGION).await, "legacy").await.unwrap();
    assert_eq!(info.auth_mode, ClusterAuth::ConfigMap);
}

#[tokio::test]
async fn a_missing_cluster_names_the_ones_that_exist() {
    let env = Env::new().await;
    env.seed_cluster("alpha", Some("API")).await;
    env.seed_cluster("beta", Some("API")).await;
    let err = cluster::discover(&aws_in(&env, REGION).await, "gamma").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.message, format!("EKS cluster gamma not found in {REGION}"));
    let hint = err.hint.unwrap();
    assert!(hint.contains("alpha") && hint.contains("beta"), "{hint}");
}

#[tokio::test]
async fn the_wrong_region_says_there_is_no_cluster_there() {
    let env = Env::new().await;
    env.seed_cluster("demo", Some("API")).await;
    let err = cluster::discover(&aws_in(&env, "us-east-2").await, "demo").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.hint.unwrap().contains("no EKS clusters in us-east-2"));
}

#[tokio::test]
async fn a_cluster_that_is_not_active_is_refused() {
    let env = Env::new().await;
    env.seed_cluster("busy", Some("API")).await;
    env.set_cluster_status("busy", "CREATING");
    let info = cluster::discover(&aws_in(&env, REGION).await, "busy").await.unwrap();
    assert_eq!(info.status, "CREATING");
    let err = info.require_installable().unwrap_err();
    assert_eq!(err.kind, ErrorKind::ClusterState);
    assert!(err.message.contains("CREATING, not ACTIVE"), "{}", err.message);
    assert!(err.hint.unwrap().contains("cluster-active"));
}

#[tokio::test]
async fn auto_mode_is_refused() {
    let env = Env::new().await;
    env.seed_cluster_with("auto", serde_json::json!({"computeConfig": {"enabled": true}})).await;
    let info = cluster::discover(&aws_in(&env, REGION).await, "auto").await.unwrap();
    assert!(info.auto_mode);
    let err = info.require_installable().unwrap_err();
    assert_eq!(err.kind, ErrorKind::ClusterState);
    assert!(err.hint.unwrap().contains("Auto Mode"));
}

#[tokio::test]
async fn online_render_uses_the_discovered_account_and_issuer() {
    let env = Env::new().await;
    env.seed_cluster("demo", Some("API")).await;
    let report = env.run(&["render", "-c", "demo", "--auth", "irsa"]).await.unwrap();
    let docs = report.to_json()["documents"].clone();
    let trust =
        docs.as_array().unwrap().iter().find(|d| d["resource"] == "iam-role/KarpenterControllerRole-demo").unwrap();
    let federated = trust["content"]["Statement"][0]["Principal"]["Federated"].as_str().unwrap();
    assert!(federated.starts_with(&format!("arn:aws:iam::{}:oidc-provider/oidc.eks.", env.account)), "{federated}");
    assert!(!federated.contains("https://"));
    // Discovery reads only: render never writes.
    assert!(env.recorder.writes().is_empty(), "{:?}", env.recorder.writes());
}

#[test]
fn binary_missing_cluster_is_one_line_with_hint_and_exit_1() {
    let out = karpctl_bin(&["render", "-c", "no-such-cluster-bin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], format!("error: EKS cluster no-such-cluster-bin not found in {REGION}"), "{stderr}");
    assert!(lines.iter().any(|l| l.starts_with("hint: ")), "{stderr}");
}

#[test]
fn binary_json_error_is_one_document_on_stdout() {
    let out = karpctl_bin(&["render", "-c", "no-such-cluster-json", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["command"], "render");
    assert_eq!(doc["error"]["kind"], "not-found");
    assert!(doc["error"]["hint"].is_string());
}

#[test]
fn binary_usage_errors_exit_2() {
    assert_eq!(karpctl_bin(&["render", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(karpctl_bin(&["render", "-c", "x", "--auth", "magic"]).status.code(), Some(2));
}

#[test]
fn binary_bad_input_is_refused_before_any_call() {
    let out = karpctl_bin(&["render", "-c", "bad name"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: invalid cluster name"), "{stderr}");
    let out = karpctl_bin(&["render", "-c", "ok", "--karpenter-version", "v1.14.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hint: write the version without the leading 'v': 1.14.1"));
}

#[test]
fn binary_offline_render_needs_no_aws() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_karpctl"))
        .args(["render", "-c", "demo", "--account", "111122223333", "--region", "cn-north-1", "-o", "json"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["command"], "render");
    let first = &doc["documents"][0];
    assert_eq!(first["resource"], "iam-role/KarpenterNodeRole-demo");
    assert_eq!(first["content"]["Statement"][0]["Principal"]["Service"], "ec2.amazonaws.com.cn");
}
