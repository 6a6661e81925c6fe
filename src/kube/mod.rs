//! The cluster side: how karpctl talks to the Kubernetes API of the EKS cluster, and the
//! cluster-side changes it makes there besides the helm charts.
//!
//! - [`token`]: the EKS bearer token (a presigned STS URL), so no kubeconfig is needed.
//! - [`connect`]: the [`Kube`] client `init`, `doctor` and `teardown` share (token refresh,
//!   kubeconfig); [`preflight`]: the RBAC check before the first write; [`api`]: server-side
//!   apply, get/list/delete by apiVersion/kind; [`wait`]: polling until ready or gone;
//!   [`readiness`]: reading status conditions; [`errors`]: kube-rs failures classified.
//!   helm's environment for the same cluster lives with helm (`crate::helm::env`).
//! - [`karpenter`]: Karpenter's own objects: foreign NodePools, whether the controller runs,
//!   and releasing its finalizers when it does not.
//! - [`survey`]: what else runs (another Karpenter, Cluster Autoscaler, the termination handler),
//!   where the controller can be scheduled, and the CRDs' own versions.
//! - [`aws_auth`]: the node role's entry in the `aws-auth` ConfigMap on CONFIG_MAP clusters.

pub mod api;
pub mod aws_auth;
pub mod connect;
pub mod errors;
pub mod karpenter;
pub mod preflight;
pub mod readiness;
pub mod survey;
pub mod token;
pub mod wait;

pub use api::{api_resource, manifests_from_yaml, FIELD_MANAGER};
pub use connect::Kube;
pub(crate) use errors::kube_error;
pub use preflight::Access;
pub use readiness::{conditions, deployment_readiness, readiness, Condition, Readiness};
pub use token::{EksTokenSource, TokenSource};
pub use wait::{Wait, FIRST_LOOK};

pub(crate) use crate::error::source_chain;
