//! One of the five EventBridge rules that route interruption events (spot interruption,
//! rebalance, state change, scheduled change, capacity reservation) to the queue.

use async_trait::async_trait;
use aws_sdk_eventbridge::operation::describe_rule::DescribeRuleOutput;
use aws_sdk_eventbridge::operation::list_targets_by_rule::ListTargetsByRuleError;
use aws_sdk_eventbridge::types::{RuleState, Tag, Target};
use serde_json::Value;

use super::ignore_gone;
use super::{Cx, Dep, Drift, Hold, Kind, Observed, Resource, ResourceId};
use crate::desired::Desired;
use crate::diff::{self, Compare};
use crate::error::{AwsContext, Error, ErrorKind, Result, ResultExt};
use crate::render::{DocKind, Document, Documents};
use crate::retry::{classify, patiently};

/// The target id the reference template uses.
pub const TARGET_ID: &str = "KarpenterInterruptionQueueTarget";

/// An event rule.
#[derive(Debug, Clone)]
pub struct EventRule {
    name: String,
    queue_id: ResourceId,
}

/// What observing it finds that applying or removing it uses.
#[derive(Debug)]
pub struct Facts {
    arn: String,
    rule_differs: bool,
    target_missing: bool,
    /// The ids of the rule's targets when observed: what teardown removes.
    target_ids: Vec<String>,
}

/// The id of the rule `name`.
pub fn id(name: &str) -> ResourceId {
    ResourceId::new(Kind::EventRule, name)
}

impl EventRule {
    /// The rule named `name` (one of `Names::rules`).
    pub fn new(d: &Desired, name: &str) -> Self {
        EventRule { name: name.to_string(), queue_id: super::queue::id(&d.names.queue.name) }
    }

    fn pattern<'a>(&self, cx: &'a Cx) -> Result<&'a Value> {
        cx.docs
            .event_patterns
            .iter()
            .find(|(n, _)| *n == self.name)
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

    /// Every target of the rule, page by page (the SDK has no paginator for this call, while
    /// EventBridge pages it with NextToken).
    async fn targets(
        &self,
        cx: &Cx,
    ) -> Result<Vec<Target>, aws_sdk_eventbridge::error::SdkError<ListTargetsByRuleError>> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let page = cx.aws.events.list_targets_by_rule().rule(&self.name).set_next_token(token).send().await?;
            all.extend(page.targets().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(all),
            }
        }
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
            .or_aws(format!("failed to write EventBridge rule {}", self.name), "events:PutRule")?;
        Ok(())
    }

    async fn put_target(&self, cx: &Cx) -> Result<()> {
        let target = Target::builder().id(TARGET_ID).arn(cx.desired.queue_arn()).build().map_err(|e| {
            Error::new(ErrorKind::Render, "failed to build the EventBridge target").with_cause(e.to_string())
        })?;
        let out = cx
            .aws
            .events
            .put_targets()
            .rule(&self.name)
            .targets(target)
            .send()
            .await
            .or_aws(format!("failed to set the target of rule {}", self.name), "events:PutTargets")?;
        if out.failed_entry_count() > 0 {
            let why = out.failed_entries().first().and_then(|f| f.error_message()).unwrap_or("unknown reason");
            return Err(Error::new(ErrorKind::Aws, format!("failed to set the target of rule {}", self.name))
                .with_cause(why.to_string()));
        }
        Ok(())
    }
}

/// The rule `name`, None when there is none: the first read of its observation, which the
/// session starts beside discovery ([`super::early`]).
pub async fn describe(events: &aws_sdk_eventbridge::Client, name: &str) -> Result<Option<DescribeRuleOutput>> {
    let got = events.describe_rule().name(name).send().await;
    got.or_aws(format!("failed to read EventBridge rule {name}"), "events:DescribeRule").found()
}

#[async_trait]
impl Resource for EventRule {
    type Facts = Facts;

    fn id(&self) -> ResourceId {
        id(&self.name)
    }

    fn depends_on(&self) -> Vec<Dep> {
        vec![Dep::on(self.queue_id.clone())]
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        if !cx.desired.target.interruption {
            return Some("--no-interruption".to_string());
        }
        // Rendered only for the versions that use the rule.
        self.pattern(cx)
            .is_err()
            .then(|| format!("{} {}", crate::versions::NOT_USED, cx.desired.target.karpenter_version))
    }

