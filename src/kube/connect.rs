//! The cluster API client `init`, `doctor` and `teardown` share.
//!
//! Why kube-rs: it is the maintained, widely used Kubernetes client for Rust (a CNCF project,
//! released in step with Kubernetes), it speaks server-side apply and dynamic (untyped)
//! resources, and it reads kubeconfigs including `exec` credential plugins, which `--kubeconfig`
//! needs. It is built with the `client` and `rustls-tls` features only (no websockets, no
//! controller runtime) and with rustls on aws-lc-rs, so it reuses the hyper, rustls and crypto
//! builds the AWS SDK already brings.
//!
//! Two ways in: the default needs no kubeconfig (endpoint and CA from `DescribeCluster`, a
//! token from [`super::token`], re-presigned and the client rebuilt before it expires);
//! `--kubeconfig`/`--context` hand the whole connection to the kubeconfig.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};
use tokio::sync::Mutex;

use super::token::{EksTokenSource, TokenSource, REFRESH_AFTER};
use super::*;
use crate::aws::Aws;
use crate::cluster::ClusterInfo;
use crate::error::{Error, ErrorKind, Result};

/// How long a single API request may take before it counts as failed: every wait polls, so no
/// request needs to stay open, and none may hang a run.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) enum Target {
    Eks {
        endpoint: String,
        uri: http::Uri,
        ca_pem: Option<Vec<u8>>,
        ca_der: Option<Vec<Vec<u8>>>,
        tokens: Arc<dyn TokenSource>,
    },
    Kubeconfig {
        path: Option<PathBuf>,
        context: Option<String>,
        config: Box<Config>,
    },
}

pub(super) struct Built {
    client: Client,
    at: Instant,
}

/// The cluster API, as karpctl uses it. Cheap to share by reference; the underlying kube-rs
/// client is rebuilt with a fresh token when the current one gets old.
pub struct Kube {
    target: Target,
    built: Mutex<Option<Built>>,
    refresh_after: Duration,
}

/// Shows where, never the token.
impl fmt::Debug for Kube {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kube").field("server", &self.server()).finish()
    }
}

impl Kube {
    /// How this client reaches the server: helm is sent the same way (`crate::helm::env`).
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// Connect the way the command line says: `--kubeconfig`/`--context` when given, otherwise
    /// the discovered cluster's endpoint and CA with a token from the shared AWS credentials.
    pub async fn connect(
        info: &ClusterInfo,
        aws: &Aws,
        kubeconfig: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Kube> {
        if kubeconfig.is_some() || context.is_some() {
            return Kube::from_kubeconfig(kubeconfig, context).await;
        }
        let endpoint = info.endpoint.as_deref().filter(|e| !e.is_empty()).ok_or_else(|| {
            Error::new(ErrorKind::ClusterState, format!("cluster {} has no API endpoint yet", info.name))
                .with_hint("wait until the cluster is ACTIVE, then run again")
        })?;
        let ca = info.ca_data.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| {
            Error::new(ErrorKind::ClusterState, format!("cluster {} reports no certificate authority", info.name))
                .with_hint("wait until the cluster is ACTIVE, then run again")
        })?;
        Kube::eks(endpoint, Some(ca), EksTokenSource::new(aws, info)?.shared())
    }

    /// A client for `endpoint` that trusts `ca_data` (base64 PEM, as `DescribeCluster` gives it;
    /// None: the system's roots) and authenticates with tokens from `tokens`.
    pub fn eks(endpoint: &str, ca_data: Option<&str>, tokens: Arc<dyn TokenSource>) -> Result<Kube> {
        let uri: http::Uri = endpoint.parse().map_err(|e: http::uri::InvalidUri| {
            Error::new(ErrorKind::ClusterState, format!("the cluster endpoint {endpoint:?} is not a URL"))
                .with_cause(e.to_string())
                .with_hint("check the cluster with aws eks describe-cluster")
        })?;
        let (ca_pem, ca_der) = match ca_data {
            Some(b64) => {
                let (pem, der) = parse_ca(b64)?;
                (Some(pem), Some(der))
            }
            None => (None, None),
        };
        Ok(Kube {
            target: Target::Eks { endpoint: endpoint.trim_end_matches('/').to_string(), uri, ca_pem, ca_der, tokens },
            built: Mutex::new(None),
            refresh_after: REFRESH_AFTER,
        })
    }

