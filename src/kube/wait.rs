//! Waiting on the cluster: polls (never watches, so a dropped connection costs one poll) until
//! a Deployment is available, an object is Ready, or objects are gone, naming the last state on
//! timeout.

use std::future::Future;
use std::time::Duration;

use super::api::to_value;
use super::*;
use crate::error::{Error, ErrorKind, Result};

/// The wait before the second look of every poll; each later wait doubles, up to the interval.
pub const FIRST_LOOK: Duration = Duration::from_millis(200);

/// How often to look and for how long, passed in so tests run in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// The longest time between two looks (the first ones come sooner, see [`FIRST_LOOK`]).
    pub interval: Duration,
    /// When to give up.
    pub timeout: Duration,
}

impl Wait {
    /// A wait of `timeout`, looking every `interval`.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Wait { interval, timeout }
    }

    /// The controller and the NodeClass: image pulls and the first reconcile take minutes.
    pub const INSTALL: Wait = Wait { interval: Duration::from_secs(5), timeout: Duration::from_secs(300) };

    /// NodeClaims draining after their NodePool is deleted: instances take minutes to go.
    pub const DRAIN: Wait = Wait { interval: Duration::from_secs(10), timeout: Duration::from_secs(900) };
}

impl Kube {
    /// Wait until the Deployment is available ([`deployment_readiness`]). `progress` hears each
    /// new state; on timeout the error names the last one.
    pub async fn wait_deployment_available(
        &self,
        namespace: &str,
        name: &str,
        wait: Wait,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<()> {
        let what = format!("deployment {namespace}/{name}");
        let last = self
            .poll(wait, &what, progress, || async {
                Ok(match self.get("apps/v1", "Deployment", Some(namespace), name).await? {
                    None => Probe::Waiting("it does not exist yet".into()),
                    Some(obj) => match deployment_readiness(&to_value(obj)?) {
                        Readiness::Ready => Probe::Done,
                        Readiness::NotReady(c) => Probe::Waiting(describe(c.as_ref())),
                    },
                })
            })
            .await?;
        match last {
            None => Ok(()),
            Some(state) => {
                Err(Error::new(ErrorKind::Timeout, format!("{what} is not available after {}", human(wait.timeout)))
                    .with_cause(state)
                    .with_hint(format!(
                "look at the controller: kubectl -n {namespace} get pods; kubectl -n {namespace} logs deploy/{name}"
            )))
            }
        }
    }

    /// Wait until a custom resource's `Ready` condition is True. On timeout the error's cause is
    /// the failing condition (type and message: `SubnetsReady=False: ...`), with a hint for the
    /// EC2NodeClass conditions karpctl knows how to fix.
    pub async fn wait_ready(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        wait: Wait,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<()> {
        let what = format!("{kind} {name}");
        let failing = std::sync::Mutex::new(None::<Condition>);
        let last = self
            .poll(wait, &what, progress, || async {
                Ok(match self.get(api_version, kind, namespace, name).await? {
                    None => Probe::Waiting("it does not exist yet".into()),
                    Some(obj) => match readiness(&to_value(obj)?, "Ready") {
                        Readiness::Ready => Probe::Done,
                        Readiness::NotReady(c) => {
                            let text = describe(c.as_ref());
                            if let Ok(mut f) = failing.lock() {
                                *f = c;
                            }
                            Probe::Waiting(text)
                        }
                    },
                })
            })
            .await?;
        let Some(state) = last else { return Ok(()) };
        let condition = failing.lock().ok().and_then(|f| f.clone());
        let hint = condition.as_ref().and_then(|c| condition_hint(&c.type_)).map(str::to_string).unwrap_or_else(|| {
            format!(
                "kubectl describe {} {name} shows its conditions; karpctl doctor checks each piece",
                kind.to_lowercase()
            )
        });
        Err(Error::new(ErrorKind::Timeout, format!("{what} is not Ready after {}", human(wait.timeout)))
            .with_cause(state)
            .with_hint(hint))
    }

    /// Wait until no object of a kind matches `label_selector` and, when given, `names`
    /// (NodeClaims of a deleted NodePool, the deleted EC2NodeClasses: Karpenter removes their
    /// finalizers, after terminating the instances, only while it still runs).
    #[allow(clippy::too_many_arguments)]
    pub async fn wait_gone(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        names: Option<&[String]>,
        wait: Wait,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<()> {
        let what = match label_selector {
            Some(s) => format!("{kind} objects with {s}"),
            None => format!("{kind} objects"),
        };
        let last = self
            .poll(wait, &what, progress, || async {
                let mut items = self.list(api_version, kind, namespace, label_selector).await?;
                if let Some(names) = names {
                    items.retain(|o| o.metadata.name.as_ref().is_some_and(|n| names.contains(n)));
                }
                if items.is_empty() {
                    return Ok(Probe::Done);
                }
                let names: Vec<String> = items.iter().filter_map(|o| o.metadata.name.clone()).collect();
                Ok(Probe::Waiting(format!("{} remaining: {}", names.len(), names.join(", "))))
            })
            .await?;
        match last {
            None => Ok(()),
            Some(state) => {
                Err(Error::new(ErrorKind::Timeout, format!("{what} still exist after {}", human(wait.timeout)))
                    .with_cause(state)
                    .with_hint(format!(
                        "kubectl get {} shows them; their finalizers wait for the instances to terminate",
                        kind.to_lowercase()
                    )))
            }
        }
    }

    /// The poll loop every wait shares: `Ok(None)` when done, `Ok(Some(last state))` on timeout.
    /// Transient failures (network, 5xx) are waited through and become the state; a refusal
    /// (credentials, access) ends the wait at once.
    async fn poll<F, Fut>(
        &self,
        wait: Wait,
        what: &str,
        progress: &(dyn Fn(&str) + Sync),
        mut probe: F,
    ) -> Result<Option<String>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Probe>>,
    {
        let deadline = tokio::time::Instant::now() + wait.timeout;
        let mut last = String::new();
        // What is done in a second (a re-run, a small chart) is seen in a second; what takes
        // minutes is looked at every `interval`.
        let mut step = FIRST_LOOK.min(wait.interval);
        loop {
            let state = match probe().await {
                Ok(Probe::Done) => {
                    progress(&format!("{what}: ready"));
                    return Ok(None);
                }
                Ok(Probe::Waiting(s)) => s,
                Err(e) if matches!(e.kind, ErrorKind::Network | ErrorKind::ClusterState | ErrorKind::Timeout) => {
                    e.to_string()
                }
                Err(e) => return Err(e),
            };
            if state != last {
                progress(&format!("{what}: {state}"));
                last = state;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Some(last));
            }
            tokio::time::sleep(step.min(deadline - now)).await;
            step = (step * 2).min(wait.interval);
        }
    }
}

pub(super) enum Probe {
    Done,
    Waiting(String),
}

pub(super) fn describe(c: Option<&Condition>) -> String {
    match c {
        Some(c) => c.to_string(),
        None => "no status conditions yet (is the Karpenter controller running?)".into(),
    }
}

/// What to do about the EC2NodeClass conditions that fail in practice (karpenter-facts §5, §3).
pub(super) fn condition_hint(type_: &str) -> Option<&'static str> {
    Some(match type_ {
        "SubnetsReady" => {
            "no subnet matched the selector: tag the cluster's private subnets karpenter.sh/discovery=<cluster> (init does this)"
        }
        "SecurityGroupsReady" => {
            "no security group matched the selector: tag the cluster security group karpenter.sh/discovery=<cluster>"
        }
        "InstanceProfileReady" => {
            "the controller could not create the instance profile: check the controller role's IAM policies and the node role"
        }
        "AMIsReady" => "no AMI matched amiSelectorTerms: check the alias (e.g. al2023@latest) and the region",
        "ValidationSucceeded" => "the controller rejected the EC2NodeClass: its message says which field",
        _ => return None,
    })
}

/// `300ms`, `45s`, `5m`, `5m30s`: for messages.
pub(super) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_messages() {
        assert_eq!(human(Duration::from_millis(300)), "300ms");
        assert_eq!(human(Duration::from_secs(45)), "45s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_secs(330)), "5m30s");
    }
}