    fn documents(&self, d: &Desired, docs: &Documents) -> Result<Vec<Document>> {
        // Only the rules of the version are rendered.
        let doc = docs.event_patterns.iter().find(|(n, _)| *n == self.name).filter(|_| d.target.interruption);
        Ok(doc.map(|(_, v)| Document::json(&id(&self.name), DocKind::EventPattern, v)).into_iter().collect())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<Facts>> {
        let ev = &cx.aws.events;
        let rule = cx.early.rule.take_or(&self.name, || describe(ev, &self.name)).await?;
        let Some(rule) = rule else { return Ok(Observed::absent()) };
        let arn = rule.arn().unwrap_or_default().to_string();
        let (targets, tags) = tokio::join!(self.targets(cx), ev.list_tags_for_resource().resource_arn(&arn).send());
        let targets =
            targets.or_aws(format!("failed to list targets of rule {}", self.name), "events:ListTargetsByRule")?;
        let target_ids: Vec<String> = targets.iter().map(|t| t.id().to_string()).collect();
        let tags = tags.or_aws(format!("failed to read tags of rule {}", self.name), "events:ListTagsForResource")?;
        let pattern = rule.event_pattern().and_then(|p| serde_json::from_str::<Value>(p).ok());
        let pattern_same = pattern.as_ref().is_some_and(|p| self.pattern(cx).is_ok_and(|want| p == want));
        let enabled = rule.state() == Some(&RuleState::Enabled);
        let queue_arn = cx.desired.queue_arn();
        let target_missing = !targets.iter().any(|t| t.arn() == queue_arn);
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
        Ok(Observed::present(
            owned,
            drift,
            Facts { arn, rule_differs: !pattern_same || !enabled, target_missing, target_ids },
        ))
    }

    async fn tag(&self, cx: &Cx, f: &Facts) -> Result<()> {
        let r = cx.aws.events.tag_resource().resource_arn(&f.arn).set_tags(Some(EventRule::tags(cx)?)).send().await;
        r.map(|_| ()).or_aws(format!("failed to tag rule {}", self.name), "events:TagResource")
    }

    async fn apply(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        let Some(f) = seen.facts() else {
            self.put_rule(cx, Some(EventRule::tags(cx)?)).await?;
            return self.put_target(cx).await;
        };
        if f.rule_differs {
            self.put_rule(cx, None).await?;
        }
        if f.target_missing {
            self.put_target(cx).await?;
        }
        Ok(())
    }

    fn holds(&self) -> Hold {
        // EventBridge lets a rule outlive the queue it targets: both go at once.
        Hold::No
    }

    async fn delete(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        // EventBridge refuses to delete a rule that still has targets, and for a moment after
        // RemoveTargets it still sees them; RemoveTargets itself may fail some entries. So the
        // whole removal is retried until the rule goes: the first attempt removes the targets
        // observation listed (no extra round trip), a retry lists them again.
        let what = format!("EventBridge rule {}", self.name);
        let mut known = seen.facts().map(|f| f.target_ids.clone());
        patiently(&what, classify, || self.remove_targets_and_rule(cx, known.take())).await
    }
}

impl EventRule {
    /// Remove `ids` (listed afresh when `None`) and then the rule.
    async fn remove_targets_and_rule(&self, cx: &Cx, ids: Option<Vec<String>>) -> Result<()> {
        let ev = &cx.aws.events;
        let ids = match ids {
            Some(ids) => ids,
            None => {
                let targets = ev
                    .list_targets_by_rule()
                    .rule(&self.name)
                    .send()
                    .await
                    .or_aws(format!("failed to list targets of rule {}", self.name), "events:ListTargetsByRule");
                let Some(targets) = targets.found()? else { return Ok(()) };
                targets.targets().iter().map(|t| t.id().to_string()).collect()
            }
        };
        if !ids.is_empty() {
            let r = ev.remove_targets().rule(&self.name).set_ids(Some(ids)).send().await;
            let doing = format!("failed to remove the targets of rule {}", self.name);
            let out = r.or_aws(doing.clone(), "events:RemoveTargets").found()?;
            let failed = out.as_ref().filter(|o| o.failed_entry_count() > 0).and_then(|o| o.failed_entries().first());
            if let Some(failed) = failed {
                // A failed entry carries the error an API call would have (ConcurrentModification,
                // InternalException): classified the same way, so the wait covers it.
                let code = failed.error_code().unwrap_or("InternalException").to_string();
                let cause = format!("{code}: {}", failed.error_message().unwrap_or("no reason given"));
                let mut e = Error::new(crate::error::classify(&code, &cause), doing).with_cause(cause);
                e.code = Some(code);
                return Err(e);
            }
        }
        let r = ev.delete_rule().name(&self.name).send().await;
        ignore_gone(r.or_aws(format!("failed to delete rule {}", self.name), "events:DeleteRule"))
    }
}
