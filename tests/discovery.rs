//! Cluster discovery against the emulator: found, not found, wrong region, not ACTIVE, Auto Mode,
//! the binary's one-line errors and exit codes, and which subnets get the discovery tag (private
//! ones, `--subnets`, never another cluster's).

use crate::support;

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

/// Give `subnet` of `vpc` a route table of its own with a default route to an internet gateway.
async fn route_to_internet(env: &Env, vpc: &str, subnet: &str) -> String {
    let ec2 = &env.aws.ec2;
    let igw = ec2.create_internet_gateway().send().await.unwrap();
    let igw = igw.internet_gateway().unwrap().internet_gateway_id().unwrap().to_string();
    ec2.attach_internet_gateway().internet_gateway_id(&igw).vpc_id(vpc).send().await.unwrap();
    let rt = ec2.create_route_table().vpc_id(vpc).send().await.unwrap();
    let rt = rt.route_table().unwrap().route_table_id().unwrap().to_string();
    ec2.create_route().route_table_id(&rt).destination_cidr_block("0.0.0.0/0").gateway_id(&igw).send().await.unwrap();
    ec2.associate_route_table().route_table_id(&rt).subnet_id(subnet).send().await.unwrap();
    igw
}

async fn discovery_tag(env: &Env, id: &str) -> Option<String> {
    support::install::ec2_tags(env, id).await.get("karpenter.sh/discovery").cloned()
}

#[tokio::test]
async fn init_tags_only_private_subnets_and_says_why_it_skips_public_ones() {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    let (a, b, c) = (&seeded.subnet_ids[0], &seeded.subnet_ids[1], &seeded.subnet_ids[2]);
    let igw = route_to_internet(&env, &seeded.vpc_id, a).await;
    env.aws
        .ec2
        .modify_subnet_attribute()
        .subnet_id(b)
        .map_public_ip_on_launch(aws_sdk_ec2::types::AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap();
    let emit = tempfile::tempdir().unwrap();
    env.run(&["init", "-c", "demo", "--yes", "--emit", emit.path().to_str().unwrap()]).await.unwrap();
    assert_eq!(discovery_tag(&env, a).await, None, "a subnet routing to {igw} was tagged");
    assert_eq!(discovery_tag(&env, b).await, None, "a subnet with public IPs on launch was tagged");
    assert_eq!(discovery_tag(&env, c).await.as_deref(), Some("demo"));
    assert_eq!(discovery_tag(&env, &seeded.security_group_id).await.as_deref(), Some("demo"));
    let plan = env.run(&["init", "-c", "demo", "--dry-run", "--emit", emit.path().to_str().unwrap()]).await.unwrap();
    let detail = support::install::detail(&plan, &format!("ec2-tags/{a}"));
    assert!(detail.starts_with(&format!("public subnet (routes to internet gateway {igw}")), "{detail}");
    assert!(detail.contains("--subnets"), "{detail}");
    let detail = support::install::detail(&plan, &format!("ec2-tags/{b}"));
    assert!(detail.contains("assigns public IPs on launch"), "{detail}");
}

#[tokio::test]
async fn subnets_chooses_exactly_which_subnets_are_tagged() {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    let (a, b, c) = (&seeded.subnet_ids[0], &seeded.subnet_ids[1], &seeded.subnet_ids[2]);
    route_to_internet(&env, &seeded.vpc_id, a).await;
    let chosen = format!("{a},{b}");
    let emit = tempfile::tempdir().unwrap();
    let dir = emit.path().to_str().unwrap();
    env.run(&["init", "-c", "demo", "--yes", "--emit", dir, "--subnets", &chosen]).await.unwrap();
    // Chosen: tagged even though public; not chosen: left alone though private.
    assert_eq!(discovery_tag(&env, a).await.as_deref(), Some("demo"));
    assert_eq!(discovery_tag(&env, b).await.as_deref(), Some("demo"));
    assert_eq!(discovery_tag(&env, c).await, None);
    // doctor warns about the public one it finds tagged.
    let report = env.run(&["doctor", "-c", "demo", "--only", "aws"]).await.unwrap();
    let checks = report.to_json()["checks"].as_array().unwrap().clone();
    let public = checks.iter().find(|c| c["id"] == "discovery.public-subnets").expect("public-subnets check");
    assert_eq!(public["status"], "warn", "{}", report.text);
    assert!(public["message"].as_str().unwrap().contains(a.as_str()), "{public}");
    assert!(!public["message"].as_str().unwrap().contains(b.as_str()), "{public}");
    // A subnet outside the cluster's VPC, or one that does not exist, is refused before any write.
    env.recorder.clear();
    let err = env.run(&["init", "-c", "demo", "--yes", "--emit", dir, "--subnets", "subnet-0123456789abcdef0"]).await;
    let err = err.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(env.recorder.writes().is_empty(), "{:?}", env.recorder.writes());
    let err = env.run(&["init", "-c", "demo", "--yes", "--emit", dir, "--subnets", "sg-123"]).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn a_subnet_tagged_for_another_cluster_is_never_retagged_even_with_adopt() {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    let theirs = &seeded.subnet_ids[0];
    let tag = aws_sdk_ec2::types::Tag::builder().key("karpenter.sh/discovery").value("other").build();
    env.aws.ec2.create_tags().resources(theirs).tags(tag).send().await.unwrap();
    let emit = tempfile::tempdir().unwrap();
    for extra in [&[][..], &["--adopt"][..]] {
        let mut args = vec!["init", "-c", "demo", "--yes", "--emit", emit.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let report = env.run(&args).await.unwrap();
        let detail = support::install::detail(&report, &format!("ec2-tags/{theirs}"));
        assert!(detail.contains("another cluster"), "{detail}");
        assert_eq!(discovery_tag(&env, theirs).await.as_deref(), Some("other"), "retagged with {extra:?}");
    }
    assert_eq!(discovery_tag(&env, &seeded.subnet_ids[1]).await.as_deref(), Some("demo"));
}
