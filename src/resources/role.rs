//! An IAM role: the node role (trust `ec2`, four AWS managed policies) or the controller role
//! (trust for IRSA or Pod Identity, the six controller policies).

use async_trait::async_trait;
use serde_json::Value;

use super::ignore_gone;
use super::{iam_owned, iam_tags, parse_policy, policy_eq, Cx, Dep, Drift, Hold, Kind, Observed, Resource, ResourceId};
use crate::desired::{Desired, NODE_MANAGED_POLICIES};
use crate::diff::{self, Compare};
use crate::error::{AwsContext, Error, ResultExt};
use crate::render::{DocKind, Document, Documents};
use crate::retry::{classify, classify_fresh, patiently};

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
    depends: Vec<Dep>,
}

/// What observing it finds that applying or removing it uses.
#[derive(Debug)]
pub struct Facts {
    missing_policies: Vec<String>,
    trust_differs: bool,
    /// Every policy attached when observed: what teardown detaches without listing again.
    attached: Vec<String>,
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
        let mut depends: Vec<Dep> =
            d.wanted_policies().map(|(_, n)| Dep::on(super::managed_policy::id(&n.name))).collect();
        depends.push(Dep::on(super::oidc_provider::id(d)));
        Role {
            kind: RoleKind::Controller,
            name: d.names.controller_role.name.clone(),
            policies: d.wanted_policies().map(|(_, n)| d.policy_arn(&n.name)).collect(),
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
        // Concurrently: IAM answers ConcurrentModification to some, which then wait their turn.
        let calls = arns.iter().map(|arn| async move {
            let what = format!("role {} and policy {}", self.name, short(arn));
            patiently(&what, classify_fresh, || async {
                cx.aws
                    .iam
                    .attach_role_policy()
                    .role_name(&self.name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map(|_| ())
                    .or_aws(format!("failed to attach {arn} to IAM role {}", self.name), "iam:AttachRolePolicy")
            })
            .await
        });
        futures::future::try_join_all(calls).await.map(|_| ())
    }
}

#[async_trait]
impl Resource for Role {
    type Facts = Facts;

    fn id(&self) -> ResourceId {
        id(&self.name)
    }

    fn depends_on(&self) -> Vec<Dep> {
        self.depends.clone()
    }

