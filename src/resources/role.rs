//! An IAM role: the node role (trust `ec2`, four AWS managed policies) or the controller role
//! (trust for IRSA or Pod Identity, the six controller policies).

use async_trait::async_trait;
use serde_json::Value;

use super::ignore_gone;
use super::{
    fresh_iam_error, iam_owned, iam_tags, parse_policy, policy_eq, retry_fresh, Cx, Drift, Observed, Resource,
};
use crate::desired::{Desired, NODE_MANAGED_POLICIES};
use crate::diff::{self, Compare};
use crate::error::{Error, ResultExt};

/// Which of the two roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// `KarpenterNodeRole-C`.
    Node,
    /// `KarpenterControllerRole-C`.
    Controller,
}

/// One IAM role with its trust policy and attached managed policies.
#[derive(Debug, Clone)]
pub struct Role {
    kind: RoleKind,
    name: String,
    /// Policy ARNs that must be attached.
    policies: Vec<String>,
    depends: Vec<String>,
}

#[derive(Debug)]
struct Facts {
    missing_policies: Vec<String>,
    trust_differs: bool,
}

impl Role {
    /// The node role.
    pub fn node(d: &Desired) -> Self {
        Role {
            kind: RoleKind::Node,
            name: d.names.node_role.name.clone(),
            policies: NODE_MANAGED_POLICIES.iter().map(|p| d.aws_managed_policy_arn(p)).collect(),
            depends: Vec::new(),
        }
    }

    /// The controller role, which needs its policies (and, for IRSA, the OIDC provider) first.
    pub fn controller(d: &Desired) -> Self {
        let mut depends: Vec<String> = d.names.policies.iter().map(|(_, n)| format!("iam-policy/{}", n.name)).collect();
        depends.push(super::oidc_provider::id(d));
        Role {
            kind: RoleKind::Controller,
            name: d.names.controller_role.name.clone(),
            policies: d.names.policies.iter().map(|(_, n)| d.policy_arn(&n.name)).collect(),
            depends,
        }
    }

    fn trust<'a>(&self, cx: &'a Cx) -> &'a Value {
        match self.kind {
            RoleKind::Node => &cx.docs.node_trust,
            RoleKind::Controller => &cx.docs.controller_trust,
        }
    }

    async fn attach(&self, cx: &Cx, arns: &[String]) -> Result<(), Error> {
        let calls = arns.iter().map(|arn| {
            retry_fresh(fresh_iam_error, move || async move {
                cx.aws.iam.attach_role_policy().role_name(&self.name).policy_arn(arn).send().await.map(|_| ()).map_err(
                    |e| {
                        Error::aws(
                            format!("failed to attach {arn} to IAM role {}", self.name),
                            "iam:AttachRolePolicy",
                            e,
                        )
                    },
                )
            })
        });
        futures::future::try_join_all(calls).await.map(|_| ())
    }
}

#[async_trait]
impl Resource for Role {
    fn id(&self) -> String {
        format!("iam-role/{}", self.name)
    }

