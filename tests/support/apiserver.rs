//! An in-test stand-in for the Kubernetes API server: plain HTTP/1.1 on 127.0.0.1 (kube-rs
//! talks to an `http://` URL without TLS), recording every request, with an in-memory object
//! store that answers what karpctl sends: GET/LIST, POST (create), PUT (replace, with the
//! `resourceVersion` check), PATCH (server-side apply, as a deep merge), DELETE, `/version`, and
//! SelfSubjectAccessReviews. Hooks let a test set an object's status (now, or after it has been
//! read a number of times), deny permissions, and inject a failure once.
//!
//! Include it with `#[path = "support/apiserver.rs"] mod apiserver;`.
//!
//! Deletion is strict, the way kube-apiserver does it (karpctl's teardown depends on it):
//! - An object with `metadata.finalizers` is not removed by DELETE: it gets
//!   `metadata.deletionTimestamp`, the answer is 202 Accepted with the object, and it stays
//!   until an update (PUT, or a JSON merge patch) empties its finalizers; no new finalizer may be
//!   added once it is deleting (422). Source: kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/
//!   ("the Kubernetes API marks the object for deletion by populating .metadata.deletionTimestamp,
//!   and returns a 202 status code ... When the metadata.finalizers field is empty, Kubernetes
//!   considers the deletion complete and deletes the object").
//! - Deleting a CustomResourceDefinition first deletes every object of it (each then waits for
//!   its own finalizers); the CRD stays, with the condition `Terminating=True` reason
//!   `InstanceDeletionInProgress` ("CustomResource deletion is in progress"), while any remains.
//!   Source: the apiextensions-apiserver's `customresourcecleanup.apiextensions.k8s.io` finalizer,
//!   as `kubectl describe crd` shows it on a stuck CRD (kubernetes/kubernetes#60538).
//! - Garbage collection (kube-controller-manager, always running): an object whose
//!   `ownerReferences` name an owner that no longer exists is deleted (a NodeClaim after its
//!   NodePool). Source: kubernetes.io/docs/concepts/architecture/garbage-collection/.
//! - A simulated Karpenter controller runs while a Deployment named `karpenter` (any namespace)
//!   has available replicas and is not deleting. Like Karpenter, it adds
//!   `karpenter.k8s.aws/termination` to every EC2NodeClass; and, only while it runs and only
//!   [`ApiServer::controller_delay`] after the deletion began, it removes `karpenter.sh/termination`
//!   from a deleting NodeClaim (deleting its Node, named by `status.nodeName`, first), from a
//!   deleting Node, and `karpenter.k8s.aws/termination` from a deleting EC2NodeClass that no
//!   NodeClaim references any more. Source: Karpenter's docs (concepts/disruption, "Termination
//!   Controller": the finalizer is removed after the instance is terminated) and the issue
//!   reports of EC2NodeClasses stuck on `karpenter.k8s.aws/termination` once the controller is
//!   uninstalled first.
//! - A Pending Pod can carry `PodScheduled=False` with a reason, as the scheduler writes it.
//! - The Eviction API (issue 15): `POST .../pods/NAME/eviction` with a `policy/v1` Eviction
//!   whose `metadata.name` is the pod's (else 400 BadRequest). With the pod matched by a
//!   PodDisruptionBudget (`policy/v1`, `spec.selector.matchLabels`, `minAvailable` or
//!   `maxUnavailable`, integers or percentages) that allows no disruption now, the answer is 429
//!   TooManyRequests "Cannot evict pod as it would violate the pod's disruption budget." with the
//!   cause `DisruptionBudget` "The disruption budget NAME needs M healthy pods and has H
//!   currently"; a pod matched by more than one PDB is 500 InternalError; an unknown pod is 404;
//!   otherwise 201 and the pod is deleted (200 is also what kubectl treats as success). Healthy
//!   pods: matching, Running, not deleting; expected pods: all matching, not deleting. Source:
//!   kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/ ("429 Too Many Requests ...
//!   because of the configured PodDisruptionBudget", "500 ... multiple PodDisruptionBudgets
//!   that refer to the same Pod") and the message texts of pkg/registry/core/pod/storage/eviction.go.
//! - Rescheduling (a simplification, documented here because tests rely on it): a pod evicted
//!   while owned (`ownerReferences`, a ReplicaSet or StatefulSet) is replaced at once by a pod of
//!   the same labels and spec named `NAME-rN`, bound (`spec.nodeName`) to the first node by name
//!   that is not cordoned (`spec.unschedulable`), not deleting, whose labels match the pod's
//!   `nodeSelector` and whose NoSchedule/NoExecute taints the pod tolerates. With no such node
//!   and the simulated Karpenter running, the first NodePool (by name) whose template taints the
//!   pod tolerates and labels match gets a new Node `karpenter-POOL-N` (its template's labels and
//!   taints, `karpenter.sh/nodepool=POOL`) and the pod lands there; else the pod stays Pending
//!   (`PodScheduled=False`, reason Unschedulable). No resource accounting.
//! - While the simulated Karpenter runs, a Node labelled `karpenter.sh/nodepool=POOL` whose
//!   NodePool is gone is drained (its owned pods rescheduled as above, the others deleted) and
//!   removed, as Karpenter does with the nodes of a deleted NodePool.
//! - Cordon is a JSON merge patch of `spec.unschedulable` on the Node, as `kubectl cordon` sends.
//!   A merge patch that empties `metadata.annotations` or `metadata.labels` leaves no such field
//!   (kube-apiserver serves ObjectMeta's maps with Go's `omitempty`).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Headers with lower-case names, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// What happens to an object once it has been read `after` times.
#[derive(Debug, Clone)]
pub enum Later {
    /// Its `status` becomes this.
    Status(Value),
    /// It disappears (finalizers done).
    Remove,
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    objects: BTreeMap<String, Value>,
    next_rv: u64,
    denied: Vec<(String, String, String, Option<String>)>,
    injected: Vec<(String, String, u16, String)>,
    later: Vec<(String, usize, Later)>,
    reads: HashMap<String, usize>,
    edits: Vec<(String, Value)>,
    auto_status: Vec<(String, Value)>,
    /// When each deleting object's deletion began.
    deleting_since: HashMap<String, Instant>,
    controller_delay: Duration,
    /// Evictions so far, and what to run at the Nth (a test's SIGKILL).
    evictions: usize,
    on_eviction: Option<(usize, Box<dyn FnMut() + Send>)>,
    /// What to run when the Nth request with this method and path has been acted on.
    on_write: Option<WriteTrigger>,
}

