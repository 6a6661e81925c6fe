//! Test harness shared by every integration test: one moto server for the test binary (with
//! karpctl's EKS extension, `moto_ext.py`), a fresh emulator account per test, a seeded VPC and
//! EKS cluster, and a recorder of the AWS requests karpctl sends.
#![allow(dead_code)]

#[path = "apiserver.rs"]
pub mod apiserver;
pub mod cluster;
pub mod crd_schema;
pub mod fake_helm;
pub mod faults;
pub mod install;
pub mod proxy;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use karpctl::aws::{Aws, AwsOptions};

/// moto's default account.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// The region every test cluster lives in.
pub const REGION: &str = "eu-west-1";

/// The running emulator: its URL, and the pipe whose closing (when the test binary exits, however
/// it exits) tells the launcher to stop, so no moto process outlives the tests.
pub struct Emulator {
    pub url: String,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();
static NEXT_ACCOUNT: AtomicU64 = AtomicU64::new(0);

/// The emulator for this test binary, started on first use. Panics (fails the test) when it
/// cannot start: in CI a missing emulator must be a failure, never a skip.
pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(|| {
        // The SDK honours proxy variables; loopback must bypass any proxy. Credentials are
        // dummies (moto checks none); IMDS lookups would only slow every test down.
        for (k, v) in [
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("no_proxy", "127.0.0.1,localhost"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            std::env::set_var(k, v);
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/moto_server.py");
        let python = std::env::var("KARPCTL_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .args([script, "--host", "127.0.0.1", "--port", "0", "--exit-with-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the AWS emulator with {python} {script}: {e}"));
        let stdout = child.stdout.take().expect("child stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read emulator banner");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| {
                panic!(
                    "the AWS emulator did not start (banner {line:?}); install it: pip install 'moto[server]==5.2.1'"
                )
            })
            .to_string();
        let stdin = child.stdin.take().expect("child stdin");
        Emulator { url, _child: Mutex::new(child), _stdin: Mutex::new(stdin) }
    })
}

/// A fresh emulator account id, different for every test in every test binary, so tests run in
/// parallel without seeing each other's resources.
pub fn new_account() -> String {
    let n = NEXT_ACCOUNT.fetch_add(1, Ordering::SeqCst);
    let pid = u64::from(std::process::id()) % 100_000;
    format!("{:012}", 100_000_000_000u64 + pid * 10_000 + n)
}

/// One recorded AWS call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub service: String,
    pub operation: String,
}

impl Call {
    /// Whether the call changes anything (by AWS's naming convention).
    pub fn is_mutating(&self) -> bool {
        !karpctl::aws::is_read_only(&self.operation)
    }
}

/// Records every call and sends the emulator's account header on it.
#[derive(Debug, Clone)]
pub struct Recorder {
    account: String,
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// When set to N, every mutating call after the first N fails before being sent (N writes
    /// go through, the (N+1)th and later fail): a crash midway, without killing the test process.
    pub fail_after_writes: Arc<Mutex<Option<usize>>>,
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "karpctl-test-recorder"
    }

    // Not read_before_execution: client-level interceptors run that before the operation's
    // config (and so its Metadata) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(m) = cfg.load::<Metadata>() {
            let call = Call { service: m.service().to_string(), operation: m.name().to_string() };
            let mut calls = self.calls.lock().unwrap();
            if call.is_mutating() {
                if let Some(limit) = *self.fail_after_writes.lock().unwrap() {
                    let writes = calls.iter().filter(|c| c.is_mutating()).count();
                    if writes >= limit {
                        return Err(format!("injected failure before write {}: {}", writes + 1, call.operation).into());
                    }
                }
            }
            calls.push(call);
        }
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context.request_mut().headers_mut().insert("x-moto-account-id", self.account.clone());
        Ok(())
    }
}

impl Recorder {
    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The mutating calls so far.
    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_mutating).collect()
    }

    /// Forget the calls so far.
    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }
}

/// A test's own emulator account, with clients for seeding and inspecting it and the hooks
/// that point karpctl at it.
pub struct Env {
    pub account: String,
    pub recorder: Recorder,
    /// The cluster side (stand-in API server and fake helm) every init/doctor/teardown uses.
    pub cluster: cluster::FakeCluster,
    /// Clients for the test's own setup and assertions (not recorded).
    pub aws: Aws,
}

