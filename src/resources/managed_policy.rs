//! One of the six controller policies (`KarpenterController<Part>Policy-C`): a customer managed
//! policy whose default version must equal the rendered document.
//!
//! Reading a policy's document takes two round trips (`GetPolicy` for the default version's id,
//! then `GetPolicyVersion`), which made every no-op run three long. karpctl records on the
//! policy, in the tag [`VERSION_TAG`], which version it wrote and the SHA-256 of that document.
//! IAM policy versions are immutable, so when the default version is still the recorded one
//! and the recorded hash is the wanted document's, the document is the wanted one: `GetPolicy`
//! alone tells. Any other case (another default version, a new document, no record: a policy
//! made by hand or by an older karpctl) reads the version as before.

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::ignore_gone;
use super::{iam_owned, iam_tags, parse_policy, policy_eq, Cx, Drift, Kind, Observed, Resource, ResourceId};
use crate::desired::Desired;
use crate::diff::{self, Compare};
use crate::error::{AwsContext, Error, ErrorKind, Result, ResultExt};
use crate::render::{DocKind, Document, Documents};
use crate::retry::{classify, patiently};

/// IAM keeps at most five versions of a managed policy.
const MAX_VERSIONS: usize = 5;

/// The tag recording which version of the policy karpctl wrote, and its document's hash.
pub const VERSION_TAG: &str = "karpctl.io/policy-version";

/// The record [`VERSION_TAG`] holds for `document` written as `version`: `v3:<sha256 hex>`
/// (public for the tests that check what karpctl recorded).
pub fn version_record(version: &str, document: &str) -> String {
    let digest = Sha256::digest(document.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{version}:{hex}")
}

/// A controller managed policy.
#[derive(Debug, Clone)]
pub struct ManagedPolicy {
    name: String,
    arn: String,
}

/// What observing it finds that applying or removing it uses.
#[derive(Debug)]
pub struct Facts {
    document_differs: bool,
    /// The record to write when adopting: the document was read and found as wanted, but no
    /// record said so (a policy karpctl did not make).
    unrecorded: Option<String>,
}

/// The id of the policy `name`.
pub fn id(name: &str) -> ResourceId {
    ResourceId::new(Kind::IamPolicy, name)
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
        let versions = versions
            .try_collect()
            .await
            .or_aws(format!("failed to list versions of policy {}", self.name), "iam:ListPolicyVersions")?;
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
            cx.aws.iam.delete_policy_version().policy_arn(&self.arn).version_id(oldest).send().await.or_aws(
                format!("failed to delete an old version of policy {}", self.name),
                "iam:DeletePolicyVersion",
            )?;
        }
        Ok(())
    }
}

#[async_trait]
impl Resource for ManagedPolicy {
    type Facts = Facts;

    fn id(&self) -> ResourceId {
        id(&self.name)
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        // Rendered only for the versions that use the policy.
        self.document(cx)
            .is_err()
            .then(|| format!("{} {}", crate::versions::NOT_USED, cx.desired.target.karpenter_version))
    }

