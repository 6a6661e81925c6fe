//! The cluster API client `init`, `doctor` and `teardown` share.
//!
//! Why kube-rs: it is the maintained, widely used Kubernetes client for Rust (a CNCF project,
//! released in step with Kubernetes), it speaks server-side apply and dynamic (untyped)
//! resources, and it reads kubeconfigs including `exec` credential plugins, which `--kubeconfig`
//! needs. It is built with the `client` and `rustls-tls` features only (no websockets, no
//! controller runtime) and with rustls on aws-lc-rs, so it reuses the hyper, rustls and crypto
//! builds the AWS SDK already brings.
//!
//! Two ways in: the default needs no kubeconfig (endpoint and CA from `DescribeCluster`, a
//! token from [`super::token`], re-presigned and the client rebuilt before it expires);
//! `--kubeconfig`/`--context` hand the whole connection to the kubeconfig.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};
use async_trait::async_trait;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use serde_json::Value;
use tokio::sync::Mutex;

use super::token::{EksTokenSource, TokenSource, REFRESH_AFTER};
use crate::aws::Aws;
use crate::cluster::ClusterInfo;
use crate::error::{Error, ErrorKind, Result};
use crate::helm::{self, EnvSource, HelmEnv};

/// The field manager of every server-side apply, so `kubectl` shows who owns which field and
/// a re-apply by karpctl takes its own fields back.
pub const FIELD_MANAGER: &str = "karpctl";

/// How long a single API request may take before it counts as failed: every wait polls, so no
/// request needs to stay open, and none may hang a run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

const ACCESS_HINT: &str = "give your IAM principal access to the cluster: an EKS access entry \
     (aws eks create-access-entry, then associate-access-policy with AmazonEKSClusterAdminPolicy) \
     or an aws-auth mapping; or pass --kubeconfig/--context";

/// One permission the install needs, checked up front with a SelfSubjectAccessReview so that a
/// run stops before its first write rather than halfway through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `create`, `patch`, `update`, `delete`, `get`, `list`, ...
    pub verb: String,
    /// The API group, empty for the core group.
    pub group: String,
    /// The resource's plural name (`configmaps`, `nodepools`).
    pub resource: String,
    /// The namespace, or None for cluster-scoped resources and cluster-wide rights.
    pub namespace: Option<String>,
}

impl Access {
    /// A permission to check.
    pub fn new(verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> Self {
        Access {
            verb: verb.to_string(),
            group: group.to_string(),
            resource: resource.to_string(),
            namespace: namespace.map(str::to_string),
        }
    }

    /// What `init` needs on the cluster: the charts (CRDs, RBAC, the controller in
    /// `namespace`), the default NodePool and EC2NodeClass, and, on CONFIG_MAP clusters, the
    /// aws-auth ConfigMap.
    pub fn for_install(namespace: &str, aws_auth: bool) -> Vec<Access> {
        let mut v = vec![
            Access::new("create", "apiextensions.k8s.io", "customresourcedefinitions", None),
            Access::new("create", "rbac.authorization.k8s.io", "clusterroles", None),
            Access::new("create", "rbac.authorization.k8s.io", "clusterrolebindings", None),
            Access::new("create", "apps", "deployments", Some(namespace)),
            Access::new("create", "", "serviceaccounts", Some(namespace)),
            Access::new("patch", "karpenter.sh", "nodepools", None),
            Access::new("patch", "karpenter.k8s.aws", "ec2nodeclasses", None),
        ];
        if aws_auth {
            v.push(Access::new("update", "", "configmaps", Some(super::aws_auth::NAMESPACE)));
        }
        v
    }
}

/// `create nodepools.karpenter.sh` / `update configmaps in kube-system`: kubectl's spelling,
/// so the user can paste it into `kubectl auth can-i`.
impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, " in {ns}")?;
        }
        Ok(())
    }
}

/// The wait before the second look of every poll; each later wait doubles, up to the interval.
pub const FIRST_LOOK: Duration = Duration::from_millis(200);

/// How often to look and for how long, passed in so tests run in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// The longest time between two looks (the first ones come sooner, see [`FIRST_LOOK`]).
    pub interval: Duration,
    /// When to give up.
    pub timeout: Duration,
}

impl Wait {
    /// A wait of `timeout`, looking every `interval`.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Wait { interval, timeout }
    }

    /// The controller and the NodeClass: image pulls and the first reconcile take minutes.
    pub const INSTALL: Wait = Wait { interval: Duration::from_secs(5), timeout: Duration::from_secs(300) };

    /// NodeClaims draining after their NodePool is deleted: instances take minutes to go.
    pub const DRAIN: Wait = Wait { interval: Duration::from_secs(10), timeout: Duration::from_secs(900) };
}

