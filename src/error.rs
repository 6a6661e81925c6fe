//! Errors as users see them: one line saying what failed, its cause, and a hint for the fix,
//! classified so that scripts get a stable `kind` and the right exit code.

use std::fmt;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::MAX_ATTEMPTS;

/// The class of a failure. Scripts match on it (`error.kind` in JSON output), and the AWS
/// classes are decided by the service's error code, never by message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Bad input found while validating flags, files or names (exit 1).
    InvalidInput,
    /// A required argument is missing where clap cannot tell (`--cluster`, which may also come
    /// from `KARPCTL_CLUSTER`): a usage error, exit 2 like clap's own.
    Usage,
    /// The thing asked for does not exist (an unknown cluster, say).
    NotFound,
    /// A create raced with something that already exists.
    AlreadyExists,
    /// The resource is busy with a change of its own (an EKS add-on being deleted, a rule being
    /// modified): the same call succeeds once that change is over.
    InProgress,
    /// The caller lacks an IAM permission.
    AccessDenied,
    /// No usable AWS credentials or region.
    Credentials,
    /// The service kept throttling after the SDK's retries.
    Throttled,
    /// A resource with karpctl's name exists but karpctl did not create it.
    Foreign,
    /// The cluster is in a state karpctl cannot work with (not ACTIVE, Auto Mode).
    ClusterState,
    /// The user declined, or no terminal was there to ask and `--yes` was not given.
    Refused,
    /// Any other AWS failure (5xx after retries, a validation error from the service, ...).
    Aws,
    /// A network failure reaching AWS.
    Network,
    /// A wait ran out of time.
    Timeout,
    /// Reading or writing a local file failed.
    Io,
    /// A document could not be rendered or parsed; a defect in karpctl or its input.
    Render,
}

/// A failure with everything needed to print it usefully.
#[derive(Debug, Clone)]
pub struct Error {
    /// What class of failure this is.
    pub kind: ErrorKind,
    /// What karpctl was doing ("failed to read IAM role KarpenterNodeRole-demo").
    pub message: String,
    /// The underlying cause, as the service or the OS said it.
    pub cause: Option<String>,
    /// What the user can do about it.
    pub hint: Option<String>,
    /// The AWS error code, when the failure came from an AWS service.
    pub code: Option<String>,
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of a kind with a message; add cause and hint with the builders.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), cause: None, hint: None, code: None }
    }

    /// Invalid input, which always comes with a hint saying what is accepted.
    pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message).with_hint(hint)
    }

    /// A defect in karpctl itself (a set built wrong, a manifest it made malformed): nothing the
    /// user did or can fix, so the hint asks for a report.
    pub fn defect(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Render, message).with_hint("this is a bug in karpctl; please report it")
    }

    /// Attach the underlying cause.
    pub fn with_cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// Attach a hint for the fix.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Add "then run `command` again" to the hint: after a failure midway, a re-run completes
    /// the job, and the user should know that whatever the cause was.
    pub fn resumable(self, command: &str) -> Self {
        let again = format!("run {command} again: it continues where it stopped");
        let hint = match &self.hint {
            Some(h) => format!("{h}; then {again}"),
            None => format!("fix the cause and {again}"),
        };
        Error { hint: Some(hint), ..self }
    }

    /// The process exit code for this error (the contract: 2 for a usage error, 1 for anything
    /// else that could not be done).
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Usage => 2,
            _ => 1,
        }
    }

    /// A local I/O failure on `path`.
    pub fn io(what: impl Into<String>, path: &std::path::Path, e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, format!("{} {}", what.into(), path.display())).with_cause(e.to_string())
    }

    /// Map an AWS SDK error to a classified error. `doing` says what failed, `action` is the IAM
    /// action the call needs, used for the access-denied hint.
    pub fn aws<E, R>(doing: impl Into<String>, action: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + 'static,
    {
        let doing = doing.into();
        match &err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                let code = e.code().unwrap_or("Unknown").to_string();
                let msg = e.message().unwrap_or("").to_string();
                let cause = if msg.is_empty() { code.clone() } else { format!("{code}: {msg}") };
                let kind = classify(&code, &msg);
                // A 5xx has outlived the SDK's retries too (it retries them like throttling);
                // the raw response is only reachable as `Any`, since `R` is generic.
                let server_side = (se.raw() as &dyn std::any::Any)
                    .downcast_ref::<HttpResponse>()
                    .is_some_and(|r| r.status().is_server_error());
                let hint = match kind {
                    ErrorKind::AccessDenied => Some(format!(
                        "the caller needs the IAM permission {action}; check its policies and any SCP or permission boundary"
                    )),
                    ErrorKind::Credentials => Some(CREDENTIALS_HINT.to_string()),
                    ErrorKind::Throttled => Some(format!(
                        "AWS kept throttling {action} through {MAX_ATTEMPTS} attempts; wait a minute and run again"
                    )),
                    _ if server_side => Some(format!(
                        "AWS kept failing {action} with a server error through {MAX_ATTEMPTS} attempts; wait a few minutes and run again"
                    )),
                    _ => None,
                };
                Error { kind, message: doing, cause: Some(cause), hint, code: Some(code) }
            }
            SdkError::ConstructionFailure(_) => {
                let cause = source_chain(&err);
                let (kind, hint) = if cause.contains("credentials") || cause.contains("Credentials") {
                    (ErrorKind::Credentials, CREDENTIALS_HINT.to_string())
                } else if cause.contains("region") || cause.contains("Region") {
                    (ErrorKind::Credentials, REGION_HINT.to_string())
                } else {
                    return Error::new(ErrorKind::Aws, doing).with_cause(cause);
                };
                Error::new(kind, doing).with_cause(cause).with_hint(hint)
            }
            SdkError::TimeoutError(_) => Error::new(ErrorKind::Timeout, doing)
                .with_cause(source_chain(&err))
                .with_hint("check network access to the AWS endpoint"),
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
                let cause = source_chain(&err);
                let (kind, hint) = if cause.contains("credentials") || cause.contains("Credentials") {
                    (ErrorKind::Credentials, CREDENTIALS_HINT)
                } else {
                    (ErrorKind::Network, "check network access to the AWS endpoint (and --endpoint-url, proxies)")
                };
                Error::new(kind, doing).with_cause(cause).with_hint(hint)
            }
            _ => Error::new(ErrorKind::Aws, doing).with_cause(source_chain(&err)),
        }
    }
}

