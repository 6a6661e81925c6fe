//! The AWS side of the context: one `SdkConfig` from the standard credential chain, built once,
//! and every service client made from it, so all calls share region, credentials, endpoint
//! override and retry settings.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::context::Hooks;
use crate::error::{Error, ErrorKind, Result, REGION_HINT};

/// How many times the SDK tries a call that fails with throttling, a 5xx or a dropped
/// connection before the run gives up on it (the first attempt included).
pub const MAX_ATTEMPTS: u32 = 6;

/// How to reach AWS: the global options of the contract that shape the SDK configuration.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// `--region`; otherwise the standard chain (env, profile, IMDS).
    pub region: Option<String>,
    /// `--profile`; otherwise `AWS_PROFILE` or the default profile.
    pub profile: Option<String>,
    /// `--endpoint-url`; otherwise `AWS_ENDPOINT_URL(_<SERVICE>)` as the SDK reads them.
    pub endpoint_url: Option<String>,
}

/// Every AWS client karpctl uses, built from one `SdkConfig`.
#[derive(Clone, Debug)]
pub struct Aws {
    /// The shared configuration.
    pub config: SdkConfig,
    /// STS, for the caller's account and partition.
    pub sts: aws_sdk_sts::Client,
    /// EKS: the cluster, access entries, Pod Identity, add-ons.
    pub eks: aws_sdk_eks::Client,
    /// IAM: roles, policies, instance profiles, OIDC providers.
    pub iam: aws_sdk_iam::Client,
    /// EC2: discovery tags, orphan sweep.
    pub ec2: aws_sdk_ec2::Client,
    /// SQS: the interruption queue.
    pub sqs: aws_sdk_sqs::Client,
    /// EventBridge: the interruption rules.
    pub events: aws_sdk_eventbridge::Client,
    /// Auto Scaling: the self-managed node groups `migrate` moves from.
    pub autoscaling: aws_sdk_autoscaling::Client,
}

/// Whether an operation name denotes a call that changes nothing (by AWS's naming convention).
pub fn is_read_only(operation: &str) -> bool {
    ["Get", "List", "Describe", "Head"].iter().any(|p| operation.starts_with(p))
}

/// Logs every AWS call at debug level (`-vv` or `RUST_LOG=karpctl=debug`), marking the mutating
/// ones: the first thing to look at when a run does something unexpected.
#[derive(Debug)]
struct CallLogger;

impl Intercept for CallLogger {
    fn name(&self) -> &'static str {
        "karpctl-call-logger"
    }

    // Not read_before_execution: client-level interceptors run that before the operation's
    // config (and so its Metadata) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(m) = cfg.load::<Metadata>() {
            let kind = if is_read_only(m.name()) { "read" } else { "write" };
            tracing::debug!(service = m.service(), operation = m.name(), kind, "aws call");
        }
        Ok(())
    }
}

macro_rules! client {
    ($krate:ident, $config:expr, $interceptors:expr, $run:expr) => {{
        let mut b = $krate::config::Builder::from($config);
        for i in $interceptors {
            b.push_interceptor(i.clone());
        }
        b.set_retry_partition(Some(retry_partition(stringify!($krate), $run)));
        $krate::Client::from_conf(b.build())
    }};
}

/// Runs started in this process, to give each its own retry quota.
static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The SDK's retry quota (a token bucket each retry takes from) is kept per partition for the
/// whole process, and by default a partition is a service: runs of the library side by side
/// in one process (the tests do it) would spend each other's retries, and one run's faults
/// leave another's first transient error unretried. Each run gets buckets of its own.
fn retry_partition(service: &str, run: u64) -> aws_smithy_runtime::client::retries::RetryPartition {
    aws_smithy_runtime::client::retries::RetryPartition::new(format!("karpctl-{run}-{service}"))
}

impl Aws {
    /// Load the configuration the way the AWS CLI does, apply the overrides, and build the
    /// clients. The hooks' interceptors are added to every client and their HTTP client, if
    /// any, replaces the default one (tests use them to pick an emulator account, record
    /// requests and inject latency and faults).
    pub async fn connect(opts: &AwsOptions, hooks: &Hooks) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            // Throttling, 5xx and dropped connections are retried by the SDK with jittered
            // exponential backoff. Standard mode, not adaptive: adaptive's client-side rate
            // limiter measures the send rate of a long-lived client, and a run lasting a second
            // has none to measure, so its first throttle cuts the run to a trickle (measured
            // with the binary, 20% injected faults, 50 ms latency: init took 5-43 s adaptive,
            // 1-2 s standard; see docs/performance.md).
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            // Every call has a bound, so no run can hang on a dead connection.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .operation_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(u) = &opts.endpoint_url {
            loader = loader.endpoint_url(u);
        }
        // Set only by tests and the benchmark (see `Hooks::http_client`): the SDK's own HTTPS
        // client wrapped in a layer that adds latency and faults.
        if let Some(c) = &hooks.http_client {
            loader = loader.http_client(c.clone());
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(Error::new(ErrorKind::Credentials, "no AWS region is configured").with_hint(REGION_HINT));
        }
        let mut all: Vec<SharedInterceptor> = vec![SharedInterceptor::new(CallLogger)];
        all.extend(hooks.interceptors.iter().cloned());
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Aws {
            sts: client!(aws_sdk_sts, &config, &all, run),
            eks: client!(aws_sdk_eks, &config, &all, run),
            iam: client!(aws_sdk_iam, &config, &all, run),
            ec2: client!(aws_sdk_ec2, &config, &all, run),
            sqs: client!(aws_sdk_sqs, &config, &all, run),
            events: client!(aws_sdk_eventbridge, &config, &all, run),
            autoscaling: client!(aws_sdk_autoscaling, &config, &all, run),
            config,
        })
    }

    /// The region in use.
    pub fn region(&self) -> String {
        self.config.region().map(|r| r.to_string()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_operations_by_name() {
        assert!(is_read_only("GetRole"));
        assert!(is_read_only("ListAttachedRolePolicies"));
        assert!(is_read_only("DescribeCluster"));
        assert!(!is_read_only("CreateRole"));
        assert!(!is_read_only("TagResource"));
        assert!(!is_read_only("PutRule"));
    }
}
