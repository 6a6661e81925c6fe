//! First reads started beside discovery. A run's time is its longest chain of round trips, and
//! observation could only start once `DescribeCluster` and `GetCallerIdentity` had answered:
//! a resource whose observation is two reads in a row (the queue's URL, then its attributes)
//! made every no-op run three round trips long. The first of those reads needs only names the
//! settings already fix (the queue's, the rules', the Pod Identity association's namespace), so
//! the session starts them at once, beside discovery, and the resource takes the answer when it
//! observes. A read nobody takes (the cluster was not found) is cancelled with the session.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_eventbridge::operation::describe_rule::DescribeRuleOutput;
use futures::future::{FutureExt, RemoteHandle};

use super::{event_rule, pod_identity, queue};
use crate::aws::Aws;
use crate::desired::{AuthMode, Names};
use crate::error::Result;
use crate::settings::InstallOptions;
use crate::versions::{self, ALL_RULES};

/// The started reads of one kind, by what they read. Each is taken once: by the resource
/// that reads the same thing, which otherwise reads it itself, with the same function.
pub struct Reads<T> {
    started: Mutex<HashMap<String, RemoteHandle<T>>>,
}

impl<T> Default for Reads<T> {
    fn default() -> Self {
        Reads { started: Mutex::default() }
    }
}

impl<T: Send + 'static> Reads<T> {
    fn start(&self, key: String, read: impl Future<Output = T> + Send + 'static) {
        // Dropping the handle (nobody took it) cancels the read.
        let (task, handle) = read.remote_handle();
        tokio::spawn(task);
        if let Ok(mut started) = self.started.lock() {
            started.insert(key, handle);
        }
    }

    /// The answer of the read started for `key`, or of `read` now when none was.
    pub async fn take_or<F: Future<Output = T>>(&self, key: &str, read: impl FnOnce() -> F) -> T {
        let started = self.started.lock().ok().and_then(|mut s| s.remove(key));
        match started {
            Some(handle) => handle.await,
            None => read().await,
        }
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.started.lock().map(|s| s.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        keys
    }
}

/// The reads a run started early, one field per kind.
#[derive(Default)]
pub struct Early {
    /// `GetQueueUrl`, by queue name ([`queue::url`]).
    pub queue_url: Reads<Result<Option<String>>>,
    /// `DescribeRule`, by rule name ([`event_rule::describe`]).
    pub rule: Reads<Result<Option<DescribeRuleOutput>>>,
    /// The Pod Identity association's id, by namespace ([`pod_identity::association_id`]).
    pub pod_identity: Reads<Result<Option<String>>>,
}

impl std::fmt::Debug for Early {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Early")
            .field("queue_url", &self.queue_url.keys())
            .field("rule", &self.rule.keys())
            .field("pod_identity", &self.pod_identity.keys())
            .finish()
    }
}

impl Early {
    /// Start the first reads of what an install of `opts` on `cluster` has: the queue and the
    /// version's rules (with interruption handling), the association (with Pod Identity).
    pub fn start(aws: &Aws, cluster: &str, opts: &InstallOptions) -> Self {
        let early = Early::default();
        let names = Names::for_cluster(cluster);
        if opts.interruption {
            let (sqs, name) = (aws.sqs.clone(), names.queue.name.clone());
            early.queue_url.start(name.clone(), async move { queue::url(&sqs, &name).await });
            let release = versions::documents_for(&opts.karpenter_version);
            for (_, rule) in ALL_RULES.iter().zip(&names.rules).filter(|(r, _)| release.rules.contains(r)) {
                let (events, name) = (aws.events.clone(), rule.name.clone());
                early.rule.start(name.clone(), async move { event_rule::describe(&events, &name).await });
            }
        }
        if opts.auth == AuthMode::PodIdentity {
            let (eks, cluster, ns) = (aws.eks.clone(), cluster.to_string(), opts.namespace.clone());
            early
                .pod_identity
                .start(ns.clone(), async move { pod_identity::association_id(&eks, &cluster, &ns).await });
        }
        early
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_started_read_is_taken_once_and_anything_else_is_read_then() {
        let reads: Reads<&'static str> = Reads::default();
        reads.start("q".into(), async { "early" });
        assert_eq!(reads.take_or("q", || async { "late" }).await, "early");
        // Taken: a second look reads for itself, as does one for a key never started.
        assert_eq!(reads.take_or("q", || async { "late" }).await, "late");
        assert_eq!(reads.take_or("other", || async { "late" }).await, "late");
    }
}
