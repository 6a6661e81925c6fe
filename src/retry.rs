//! Bounded, visible waits for AWS's eventual consistency, in one place for every resource.
//!
//! The SDK retries what is transient on the wire (throttling, 5xx, dropped connections). What
//! it cannot know is that some service errors are transient too: a role that IAM has made but
//! EKS cannot see yet, a queue name SQS keeps for a minute after its deletion, a role another
//! writer is changing this very moment. [`patiently`] retries exactly those ([`classify`]), with
//! jittered exponential backoff, for at most the limit of the kind of wait ([`Wait`]). It says on
//! stderr what it waits for, and when the limit is reached it ends in a one-line error with a
//! hint. Everything else, permanent errors first (not found, access denied), is returned at once.
//!
//! The limits are AWS's own (two minutes for IAM propagation, as Terraform waits; 70 s for
//! SQS's 60 s), overridable with `KARPCTL_WAIT_<KIND>_SECS` for tests and unusual accounts.
//!
//! Also here: [`lost_race`], the errors a create gets when what it creates exists already
//! because of its own lost reply or a concurrent karpctl; `plan::apply` answers them by
//! observing again (see there).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// What a transient error waits for; each kind has its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A fresh IAM role (or policy) to become visible to EKS, EC2 or IAM itself.
    Propagation,
    /// SQS to release a queue name after its deletion.
    QueueDeleted,
    /// Another change to the same resource to finish (IAM ConcurrentModification, DeleteConflict
    /// right after the detaches, a rule whose removed targets EventBridge still sees).
    Conflict,
    /// A resource in transition to settle (an EKS add-on being created or deleted).
    Transition,
}

impl Wait {
    /// The environment variable that overrides the limit.
    pub fn env(self) -> &'static str {
        match self {
            Wait::Propagation => "KARPCTL_WAIT_PROPAGATION_SECS",
            Wait::QueueDeleted => "KARPCTL_WAIT_QUEUE_SECS",
            Wait::Conflict => "KARPCTL_WAIT_CONFLICT_SECS",
            Wait::Transition => "KARPCTL_WAIT_TRANSITION_SECS",
        }
    }

    /// AWS's own bound for it.
    fn default_limit(self) -> Duration {
        Duration::from_secs(match self {
            // IAM: "usually within a few seconds", up to about two minutes (Terraform waits 2 min).
            Wait::Propagation => 120,
            // SQS: 60 s before a deleted queue's name can be used again, plus slack.
            Wait::QueueDeleted => 70,
            Wait::Conflict => 60,
            // EKS add-on create/delete: usually under a minute; EKS's own waiters allow far more.
            Wait::Transition => 600,
        })
    }

    /// How long to wait at most: `KARPCTL_WAIT_<KIND>_SECS` (may be fractional) or the default.
    pub fn limit(self) -> Duration {
        std::env::var(self.env())
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or_else(|| self.default_limit())
    }

    /// What is waited for, about `subject` ("role X", "queue Q", "the ... add-on").
    pub fn describe(self, subject: &str) -> String {
        match self {
            Wait::Propagation => format!("IAM to propagate {subject}"),
            Wait::QueueDeleted => format!("SQS to release the name of the deleted {subject}"),
            Wait::Conflict => format!("other changes to {subject} to finish"),
            Wait::Transition => format!("{subject} to settle"),
        }
    }

    fn hint(self) -> String {
        let what = match self {
            Wait::Propagation => {
                "IAM changes usually reach EKS within two minutes; check the role exists (aws iam get-role)"
            }
            Wait::QueueDeleted => "SQS keeps a deleted queue's name for 60 seconds; wait a minute",
            Wait::Conflict => {
                "something else keeps changing this resource (another karpctl, a pipeline?); let it finish"
            }
            Wait::Transition => "the resource is still changing; check it with the AWS console or CLI",
        };
        format!("{what}, then run again (the limit is {} s; set {} to change it)", self.limit().as_secs(), self.env())
    }
}

/// The wait an error calls for, if it is one AWS's eventual consistency explains.
pub fn classify(e: &Error) -> Option<Wait> {
    let code = e.code.as_deref().unwrap_or("");
    let cause = e.cause.as_deref().unwrap_or("");
    match code {
        // EKS cannot see a fresh role yet (access entries, Pod Identity associations).
        "InvalidParameterException"
            if cause.contains("principalArn is invalid")
                || cause.contains("Role provided in the request does not exist") =>
        {
            Some(Wait::Propagation)
        }
        // IAM's own view of a fresh principal in a trust policy.
        "MalformedPolicyDocument" if cause.contains("Invalid principal") => Some(Wait::Propagation),
        "AWS.SimpleQueueService.QueueDeletedRecently" | "QueueDeletedRecently" => Some(Wait::QueueDeleted),
        "ConcurrentModification" | "ConcurrentModificationException" | "DeleteConflict" => Some(Wait::Conflict),
        "ValidationException" if cause.contains("since it has targets") => Some(Wait::Conflict),
        _ if e.kind == ErrorKind::InProgress => Some(Wait::Transition),
        _ => None,
    }
}

/// [`classify`], plus not-found as propagation: for calls that name something just created
/// (attach a fresh policy to a fresh role, put a fresh role in a profile), where IAM answers
/// NoSuchEntity until it has caught up.
pub fn classify_fresh(e: &Error) -> Option<Wait> {
    classify(e).or((e.kind == ErrorKind::NotFound).then_some(Wait::Propagation))
}

