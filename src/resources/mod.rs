//! The resource model: every AWS resource of an install is one small module that can observe
//! itself and converge it to the desired state. `init`, `init --dry-run` (and later `doctor`
//! and `teardown`) are walks over the same ordered set built by [`desired_set`].

pub mod access_entry;
pub mod aws_auth;
pub mod discovery_tags;
pub mod early;
pub mod event_rule;
pub mod helm_release;
pub mod id;
pub mod instance_profile;
pub mod managed_policy;
pub mod manifest;
pub mod observed;
pub mod oidc_provider;
pub mod orphans;
pub mod pod_identity;
pub mod pod_identity_agent;
pub mod queue;
pub mod removal;
pub mod role;
pub mod spot_role;

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
use crate::render::{Document, Documents};

pub use id::{check_set, Dep, Kind, ResourceId};
pub use observed::{Drift, Erased, Observed, Presence};

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
    /// The first reads started beside discovery ([`early::Early`]).
    pub early: early::Early,
    /// What a removal's resources share: the controller's state and the waits for it
    /// ([`removal::Removal`]; inert outside teardown).
    pub removal: removal::Removal,
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
    ids: std::collections::HashSet<ResourceId>,
    /// The apply stopped (a failure): nothing more will be created, so nobody waits.
    stopped: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress { state: tokio::sync::watch::Sender::new(Created::default()) }
    }
}

impl Progress {
    /// A new apply begins: nothing is created by it yet, and it has not stopped. Without this
    /// a second apply over the same `Cx` would find the first one's stop and start nothing.
    pub fn begin(&self) {
        self.state.send_replace(Created::default());
    }

    /// `id` exists now.
    pub fn created(&self, id: &ResourceId) {
        self.state.send_if_modified(|c| c.ids.insert(id.clone()));
    }

    /// Nothing more will be created: every [`Progress::wait_created`] returns.
    pub fn stop(&self) {
        self.state.send_modify(|c| c.stopped = true);
    }

