//! The resource model: every AWS resource of an install is one small module that can observe
//! itself and converge it to the desired state. `init`, `init --dry-run` (and later `doctor`
//! and `teardown`) are walks over the same ordered set built by [`desired_set`].

pub mod access_entry;
pub mod aws_auth;
pub mod discovery_tags;
pub mod event_rule;
pub mod helm_release;
pub mod instance_profile;
pub mod managed_policy;
pub mod manifest;
pub mod oidc_provider;
pub mod orphans;
pub mod pod_identity;
pub mod pod_identity_agent;
pub mod queue;
pub mod role;
pub mod spot_role;

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::aws::Aws;
use crate::cluster::ClusterInfo;
use crate::desired::Desired;
use crate::error::{Error, ErrorKind, Result};
use crate::helm::ExtraValues;
use crate::kube::Kube;
use crate::render::Documents;

/// Everything a resource needs to observe and apply itself.
#[derive(Debug)]
pub struct Cx {
    /// The AWS clients.
    pub aws: Aws,
    /// Names, ARNs and options.
    pub desired: Desired,
    /// The rendered documents.
    pub docs: Documents,
    /// The discovered cluster.
    pub cluster: ClusterInfo,
    /// How to reach the cluster itself, or why the cluster side is left out.
    pub cluster_side: ClusterSide,
    /// Which resources an apply has created so far ([`Progress`]).
    pub progress: Progress,
}

/// Which resources of the running apply exist by now. A resource whose create is one call of
/// several (a role, then its policies) says so as soon as that call succeeds, so what needs it
/// only to exist ([`Resource::needs_created`]: an instance profile holding the role, an
/// association naming it) starts then, not after the rest: one round trip less on a fresh
/// install. The planner marks every finished resource created too.
#[derive(Debug)]
pub struct Progress {
    state: tokio::sync::watch::Sender<Created>,
}

/// What [`Progress`] holds.
#[derive(Debug, Default)]
struct Created {
    ids: std::collections::HashSet<String>,
    /// The apply stopped (a failure): nothing more will be created, so nobody waits.
    stopped: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress { state: tokio::sync::watch::Sender::new(Created::default()) }
    }
}

impl Progress {
    /// `id` exists now.
    pub fn created(&self, id: &str) {
        self.state.send_if_modified(|c| c.ids.insert(id.to_string()));
    }

    /// Nothing more will be created: every [`Progress::wait_created`] returns.
    pub fn stop(&self) {
        self.state.send_modify(|c| c.stopped = true);
    }

    /// Wait until every one of `ids` exists; false when the apply stopped first.
    pub async fn wait_created(&self, ids: &[String]) -> bool {
        let mut rx = self.state.subscribe();
        let seen = rx.wait_for(|c| c.stopped || ids.iter().all(|id| c.ids.contains(id))).await;
        seen.is_ok_and(|c| ids.iter().all(|id| c.ids.contains(id)))
    }
}

/// The cluster API and helm, for the cluster-side resources.
#[derive(Debug)]
pub struct ClusterApi {
    /// The Kubernetes API client.
    pub kube: Kube,
    /// helm, when found (doctor works without it, with fewer checks).
    pub helm: Option<PathBuf>,
    /// The user's extra helm values.
    pub extra: ExtraValues,
}

/// Whether this run touches the cluster side.
#[derive(Debug)]
pub enum ClusterSide {
    /// It does, through this API.
    Api(Box<ClusterApi>),
    /// It does not, for this reason (`--emit`, `--only aws`, the cluster is gone, ...).
    Off(String),
}

impl Cx {
    /// The cluster API, or why there is none (the reason cluster-side resources report).
    pub fn api(&self) -> Result<&ClusterApi, String> {
        match &self.cluster_side {
            ClusterSide::Api(api) => Ok(api),
            ClusterSide::Off(reason) => Err(reason.clone()),
        }
    }
}

/// Whether a resource exists and whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// It does not exist.
    Absent,
    /// It exists with karpctl's ownership tags for this cluster.
    Owned,
    /// It exists, karpctl did not make it, and it is meant to be used as it is (an OIDC provider
    /// another tool created, the account's spot service-linked role); never adopted or deleted.
    Shared,
    /// It exists with karpctl's name but without its tags: blocks `init` unless `--adopt`.
    Foreign,
}

/// One way an existing resource differs from the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// What differs, e.g. "trust policy differs".
    pub message: String,
    /// A fix more specific than "run karpctl init", where there is one.
    pub hint: Option<String>,
    /// The found document against the wanted one ([`crate::diff::documents`]), where there is one.
    pub diff: Option<String>,
}

impl Drift {
    /// A drift entry.
    pub fn new(message: impl Into<String>) -> Self {
        Drift { message: message.into(), hint: None, diff: None }
    }

