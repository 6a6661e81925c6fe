//! The cluster side: how karpctl talks to the Kubernetes API of the EKS cluster, and the
//! cluster-side changes it makes there besides the helm charts.
//!
//! - [`token`]: the EKS bearer token (a presigned STS URL), so no kubeconfig is needed.
//! - [`client`]: the [`Kube`] wrapper `init`, `doctor` and `teardown` call: preflight,
//!   server-side apply, get/list/delete by apiVersion/kind, waits, and helm's environment.
//! - [`karpenter`]: Karpenter's own objects: foreign NodePools, whether the controller runs,
//!   and releasing its finalizers when it does not.
//! - [`survey`]: what else runs (another Karpenter, Cluster Autoscaler, the termination handler),
//!   where the controller can be scheduled, and the CRDs' own versions.
//! - [`aws_auth`]: the node role's entry in the `aws-auth` ConfigMap on CONFIG_MAP clusters.

pub mod aws_auth;
pub mod client;
pub mod karpenter;
pub mod survey;
pub mod token;

pub use client::{Access, Kube, Wait, FIELD_MANAGER, FIRST_LOOK};
pub use token::{EksTokenSource, TokenSource};

pub(crate) use crate::error::source_chain;