    /// Wait until every one of `ids` exists; false when the apply stopped first.
    pub async fn wait_created(&self, ids: &[ResourceId]) -> bool {
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

    /// The cluster API for a cluster-side resource. The planner never observes, applies or
    /// deletes one without it ([`Resource::is_cluster_side`]), so this failing is a walk that
    /// bypassed the planner.
    pub fn cluster_api(&self) -> Result<&ClusterApi> {
        self.api().map_err(|reason| Error::new(ErrorKind::ClusterState, reason))
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

/// What `teardown` can be told to leave in place, by the flag that says so: a resource declares
/// which it belongs to ([`Resource::kept_by`]) and the planner decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// `--keep-iam`: roles, policies, instance profiles and the OIDC provider.
    Iam,
    /// `--keep-crds`: the CRD release (and with it every NodePool and EC2NodeClass's kind).
    Crds,
}

impl Keep {
    /// The flag, as the plan's detail shows it.
    pub fn flag(self) -> &'static str {
        match self {
            Keep::Iam => "--keep-iam",
            Keep::Crds => "--keep-crds",
        }
    }
}

/// One resource of the install: the trait each resource module implements, with its own type of
/// observed facts. The set holds resources as [`AnyResource`].
#[async_trait]
pub trait Resource: Send + Sync + 'static {
    /// What `observe` learns that `apply` and `delete` use.
    type Facts: Send + Sync + 'static;
    /// Its id (`<kind>/<name>` in the contract).
    fn id(&self) -> ResourceId;
    /// The resources that must exist before this one is applied, and go after it is removed.
    fn depends_on(&self) -> Vec<Dep> {
        Vec::new()
    }
    /// Of [`Resource::depends_on`], those this one needs only to exist, not to be converged:
    /// its apply starts as soon as they are created ([`Progress`]), not when they are done.
    fn needs_created(&self) -> Vec<ResourceId> {
        Vec::new()
    }
    /// Why the resource is not part of this install (e.g. `--no-interruption`), if it is not.
    /// `init` and `doctor` skip such resources; `teardown` still removes them if karpctl made them.
    fn not_wanted(&self, _cx: &Cx) -> Option<String> {
        None
    }
    /// The documents karpctl writes for it (`render`), none for most; required, so that a new
    /// resource says which are its own.
    fn documents(&self, d: &Desired, docs: &Documents) -> Result<Vec<Document>>;
    /// Read what exists. The only place that reads AWS.
    async fn observe(&self, cx: &Cx) -> Result<Observed<Self::Facts>>;
    /// Converge: create it or repair its drift. Tagging one adopted with `--adopt` is
    /// [`Resource::tag`]'s, done by the planner first.
    async fn apply(&self, cx: &Cx, seen: &Observed<Self::Facts>) -> Result<()>;
    /// Add karpctl's ownership tags to one found without them (`--adopt`); the planner calls it
    /// before `apply` repairs any drift. The default does nothing: for a resource whose `apply`
    /// itself marks it as karpctl's (a helm release's annotation, a manifest's field manager)
    /// or that is never adopted.
    async fn tag(&self, _cx: &Cx, _facts: &Self::Facts) -> Result<()> {
        Ok(())
    }
    /// The part of removing it that need not wait for the resources depending on it to be
    /// gone (detaching a role's policies while its instance profile is deleted). Teardown runs
    /// it as soon as it starts, then [`Resource::delete`] once the dependents are deleted.
    async fn prepare_delete(&self, _cx: &Cx, _seen: &Observed<Self::Facts>) -> Result<()> {
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
    async fn delete(&self, cx: &Cx, seen: &Observed<Self::Facts>) -> Result<()>;
    /// Which `teardown --keep-*` flag leaves it in place, if any.
    fn kept_by(&self) -> Option<Keep> {
        None
    }
    /// In a removal, whether this one goes only once `other` (also being removed) is gone,
    /// although it does not depend on it: the explicit edges of the removal order, besides the
    /// reverse of [`Resource::depends_on`]. By default the AWS side goes after the whole
    /// cluster side, which runs on it (nodes draining still join with the node role, the
    /// controller still uses its identity, queue and permissions); the cluster side orders
    /// itself (NodePools, then EC2NodeClasses, then the controller release).
    fn removed_after(&self, other: &dyn AnyResource) -> bool {
        !self.is_cluster_side() && other.is_cluster_side()
    }
    /// Whether it lives in the cluster (reached through its API and helm, not AWS). Without the
    /// cluster API the planner skips it, with the reason ([`Cx::cluster_api`]).
    fn is_cluster_side(&self) -> bool {
        false
    }
}

/// A resource of the set with its facts' type erased: what the planner walks. Implemented for
/// every [`Resource`] by the one adapter below, the only place facts change type.
#[async_trait]
pub trait AnyResource: Send + Sync {
    /// See [`Resource::id`].
    fn id(&self) -> ResourceId;
    /// See [`Resource::depends_on`].
    fn depends_on(&self) -> Vec<Dep>;
    /// See [`Resource::needs_created`].
    fn needs_created(&self) -> Vec<ResourceId>;
    /// See [`Resource::not_wanted`].
    fn not_wanted(&self, cx: &Cx) -> Option<String>;
    /// See [`Resource::documents`].
    fn documents(&self, d: &Desired, docs: &Documents) -> Result<Vec<Document>>;
    /// See [`Resource::observe`].
    async fn observe(&self, cx: &Cx) -> Result<Observed>;
    /// See [`Resource::apply`].
    async fn apply(&self, cx: &Cx, seen: &Observed) -> Result<()>;
    /// See [`Resource::tag`].
    async fn tag(&self, cx: &Cx, seen: &Observed) -> Result<()>;
    /// See [`Resource::prepare_delete`].
    async fn prepare_delete(&self, cx: &Cx, seen: &Observed) -> Result<()>;
    /// See [`Resource::holds`].
    fn holds(&self) -> Hold;
    /// See [`Resource::delete`].
    async fn delete(&self, cx: &Cx, seen: &Observed) -> Result<()>;
    /// See [`Resource::kept_by`].
    fn kept_by(&self) -> Option<Keep>;
    /// See [`Resource::removed_after`].
    fn removed_after(&self, other: &dyn AnyResource) -> bool;
    /// See [`Resource::is_cluster_side`].
    fn is_cluster_side(&self) -> bool;
}

#[async_trait]
impl<R: Resource> AnyResource for R {
    fn id(&self) -> ResourceId {
        Resource::id(self)
    }
    fn depends_on(&self) -> Vec<Dep> {
        Resource::depends_on(self)
    }
    fn needs_created(&self) -> Vec<ResourceId> {
        Resource::needs_created(self)
    }
    fn holds(&self) -> Hold {
        Resource::holds(self)
    }
    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        Resource::not_wanted(self, cx)
    }
    fn documents(&self, d: &Desired, docs: &Documents) -> Result<Vec<Document>> {
        Resource::documents(self, d, docs)
    }
    async fn observe(&self, cx: &Cx) -> Result<Observed> {
        Ok(Resource::observe(self, cx).await?.erase())
    }
    async fn apply(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        Resource::apply(self, cx, &seen.typed(&Resource::id(self))?).await
    }
    async fn tag(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        let id = Resource::id(self);
        match seen.typed::<R::Facts>(&id)?.facts() {
            Some(facts) => Resource::tag(self, cx, facts).await,
            None => Err(Error::defect(format!("{id} is to be tagged, but it was not found"))),
        }
    }
    async fn prepare_delete(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        Resource::prepare_delete(self, cx, &seen.typed(&Resource::id(self))?).await
    }
    async fn delete(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        Resource::delete(self, cx, &seen.typed(&Resource::id(self))?).await
    }
    fn kept_by(&self) -> Option<Keep> {
        Resource::kept_by(self)
    }
    fn removed_after(&self, other: &dyn AnyResource) -> bool {
        Resource::removed_after(self, other)
    }
    fn is_cluster_side(&self) -> bool {
        Resource::is_cluster_side(self)
    }
}