    fn documents(&self, _d: &Desired, docs: &Documents) -> Result<Vec<Document>> {
        // Only the policies of the version are rendered.
        let doc = docs.policies.iter().find(|(_, n, _)| *n == self.name);
        Ok(doc.map(|(_, _, v)| Document::json(&id(&self.name), DocKind::PermissionPolicy, v)).into_iter().collect())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<Facts>> {
        let iam = &cx.aws.iam;
        let got = iam
            .get_policy()
            .policy_arn(&self.arn)
            .send()
            .await
            .or_aws(format!("failed to read IAM policy {}", self.name), "iam:GetPolicy");
        let Some(got) = got.found()? else { return Ok(Observed::absent()) };
        let policy = got.policy();
        let owned = policy.is_some_and(|p| iam_owned(&cx.desired, p.tags()));
        let version = policy.and_then(|p| p.default_version_id()).unwrap_or("v1");
        let doc = self.document(cx)?;
        let recorded = policy.and_then(|p| p.tags().iter().find(|t| t.key() == VERSION_TAG)).map(|t| t.value());
        if recorded == Some(version_record(version, &doc).as_str()) {
            return Ok(Observed::present(owned, Vec::new(), Facts { document_differs: false, unrecorded: None }));
        }
        let v = iam
            .get_policy_version()
            .policy_arn(&self.arn)
            .version_id(version)
            .send()
            .await
            .or_aws(format!("failed to read IAM policy {} {version}", self.name), "iam:GetPolicyVersion")?;
        let current = match v.policy_version().and_then(|v| v.document()) {
            Some(doc) => Some(parse_policy(doc)?),
            None => None,
        };
        let desired: serde_json::Value = serde_json::from_str(&doc)
            .map_err(|e| Error::new(ErrorKind::Render, "rendered policy is not JSON").with_cause(e.to_string()))?;
        let document_differs = !current.as_ref().is_some_and(|c| policy_eq(c, &desired));
        let drift = if document_differs {
            let diff = current.as_ref().and_then(|c| diff::documents(c, &desired, Compare::Iam));
            vec![Drift::new("policy document differs").with_diff(diff)]
        } else {
            Vec::new()
        };
        let unrecorded = (!document_differs).then(|| version_record(version, &doc));
        Ok(Observed::present(owned, drift, Facts { document_differs, unrecorded }))
    }

    async fn tag(&self, cx: &Cx, facts: &Facts) -> Result<()> {
        // An adopted policy whose document is already the wanted one gets its record with the
        // ownership tags, so the next run need not read its document.
        let record = facts.unrecorded.as_deref().map(record_tag).transpose()?;
        let tags = iam_tags(&cx.desired)?.into_iter().chain(record).collect();
        let r = cx.aws.iam.tag_policy().policy_arn(&self.arn).set_tags(Some(tags)).send().await;
        r.map(|_| ()).or_aws(format!("failed to tag IAM policy {}", self.name), "iam:TagPolicy")
    }

    async fn apply(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        let iam = &cx.aws.iam;
        let doc = self.document(cx)?;
        let Some(f) = seen.facts() else {
            iam.create_policy()
                .policy_name(&self.name)
                .policy_document(&doc)
                .description("Karpenter controller permissions (managed by karpctl)")
                .set_tags(Some(iam_tags(&cx.desired)?))
                // A new policy's first version is always v1.
                .tags(record_tag(&version_record("v1", &doc))?)
                .send()
                .await
                .or_aws(format!("failed to create IAM policy {}", self.name), "iam:CreatePolicy")?;
            return Ok(());
        };
        if f.document_differs {
            self.prune_versions(cx).await?;
            let made = iam
                .create_policy_version()
                .policy_arn(&self.arn)
                .policy_document(&doc)
                .set_as_default(true)
                .send()
                .await
                .or_aws(format!("failed to update IAM policy {}", self.name), "iam:CreatePolicyVersion")?;
            // Without the record the next run reads the version again: slower, never wrong.
            if let Some(version) = made.policy_version().and_then(|v| v.version_id()) {
                let r = iam.tag_policy().policy_arn(&self.arn).tags(record_tag(&version_record(version, &doc))?).send();
                r.await.or_aws(format!("failed to tag IAM policy {}", self.name), "iam:TagPolicy")?;
            }
        }
        Ok(())
    }

    fn kept_by(&self) -> Option<super::Keep> {
        Some(super::Keep::Iam)
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed<Facts>) -> Result<()> {
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

/// The [`VERSION_TAG`] tag holding `record`.
fn record_tag(record: &str) -> Result<aws_sdk_iam::types::Tag> {
    aws_sdk_iam::types::Tag::builder()
        .key(VERSION_TAG)
        .value(record)
        .build()
        .map_err(|e| Error::new(ErrorKind::Render, "failed to build an IAM tag").with_cause(e.to_string()))
}

impl ManagedPolicy {
    async fn delete_policy(&self, cx: &Cx) -> Result<()> {
        let r = cx.aws.iam.delete_policy().policy_arn(&self.arn).send().await;
        ignore_gone(r.or_aws(format!("failed to delete IAM policy {}", self.name), "iam:DeletePolicy"))
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
        let entities =
            entities.or_aws(format!("failed to list where {} is attached", self.name), "iam:ListEntitiesForPolicy");
        let Some(pages) = entities.found()? else { return Ok(()) };
        let versions = versions.or_aws(format!("failed to list versions of {}", self.name), "iam:ListPolicyVersions");
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
                    ignore_gone(r.or_aws(format!("failed to detach {name} from {user}"), "iam:DetachUserPolicy"))
                }));
            }
            for group in page.policy_groups().iter().filter_map(|g| g.group_name()) {
                calls.push(Box::pin(async move {
                    let r = iam.detach_group_policy().group_name(group).policy_arn(arn).send().await;
                    ignore_gone(r.or_aws(format!("failed to detach {name} from {group}"), "iam:DetachGroupPolicy"))
                }));
            }
        }
        for v in versions.iter().filter(|v| !v.is_default_version()).filter_map(|v| v.version_id()) {
            calls.push(Box::pin(async move {
                let r = iam.delete_policy_version().policy_arn(arn).version_id(v).send().await;
                ignore_gone(r.or_aws(format!("failed to delete {v} of {name}"), "iam:DeletePolicyVersion"))
            }));
        }
        futures::future::try_join_all(calls).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_names_the_version_and_the_documents_hash() {
        let r = version_record("v3", "{}");
        assert_eq!(r, "v3:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
        // Another document or another version is another record.
        assert_ne!(version_record("v3", "{ }"), r);
        assert_ne!(version_record("v4", "{}"), r);
        // Within IAM's limit for a tag value (256), and only characters IAM allows in one.
        assert!(r.len() <= 256 && r.chars().all(|c| c.is_ascii_alphanumeric() || c == ':'));
    }
}
