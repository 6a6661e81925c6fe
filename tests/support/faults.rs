//! The fault and latency layer: what sits between karpctl and the emulator in the resilience
//! tests and the benchmark. Every request gets a fixed latency (a region's round trip, split
//! between the way there and the way back); a seeded share of them gets a fault instead of the
//! emulator's answer: the service's own throttling error, a 503, a connection reset before the
//! request arrives, or a connection lost after the emulator acted on it (the nasty one: the
//! write happened, the client never heard). Every request is recorded (service, action,
//! mutating or not, start and end) for assertions and for the benchmark's counts.
//!
//! Two front ends share this layer: [`FaultLayer::client`], an in-process wrapper around the
//! SDK's default HTTP client for tests calling `karpctl::run` (through `Hooks::http_client`),
//! and `proxy.rs`, a loopback HTTP proxy for tests of the compiled binary.
//!
//! Fault decisions are a pure function of the seed, the request (service, action, path and body
//! with idempotency tokens blanked) and how many times that same request was seen before. So a
//! seed gives the same faults whatever order concurrent requests happen to be sent in, and a
//! retry of a faulted request gets a fresh draw, as a real retry would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;

/// What can go wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The service's own throttling error, in its protocol's format and status.
    Throttle,
    /// HTTP 503 with the service's "unavailable" error.
    Unavailable,
    /// The connection drops before the request reaches the service: nothing happened.
    Reset,
    /// The service acts on the request, then the connection drops before the response
    /// arrives: the write happened and the client does not know.
    ResponseLost,
}

impl Fault {
    /// Every kind of fault, for a realistic mix.
    pub const ALL: [Fault; 4] = [Fault::Throttle, Fault::Unavailable, Fault::Reset, Fault::ResponseLost];
}

/// How the layer treats requests.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Added to every request: half before it reaches the emulator, half after.
    pub latency: Duration,
    /// The probability that a request (each attempt on its own) gets a fault.
    pub fault_rate: f64,
    /// The seed of the fault decisions.
    pub seed: u64,
    /// The kinds of fault to draw from, uniformly.
    pub faults: Vec<Fault>,
    /// When set, only these actions (e.g. `GetRole`) can get a fault.
    pub only_actions: Option<Vec<String>>,
}

impl FaultConfig {
    /// Latency only, no faults.
    pub fn latency(latency: Duration) -> Self {
        FaultConfig { latency, fault_rate: 0.0, seed: 0, faults: Fault::ALL.to_vec(), only_actions: None }
    }

    /// A share `rate` of requests gets a fault of any kind, decided by `seed`; no latency.
    pub fn faults(rate: f64, seed: u64) -> Self {
        FaultConfig { fault_rate: rate, seed, ..FaultConfig::latency(Duration::ZERO) }
    }

    /// Every attempt of `action` gets `fault`: a service that keeps failing.
    pub fn always(fault: Fault, action: &str) -> Self {
        FaultConfig {
            fault_rate: 1.0,
            faults: vec![fault],
            only_actions: Some(vec![action.to_string()]),
            ..FaultConfig::latency(Duration::ZERO)
        }
    }

    /// The same, with this latency.
    pub fn with_latency(self, latency: Duration) -> Self {
        FaultConfig { latency, ..self }
    }

    /// The same, drawing only from these kinds of fault.
    pub fn with_faults(self, faults: &[Fault]) -> Self {
        FaultConfig { faults: faults.to_vec(), ..self }
    }
}

/// One request as the layer saw it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The SigV4 service name (`iam`, `sts`, `ec2`, `eks`, `sqs`, `events`).
    pub service: String,
    /// The API action (`GetRole`, `DescribeCluster`, ...).
    pub action: String,
    /// Whether the action changes anything (by AWS's naming convention).
    pub mutating: bool,
    /// When karpctl sent it, from the layer's creation.
    pub start: Duration,
    /// When karpctl got the answer (or the error).
    pub end: Duration,
    /// The HTTP status karpctl got, if it got one.
    pub status: Option<u16>,
    /// The injected fault, if any.
    pub fault: Option<Fault>,
}

