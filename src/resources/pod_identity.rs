//! The EKS Pod Identity association that gives the controller's service account its role
//! (`--auth pod-identity`).

use async_trait::async_trait;

use super::ignore_gone;
use super::{tag_map, Cx, Dep, Drift, Kind, Observed, Resource, ResourceId};
use crate::desired::{AuthMode, Desired, SERVICE_ACCOUNT};
use crate::error::{AwsContext, Result};
use crate::render::{Document, Documents};
use crate::retry::{classify, patiently};

/// The association for `NS/karpenter`.
#[derive(Debug, Clone)]
pub struct PodIdentityAssociation {
    namespace: String,
    role_arn: String,
    role_id: ResourceId,
}

/// What observing it finds that applying or removing it uses.
#[derive(Debug)]
pub struct Facts {
    id: String,
    arn: String,
    role_differs: bool,
}

/// The id of the association for the controller in `namespace`.
pub fn id(namespace: &str) -> ResourceId {
    ResourceId::new(Kind::PodIdentityAssociation, format!("{namespace}/{SERVICE_ACCOUNT}"))
}

impl PodIdentityAssociation {
    /// The association for the controller.
    pub fn new(d: &Desired) -> Self {
        PodIdentityAssociation {
            namespace: d.target.namespace.clone(),
            role_arn: d.controller_role_arn(),
            role_id: super::role::id(&d.names.controller_role.name),
        }
    }
}

/// The id of the controller's association in `namespace` of `cluster`, None when there is
/// none: the first read of its observation, which the session starts beside discovery
/// ([`super::early`]).
pub async fn association_id(eks: &aws_sdk_eks::Client, cluster: &str, namespace: &str) -> Result<Option<String>> {
    let list = eks
        .list_pod_identity_associations()
        .cluster_name(cluster)
        .namespace(namespace)
        .service_account(SERVICE_ACCOUNT)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .or_aws("failed to list Pod Identity associations", "eks:ListPodIdentityAssociations")?;
    Ok(list.first().and_then(|a| a.association_id()).map(str::to_string))
}

/// Why what only Pod Identity uses (the association, the agent add-on) is not part of an
/// install that uses IRSA.
pub(super) fn irsa_instead(cx: &Cx) -> Option<String> {
    (cx.desired.target.auth != AuthMode::PodIdentity).then(|| "not used with --auth irsa".to_string())
}

#[async_trait]
impl Resource for PodIdentityAssociation {
    type Facts = Facts;

    fn id(&self) -> ResourceId {
        id(&self.namespace)
    }

    fn depends_on(&self) -> Vec<Dep> {
        vec![Dep::on(self.role_id.clone())]
    }

    fn needs_created(&self) -> Vec<ResourceId> {
        // The role must be there to be named; its policies need not be attached yet.
        vec![self.role_id.clone()]
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        irsa_instead(cx)
    }

    fn documents(&self, _d: &Desired, _docs: &Documents) -> Result<Vec<Document>> {
        Ok(Vec::new())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<Facts>> {
        if !cx.cluster.exists() {
            return Ok(Observed::absent());
        }
        let eks = &cx.aws.eks;
        let cluster = &cx.cluster.name;
        let id =
            cx.early.pod_identity.take_or(&self.namespace, || association_id(eks, cluster, &self.namespace)).await?;
        let Some(id) = id else { return Ok(Observed::absent()) };
        let got = eks
            .describe_pod_identity_association()
            .cluster_name(&cx.cluster.name)
            .association_id(&id)
            .send()
            .await
            .or_aws("failed to read the Pod Identity association", "eks:DescribePodIdentityAssociation")?;
        let Some(a) = got.association() else { return Ok(Observed::absent()) };
        let role_differs = a.role_arn() != Some(self.role_arn.as_str());
        let drift = if role_differs {
            vec![Drift::new(format!("uses role {}", a.role_arn().unwrap_or("(none)")))]
        } else {
            Vec::new()
        };
        let owned = cx.desired.owns_map(a.tags());
        let facts = Facts { id, arn: a.association_arn().unwrap_or_default().to_string(), role_differs };
        Ok(Observed::present(owned, drift, facts))
    }

    async fn tag(&self, cx: &Cx, f: &Facts) -> Result<()> {
        let r = cx.aws.eks.tag_resource().resource_arn(&f.arn).set_tags(Some(tag_map(&cx.desired))).send().await;
        r.map(|_| ()).or_aws("failed to tag the Pod Identity association", "eks:TagResource")
    }

    async fn apply(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        let eks = &cx.aws.eks;
        // EKS cannot see a role IAM has just made: "Role provided in the request does not exist".
        let what = format!("role {} to EKS", self.role_arn.rsplit('/').next().unwrap_or(""));
        let Some(f) = seen.facts() else {
            return patiently(&what, classify, || async {
                eks.create_pod_identity_association()
                    .cluster_name(&cx.cluster.name)
                    .namespace(&self.namespace)
                    .service_account(SERVICE_ACCOUNT)
                    .role_arn(&self.role_arn)
                    .set_tags(Some(tag_map(&cx.desired)))
                    .send()
                    .await
                    .map(|_| ())
                    .or_aws("failed to create the Pod Identity association", "eks:CreatePodIdentityAssociation")
            })
            .await;
        };
        if f.role_differs {
            patiently(&what, classify, || async {
                eks.update_pod_identity_association()
                    .cluster_name(&cx.cluster.name)
                    .association_id(&f.id)
                    .role_arn(&self.role_arn)
                    .send()
                    .await
                    .or_aws("failed to update the Pod Identity association", "eks:UpdatePodIdentityAssociation")
            })
            .await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        let Some(f) = seen.facts() else { return Ok(()) };
        let r = cx
            .aws
            .eks
            .delete_pod_identity_association()
            .cluster_name(&cx.cluster.name)
            .association_id(&f.id)
            .send()
            .await;
        ignore_gone(r.or_aws("failed to delete the Pod Identity association", "eks:DeletePodIdentityAssociation"))
    }
}