/// The class of an AWS error from its code, and for the one code EKS uses for two things,
/// `ResourceInUseException`, from its message: "already exists" / "already in use" is a create
/// that lost a race, anything else ("cannot be created as it is currently in DELETING state",
/// "in progress") a resource busy with a change of its own.
pub fn classify(code: &str, message: &str) -> ErrorKind {
    if code == "ResourceInUseException" {
        let m = message.to_ascii_lowercase();
        return if m.contains("already exists") || m.contains("already in use") {
            ErrorKind::AlreadyExists
        } else {
            ErrorKind::InProgress
        };
    }
    classify_code(code)
}

/// The fix for missing credentials, shared by every place that can discover it.
pub const CREDENTIALS_HINT: &str =
    "configure AWS credentials: set AWS_PROFILE or --profile (run `aws sso login` for SSO), or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY";
/// The fix for a missing region.
pub const REGION_HINT: &str = "set --region, AWS_REGION, or a region in your AWS profile";

/// Classify an AWS error code. Codes differ between services (IAM's `NoSuchEntity`, EKS's
/// `ResourceNotFoundException`, SQS's `QueueDoesNotExist`), so they are listed per class here
/// rather than matched at each call site.
pub fn classify_code(code: &str) -> ErrorKind {
    match code {
        "NoSuchEntity"
        | "ResourceNotFoundException"
        | "NotFoundException"
        | "QueueDoesNotExist"
        | "AWS.SimpleQueueService.NonExistentQueue"
        | "InvalidSubnetID.NotFound"
        | "InvalidGroup.NotFound"
        | "InvalidInstanceID.NotFound"
        | "InvalidLaunchTemplateId.NotFound"
        | "InvalidLaunchTemplateName.NotFoundException" => ErrorKind::NotFound,
        "EntityAlreadyExists"
        | "ResourceInUseException"
        | "ResourceAlreadyExistsException"
        | "QueueAlreadyExists"
        | "QueueNameExists"
        // Auto Scaling's own spelling.
        | "AlreadyExists" => ErrorKind::AlreadyExists,
        // Auto Scaling: another change to the group is still going on; a later run succeeds.
        "ResourceContention" | "ScalingActivityInProgress" => ErrorKind::InProgress,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "UnauthorizedException"
        | "AuthorizationError"
        | "Forbidden" => ErrorKind::AccessDenied,
        "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken"
        | "AuthFailure" => ErrorKind::Credentials,
        "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "SlowDown"
        | "PriorRequestNotComplete" => ErrorKind::Throttled,
        _ => ErrorKind::Aws,
    }
}