    fn depends_on(&self) -> Vec<String> {
        self.depends.clone()
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed, Error> {
        let iam = &cx.aws.iam;
        let (role, attached) = tokio::join!(
            iam.get_role().role_name(&self.name).send(),
            iam.list_attached_role_policies().role_name(&self.name).max_items(1000).send()
        );
        let role = role.map_err(|e| Error::aws(format!("failed to read IAM role {}", self.name), "iam:GetRole", e));
        let Some(role) = role.found()? else { return Ok(Observed::absent()) };
        let attached = attached.map_err(|e| {
            Error::aws(format!("failed to list policies of IAM role {}", self.name), "iam:ListAttachedRolePolicies", e)
        })?;
        let r = role.role();
        let owned = r.is_some_and(|r| iam_owned(&cx.desired, r.tags()));
        let trust = match r.and_then(|r| r.assume_role_policy_document()) {
            Some(doc) => Some(parse_policy(doc)?),
            None => None,
        };
        let trust_drift = match &trust {
            Some(t) if policy_eq(t, self.trust(cx)) => None,
            Some(t) => {
                Some(trust_difference(t, self.trust(cx)).with_diff(diff::documents(t, self.trust(cx), Compare::Iam)))
            }
            None => Some(Drift::new("trust policy missing")),
        };
        let trust_differs = trust_drift.is_some();
        let have: Vec<&str> = attached.attached_policies().iter().filter_map(|p| p.policy_arn()).collect();
        let missing_policies: Vec<String> =
            self.policies.iter().filter(|p| !have.contains(&p.as_str())).cloned().collect();
        let mut drift = Vec::new();
        drift.extend(trust_drift);
        for p in &missing_policies {
            drift.push(Drift::new(format!("policy {} not attached", p.rsplit('/').next().unwrap_or(p))));
        }
        Ok(Observed::present(owned, drift, Facts { missing_policies, trust_differs }))
    }

    async fn apply(&self, cx: &Cx, seen: &Observed) -> Result<(), Error> {
        let iam = &cx.aws.iam;
        let trust = self.trust(cx).to_string();
        let Some(f) = seen.facts::<Facts>() else {
            iam.create_role()
                .role_name(&self.name)
                .assume_role_policy_document(&trust)
                .description(match self.kind {
                    RoleKind::Node => "Karpenter nodes (managed by karpctl)",
                    RoleKind::Controller => "Karpenter controller (managed by karpctl)",
                })
                .set_tags(Some(iam_tags(&cx.desired)?))
                .send()
                .await
                .map_err(|e| Error::aws(format!("failed to create IAM role {}", self.name), "iam:CreateRole", e))?;
            return self.attach(cx, &self.policies).await;
        };
        if seen.presence == super::Presence::Foreign {
            iam.tag_role()
                .role_name(&self.name)
                .set_tags(Some(iam_tags(&cx.desired)?))
                .send()
                .await
                .map_err(|e| Error::aws(format!("failed to tag IAM role {}", self.name), "iam:TagRole", e))?;
        }
        if f.trust_differs {
            iam.update_assume_role_policy().role_name(&self.name).policy_document(&trust).send().await.map_err(
                |e| {
                    Error::aws(
                        format!("failed to update the trust policy of {}", self.name),
                        "iam:UpdateAssumeRolePolicy",
                        e,
                    )
                },
            )?;
        }
        self.attach(cx, &f.missing_policies).await
    }

    fn is_iam(&self) -> bool {
        true
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed) -> Result<(), Error> {
        let iam = &cx.aws.iam;
        let name = &self.name;
        // IAM refuses to delete a role that still has policies or sits in an instance profile
        // (Karpenter's own profiles hold the node role too).
        let (attached, inline, profiles) = tokio::join!(
            iam.list_attached_role_policies().role_name(name).max_items(1000).send(),
            iam.list_role_policies().role_name(name).max_items(1000).send(),
            iam.list_instance_profiles_for_role().role_name(name).max_items(1000).send()
        );
        let attached = attached
            .map_err(|e| Error::aws(format!("failed to list policies of {name}"), "iam:ListAttachedRolePolicies", e))?;
        for arn in attached.attached_policies().iter().filter_map(|p| p.policy_arn()) {
            let r = iam.detach_role_policy().role_name(name).policy_arn(arn).send().await;
            ignore_gone(
                r.map_err(|e| Error::aws(format!("failed to detach {arn} from {name}"), "iam:DetachRolePolicy", e)),
            )?;
        }
        let inline = inline
            .map_err(|e| Error::aws(format!("failed to list inline policies of {name}"), "iam:ListRolePolicies", e))?;
        for p in inline.policy_names() {
            let r = iam.delete_role_policy().role_name(name).policy_name(p).send().await;
            ignore_gone(r.map_err(|e| {
                Error::aws(format!("failed to delete inline policy {p} of {name}"), "iam:DeleteRolePolicy", e)
            }))?;
        }
        let profiles = profiles.map_err(|e| {
            Error::aws(format!("failed to list instance profiles of {name}"), "iam:ListInstanceProfilesForRole", e)
        })?;
        for p in profiles.instance_profiles() {
            let r = iam
                .remove_role_from_instance_profile()
                .instance_profile_name(p.instance_profile_name())
                .role_name(name)
                .send()
                .await;
            ignore_gone(r.map_err(|e| {
                Error::aws(
                    format!("failed to take {name} out of {}", p.instance_profile_name()),
                    "iam:RemoveRoleFromInstanceProfile",
                    e,
                )
            }))?;
        }
        let r = iam.delete_role().role_name(name).send().await;
        ignore_gone(r.map_err(|e| Error::aws(format!("failed to delete IAM role {name}"), "iam:DeleteRole", e)))
    }
}

/// The string values of every condition key ending in `suffix` (`:sub`, `:aud`) in a trust policy.
fn condition_values(doc: &Value, suffix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let statements = match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    for st in statements {
        if let Some(conds) = st["Condition"].as_object() {
            for block in conds.values().filter_map(Value::as_object) {
                for (_, v) in block.iter().filter(|(k, _)| k.ends_with(suffix)) {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        Value::Array(a) => out.extend(a.iter().filter_map(|x| x.as_str().map(str::to_string))),
                        _ => {}
                    }
                }
            }
        }
    }
    out
}

/// Say how a trust policy differs, naming the IRSA subject when that is what is wrong: a `sub`
/// naming the wrong namespace or service account is the classic silent IRSA failure.
fn trust_difference(actual: &Value, desired: &Value) -> Drift {
    let (have, want) = (condition_values(actual, ":sub"), condition_values(desired, ":sub"));
    if !want.is_empty() && have != want {
        let have = if have.is_empty() { "no service account".to_string() } else { have.join(", ") };
        return Drift::new(format!("trust policy allows {have}, not {}", want.join(", "))).with_hint(
            "the controller cannot assume its role; run `karpctl init` with the namespace the release is installed in",
        );
    }
    Drift::new("trust policy differs")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_wrong_irsa_subject_is_named() {
        let want = json!({"Statement": [{"Condition": {"StringEquals": {"o/id/X:sub": "system:serviceaccount:kube-system:karpenter"}}}]});
        let have = json!({"Statement": [{"Condition": {"StringEquals": {"o/id/X:sub": "system:serviceaccount:karpenter:karpenter"}}}]});
        let d = trust_difference(&have, &want);
        assert_eq!(
            d.message,
            "trust policy allows system:serviceaccount:karpenter:karpenter, not system:serviceaccount:kube-system:karpenter"
        );
        assert_eq!(
            trust_difference(&json!({"Statement": []}), &json!({"Statement": [{}]})).message,
            "trust policy differs"
        );
    }
}