/// A test's SIGKILL at one write: method, path, the count to fire at, the count so far.
struct WriteTrigger {
    method: String,
    path: String,
    at: usize,
    seen: usize,
    fire: Box<dyn FnMut() + Send>,
}

/// The running stand-in; stops when dropped.
pub struct ApiServer {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    tick: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
        self.tick.abort();
    }
}

/// The plural of a kind, by the Kubernetes convention.
pub fn plural(kind: &str) -> String {
    let k = kind.to_lowercase();
    if k.ends_with('s') || k.ends_with('x') || k.ends_with("ch") || k.ends_with("sh") {
        format!("{k}es")
    } else if k.ends_with('y') && !k.ends_with("ay") && !k.ends_with("ey") {
        format!("{}ies", &k[..k.len() - 1])
    } else {
        format!("{k}s")
    }
}

/// The URL path of an object.
pub fn path_of(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> String {
    let prefix = if api_version.contains('/') { format!("/apis/{api_version}") } else { format!("/api/{api_version}") };
    let ns = namespace.map(|n| format!("/namespaces/{n}")).unwrap_or_default();
    format!("{prefix}{ns}/{}/{name}", plural(kind))
}

fn path_of_object(obj: &Value) -> String {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
    path_of(s("/apiVersion"), s("/kind"), ns, s("/metadata/name"))
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

impl ApiServer {
    pub async fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the API stand-in");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let state: Arc<Mutex<State>> = Arc::default();
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, st).await;
                });
            }
        });
        let ticker = state.clone();
        let tick = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Ok(mut st) = ticker.lock() {
                    reconcile(&mut st);
                }
            }
        });
        state.lock().unwrap().controller_delay = Duration::from_millis(100);
        ApiServer { url, state, task, tick }
    }

    /// How long the simulated Karpenter controller takes to finish a deletion (its drain and
    /// instance termination) before it removes the finalizer.
    pub fn controller_delay(&self, delay: Duration) {
        self.state.lock().unwrap().controller_delay = delay;
    }

    /// Run `f` when the `n`th eviction has been granted (before its answer is sent).
    pub fn on_eviction(&self, n: usize, f: impl FnMut() + Send + 'static) {
        self.state.lock().unwrap().on_eviction = Some((n, Box::new(f)));
    }

    /// Run `f` when the `n`th `method` request to `path` has been acted on (before its answer
    /// is sent): a test kills karpctl between two of its writes there.
    pub fn on_write(&self, method: &str, path: &str, n: usize, f: impl FnMut() + Send + 'static) {
        self.state.lock().unwrap().on_write =
            Some(WriteTrigger { method: method.into(), path: path.into(), at: n, seen: 0, fire: Box::new(f) });
    }

    /// Every stored object whose path starts with `prefix`.
    pub fn objects_under(&self, prefix: &str) -> Vec<(String, Value)> {
        let st = self.state.lock().unwrap();
        st.objects.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests that change something (not GET).
    pub fn writes(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.method != "GET").collect()
    }

    /// The requests karpctl itself sent: fake-helm writes the charts' objects through this server
    /// too (as helm does), with helm's user agent.
    pub fn karpctl_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| !r.header("user-agent").is_some_and(|u| u.starts_with("Helm/")))
            .collect()
    }

    /// The writes karpctl itself sent (see [`Self::karpctl_requests`]).
    pub fn karpctl_writes(&self) -> Vec<Request> {
        self.karpctl_requests().into_iter().filter(|r| r.method != "GET").collect()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// Store an object as if it had been created.
    pub fn insert(&self, mut obj: Value) -> String {
        let path = path_of_object(&obj);
        let mut st = self.state.lock().unwrap();
        st.next_rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
        if obj.pointer("/metadata/generation").is_none() {
            obj["metadata"]["generation"] = json!(1);
        }
        st.objects.insert(path.clone(), obj);
        path
    }

    /// Remove an object outright (as if it had never been there).
    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().objects.remove(path);
    }

    pub fn object(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Set an object's status now (as its controller would).
    pub fn set_status(&self, path: &str, status: Value) {
        let mut st = self.state.lock().unwrap();
        st.next_rv += 1;
        let rv = st.next_rv.to_string();
        let obj = st.objects.get_mut(path).unwrap_or_else(|| panic!("no object at {path}"));
        obj["status"] = status;
        obj["metadata"]["resourceVersion"] = json!(rv);
    }

    /// After the object at `path` has been read `after` times, apply `what` to it.
    pub fn later(&self, path: &str, after: usize, what: Later) {
        self.state.lock().unwrap().later.push((path.to_string(), after, what));
    }

    /// Give every object of `plural` created by server-side apply this status, as its controller
    /// would (a running Karpenter marking its EC2NodeClass Ready).
    pub fn auto_status(&self, plural: &str, status: Value) {
        self.state.lock().unwrap().auto_status.push((plural.to_string(), status));
    }

    /// Make SelfSubjectAccessReviews for this permission answer "denied".
    pub fn deny(&self, verb: &str, group: &str, resource: &str, namespace: Option<&str>) {
        self.state.lock().unwrap().denied.push((
            verb.into(),
            group.into(),
            resource.into(),
            namespace.map(str::to_string),
        ));
    }

    /// Answer the next `method` on `path` with an error status, once.
    pub fn fail_once(&self, method: &str, path: &str, code: u16, reason: &str) {
        self.state.lock().unwrap().injected.push((method.into(), path.into(), code, reason.into()));
    }

    /// Just before the next PUT or PATCH of `path` is handled, merge `change` into the object
    /// (bumping its resourceVersion): another editor winning the race between a read and a write.
    pub fn edit_before_next_write(&self, path: &str, change: Value) {
        self.state.lock().unwrap().edits.push((path.to_string(), change));
    }

    /// Change an object behind the client's back (bumping its resourceVersion), as another
    /// editor would.
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.state.lock().unwrap();
        st.next_rv += 1;
        let rv = st.next_rv.to_string();
        let obj = st.objects.get_mut(path).unwrap_or_else(|| panic!("no object at {path}"));
        f(obj);
        obj["metadata"]["resourceVersion"] = json!(rv);
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_lowercase(), v.trim().to_string()));
            }
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            reader.read_exact(&mut body).await?;
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).await?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        let req = Request {
            method,
            path: path.to_string(),
            query,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let (code, reply) = {
            let mut st = state.lock().unwrap();
            st.requests.push(req.clone());
            let out = handle(&mut st, &req);
            reconcile(&mut st);
            if let Some(t) = st.on_write.as_mut().filter(|t| t.method == req.method && t.path == req.path) {
                t.seen += 1;
                if t.seen == t.at {
                    (t.fire)();
                }
            }
            out
        };
        let text = reply.to_string();
        let head = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            if code < 300 { "OK" } else { "Error" },
            text.len()
        );
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(text.as_bytes()).await?;
        stream.flush().await?;
    }
}

