//! The discovery tag `karpenter.sh/discovery = C` on one of the cluster's subnets or its cluster
//! security group: what the EC2NodeClass selectors find. karpctl marks the tags it adds, so
//! teardown later removes only those, never a tag that was there before.

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, Tag};

use super::ignore_gone;
use super::{Cx, Drift, Observed, Presence, Resource};
use crate::desired::{DISCOVERY_MARKER_TAG, DISCOVERY_TAG, TAG_MANAGED_BY_VALUE};
use crate::error::{Error, Result};

/// The discovery tag on one subnet or security group.
#[derive(Debug, Clone)]
pub struct DiscoveryTags {
    resource_id: String,
}

impl DiscoveryTags {
    /// The tag on `resource_id` (a subnet or security group id).
    pub fn new(resource_id: String) -> Self {
        DiscoveryTags { resource_id }
    }
}

#[async_trait]
impl Resource for DiscoveryTags {
    fn id(&self) -> String {
        format!("ec2-tags/{}", self.resource_id)
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed> {
        let out = cx
            .aws
            .ec2
            .describe_tags()
            .filters(Filter::builder().name("resource-id").values(&self.resource_id).build())
            .filters(Filter::builder().name("key").values(DISCOVERY_TAG).values(DISCOVERY_MARKER_TAG).build())
            .send()
            .await
            .map_err(|e| {
                Error::aws(format!("failed to read the tags of {}", self.resource_id), "ec2:DescribeTags", e)
            })?;
        let value = |key: &str| out.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value());
        let cluster = cx.desired.target.cluster.as_str();
        let seen = match value(DISCOVERY_TAG) {
            // karpctl's marker is still there: karpctl tagged it and the tag was removed since.
            None if value(DISCOVERY_MARKER_TAG).is_some() => {
                Observed::present(true, vec![Drift::new(format!("{DISCOVERY_TAG} tag removed"))], ())
            }
            None => Observed::absent(),
            Some(v) if v != cluster => {
                Observed::present(false, vec![Drift::new(format!("{DISCOVERY_TAG} is {v:?}"))], ())
            }
            Some(_) => {
                // Without the marker it was tagged for this cluster before karpctl came: fine as it
                // is, and not karpctl's to remove.
                let presence = if value(DISCOVERY_MARKER_TAG).is_some() { Presence::Owned } else { Presence::Shared };
                Observed::present_as(presence, Vec::new(), ())
            }
        };
        Ok(seen)
    }

    async fn apply(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        if seen.presence == Presence::Shared {
            return Ok(());
        }
        cx.aws
            .ec2
            .create_tags()
            .resources(&self.resource_id)
            .tags(Tag::builder().key(DISCOVERY_TAG).value(&cx.desired.target.cluster).build())
            .tags(Tag::builder().key(DISCOVERY_MARKER_TAG).value(TAG_MANAGED_BY_VALUE).build())
            .send()
            .await
            .map_err(|e| Error::aws(format!("failed to tag {}", self.resource_id), "ec2:CreateTags", e))?;
        Ok(())
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed) -> Result<()> {
        // Only tags karpctl added reach here (Owned = marker present); both go.
        let r = cx
            .aws
            .ec2
            .delete_tags()
            .resources(&self.resource_id)
            .tags(Tag::builder().key(DISCOVERY_TAG).value(&cx.desired.target.cluster).build())
            .tags(Tag::builder().key(DISCOVERY_MARKER_TAG).build())
            .send()
            .await;
        ignore_gone(r.map_err(|e| Error::aws(format!("failed to untag {}", self.resource_id), "ec2:DeleteTags", e)))
    }
}
