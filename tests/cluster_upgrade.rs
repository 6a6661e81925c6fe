//! `karpctl upgrade` end to end: the emulator for AWS, the stand-in API server and fake helm
//! for the cluster. 1.9.2 -> 1.14.1 grants the new permissions and rule before the CRD chart
//! and the controller and ends with doctor passing; a patch upgrade is chart-only; forbidden
//! paths and unknown versions are refused before anything is written.

use crate::support;

use karpctl::ErrorKind;
use serde_json::Value;
use support::install::{attached, pending};
use support::Env;

const C: &str = "demo";
const CRD_RELEASE: &str = "helm-release/kube-system/karpenter-crd";
const CONTROLLER_RELEASE: &str = "helm-release/kube-system/karpenter";

async fn installed_at(version: &str, extra: &[&str]) -> Env {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    let mut init = vec!["init", "-c", C, "--yes", "--karpenter-version", version];
    init.extend_from_slice(extra);
    env.run(&init).await.expect("init");
    env
}

/// The (release, version) of every helm upgrade run so far.
fn helm_upgrades(env: &Env) -> Vec<(String, String)> {
    env.cluster
        .helm_calls()
        .into_iter()
        .map(|c| c["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect::<Vec<_>>())
        .filter(|a| a.get(1).map(String::as_str) == Some("upgrade"))
        .map(|a| (a[3].clone(), a[6].clone()))
        .collect()
}

/// Everything that writes: AWS calls, API server requests (not access reviews), helm runs.
fn writes(env: &Env) -> (usize, usize, usize) {
    let api = env.cluster.api.writes().into_iter().filter(|r| !r.path.ends_with("/selfsubjectaccessreviews")).count();
    (env.recorder.writes().len(), api, helm_upgrades(env).len())
}

fn position(changes: &[(String, String)], resource: &str) -> usize {
    changes.iter().position(|(r, _)| r == resource).unwrap_or_else(|| panic!("{resource} not in {changes:?}"))
}

async fn doctor_ok(env: &Env) {
    let report = env.run(&["doctor", "-c", C]).await.expect("doctor runs");
    let json = report.to_json();
    let failed: Vec<&Value> = json["checks"].as_array().unwrap().iter().filter(|c| c["status"] == "fail").collect();
    assert!(failed.is_empty(), "{failed:#?}\n{}", report.text);
    let versions = json["checks"].as_array().unwrap().iter().find(|c| c["id"] == "karpenter.versions").unwrap();
    assert_eq!(versions["status"], "pass", "{}", report.text);
}

#[tokio::test]
async fn from_1_9_2_to_1_14_1_grants_the_new_permissions_and_rule_first_and_ends_with_doctor_passing() {
    let env = installed_at("1.9.2", &[]).await;
    let zonal = format!("iam-policy/KarpenterControllerZonalShiftPolicy-{C}");
    let rule = format!("event-rule/Karpenter-{C}-CapacityReservationInterruption");
    // At 1.9 neither exists, and doctor judges the install against 1.9, not the newest.
    let iam = &env.aws.iam;
    let arn = format!("arn:aws:iam::{}:policy/KarpenterControllerZonalShiftPolicy-{C}", env.account);
    assert!(iam.get_policy().policy_arn(&arn).send().await.is_err());
    doctor_ok(&env).await;

    let plan = env.run(&["upgrade", "-c", C, "--to", "1.14.1", "--dry-run"]).await.unwrap();
    let json = plan.to_json();
    assert_eq!(json["command"], "upgrade");
    assert_eq!(json["upgrade"]["added_policies"], serde_json::json!(["ZonalShift"]));
    assert_eq!(json["upgrade"]["added_rules"], serde_json::json!(["CapacityReservationInterruption"]));
    assert_eq!(json["upgrade"]["added_crds"], serde_json::json!(["capacitybuffers.autoscaling.x-k8s.io"]));
    assert!(plan.text.contains("existing nodes drift and are replaced"), "{}", plan.text);

    let before = helm_upgrades(&env).len();
    let report = env.run(&["upgrade", "-c", C, "--to", "1.14.1", "--yes"]).await.unwrap();
    let changes = pending(&report);
    assert!(changes.contains(&(zonal.clone(), "create".into())), "{changes:?}");
    assert!(changes.contains(&(rule.clone(), "create".into())), "{changes:?}");
    // Applied in order: the new permissions and rule, then the CRD chart, then the controller.
    let (p, r) = (position(&changes, &zonal), position(&changes, &rule));
    let (crd, ctl) = (position(&changes, CRD_RELEASE), position(&changes, CONTROLLER_RELEASE));
    assert!(p < crd && r < crd && crd < ctl, "{changes:?}");
    let new = helm_upgrades(&env).split_off(before);
    assert_eq!(new, [("karpenter-crd".into(), "1.14.1".into()), ("karpenter".into(), "1.14.1".into())]);
    assert!(iam.get_policy().policy_arn(&arn).send().await.is_ok());
    assert!(attached(&env, &format!("KarpenterControllerRole-{C}")).await.contains(&arn));
    doctor_ok(&env).await;

    // A pipeline that still pins the CRD chart at 1.10 puts it back under the 1.14 controller:
    // doctor names what the older CRDs lack (fake-helm writes each version's reference CRDs).
    if support::reference_dir().is_none() {
        return;
    }
    // Async: the stand-in API server it writes to runs on this test's runtime.
    let out = tokio::process::Command::new(&env.cluster.helm)
        .args(["upgrade", "--install", "karpenter-crd", "oci://public.ecr.aws/karpenter/karpenter-crd"])
        .args(["--version", "1.10.2", "--namespace", "kube-system"])
        .env("KUBECONFIG", &env.cluster.kubeconfig)
        .output()
        .await
        .expect("run fake helm");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = env.run(&["doctor", "-c", C]).await.expect("doctor runs");
    let json = report.to_json();
    let crds = json["checks"].as_array().unwrap().iter().find(|c| c["id"] == "karpenter.crds").unwrap();
    assert_eq!(crds["status"], "fail", "{}", report.text);
    let message = crds["message"].as_str().unwrap();
    assert!(message.contains("capacitybuffers.autoscaling.x-k8s.io is missing"), "{message}");
    assert!(
        message.contains(
            "lacks spec fields connectionTracking, cpuOptions, networkInterfaces, placementGroupSelector (older than the controller 1.14.1)"
        ),
        "{message}"
    );
    assert_eq!(report.exit_code, 3, "{}", report.text);
}

#[tokio::test]
async fn a_patch_upgrade_is_chart_only() {
    let env = installed_at("1.14.1", &[]).await;
    env.recorder.clear();
    let report = env.run(&["upgrade", "-c", C, "--to", "1.14.3", "--yes"]).await.unwrap();
    let mut got = pending(&report);
    got.sort();
    assert_eq!(got, [(CONTROLLER_RELEASE.into(), "update".into()), (CRD_RELEASE.into(), "update".into())]);
    assert_eq!(report.to_json()["upgrade"]["chart_only"], true);
    assert!(env.recorder.writes().is_empty(), "{:?}", env.recorder.writes());
    doctor_ok(&env).await;
}

#[tokio::test]
async fn forbidden_paths_are_refused_with_the_reason_and_no_write() {
    let env = installed_at("1.14.1", &[]).await;
    env.recorder.clear();
    env.cluster.api.clear_requests();
    let before = writes(&env);
    let e = env.run(&["upgrade", "-c", C, "--to", "1.13.1", "--yes"]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused);
    assert!(e.message.contains("downgrading across a minor"), "{e}");
    // init with an older minor walks the same rules.
    let e = env.run(&["init", "-c", C, "--yes", "--karpenter-version", "1.12.2"]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused);
    assert_eq!(writes(&env), (0, before.1, before.2));
    assert_eq!(writes(&env).0, 0, "{:?}", env.recorder.writes());

    // Anything before 1.0 must go through the v1 migration first.
    let old = installed_at("0.37.7", &["--allow-unknown-version"]).await;
    old.recorder.clear();
    old.cluster.api.clear_requests();
    let before = writes(&old);
    let e = old.run(&["upgrade", "-c", C, "--to", "1.14.1", "--yes"]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused);
    assert!(e.message.contains("older than 1.0"), "{e}");
    assert_eq!(writes(&old), (0, before.1, before.2));
}

#[tokio::test]
async fn an_unknown_version_needs_allow_unknown_version() {
    let env = installed_at("1.14.1", &[]).await;
    env.recorder.clear();
    let e = env.run(&["upgrade", "-c", C, "--to", "1.15.0", "--yes"]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.hint.as_deref().unwrap_or_default().contains("1.14.1"), "{e:?}");
    // Refused before any AWS call.
    assert!(env.recorder.calls().is_empty(), "{:?}", env.recorder.calls());
    let report = env.run(&["upgrade", "-c", C, "--to", "1.15.0", "--allow-unknown-version", "--yes"]).await.unwrap();
    assert_eq!(report.to_json()["karpenter_version"], "1.15.0");
    assert_eq!(env.cluster.releases()["kube-system/karpenter"]["chart"], "karpenter-1.15.0");
}

#[tokio::test]
async fn upgrade_without_an_install_says_to_run_init() {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    let e = env.run(&["upgrade", "-c", C, "--yes"]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.hint.unwrap().contains("karpctl init"));
    assert!(env.recorder.writes().is_empty());
}

#[tokio::test]
async fn a_kubernetes_version_outside_the_releases_range_is_refused_before_any_write() {
    let env = Env::new().await;
    env.seed_cluster_with(C, serde_json::json!({"version": "1.36", "accessConfig": {"authenticationMode": "API"}}))
        .await;
    let e = env.run(&["init", "-c", C, "--yes", "--karpenter-version", "1.12.2"]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClusterState);
    assert!(e.message.contains("Kubernetes 1.36"), "{e}");
    assert!(e.hint.unwrap().contains("1.14.1"));
    assert!(env.recorder.writes().is_empty(), "{:?}", env.recorder.writes());
    assert!(env.cluster.helm_calls().is_empty());
}
