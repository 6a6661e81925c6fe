//! The node role's entry in the `aws-auth` ConfigMap, on clusters that authenticate only through
//! it (`CONFIG_MAP`): without it, instances launch and never become nodes.

use async_trait::async_trait;

use super::{Cx, Dep, Drift, Kind, Observed, Resource, ResourceId};
use crate::desired::Desired;
use crate::error::{Error, ErrorKind, Result};
use crate::kube::aws_auth::{self, AwsAuthChange, NodeRoleMapping};
use crate::render::{Document, Documents};

/// The mapping.
#[derive(Debug, Clone)]
pub struct AwsAuthMapping {
    role_arn: String,
    role_id: ResourceId,
}

impl AwsAuthMapping {
    /// The node role's mapping.
    pub fn new(d: &Desired) -> Self {
        AwsAuthMapping { role_arn: d.node_role_arn(), role_id: super::role::id(&d.names.node_role.name) }
    }
}

fn foreign_hint(arn: &str) -> String {
    format!(
        "the role is mapped with another username or groups; edit mapRoles (kubectl -n kube-system edit configmap aws-auth) \
         so {arn} has username system:node:{{{{EC2PrivateDNSName}}}} and groups system:bootstrappers, system:nodes"
    )
}

#[async_trait]
impl Resource for AwsAuthMapping {
    type Facts = ();

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::AwsAuth, &self.role_arn)
    }

    fn depends_on(&self) -> Vec<Dep> {
        vec![Dep::on(self.role_id.clone())]
    }

    fn is_cluster_side(&self) -> bool {
        true
    }

    fn removed_after(&self, other: &dyn super::AnyResource) -> bool {
        // Karpenter's nodes join with the node role until they are drained and gone.
        other.is_cluster_side() && other.id().kind != Kind::AwsAuth
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        if cx.cluster.auth_mode.has_api() {
            return Some("the cluster uses EKS access entries (see access-entry/...)".into());
        }
        None
    }

    fn documents(&self, _d: &Desired, _docs: &Documents) -> Result<Vec<Document>> {
        Ok(Vec::new())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<()>> {
        let api = cx.cluster_api()?;
        Ok(match aws_auth::observe_node_role(&api.kube, &self.role_arn).await? {
            NodeRoleMapping::NoConfigMap | NodeRoleMapping::Missing => Observed::absent(),
            // The entry names karpctl's own node role: it is karpctl's to keep and to remove.
            NodeRoleMapping::Present => Observed::present(true, Vec::new(), ()),
            NodeRoleMapping::Foreign(entries) => {
                let drift = Drift::new(format!("{} other mapping(s) of the node role", entries.len()))
                    .with_hint(foreign_hint(&self.role_arn));
                Observed::present(false, vec![drift], ())
            }
        })
    }

    async fn apply(&self, cx: &Cx, _seen: &Observed<()>) -> Result<()> {
        let api = cx.cluster_api()?;
        match aws_auth::ensure_node_role(&api.kube, &self.role_arn).await? {
            AwsAuthChange::Foreign(_) => Err(Error::new(
                ErrorKind::Foreign,
                format!("the aws-auth ConfigMap maps {} differently; nothing was changed", self.role_arn),
            )
            .with_hint(foreign_hint(&self.role_arn))),
            _ => Ok(()),
        }
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed<()>) -> Result<()> {
        let api = cx.cluster_api()?;
        aws_auth::remove_node_role(&api.kube, &self.role_arn).await.map(|_| ())
    }
}
