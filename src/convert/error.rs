//! Where in the input a document came from, and what can go wrong converting it.

use std::fmt;

/// Where in the input something was found, so an error or warning can be acted on
/// without guessing which of many documents it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The name the caller gave the input: a file path, or `-` / `stdin`.
    pub source: String,
    /// 1-based index of the YAML document in that source (empty documents count, as they
    /// do for `kubectl`).
    pub document: usize,
    /// 1-based index inside a `kind: List` document, when the object came from one.
    pub item: Option<usize>,
    /// 1-based line: where the parser failed for invalid YAML, otherwise the first line
    /// of the document.
    pub line: Option<usize>,
    /// `Kind/name` of the object, when known.
    pub object: Option<String>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.source, self.document)?;
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        let mut details = Vec::new();
        if let Some(line) = self.line {
            details.push(format!("line {line}"));
        }
        if let Some(object) = &self.object {
            details.push(object.clone());
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

/// Why a conversion failed. `Display` is a single line naming what failed and where;
/// [`ConvertError::hint`] says how to fix it. The CLI maps every variant to exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The input is not YAML.
    #[error("{position}: invalid YAML: {message}")]
    Yaml {
        /// Where the parser stopped.
        position: Box<Position>,
        /// The parser's message, without its own location suffix.
        message: String,
    },
    /// Valid YAML that has no JSON equivalent (a custom tag, a non-finite number).
    #[error("{position}: {what} cannot be represented in a Kubernetes manifest")]
    UnsupportedYaml {
        /// The document holding it.
        position: Box<Position>,
        /// What was found.
        what: String,
    },
    /// A `karpenter.sh` / `karpenter.k8s.aws` apiVersion this converter does not know.
    #[error("{position}: unknown apiVersion {api_version:?} for kind {kind:?}")]
    UnknownApiVersion {
        /// The document.
        position: Box<Position>,
        /// The apiVersion as written.
        api_version: String,
        /// The kind as written.
        kind: String,
    },
    /// A known Karpenter API version, but a kind that has no manifest to convert (for
    /// example a `Machine` or `NodeClaim`, which Karpenter creates itself).
    #[error("{position}: {api_version} {kind} cannot be converted")]
    UnsupportedKind {
        /// The document.
        position: Box<Position>,
        /// The apiVersion as written.
        api_version: String,
        /// The kind as written.
        kind: String,
    },
    /// A Provisioner with neither `spec.provider` nor `spec.providerRef`: there is nothing
    /// to build the EC2NodeClass from.
    #[error("{position}: Provisioner {name:?} has neither spec.provider nor spec.providerRef")]
    MissingProvider {
        /// The document.
        position: Box<Position>,
        /// The Provisioner's name.
        name: String,
    },
    /// A Provisioner with both `spec.provider` and `spec.providerRef` (the old API
    /// rejected this too).
    #[error("{position}: Provisioner {name:?} has both spec.provider and spec.providerRef")]
    AmbiguousProvider {
        /// The document.
        position: Box<Position>,
        /// The Provisioner's name.
        name: String,
    },
    /// A field that is missing, has the wrong type, or holds something v1 cannot express.
    #[error("{position}: {field}: {problem}")]
    InvalidField {
        /// The document.
        position: Box<Position>,
        /// Path of the field in the source document, e.g. `spec.amiSelector`.
        field: String,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// The EC2NodeClass would have neither `role` nor `instanceProfile`, which v1 rejects.
    #[error("{position}: EC2NodeClass {name:?} needs a node role: the source names no instance profile and --node-role was not given")]
    NoNodeRole {
        /// The document the EC2NodeClass comes from.
        position: Box<Position>,
        /// The EC2NodeClass name.
        name: String,
    },
    /// Two documents would produce the same NodePool or EC2NodeClass.
    #[error("{position}: {kind} {name:?} is produced twice (first by {first})")]
    Duplicate {
        /// The later document.
        position: Box<Position>,
        /// `NodePool` or `EC2NodeClass`.
        kind: String,
        /// The clashing name.
        name: String,
        /// The earlier document.
        first: Box<Position>,
    },
    /// `--strict` and at least one warning; this is the first one.
    #[error("{warning} (--strict makes warnings errors)")]
    StrictWarning {
        /// The warning text, as it would have been printed.
        warning: String,
    },
    /// The output could not be rendered as YAML.
    #[error("rendering YAML: {message}")]
    Render {
        /// The serializer's message.
        message: String,
    },
}

impl ConvertError {
    /// A stable identifier for the failure, for `error.kind` in `-o json` output, so
    /// scripts need not parse messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Yaml { .. } => "invalid-yaml",
            Self::UnsupportedYaml { .. } => "unsupported-yaml",
            Self::UnknownApiVersion { .. } => "unknown-api-version",
            Self::UnsupportedKind { .. } => "unsupported-kind",
            Self::MissingProvider { .. } => "missing-provider",
            Self::AmbiguousProvider { .. } => "ambiguous-provider",
            Self::InvalidField { .. } => "invalid-field",
            Self::NoNodeRole { .. } => "missing-node-role",
            Self::Duplicate { .. } => "duplicate-object",
            Self::StrictWarning { .. } => "strict-warning",
            Self::Render { .. } => "render",
        }
    }

    /// A one-line suggestion for the user, printed by the CLI under the error and carried
    /// as `error.hint` in `-o json` output.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Yaml { .. } => Some(
                "fix the YAML near that line; every document in the stream must parse".into(),
            ),
            Self::UnsupportedYaml { .. } => Some(
                "remove the YAML tag or value; Kubernetes manifests are plain JSON data".into(),
            ),
            Self::UnknownApiVersion { .. } => Some(
                "convert reads karpenter.sh/v1alpha5 Provisioner, karpenter.k8s.aws/v1alpha1 AWSNodeTemplate, karpenter.sh/v1beta1 NodePool and karpenter.k8s.aws/v1beta1 EC2NodeClass; v1 documents pass through unchanged".into(),
            ),
            Self::UnsupportedKind { .. } => Some(
                "convert reads Provisioner and NodePool (karpenter.sh), AWSNodeTemplate and EC2NodeClass (karpenter.k8s.aws); Machines and NodeClaims are created by Karpenter itself, remove them from the input".into(),
            ),
            Self::MissingProvider { .. } => Some(
                "add spec.providerRef.name naming the Provisioner's AWSNodeTemplate, or an inline spec.provider block".into(),
            ),
            Self::AmbiguousProvider { .. } => {
                Some("keep only one of spec.provider and spec.providerRef".into())
            }
            Self::InvalidField { hint, .. } => hint.clone(),
            Self::NoNodeRole { .. } => Some(
                "pass -c CLUSTER (for karpctl's KarpenterNodeRole-CLUSTER) or --node-role NAME; the old global defaultInstanceProfile setting no longer exists".into(),
            ),
            Self::Duplicate { .. } => Some(
                "rename one of the two objects; v1 NodePools and EC2NodeClasses are cluster-scoped and need unique names".into(),
            ),
            Self::StrictWarning { .. } => Some(
                "fix the source so the warning goes away, or run without --strict and review the warnings".into(),
            ),
            Self::Render { .. } => None,
        }
    }
}
