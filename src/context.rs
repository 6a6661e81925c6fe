//! What a run gets from its caller beyond the command line.

use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

/// Hooks a caller (the binary, or a test calling the library) passes to a run.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// Added to every AWS client: tests use them to select an emulator account and to record
    /// requests; the binary passes none.
    pub interceptors: Vec<SharedInterceptor>,
    /// Whether a person is there to answer a prompt (stdin and stderr are terminals).
    pub interactive: bool,
    /// The HTTP client every AWS client sends through, instead of the SDK's default HTTPS
    /// client. It exists for the resilience tests and the benchmark, which wrap the default
    /// client to add network latency and injected faults (throttling, 503s, dropped
    /// connections) below the SDK's retry layer, where real ones arrive; the binary passes none.
    pub http_client: Option<SharedHttpClient>,
}