/// Counts over the recorded requests, as the benchmark prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// All requests, retries included.
    pub requests: usize,
    /// Requests whose action changes something.
    pub mutating: usize,
    /// The longest chain of requests each sent after the previous one was answered: the
    /// round trips the run waited for one after another.
    pub longest_chain: usize,
    /// Requests that got an injected fault.
    pub faults: usize,
}

type Trigger = Box<dyn FnOnce() + Send>;

/// The layer's state: configuration, the record of requests, and the fault draws.
pub struct FaultLayer {
    config: FaultConfig,
    epoch: Instant,
    log: Mutex<Vec<Exchange>>,
    seen: Mutex<HashMap<u64, u64>>,
    writes_done: AtomicUsize,
    writes_sent: AtomicUsize,
    trigger: Mutex<Option<(usize, Trigger)>>,
    /// Set when the trigger fired: the client is dead (see [`FaultLayer::is_cut`]).
    cut: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for FaultLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultLayer").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A request's identity, as far as the layer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// SigV4 service name.
    pub service: String,
    /// API action.
    pub action: String,
}

impl Identity {
    /// Whether the action changes anything.
    pub fn mutating(&self) -> bool {
        !karpctl::aws::is_read_only(&self.action)
    }
}

/// Tell the service and action of an AWS request: the service from the SigV4 credential scope,
/// the action from `X-Amz-Target` (JSON protocols), the form body's `Action=` (query
/// protocols), or the method and path (EKS's REST protocol).
pub fn identify(method: &str, path: &str, header: impl Fn(&str) -> Option<String>, body: &[u8]) -> Identity {
    let service = header("authorization")
        .and_then(|a| {
            let scope = a.split("Credential=").nth(1)?.split([',', ' ']).next()?.to_string();
            scope.split('/').nth(3).map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string());
    let action = if let Some(target) = header("x-amz-target") {
        target.rsplit('.').next().unwrap_or(&target).to_string()
    } else if let Some(a) = form_action(body) {
        a
    } else {
        rest_action(method, path)
    };
    Identity { service, action }
}

fn form_action(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|kv| kv.strip_prefix("Action=")).map(str::to_string)
}

/// EKS's REST operations from method and path: `/clusters/{name}/{collection}[/{id}]`, plus
/// `/tags/{arn}`; what this cannot name is reported as `METHOD /path`.
fn rest_action(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    // (singular, plural) of each collection under a cluster.
    let names = |collection: &str| -> Option<(&'static str, &'static str)> {
        Some(match collection {
            "access-entries" => ("AccessEntry", "AccessEntries"),
            "pod-identity-associations" => ("PodIdentityAssociation", "PodIdentityAssociations"),
            "addons" => ("Addon", "Addons"),
            "node-groups" => ("Nodegroup", "Nodegroups"),
            "fargate-profiles" => ("FargateProfile", "FargateProfiles"),
            _ => return None,
        })
    };
    let named = match (method, parts.as_slice()) {
        ("GET", ["clusters"]) => Some("ListClusters".to_string()),
        ("POST", ["clusters"]) => Some("CreateCluster".to_string()),
        ("GET", ["clusters", _]) => Some("DescribeCluster".to_string()),
        ("DELETE", ["clusters", _]) => Some("DeleteCluster".to_string()),
        ("GET", ["tags", ..]) => Some("ListTagsForResource".to_string()),
        ("POST", ["tags", ..]) => Some("TagResource".to_string()),
        ("DELETE", ["tags", ..]) => Some("UntagResource".to_string()),
        ("GET", ["clusters", _, "access-entries", _, "access-policies"]) => {
            Some("ListAssociatedAccessPolicies".to_string())
        }
        ("POST", ["clusters", _, "access-entries", _, "access-policies"]) => Some("AssociateAccessPolicy".to_string()),
        ("DELETE", ["clusters", _, "access-entries", _, "access-policies", _]) => {
            Some("DisassociateAccessPolicy".to_string())
        }
        ("GET", ["clusters", _, c]) => names(c).map(|(_, p)| format!("List{p}")),
        ("POST", ["clusters", _, c]) => names(c).map(|(s, _)| format!("Create{s}")),
        ("GET", ["clusters", _, c, _]) => names(c).map(|(s, _)| format!("Describe{s}")),
        ("POST", ["clusters", _, c, _]) => names(c).map(|(s, _)| format!("Update{s}")),
        ("DELETE", ["clusters", _, c, _]) => names(c).map(|(s, _)| format!("Delete{s}")),
        _ => None,
    };
    named.unwrap_or_else(|| format!("{method} {path}"))
}