impl Env {
    /// A fresh account on the shared emulator.
    pub async fn new() -> Env {
        Env::with_account(new_account()).await
    }

    /// The emulator's default account, the one a request without the account header (the
    /// compiled binary's) lands in. Tests using it must use cluster names of their own.
    pub async fn default_account() -> Env {
        Env::with_account(DEFAULT_ACCOUNT.to_string()).await
    }

    async fn with_account(account: String) -> Env {
        let url = emulator().url.clone();
        let recorder = Recorder { account: account.clone(), calls: Arc::default(), fail_after_writes: Arc::default() };
        let setup = Recorder { account: account.clone(), calls: Arc::default(), fail_after_writes: Arc::default() };
        let aws = Aws::connect(
            &options(&url),
            &karpctl::Hooks { interceptors: vec![SharedInterceptor::new(setup)], ..Default::default() },
        )
        .await
        .expect("test AWS clients");
        let cluster = cluster::FakeCluster::start().await;
        Env { account, recorder, aws, cluster }
    }

    /// Hooks for `karpctl::run` that send karpctl's calls to this account and record them.
    pub fn hooks(&self) -> karpctl::Hooks {
        karpctl::Hooks {
            interceptors: vec![SharedInterceptor::new(self.recorder.clone())],
            interactive: false,
            http_client: None,
        }
    }

    /// `hooks`, with karpctl's requests going through a fault and latency layer.
    pub fn hooks_through(&self, layer: &std::sync::Arc<faults::FaultLayer>) -> karpctl::Hooks {
        karpctl::Hooks { http_client: Some(layer.client()), ..self.hooks() }
    }

    /// Run karpctl in-process against this account, through a fault and latency layer.
    pub async fn run_through(
        &self,
        layer: &std::sync::Arc<faults::FaultLayer>,
        args: &[&str],
    ) -> karpctl::Result<karpctl::Report> {
        karpctl::run(&self.cli(args), &self.hooks_through(layer)).await
    }

    /// Parse a karpctl command line, adding the emulator's endpoint and region.
    pub fn cli(&self, args: &[&str]) -> karpctl::cli::Cli {
        use clap::Parser;
        let url = emulator().url.clone();
        let mut all = vec!["karpctl", "--endpoint-url", url.as_str(), "--region", REGION];
        all.extend_from_slice(args);
        // The commands that reach the cluster reach this test's stand-in (unless --emit'd).
        let cluster_args = self.cluster.args();
        if matches!(args.first(), Some(&"init") | Some(&"doctor") | Some(&"teardown") | Some(&"upgrade"))
            && !args.iter().any(|a| *a == "--emit" || *a == "--kubeconfig")
        {
            all.extend(cluster_args.iter().map(String::as_str));
        }
        karpctl::cli::Cli::try_parse_from(all).expect("valid test command line")
    }

    /// Run karpctl in-process against this account.
    pub async fn run(&self, args: &[&str]) -> karpctl::Result<karpctl::Report> {
        karpctl::run(&self.cli(args), &self.hooks()).await
    }

    /// Seed a VPC with three subnets in three zones, a security group, and an ACTIVE EKS cluster
    /// whose authentication mode is `auth_mode` (None: no accessConfig, i.e. CONFIG_MAP).
    pub async fn seed_cluster(&self, name: &str, auth_mode: Option<&str>) -> SeededCluster {
        let extra = match auth_mode {
            Some(mode) => serde_json::json!({"accessConfig": {"authenticationMode": mode}}),
            None => serde_json::json!({}),
        };
        self.seed_cluster_with(name, extra).await
    }