    fn documents(&self, _d: &Desired, docs: &Documents) -> Result<Vec<Document>, Error> {
        let trust = match self.kind {
            RoleKind::Node => &docs.node_trust,
            RoleKind::Controller => &docs.controller_trust,
        };
        Ok(vec![Document::json(&Resource::id(self), DocKind::TrustPolicy, trust)])
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<Facts>, Error> {
        let iam = &cx.aws.iam;
        let (role, attached) = tokio::join!(
            iam.get_role().role_name(&self.name).send(),
            iam.list_attached_role_policies().role_name(&self.name).into_paginator().items().send().try_collect()
        );
        let role = role.or_aws(format!("failed to read IAM role {}", self.name), "iam:GetRole");
        let Some(role) = role.found()? else { return Ok(Observed::absent()) };
        let attached = attached
            .or_aws(format!("failed to list policies of IAM role {}", self.name), "iam:ListAttachedRolePolicies")?;
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
        let attached: Vec<String> = attached.iter().filter_map(|p| p.policy_arn()).map(str::to_string).collect();
        let missing_policies: Vec<String> = self.policies.iter().filter(|p| !attached.contains(p)).cloned().collect();
        let mut drift = Vec::new();
        drift.extend(trust_drift);
        for p in &missing_policies {
            drift.push(Drift::new(format!("policy {} not attached", short(p))));
        }
        Ok(Observed::present(owned, drift, Facts { missing_policies, trust_differs, attached }))
    }

    async fn tag(&self, cx: &Cx, _facts: &Facts) -> Result<(), Error> {
        let tags = iam_tags(&cx.desired)?;
        patiently(&format!("role {}", self.name), classify, || async {
            let r = cx.aws.iam.tag_role().role_name(&self.name).set_tags(Some(tags.clone())).send().await;
            r.map(|_| ()).or_aws(format!("failed to tag IAM role {}", self.name), "iam:TagRole")
        })
        .await
    }

    async fn apply(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<(), Error> {
        let iam = &cx.aws.iam;
        let trust = self.trust(cx).to_string();
        let Some(f) = seen.facts() else {
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
                .or_aws(format!("failed to create IAM role {}", self.name), "iam:CreateRole")?;
            // What only names the role (its instance profile, association, access entry) can
            // go ahead while the policies are attached.
            cx.progress.created(&id(&self.name));
            return self.attach(cx, &self.policies).await;
        };
        let busy = format!("role {}", self.name);
        if f.trust_differs {
            patiently(&busy, classify, || async {
                iam.update_assume_role_policy()
                    .role_name(&self.name)
                    .policy_document(&trust)
                    .send()
                    .await
                    .or_aws(format!("failed to update the trust policy of {}", self.name), "iam:UpdateAssumeRolePolicy")
            })
            .await?;
        }
        self.attach(cx, &f.missing_policies).await
    }

    fn kept_by(&self) -> Option<super::Keep> {
        Some(super::Keep::Iam)
    }

    fn holds(&self) -> Hold {
        // Detached in `prepare_delete`, its policies can go before the role does.
        Hold::UntilPrepared
    }

    async fn prepare_delete(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<(), Error> {
        // What observation listed is detached at once, concurrently with the deletes of the
        // profiles and associations that use the role, so only DeleteRole waits for them.
        let attached = seen.facts().map(|f| f.attached.clone()).unwrap_or_default();
        let inline = async {
            let names = list_inline(cx, &self.name).await?;
            self.delete_inline(cx, &names).await
        };
        futures::try_join!(self.detach(cx, &attached), inline).map(|_| ())
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed<Facts>) -> Result<(), Error> {
        let busy = format!("role {}", self.name);
        // Concurrent writes to the role are waited out; a DeleteConflict first means "something
        // still holds it", handled below.
        let not_conflict = |e: &Error| classify(e).filter(|_| e.code.as_deref() != Some("DeleteConflict"));
        match patiently(&busy, not_conflict, || self.delete_role(cx)).await {
            // Something was attached or added after observation (or a profile karpctl does not
            // remove holds the role): list everything, remove it, and try once more.
            Err(e) if e.code.as_deref() == Some("DeleteConflict") => {
                let iam = &cx.aws.iam;
                let name = &self.name;
                let (attached, inline, profiles) = tokio::join!(
                    iam.list_attached_role_policies().role_name(name).into_paginator().items().send().try_collect(),
                    list_inline(cx, name),
                    iam.list_instance_profiles_for_role().role_name(name).into_paginator().items().send().try_collect()
                );
                let attached: Vec<String> = attached
                    .or_aws(format!("failed to list policies of {name}"), "iam:ListAttachedRolePolicies")?
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string))
                    .collect();
                let profiles: Vec<String> = profiles
                    .or_aws(format!("failed to list instance profiles of {name}"), "iam:ListInstanceProfilesForRole")?
                    .iter()
                    .map(|p| p.instance_profile_name().to_string())
                    .collect();
                let removals = profiles.iter().map(|p| super::instance_profile::remove_role(cx, p, name));
                let inline = inline?;
                futures::try_join!(
                    self.detach(cx, &attached),
                    self.delete_inline(cx, &inline),
                    futures::future::try_join_all(removals)
                )?;
                // IAM answers DeleteConflict for a moment after the detaches settle.
                patiently(&busy, classify, || self.delete_role(cx)).await
            }
            other => other,
        }
    }
}

impl Role {
    async fn delete_role(&self, cx: &Cx) -> Result<(), Error> {
        let r = cx.aws.iam.delete_role().role_name(&self.name).send().await;
        ignore_gone(r.or_aws(format!("failed to delete IAM role {}", self.name), "iam:DeleteRole"))
    }

    /// Detach managed policies, concurrently (IAM refuses to delete a role that has any).
    async fn detach(&self, cx: &Cx, arns: &[String]) -> Result<(), Error> {
        let calls = arns.iter().map(|arn| detach_role_policy(cx, &self.name, arn, arn));
        futures::future::try_join_all(calls).await.map(|_| ())
    }