/// Where a path points: the collection it belongs to, and the object's name if any.
fn route(path: &str) -> Option<(String, String, Option<String>)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix_len, group) = match *segs.first()? {
        "api" => (2, String::new()),
        "apis" => (3, segs.get(1)?.to_string()),
        _ => return None,
    };
    let prefix = format!("/{}", segs.get(..prefix_len)?.join("/"));
    let rest = &segs[prefix_len..];
    let (collection, name) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (format!("{prefix}/namespaces/{}/{}", rest[1], rest[2]), rest.get(3))
    } else {
        (format!("{prefix}/{}", rest.first()?), rest.get(1))
    };
    Some((group, collection, name.map(|s| s.to_string())))
}

fn handle(st: &mut State, req: &Request) -> (u16, Value) {
    if let Some(i) = st.injected.iter().position(|(m, p, _, _)| *m == req.method && *p == req.path) {
        let (_, _, code, reason) = st.injected.remove(i);
        return status(code, &reason, &format!("injected {reason}"));
    }
    if matches!(req.method.as_str(), "PUT" | "PATCH") {
        if let Some(i) = st.edits.iter().position(|(p, _)| *p == req.path) {
            let (_, change) = st.edits.remove(i);
            st.next_rv += 1;
            let rv = st.next_rv.to_string();
            if let Some(obj) = st.objects.get_mut(&req.path) {
                merge(obj, &change);
                obj["metadata"]["resourceVersion"] = json!(rv);
            }
        }
    }
    if req.path == "/version" {
        return (
            200,
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.1-eks-test", "gitCommit": "",
            "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": "linux/amd64"}),
        );
    }
    if req.method == "POST" && req.path.ends_with("/eviction") {
        return evict(st, req);
    }
    let Some((group, collection, name)) = route(&req.path) else {
        return status(404, "NotFound", "the server could not find the requested resource");
    };
    if collection.ends_with("/selfsubjectaccessreviews") && req.method == "POST" {
        let mut review = req.json();
        let a = review.pointer("/spec/resourceAttributes").cloned().unwrap_or(Value::Null);
        let f = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let ns = a.get("namespace").and_then(Value::as_str).map(str::to_string);
        let denied =
            st.denied.iter().any(|(v, g, r, n)| *v == f("verb") && *g == f("group") && *r == f("resource") && *n == ns);
        review["status"] = if denied {
            json!({"allowed": false, "reason": format!("RBAC: no rule allows {} {}", f("verb"), f("resource"))})
        } else {
            json!({"allowed": true})
        };
        return (201, review);
    }
    match (req.method.as_str(), name) {
        ("GET", None) => {
            // `k=v` and `k` (the label exists).
            let selector: Vec<(String, Option<String>)> = req
                .param("labelSelector")
                .unwrap_or("")
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (p.to_string(), None),
                })
                .collect();
            // A cluster-wide list of a namespaced resource spans every namespace.
            let mut keys: Vec<String> = st
                .objects
                .keys()
                .filter(|k| k.strip_prefix(&format!("{collection}/")).is_some_and(|n| !n.contains('/')))
                .cloned()
                .collect();
            if !collection.contains("/namespaces/") {
                let plural = collection.rsplit('/').next().unwrap_or_default();
                keys = keys_of(st, &group, plural);
            }
            for k in &keys {
                read(st, k);
            }
            let items: Vec<Value> = keys
                .iter()
                .filter_map(|k| st.objects.get(k).cloned())
                .filter(|o| {
                    selector.iter().all(|(k, v)| {
                        let have = o.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str);
                        match v {
                            Some(v) => have == Some(v.as_str()),
                            None => have.is_some(),
                        }
                    })
                })
                .collect();
            (
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": st.next_rv.to_string()}, "items": items}),
            )
        }
        ("GET", Some(n)) => {
            let key = format!("{collection}/{n}");
            read(st, &key);
            match st.objects.get(&key) {
                Some(o) => (200, o.clone()),
                None => status(404, "NotFound", &format!("\"{n}\" not found")),
            }
        }
        ("POST", None) => {
            let mut obj = req.json();
            let Some(n) = obj.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string) else {
                return status(422, "Invalid", "metadata.name: Required value");
            };
            let key = format!("{collection}/{n}");
            if st.objects.contains_key(&key) {
                return status(409, "AlreadyExists", &format!("\"{n}\" already exists"));
            }
            st.next_rv += 1;
            obj["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
            obj["metadata"]["generation"] = json!(1);
            obj["metadata"]["uid"] = json!(format!("uid-{}", st.next_rv));
            st.objects.insert(key, obj.clone());
            (201, obj)
        }
        ("PUT", Some(n)) => {
            let key = format!("{collection}/{n}");
            let mut obj = req.json();
            let Some(current) = st.objects.get(&key) else {
                return status(404, "NotFound", &format!("\"{n}\" not found"));
            };
            let sent = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str);
            if sent.is_some_and(|rv| Some(rv) != current.pointer("/metadata/resourceVersion").and_then(Value::as_str)) {
                return status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            if let Some(refused) = new_finalizer_on_deleting(current, &obj) {
                return refused;
            }
            if let Some(ts) = current.pointer("/metadata/deletionTimestamp").cloned() {
                obj["metadata"]["deletionTimestamp"] = ts;
            }
            let generation = current.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
            let changed = current.get("spec") != obj.get("spec");
            st.next_rv += 1;
            obj["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
            obj["metadata"]["generation"] = json!(if changed { generation + 1 } else { generation });
            st.objects.insert(key.clone(), obj.clone());
            finish_if_done(st, &key);
            (200, obj)
        }
        ("PATCH", Some(n)) if req.header("content-type").is_some_and(|c| c.starts_with("application/merge-patch")) => {
            let key = format!("{collection}/{n}");
            let Some(current) = st.objects.get(&key).cloned() else {
                return status(404, "NotFound", &format!("\"{n}\" not found"));
            };
            let mut obj = current.clone();
            merge_patch(&mut obj, &req.json());
            // Go's omitempty: a map emptied by the patch is not served back.
            for field in ["annotations", "labels"] {
                if obj["metadata"].get(field).is_some_and(|m| m.as_object().is_some_and(|m| m.is_empty())) {
                    if let Some(m) = obj["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
            if let Some(refused) = new_finalizer_on_deleting(&current, &obj) {
                return refused;
            }
            st.next_rv += 1;
            obj["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
            st.objects.insert(key.clone(), obj.clone());
            finish_if_done(st, &key);
            (200, obj)
        }
        ("PATCH", Some(n)) => {
            if !req.header("content-type").is_some_and(|c| c.starts_with("application/apply-patch")) {
                return status(415, "UnsupportedMediaType", "only server-side apply is emulated");
            }
            let key = format!("{collection}/{n}");
            let mut body = req.json();
            if let Some(m) = body.as_object_mut() {
                m.remove("status");
            }
            st.next_rv += 1;
            let rv = st.next_rv.to_string();
            // Server-side apply records who manages the object; karpctl judges ownership by it.
            let manager = req.param("fieldManager").unwrap_or("unknown").to_string();
            body["metadata"]["managedFields"] = json!([{"manager": manager, "operation": "Apply"}]);
            let auto = st
                .auto_status
                .iter()
                .find(|(plural, _)| collection.ends_with(&format!("/{plural}")))
                .map(|(_, s)| s.clone());
            match st.objects.get_mut(&key) {
                Some(obj) => {
                    let before = obj.get("spec").cloned();
                    merge(obj, &body);
                    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
                    if obj.get("spec").cloned() != before {
                        obj["metadata"]["generation"] = json!(generation + 1);
                    }
                    obj["metadata"]["resourceVersion"] = json!(rv);
                    (200, obj.clone())
                }
                None => {
                    body["metadata"]["resourceVersion"] = json!(rv);
                    body["metadata"]["generation"] = json!(1);
                    if let Some(status) = auto {
                        body["status"] = status;
                    }
                    st.objects.insert(key, body.clone());
                    (201, body)
                }
            }
        }
        ("DELETE", Some(n)) => {
            let key = format!("{collection}/{n}");
            if !st.objects.contains_key(&key) {
                return status(404, "NotFound", &format!("\"{n}\" not found"));
            }
            match mark_deleting(st, &key) {
                Some(obj) => (202, obj),
                None => (
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": n}}),
                ),
            }
        }
        _ => status(405, "MethodNotAllowed", "not emulated"),
    }
}

/// Count a read and run any `later` hook that is due.
fn read(st: &mut State, key: &str) {
    let n = {
        let c = st.reads.entry(key.to_string()).or_default();
        *c += 1;
        *c
    };
    let due: Vec<Later> =
        st.later.iter().filter(|(p, after, _)| p == key && n > *after).map(|(_, _, w)| w.clone()).collect();
    st.later.retain(|(p, after, _)| !(p == key && n > *after));
    for what in due {
        match what {
            Later::Status(s) => {
                st.next_rv += 1;
                let rv = st.next_rv.to_string();
                if let Some(o) = st.objects.get_mut(key) {
                    o["status"] = s;
                    o["metadata"]["resourceVersion"] = json!(rv);
                }
            }
            Later::Remove => {
                st.objects.remove(key);
            }
        }
    }
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes a key, anything else replaces.
fn merge_patch(into: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !into.is_object() {
                *into = json!({});
            }
            let Some(target) = into.as_object_mut() else { return };
            for (k, v) in p {
                if v.is_null() {
                    target.remove(k);
                } else {
                    merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *into = other.clone(),
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// kube-apiserver refuses new finalizers on an object being deleted.
fn new_finalizer_on_deleting(current: &Value, updated: &Value) -> Option<(u16, Value)> {
    if !is_deleting(current) {
        return None;
    }
    let before = finalizers(current);
    let added: Vec<String> = finalizers(updated).into_iter().filter(|f| !before.contains(f)).collect();
    (!added.is_empty()).then(|| {
        status(
            422,
            "Invalid",
            &format!("metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
        )
    })
}

/// Remove a deleting object whose finalizers are all gone.
fn finish_if_done(st: &mut State, key: &str) {
    if st.objects.get(key).is_some_and(|o| is_deleting(o) && finalizers(o).is_empty()) {
        st.objects.remove(key);
        st.deleting_since.remove(key);
    }
}

/// What DELETE does: remove the object now, or (finalizers, or a CRD with objects) mark it
/// deleting and return it as it now is.
fn mark_deleting(st: &mut State, key: &str) -> Option<Value> {
    let is_crd = key.starts_with("/apis/apiextensions.k8s.io/");
    let obj = st.objects.get(key)?;
    if finalizers(obj).is_empty() && !is_crd {
        st.objects.remove(key);
        return None;
    }
    if !is_deleting(obj) {
        st.next_rv += 1;
        let rv = st.next_rv.to_string();
        let obj = st.objects.get_mut(key)?;
        obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        obj["metadata"]["resourceVersion"] = json!(rv);
        if is_crd {
            obj["metadata"]["finalizers"] = json!(["customresourcecleanup.apiextensions.k8s.io"]);
        }
        st.deleting_since.insert(key.to_string(), Instant::now());
    }
    st.objects.get(key).cloned()
}

/// Remove one finalizer from an object (as the controller owning it would), finishing its
/// deletion when it was the last.
fn drop_finalizer(st: &mut State, key: &str, finalizer: &str) {
    st.next_rv += 1;
    let rv = st.next_rv.to_string();
    if let Some(obj) = st.objects.get_mut(key) {
        let kept: Vec<String> = finalizers(obj).into_iter().filter(|f| f != finalizer).collect();
        obj["metadata"]["finalizers"] = json!(kept);
        obj["metadata"]["resourceVersion"] = json!(rv);
    }
    finish_if_done(st, key);
}

/// The paths of the stored objects of one resource (`/apis/G/V/PLURAL/...`, cluster-scoped or
/// in any namespace).
fn keys_of(st: &State, group: &str, plural: &str) -> Vec<String> {
    st.objects
        .keys()
        .filter(|k| {
            let segs: Vec<&str> = k.trim_start_matches('/').split('/').collect();
            let (g, rest) = match segs.first() {
                Some(&"api") => ("", segs.get(2..).unwrap_or_default()),
                Some(&"apis") => (segs.get(1).copied().unwrap_or(""), segs.get(3..).unwrap_or_default()),
                _ => return false,
            };
            let p = if rest.first() == Some(&"namespaces") { rest.get(2) } else { rest.first() };
            g == group && p == Some(&plural) && rest.len() == if rest.first() == Some(&"namespaces") { 4 } else { 2 }
        })
        .cloned()
        .collect()
}

/// Whether the simulated Karpenter controller runs.
fn controller_runs(st: &State) -> bool {
    keys_of(st, "apps", "deployments").iter().any(|k| {
        k.ends_with("/deployments/karpenter")
            && st.objects.get(k).is_some_and(|d| {
                !is_deleting(d) && d.pointer("/status/availableReplicas").and_then(Value::as_i64).unwrap_or(0) > 0
            })
    })
}

/// What the control plane and the simulated Karpenter do between requests.
fn reconcile(st: &mut State) {
    // Garbage collection of objects whose owner is gone.
    let orphans: Vec<String> = st
        .objects
        .iter()
        .filter(|(_, o)| !is_deleting(o))
        .filter(|(_, o)| {
            o.pointer("/metadata/ownerReferences").and_then(Value::as_array).is_some_and(|refs| {
                !refs.is_empty()
                    && refs.iter().all(|r| {
                        let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("");
                        // A namespaced dependent's owner is in its own namespace (or cluster-scoped).
                        let ns = o.pointer("/metadata/namespace").and_then(Value::as_str);
                        !st.objects.contains_key(&path_of(s("apiVersion"), s("kind"), None, s("name")))
                            && !ns.is_some_and(|ns| {
                                st.objects.contains_key(&path_of(s("apiVersion"), s("kind"), Some(ns), s("name")))
                            })
                    })
            })
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in orphans {
        mark_deleting(st, &k);
    }
    // CRDs being deleted: their objects first, then the CRD.
    let crds: Vec<(String, Value)> = keys_of(st, "apiextensions.k8s.io", "customresourcedefinitions")
        .into_iter()
        .filter_map(|k| st.objects.get(&k).filter(|o| is_deleting(o)).map(|o| (k, o.clone())))
        .collect();
    for (key, crd) in crds {
        let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
        let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("");
        let instances = keys_of(st, group, plural);
        for k in &instances {
            if st.objects.get(k).is_some_and(|o| !is_deleting(o)) {
                mark_deleting(st, k);
            }
        }
        if keys_of(st, group, plural).is_empty() {
            st.objects.remove(&key);
            st.deleting_since.remove(&key);
        } else if let Some(o) = st.objects.get_mut(&key) {
            o["status"]["conditions"] = json!([{"type": "Terminating", "status": "True",
                "reason": "InstanceDeletionInProgress", "message": "CustomResource deletion is in progress"}]);
        }
    }
    if !controller_runs(st) {
        return;
    }
    drain_orphaned_karpenter_nodes(st);
    let delay = st.controller_delay;
    let due = |st: &State, k: &str| st.deleting_since.get(k).is_some_and(|t| t.elapsed() >= delay);
    for k in keys_of(st, "karpenter.k8s.aws", "ec2nodeclasses") {
        let fresh = st
            .objects
            .get(&k)
            .is_some_and(|o| !is_deleting(o) && !finalizers(o).contains(&"karpenter.k8s.aws/termination".to_string()));
        if fresh {
            if let Some(o) = st.objects.get_mut(&k) {
                let mut f = finalizers(o);
                f.push("karpenter.k8s.aws/termination".into());
                o["metadata"]["finalizers"] = json!(f);
            }
        }
    }
    for k in keys_of(st, "karpenter.sh", "nodeclaims") {
        let Some(claim) = st.objects.get(&k).cloned() else { continue };
        if !is_deleting(&claim) || !due(st, &k) {
            continue;
        }
        if let Some(node) = claim.pointer("/status/nodeName").and_then(Value::as_str) {
            let node_key = path_of("v1", "Node", None, node);
            if st.objects.contains_key(&node_key) {
                mark_deleting(st, &node_key);
                drop_finalizer(st, &node_key, "karpenter.sh/termination");
            }
        }
        drop_finalizer(st, &k, "karpenter.sh/termination");
    }
    for k in keys_of(st, "", "nodes") {
        if st.objects.get(&k).is_some_and(is_deleting) && due(st, &k) {
            drop_finalizer(st, &k, "karpenter.sh/termination");
        }
    }
    for k in keys_of(st, "karpenter.k8s.aws", "ec2nodeclasses") {
        let Some(class) = st.objects.get(&k).cloned() else { continue };
        let name = class.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let used = keys_of(st, "karpenter.sh", "nodeclaims").iter().any(|c| {
            st.objects.get(c).and_then(|o| o.pointer("/spec/nodeClassRef/name")).and_then(Value::as_str) == Some(name)
        });
        if is_deleting(&class) && due(st, &k) && !used {
            drop_finalizer(st, &k, "karpenter.k8s.aws/termination");
        }
    }
}

fn labels_of(obj: &Value) -> serde_json::Map<String, Value> {
    obj.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Whether every `matchLabels` entry of `selector` is among `labels` (an empty selector matches all).
fn selects(selector: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// An IntOrString budget against a total: percentages round up, as the disruption controller does.
fn budget(value: &Value, total: i64) -> i64 {
    match value {
        Value::String(s) if s.ends_with('%') => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            (p * total + 99) / 100
        }
        Value::String(s) => s.parse().unwrap_or(0),
        v => v.as_i64().unwrap_or(0),
    }
}

/// `POST /api/v1/namespaces/NS/pods/NAME/eviction`.
fn evict(st: &mut State, req: &Request) -> (u16, Value) {
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let (ns, pod_name) = match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, "eviction"] => (ns.to_string(), name.to_string()),
        _ => return status(404, "NotFound", "the server could not find the requested resource"),
    };
    let body = req.json();
    if body.pointer("/metadata/name").and_then(Value::as_str) != Some(pod_name.as_str()) {
        return status(400, "BadRequest", "name in URL does not match name in Eviction object");
    }
    let key = path_of("v1", "Pod", Some(&ns), &pod_name);
    let Some(pod) = st.objects.get(&key).cloned() else {
        return status(404, "NotFound", &format!("pods \"{pod_name}\" not found"));
    };
    let labels = labels_of(&pod);
    let pdb_prefix = format!("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/");
    let pdbs: Vec<Value> = st
        .objects
        .iter()
        .filter(|(k, _)| k.starts_with(&pdb_prefix))
        .map(|(_, v)| v.clone())
        .filter(|p| p.pointer("/spec/selector").is_some_and(|sel| selects(sel, &labels)))
        .collect();
    if pdbs.len() > 1 {
        return status(
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        );
    }
    if let Some(pdb) = pdbs.first() {
        let selector = pdb.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
        let pod_prefix = format!("/api/v1/namespaces/{ns}/pods/");
        let matching: Vec<&Value> = st
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(&pod_prefix))
            .map(|(_, v)| v)
            .filter(|p| !is_deleting(p) && selects(&selector, &labels_of(p)))
            .collect();
        let expected = matching.len() as i64;
        let healthy =
            matching.iter().filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running")).count()
                as i64;
        let needed = match (pdb.pointer("/spec/minAvailable"), pdb.pointer("/spec/maxUnavailable")) {
            (Some(min), _) => budget(min, expected),
            (None, Some(max)) => expected - budget(max, expected),
            (None, None) => 0,
        };
        if healthy - needed <= 0 {
            let name = pdb.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            let (code, mut reply) =
                status(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.");
            reply["details"] = json!({"causes": [{"reason": "DisruptionBudget",
                "message": format!("The disruption budget {name} needs {needed} healthy pods and has {healthy} currently")}]});
            return (code, reply);
        }
    }
    mark_deleting(st, &key);
    reschedule(st, &pod);
    st.evictions += 1;
    if let Some((n, f)) = st.on_eviction.as_mut() {
        if *n == st.evictions {
            f();
        }
    }
    (201, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
}

/// Whether the pod's tolerations cover a taint (`Exists`, or `Equal` with the value; no key = all).
fn tolerates(pod: &Value, taint: &Value) -> bool {
    let effect = taint.get("effect").and_then(Value::as_str).unwrap_or("");
    if effect == "PreferNoSchedule" {
        return true;
    }
    pod.pointer("/spec/tolerations").and_then(Value::as_array).is_some_and(|ts| {
        ts.iter().any(|t| {
            let f = |k: &str| t.get(k).and_then(Value::as_str);
            let key_ok = f("key").is_none_or(|k| Some(k) == taint.get("key").and_then(Value::as_str));
            let effect_ok = f("effect").is_none_or(|e| e.is_empty() || e == effect);
            let value_ok = f("operator") == Some("Exists") || f("value") == taint.get("value").and_then(Value::as_str);
            key_ok && effect_ok && value_ok
        })
    })
}

fn fits(pod: &Value, labels: &serde_json::Map<String, Value>, taints: &[Value]) -> bool {
    let selector_ok = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    selector_ok && taints.iter().all(|t| tolerates(pod, t))
}

/// The replacement an owning controller and the scheduler would make for an evicted pod.
fn reschedule(st: &mut State, evicted: &Value) {
    if evicted.pointer("/metadata/ownerReferences").and_then(Value::as_array).is_none_or(|r| r.is_empty()) {
        return;
    }
    let taints_of = |o: &Value, p: &str| o.pointer(p).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut node = keys_of(st, "", "nodes").into_iter().filter_map(|k| st.objects.get(&k).cloned()).find(|n| {
        !is_deleting(n)
            && n.pointer("/spec/unschedulable") != Some(&json!(true))
            && fits(evicted, &labels_of(n), &taints_of(n, "/spec/taints"))
    });
    if node.is_none() && controller_runs(st) {
        let pool = keys_of(st, "karpenter.sh", "nodepools")
            .into_iter()
            .filter_map(|k| st.objects.get(&k).cloned())
            .find(|p| {
                let labels =
                    p.pointer("/spec/template/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
                !is_deleting(p) && fits(evicted, &labels, &taints_of(p, "/spec/template/spec/taints"))
            });
        if let Some(pool) = pool {
            let pool_name = pool.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            let mut labels = pool.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
            labels["karpenter.sh/nodepool"] = json!(pool_name);
            let n = keys_of(st, "", "nodes").len();
            let name = format!("karpenter-{pool_name}-{n}");
            labels["kubernetes.io/hostname"] = json!(name);
            let new = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
                "spec": {"taints": taints_of(&pool, "/spec/template/spec/taints")},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
            st.next_rv += 1;
            let mut stored = new.clone();
            stored["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
            st.objects.insert(path_of("v1", "Node", None, &name), stored);
            node = Some(new);
        }
    }
    let mut pod = evicted.clone();
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string();
    let base = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("pod").to_string();
    st.next_rv += 1;
    let stem = match base.rsplit_once("-r") {
        Some((stem, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => stem,
        _ => base.as_str(),
    };
    let name = format!("{stem}-r{}", st.next_rv);
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["resourceVersion"] = json!(st.next_rv.to_string());
    if let Some(m) = pod["metadata"].as_object_mut() {
        m.remove("deletionTimestamp");
    }
    match node.as_ref().and_then(|n| n.pointer("/metadata/name")).and_then(Value::as_str) {
        Some(n) => {
            pod["spec"]["nodeName"] = json!(n);
            pod["status"] = json!({"phase": "Running"});
        }
        None => {
            if let Some(spec) = pod["spec"].as_object_mut() {
                spec.remove("nodeName");
            }
            pod["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]});
        }
    }
    st.objects.insert(path_of("v1", "Pod", Some(&ns), &name), pod);
}

/// Karpenter's part when a NodePool is deleted: its nodes are drained and terminated.
fn drain_orphaned_karpenter_nodes(st: &mut State) {
    let orphans: Vec<(String, String)> = keys_of(st, "", "nodes")
        .into_iter()
        .filter_map(|k| {
            let node = st.objects.get(&k)?;
            let pool = node.pointer("/metadata/labels/karpenter.sh~1nodepool").and_then(Value::as_str)?;
            let gone = !st.objects.contains_key(&path_of("karpenter.sh/v1", "NodePool", None, pool));
            let name = node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            gone.then_some((k, name))
        })
        .collect();
    for (key, name) in orphans {
        st.objects.remove(&key);
        let pods: Vec<(String, Value)> = keys_of(st, "", "pods")
            .into_iter()
            .filter_map(|k| st.objects.get(&k).cloned().map(|p| (k, p)))
            .filter(|(_, p)| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(name.as_str()))
            .collect();
        for (k, pod) in pods {
            st.objects.remove(&k);
            reschedule(st, &pod);
        }
    }
}
