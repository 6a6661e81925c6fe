//! The EKS Pod Identity association that gives the controller's service account its role
//! (`--auth pod-identity`).

use async_trait::async_trait;

use super::ignore_gone;
use super::{tag_map, Cx, Drift, Observed, Presence, Resource};
use crate::desired::{AuthMode, Desired, SERVICE_ACCOUNT};
use crate::error::{Error, Result};
use crate::retry::{classify, patiently};

/// The association for `NS/karpenter`.
#[derive(Debug, Clone)]
pub struct PodIdentityAssociation {
    namespace: String,
    role_arn: String,
    role_id: String,
}

#[derive(Debug)]
struct Facts {
    id: String,
    arn: String,
    role_differs: bool,
}

impl PodIdentityAssociation {
    /// The association for the controller.
    pub fn new(d: &Desired) -> Self {
        PodIdentityAssociation {
            namespace: d.target.namespace.clone(),
            role_arn: d.controller_role_arn(),
            role_id: format!("iam-role/{}", d.names.controller_role.name),
        }
    }
}

#[async_trait]
impl Resource for PodIdentityAssociation {
    fn id(&self) -> String {
        format!("pod-identity-association/{}/{SERVICE_ACCOUNT}", self.namespace)
    }

    fn depends_on(&self) -> Vec<String> {
        vec![self.role_id.clone()]
    }

    fn needs_created(&self) -> Vec<String> {
        // The role must be there to be named; its policies need not be attached yet.
        self.depends_on()
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        (cx.desired.target.auth != AuthMode::PodIdentity).then(|| "not used with --auth irsa".to_string())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed> {
        if !cx.cluster.exists() {
            return Ok(Observed::absent());
        }
        let eks = &cx.aws.eks;
        let list = eks
            .list_pod_identity_associations()
            .cluster_name(&cx.cluster.name)
            .namespace(&self.namespace)
            .service_account(SERVICE_ACCOUNT)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| {
                Error::aws("failed to list Pod Identity associations", "eks:ListPodIdentityAssociations", e)
            })?;
        let Some(id) = list.first().and_then(|a| a.association_id()) else {
            return Ok(Observed::absent());
        };
        let got = eks
            .describe_pod_identity_association()
            .cluster_name(&cx.cluster.name)
            .association_id(id)
            .send()
            .await
            .map_err(|e| {
                Error::aws("failed to read the Pod Identity association", "eks:DescribePodIdentityAssociation", e)
            })?;
        let Some(a) = got.association() else { return Ok(Observed::absent()) };
        let role_differs = a.role_arn() != Some(self.role_arn.as_str());
        let drift = if role_differs {
            vec![Drift::new(format!("uses role {}", a.role_arn().unwrap_or("(none)")))]
        } else {
            Vec::new()
        };
        let owned = cx.desired.owns_map(a.tags());
        let facts =
            Facts { id: id.to_string(), arn: a.association_arn().unwrap_or_default().to_string(), role_differs };
        Ok(Observed::present(owned, drift, facts))
    }

    async fn apply(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        let eks = &cx.aws.eks;
        // EKS cannot see a role IAM has just made: "Role provided in the request does not exist".
        let what = format!("role {} to EKS", self.role_arn.rsplit('/').next().unwrap_or(""));
        let Some(f) = seen.facts::<Facts>() else {
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
                    .map_err(|e| {
                        Error::aws(
                            "failed to create the Pod Identity association",
                            "eks:CreatePodIdentityAssociation",
                            e,
                        )
                    })
            })
            .await;
        };
        if seen.presence == Presence::Foreign {
            eks.tag_resource()
                .resource_arn(&f.arn)
                .set_tags(Some(tag_map(&cx.desired)))
                .send()
                .await
                .map_err(|e| Error::aws("failed to tag the Pod Identity association", "eks:TagResource", e))?;
        }
        if f.role_differs {
            patiently(&what, classify, || async {
                eks.update_pod_identity_association()
                    .cluster_name(&cx.cluster.name)
                    .association_id(&f.id)
                    .role_arn(&self.role_arn)
                    .send()
                    .await
                    .map_err(|e| {
                        Error::aws(
                            "failed to update the Pod Identity association",
                            "eks:UpdatePodIdentityAssociation",
                            e,
                        )
                    })
            })
            .await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        let Some(f) = seen.facts::<Facts>() else { return Ok(()) };
        let r = cx
            .aws
            .eks
            .delete_pod_identity_association()
            .cluster_name(&cx.cluster.name)
            .association_id(&f.id)
            .send()
            .await;
        ignore_gone(r.map_err(|e| {
            Error::aws("failed to delete the Pod Identity association", "eks:DeletePodIdentityAssociation", e)
        }))
    }
}
