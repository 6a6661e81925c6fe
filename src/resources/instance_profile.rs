//! The node instance profile `KarpenterNodeInstanceProfile-C`, holding the node role: for
//! `EC2NodeClass.spec.instanceProfile` in clusters whose nodes cannot reach the IAM API.

use async_trait::async_trait;

use super::ignore_gone;
use super::{iam_owned, iam_tags, Cx, Dep, Drift, Hold, Kind, Observed, Resource, ResourceId};
use crate::desired::Desired;
use crate::error::{AwsContext, Result, ResultExt};
use crate::render::{Document, Documents};
use crate::retry::{classify_fresh, patiently};

/// The instance profile.
#[derive(Debug, Clone)]
pub struct InstanceProfile {
    name: String,
    role: String,
}

/// What observing it finds that applying or removing it uses.
#[derive(Debug)]
pub struct Facts {
    /// Roles in the profile that are not the node role (a profile holds at most one).
    other_roles: Vec<String>,
    has_role: bool,
}

impl InstanceProfile {
    /// The node instance profile.
    pub fn new(d: &Desired) -> Self {
        InstanceProfile { name: d.names.instance_profile.name.clone(), role: d.names.node_role.name.clone() }
    }

    async fn add_role(&self, cx: &Cx) -> Result<()> {
        let what = format!("role {} and instance profile {}", self.role, self.name);
        patiently(&what, classify_fresh, || async {
            cx.aws
                .iam
                .add_role_to_instance_profile()
                .instance_profile_name(&self.name)
                .role_name(&self.role)
                .send()
                .await
                .map(|_| ())
                .or_aws(
                    format!("failed to add role {} to instance profile {}", self.role, self.name),
                    "iam:AddRoleToInstanceProfile",
                )
        })
        .await
    }
}

#[async_trait]
impl Resource for InstanceProfile {
    type Facts = Facts;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::IamInstanceProfile, &self.name)
    }

    fn depends_on(&self) -> Vec<Dep> {
        vec![Dep::on(super::role::id(&self.role))]
    }

    fn documents(&self, _d: &Desired, _docs: &Documents) -> Result<Vec<Document>> {
        Ok(Vec::new())
    }

    fn needs_created(&self) -> Vec<ResourceId> {
        // The role must be there to be named; its policies need not be attached yet.
        vec![super::role::id(&self.role)]
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<Facts>> {
        let got = cx
            .aws
            .iam
            .get_instance_profile()
            .instance_profile_name(&self.name)
            .send()
            .await
            .or_aws(format!("failed to read instance profile {}", self.name), "iam:GetInstanceProfile");
        let Some(got) = got.found()? else { return Ok(Observed::absent()) };
        let Some(p) = got.instance_profile() else { return Ok(Observed::absent()) };
        let roles: Vec<String> = p.roles().iter().map(|r| r.role_name().to_string()).collect();
        let has_role = roles.contains(&self.role);
        let other_roles: Vec<String> = roles.into_iter().filter(|r| *r != self.role).collect();
        let mut drift = Vec::new();
        for r in &other_roles {
            drift.push(Drift::new(format!("holds role {r} instead of {}", self.role)));
        }
        if !has_role && other_roles.is_empty() {
            drift.push(Drift::new(format!("does not hold role {}", self.role)));
        }
        Ok(Observed::present(iam_owned(&cx.desired, p.tags()), drift, Facts { other_roles, has_role }))
    }

    async fn tag(&self, cx: &Cx, _facts: &Facts) -> Result<()> {
        let tags = Some(iam_tags(&cx.desired)?);
        let r = cx.aws.iam.tag_instance_profile().instance_profile_name(&self.name).set_tags(tags).send().await;
        r.map(|_| ()).or_aws(format!("failed to tag instance profile {}", self.name), "iam:TagInstanceProfile")
    }

    async fn apply(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        let iam = &cx.aws.iam;
        let Some(f) = seen.facts() else {
            iam.create_instance_profile()
                .instance_profile_name(&self.name)
                .set_tags(Some(iam_tags(&cx.desired)?))
                .send()
                .await
                .or_aws(format!("failed to create instance profile {}", self.name), "iam:CreateInstanceProfile")?;
            return self.add_role(cx).await;
        };
        for other in &f.other_roles {
            iam.remove_role_from_instance_profile()
                .instance_profile_name(&self.name)
                .role_name(other)
                .send()
                .await
                .or_aws(
                    format!("failed to remove role {other} from instance profile {}", self.name),
                    "iam:RemoveRoleFromInstanceProfile",
                )?;
        }
        if !f.has_role {
            self.add_role(cx).await?;
        }
        Ok(())
    }

    fn kept_by(&self) -> Option<super::Keep> {
        Some(super::Keep::Iam)
    }

    fn holds(&self) -> Hold {
        Hold::UntilPrepared
    }

    async fn prepare_delete(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        // The roles observation saw, taken out at once (no second read): the role can then go
        // while the profile is deleted.
        let roles: Vec<String> = match seen.facts() {
            Some(f) => f.other_roles.iter().cloned().chain(f.has_role.then(|| self.role.clone())).collect(),
            None => Vec::new(),
        };
        remove_roles(cx, &self.name, &roles).await
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed<Facts>) -> Result<()> {
        delete_instance_profile(cx, &self.name).await
    }
}

/// Take `role` out of instance profile `profile`; already out (or either gone) is done.
pub async fn remove_role(cx: &Cx, profile: &str, role: &str) -> Result<()> {
    let r = cx.aws.iam.remove_role_from_instance_profile().instance_profile_name(profile).role_name(role).send().await;
    ignore_gone(r.or_aws(format!("failed to take {role} out of {profile}"), "iam:RemoveRoleFromInstanceProfile"))
}

/// Take `roles` out of instance profile `name`, concurrently.
pub async fn remove_roles(cx: &Cx, name: &str, roles: &[String]) -> Result<()> {
    futures::future::try_join_all(roles.iter().map(|r| remove_role(cx, name, r))).await.map(|_| ())
}

/// Delete an instance profile whose roles [`remove_roles`] took out (IAM refuses to delete one
/// holding a role). Should a role have been added since, IAM answers DeleteConflict: the
/// profile is read again, emptied, and deleted. Shared with the orphan sweep, which removes
/// the profiles Karpenter made.
pub async fn delete_instance_profile(cx: &Cx, name: &str) -> Result<()> {
    let delete = || async {
        let r = cx.aws.iam.delete_instance_profile().instance_profile_name(name).send().await;
        ignore_gone(r.or_aws(format!("failed to delete instance profile {name}"), "iam:DeleteInstanceProfile"))
    };
    match delete().await {
        Err(e) if e.code.as_deref() == Some("DeleteConflict") => {
            let got = cx
                .aws
                .iam
                .get_instance_profile()
                .instance_profile_name(name)
                .send()
                .await
                .or_aws(format!("failed to read instance profile {name}"), "iam:GetInstanceProfile");
            let Some(got) = got.found()? else { return Ok(()) };
            let now: Vec<String> = got
                .instance_profile()
                .map(|p| p.roles().iter().map(|r| r.role_name().to_string()).collect())
                .unwrap_or_default();
            remove_roles(cx, name, &now).await?;
            delete().await
        }
        other => other,
    }
}
