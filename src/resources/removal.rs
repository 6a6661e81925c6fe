//! What one removal (teardown) shares between the resources it deletes: whether the Karpenter
//! controller still runs, the waits for it, and the release of what only it would have let go.
//! A NodePool or EC2NodeClass is removed when Karpenter has finished with it, not when its
//! DELETE is answered: while the controller runs, their deletes wait for that here, so what
//! goes after them in the planner's removal order ([`super::Resource::removed_after`]) starts
//! only then. Without a controller (from the start, or given up on with `--force`), the first
//! helm release to go first releases its finalizers ([`Removal::release_if_stopped`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::Cx;
use crate::error::{Error, ErrorKind, Result};
use crate::kube::{karpenter, Wait};
use crate::output;

/// The state of one removal. The default (every walk but teardown) is inert: no controller is
/// known, so nothing waits for it and nothing is released.
#[derive(Debug, Default)]
pub struct Removal {
    /// Whether the controller was found (the cluster API answered): only then does anything
    /// wait for it or stand in for it.
    known: bool,
    /// Whether it runs (and is still waited for).
    running: AtomicBool,
    /// How long to wait for it, and how often to look.
    wait: Option<Wait>,
    /// `--force`: a wait that times out goes on without the controller.
    force: bool,
    /// The one wait for every NodeClaim to be gone, shared by every deleted NodePool.
    claims: OnceCell<Result<()>>,
    /// The finalizers released without the controller: the line the report shows.
    released: OnceCell<Result<String>>,
}

impl Removal {
    /// A removal on a cluster whose controller does (`Some(true)`) or does not run, or whose
    /// API is out of reach (`None`: the cluster side is skipped).
    pub fn new(controller: Option<bool>, timeout: Duration, force: bool) -> Self {
        let interval = (timeout / 20).clamp(Duration::from_millis(100), Wait::DRAIN.interval);
        Removal {
            known: controller.is_some(),
            running: AtomicBool::new(controller.unwrap_or(false)),
            wait: Some(Wait::new(interval, timeout)),
            force,
            ..Removal::default()
        }
    }

    /// The wait for the controller, while it runs and is waited for.
    fn running(&self) -> Option<Wait> {
        self.wait.filter(|_| self.running.load(Ordering::SeqCst))
    }

    /// After a NodePool's DELETE: wait, while the controller runs, until every NodeClaim is
    /// gone (every NodePool is removed, so every NodeClaim must go). Waited for once, whichever
    /// NodePools ask.
    pub async fn node_pool_deleted(&self, cx: &Cx) -> Result<()> {
        let gone = self.claims.get_or_init(|| self.settle(cx, karpenter::NODECLAIM, None)).await;
        gone.clone()
    }

    /// After an EC2NodeClass's DELETE: wait, while the controller runs, until it is gone (the
    /// controller removes its finalizer, and the instance profiles it made).
    pub async fn node_class_deleted(&self, cx: &Cx, name: &str) -> Result<()> {
        self.settle(cx, karpenter::NODECLASS, Some(&[name.to_string()])).await
    }

    /// Wait for Karpenter to remove the objects of `kind` (`only` these names), when it runs
    /// and the cluster API is there; nothing to wait for otherwise.
    async fn settle(&self, cx: &Cx, (api_version, kind): (&str, &str), only: Option<&[String]>) -> Result<()> {
        let (Some(wait), Ok(api)) = (self.running(), cx.api()) else { return Ok(()) };
        let bar = output::spinner(&format!("waiting for Karpenter to remove its {kind} objects"));
        let progress = |msg: &str| output::progress(&bar, msg);
        let gone = api.kube.wait_gone(api_version, kind, None, None, only, wait, &progress).await;
        bar.finish_and_clear();
        match gone {
            Err(e) if e.kind == ErrorKind::Timeout && self.force => {
                // One warning, however many waits time out together.
                if self.running.swap(false, Ordering::SeqCst) {
                    output::warn(&format!("{e}: --force: going on without the controller"));
                }
                Ok(())
            }
            Err(e) if e.kind == ErrorKind::Timeout => Err(e.with_hint(
                "the controller is still installed, so a rerun can still finish cleanly; \
                 or pass --force to terminate Karpenter's instances by tag and remove its finalizers",
            )),
            other => other,
        }
    }

    /// Before a helm release goes: without a running controller nothing else releases the
    /// finalizers that keep NodeClaims, Nodes and EC2NodeClasses (and so the CRDs) from going.
    /// Karpenter's instances are terminated by then (the releases go after them). Done once.
    pub async fn release_if_stopped(&self, cx: &Cx) -> Result<()> {
        if !self.known || self.running.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.released.get_or_init(|| release(cx)).await.clone().map(|_| ())
    }

    /// The report's line about the finalizers released, when they were.
    pub fn note(&self) -> Option<String> {
        self.released.get().and_then(|r| r.as_ref().ok()).cloned()
    }
}

async fn release(cx: &Cx) -> Result<String> {
    let api = cx.api().map_err(|r| Error::new(ErrorKind::ClusterState, r))?;
    let done = karpenter::release_finalizers(&api.kube).await?;
    let line = format!(
        "without the controller: Karpenter's instances terminated by tag; finalizers removed from {} NodeClaims, {} EC2NodeClasses and {} Nodes",
        done.node_claims, done.node_classes, done.nodes
    );
    output::warn(&line);
    Ok(line)
}
