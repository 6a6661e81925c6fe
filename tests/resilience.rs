//! karpctl when the network misbehaves, through the fault and latency layer
//! (`support/faults.rs`, `support/proxy.rs`):
//! - with 20% of requests failing (throttling in each service's own format, 503s, connections
//!   reset before the request arrives, responses lost after the write happened), `init`, then
//!   `doctor`, then `teardown` end in the same state as clean runs, for ten seeds;
//! - the compiled binary killed with SIGKILL midway through `init` or `teardown` is finished by
//!   the next run;
//! - a call that keeps failing ends the run with exit 1, one line saying what failed, and a
//!   hint, after the SDK's bounded retries; every service's throttling error is recognised as
//!   throttling and retried.
//!
//! Latency here is small (the benchmark, `benches/perf.rs`, uses a region's 50 ms): these
//! tests are about outcomes, not time.

use crate::support;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::faults::{identify, longest_chain, Exchange, Fault, FaultConfig, FaultLayer};
use support::install::{changes, pending, snapshot};
use support::proxy::Proxy;
use support::{Env, SeededCluster};

const C: &str = "demo";
const FAULT_RATE: f64 = 0.2;
/// Enough to interleave concurrent requests as a network would, small enough to keep ten
/// seeds fast.
const LATENCY: Duration = Duration::from_millis(2);
/// Runs allowed to reach the clean state under faults: one. A lost response to a create makes
/// the SDK's retry of it fail with "already exists" (or, adding the role to the instance
/// profile, the profile's quota); karpctl then observes the resource again and carries on, so
/// no fault ends a run.
const MAX_RUNS: usize = 1;
/// karpctl's retry budget per call (`karpctl::aws::MAX_ATTEMPTS`).
const ATTEMPTS: usize = karpctl::aws::MAX_ATTEMPTS as usize;

/// A fresh account with the cluster `demo`.
async fn demo() -> (Env, SeededCluster) {
    let env = Env::new().await;
    let seeded = env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    (env, seeded)
}

/// [`demo`] with the emulator's strict behaviours on (IAM propagation, asynchronous add-ons,
/// SQS's deleted-queue window, ...) with short windows. Not for the SIGKILL tests: their kill
/// points count writes, and the strict behaviours' retries make that count vary.
async fn strict_demo() -> (Env, SeededCluster) {
    let (env, seeded) = demo().await;
    env.strict(support::short_strict_windows());
    (env, seeded)
}

/// `init` of the AWS side only (`--emit` writes the cluster side to a directory instead of
/// applying it), so these tests need no cluster API.
fn init_args(emit: &tempfile::TempDir) -> Vec<String> {
    let dir = emit.path().to_str().expect("utf-8 temp dir").to_string();
    ["init", "-c", C, "--yes", "--emit", &dir].iter().map(|s| s.to_string()).collect()
}

const DOCTOR: &[&str] = &["doctor", "-c", C, "--only", "aws"];
const TEARDOWN: &[&str] = &["teardown", "-c", C, "--yes"];

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// What clean runs leave behind, and how many writes the emulator acted on in them (counted
/// as the proxy of the SIGKILL tests counts: a refused write, such as a DeleteConflict that
/// karpctl recovers from, is not one, and how many of those a run meets depends on timing).
struct Reference {
    installed: Value,
    removed: Value,
    init_writes: usize,
    teardown_writes: usize,
}

static REFERENCE: tokio::sync::OnceCell<Reference> = tokio::sync::OnceCell::const_new();

/// The clean runs every test compares with, made once per test binary in an account of their own.
async fn reference() -> &'static Reference {
    REFERENCE
        .get_or_init(|| async {
            let (env, seeded) = demo().await;
            let emit = tempfile::tempdir().expect("temp dir");
            let layer = FaultLayer::new(FaultConfig::latency(LATENCY));
            env.run_through(&layer, &strs(&init_args(&emit))).await.expect("clean init");
            let installed = snapshot(&env, &seeded).await;
            let init_writes = layer.writes_done();
            let layer = FaultLayer::new(FaultConfig::latency(LATENCY));
            env.run_through(&layer, TEARDOWN).await.expect("clean teardown");
            let removed = snapshot(&env, &seeded).await;
            let teardown_writes = layer.writes_done();
            Reference { installed, removed, init_writes, teardown_writes }
        })
        .await
}