    /// `seed_cluster` with extra top-level CreateCluster fields (e.g. `computeConfig`).
    pub async fn seed_cluster_with(&self, name: &str, extra: serde_json::Value) -> SeededCluster {
        let ec2 = &self.aws.ec2;
        let vpc = ec2.create_vpc().cidr_block("10.0.0.0/16").send().await.expect("create vpc");
        let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
        let mut subnet_ids = Vec::new();
        for (i, zone) in ["a", "b", "c"].iter().enumerate() {
            let s = ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block(format!("10.0.{i}.0/24"))
                .availability_zone(format!("{REGION}{zone}"))
                .send()
                .await
                .expect("create subnet");
            subnet_ids.push(s.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string());
        }
        let sg = ec2
            .create_security_group()
            .group_name(format!("eks-cluster-sg-{name}"))
            .description("EKS cluster security group")
            .vpc_id(&vpc_id)
            .send()
            .await
            .expect("create security group");
        let sg_id = sg.group_id().expect("sg id").to_string();
        let mut body = serde_json::json!({
            "name": name,
            "version": "1.33",
            "roleArn": format!("arn:aws:iam::{}:role/eks-cluster", self.account),
            "resourcesVpcConfig": {
                "subnetIds": subnet_ids,
                "securityGroupIds": [sg_id],
                "clusterSecurityGroupId": sg_id,
                "vpcId": vpc_id,
            },
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, text) = self.raw("POST", "/clusters", "eks", &body.to_string());
        assert_eq!(status, 200, "seed cluster: {text}");
        SeededCluster { name: name.to_string(), vpc_id, subnet_ids, security_group_id: sg_id }
    }

    /// Set a cluster's status through the extension's control route.
    pub fn set_cluster_status(&self, name: &str, status: &str) {
        let body = serde_json::json!({"status": status, "region": REGION}).to_string();
        let (code, text) = self.raw("POST", &format!("/moto-api/karpctl/clusters/{name}/status"), "eks", &body);
        assert_eq!(code, 200, "set status: {text}");
    }

    /// A raw JSON request to the emulator as this account, for what the SDK cannot send.
    pub fn raw(&self, method: &str, path: &str, service: &str, body: &str) -> (u16, String) {
        let url = emulator().url.trim_start_matches("http://").to_string();
        let mut stream = TcpStream::connect(&url).expect("connect to emulator");
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {url}\r\nContent-Type: application/json\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n\
             x-moto-account-id: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.account,
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("send raw request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read raw response");
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }
}

/// What `seed_cluster` made.
#[derive(Debug, Clone)]
pub struct SeededCluster {
    pub name: String,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    pub security_group_id: String,
}

fn options(url: &str) -> AwsOptions {
    AwsOptions { region: Some(REGION.into()), profile: None, endpoint_url: Some(url.into()) }
}

/// The reference directory (`KARPCTL_REFERENCE_DIR`), or None with a printed reason; a set but
/// wrong directory fails the test.
pub fn reference_dir() -> Option<std::path::PathBuf> {
    match std::env::var_os("KARPCTL_REFERENCE_DIR") {
        None => {
            eprintln!("skipping: KARPCTL_REFERENCE_DIR is not set");
            None
        }
        Some(d) if !std::path::Path::new(&d).exists() => {
            eprintln!("skipping: KARPCTL_REFERENCE_DIR={} does not exist", d.to_string_lossy());
            None
        }
        Some(d) => {
            let p = std::path::PathBuf::from(d);
            assert!(
                p.join("cloudformation.yaml").is_file(),
                "KARPCTL_REFERENCE_DIR={} has no cloudformation.yaml",
                p.display()
            );
            Some(p)
        }
    }
}

/// Run the compiled binary against the emulator (default account), with no terminal attached.
pub fn karpctl_bin(args: &[&str]) -> std::process::Output {
    bin_command(&emulator().url, args).output().expect("run karpctl")
}

/// The compiled binary with `args`, sending every AWS call to `endpoint` with dummy
/// credentials, and with nothing from the developer's own environment steering it.
pub fn bin_command(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_karpctl"));
    cmd.args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("NO_COLOR", "1")
        .env_remove("KARPCTL_CLUSTER")
        .env_remove("KARPCTL_OUTPUT")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONFIG_FILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

impl Env {
    /// Switch on the emulator's strict behaviours for this account (`moto_ext.py`, section
    /// "issue 12 (part a)"): `{"aws": true}` for all at AWS's values, or individual settings.
    pub fn strict(&self, settings: serde_json::Value) {
        let (code, text) = self.raw("POST", "/moto-api/karpctl/strict", "iam", &settings.to_string());
        assert_eq!(code, 200, "strict settings: {text}");
    }
}

/// Emulator windows short enough for tests, every strict behaviour on: what the resilience
/// and strict tests run against.
pub fn short_strict_windows() -> serde_json::Value {
    serde_json::json!({
        "aws": true, "iam_propagation": 0.5, "addon_create": 0.3, "addon_delete": 0.5,
        "queue_deleted_recently": 1.5, "queue_url_linger": 0.3, "rule_targets_settle": 0.2,
        "role_write_window": 0.02, "role_detach_settle": 0.2,
    })
}