/// A request's fault key: service, action, path and body, with UUIDs (the SDK's idempotency
/// tokens, fresh per call) blanked so the same request hashes the same in every run.
fn request_key(id: &Identity, path: &str, body: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(id.service.as_bytes());
    h.write(b"|");
    h.write(id.action.as_bytes());
    h.write(b"|");
    h.write(path.as_bytes());
    h.write(b"|");
    h.write(&blank_uuids(body));
    h.finish()
}

/// Replace every `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex) with zeros.
fn blank_uuids(body: &[u8]) -> Vec<u8> {
    const SHAPE: [usize; 5] = [8, 4, 4, 4, 12];
    let mut out = body.to_vec();
    let mut i = 0;
    'scan: while i + 36 <= out.len() {
        let mut j = i;
        for (n, len) in SHAPE.iter().enumerate() {
            if !out[j..j + len].iter().all(u8::is_ascii_hexdigit) {
                i += 1;
                continue 'scan;
            }
            j += len;
            if n < 4 {
                if out[j] != b'-' {
                    i += 1;
                    continue 'scan;
                }
                j += 1;
            }
        }
        for b in &mut out[i..j] {
            if *b != b'-' {
                *b = b'0';
            }
        }
        i = j;
    }
    out
}

/// FNV-1a: a small, stable hash (std's hasher is randomly keyed per process).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// SplitMix64's finalizer: turns (seed, key, occurrence) into well-spread random bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The body, status and headers of an injected error, in the service's own protocol so the SDK
/// parses and classifies it as it would a real one.
pub fn error_response(service: &str, fault: Fault) -> (u16, Vec<(&'static str, String)>, String) {
    const REQUEST_ID: &str = "00000000-0000-0000-0000-000000000000";
    let throttle = fault == Fault::Throttle;
    let query_xml = |code: &str, kind: &str, message: &str| {
        format!(
            "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>{REQUEST_ID}</RequestId></ErrorResponse>"
        )
    };
    let xml = || ("content-type", "text/xml".to_string());
    match service {
        // awsQuery (Auto Scaling too: its throttling error is `Throttling`, HTTP 400).
        "iam" | "sts" | "autoscaling" => {
            if throttle {
                (400, vec![xml()], query_xml("Throttling", "Sender", "Rate exceeded"))
            } else {
                (503, vec![xml()], query_xml("ServiceUnavailable", "Receiver", "Service is unavailable"))
            }
        }
        // ec2Query: EC2 answers throttling with 503 and RequestLimitExceeded.
        "ec2" => {
            let (code, message) = if throttle {
                ("RequestLimitExceeded", "Request limit exceeded.")
            } else {
                ("Unavailable", "The server is overloaded and can't handle the request.")
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
                 <Message>{message}</Message></Error></Errors><RequestID>{REQUEST_ID}</RequestID></Response>"
            );
            (503, vec![xml()], body)
        }
        // restJson1: the code is in x-amzn-ErrorType.
        "eks" => {
            let (status, code) =
                if throttle { (429, "ThrottlingException") } else { (503, "ServiceUnavailableException") };
            let headers = vec![
                ("content-type", "application/json".to_string()),
                ("x-amzn-errortype", format!("{code}:http://internal.amazon.com/coral/com.amazonaws.eks/")),
            ];
            (status, headers, format!("{{\"message\":\"{code}\"}}"))
        }
        // awsJson1_0, query-compatible: the SDK takes the code from x-amzn-query-error when present.
        "sqs" => {
            let (status, code, kind) =
                if throttle { (400, "RequestThrottled", "Sender") } else { (503, "ServiceUnavailable", "Receiver") };
            let headers = vec![
                ("content-type", "application/x-amz-json-1.0".to_string()),
                ("x-amzn-query-error", format!("{code};{kind}")),
            ];
            (status, headers, format!("{{\"__type\":\"com.amazonaws.sqs#{code}\",\"message\":\"{code}\"}}"))
        }
        // awsJson1_1 (EventBridge) and anything else speaking JSON.
        _ => {
            let (status, code) = if throttle { (400, "ThrottlingException") } else { (503, "ServiceUnavailable") };
            let headers = vec![("content-type", "application/x-amz-json-1.1".to_string())];
            (status, headers, format!("{{\"__type\":\"{code}\",\"message\":\"{code}\"}}"))
        }
    }
}

impl FaultLayer {
    /// A layer with this configuration; its clock starts now.
    pub fn new(config: FaultConfig) -> Arc<FaultLayer> {
        Arc::new(FaultLayer {
            config,
            epoch: Instant::now(),
            log: Mutex::default(),
            seen: Mutex::default(),
            writes_done: AtomicUsize::new(0),
            writes_sent: AtomicUsize::new(0),
            trigger: Mutex::default(),
            cut: Default::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Time since the layer was created.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Draw the fate of one attempt of a request.
    pub fn decide(&self, id: &Identity, path: &str, body: &[u8]) -> Option<Fault> {
        if self.config.fault_rate <= 0.0 || self.config.faults.is_empty() {
            return None;
        }
        if let Some(only) = &self.config.only_actions {
            if !only.contains(&id.action) {
                return None;
            }
        }
        let key = request_key(id, path, body);
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        let bits = mix(mix(self.config.seed ^ key).wrapping_add(n));
        let draw = (bits >> 11) as f64 / (1u64 << 53) as f64;
        if draw >= self.config.fault_rate {
            return None;
        }
        let kind = mix(bits) as usize % self.config.faults.len();
        Some(self.config.faults[kind])
    }

    /// Record one finished request.
    pub fn record(&self, exchange: Exchange) {
        self.log.lock().unwrap().push(exchange);
    }

    /// Count a write the emulator has acted on.
    pub fn write_done(&self) {
        self.writes_done.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether a request may go on to the emulator now: not once the client is cut off
    /// ([`FaultLayer::is_cut`]). A write is counted as it goes; the one that reaches the
    /// trigger's count goes, and fires it.
    pub fn admit(&self, mutating: bool) -> bool {
        let mut trigger = self.trigger.lock().unwrap();
        if self.is_cut() {
            return false;
        }
        if mutating {
            let n = self.writes_sent.fetch_add(1, Ordering::SeqCst) + 1;
            if trigger.as_ref().is_some_and(|(at, _)| n >= *at) {
                if let Some((_, fire)) = trigger.take() {
                    self.cut.store(true, Ordering::SeqCst);
                    fire();
                }
            }
        }
        true
    }

    /// Whether the trigger has fired: from then on a request still on its way is lost with the
    /// killed client's connection instead of reaching the emulator, so exactly the trigger's
    /// count of writes reaches it. Before, the writes a concurrent walk had in flight at the
    /// kill still landed, and on a busy machine that was all of them: a "kill halfway" test then
    /// killed nothing halfway.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// How many writes the emulator has acted on so far (counted as they happen; the record
    /// of a request is only complete once its answer has gone back).
    pub fn writes_done(&self) -> usize {
        self.writes_done.load(Ordering::SeqCst)
    }

    /// Call `fire` once, as the nth mutating request goes to the emulator (before the client
    /// hears about it); no request goes after it ([`FaultLayer::is_cut`]): the SIGKILL tests
    /// kill karpctl there.
    pub fn on_writes(&self, n: usize, fire: impl FnOnce() + Send + 'static) {
        *self.trigger.lock().unwrap() = Some((n, Box::new(fire)));
    }

    /// Every request so far, in the order they finished.
    pub fn requests(&self) -> Vec<Exchange> {
        self.log.lock().unwrap().clone()
    }

    /// The mutating requests so far.
    pub fn writes(&self) -> Vec<Exchange> {
        self.requests().into_iter().filter(|e| e.mutating).collect()
    }

    /// Forget the requests so far (the fault draws are kept: a seed's sequence goes on).
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Counts over the requests so far.
    pub fn stats(&self) -> Stats {
        let log = self.requests();
        Stats {
            requests: log.len(),
            mutating: log.iter().filter(|e| e.mutating).count(),
            longest_chain: longest_chain(&log),
            faults: log.iter().filter(|e| e.fault.is_some()).count(),
        }
    }

    /// An HTTP client for `Hooks::http_client`: the SDK's default HTTPS client behind this
    /// layer. A fresh inner client (and so a fresh connection pool) per call, like a new process.
    pub fn client(self: &Arc<Self>) -> SharedHttpClient {
        use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
        let inner =
            aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc)).build_https();
        SharedHttpClient::new(FaultyClient { inner, layer: self.clone() })
    }
}

/// The longest chain of requests where each started after the previous one had finished.
pub fn longest_chain(log: &[Exchange]) -> usize {
    chain(log).len()
}

/// The requests of one longest chain, in order: what a run waited for one after another, which
/// is where a round trip to cut is found (`scripts/bench --chain`).
pub fn chain(log: &[Exchange]) -> Vec<&Exchange> {
    let mut order: Vec<&Exchange> = log.iter().collect();
    order.sort_by_key(|e| (e.start, e.end));
    // depth[i]: the longest chain ending at i; before[i]: the request before i on it.
    let mut depth = vec![1usize; order.len()];
    let mut before: Vec<Option<usize>> = vec![None; order.len()];
    for i in 0..order.len() {
        for j in 0..i {
            if order[j].end <= order[i].start && depth[j] + 1 > depth[i] {
                depth[i] = depth[j] + 1;
                before[i] = Some(j);
            }
        }
    }
    let mut at = (0..order.len()).max_by_key(|&i| depth[i]);
    let mut path = Vec::new();
    while let Some(i) = at {
        path.push(order[i]);
        at = before[i];
    }
    path.reverse();
    path
}

/// The in-process front end: wraps an HTTP client, adding the layer to each connector it makes.
#[derive(Debug)]
struct FaultyClient {
    inner: SharedHttpClient,
    layer: Arc<FaultLayer>,
}

impl HttpClient for FaultyClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(FaultyConnector { inner, layer: self.layer.clone() })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    layer: Arc<FaultLayer>,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, layer) = (self.inner.clone(), self.layer.clone());
        HttpConnectorFuture::new(async move {
            let start = layer.now();
            let path = request.uri().split_once("://").map_or(request.uri(), |(_, rest)| rest);
            let path = path.find('/').map_or("/", |i| &path[i..]).to_string();
            let body = request.body().bytes().unwrap_or_default().to_vec();
            let id = identify(request.method(), &path, |name| request.headers().get(name).map(str::to_string), &body);
            let fault = layer.decide(&id, &path, &body);
            let there = layer.config.latency / 2;
            let back = layer.config.latency - there;
            tokio::time::sleep(there).await;
            let result = match fault {
                _ if !layer.admit(id.mutating()) => Err(ConnectorError::io("the client was killed (injected)".into())),
                Some(Fault::Reset) => Err(ConnectorError::io("connection reset (injected)".into())),
                Some(f @ (Fault::Throttle | Fault::Unavailable)) => {
                    tokio::time::sleep(back).await;
                    let (status, headers, text) = error_response(&id.service, f);
                    let mut resp = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::from(text));
                    for (k, v) in headers {
                        resp.headers_mut().insert(k, v);
                    }
                    Ok(resp)
                }
                Some(Fault::ResponseLost) => {
                    let r = inner.call(request).await;
                    if id.mutating() && r.is_ok() {
                        layer.write_done();
                    }
                    Err(ConnectorError::io("connection lost after the request was sent (injected)".into()))
                }
                None => {
                    let r = inner.call(request).await;
                    // As the proxy counts: a write the emulator refused changed nothing.
                    if id.mutating() && r.as_ref().is_ok_and(|resp| resp.status().as_u16() < 300) {
                        layer.write_done();
                    }
                    tokio::time::sleep(back).await;
                    r
                }
            };
            layer.record(Exchange {
                mutating: id.mutating(),
                service: id.service,
                action: id.action,
                start,
                end: layer.now(),
                status: result.as_ref().ok().map(|r| r.status().as_u16()),
                fault,
            });
            result
        })
    }
}