    /// Attach the document diff (`None`: nothing to show).
    pub fn with_diff(mut self, diff: Option<String>) -> Self {
        self.diff = diff;
        self
    }

    /// Attach a specific fix.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// What observation found. `facts` carries what the resource's own `apply` needs (versions,
/// ids, URLs), so apply never re-reads what observation already knows.
#[derive(Clone)]
pub struct Observed {
    /// Existence and ownership.
    pub presence: Presence,
    /// Differences from the desired state (empty: converged).
    pub drift: Vec<Drift>,
    /// Set when the resource does not apply to this install, with the reason.
    pub skip: Option<String>,
    /// The resource's own observation details.
    pub facts: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("presence", &self.presence)
            .field("drift", &self.drift)
            .field("skip", &self.skip)
            .finish()
    }
}

impl Observed {
    /// Nothing there.
    pub fn absent() -> Self {
        Observed { presence: Presence::Absent, drift: Vec::new(), skip: None, facts: None }
    }

    /// The resource is not part of this install.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Observed { presence: Presence::Absent, drift: Vec::new(), skip: Some(reason.into()), facts: None }
    }

    /// It exists; ownership from its tags.
    pub fn present(owned: bool, drift: Vec<Drift>, facts: impl Any + Send + Sync) -> Self {
        let presence = if owned { Presence::Owned } else { Presence::Foreign };
        Observed { presence, drift, skip: None, facts: Some(Arc::new(facts)) }
    }

    /// It exists, with the presence the resource decided (Shared: usable, never karpctl's).
    pub fn present_as(presence: Presence, drift: Vec<Drift>, facts: impl Any + Send + Sync) -> Self {
        Observed { presence, drift, skip: None, facts: Some(Arc::new(facts)) }
    }

    /// The facts as the resource's own type.
    pub fn facts<T: 'static>(&self) -> Option<&T> {
        self.facts.as_deref().and_then(|f| f.downcast_ref::<T>())
    }
}

/// How long a resource being removed keeps the resources it depends on from being removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Until it is deleted: an instance keeps its instance profile, an association its role.
    UntilDeleted,
    /// Until its [`Resource::prepare_delete`] is done, which lets go of them: a role detaches
    /// its policies, an instance profile takes its roles out, and then those can go.
    UntilPrepared,
    /// Not at all: AWS removes either first (a rule's target queue), so neither waits.
    No,
}

/// One AWS resource of the install.
#[async_trait]
pub trait Resource: Send + Sync {
    /// `<kind>/<name>` as in the contract.
    fn id(&self) -> String;
    /// Ids of the resources that must exist before this one is applied.
    fn depends_on(&self) -> Vec<String> {
        Vec::new()
    }
    /// Of [`Resource::depends_on`], those this one needs only to exist, not to be converged:
    /// its apply starts as soon as they are created ([`Progress`]), not when they are done.
    fn needs_created(&self) -> Vec<String> {
        Vec::new()
    }
    /// Why the resource is not part of this install (e.g. `--no-interruption`), if it is not.
    /// `init` and `doctor` skip such resources; `teardown` still removes them if karpctl made them.
    fn not_wanted(&self, _cx: &Cx) -> Option<String> {
        None
    }
    /// Read what exists. The only place that reads AWS.
    async fn observe(&self, cx: &Cx) -> Result<Observed>;
    /// Converge: create it, repair its drift, or (adopting) tag it as karpctl's.
    async fn apply(&self, cx: &Cx, seen: &Observed) -> Result<()>;
    /// The part of removing it that need not wait for the resources depending on it to be
    /// gone (detaching a role's policies while its instance profile is deleted). Teardown runs
    /// it as soon as it starts, then [`Resource::delete`] once the dependents are deleted.
    async fn prepare_delete(&self, _cx: &Cx, _seen: &Observed) -> Result<()> {
        Ok(())
    }
    /// How long this resource, while it is being removed, holds the resources it depends on:
    /// teardown deletes those only after that ([`Hold`]).
    fn holds(&self) -> Hold {
        Hold::UntilDeleted
    }
    /// Remove it (teardown calls this only for resources karpctl owns), together with what
    /// must go first for the delete to succeed (attachments, targets, versions) that
    /// [`Resource::prepare_delete`] did not already remove.
    async fn delete(&self, cx: &Cx, seen: &Observed) -> Result<()>;
    /// Whether it is IAM (kept by `teardown --keep-iam`).
    fn is_iam(&self) -> bool {
        false
    }
    /// Whether it lives in the cluster (reached through its API and helm, not AWS).
    fn is_cluster_side(&self) -> bool {
        false
    }
}

