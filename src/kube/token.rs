//! The EKS bearer token, made the way `aws eks get-token` makes it, so karpctl needs neither a
//! kubeconfig nor the AWS CLI: a SigV4-presigned STS `GetCallerIdentity` URL with the cluster
//! name signed in as `x-k8s-aws-id`, encoded as `k8s-aws-v1.<base64url, no padding>`. EKS (its
//! aws-iam-authenticator) replays the URL against STS to learn who is calling.
//!
//! The token is a credential: nothing here logs it, and it never goes on a command line.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::aws::Aws;
use crate::cluster::ClusterInfo;
use crate::desired::Partition;
use crate::error::{Error, ErrorKind, Result, CREDENTIALS_HINT};

/// What EKS expects before the base64 part; it also tells the authenticator the token's format.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that binds a token to one cluster: a token for cluster A is useless on cluster B.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// `X-Amz-Expires` of the presigned URL; 60 s is what the AWS CLI sends (EKS itself bounds the
/// token's life to about 15 minutes from `X-Amz-Date`, whatever this says).
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);
/// How long EKS accepts a token.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// When a client re-presigns: well before [`TOKEN_LIFETIME`], so a request that starts just
/// before the refresh still carries a valid token.
pub const REFRESH_AFTER: Duration = Duration::from_secs(10 * 60);

/// The characters SigV4 leaves unencoded (RFC 3986 unreserved); everything else is `%XX`, so
/// the URL we hand out matches what STS re-canonicalises.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The STS host a token must be presigned for. EKS checks the host, so this is always the
/// region's real STS endpoint, never an `--endpoint-url` override.
pub fn sts_host(region: &str, partition: Partition) -> String {
    format!("sts.{region}.{}", partition.url_suffix())
}

/// Presign the token for `cluster` at `time`. Pure: the same credentials, region, cluster and
/// time always give the same token, which is what makes it testable.
pub fn presign(
    credentials: &Credentials,
    region: &str,
    partition: Partition,
    cluster: &str,
    time: SystemTime,
) -> Result<String> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::new(ErrorKind::Credentials, format!("failed to sign the EKS token for cluster {cluster}"))
            .with_cause(e.to_string())
            .with_hint("check the AWS region and credentials")
    };
    let host = sts_host(region, partition);
    let base = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");

    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| fail(&e))?
        .into();
    // The empty body's SHA-256 (not UNSIGNED-PAYLOAD): what the CLI signs and STS verifies.
    let headers = [(CLUSTER_ID_HEADER, cluster)];
    let request = SignableRequest::new("GET", base.as_str(), headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| fail(&e))?;
    let (instructions, _signature) = sign(request, &params).map_err(|e| fail(&e))?.into_parts();

    let mut url = base;
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.push_str(&utf8_percent_encode(value, QUERY_VALUE).to_string());
    }
    Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)))
}

/// Where a client gets its bearer token. A trait so that tests can count and vary tokens, and
/// so that kubeconfig-less and future token kinds fit the same client.
#[async_trait]
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A token valid for at least [`REFRESH_AFTER`] from now.
    async fn token(&self) -> Result<String>;
}

/// Tokens for one EKS cluster from the shared SDK configuration's credentials, so whatever
/// chain the AWS calls use (profile, SSO, IRSA, environment) also reaches the cluster.
#[derive(Debug, Clone)]
pub struct EksTokenSource {
    credentials: SharedCredentialsProvider,
    region: String,
    partition: Partition,
    cluster: String,
}

impl EksTokenSource {
    /// Tokens for the discovered cluster, signed with the credentials of `aws.config`.
    pub fn new(aws: &Aws, cluster: &ClusterInfo) -> Result<Self> {
        let credentials = aws.config.credentials_provider().ok_or_else(|| {
            Error::new(ErrorKind::Credentials, "no AWS credentials to sign the cluster token with")
                .with_hint(CREDENTIALS_HINT)
        })?;
        Ok(EksTokenSource::with_provider(credentials, &cluster.region, cluster.caller.partition, &cluster.name))
    }

    /// Tokens from an explicit credentials provider (tests; callers with their own chain).
    pub fn with_provider(
        credentials: SharedCredentialsProvider,
        region: &str,
        partition: Partition,
        cluster: &str,
    ) -> Self {
        EksTokenSource { credentials, region: region.to_string(), partition, cluster: cluster.to_string() }
    }

    /// This source behind the trait object the client takes.
    pub fn shared(self) -> Arc<dyn TokenSource> {
        Arc::new(self)
    }
}

#[async_trait]
impl TokenSource for EksTokenSource {
    async fn token(&self) -> Result<String> {
        // Asked each time: the provider caches and refreshes expiring credentials (SSO, IRSA).
        let creds = self.credentials.provide_credentials().await.map_err(|e| {
            Error::new(ErrorKind::Credentials, "failed to load AWS credentials for the cluster token")
                .with_cause(crate::kube::source_chain(&e))
                .with_hint(CREDENTIALS_HINT)
        })?;
        presign(&creds, &self.region, self.partition, &self.cluster, SystemTime::now())
    }
}

/// The parts of a token that matter, decoded (for tests and `doctor` diagnostics; the token
/// itself is never printed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedToken {
    /// The presigned URL.
    pub url: String,
    /// Its host.
    pub host: String,
    /// Its query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
}