/// Run `args` through `layer` until a run succeeds, at most `MAX_RUNS` times (one: every run
/// must succeed). Should a run fail, it must be with one line saying what failed and a hint.
async fn converge(env: &Env, layer: &Arc<FaultLayer>, args: &[&str]) -> karpctl::Report {
    let mut failures = Vec::new();
    for _ in 0..MAX_RUNS {
        layer.clear();
        match env.run_through(layer, args).await {
            Ok(report) => return report,
            Err(e) => {
                let lost: Vec<Exchange> = layer
                    .requests()
                    .into_iter()
                    .filter(|x| x.mutating && x.fault == Some(Fault::ResponseLost))
                    .collect();
                assert!(!lost.is_empty(), "{args:?} failed without a lost write response: {e} ({e:?})");
                assert!(!e.to_string().contains('\n'), "not one line: {e}");
                let hint = e.hint.clone().unwrap_or_default();
                assert!(hint.contains("again"), "{args:?} failed without a hint to run again: {e:?}");
                eprintln!("{args:?}: run {} failed after a lost response (will run again): {e}", failures.len() + 1);
                failures.push(e);
            }
        }
    }
    panic!("{args:?} did not converge in {MAX_RUNS} runs: {failures:#?}");
}

/// `init`, `doctor` and `teardown` with 20% of requests failing, seeded: each ends where a clean
/// run ends, and what the faulty runs leave is complete (a clean run finds nothing to do).
async fn survives_faults(seed: u64) {
    let reference = reference().await;
    let (env, seeded) = strict_demo().await;
    let emit = tempfile::tempdir().expect("temp dir");
    let init = init_args(&emit);
    let layer = FaultLayer::new(FaultConfig::faults(FAULT_RATE, seed).with_latency(LATENCY));

    let report = converge(&env, &layer, &strs(&init)).await;
    assert_eq!(report.exit_code, 0, "{}", report.text);
    assert_eq!(snapshot(&env, &seeded).await, reference.installed, "seed {seed}: init under faults");
    let again = env.run(&strs(&init)).await.expect("clean init after init under faults");
    assert_eq!(pending(&again), vec![], "seed {seed}: init under faults left work undone");

    // Read-only: every fault it meets is one the SDK retries, so one run must pass.
    layer.clear();
    let doctor = env.run_through(&layer, DOCTOR).await.expect("doctor under faults");
    assert_eq!(doctor.exit_code, 0, "seed {seed}: doctor under faults\n{}", doctor.text);
    assert!(layer.stats().faults > 0, "seed {seed}: doctor met no faults; the test proves nothing");

    converge(&env, &layer, TEARDOWN).await;
    assert_eq!(snapshot(&env, &seeded).await, reference.removed, "seed {seed}: teardown under faults");
    let again = env.run(TEARDOWN).await.expect("clean teardown after teardown under faults");
    let left: Vec<_> = changes(&again).into_iter().filter(|(_, a)| a == "delete").collect();
    assert_eq!(left, vec![], "seed {seed}: teardown under faults left resources");
}

macro_rules! seeds {
    ($($name:ident = $seed:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            survives_faults($seed).await;
        }
    )*};
}

/// Two `init`s started at once on one cluster, each under its own 20% faults: both succeed,
/// and what they leave is one install, the one a clean run makes.
async fn concurrent_inits(seed: u64) {
    let reference = reference().await;
    let (env, seeded) = strict_demo().await;
    let emit = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let (a, b) = (init_args(&emit.0), init_args(&emit.1));
    let layers = (
        FaultLayer::new(FaultConfig::faults(FAULT_RATE, seed).with_latency(LATENCY)),
        FaultLayer::new(FaultConfig::faults(FAULT_RATE, seed + 100).with_latency(LATENCY)),
    );
    let (sa, sb) = (strs(&a), strs(&b));
    let (ra, rb) = tokio::join!(env.run_through(&layers.0, &sa), env.run_through(&layers.1, &sb));
    let (ra, rb) = (ra.expect("first concurrent init"), rb.expect("second concurrent init"));
    assert_eq!((ra.exit_code, rb.exit_code), (0, 0), "{}\n{}", ra.text, rb.text);
    assert_eq!(snapshot(&env, &seeded).await, reference.installed, "seed {seed}: two concurrent inits");
    let again = env.run(&strs(&a)).await.expect("clean init after two concurrent inits");
    assert_eq!(pending(&again), vec![], "seed {seed}: concurrent inits left work undone");
}

