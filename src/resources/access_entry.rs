//! The EKS access entry that lets the node role's instances join the cluster, on clusters whose
//! authentication mode includes `API`. It must be of type `EC2_LINUX`: a `STANDARD` entry with
//! groups does not work, and an entry's type cannot be changed in place (delete and re-create).

use async_trait::async_trait;

use super::ignore_gone;
use super::{tag_map, Cx, Drift, Observed, Presence, Resource};
use crate::desired::Desired;
use crate::error::{Error, Result, ResultExt};
use crate::retry::{classify, patiently};

/// The node role's access entry type.
pub const NODE_ENTRY_TYPE: &str = "EC2_LINUX";

/// The access entry.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    principal: String,
    role_id: String,
}

#[derive(Debug)]
struct Facts {
    wrong_type: bool,
    arn: String,
}

impl AccessEntry {
    /// The entry for the node role.
    pub fn new(d: &Desired) -> Self {
        AccessEntry { principal: d.node_role_arn(), role_id: format!("iam-role/{}", d.names.node_role.name) }
    }

    async fn create(&self, cx: &Cx) -> Result<()> {
        // EKS cannot see a role IAM has just made: "principalArn is invalid" until it can.
        let what = format!("role {} to EKS", self.principal.rsplit('/').next().unwrap_or(""));
        patiently(&what, classify, || async {
            cx.aws
                .eks
                .create_access_entry()
                .cluster_name(&cx.cluster.name)
                .principal_arn(&self.principal)
                .r#type(NODE_ENTRY_TYPE)
                .set_tags(Some(tag_map(&cx.desired)))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    Error::aws("failed to create the node role's EKS access entry", "eks:CreateAccessEntry", e)
                })
        })
        .await
    }
}

#[async_trait]
impl Resource for AccessEntry {
    fn id(&self) -> String {
        format!("access-entry/{}", self.principal)
    }

    fn depends_on(&self) -> Vec<String> {
        vec![self.role_id.clone()]
    }

    fn needs_created(&self) -> Vec<String> {
        // The role must be there to be named; its policies need not be attached yet.
        self.depends_on()
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        (!cx.cluster.auth_mode.has_api())
            .then(|| "the cluster authenticates with the aws-auth ConfigMap only (see aws-auth/...)".to_string())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed> {
        // Access entries cannot exist on a CONFIG_MAP cluster (EKS refuses the calls).
        if !cx.cluster.auth_mode.has_api() || !cx.cluster.exists() {
            return Ok(Observed::absent());
        }
        let got = cx
            .aws
            .eks
            .describe_access_entry()
            .cluster_name(&cx.cluster.name)
            .principal_arn(&self.principal)
            .send()
            .await
            .map_err(|e| Error::aws("failed to read the node role's EKS access entry", "eks:DescribeAccessEntry", e));
        let Some(got) = got.found()? else { return Ok(Observed::absent()) };
        let Some(entry) = got.access_entry() else { return Ok(Observed::absent()) };
        let kind = entry.r#type().unwrap_or("STANDARD");
        let wrong_type = kind != NODE_ENTRY_TYPE;
        let drift = if wrong_type {
            vec![Drift::new(format!("type is {kind}, not {NODE_ENTRY_TYPE}: nodes launch but never join")).with_hint(
                "an entry's type cannot change in place; run `karpctl init --adopt` to replace it with an EC2_LINUX entry",
            )]
        } else {
            Vec::new()
        };
        let owned = cx.desired.owns_map(entry.tags());
        let arn = entry.access_entry_arn().unwrap_or_default().to_string();
        Ok(Observed::present(owned, drift, Facts { wrong_type, arn }))
    }

    async fn apply(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        let eks = &cx.aws.eks;
        let Some(f) = seen.facts::<Facts>() else { return self.create(cx).await };
        if f.wrong_type {
            eks.delete_access_entry()
                .cluster_name(&cx.cluster.name)
                .principal_arn(&self.principal)
                .send()
                .await
                .map_err(|e| Error::aws("failed to delete the wrong-type access entry", "eks:DeleteAccessEntry", e))?;
            return self.create(cx).await;
        }
        if seen.presence == Presence::Foreign {
            eks.tag_resource()
                .resource_arn(&f.arn)
                .set_tags(Some(tag_map(&cx.desired)))
                .send()
                .await
                .map_err(|e| Error::aws("failed to tag the node role's access entry", "eks:TagResource", e))?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed) -> Result<()> {
        let r =
            cx.aws.eks.delete_access_entry().cluster_name(&cx.cluster.name).principal_arn(&self.principal).send().await;
        ignore_gone(
            r.map_err(|e| Error::aws("failed to delete the node role's access entry", "eks:DeleteAccessEntry", e)),
        )
    }
}