/// The error's chain of sources on one line: the SDK nests the useful part several levels deep.
pub(crate) fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(c) = &self.cause {
            write!(f, ": {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The one-line context of an AWS call's error: what failed and the IAM action the call needs
/// (for the access-denied hint), with the cause classified by [`Error::aws`], so a call's error
/// mapping is `.or_aws("failed to read IAM role R", "iam:GetRole")`.
pub trait AwsContext<T> {
    /// The error as karpctl's, saying `doing` failed.
    fn or_aws(self, doing: impl Into<String>, action: &str) -> Result<T>;
}

impl<T, E, R> AwsContext<T> for std::result::Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + 'static,
{
    fn or_aws(self, doing: impl Into<String>, action: &str) -> Result<T> {
        self.map_err(|e| Error::aws(doing, action, e))
    }
}

/// Lets callers ask "is this a not-found?" on a `Result` without unpacking it.
pub trait ResultExt<T> {
    /// `Ok(None)` when the error is a not-found, so an observation can say "absent".
    fn found(self) -> Result<Option<T>>;
}

impl<T> ResultExt<T> for Result<T> {
    fn found(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_by_service_code() {
        assert_eq!(classify_code("NoSuchEntity"), ErrorKind::NotFound);
        assert_eq!(classify_code("ResourceNotFoundException"), ErrorKind::NotFound);
        assert_eq!(classify_code("AWS.SimpleQueueService.NonExistentQueue"), ErrorKind::NotFound);
        assert_eq!(classify_code("EntityAlreadyExists"), ErrorKind::AlreadyExists);
        assert_eq!(classify_code("AccessDenied"), ErrorKind::AccessDenied);
        assert_eq!(classify_code("UnauthorizedOperation"), ErrorKind::AccessDenied);
        assert_eq!(classify_code("Throttling"), ErrorKind::Throttled);
        assert_eq!(classify_code("RequestLimitExceeded"), ErrorKind::Throttled);
        assert_eq!(classify_code("AlreadyExists"), ErrorKind::AlreadyExists, "Auto Scaling's spelling");
        assert_eq!(classify_code("ResourceContention"), ErrorKind::InProgress);
        assert_eq!(classify_code("InvalidClientTokenId"), ErrorKind::Credentials);
        assert_eq!(classify_code("ValidationError"), ErrorKind::Aws);
    }

    #[test]
    fn resource_in_use_is_classified_by_its_message() {
        let c = |m: &str| classify("ResourceInUseException", m);
        assert_eq!(c("Addon already exists."), ErrorKind::AlreadyExists);
        assert_eq!(
            c("The specified access entry resource is already in use on this cluster."),
            ErrorKind::AlreadyExists
        );
        assert_eq!(c("Association already exists: a-123"), ErrorKind::AlreadyExists);
        assert_eq!(
            c("Addon eks-pod-identity-agent cannot be created as it is currently in DELETING state"),
            ErrorKind::InProgress
        );
        assert_eq!(classify("EntityAlreadyExists", "x"), ErrorKind::AlreadyExists);
    }

    #[test]
    fn display_is_one_line_with_cause() {
        let e = Error::new(ErrorKind::NotFound, "failed to read X").with_cause("NoSuchEntity: gone");
        assert_eq!(e.to_string(), "failed to read X: NoSuchEntity: gone");
        assert!(!e.to_string().contains('\n'));
    }
}
