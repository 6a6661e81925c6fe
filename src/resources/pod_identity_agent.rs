//! The `eks-pod-identity-agent` EKS add-on: without it a Pod Identity association gives the
//! controller no credentials and it hangs at start (a known install failure). Created when
//! missing in pod-identity mode; one that was there before is used as it is and never removed.
//!
//! Add-ons are asynchronous: CreateAddon answers CREATING and the add-on becomes ACTIVE (or
//! CREATE_FAILED / DEGRADED, with health issues) later; DeleteAddon leaves it DELETING for a
//! while, and CreateAddon is refused until it is gone. So `apply` waits for ACTIVE (the
//! controller release depends on this resource), a DELETING add-on counts as absent and its
//! create waits for the deletion, and a failed one is reported with its health issues.

use async_trait::async_trait;
use aws_sdk_eks::types::{Addon, AddonStatus};

use super::{ignore_gone, tag_map, Cx, Drift, Kind, Observed, Presence, Resource, ResourceId};
use crate::desired::Desired;
use crate::error::{AwsContext, Error, ErrorKind, Result, ResultExt};
use crate::render::{Document, Documents};
use crate::retry::{classify, patiently};

/// The add-on's name.
pub const AGENT_ADDON: &str = "eks-pod-identity-agent";

/// The add-on's id.
pub fn id() -> ResourceId {
    ResourceId::new(Kind::EksAddon, AGENT_ADDON)
}

/// The Pod Identity agent add-on.
#[derive(Debug, Clone, Copy)]
pub struct PodIdentityAgent;

/// What observing it finds that applying or removing it uses.
#[derive(Debug)]
pub struct Facts {
    status: AddonStatus,
}

/// The health issues of an add-on, one line ("code: message; ...").
fn issues(a: &Addon) -> String {
    let all: Vec<String> = a
        .health()
        .map(|h| h.issues())
        .unwrap_or_default()
        .iter()
        .map(|i| {
            let code = i.code().map(|c| c.as_str().to_string()).unwrap_or_else(|| "unknown".into());
            format!("{code}: {}", i.message().unwrap_or("no message"))
        })
        .collect();
    if all.is_empty() {
        "no health issues reported".to_string()
    } else {
        all.join("; ")
    }
}

const FAILED_HINT: &str = "see `aws eks describe-addon --addon-name eks-pod-identity-agent`; fix the cause (often node capacity or networking), delete the add-on if it stays failed, then run `karpctl init` again";

/// The error for an add-on that ended CREATE_FAILED or DEGRADED.
fn failed(status: &AddonStatus, a: &Addon) -> Error {
    Error::new(ErrorKind::Aws, format!("the {AGENT_ADDON} add-on is {}", status.as_str()))
        .with_cause(issues(a))
        .with_hint(FAILED_HINT)
}

impl PodIdentityAgent {
    async fn describe(&self, cx: &Cx) -> Result<Option<Addon>> {
        let got = cx
            .aws
            .eks
            .describe_addon()
            .cluster_name(&cx.cluster.name)
            .addon_name(AGENT_ADDON)
            .send()
            .await
            .or_aws(format!("failed to read the {AGENT_ADDON} add-on"), "eks:DescribeAddon");
        Ok(got.found()?.and_then(|g| g.addon().cloned()))
    }

    /// Poll until the add-on is ACTIVE; CREATE_FAILED / DEGRADED end the wait with its issues.
    async fn wait_active(&self, cx: &Cx) -> Result<()> {
        patiently(&format!("the {AGENT_ADDON} add-on"), classify, || async {
            let Some(a) = self.describe(cx).await? else {
                return Err(Error::new(ErrorKind::NotFound, format!("the {AGENT_ADDON} add-on disappeared"))
                    .with_hint("something deleted it while karpctl waited; run `karpctl init` again"));
            };
            match a.status() {
                Some(AddonStatus::Active) => Ok(()),
                Some(s @ (AddonStatus::CreateFailed | AddonStatus::Degraded)) => Err(failed(s, &a)),
                other => Err(Error::new(ErrorKind::InProgress, format!("the {AGENT_ADDON} add-on is not ACTIVE"))
                    .with_cause(other.map_or("no status", |s| s.as_str()).to_string())),
            }
        })
        .await
    }
}

#[async_trait]
impl Resource for PodIdentityAgent {
    type Facts = Facts;

    fn id(&self) -> ResourceId {
        id()
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        super::pod_identity::irsa_instead(cx)
    }

    fn documents(&self, _d: &Desired, _docs: &Documents) -> Result<Vec<Document>> {
        Ok(Vec::new())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<Facts>> {
        if !cx.cluster.exists() {
            return Ok(Observed::absent());
        }
        let Some(a) = self.describe(cx).await? else { return Ok(Observed::absent()) };
        let status = a.status().cloned().unwrap_or(AddonStatus::Active);
        // On its way out: for init it is to be created again (once gone), for teardown gone.
        if status == AddonStatus::Deleting {
            return Ok(Observed::absent());
        }
        let drift = match &status {
            AddonStatus::CreateFailed | AddonStatus::Degraded => {
                vec![Drift::new(format!("add-on is {}: {}", status.as_str(), issues(&a))).with_hint(FAILED_HINT)]
            }
            AddonStatus::Active => Vec::new(),
            other => vec![Drift::new(format!("add-on is {}, not ACTIVE yet", other.as_str()))],
        };
        let owned = cx.desired.owns_map(a.tags());
        // One installed by the cluster's creator is exactly what is needed, and not karpctl's.
        let presence = if owned { Presence::Owned } else { Presence::Shared };
        Ok(Observed::present_as(presence, drift, Facts { status }))
    }

    async fn apply(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        match seen.facts().map(|f| &f.status) {
            None => {
                // A DELETING add-on refuses the create (ResourceInUseException, "currently in
                // DELETING state") until it is gone: waited for as a transition.
                let what = format!("the previous {AGENT_ADDON} add-on (DELETING)");
                patiently(&what, classify, || async {
                    cx.aws
                        .eks
                        .create_addon()
                        .cluster_name(&cx.cluster.name)
                        .addon_name(AGENT_ADDON)
                        .set_tags(Some(tag_map(&cx.desired)))
                        .send()
                        .await
                        .or_aws(format!("failed to install the {AGENT_ADDON} add-on"), "eks:CreateAddon")
                })
                .await?;
            }
            Some(s @ (AddonStatus::CreateFailed | AddonStatus::Degraded)) => {
                let a = self.describe(cx).await?.unwrap_or_else(|| Addon::builder().build());
                return Err(failed(s, &a));
            }
            Some(_) => {}
        }
        self.wait_active(cx).await
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed<Facts>) -> Result<()> {
        let r = cx.aws.eks.delete_addon().cluster_name(&cx.cluster.name).addon_name(AGENT_ADDON).send().await;
        ignore_gone(r.or_aws(format!("failed to remove the {AGENT_ADDON} add-on"), "eks:DeleteAddon"))
    }
}
