//! What observing a resource finds: whether it exists and whose it is, how it differs from the
//! desired state, and the facts its own apply needs, typed for the resource and erased for the
//! set (only [`super::AnyResource`]'s adapter turns them back).

use std::any::Any;
use std::sync::Arc;

use super::{Resource, ResourceId};
use crate::error::{Error, Result};

/// Whether a resource exists and whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// It does not exist.
    Absent,
    /// It exists with karpctl's ownership tags for this cluster.
    Owned,
    /// It exists, karpctl did not make it, and it is meant to be used as it is (an OIDC provider
    /// another tool created, the account's spot service-linked role); never adopted or deleted.
    Shared,
    /// It exists with karpctl's name but without its tags: blocks `init` unless `--adopt`.
    Foreign,
}

/// One way an existing resource differs from the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// What differs, e.g. "trust policy differs".
    pub message: String,
    /// A fix more specific than "run karpctl init", where there is one.
    pub hint: Option<String>,
    /// The found document against the wanted one ([`crate::diff::documents`]), where there is one.
    pub diff: Option<String>,
}

impl Drift {
    /// A drift entry.
    pub fn new(message: impl Into<String>) -> Self {
        Drift { message: message.into(), hint: None, diff: None }
    }

    /// Attach the document diff (`None`: nothing to show).
    pub fn with_diff(mut self, diff: Option<String>) -> Self {
        self.diff = diff;
        self
    }

    /// Attach a specific fix.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The facts of an observation once the set has erased their type: only [`AnyResource`]'s
/// adapter turns them back into the resource's own type.
pub type Erased = dyn Any + Send + Sync;

/// What observation found. `facts` carries what the resource's own `apply` needs (versions,
/// ids, URLs), so apply never re-reads what observation already knows. A resource sees its
/// own facts' type `F` ([`Resource::Facts`]); the set holds them erased (the default `F`), and
/// the adapter gives a resource back only facts of its own type, so a wrong one is an error
/// rather than a silent "absent, create it".
pub struct Observed<F: ?Sized = Erased> {
    /// Existence and ownership.
    pub presence: Presence,
    /// Differences from the desired state (empty: converged).
    pub drift: Vec<Drift>,
    /// Set when the resource does not apply to this install, with the reason.
    pub skip: Option<String>,
    /// The resource's own observation details (None: nothing was found).
    facts: Option<Arc<F>>,
}

impl<F: ?Sized> Clone for Observed<F> {
    fn clone(&self) -> Self {
        Observed {
            presence: self.presence,
            drift: self.drift.clone(),
            skip: self.skip.clone(),
            facts: self.facts.clone(),
        }
    }
}

impl<F: ?Sized> std::fmt::Debug for Observed<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("presence", &self.presence)
            .field("drift", &self.drift)
            .field("skip", &self.skip)
            .finish()
    }
}

impl<F: ?Sized> Observed<F> {
    /// Nothing there.
    pub fn absent() -> Self {
        Observed { presence: Presence::Absent, drift: Vec::new(), skip: None, facts: None }
    }

    /// The resource is not part of this install.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Observed { presence: Presence::Absent, drift: Vec::new(), skip: Some(reason.into()), facts: None }
    }
}

impl<F: Send + Sync + 'static> Observed<F> {
    /// It exists; ownership from its tags.
    pub fn present(owned: bool, drift: Vec<Drift>, facts: F) -> Self {
        let presence = if owned { Presence::Owned } else { Presence::Foreign };
        Observed { presence, drift, skip: None, facts: Some(Arc::new(facts)) }
    }

    /// It exists, with the presence the resource decided (Shared: usable, never karpctl's).
    pub fn present_as(presence: Presence, drift: Vec<Drift>, facts: F) -> Self {
        Observed { presence, drift, skip: None, facts: Some(Arc::new(facts)) }
    }

    /// The facts observation found (None: the resource was not found).
    pub fn facts(&self) -> Option<&F> {
        self.facts.as_deref()
    }

    /// The observation as the set holds it.
    pub fn erase(self) -> Observed {
        let facts = self.facts.map(|f| f as Arc<Erased>);
        Observed { presence: self.presence, drift: self.drift, skip: self.skip, facts }
    }
}

impl Observed {
    /// The observation with the facts as `F`; an error when they are of another type (an
    /// observation handed to a resource that did not make it: a bug, never a create).
    pub(super) fn typed<F: Send + Sync + 'static>(&self, id: &ResourceId) -> Result<Observed<F>> {
        let facts = match self.facts.clone().map(Arc::downcast::<F>).transpose() {
            Ok(facts) => facts,
            Err(_) => return Err(Error::defect(format!("{id} was handed another resource's observation"))),
        };
        Ok(Observed { presence: self.presence, drift: self.drift.clone(), skip: self.skip.clone(), facts })
    }

    /// The facts of `R`'s observation, for a reader outside the walk (doctor reading the values
    /// a release was installed with): None when nothing was found, or the observation is not `R`'s.
    pub fn facts_of<R: Resource>(&self) -> Option<&R::Facts> {
        self.facts.as_deref().and_then(|f| f.downcast_ref::<R::Facts>())
    }
}
