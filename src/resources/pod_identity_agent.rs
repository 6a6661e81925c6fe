//! The `eks-pod-identity-agent` EKS add-on: without it a Pod Identity association gives the
//! controller no credentials and it hangs at start (a known install failure). Created when
//! missing in pod-identity mode; one that was there before is used as it is and never removed.

use async_trait::async_trait;

use super::{ignore_gone, tag_map, Cx, Observed, Presence, Resource};
use crate::desired::AuthMode;
use crate::error::{Error, Result, ResultExt};

/// The add-on's name.
pub const AGENT_ADDON: &str = "eks-pod-identity-agent";

/// The Pod Identity agent add-on.
#[derive(Debug, Clone, Copy)]
pub struct PodIdentityAgent;

#[async_trait]
impl Resource for PodIdentityAgent {
    fn id(&self) -> String {
        format!("eks-addon/{AGENT_ADDON}")
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        (cx.desired.target.auth != AuthMode::PodIdentity).then(|| "not used with --auth irsa".to_string())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed> {
        if !cx.cluster.exists() {
            return Ok(Observed::absent());
        }
        let got = cx
            .aws
            .eks
            .describe_addon()
            .cluster_name(&cx.cluster.name)
            .addon_name(AGENT_ADDON)
            .send()
            .await
            .map_err(|e| Error::aws(format!("failed to read the {AGENT_ADDON} add-on"), "eks:DescribeAddon", e));
        let Some(got) = got.found()? else { return Ok(Observed::absent()) };
        let owned = cx.desired.owns_map(got.addon().and_then(|a| a.tags()));
        // One installed by the cluster's creator is exactly what is needed, and not karpctl's.
        Ok(Observed::present_as(if owned { Presence::Owned } else { Presence::Shared }, Vec::new(), ()))
    }

    async fn apply(&self, cx: &Cx, _seen: &Observed) -> Result<()> {
        cx.aws
            .eks
            .create_addon()
            .cluster_name(&cx.cluster.name)
            .addon_name(AGENT_ADDON)
            .set_tags(Some(tag_map(&cx.desired)))
            .send()
            .await
            .map_err(|e| Error::aws(format!("failed to install the {AGENT_ADDON} add-on"), "eks:CreateAddon", e))?;
        Ok(())
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed) -> Result<()> {
        let r = cx.aws.eks.delete_addon().cluster_name(&cx.cluster.name).addon_name(AGENT_ADDON).send().await;
        ignore_gone(
            r.map_err(|e| Error::aws(format!("failed to remove the {AGENT_ADDON} add-on"), "eks:DeleteAddon", e)),
        )
    }
}