/// The resources of one walk, in the set's order.
pub type Set = Vec<Box<dyn AnyResource>>;

/// A complete set, checked: every dependency a resource declares names a resource of the set
/// (or is declared optional). Every walk checks its set once it has added all it adds.
pub fn checked(set: Set) -> Result<Set> {
    let members: Vec<(ResourceId, Vec<Dep>)> = set.iter().map(|r| (r.id(), r.depends_on())).collect();
    check_set(&members)?;
    Ok(set)
}

/// The ordered desired set for a cluster: every resource `init` considers, in apply order.
/// `subnets`: the subnets chosen with `--subnets` for the discovery tag (default: the
/// cluster's own, of which only the private ones are tagged).
pub fn desired_set(d: &Desired, cluster: &ClusterInfo, subnets: Option<&[String]>) -> Result<Set> {
    let mut set: Set = Vec::new();
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
    checked(set)
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
pub(crate) mod tests {
    use super::*;
    use crate::desired::tests::target;
    use crate::desired::AuthMode;

    #[tokio::test]
    async fn a_new_apply_forgets_the_last_ones_stop() {
        let p = Progress::default();
        let r = role::id("r");
        p.created(&r);
        p.stop();
        p.begin();
        // The last apply's stop no longer ends this one's waits.
        let wait = p.wait_created(std::slice::from_ref(&r));
        let create = async { p.created(&r) };
        let (seen, ()) = tokio::join!(wait, create);
        assert!(seen);
        p.stop();
        assert!(!p.wait_created(&[role::id("never")]).await);
    }
    use serde_json::json;

    fn cluster() -> ClusterInfo {
        let caller = crate::cluster::Caller {
            account: "111122223333".into(),
            arn: "arn:aws:iam::111122223333:user/u".into(),
            partition: crate::desired::Partition::Aws,
        };
        ClusterInfo {
            status: "ACTIVE".into(),
            subnet_ids: vec!["subnet-1".into(), "subnet-2".into()],
            cluster_security_group_id: Some("sg-1".into()),
            ..ClusterInfo::gone("demo", "eu-west-1", caller)
        }
    }

    /// Every set karpctl builds: init's and doctor's under each auth mode, option and version
    /// (upgrade's is init's for another version), and teardown's with what it adds.
    pub(crate) fn every_set() -> Vec<(String, Set)> {
        let mut out = Vec::new();
        for release in crate::versions::TABLE {
            for auth in [AuthMode::Irsa, AuthMode::PodIdentity] {
                for (interruption, default_nodepool) in [(true, true), (false, true), (true, false), (false, false)] {
                    for subnets in [None, Some(&["subnet-9".to_string()][..])] {
                        let mut t = target(auth);
                        t.karpenter_version = release.version.to_string();
                        (t.interruption, t.default_nodepool) = (interruption, default_nodepool);
                        let d = Desired::new(t).unwrap();
                        let what = format!(
                            "{} {auth:?} interruption={interruption} nodepool={default_nodepool} subnets={subnets:?}",
                            release.version
                        );
                        out.push((what, desired_set(&d, &cluster(), subnets).unwrap()));
                    }
                }
            }
        }
        // Teardown: the desired set (pod-identity names both identities), NodePools and
        // EC2NodeClasses of any owner, what only tags find, and Karpenter's leftovers, one of
        // them holding a role karpctl did not make.
        let d = Desired::new(target(AuthMode::PodIdentity)).unwrap();
        let mut set = desired_set(&d, &cluster(), None).unwrap();
        set.push(Box::new(manifest::Manifest::any_node_pool("team")));
        set.push(Box::new(manifest::Manifest::any_node_class("team")));
        set.push(Box::new(oidc_provider::OidcProvider::with_arn("arn:aws:iam::1:oidc-provider/o/id/OLD")));
        set.push(Box::new(discovery_tags::DiscoveryTags::new("subnet-old".into())));
        let roles = vec![d.names.node_role.name.clone(), "someone-elses-role".to_string()];
        for orphan in orphans::leftovers(vec!["i-1".into()], vec!["lt-1".into()], vec![("profile".into(), roles)]) {
            set.push(Box::new(orphan));
        }
        out.push(("teardown".into(), set));
        out
    }

    #[test]
    fn every_set_karpctl_builds_depends_only_on_its_own_resources() {
        for (what, set) in every_set() {
            let members: Vec<_> = set.iter().map(|r| (r.id(), r.depends_on())).collect();
            if let Err(e) = check_set(&members) {
                panic!("{what}: {e}");
            }
        }
    }

    #[test]
    fn a_set_with_an_unknown_dependency_is_refused() {
        let d = Desired::new(target(AuthMode::PodIdentity)).unwrap();
        let mut set = desired_set(&d, &cluster(), None).unwrap();
        // The NodePool without its EC2NodeClass: its dependency names nothing in the set.
        set.retain(|r| r.id().kind != Kind::Ec2NodeClass);
        let e = checked(set).err().map(|e| e.message);
        assert_eq!(e.as_deref(), Some("nodepool/default depends on ec2nodeclass/default, which is not in the set"));
    }

    #[test]
    fn a_resource_is_never_handed_another_resources_facts() {
        let role = role::id("r");
        let seen = Observed::present(true, vec![], 7u32).erase();
        assert_eq!(seen.typed::<u32>(&role).unwrap().facts(), Some(&7));
        assert!(seen.typed::<String>(&role).is_err());
        // Absent has no facts of any type: the create path, as it should be.
        assert!(Observed::absent().typed::<String>(&role).unwrap().facts().is_none());
    }

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
