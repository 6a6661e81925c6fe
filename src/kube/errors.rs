//! kube-rs failures classified into karpctl's error kinds, by status code and variant.

use super::preflight::ACCESS_HINT;
use crate::error::{Error, ErrorKind};

/// Classify a kube-rs failure the way [`Error::aws`] classifies AWS ones: by HTTP status code
/// and error variant, never by message text.
pub(crate) fn kube_error(doing: impl Into<String>, server: &str, e: ::kube::Error) -> Error {
    let doing = doing.into();
    match e {
        ::kube::Error::Api(s) => {
            let cause = if s.message.is_empty() { format!("{} ({})", s.reason, s.code) } else { s.message.clone() };
            let (kind, hint) = match s.code {
                401 => (ErrorKind::Credentials, Some(ACCESS_HINT.to_string())),
                403 => (
                    ErrorKind::AccessDenied,
                    Some(
                        "your identity lacks this right in the cluster's RBAC; karpctl's preflight lists what it needs"
                            .into(),
                    ),
                ),
                404 => (ErrorKind::NotFound, None),
                409 => (ErrorKind::AlreadyExists, Some("something else changed it meanwhile; run again".into())),
                400 | 422 => (
                    ErrorKind::Render,
                    Some("the cluster rejected the document; check --set/--values, else report it".into()),
                ),
                _ => (
                    ErrorKind::ClusterState,
                    Some("the cluster API failed; run again, and check the control plane's health".into()),
                ),
            };
            let mut err = Error::new(kind, doing).with_cause(cause);
            err.code = Some(if s.reason.is_empty() { s.code.to_string() } else { s.reason.clone() });
            match hint {
                Some(h) => err.with_hint(h),
                None => err,
            }
        }
        ::kube::Error::Auth(_) => Error::new(ErrorKind::Credentials, doing)
            .with_cause(super::source_chain(&e))
            .with_hint(
            "the kubeconfig's credentials failed; check the user's exec plugin or token (kubectl get --raw /version)",
        ),
        ::kube::Error::InferKubeconfig(_) | ::kube::Error::InferConfig(_) => Error::new(ErrorKind::InvalidInput, doing)
            .with_cause(super::source_chain(&e))
            .with_hint("check --kubeconfig and --context"),
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) | ::kube::Error::RustlsTls(_) => {
            Error::new(ErrorKind::Network, doing).with_cause(super::source_chain(&e)).with_hint(format!(
                "check that {server} is reachable from here: a private-only endpoint needs a host in the VPC or a VPN, \
                 and its security group must allow HTTPS from you"
            ))
        }
        other => Error::new(ErrorKind::ClusterState, doing).with_cause(super::source_chain(&other)),
    }
}
