//! The interruption queue (named after the cluster): 300 s retention, SSE, and a policy that
//! lets EventBridge send to it and denies plain HTTP.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;

use super::ignore_gone;
use super::{parse_policy, policy_eq, tag_map, Cx, Drift, Kind, Observed, Resource, ResourceId};
use crate::desired::Desired;
use crate::diff::{self, Compare};
use crate::error::{AwsContext, Result, ResultExt};
use crate::render::{DocKind, Document, Documents};
use crate::retry::{classify, patiently};

/// The attributes karpctl sets, besides the policy.
const RETENTION: &str = "300";

/// The queue.
#[derive(Debug, Clone)]
pub struct Queue {
    name: String,
}

/// What observing it finds that applying or removing it uses.
#[derive(Debug)]
pub struct Facts {
    url: String,
    /// Attributes to set to repair drift.
    fix: Vec<(QueueAttributeName, String)>,
}

/// The id of the queue `name`.
pub fn id(name: &str) -> ResourceId {
    ResourceId::new(Kind::SqsQueue, name)
}

impl Queue {
    /// The interruption queue.
    pub fn new(d: &Desired) -> Self {
        Queue { name: d.names.queue.name.clone() }
    }

    fn desired_attributes(cx: &Cx) -> Vec<(QueueAttributeName, String)> {
        vec![
            (QueueAttributeName::MessageRetentionPeriod, RETENTION.to_string()),
            (QueueAttributeName::SqsManagedSseEnabled, "true".to_string()),
            (QueueAttributeName::Policy, cx.docs.queue_policy.to_string()),
        ]
    }
}

/// The URL of the queue `name`, None when there is none: the first read of its observation,
/// which the session starts beside discovery ([`super::early`]).
pub async fn url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<Option<String>> {
    let got = sqs.get_queue_url().queue_name(name).send().await;
    let got = got.or_aws(format!("failed to look up SQS queue {name}"), "sqs:GetQueueUrl").found()?;
    Ok(got.map(|u| u.queue_url().unwrap_or_default().to_string()))
}

#[async_trait]
impl Resource for Queue {
    type Facts = Facts;

    fn id(&self) -> ResourceId {
        id(&self.name)
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        (!cx.desired.target.interruption).then(|| "--no-interruption".to_string())
    }

    fn documents(&self, d: &Desired, docs: &Documents) -> Result<Vec<Document>> {
        let doc =
            d.target.interruption.then(|| Document::json(&id(&self.name), DocKind::QueuePolicy, &docs.queue_policy));
        Ok(doc.into_iter().collect())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<Facts>> {
        let sqs = &cx.aws.sqs;
        let url = cx.early.queue_url.take_or(&self.name, || url(sqs, &self.name)).await?;
        let Some(url) = url else { return Ok(Observed::absent()) };
        let (attrs, tags) = tokio::join!(
            sqs.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::All).send(),
            sqs.list_queue_tags().queue_url(&url).send()
        );
        // Just after a DeleteQueue, SQS may still hand out the URL of a queue that is gone.
        let attrs = attrs.or_aws(format!("failed to read SQS queue {}", self.name), "sqs:GetQueueAttributes");
        let Some(attrs) = attrs.found()? else { return Ok(Observed::absent()) };
        let tags = tags.or_aws(format!("failed to read tags of SQS queue {}", self.name), "sqs:ListQueueTags")?;
        let empty = HashMap::new();
        let have = attrs.attributes().unwrap_or(&empty);
        let mut drift = Vec::new();
        let mut fix = Vec::new();
        for (name, want) in Queue::desired_attributes(cx) {
            let got = have.get(&name);
            let (same, diff) = match (&name, got) {
                (QueueAttributeName::Policy, Some(g)) => match parse_policy(g) {
                    Ok(p) => {
                        (policy_eq(&p, &cx.docs.queue_policy), diff::documents(&p, &cx.docs.queue_policy, Compare::Iam))
                    }
                    Err(_) => (false, None),
                },
                (_, Some(g)) => {
                    let attr = |v: &str| serde_json::json!({ name.as_str(): v });
                    (*g == want, diff::documents(&attr(g), &attr(&want), Compare::Exact))
                }
                (_, None) => (false, None),
            };
            if !same {
                drift.push(Drift::new(format!("{} differs", name.as_str())).with_diff(diff));
                fix.push((name, want));
            }
        }
        let owned = cx.desired.owns_map(tags.tags());
        Ok(Observed::present(owned, drift, Facts { url, fix }))
    }

    async fn tag(&self, cx: &Cx, f: &Facts) -> Result<()> {
        let r = cx.aws.sqs.tag_queue().queue_url(&f.url).set_tags(Some(tag_map(&cx.desired))).send().await;
        r.map(|_| ()).or_aws(format!("failed to tag SQS queue {}", self.name), "sqs:TagQueue")
    }

    async fn apply(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        let sqs = &cx.aws.sqs;
        let Some(f) = seen.facts() else {
            let mut req = sqs.create_queue().queue_name(&self.name).set_tags(Some(tag_map(&cx.desired)));
            for (k, v) in Queue::desired_attributes(cx) {
                req = req.attributes(k, v);
            }
            // After a teardown SQS keeps the name for 60 s (QueueDeletedRecently).
            let what = format!("queue {}", self.name);
            patiently(&what, classify, || async {
                req.clone().send().await.or_aws(format!("failed to create SQS queue {}", self.name), "sqs:CreateQueue")
            })
            .await?;
            return Ok(());
        };
        if !f.fix.is_empty() {
            let mut req = sqs.set_queue_attributes().queue_url(&f.url);
            for (k, v) in &f.fix {
                req = req.attributes(k.clone(), v);
            }
            req.send().await.or_aws(format!("failed to update SQS queue {}", self.name), "sqs:SetQueueAttributes")?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        let Some(f) = seen.facts() else { return Ok(()) };
        let r = cx.aws.sqs.delete_queue().queue_url(&f.url).send().await;
        ignore_gone(r.or_aws(format!("failed to delete SQS queue {}", self.name), "sqs:DeleteQueue"))
    }
}
