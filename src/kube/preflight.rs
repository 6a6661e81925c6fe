//! The RBAC preflight: every permission a run needs, asked of the API server with one
//! SelfSubjectAccessReview each before the first write.

use std::fmt;

use ::kube::api::{Api, PostParams};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};

use super::*;
use crate::error::{Error, ErrorKind, Result};

pub(super) const ACCESS_HINT: &str = "give your IAM principal access to the cluster: an EKS access entry \
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

impl Kube {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_reads_like_kubectl_auth_can_i() {
        assert_eq!(Access::new("patch", "karpenter.sh", "nodepools", None).to_string(), "patch nodepools.karpenter.sh");
        assert_eq!(
            Access::new("update", "", "configmaps", Some("kube-system")).to_string(),
            "update configmaps in kube-system"
        );
    }
}