    /// Delete inline policies, concurrently.
    async fn delete_inline(&self, cx: &Cx, names: &[String]) -> Result<(), Error> {
        let name = &self.name;
        let calls = names.iter().map(|p| async move {
            let r = cx.aws.iam.delete_role_policy().role_name(name).policy_name(p).send().await;
            ignore_gone(r.or_aws(format!("failed to delete inline policy {p} of {name}"), "iam:DeleteRolePolicy"))
        });
        futures::future::try_join_all(calls).await.map(|_| ())
    }
}

/// The names of a role's inline policies (none when the role is gone).
async fn list_inline(cx: &Cx, name: &str) -> Result<Vec<String>, Error> {
    let r = cx.aws.iam.list_role_policies().role_name(name).into_paginator().items().send().try_collect().await;
    Ok(r.or_aws(format!("failed to list inline policies of {name}"), "iam:ListRolePolicies")
        .found()?
        .unwrap_or_default())
}

/// Detach the managed policy `arn` (`what` in messages) from `role`: the one way both a role's
/// teardown and a policy's emptying do it. Other writes to the role (its own deletion walk)
/// can answer ConcurrentModification: waited out, not failed; a role or attachment already
/// gone has nothing left to detach.
pub(crate) async fn detach_role_policy(cx: &Cx, role: &str, arn: &str, what: &str) -> Result<(), Error> {
    let busy = format!("role {role}");
    ignore_gone(
        patiently(&busy, classify, || async {
            let r = cx.aws.iam.detach_role_policy().role_name(role).policy_arn(arn).send().await;
            r.or_aws(format!("failed to detach {what} from {role}"), "iam:DetachRolePolicy")
        })
        .await,
    )
}

/// The id of the role `name`.
pub fn id(name: &str) -> ResourceId {
    ResourceId::new(Kind::IamRole, name)
}

/// A policy ARN's name, for messages.
fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
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
    // Pod Identity: the session tags EKS sets name the cluster, namespace and service account;
    // without conditions on them any association in the account can assume the role.
    let scope =
        |doc: &Value| -> Vec<Vec<String>> { POD_IDENTITY_SCOPE.iter().map(|k| condition_values(doc, k)).collect() };
    let want_scope = scope(desired);
    // Only when the trust is otherwise Pod Identity's: a trust for another principal is just "differs".
    let pod_identity = actual.to_string().contains("pods.eks.amazonaws.com");
    if pod_identity && want_scope.iter().any(|v| !v.is_empty()) && scope(actual) != want_scope {
        let named: Vec<String> = POD_IDENTITY_SCOPE
            .iter()
            .zip(&want_scope)
            .map(|(k, v)| {
                format!("{}={}", k.trim_start_matches("aws:RequestTag/").trim_start_matches("aws:"), v.join(","))
            })
            .collect();
        return Drift::new(format!("trust policy is not scoped to {}", named.join(", "))).with_hint(
            "any Pod Identity association in the account could use this role; run `karpctl init` to scope its trust policy",
        );
    }
    Drift::new("trust policy differs")
}

/// The condition keys that scope a Pod Identity trust policy to one cluster, namespace and
/// service account of one account (EKS user guide, Pod Identity session tags).
const POD_IDENTITY_SCOPE: [&str; 4] = [
    "aws:SourceAccount",
    "aws:RequestTag/eks-cluster-name",
    "aws:RequestTag/kubernetes-namespace",
    "aws:RequestTag/kubernetes-service-account",
];

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

    #[test]
    fn an_unscoped_pod_identity_trust_is_named() {
        let want = json!({"Statement": [{"Principal": {"Service": "pods.eks.amazonaws.com"}, "Condition": {"StringEquals": {
            "aws:SourceAccount": "111122223333",
            "aws:RequestTag/eks-cluster-name": "demo",
            "aws:RequestTag/kubernetes-namespace": "kube-system",
            "aws:RequestTag/kubernetes-service-account": "karpenter"}}}]});
        let unscoped = json!({"Statement": [{"Principal": {"Service": "pods.eks.amazonaws.com"}}]});
        let d = trust_difference(&unscoped, &want);
        assert_eq!(
            d.message,
            "trust policy is not scoped to SourceAccount=111122223333, eks-cluster-name=demo, kubernetes-namespace=kube-system, kubernetes-service-account=karpenter"
        );
        assert!(d.hint.is_some());
        let mut other_ns = want.clone();
        other_ns["Statement"][0]["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-namespace"] =
            json!("karpenter");
        assert!(trust_difference(&other_ns, &want).message.starts_with("trust policy is not scoped to"));
    }
}