#[tokio::test]
async fn two_concurrent_inits_on_one_cluster_both_succeed_with_one_install_seed_0() {
    concurrent_inits(0).await;
}

#[tokio::test]
async fn two_concurrent_inits_on_one_cluster_both_succeed_with_one_install_seed_1() {
    concurrent_inits(1).await;
}

/// `teardown` then at once `init`, under faults, with SQS refusing the queue's name for a
/// while after its deletion and the add-on DELETING: init waits for both and succeeds.
#[tokio::test]
async fn teardown_immediately_followed_by_init_succeeds_under_faults() {
    let reference = reference().await;
    let (env, seeded) = strict_demo().await;
    // Longer than the teardown itself takes, so the init meets both windows.
    let mut strict = support::short_strict_windows();
    strict["queue_deleted_recently"] = serde_json::json!(4);
    strict["addon_delete"] = serde_json::json!(2);
    env.strict(strict);
    let emit = tempfile::tempdir().expect("temp dir");
    let init = init_args(&emit);
    let layer = FaultLayer::new(FaultConfig::faults(FAULT_RATE, 42).with_latency(LATENCY));
    converge(&env, &layer, &strs(&init)).await;
    converge(&env, &layer, TEARDOWN).await;
    converge(&env, &layer, &strs(&init)).await;
    assert_eq!(snapshot(&env, &seeded).await, reference.installed, "init right after teardown");
}

seeds! {
    init_doctor_teardown_converge_under_faults_seed_0 = 0;
    init_doctor_teardown_converge_under_faults_seed_1 = 1;
    init_doctor_teardown_converge_under_faults_seed_2 = 2;
    init_doctor_teardown_converge_under_faults_seed_3 = 3;
    init_doctor_teardown_converge_under_faults_seed_4 = 4;
    init_doctor_teardown_converge_under_faults_seed_5 = 5;
    init_doctor_teardown_converge_under_faults_seed_6 = 6;
    init_doctor_teardown_converge_under_faults_seed_7 = 7;
    init_doctor_teardown_converge_under_faults_seed_8 = 8;
    init_doctor_teardown_converge_under_faults_seed_9 = 9;
}

