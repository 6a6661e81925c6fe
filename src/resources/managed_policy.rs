//! One of the six controller policies (`KarpenterController<Part>Policy-C`): a customer managed
//! policy whose default version must equal the rendered document.

use async_trait::async_trait;

use super::ignore_gone;
use super::{iam_owned, iam_tags, parse_policy, policy_eq, Cx, Drift, Observed, Presence, Resource};
use crate::desired::Desired;
use crate::diff::{self, Compare};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::retry::{classify, patiently};

/// IAM keeps at most five versions of a managed policy.
const MAX_VERSIONS: usize = 5;

/// A controller managed policy.
#[derive(Debug, Clone)]
pub struct ManagedPolicy {
    name: String,
    arn: String,
}

#[derive(Debug)]
struct Facts {
    document_differs: bool,
}

impl ManagedPolicy {
    /// The policy named `name` (one of `Names::policies`).
    pub fn new(d: &Desired, name: &str) -> Self {
        ManagedPolicy { name: name.to_string(), arn: d.policy_arn(name) }
    }

    fn document(&self, cx: &Cx) -> Result<String> {
        cx.docs
            .policies
            .iter()
            .find(|(_, n, _)| *n == self.name)
            .map(|(_, _, doc)| doc.to_string())
            .ok_or_else(|| Error::new(ErrorKind::Render, format!("no document rendered for policy {}", self.name)))
    }

    /// Make room for a new version: IAM refuses a sixth, so the oldest non-default one goes.
    async fn prune_versions(&self, cx: &Cx) -> Result<()> {
        let versions = cx.aws.iam.list_policy_versions().policy_arn(&self.arn).into_paginator().items().send();
        let versions = versions.try_collect().await.map_err(|e| {
            Error::aws(format!("failed to list versions of policy {}", self.name), "iam:ListPolicyVersions", e)
        })?;
        let mut old: Vec<_> = versions.iter().filter(|v| !v.is_default_version()).collect();
        if versions.len() < MAX_VERSIONS {
            return Ok(());
        }
        // Oldest first; versions made within the same second are ordered by their number (v2 < v10).
        old.sort_by_key(|v| {
            let number = v.version_id().and_then(|id| id.trim_start_matches('v').parse::<u64>().ok());
            (v.create_date().map(|d| d.secs()), number)
        });
        if let Some(oldest) = old.first().and_then(|v| v.version_id()) {
            cx.aws.iam.delete_policy_version().policy_arn(&self.arn).version_id(oldest).send().await.map_err(|e| {
                Error::aws(
                    format!("failed to delete an old version of policy {}", self.name),
                    "iam:DeletePolicyVersion",
                    e,
                )
            })?;
        }
        Ok(())
    }
}