/// The ordered desired set for a cluster: every resource `init` considers, in apply order.
/// `subnets`: the subnets chosen with `--subnets` for the discovery tag (default: the
/// cluster's own, of which only the private ones are tagged).
pub fn desired_set(d: &Desired, cluster: &ClusterInfo, subnets: Option<&[String]>) -> Vec<Box<dyn Resource>> {
    let mut set: Vec<Box<dyn Resource>> = Vec::new();
    set.push(Box::new(oidc_provider::OidcProvider::new(d)));
    set.push(Box::new(role::Role::node(d)));
    set.push(Box::new(instance_profile::InstanceProfile::new(d)));
    for (_, name) in &d.names.policies {
        set.push(Box::new(managed_policy::ManagedPolicy::new(d, &name.name)));
    }
    set.push(Box::new(role::Role::controller(d)));
    set.push(Box::new(access_entry::AccessEntry::new(d)));
    set.push(Box::new(pod_identity_agent::PodIdentityAgent));
    set.push(Box::new(pod_identity::PodIdentityAssociation::new(d)));
    let ids = subnets.map_or_else(|| cluster.subnet_ids.clone(), <[String]>::to_vec);
    let survey = Arc::new(discovery_tags::SubnetSurvey::new(cluster.vpc_id.clone(), ids.clone(), subnets.is_some()));
    for id in ids {
        set.push(Box::new(discovery_tags::DiscoveryTags::subnet(id, survey.clone())));
    }
    if let Some(id) = cluster.cluster_security_group_id.clone() {
        set.push(Box::new(discovery_tags::DiscoveryTags::new(id)));
    }
    set.push(Box::new(spot_role::SpotServiceLinkedRole));
    set.push(Box::new(queue::Queue::new(d)));
    // Every policy and rule any version uses: those this version does not are skipped by init
    // and doctor, retired by upgrade, and removed by teardown.
    for name in &d.names.rules {
        set.push(Box::new(event_rule::EventRule::new(d, &name.name)));
    }
    // The cluster side, after the AWS side it needs (roles, identity, queue).
    set.push(Box::new(aws_auth::AwsAuthMapping::new(d)));
    set.push(Box::new(helm_release::HelmRelease::crds(d)));
    set.push(Box::new(helm_release::HelmRelease::controller(d)));
    set.push(Box::new(manifest::Manifest::node_class(d)));
    set.push(Box::new(manifest::Manifest::node_pool(d)));
    set
}

/// A delete whose target is already gone has done its job (a re-run after a crash, a
/// resource removed by hand meanwhile).
pub fn ignore_gone<T>(r: Result<T>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The ownership tags as IAM tags.
pub fn iam_tags(d: &Desired) -> Result<Vec<aws_sdk_iam::types::Tag>> {
    d.ownership_tags()
        .into_iter()
        .map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::new(ErrorKind::Render, "failed to build IAM tags").with_cause(e.to_string()))
        })
        .collect()
}

/// Whether IAM tags mark a resource as karpctl's for this cluster.
pub fn iam_owned(d: &Desired, tags: &[aws_sdk_iam::types::Tag]) -> bool {
    d.is_owned(tags.iter().map(|t| (t.key(), t.value())))
}

/// The ownership tags as a map (EKS, SQS).
pub fn tag_map(d: &Desired) -> std::collections::HashMap<String, String> {
    d.ownership_tags().into_iter().collect()
}

/// An IAM, SQS or EKS policy document as AWS returns it (IAM URL-encodes it) parsed to JSON.
pub fn parse_policy(doc: &str) -> Result<Value> {
    let decoded = if doc.trim_start().starts_with('{') {
        doc.to_string()
    } else {
        percent_encoding::percent_decode_str(doc).decode_utf8_lossy().into_owned()
    };
    serde_json::from_str(&decoded).map_err(|e| {
        Error::new(ErrorKind::Aws, "AWS returned a policy document that is not JSON").with_cause(e.to_string())
    })
}

/// Compare policy documents the way IAM evaluates them: a lone value equals a one-element list,
/// `true` equals `"true"`, and key order does not matter.
pub fn policy_eq(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()),
        Value::Array(a) if a.len() == 1 => normalize(&a[0]),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Number(n) => Value::String(n.to_string()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_compare_as_iam_evaluates_them() {
        let a = json!({"Statement": [{"Action": ["s3:Get"], "Effect": "Allow", "Condition": {"Bool": {"x": false}}}]});
        let b = json!({"Statement": {"Effect": "Allow", "Action": "s3:Get", "Condition": {"Bool": {"x": "false"}}}});
        assert!(policy_eq(&a, &b));
        let c = json!({"Statement": [{"Action": ["s3:Put"], "Effect": "Allow"}]});
        assert!(!policy_eq(&a, &c));
    }

    #[test]
    fn url_encoded_documents_are_decoded() {
        let v = parse_policy("%7B%22Version%22%3A%222012-10-17%22%7D").unwrap();
        assert_eq!(v, json!({"Version": "2012-10-17"}));
        assert_eq!(parse_policy("{\"a\": 1}").unwrap(), json!({"a": 1}));
        assert!(parse_policy("%7Bnot json").is_err());
    }
}