/// Run the binary with `args` as `env`'s account and SIGKILL it the moment the emulator has
/// acted on its `writes`th write (before karpctl hears back).
async fn kill_at_write(env: &Env, args: &[&str], writes: usize) {
    let proxy = Proxy::start(&env.account, FaultConfig::latency(LATENCY));
    let child: Arc<Mutex<Option<Child>>> = Arc::default();
    let victim = child.clone();
    proxy.layer.on_writes(writes, move || {
        if let Some(c) = victim.lock().unwrap().as_mut() {
            let _ = c.kill();
        }
    });
    // Nothing read from its pipes: a full pipe must not stall it before the kill.
    let spawned = proxy.command(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start karpctl");
    *child.lock().unwrap() = Some(spawned);
    let status = loop {
        if let Some(s) = child.lock().unwrap().as_mut().and_then(|c| c.try_wait().expect("wait for karpctl")) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(status.signal(), Some(9), "{args:?} ended before write {writes}: {status:?}");
    assert!(proxy.layer.writes_done() <= writes, "no write went after the kill");
}

/// Run the binary to the end through a latency-only proxy; returns the requests it made.
async fn run_binary(env: &Env, args: &[&str]) -> Vec<Exchange> {
    let proxy = Proxy::start(&env.account, FaultConfig::latency(LATENCY));
    let mut cmd = proxy.command(args);
    // Off the test's runtime, which serves the stand-in cluster the binary talks to.
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run karpctl")).await.expect("binary run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?} after a kill\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    proxy.layer.requests()
}

/// `init` killed at a point given as a share of a clean run's writes; the next run completes
/// the install, and the one after writes nothing.
async fn init_survives_sigkill(share: f64) {
    let reference = reference().await;
    let writes = ((reference.init_writes as f64 * share) as usize).clamp(1, reference.init_writes - 1);
    let (env, seeded) = demo().await;
    let emit = tempfile::tempdir().expect("temp dir");
    let init = init_args(&emit);
    kill_at_write(&env, &strs(&init), writes).await;
    if share < 1.0 {
        assert_ne!(snapshot(&env, &seeded).await, reference.installed, "killed at write {writes}, yet complete");
    }
    run_binary(&env, &strs(&init)).await;
    assert_eq!(snapshot(&env, &seeded).await, reference.installed, "init after a kill at write {writes}");
    let third: Vec<Exchange> = run_binary(&env, &strs(&init)).await.into_iter().filter(|x| x.mutating).collect();
    assert!(third.is_empty(), "a run after the repair wrote: {third:?}");
}

/// `teardown` killed at a point given as a share of a clean run's writes; the next run removes
/// the rest.
async fn teardown_survives_sigkill(share: f64) {
    let reference = reference().await;
    let writes = ((reference.teardown_writes as f64 * share) as usize).clamp(1, reference.teardown_writes - 1);
    let (env, seeded) = demo().await;
    let emit = tempfile::tempdir().expect("temp dir");
    env.run(&strs(&init_args(&emit))).await.expect("clean init");
    // The binary tears down this test's stand-in cluster side too.
    let teardown: Vec<String> = TEARDOWN.iter().map(|s| s.to_string()).chain(env.cluster.args()).collect();
    let teardown = strs(&teardown);
    kill_at_write(&env, &teardown, writes).await;
    // At the last write, writes already on their way may still land after the kill.
    if share < 1.0 {
        assert_ne!(snapshot(&env, &seeded).await, reference.removed, "killed at write {writes}, yet all gone");
    }
    run_binary(&env, &teardown).await;
    assert_eq!(snapshot(&env, &seeded).await, reference.removed, "teardown after a kill at write {writes}");
    let third: Vec<Exchange> = run_binary(&env, &teardown).await.into_iter().filter(|x| x.mutating).collect();
    assert!(third.is_empty(), "a run after the repair wrote: {third:?}");
}

#[tokio::test]
async fn init_killed_at_its_first_write_is_finished_by_the_next_run() {
    init_survives_sigkill(0.0).await;
}

#[tokio::test]
async fn init_killed_a_third_of_the_way_is_finished_by_the_next_run() {
    init_survives_sigkill(1.0 / 3.0).await;
}

#[tokio::test]
async fn init_killed_two_thirds_of_the_way_is_finished_by_the_next_run() {
    init_survives_sigkill(2.0 / 3.0).await;
}

#[tokio::test]
async fn init_killed_at_its_last_write_is_finished_by_the_next_run() {
    init_survives_sigkill(1.0).await;
}

#[tokio::test]
async fn teardown_killed_at_its_first_write_is_finished_by_the_next_run() {
    teardown_survives_sigkill(0.0).await;
}

#[tokio::test]
async fn teardown_killed_halfway_is_finished_by_the_next_run() {
    teardown_survives_sigkill(0.5).await;
}

#[tokio::test]
async fn teardown_killed_at_its_last_write_is_finished_by_the_next_run() {
    teardown_survives_sigkill(1.0).await;
}

/// The binary's outcome when every attempt of `action` gets `fault`: exit code, stderr, the
/// JSON error document, and the attempts the proxy saw.
async fn keeps_failing(env: &Env, fault: Fault, action: &str, args: Vec<String>) -> (i32, String, Value, usize) {
    let (account, action) = (env.account.clone(), action.to_string());
    tokio::task::spawn_blocking(move || {
        let proxy = Proxy::start(&account, FaultConfig::always(fault, &action).with_latency(LATENCY));
        let out = proxy.command(&strs(&args)).output().expect("run karpctl");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stderr}"));
        let attempts = proxy.layer.requests().iter().filter(|x| x.action == action).count();
        assert!(proxy.layer.writes().is_empty(), "it wrote despite failing to observe");
        (out.status.code().unwrap_or(-1), stderr, doc, attempts)
    })
    .await
    .expect("binary run")
}