/// Whether a create's error means that what it creates is already there: AlreadyExists, or
/// IAM's instance-profile quota, which is what adding the role a second time (the retry after a
/// lost reply, or a concurrent karpctl) answers.
pub fn lost_race(e: &Error) -> bool {
    e.kind == ErrorKind::AlreadyExists
        || (e.code.as_deref() == Some("LimitExceeded")
            && e.cause.as_deref().is_some_and(|c| c.contains("InstanceSessionsPerInstanceProfile")))
}

/// Call `call` until it succeeds, fails with an error `classify` does not map to a wait, or the
/// wait's limit is reached. `subject` names what the call is about ("role X"); the wait's kind
/// says what is waited for ("waiting for IAM to propagate role X (12s)").
pub async fn patiently<T, F, Fut>(subject: &str, classify: impl Fn(&Error) -> Option<Wait>, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut backoff = Duration::from_millis(200);
    let mut said: Option<Instant> = None;
    loop {
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Some(wait) = classify(&e) else { return Err(e) };
        let what = wait.describe(subject);
        let waited = start.elapsed();
        let limit = wait.limit();
        if waited >= limit {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("gave up waiting for {what} after {} s", waited.as_secs()),
            )
            .with_cause(e.to_string())
            .with_hint(wait.hint()));
        }
        // Said at the first wait and then every ten seconds: visible, not noisy.
        if said.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            crate::output::warn(&format!("waiting for {what} ({}s)", waited.as_secs()));
            said = Some(Instant::now());
        }
        tracing::debug!("retrying after {backoff:?}: {e}");
        let sleep = jitter(backoff).min(limit.saturating_sub(waited));
        tokio::time::sleep(sleep).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Between half and all of `d`, so that concurrent writers (two karpctl runs, the attaches of
/// one role) that collided do not collide again on the same beat.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    let spread = d.as_nanos() as u64 / 2;
    d / 2 + Duration::from_nanos(if spread == 0 { 0 } else { u64::from(nanos) % spread })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(code: &str, cause: &str) -> Error {
        let mut e = Error::new(crate::error::classify(code, cause), "failed").with_cause(format!("{code}: {cause}"));
        e.code = Some(code.to_string());
        e
    }

    #[test]
    fn eventual_consistency_is_told_from_permanent_errors() {
        let c = |code, cause| classify(&aws(code, cause));
        assert_eq!(
            c("InvalidParameterException", "The specified principalArn is invalid: invalid principal."),
            Some(Wait::Propagation)
        );
        assert_eq!(
            c("InvalidParameterException", "Role provided in the request does not exist"),
            Some(Wait::Propagation)
        );
        assert_eq!(c("InvalidParameterException", "username and kubernetesGroups cannot be set"), None);
        assert_eq!(c("AWS.SimpleQueueService.QueueDeletedRecently", "wait 60 seconds"), Some(Wait::QueueDeleted));
        assert_eq!(c("ConcurrentModification", "Rate exceeded"), Some(Wait::Conflict));
        assert_eq!(c("DeleteConflict", "must detach all policies first"), Some(Wait::Conflict));
        assert_eq!(c("ValidationException", "Rule can't be deleted since it has targets."), Some(Wait::Conflict));
        assert_eq!(
            c("ResourceInUseException", "cannot be created as it is currently in DELETING state"),
            Some(Wait::Transition)
        );
        assert_eq!(c("ResourceInUseException", "Addon already exists."), None);
        assert_eq!(c("ResourceNotFoundException", "No cluster found for name: x."), None);
        assert_eq!(c("AccessDenied", "not authorized"), None);
        assert_eq!(classify_fresh(&aws("NoSuchEntity", "role x")), Some(Wait::Propagation));
    }

    #[test]
    fn lost_races_are_already_exists_and_the_profile_quota() {
        assert!(lost_race(&aws("EntityAlreadyExists", "Role with name x already exists.")));
        assert!(lost_race(&aws("LimitExceeded", "Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1")));
        assert!(!lost_race(&aws("LimitExceeded", "Cannot exceed quota for PoliciesPerRole: 10")));
        assert!(!lost_race(&aws("ResourceInUseException", "currently in DELETING state")));
    }

    #[tokio::test]
    async fn waits_retry_only_what_they_wait_for_and_end_at_their_limit() {
        let mut n = 0;
        let r: Result<u32> = patiently("role a", classify, || {
            n += 1;
            let attempt = n;
            async move {
                if attempt < 3 {
                    Err(aws("ConcurrentModification", "busy"))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        let mut m = 0;
        let r: Result<u32> = patiently("role a", classify, || {
            m += 1;
            async { Err(aws("AccessDenied", "no")) }
        })
        .await;
        assert_eq!((r.unwrap_err().kind, m), (ErrorKind::AccessDenied, 1));
        // A zero limit: the first transient error ends the wait, with a hint naming the knob.
        std::env::set_var(Wait::QueueDeleted.env(), "0");
        let r: Result<u32> = patiently("queue q", classify, || async {
            Err(aws("AWS.SimpleQueueService.QueueDeletedRecently", "wait"))
        })
        .await;
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.message.starts_with("gave up waiting for SQS to release the name of the deleted queue q"), "{e}");
        assert!(e.hint.clone().unwrap_or_default().contains("KARPCTL_WAIT_QUEUE_SECS"));
        assert!(!e.to_string().contains('\n'));
    }
}
