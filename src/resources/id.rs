//! Typed resource ids: a [`Kind`] and a name, shown as the contract's `<kind>/<name>`. The
//! planner, doctor and teardown ask an id for its kind instead of parsing a string apart, and a
//! set checks once, when it is built, that every dependency names one of its resources
//! ([`check_set`]): a typo in a dependency is an error, not a lost ordering constraint.

use std::collections::HashSet;
use std::fmt;

use crate::error::{Error, Result};

/// What kind of resource an id names (the part before the first `/` in the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The IAM OIDC identity provider (IRSA).
    OidcProvider,
    /// An IAM role.
    IamRole,
    /// An IAM instance profile (karpctl's, or one Karpenter left).
    IamInstanceProfile,
    /// A customer managed IAM policy.
    IamPolicy,
    /// The EKS access entry of the node role.
    AccessEntry,
    /// An EKS add-on.
    EksAddon,
    /// The EKS Pod Identity association of the controller.
    PodIdentityAssociation,
    /// The discovery tag on a subnet or security group.
    Ec2Tags,
    /// An account's service-linked role.
    ServiceLinkedRole,
    /// The interruption queue.
    SqsQueue,
    /// An EventBridge rule.
    EventRule,
    /// The node role's mapping in the `aws-auth` ConfigMap.
    AwsAuth,
    /// A helm release.
    HelmRelease,
    /// An EC2NodeClass.
    Ec2NodeClass,
    /// A NodePool.
    NodePool,
    /// An instance Karpenter launched and left.
    Ec2Instance,
    /// A launch template Karpenter left.
    LaunchTemplate,
}

impl Kind {
    /// The kind as the contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OidcProvider => "oidc-provider",
            Kind::IamRole => "iam-role",
            Kind::IamInstanceProfile => "iam-instance-profile",
            Kind::IamPolicy => "iam-policy",
            Kind::AccessEntry => "access-entry",
            Kind::EksAddon => "eks-addon",
            Kind::PodIdentityAssociation => "pod-identity-association",
            Kind::Ec2Tags => "ec2-tags",
            Kind::ServiceLinkedRole => "service-linked-role",
            Kind::SqsQueue => "sqs-queue",
            Kind::EventRule => "event-rule",
            Kind::AwsAuth => "aws-auth",
            Kind::HelmRelease => "helm-release",
            Kind::Ec2NodeClass => "ec2nodeclass",
            Kind::NodePool => "nodepool",
            Kind::Ec2Instance => "ec2-instance",
            Kind::LaunchTemplate => "launch-template",
        }
    }
}

/// A resource's identity: its kind and its name within the kind (`ns/name` for namespaced
/// ones). Displayed as `<kind>/<name>`, the string the JSON contract and the tables show.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    /// Its kind.
    pub kind: Kind,
    /// Its name within the kind.
    pub name: String,
}

impl ResourceId {
    /// The id of the `kind` resource called `name`.
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        ResourceId { kind, name: name.into() }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`: a table's `{:<width$}` lines ids up.
        f.pad(&format!("{}/{}", self.kind.as_str(), self.name))
    }
}

/// One dependency of a resource: what must exist (and be applied) first, and be removed after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// The resource depended on.
    pub id: ResourceId,
    /// Whether the set may lack it (a leftover instance profile holding a role karpctl did not
    /// make): only then is its absence from the set no error.
    pub optional: bool,
}

impl Dep {
    /// A dependency the set must hold.
    pub fn on(id: ResourceId) -> Self {
        Dep { id, optional: false }
    }

    /// A dependency that orders only when the set holds it.
    pub fn if_present(id: ResourceId) -> Self {
        Dep { id, optional: true }
    }
}

/// Check a set's dependencies: each required one names a resource of the set. `members` are
/// the set's ids with their dependencies, in any order.
pub fn check_set(members: &[(ResourceId, Vec<Dep>)]) -> Result<()> {
    let ids: HashSet<&ResourceId> = members.iter().map(|(id, _)| id).collect();
    for (id, deps) in members {
        if let Some(d) = deps.iter().find(|d| !d.optional && !ids.contains(&d.id)) {
            return Err(Error::defect(format!("{id} depends on {}, which is not in the set", d.id)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_as_the_contract_spells_them() {
        assert_eq!(
            ResourceId::new(Kind::HelmRelease, "kube-system/karpenter").to_string(),
            "helm-release/kube-system/karpenter"
        );
        assert_eq!(ResourceId::new(Kind::Ec2NodeClass, "default").to_string(), "ec2nodeclass/default");
    }

    #[test]
    fn an_unknown_dependency_is_an_error_unless_optional() {
        let role = ResourceId::new(Kind::IamRole, "r");
        let profile = ResourceId::new(Kind::IamInstanceProfile, "p");
        let typo = ResourceId::new(Kind::IamRole, "rr");
        let ok = vec![(role.clone(), vec![]), (profile.clone(), vec![Dep::on(role.clone())])];
        assert!(check_set(&ok).is_ok());
        let bad = vec![(role.clone(), vec![]), (profile.clone(), vec![Dep::on(typo.clone())])];
        let e = check_set(&bad).unwrap_err();
        assert_eq!(e.message, "iam-instance-profile/p depends on iam-role/rr, which is not in the set");
        let optional = vec![(role, vec![]), (profile, vec![Dep::if_present(typo)])];
        assert!(check_set(&optional).is_ok());
    }
}