#[tokio::test]
async fn a_call_that_keeps_failing_ends_the_run_with_exit_1_one_line_and_a_hint() {
    let (env, _) = demo().await;
    let emit = tempfile::tempdir().expect("temp dir");
    let mut args = init_args(&emit);
    args.extend(["-o".to_string(), "json".to_string()]);
    let cases = [
        (Fault::Throttle, "throttled", "AWS kept throttling iam:GetRole"),
        (Fault::Unavailable, "aws", "AWS kept failing iam:GetRole with a server error"),
        (Fault::Reset, "network", "check network access"),
    ];
    let runs = cases.iter().map(|(fault, _, _)| keeps_failing(&env, *fault, "GetRole", args.clone()));
    for ((fault, kind, hint), (code, stderr, doc, attempts)) in cases.iter().zip(futures::future::join_all(runs).await)
    {
        assert_eq!(code, 1, "{fault:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("warning:")).collect();
        assert!(lines[0].starts_with("error: failed to read IAM role Karpenter"), "{fault:?}: {stderr}");
        assert!(lines.iter().any(|l| l.starts_with("hint: ") && l.contains(hint)), "{fault:?}: {stderr}");
        assert_eq!(doc["error"]["kind"], *kind, "{fault:?}: {doc}");
        assert!(!doc["error"]["message"].as_str().unwrap_or("\n").contains('\n'), "{fault:?}: {doc}");
        // Retried to the SDK's bound, then given up: not a hang, not a first-failure exit.
        assert!(attempts >= ATTEMPTS, "{fault:?}: {attempts} attempts of GetRole");
    }
}

#[tokio::test]
async fn every_service_s_throttling_error_is_recognised_and_retried() {
    let (env, _) = demo().await;
    let emit = tempfile::tempdir().expect("temp dir");
    env.run(&strs(&init_args(&emit))).await.expect("clean init");
    // One read of each service that doctor makes, each in its protocol's error format.
    let cases = [
        ("sts:GetCallerIdentity", "GetCallerIdentity"),
        ("eks:DescribeCluster", "DescribeCluster"),
        ("iam:GetInstanceProfile", "GetInstanceProfile"),
        ("ec2:DescribeSecurityGroups", "DescribeSecurityGroups"),
        ("sqs:GetQueueUrl", "GetQueueUrl"),
        ("events:DescribeRule", "DescribeRule"),
    ];
    let args: Vec<String> = DOCTOR.iter().chain(&["-o", "json"]).map(|s| s.to_string()).collect();
    let runs = cases.iter().map(|(_, action)| keeps_failing(&env, Fault::Throttle, action, args.clone()));
    for ((call, action), (code, stderr, doc, attempts)) in cases.iter().zip(futures::future::join_all(runs).await) {
        assert_eq!(code, 1, "{call}: {stderr}");
        assert_eq!(doc["error"]["kind"], "throttled", "{call}: {doc}");
        assert!(doc["error"]["hint"].as_str().unwrap_or("").contains(call), "{call}: {doc}");
        assert!(attempts >= ATTEMPTS, "{call}: {attempts} attempts of {action}");
    }
}

/// The layer itself: requests are named right in every protocol.
#[test]
fn requests_are_named_by_service_and_action_in_every_protocol() {
    let auth = |service: &str| {
        format!("AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-1/{service}/aws4_request, SignedHeaders=host, Signature=0")
    };
    let headers = |service: &'static str, target: Option<&'static str>| {
        let a = auth(service);
        move |name: &str| match name {
            "authorization" => Some(a.clone()),
            "x-amz-target" => target.map(str::to_string),
            _ => None,
        }
    };
    let id = identify("POST", "/", headers("iam", None), b"Action=GetRole&RoleName=x&Version=2010-05-08");
    assert_eq!((id.service.as_str(), id.action.as_str(), id.mutating()), ("iam", "GetRole", false));
    let id = identify("POST", "/", headers("sqs", Some("AmazonSQS.CreateQueue")), b"{}");
    assert_eq!((id.service.as_str(), id.action.as_str(), id.mutating()), ("sqs", "CreateQueue", true));
    let id = identify("POST", "/", headers("events", Some("AWSEvents.PutRule")), b"{}");
    assert_eq!(id.action, "PutRule");
    for (method, path, action) in [
        ("GET", "/clusters/demo", "DescribeCluster"),
        ("GET", "/clusters", "ListClusters"),
        ("POST", "/clusters/demo/access-entries", "CreateAccessEntry"),
        ("GET", "/clusters/demo/access-entries/arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx", "DescribeAccessEntry"),
        ("GET", "/clusters/demo/pod-identity-associations?maxResults=100", "ListPodIdentityAssociations"),
        ("DELETE", "/clusters/demo/pod-identity-associations/a-1", "DeletePodIdentityAssociation"),
        ("GET", "/clusters/demo/addons/eks-pod-identity-agent", "DescribeAddon"),
        ("POST", "/tags/arn%3Aaws%3Aeks", "TagResource"),
    ] {
        assert_eq!(identify(method, path, headers("eks", None), b"").action, action, "{method} {path}");
    }
}

/// The layer itself: a seed's faults do not depend on the order concurrent requests arrive in,
/// idempotency tokens do not change them, retries get a fresh draw, and the rate is as asked.
#[test]
fn fault_draws_are_seeded_and_independent_of_request_order() {
    let id = |action: &str| support::faults::Identity { service: "iam".into(), action: action.into() };
    let requests: Vec<String> = (0..400).map(|i| format!("GetRole{}", i % 100)).collect();
    let draw = |layer: &FaultLayer, order: &mut dyn Iterator<Item = &String>| {
        let mut out: Vec<(String, Option<Fault>)> =
            order.map(|a| (a.clone(), layer.decide(&id(a), "/", b""))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let a = draw(&FaultLayer::new(FaultConfig::faults(0.2, 7)), &mut requests.iter());
    let b = draw(&FaultLayer::new(FaultConfig::faults(0.2, 7)), &mut requests.iter().rev());
    // Per request name: the same multiset of outcomes whatever the order.
    let summary = |v: &[(String, Option<Fault>)]| {
        let mut m = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (k, f) in v {
            m.entry(k.clone()).or_default().push(format!("{f:?}"));
        }
        m.values_mut().for_each(|v| v.sort());
        m
    };
    assert_eq!(summary(&a), summary(&b));
    let c = draw(&FaultLayer::new(FaultConfig::faults(0.2, 8)), &mut requests.iter());
    assert_ne!(summary(&a), summary(&c), "another seed, other faults");
    let faulted = a.iter().filter(|(_, f)| f.is_some()).count();
    assert!((50..=110).contains(&faulted), "{faulted} of 400 faulted at 20%");
    for kind in Fault::ALL {
        assert!(a.iter().any(|(_, f)| *f == Some(kind)), "no {kind:?} drawn");
    }
    // A fresh idempotency token per call does not make it another request.
    let layer = FaultLayer::new(FaultConfig::faults(0.5, 1));
    let with_token = |t: &str| format!("{{\"clientRequestToken\":\"{t}\",\"name\":\"x\"}}");
    let x: Vec<_> = (0..20)
        .map(|i| {
            layer.decide(
                &id("CreateAccessEntry"),
                "/",
                with_token(&format!("{i:08x}-1111-2222-3333-444455556666")).as_bytes(),
            )
        })
        .collect();
    let layer = FaultLayer::new(FaultConfig::faults(0.5, 1));
    let y: Vec<_> = (0..20)
        .map(|_| {
            layer.decide(&id("CreateAccessEntry"), "/", with_token("abcdef01-1111-2222-3333-444455556666").as_bytes())
        })
        .collect();
    assert_eq!(x, y);
}

/// The benchmark's "sequential requests": a request after another that had finished extends
/// the chain; overlapping ones do not.
#[test]
fn the_longest_chain_counts_round_trips_made_one_after_another() {
    let ms = Duration::from_millis;
    let x = |start: u64, end: u64| Exchange {
        service: "iam".into(),
        action: "GetRole".into(),
        mutating: false,
        start: ms(start),
        end: ms(end),
        status: Some(200),
        fault: None,
    };
    assert_eq!(longest_chain(&[]), 0);
    assert_eq!(longest_chain(&[x(0, 50), x(1, 51), x(2, 52)]), 1);
    assert_eq!(longest_chain(&[x(0, 50), x(51, 100), x(10, 60), x(101, 150), x(61, 110)]), 3);
}