impl DecodedToken {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Decode a `k8s-aws-v1.` token back into its presigned URL.
pub fn decode(token: &str) -> Result<DecodedToken> {
    let bad = |why: &str| {
        Error::invalid("not an EKS token", "an EKS token is k8s-aws-v1. followed by a base64url URL").with_cause(why)
    };
    let b64 = token.strip_prefix(TOKEN_PREFIX).ok_or_else(|| bad("missing the k8s-aws-v1. prefix"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64).map_err(|e| bad(&e.to_string()))?;
    let url = String::from_utf8(bytes).map_err(|e| bad(&e.to_string()))?;
    let rest = url.strip_prefix("https://").ok_or_else(|| bad("the URL is not https"))?;
    let (host, path_query) = rest.split_once('/').ok_or_else(|| bad("the URL has no path"))?;
    let query = path_query.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect();
    Ok(DecodedToken { host: host.to_string(), url: url.clone(), query })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(session: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session.map(str::to_string),
            None,
            "test",
        )
    }

    fn at() -> SystemTime {
        // 2026-01-01T00:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    #[test]
    fn token_is_a_presigned_get_caller_identity_url() {
        let t = presign(&creds(None), "eu-west-1", Partition::Aws, "demo", at()).unwrap();
        assert!(t.starts_with("k8s-aws-v1."));
        assert!(!t.contains('='), "no padding");
        assert!(!t[TOKEN_PREFIX.len()..].contains(['+', '/']), "base64url alphabet");
        let d = decode(&t).unwrap();
        assert_eq!(d.host, "sts.eu-west-1.amazonaws.com");
        assert!(d.url.starts_with("https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"));
        assert_eq!(d.param("Action"), Some("GetCallerIdentity"));
        assert_eq!(d.param("Version"), Some("2011-06-15"));
        assert_eq!(d.param("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(d.param("X-Amz-Expires"), Some("60"));
        assert_eq!(d.param("X-Amz-SignedHeaders"), Some("host;x-k8s-aws-id"));
        assert_eq!(d.param("X-Amz-Date"), Some("20260101T000000Z"));
        assert_eq!(d.param("X-Amz-Credential"), Some("AKIDEXAMPLE/20260101/eu-west-1/sts/aws4_request"));
        assert_eq!(d.param("X-Amz-Signature").map(str::len), Some(64));
        assert_eq!(d.param("X-Amz-Security-Token"), None);
        // The secret never travels.
        assert!(!d.url.contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn token_is_stable_for_fixed_inputs_and_bound_to_the_cluster() {
        let a = presign(&creds(None), "eu-west-1", Partition::Aws, "demo", at()).unwrap();
        let b = presign(&creds(None), "eu-west-1", Partition::Aws, "demo", at()).unwrap();
        assert_eq!(a, b);
        let other = presign(&creds(None), "eu-west-1", Partition::Aws, "other", at()).unwrap();
        assert_ne!(decode(&a).unwrap().param("X-Amz-Signature"), decode(&other).unwrap().param("X-Amz-Signature"));
        let later = presign(&creds(None), "eu-west-1", Partition::Aws, "demo", at() + Duration::from_secs(1)).unwrap();
        assert_ne!(a, later);
    }

    #[test]
    fn known_signature_for_fixed_inputs() {
        // The canonical request the specification prescribes for these inputs, signed by an
        // independent implementation: a change in the payload hash, the signed headers or the
        // query encoding makes the signatures differ.
        let t = presign(&creds(None), "us-east-1", Partition::Aws, "demo", at()).unwrap();
        let d = decode(&t).unwrap();
        let canonical = [
            "GET",
            "/",
            "Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date=20260101T000000Z\
             &X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "host:sts.us-east-1.amazonaws.com\nx-k8s-aws-id:demo\n",
            "host;x-k8s-aws-id",
            // SHA-256 of the empty string.
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ]
        .join("\n");
        assert_eq!(d.param("X-Amz-Signature"), Some(reference_signature(&canonical).as_str()));
    }

    /// SigV4 computed independently of aws-sigv4 (sha2 + a hand-written HMAC), so the pinned
    /// test checks the crate's output against the specification, not against itself.
    fn reference_signature(canonical: &str) -> String {
        use sha2::{Digest, Sha256};
        fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let mut k = [0u8; 64];
            if key.len() > 64 {
                k[..32].copy_from_slice(&Sha256::digest(key));
            } else {
                k[..key.len()].copy_from_slice(key);
            }
            let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
            let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
            let inner = Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
            Sha256::new().chain_update(&opad).chain_update(inner).finalize().to_vec()
        }
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n20260101T000000Z\n20260101/us-east-1/sts/aws4_request\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20260101");
        for part in ["us-east-1", "sts", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        hex(&hmac(&key, to_sign.as_bytes()))
    }

    #[test]
    fn session_token_is_in_the_url_and_china_uses_its_suffix() {
        let t = presign(&creds(Some("FwoGZXIvYXdzE+/=")), "cn-north-1", Partition::AwsCn, "demo", at()).unwrap();
        let d = decode(&t).unwrap();
        assert_eq!(d.host, "sts.cn-north-1.amazonaws.com.cn");
        assert_eq!(d.param("X-Amz-Security-Token"), Some("FwoGZXIvYXdzE+/="));
        assert!(d.url.contains("X-Amz-Security-Token=FwoGZXIvYXdzE%2B%2F%3D"));
        assert_eq!(d.param("X-Amz-SignedHeaders"), Some("host;x-k8s-aws-id"));
    }

    #[test]
    fn decode_rejects_other_tokens() {
        assert!(decode("Bearer abc").is_err());
        assert!(decode("k8s-aws-v1.!!!").is_err());
    }
}