/// One entry of an object's `status.conditions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `Ready`, `SubnetsReady`, `Available`, ...
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason, when given.
    pub reason: Option<String>,
    /// The human-readable message, when given.
    pub message: Option<String>,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.type_, self.status)?;
        match (&self.reason, &self.message) {
            (_, Some(m)) if !m.is_empty() => write!(f, ": {m}"),
            (Some(r), _) if !r.is_empty() => write!(f, " ({r})"),
            _ => Ok(()),
        }
    }
}

/// Whether an object is ready, and if not, the condition that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The readiness condition is True.
    Ready,
    /// Not (yet) ready: the most telling condition (a False one other than the summary, else
    /// the summary), or None when the object has no conditions yet.
    NotReady(Option<Condition>),
}

/// The object's conditions, in order.
pub fn conditions(object: &Value) -> Vec<Condition> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| Condition {
                    type_: s(c, "type").unwrap_or_default(),
                    status: s(c, "status").unwrap_or_else(|| "Unknown".into()),
                    reason: s(c, "reason"),
                    message: s(c, "message"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Readiness by the condition `summary` (`Ready` for Karpenter's resources): a pure function of
/// the object, so `doctor` can judge one read and the wait loop many.
pub fn readiness(object: &Value, summary: &str) -> Readiness {
    let all = conditions(object);
    if all.iter().any(|c| c.type_ == summary && c.status == "True") {
        return Readiness::Ready;
    }
    let failing = all
        .iter()
        .find(|c| c.type_ != summary && c.status == "False")
        .or_else(|| all.iter().find(|c| c.type_ == summary));
    Readiness::NotReady(failing.cloned())
}

/// A Deployment is available as Kubernetes (and `helm --wait`) judge it: the controller has seen
/// the current spec and the `Available` condition is True.
pub fn deployment_readiness(object: &Value) -> Readiness {
    let generation = object.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let observed = object.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
    let all = conditions(object);
    let available = all.iter().find(|c| c.type_ == "Available");
    if observed >= generation && available.is_some_and(|c| c.status == "True") {
        return Readiness::Ready;
    }
    if observed < generation {
        return Readiness::NotReady(Some(Condition {
            type_: "Available".into(),
            status: "Unknown".into(),
            reason: Some("RolloutPending".into()),
            message: Some("the deployment controller has not seen the new spec yet".into()),
        }));
    }
    // A stuck rollout says why in Progressing (ProgressDeadlineExceeded); otherwise Available
    // carries "Deployment does not have minimum availability."; else count replicas.
    let progressing = all.iter().find(|c| c.type_ == "Progressing" && c.status == "False");
    let replicas = object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let ready = object.pointer("/status/availableReplicas").and_then(Value::as_i64).unwrap_or(0);
    let counted = Condition {
        type_: "Available".into(),
        status: available.map(|c| c.status.clone()).unwrap_or_else(|| "Unknown".into()),
        reason: None,
        message: Some(format!(
            "{ready}/{replicas} replicas available{}",
            available.and_then(|c| c.message.as_deref()).map(|m| format!("; {m}")).unwrap_or_default()
        )),
    };
    Readiness::NotReady(Some(progressing.cloned().unwrap_or(counted)))
}

/// The resource type of an `apiVersion` + `kind`, plural by Kubernetes' convention (which holds
/// for everything karpctl touches: `ec2nodeclasses`, `nodepools`, `configmaps`).
pub fn api_resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

enum Target {
    Eks {
        endpoint: String,
        uri: http::Uri,
        ca_pem: Option<Vec<u8>>,
        ca_der: Option<Vec<Vec<u8>>>,
        tokens: Arc<dyn TokenSource>,
    },
    Kubeconfig {
        path: Option<PathBuf>,
        context: Option<String>,
        config: Box<Config>,
    },
}

struct Built {
    client: Client,
    at: Instant,
}

/// The cluster API, as karpctl uses it. Cheap to share by reference; the underlying kube-rs
/// client is rebuilt with a fresh token when the current one gets old.
pub struct Kube {
    target: Target,
    built: Mutex<Option<Built>>,
    refresh_after: Duration,
}

/// Shows where, never the token.
impl fmt::Debug for Kube {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kube").field("server", &self.server()).finish()
    }
}

impl Kube {
    /// Connect the way the command line says: `--kubeconfig`/`--context` when given, otherwise
    /// the discovered cluster's endpoint and CA with a token from the shared AWS credentials.
    pub async fn connect(
        info: &ClusterInfo,
        aws: &Aws,
        kubeconfig: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Kube> {
        if kubeconfig.is_some() || context.is_some() {
            return Kube::from_kubeconfig(kubeconfig, context).await;
        }
        let endpoint = info.endpoint.as_deref().filter(|e| !e.is_empty()).ok_or_else(|| {
            Error::new(ErrorKind::ClusterState, format!("cluster {} has no API endpoint yet", info.name))
                .with_hint("wait until the cluster is ACTIVE, then run again")
        })?;
        let ca = info.ca_data.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| {
            Error::new(ErrorKind::ClusterState, format!("cluster {} reports no certificate authority", info.name))
                .with_hint("wait until the cluster is ACTIVE, then run again")
        })?;
        Kube::eks(endpoint, Some(ca), EksTokenSource::new(aws, info)?.shared())
    }

    /// A client for `endpoint` that trusts `ca_data` (base64 PEM, as `DescribeCluster` gives it;
    /// None: the system's roots) and authenticates with tokens from `tokens`.
    pub fn eks(endpoint: &str, ca_data: Option<&str>, tokens: Arc<dyn TokenSource>) -> Result<Kube> {
        let uri: http::Uri = endpoint.parse().map_err(|e: http::uri::InvalidUri| {
            Error::new(ErrorKind::ClusterState, format!("the cluster endpoint {endpoint:?} is not a URL"))
                .with_cause(e.to_string())
                .with_hint("check the cluster with aws eks describe-cluster")
        })?;
        let (ca_pem, ca_der) = match ca_data {
            Some(b64) => {
                let (pem, der) = parse_ca(b64)?;
                (Some(pem), Some(der))
            }
            None => (None, None),
        };
        Ok(Kube {
            target: Target::Eks { endpoint: endpoint.trim_end_matches('/').to_string(), uri, ca_pem, ca_der, tokens },
            built: Mutex::new(None),
            refresh_after: REFRESH_AFTER,
        })
    }

    /// A client from a kubeconfig (`path`, else `KUBECONFIG` or `~/.kube/config`) and context
    /// (else its current context). Loaded now, so a wrong path or context fails before any work.
    pub async fn from_kubeconfig(path: Option<&Path>, context: Option<&str>) -> Result<Kube> {
        let shown = path.map(|p| p.display().to_string()).unwrap_or_else(|| "the default kubeconfig".into());
        let fail = |e: &dyn std::error::Error| {
            Error::new(ErrorKind::InvalidInput, format!("failed to load {shown}"))
                .with_cause(super::source_chain(e))
                .with_hint("check --kubeconfig and --context (kubectl config get-contexts lists the contexts)")
        };
        let kc = match path {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        }
        .map_err(|e| fail(&e))?;
        let opts = KubeConfigOptions { context: context.map(str::to_string), cluster: None, user: None };
        let mut config = Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| fail(&e))?;
        config.read_timeout = Some(REQUEST_TIMEOUT);
        Ok(Kube {
            target: Target::Kubeconfig {
                path: path.map(Path::to_path_buf),
                context: context.map(str::to_string),
                config: Box::new(config),
            },
            built: Mutex::new(None),
            refresh_after: REFRESH_AFTER,
        })
    }

    /// Rebuild the client (with a fresh token) once it is older than `after`; the default is
    /// [`REFRESH_AFTER`]. Tests set zero to see a new token on every request.
    pub fn with_refresh_after(mut self, after: Duration) -> Self {
        self.refresh_after = after;
        self
    }

    /// The API server's URL, for messages.
    pub fn server(&self) -> String {
        match &self.target {
            Target::Eks { endpoint, .. } => endpoint.clone(),
            Target::Kubeconfig { config, .. } => config.cluster_url.to_string(),
        }
    }

    /// The kube-rs client, with a token young enough for the next requests. Public so callers
    /// can reach what this wrapper does not cover; clone it freely, but ask again for each
    /// batch of work rather than keeping it for longer than [`REFRESH_AFTER`].
    pub async fn client(&self) -> Result<Client> {
        let mut built = self.built.lock().await;
        if let Some(b) = built.as_ref() {
            let stale = matches!(self.target, Target::Eks { .. }) && b.at.elapsed() >= self.refresh_after;
            if !stale {
                return Ok(b.client.clone());
            }
        }
        let config = match &self.target {
            Target::Eks { uri, ca_der, tokens, .. } => {
                let mut c = Config::new(uri.clone());
                c.root_cert = ca_der.clone();
                c.auth_info.token = Some(tokens.token().await?.into());
                c.read_timeout = Some(REQUEST_TIMEOUT);
                c
            }
            Target::Kubeconfig { config, .. } => (**config).clone(),
        };
        let client = Client::try_from(config).map_err(|e| self.error("failed to set up the cluster API client", e))?;
        *built = Some(Built { client: client.clone(), at: Instant::now() });
        Ok(client)
    }

    /// Check, before the first write, that the API answers and that the caller may do each of
    /// `needs`. Returns the server's version (`v1.33.1-eks-...`). All denials are reported in
    /// one error, so one fix covers them.
    pub async fn preflight(&self, needs: &[Access]) -> Result<String> {
        let client = self.client().await?;
        let version = client.apiserver_version().await.map_err(|e| {
            let err = self.error(format!("cannot reach the cluster API at {}", self.server()), e);
            match err.kind {
                ErrorKind::Credentials => Error {
                    message: format!("the cluster API at {} does not accept karpctl's token", self.server()),
                    ..err
                },
                _ => err,
            }
        })?;
        let reviews = needs.iter().map(|a| {
            let client = client.clone();
            async move {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(ResourceAttributes {
                            verb: Some(a.verb.clone()),
                            group: Some(a.group.clone()),
                            resource: Some(a.resource.clone()),
                            namespace: a.namespace.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let api: Api<SelfSubjectAccessReview> = Api::all(client);
                let out = api.create(&PostParams::default(), &review).await;
                (a, out)
            }
        });
        let mut denied = Vec::new();
        let mut reasons = Vec::new();
        for (access, out) in futures::future::join_all(reviews).await {
            let out = out.map_err(|e| self.error(format!("failed to check whether the cluster allows {access}"), e))?;
            let status = out.status.unwrap_or_default();
            if !status.allowed {
                denied.push(access.to_string());
                if let Some(r) = status.reason.filter(|r| !r.is_empty()) {
                    reasons.push(r);
                }
            }
        }
        if !denied.is_empty() {
            let mut e = Error::new(
                ErrorKind::AccessDenied,
                format!("the cluster does not allow karpctl to {}", denied.join(", ")),
            )
            .with_hint(format!(
                "grant your identity these rights (check with kubectl auth can-i {}); the simplest is \
                 the AmazonEKSClusterAdminPolicy access policy on your access entry",
                denied[0]
            ));
            if !reasons.is_empty() {
                e = e.with_cause(reasons.join("; "));
            }
            return Err(e);
        }
        Ok(version.git_version)
    }

    fn api(&self, client: Client, api_version: &str, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = api_resource(api_version, kind);
        match namespace {
            Some(ns) => Api::namespaced_with(client, ns, &ar),
            None => Api::all_with(client, &ar),
        }
    }

    /// Server-side apply of one manifest, with field manager [`FIELD_MANAGER`] and `force` (so
    /// karpctl takes back fields another manager changed: the desired state wins, as in every
    /// other karpctl resource). Cluster-scoped unless the manifest names a namespace. Returns
    /// the object as the server now has it.
    pub async fn apply(&self, manifest: &Value) -> Result<Value> {
        let field = |p: &str| manifest.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty());
        let (Some(api_version), Some(kind), Some(name)) =
            (field("/apiVersion"), field("/kind"), field("/metadata/name"))
        else {
            return Err(Error::new(ErrorKind::Render, "a manifest lacks apiVersion, kind or metadata.name")
                .with_hint("this is a karpctl defect; please report it"));
        };
        let namespace = field("/metadata/namespace");
        let api = self.api(self.client().await?, api_version, kind, namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let out = api
            .patch(name, &params, &Patch::Apply(manifest))
            .await
            .map_err(|e| self.error(format!("failed to apply {kind} {name}"), e))?;
        to_value(out)
    }

    /// Server-side apply of every document of a (multi-document) YAML text, in order.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for doc in manifests_from_yaml(yaml)? {
            out.push(self.apply(&doc).await?);
        }
        Ok(out)
    }

    /// One object, or None when it does not exist.
    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<DynamicObject>> {
        self.api(self.client().await?, api_version, kind, namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.error(format!("failed to read {kind} {name}"), e))
    }

    /// The objects of a kind (in `namespace`, or cluster-wide), optionally by label selector.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<DynamicObject>> {
        let mut lp = ListParams::default();
        if let Some(s) = label_selector {
            lp = lp.labels(s);
        }
        let list = self
            .api(self.client().await?, api_version, kind, namespace)
            .list(&lp)
            .await
            .map_err(|e| self.error(format!("failed to list {kind} objects"), e))?;
        Ok(list.items)
    }

    /// Delete one object; `Ok(false)` when it was already gone. Finalizers may keep it a while:
    /// use [`Kube::wait_gone`] to wait for that.
    pub async fn delete(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Result<bool> {
        match self.api(self.client().await?, api_version, kind, namespace).delete(name, &DeleteParams::default()).await
        {
            Ok(_) => Ok(true),
            Err(::kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.error(format!("failed to delete {kind} {name}"), e)),
        }
    }

    /// Remove every finalizer of one object with a JSON merge patch (`finalizers: null`), for
    /// teardown when the controller that owns them is gone; `Ok(false)` when it was already gone.
    pub async fn remove_finalizers(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool> {
        let patch = serde_json::json!({"metadata": {"finalizers": null}});
        self.merge_patch(api_version, kind, namespace, name, &patch, "remove the finalizers of").await
    }

    /// A JSON merge patch of one object (for metadata karpctl does not manage by server-side
    /// apply: finalizers, helm's ownership); `Ok(false)` when the object is gone.
    pub async fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
        doing: &str,
    ) -> Result<bool> {
        match self
            .api(self.client().await?, api_version, kind, namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(::kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.error(format!("failed to {doing} {kind} {name}"), e)),
        }
    }

    /// Wait until the Deployment is available ([`deployment_readiness`]). `progress` hears each
    /// new state; on timeout the error names the last one.
    pub async fn wait_deployment_available(
        &self,
        namespace: &str,
        name: &str,
        wait: Wait,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<()> {
        let what = format!("deployment {namespace}/{name}");
        let last = self
            .poll(wait, &what, progress, || async {
                Ok(match self.get("apps/v1", "Deployment", Some(namespace), name).await? {
                    None => Probe::Waiting("it does not exist yet".into()),
                    Some(obj) => match deployment_readiness(&to_value(obj)?) {
                        Readiness::Ready => Probe::Done,
                        Readiness::NotReady(c) => Probe::Waiting(describe(c.as_ref())),
                    },
                })
            })
            .await?;
        match last {
            None => Ok(()),
            Some(state) => {
                Err(Error::new(ErrorKind::Timeout, format!("{what} is not available after {}", human(wait.timeout)))
                    .with_cause(state)
                    .with_hint(format!(
                "look at the controller: kubectl -n {namespace} get pods; kubectl -n {namespace} logs deploy/{name}"
            )))
            }
        }
    }

    /// Wait until a custom resource's `Ready` condition is True. On timeout the error's cause is
    /// the failing condition (type and message: `SubnetsReady=False: ...`), with a hint for the
    /// EC2NodeClass conditions karpctl knows how to fix.
    pub async fn wait_ready(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        wait: Wait,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<()> {
        let what = format!("{kind} {name}");
        let failing = std::sync::Mutex::new(None::<Condition>);
        let last = self
            .poll(wait, &what, progress, || async {
                Ok(match self.get(api_version, kind, namespace, name).await? {
                    None => Probe::Waiting("it does not exist yet".into()),
                    Some(obj) => match readiness(&to_value(obj)?, "Ready") {
                        Readiness::Ready => Probe::Done,
                        Readiness::NotReady(c) => {
                            let text = describe(c.as_ref());
                            if let Ok(mut f) = failing.lock() {
                                *f = c;
                            }
                            Probe::Waiting(text)
                        }
                    },
                })
            })
            .await?;
        let Some(state) = last else { return Ok(()) };
        let condition = failing.lock().ok().and_then(|f| f.clone());
        let hint = condition.as_ref().and_then(|c| condition_hint(&c.type_)).map(str::to_string).unwrap_or_else(|| {
            format!(
                "kubectl describe {} {name} shows its conditions; karpctl doctor checks each piece",
                kind.to_lowercase()
            )
        });
        Err(Error::new(ErrorKind::Timeout, format!("{what} is not Ready after {}", human(wait.timeout)))
            .with_cause(state)
            .with_hint(hint))
    }

    /// Wait until no object of a kind matches `label_selector` and, when given, `names`
    /// (NodeClaims of a deleted NodePool, the deleted EC2NodeClasses: Karpenter removes their
    /// finalizers, after terminating the instances, only while it still runs).
    #[allow(clippy::too_many_arguments)]
    pub async fn wait_gone(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        names: Option<&[String]>,
        wait: Wait,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<()> {
        let what = match label_selector {
            Some(s) => format!("{kind} objects with {s}"),
            None => format!("{kind} objects"),
        };
        let last = self
            .poll(wait, &what, progress, || async {
                let mut items = self.list(api_version, kind, namespace, label_selector).await?;
                if let Some(names) = names {
                    items.retain(|o| o.metadata.name.as_ref().is_some_and(|n| names.contains(n)));
                }
                if items.is_empty() {
                    return Ok(Probe::Done);
                }
                let names: Vec<String> = items.iter().filter_map(|o| o.metadata.name.clone()).collect();
                Ok(Probe::Waiting(format!("{} remaining: {}", names.len(), names.join(", "))))
            })
            .await?;
        match last {
            None => Ok(()),
            Some(state) => {
                Err(Error::new(ErrorKind::Timeout, format!("{what} still exist after {}", human(wait.timeout)))
                    .with_cause(state)
                    .with_hint(format!(
                        "kubectl get {} shows them; their finalizers wait for the instances to terminate",
                        kind.to_lowercase()
                    )))
            }
        }
    }

    /// The poll loop every wait shares: `Ok(None)` when done, `Ok(Some(last state))` on timeout.
    /// Transient failures (network, 5xx) are waited through and become the state; a refusal
    /// (credentials, access) ends the wait at once.
    async fn poll<F, Fut>(
        &self,
        wait: Wait,
        what: &str,
        progress: &(dyn Fn(&str) + Sync),
        mut probe: F,
    ) -> Result<Option<String>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Probe>>,
    {
        let deadline = tokio::time::Instant::now() + wait.timeout;
        let mut last = String::new();
        // What is done in a second (a re-run, a small chart) is seen in a second; what takes
        // minutes is looked at every `interval`.
        let mut step = FIRST_LOOK.min(wait.interval);
        loop {
            let state = match probe().await {
                Ok(Probe::Done) => {
                    progress(&format!("{what}: ready"));
                    return Ok(None);
                }
                Ok(Probe::Waiting(s)) => s,
                Err(e) if matches!(e.kind, ErrorKind::Network | ErrorKind::ClusterState | ErrorKind::Timeout) => {
                    e.to_string()
                }
                Err(e) => return Err(e),
            };
            if state != last {
                progress(&format!("{what}: {state}"));
                last = state;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Some(last));
            }
            tokio::time::sleep(step.min(deadline - now)).await;
            step = (step * 2).min(wait.interval);
        }
    }

    /// A classified error from a kube-rs failure while `doing` something.
    fn error(&self, doing: impl Into<String>, e: ::kube::Error) -> Error {
        kube_error(doing, &self.server(), e)
    }
}

/// The runner asks for a fresh environment (and so a fresh token) for every helm step.
#[async_trait]
impl EnvSource for Kube {
    async fn helm_env(&self) -> Result<HelmEnv> {
        Kube::helm_env(self).await
    }
}

impl Kube {
    /// helm's way to the same cluster: endpoint, CA file and a fresh token
    /// (`HELM_KUBEAPISERVER`, `HELM_KUBECAFILE`, `HELM_KUBETOKEN`: never argv, which `ps` shows
    /// to every user), with `KUBECONFIG` pointing at an empty kubeconfig so the user's current
    /// context cannot mix in; or, with `--kubeconfig`/`--context`, `KUBECONFIG` and
    /// `HELM_KUBECONTEXT`. The CA and empty kubeconfig are private (0600) files in a private
    /// directory, removed when the last clone of the value is dropped.
    pub async fn helm_env(&self) -> Result<HelmEnv> {
        match &self.target {
            Target::Eks { endpoint, ca_pem, tokens, .. } => {
                let dir = helm::private_dir()?;
                let kubeconfig = dir.path().join("kubeconfig");
                helm::write_private(&kubeconfig, b"apiVersion: v1\nkind: Config\n")?;
                let mut vars = vec![("HELM_KUBEAPISERVER".to_string(), endpoint.clone())];
                if let Some(pem) = ca_pem {
                    let ca = dir.path().join("ca.crt");
                    helm::write_private(&ca, pem)?;
                    vars.push(("HELM_KUBECAFILE".into(), ca.display().to_string()));
                }
                vars.push(("HELM_KUBETOKEN".into(), tokens.token().await?));
                vars.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
                Ok(HelmEnv::with_files(vars, dir))
            }
            Target::Kubeconfig { path, context, .. } => {
                let mut vars = Vec::new();
                if let Some(p) = path {
                    vars.push(("KUBECONFIG".to_string(), p.display().to_string()));
                }
                if let Some(c) = context {
                    vars.push(("HELM_KUBECONTEXT".to_string(), c.clone()));
                }
                Ok(HelmEnv::new(vars))
            }
        }
    }
}

enum Probe {
    Done,
    Waiting(String),
}

fn describe(c: Option<&Condition>) -> String {
    match c {
        Some(c) => c.to_string(),
        None => "no status conditions yet (is the Karpenter controller running?)".into(),
    }
}

/// What to do about the EC2NodeClass conditions that fail in practice (karpenter-facts §5, §3).
fn condition_hint(type_: &str) -> Option<&'static str> {
    Some(match type_ {
        "SubnetsReady" => {
            "no subnet matched the selector: tag the cluster's private subnets karpenter.sh/discovery=<cluster> (init does this)"
        }
        "SecurityGroupsReady" => {
            "no security group matched the selector: tag the cluster security group karpenter.sh/discovery=<cluster>"
        }
        "InstanceProfileReady" => {
            "the controller could not create the instance profile: check the controller role's IAM policies and the node role"
        }
        "AMIsReady" => "no AMI matched amiSelectorTerms: check the alias (e.g. al2023@latest) and the region",
        "ValidationSucceeded" => "the controller rejected the EC2NodeClass: its message says which field",
        _ => return None,
    })
}

fn to_value(obj: DynamicObject) -> Result<Value> {
    serde_json::to_value(obj).map_err(|e| {
        Error::new(ErrorKind::ClusterState, "the cluster API returned an object karpctl cannot read")
            .with_cause(e.to_string())
    })
}

/// The documents of a (multi-document) YAML text as JSON values, empty documents skipped.
pub fn manifests_from_yaml(yaml: &str) -> Result<Vec<Value>> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v = Value::deserialize(doc).map_err(|e| {
            Error::new(ErrorKind::Render, "a manifest is not valid YAML")
                .with_cause(e.to_string())
                .with_hint("this is a karpctl defect; please report it")
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// `DescribeCluster`'s base64 PEM → the PEM bytes (for helm's CA file) and the DER
/// certificates (for rustls).
fn parse_ca(b64: &str) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    use base64::Engine as _;
    let bad = |cause: String| {
        Error::new(ErrorKind::ClusterState, "the cluster's certificate authority data is not a base64 PEM certificate")
            .with_cause(cause)
            .with_hint("check certificateAuthority.data in aws eks describe-cluster")
    };
    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let pem = base64::engine::general_purpose::STANDARD.decode(compact).map_err(|e| bad(e.to_string()))?;
    let der: Vec<Vec<u8>> = pem::parse_many(&pem)
        .map_err(|e| bad(e.to_string()))?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.contents().to_vec())
        .collect();
    if der.is_empty() {
        return Err(bad("no CERTIFICATE block in it".into()));
    }
    Ok((pem, der))
}

/// Classify a kube-rs failure the way [`Error::aws`] classifies AWS ones: by HTTP status code
/// and error variant, never by message text.
pub(crate) fn kube_error(doing: impl Into<String>, server: &str, e: ::kube::Error) -> Error {
    let doing = doing.into();
    match e {
        ::kube::Error::Api(s) => {
            let cause = if s.message.is_empty() { format!("{} ({})", s.reason, s.code) } else { s.message.clone() };
            let (kind, hint) = match s.code {
                401 => (ErrorKind::Credentials, Some(ACCESS_HINT.to_string())),
                403 => (
                    ErrorKind::AccessDenied,
                    Some(
                        "your identity lacks this right in the cluster's RBAC; karpctl's preflight lists what it needs"
                            .into(),
                    ),
                ),
                404 => (ErrorKind::NotFound, None),
                409 => (ErrorKind::AlreadyExists, Some("something else changed it meanwhile; run again".into())),
                400 | 422 => (
                    ErrorKind::Render,
                    Some("the cluster rejected the document; check --set/--values, else report it".into()),
                ),
                _ => (
                    ErrorKind::ClusterState,
                    Some("the cluster API failed; run again, and check the control plane's health".into()),
                ),
            };
            let mut err = Error::new(kind, doing).with_cause(cause);
            err.code = Some(if s.reason.is_empty() { s.code.to_string() } else { s.reason.clone() });
            match hint {
                Some(h) => err.with_hint(h),
                None => err,
            }
        }
        ::kube::Error::Auth(_) => Error::new(ErrorKind::Credentials, doing)
            .with_cause(super::source_chain(&e))
            .with_hint(
            "the kubeconfig's credentials failed; check the user's exec plugin or token (kubectl get --raw /version)",
        ),
        ::kube::Error::InferKubeconfig(_) | ::kube::Error::InferConfig(_) => Error::new(ErrorKind::InvalidInput, doing)
            .with_cause(super::source_chain(&e))
            .with_hint("check --kubeconfig and --context"),
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) | ::kube::Error::RustlsTls(_) => {
            Error::new(ErrorKind::Network, doing).with_cause(super::source_chain(&e)).with_hint(format!(
                "check that {server} is reachable from here: a private-only endpoint needs a host in the VPC or a VPN, \
                 and its security group must allow HTTPS from you"
            ))
        }
        other => Error::new(ErrorKind::ClusterState, doing).with_cause(super::source_chain(&other)),
    }
}

/// `300ms`, `45s`, `5m`, `5m30s`: for messages.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_when_ready_true() {
        let o = json!({"status": {"conditions": [
            {"type": "SubnetsReady", "status": "True"},
            {"type": "Ready", "status": "True"}]}});
        assert_eq!(readiness(&o, "Ready"), Readiness::Ready);
    }

    #[test]
    fn the_failing_condition_is_the_false_one_not_the_summary() {
        let o = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "UnhealthyDependents", "message": "SubnetsReady=False"},
            {"type": "SubnetsReady", "status": "False", "reason": "SubnetsNotFound", "message": "SubnetSelector did not match any Subnets"},
            {"type": "AMIsReady", "status": "True"}]}});
        let Readiness::NotReady(Some(c)) = readiness(&o, "Ready") else { panic!("not ready expected") };
        assert_eq!(c.type_, "SubnetsReady");
        assert_eq!(c.to_string(), "SubnetsReady=False: SubnetSelector did not match any Subnets");
        assert_eq!(readiness(&json!({}), "Ready"), Readiness::NotReady(None));
        let only_summary = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "AwaitingReconciliation"}]}});
        let Readiness::NotReady(Some(c)) = readiness(&only_summary, "Ready") else { panic!() };
        assert_eq!(c.to_string(), "Ready=Unknown (AwaitingReconciliation)");
    }

    #[test]
    fn deployment_available_needs_the_current_generation() {
        let mut d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "availableReplicas": 2, "conditions": [{"type": "Available", "status": "True"}]}});
        assert!(matches!(deployment_readiness(&d), Readiness::NotReady(_)));
        d["status"]["observedGeneration"] = json!(2);
        assert_eq!(deployment_readiness(&d), Readiness::Ready);
        let stuck = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "availableReplicas": 0, "conditions": [
                {"type": "Available", "status": "False", "message": "Deployment does not have minimum availability."}]}});
        let Readiness::NotReady(Some(c)) = deployment_readiness(&stuck) else { panic!() };
        assert_eq!(
            c.message.as_deref(),
            Some("0/2 replicas available; Deployment does not have minimum availability.")
        );
    }

    #[test]
    fn plurals_and_groups() {
        let r = api_resource("karpenter.k8s.aws/v1", "EC2NodeClass");
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("karpenter.k8s.aws", "v1", "ec2nodeclasses")
        );
        assert_eq!(api_resource("karpenter.sh/v1", "NodePool").plural, "nodepools");
        assert_eq!(api_resource("karpenter.sh/v1", "NodeClaim").plural, "nodeclaims");
        let cm = api_resource("v1", "ConfigMap");
        assert_eq!((cm.group.as_str(), cm.plural.as_str()), ("", "configmaps"));
    }

    #[test]
    fn access_reads_like_kubectl_auth_can_i() {
        assert_eq!(Access::new("patch", "karpenter.sh", "nodepools", None).to_string(), "patch nodepools.karpenter.sh");
        assert_eq!(
            Access::new("update", "", "configmaps", Some("kube-system")).to_string(),
            "update configmaps in kube-system"
        );
    }

    #[test]
    fn ca_data_must_hold_a_certificate() {
        use base64::Engine as _;
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(parse_ca("not base64!").is_err());
        assert!(parse_ca(&enc("hello")).is_err());
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        let (p, der) = parse_ca(&enc(pem)).unwrap();
        assert_eq!(p, pem.as_bytes());
        assert_eq!(der, vec![vec![0u8, 1, 2]]);
    }

    #[test]
    fn yaml_documents_become_manifests() {
        let docs = manifests_from_yaml("---\napiVersion: v1\nkind: A\n---\n---\napiVersion: v1\nkind: B\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "B");
    }

    #[test]
    fn work_can_move_between_threads() {
        fn send<T: Send>(_: &T) {}
        #[derive(Debug)]
        struct NoTokens;
        #[async_trait]
        impl TokenSource for NoTokens {
            async fn token(&self) -> Result<String> {
                Err(Error::new(ErrorKind::Credentials, "none"))
            }
        }
        let k = Kube::eks("http://127.0.0.1:1", None, Arc::new(NoTokens)).unwrap();
        send(&k);
        send(&k.preflight(&[]));
        send(&k.apply(&Value::Null));
        send(&k.wait_ready("v1", "X", None, "x", Wait::INSTALL, &|_| {}));
        send(&k.wait_deployment_available("ns", "x", Wait::INSTALL, &|_| {}));
        send(&k.wait_gone("v1", "X", None, None, None, Wait::DRAIN, &|_| {}));
        send(&k.helm_env());
        send(&super::super::aws_auth::ensure_node_role(&k, "arn"));
    }

    #[test]
    fn durations_for_messages() {
        assert_eq!(human(Duration::from_millis(300)), "300ms");
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_secs(330)), "5m30s");
    }
}
