//! One of the five EventBridge rules that route interruption events (spot interruption,
//! rebalance, state change, scheduled change, capacity reservation) to the queue.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::{RuleState, Tag, Target};
use serde_json::Value;

use super::ignore_gone;
use super::{Cx, Drift, Observed, Presence, Resource};
use crate::desired::Desired;
use crate::diff::{self, Compare};
use crate::error::{Error, ErrorKind, Result, ResultExt};

/// The target id the reference template uses.
pub const TARGET_ID: &str = "KarpenterInterruptionQueueTarget";

/// An event rule.
#[derive(Debug, Clone)]
pub struct EventRule {
    index: usize,
    name: String,
    queue_id: String,
}

#[derive(Debug)]
struct Facts {
    arn: String,
    rule_differs: bool,
    target_missing: bool,
}

impl EventRule {
    /// Rule `index` of `EVENT_RULES`, named `name`.
    pub fn new(d: &Desired, index: usize, name: &str) -> Self {
        EventRule { index, name: name.to_string(), queue_id: format!("sqs-queue/{}", d.names.queue.name) }
    }

    fn pattern<'a>(&self, cx: &'a Cx) -> Result<&'a Value> {
        cx.docs
            .event_patterns
            .get(self.index)
            .map(|(_, p)| p)
            .ok_or_else(|| Error::new(ErrorKind::Render, format!("no event pattern rendered for rule {}", self.name)))
    }

    fn tags(cx: &Cx) -> Result<Vec<Tag>> {
        cx.desired
            .ownership_tags()
            .into_iter()
            .map(|(k, v)| {
                Tag::builder().key(k).value(v).build().map_err(|e| {
                    Error::new(ErrorKind::Render, "failed to build EventBridge tags").with_cause(e.to_string())
                })
            })
            .collect()
    }

    async fn put_rule(&self, cx: &Cx, tags: Option<Vec<Tag>>) -> Result<()> {
        cx.aws
            .events
            .put_rule()
            .name(&self.name)
            .event_pattern(self.pattern(cx)?.to_string())
            .state(RuleState::Enabled)
            .description("Karpenter interruption handling (managed by karpctl)")
            .set_tags(tags)
            .send()
            .await
            .map_err(|e| Error::aws(format!("failed to write EventBridge rule {}", self.name), "events:PutRule", e))?;
        Ok(())
    }

    async fn put_target(&self, cx: &Cx) -> Result<()> {
        let target = Target::builder().id(TARGET_ID).arn(cx.desired.queue_arn()).build().map_err(|e| {
            Error::new(ErrorKind::Render, "failed to build the EventBridge target").with_cause(e.to_string())
        })?;
        let out = cx.aws.events.put_targets().rule(&self.name).targets(target).send().await.map_err(|e| {
            Error::aws(format!("failed to set the target of rule {}", self.name), "events:PutTargets", e)
        })?;
        if out.failed_entry_count() > 0 {
            let why = out.failed_entries().first().and_then(|f| f.error_message()).unwrap_or("unknown reason");
            return Err(Error::new(ErrorKind::Aws, format!("failed to set the target of rule {}", self.name))
                .with_cause(why.to_string()));
        }
        Ok(())
    }
}

#[async_trait]
impl Resource for EventRule {
    fn id(&self) -> String {
        format!("event-rule/{}", self.name)
    }

    fn depends_on(&self) -> Vec<String> {
        vec![self.queue_id.clone()]
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        (!cx.desired.target.interruption).then(|| "--no-interruption".to_string())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed> {
        let ev = &cx.aws.events;
        let rule = ev.describe_rule().name(&self.name).send().await.map_err(|e| {
            Error::aws(format!("failed to read EventBridge rule {}", self.name), "events:DescribeRule", e)
        });
        let Some(rule) = rule.found()? else { return Ok(Observed::absent()) };
        let arn = rule.arn().unwrap_or_default().to_string();
        let (targets, tags) = tokio::join!(
            ev.list_targets_by_rule().rule(&self.name).send(),
            ev.list_tags_for_resource().resource_arn(&arn).send()
        );
        let targets = targets.map_err(|e| {
            Error::aws(format!("failed to list targets of rule {}", self.name), "events:ListTargetsByRule", e)
        })?;
        let tags = tags.map_err(|e| {
            Error::aws(format!("failed to read tags of rule {}", self.name), "events:ListTagsForResource", e)
        })?;
        let pattern = rule.event_pattern().and_then(|p| serde_json::from_str::<Value>(p).ok());
        let pattern_same = pattern.as_ref().is_some_and(|p| self.pattern(cx).is_ok_and(|want| p == want));
        let enabled = rule.state() == Some(&RuleState::Enabled);
        let queue_arn = cx.desired.queue_arn();
        let target_missing = !targets.targets().iter().any(|t| t.arn() == queue_arn);
        let mut drift = Vec::new();
        if !pattern_same {
            let diff = match (&pattern, self.pattern(cx)) {
                (Some(have), Ok(want)) => diff::documents(have, want, Compare::Exact),
                _ => None,
            };
            drift.push(Drift::new("event pattern differs").with_diff(diff));
        }
        if !enabled {
            drift.push(Drift::new("rule is disabled"));
        }
        if target_missing {
            drift.push(Drift::new("does not target the queue"));
        }
        let owned = cx.desired.is_owned(tags.tags().iter().map(|t| (t.key(), t.value())));
        Ok(Observed::present(owned, drift, Facts { arn, rule_differs: !pattern_same || !enabled, target_missing }))
    }

    async fn apply(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        let Some(f) = seen.facts::<Facts>() else {
            self.put_rule(cx, Some(EventRule::tags(cx)?)).await?;
            return self.put_target(cx).await;
        };
        if seen.presence == Presence::Foreign {
            cx.aws
                .events
                .tag_resource()
                .resource_arn(&f.arn)
                .set_tags(Some(EventRule::tags(cx)?))
                .send()
                .await
                .map_err(|e| Error::aws(format!("failed to tag rule {}", self.name), "events:TagResource", e))?;
        }
        if f.rule_differs {
            self.put_rule(cx, None).await?;
        }
        if f.target_missing {
            self.put_target(cx).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed) -> Result<()> {
        let ev = &cx.aws.events;
        // EventBridge refuses to delete a rule that still has targets.
        let targets = ev.list_targets_by_rule().rule(&self.name).send().await.map_err(|e| {
            Error::aws(format!("failed to list targets of rule {}", self.name), "events:ListTargetsByRule", e)
        });
        let Some(targets) = targets.found()? else { return Ok(()) };
        let ids: Vec<String> = targets.targets().iter().map(|t| t.id().to_string()).collect();
        if !ids.is_empty() {
            let r = ev.remove_targets().rule(&self.name).set_ids(Some(ids)).send().await;
            ignore_gone(r.map_err(|e| {
                Error::aws(format!("failed to remove the targets of rule {}", self.name), "events:RemoveTargets", e)
            }))?;
        }
        let r = ev.delete_rule().name(&self.name).send().await;
        ignore_gone(r.map_err(|e| Error::aws(format!("failed to delete rule {}", self.name), "events:DeleteRule", e)))
    }
}