#[async_trait]
impl Resource for ManagedPolicy {
    fn id(&self) -> String {
        format!("iam-policy/{}", self.name)
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        // Rendered only for the versions that use the policy.
        self.document(cx)
            .is_err()
            .then(|| format!("{} {}", crate::versions::NOT_USED, cx.desired.target.karpenter_version))
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed> {
        let iam = &cx.aws.iam;
        let got = iam
            .get_policy()
            .policy_arn(&self.arn)
            .send()
            .await
            .map_err(|e| Error::aws(format!("failed to read IAM policy {}", self.name), "iam:GetPolicy", e));
        let Some(got) = got.found()? else { return Ok(Observed::absent()) };
        let policy = got.policy();
        let owned = policy.is_some_and(|p| iam_owned(&cx.desired, p.tags()));
        let version = policy.and_then(|p| p.default_version_id()).unwrap_or("v1");
        let v = iam.get_policy_version().policy_arn(&self.arn).version_id(version).send().await.map_err(|e| {
            Error::aws(format!("failed to read IAM policy {} {version}", self.name), "iam:GetPolicyVersion", e)
        })?;
        let current = match v.policy_version().and_then(|v| v.document()) {
            Some(doc) => Some(parse_policy(doc)?),
            None => None,
        };
        let desired: serde_json::Value = serde_json::from_str(&self.document(cx)?)
            .map_err(|e| Error::new(ErrorKind::Render, "rendered policy is not JSON").with_cause(e.to_string()))?;
        let document_differs = !current.as_ref().is_some_and(|c| policy_eq(c, &desired));
        let drift = if document_differs {
            let diff = current.as_ref().and_then(|c| diff::documents(c, &desired, Compare::Iam));
            vec![Drift::new("policy document differs").with_diff(diff)]
        } else {
            Vec::new()
        };
        Ok(Observed::present(owned, drift, Facts { document_differs }))
    }

    async fn apply(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        let iam = &cx.aws.iam;
        let doc = self.document(cx)?;
        let Some(f) = seen.facts::<Facts>() else {
            iam.create_policy()
                .policy_name(&self.name)
                .policy_document(&doc)
                .description("Karpenter controller permissions (managed by karpctl)")
                .set_tags(Some(iam_tags(&cx.desired)?))
                .send()
                .await
                .map_err(|e| Error::aws(format!("failed to create IAM policy {}", self.name), "iam:CreatePolicy", e))?;
            return Ok(());
        };
        if seen.presence == Presence::Foreign {
            iam.tag_policy()
                .policy_arn(&self.arn)
                .set_tags(Some(iam_tags(&cx.desired)?))
                .send()
                .await
                .map_err(|e| Error::aws(format!("failed to tag IAM policy {}", self.name), "iam:TagPolicy", e))?;
        }
        if f.document_differs {
            self.prune_versions(cx).await?;
            iam.create_policy_version()
                .policy_arn(&self.arn)
                .policy_document(&doc)
                .set_as_default(true)
                .send()
                .await
                .map_err(|e| {
                Error::aws(format!("failed to update IAM policy {}", self.name), "iam:CreatePolicyVersion", e)
            })?;
        }
        Ok(())
    }

    fn is_iam(&self) -> bool {
        true
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed) -> Result<()> {
        // Called once karpctl's roles have detached it, so the delete is tried straight away.
        match self.delete_policy(cx).await {
            // Attached elsewhere too, or holding old versions: emptied, then once more, for as
            // long as IAM still answers DeleteConflict while the detaches settle.
            Err(e) if e.code.as_deref() == Some("DeleteConflict") => {
                self.empty(cx).await?;
                patiently(&format!("policy {}", self.name), classify, || self.delete_policy(cx)).await
            }
            other => other,
        }
    }
}

impl ManagedPolicy {
    async fn delete_policy(&self, cx: &Cx) -> Result<()> {
        let r = cx.aws.iam.delete_policy().policy_arn(&self.arn).send().await;
        ignore_gone(
            r.map_err(|e| Error::aws(format!("failed to delete IAM policy {}", self.name), "iam:DeletePolicy", e)),
        )
    }

    /// Detach the policy from every user, group and role, and delete its non-default
    /// versions, all concurrently: a policy goes only once it is attached nowhere and has no
    /// version but the default.
    async fn empty(&self, cx: &Cx) -> Result<()> {
        let iam = &cx.aws.iam;
        let arn = &self.arn;
        let (entities, versions) = tokio::join!(
            iam.list_entities_for_policy().policy_arn(arn).into_paginator().send().try_collect(),
            iam.list_policy_versions().policy_arn(arn).into_paginator().items().send().try_collect()
        );
        let entities = entities.map_err(|e| {
            Error::aws(format!("failed to list where {} is attached", self.name), "iam:ListEntitiesForPolicy", e)
        });
        let Some(pages) = entities.found()? else { return Ok(()) };
        let versions = versions
            .map_err(|e| Error::aws(format!("failed to list versions of {}", self.name), "iam:ListPolicyVersions", e));
        let versions = versions.found()?.unwrap_or_default();
        let name = &self.name;
        let mut calls: Vec<futures::future::BoxFuture<'_, Result<()>>> = Vec::new();
        for page in &pages {
            for role in page.policy_roles().iter().filter_map(|r| r.role_name()) {
                calls.push(Box::pin(super::role::detach_role_policy(cx, role, arn, name)));
            }
            for user in page.policy_users().iter().filter_map(|u| u.user_name()) {
                calls.push(Box::pin(async move {
                    let r = iam.detach_user_policy().user_name(user).policy_arn(arn).send().await;
                    ignore_gone(r.map_err(|e| {
                        Error::aws(format!("failed to detach {name} from {user}"), "iam:DetachUserPolicy", e)
                    }))
                }));
            }
            for group in page.policy_groups().iter().filter_map(|g| g.group_name()) {
                calls.push(Box::pin(async move {
                    let r = iam.detach_group_policy().group_name(group).policy_arn(arn).send().await;
                    ignore_gone(r.map_err(|e| {
                        Error::aws(format!("failed to detach {name} from {group}"), "iam:DetachGroupPolicy", e)
                    }))
                }));
            }
        }
        for v in versions.iter().filter(|v| !v.is_default_version()).filter_map(|v| v.version_id()) {
            calls.push(Box::pin(async move {
                let r = iam.delete_policy_version().policy_arn(arn).version_id(v).send().await;
                ignore_gone(
                    r.map_err(|e| Error::aws(format!("failed to delete {v} of {name}"), "iam:DeletePolicyVersion", e)),
                )
            }));
        }
        futures::future::try_join_all(calls).await.map(|_| ())
    }
}