    /// A client from a kubeconfig (`path`, else `KUBECONFIG` or `~/.kube/config`) and context
    /// (else its current context). Loaded now, so a wrong path or context fails before any work.
    pub async fn from_kubeconfig(path: Option<&Path>, context: Option<&str>) -> Result<Kube> {
        let shown = path.map(|p| p.display().to_string()).unwrap_or_else(|| "the default kubeconfig".into());
        let fail = |e: &dyn std::error::Error| {
            Error::new(ErrorKind::InvalidInput, format!("failed to load {shown}"))
                .with_cause(super::source_chain(e))
                .with_hint("check --kubeconfig and --context (kubectl config get-contexts lists the contexts)")
        };
        let kc = match path {
            Some(p) => Kubeconfig::read_from(p),
            None => Kubeconfig::read(),
        }
        .map_err(|e| fail(&e))?;
        let opts = KubeConfigOptions { context: context.map(str::to_string), cluster: None, user: None };
        let mut config = Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| fail(&e))?;
        config.read_timeout = Some(REQUEST_TIMEOUT);
        Ok(Kube {
            target: Target::Kubeconfig {
                path: path.map(Path::to_path_buf),
                context: context.map(str::to_string),
                config: Box::new(config),
            },
            built: Mutex::new(None),
            refresh_after: REFRESH_AFTER,
        })
    }

    /// Rebuild the client (with a fresh token) once it is older than `after`; the default is
    /// [`REFRESH_AFTER`]. Tests set zero to see a new token on every request.
    pub fn with_refresh_after(mut self, after: Duration) -> Self {
        self.refresh_after = after;
        self
    }

    /// The API server's URL, for messages.
    pub fn server(&self) -> String {
        match &self.target {
            Target::Eks { endpoint, .. } => endpoint.clone(),
            Target::Kubeconfig { config, .. } => config.cluster_url.to_string(),
        }
    }

    /// The kube-rs client, with a token young enough for the next requests. Public so callers
    /// can reach what this wrapper does not cover; clone it freely, but ask again for each
    /// batch of work rather than keeping it for longer than [`REFRESH_AFTER`].
    pub async fn client(&self) -> Result<Client> {
        let mut built = self.built.lock().await;
        if let Some(b) = built.as_ref() {
            let stale = matches!(self.target, Target::Eks { .. }) && b.at.elapsed() >= self.refresh_after;
            if !stale {
                return Ok(b.client.clone());
            }
        }
        let config = match &self.target {
            Target::Eks { uri, ca_der, tokens, .. } => {
                let mut c = Config::new(uri.clone());
                c.root_cert = ca_der.clone();
                c.auth_info.token = Some(tokens.token().await?.into());
                c.read_timeout = Some(REQUEST_TIMEOUT);
                c
            }
            Target::Kubeconfig { config, .. } => (**config).clone(),
        };
        let client = bounded_retries(config).map_err(|e| self.error("failed to set up the cluster API client", e))?;
        *built = Some(Built { client: client.clone(), at: Instant::now() });
        Ok(client)
    }

    /// A classified error from a kube-rs failure while `doing` something.
    pub(super) fn error(&self, doing: impl Into<String>, e: ::kube::Error) -> Error {
        kube_error(doing, &self.server(), e)
    }
}

/// How many times a request the API server answered 429, 503 or 504 is sent again, and the
/// backoff between (doubling from `RETRY_FIRST` to `RETRY_MOST`; a `Retry-After` the server
/// sends is honoured when longer). About 3 s in all, then the answer is karpctl's to judge.
const RETRIES: u32 = 4;
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MOST: Duration = Duration::from_secs(2);

/// A client that retries a busy or unavailable API server a bounded number of times. kube-rs's
/// default retries 429/503/504 up to 15 times with a backoff doubling from 5 ms to 1000 s,
/// which holds one call for minutes when the API server keeps refusing (an overloaded control
/// plane, an eviction a PodDisruptionBudget blocks): every wait of karpctl's has a bound the
/// user can see, and this one hid inside the client.
fn bounded_retries(mut config: Config) -> std::result::Result<Client, ::kube::Error> {
    use tower::{buffer::BufferLayer, retry::RetryLayer};
    config.default_retry = false;
    let policy = ::kube::client::retry::RetryPolicy::new(RETRY_FIRST, RETRY_MOST, RETRIES, true)
        .map_err(|e| ::kube::Error::Service(Box::new(e)))?;
    // The retry layer clones the service it wraps for each attempt: the buffer makes it cloneable.
    Ok(::kube::client::ClientBuilder::try_from(config)?
        .with_layer(&BufferLayer::new(1024))
        .with_layer(&RetryLayer::new(policy))
        .build())
}

/// `DescribeCluster`'s base64 PEM → the PEM bytes (for helm's CA file) and the DER
/// certificates (for rustls).
pub(super) fn parse_ca(b64: &str) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    use base64::Engine as _;
    let bad = |cause: String| {
        Error::new(ErrorKind::ClusterState, "the cluster's certificate authority data is not a base64 PEM certificate")
            .with_cause(cause)
            .with_hint("check certificateAuthority.data in aws eks describe-cluster")
    };
    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let pem = base64::engine::general_purpose::STANDARD.decode(compact).map_err(|e| bad(e.to_string()))?;
    let der: Vec<Vec<u8>> = pem::parse_many(&pem)
        .map_err(|e| bad(e.to_string()))?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.contents().to_vec())
        .collect();
    if der.is_empty() {
        return Err(bad("no CERTIFICATE block in it".into()));
    }
    Ok((pem, der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use serde_json::Value;

    #[test]
    fn ca_data_must_hold_a_certificate() {
        use base64::Engine as _;
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(parse_ca("not base64!").is_err());
        assert!(parse_ca(&enc("hello")).is_err());
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        let (p, der) = parse_ca(&enc(pem)).unwrap();
        assert_eq!(p, pem.as_bytes());
        assert_eq!(der, vec![vec![0u8, 1, 2]]);
    }

    #[test]
    fn work_can_move_between_threads() {
        fn send<T: Send>(_: &T) {}
        #[derive(Debug)]
        struct NoTokens;
        #[async_trait]
        impl TokenSource for NoTokens {
            async fn token(&self) -> Result<String> {
                Err(Error::new(ErrorKind::Credentials, "none"))
            }
        }
        let k = Kube::eks("http://127.0.0.1:1", None, Arc::new(NoTokens)).unwrap();
        send(&k);
        send(&k.preflight(&[]));
        send(&k.apply(&Value::Null));
        send(&k.wait_ready("v1", "X", None, "x", Wait::INSTALL, &|_| {}));
        send(&k.wait_deployment_available("ns", "x", Wait::INSTALL, &|_| {}));
        send(&k.wait_gone("v1", "X", None, None, None, Wait::DRAIN, &|_| {}));
        send(&k.helm_env());
        send(&super::super::aws_auth::ensure_node_role(&k, "arn"));
    }
}
