//! The command line, as clap definitions only: what users and scripts may type. Turning these
//! raw values into checked settings happens in `settings`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::desired::AuthMode;

/// karpctl: set up Karpenter on an existing EKS cluster, check it, and remove it.
#[derive(Debug, Parser)]
#[command(name = "karpctl", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Result format on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One stable JSON document.
    Json,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On terminals, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The contract's global options.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The EKS cluster.
    #[arg(short = 'c', long, env = "KARPCTL_CLUSTER", global = true)]
    pub cluster: Option<String>,
    /// AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, or the profile's region).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// AWS shared-config profile (default: AWS_PROFILE).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Send every AWS call to this URL, e.g. a local emulator (default: AWS_ENDPOINT_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Result format on stdout.
    #[arg(short = 'o', long, env = "KARPCTL_OUTPUT", value_enum, default_value = "text", global = true)]
    pub output: OutputFormat,
    /// Do not ask for confirmation (required for changes when stdin is not a terminal).
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// Less on stderr (repeatable).
    #[arg(short = 'q', long, action = ArgAction::Count, global = true)]
    pub quiet: u8,
    /// More on stderr (repeatable; RUST_LOG also works).
    #[arg(short = 'v', long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Colour: on terminals only by default; NO_COLOR turns it off.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    pub color: ColorChoice,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make the cluster's Karpenter install match the desired state.
    Init(InitArgs),
    /// Check every piece of the install and explain each failure; changes nothing.
    Doctor(DoctorArgs),
    /// Remove what karpctl made, in order, and what Karpenter left behind for the cluster.
    Teardown(TeardownArgs),
    /// Print the documents karpctl would write, without changing anything.
    Render(RenderArgs),
    /// Convert old Karpenter YAML (v1alpha5 Provisioner, v1alpha1 AWSNodeTemplate, v1beta1) to v1.
    Convert(ConvertArgs),
    /// List the Karpenter versions karpctl knows (LTS lines, Kubernetes range, what each needs).
    Versions,
    /// Move an install to another supported Karpenter version, in the order the upgrade rules require.
    Upgrade(UpgradeArgs),
    /// Move from Cluster Autoscaler and node groups to Karpenter, step by step; `--rollback` undoes it.
    Migrate(MigrateArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What the install consists of; shared by `init` and `render` so both describe the same thing.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// Karpenter version X.Y.Z: any patch of a minor in `karpctl versions` (default: the newest there).
    #[arg(long, value_name = "X.Y.Z")]
    pub karpenter_version: Option<String>,
    /// Accept a version outside karpctl's table, using the newest known minor's documents (warns).
    #[arg(long)]
    pub allow_unknown_version: bool,
    /// Namespace of the controller.
    #[arg(long, default_value = "kube-system")]
    pub namespace: String,
    /// How the controller gets its AWS identity.
    #[arg(long, value_enum, default_value = "pod-identity")]
    pub auth: AuthMode,
    /// Leave out the interruption queue and its rules.
    #[arg(long, overrides_with = "interruption")]
    pub no_interruption: bool,
    /// Include the interruption queue and its rules (the default).
    #[arg(long, overrides_with = "no_interruption")]
    pub interruption: bool,
    /// Leave out the default NodePool and EC2NodeClass.
    #[arg(long, overrides_with = "default_nodepool")]
    pub no_default_nodepool: bool,
    /// Include the default NodePool and EC2NodeClass (the default).
    #[arg(long, overrides_with = "no_default_nodepool")]
    pub default_nodepool: bool,
    /// Tag exactly these subnets for discovery (default: the cluster's private subnets).
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    pub subnets: Option<Vec<String>>,
}

/// How to reach the cluster itself; shared by init, doctor and teardown.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Talk to the cluster through this kubeconfig (default: endpoint, CA and a token from the
    /// AWS credentials, so no kubeconfig is needed).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The helm binary (3.8 or newer; default: helm on PATH).
    #[arg(long, env = "KARPCTL_HELM", value_name = "PATH")]
    pub helm: Option<PathBuf>,
}

/// `karpctl init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The install's shape.
    #[command(flatten)]
    pub install: InstallArgs,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Take over resources with karpctl's names that karpctl did not create (tags them).
    #[arg(long)]
    pub adopt: bool,
    /// Never install the eks-pod-identity-agent add-on (pod-identity mode then needs it present).
    #[arg(long)]
    pub no_pod_identity_agent: bool,
    /// Observe and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: exit 3 when there are changes to make.
    #[arg(long, requires = "dry_run")]
    pub detailed_exitcode: bool,
    /// After the AWS side, write the helm values, helm commands and manifests to DIR.
    #[arg(long, value_name = "DIR")]
    pub emit: Option<PathBuf>,
    /// Extra helm value KEY=VALUE (repeatable), layered over karpctl's.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Extra helm values file (repeatable), layered over karpctl's.
    #[arg(long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// How long to wait for the controller and the default EC2NodeClass to become Ready
    /// (e.g. 300s, 10m, 1500ms; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pub wait_timeout: std::time::Duration,
}

/// `300s`, `10m`, `1h`, `1500ms`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 300s, 10m or 1500ms"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(format!("{s:?} is not a duration like 300s, 10m or 1500ms")),
    };
    if ms == 0 {
        return Err("the wait timeout must be more than zero".into());
    }
    Ok(std::time::Duration::from_millis(ms))
}

/// `karpctl upgrade`: `init`'s walk with the version to move to, refusing forbidden paths.
#[derive(Debug, Clone, Args)]
pub struct UpgradeArgs {
    /// The version to move to (default: the newest in `karpctl versions`).
    #[arg(long, value_name = "X.Y.Z", conflicts_with = "karpenter_version")]
    pub to: Option<String>,
    /// Everything init takes (the install's shape must match the install's).
    #[command(flatten)]
    pub init: InitArgs,
}

/// Which side `doctor` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    /// Only AWS (for callers without access to the cluster API).
    Aws,
}

/// `karpctl doctor`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// The install's shape to check against (as given to init).
    #[command(flatten)]
    pub install: InstallArgs,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Check only one side.
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// Prove it end to end: run pods that need a new node and watch Karpenter launch one.
    #[arg(long, conflicts_with = "only")]
    pub smoke: bool,
    /// Pods the smoke test runs (1 CPU each).
    #[arg(long, default_value_t = 5, requires = "smoke")]
    pub replicas: u32,
    /// After the smoke test's clean-up, wait until consolidation removes its node.
    #[arg(long, requires = "smoke")]
    pub smoke_wait_scale_down: bool,
    /// How long the smoke test waits for a node and for its pods, in seconds.
    #[arg(long, default_value_t = 600, requires = "smoke", value_name = "SECONDS")]
    pub smoke_timeout: u64,
}

/// `karpctl teardown`.
#[derive(Debug, Clone, Args)]
pub struct TeardownArgs {
    /// The install's shape (its namespace matters; the other options are ignored).
    #[command(flatten)]
    pub install: InstallArgs,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Delete every NodePool, not only karpctl's default one.
    #[arg(long)]
    pub all_nodepools: bool,
    /// Keep the karpenter-crd release (and so the CRDs and any objects of them).
    #[arg(long)]
    pub keep_crds: bool,
    /// List what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep karpctl's IAM roles, policies, instance profile and OIDC provider.
    #[arg(long)]
    pub keep_iam: bool,
    /// When Karpenter has not removed its NodeClaims and EC2NodeClasses within --wait-timeout:
    /// terminate its instances by tag, remove its finalizers, and go on.
    #[arg(long)]
    pub force: bool,
    /// How long to wait for Karpenter to drain and remove its NodeClaims and EC2NodeClasses
    /// (e.g. 15m, 90s; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub wait_timeout: std::time::Duration,
}

/// `karpctl render`.
#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The install's shape.
    #[command(flatten)]
    pub install: InstallArgs,
    /// Account id: with --region (and --issuer for IRSA), render offline without calling AWS.
    #[arg(long)]
    pub account: Option<String>,
    /// The cluster's OIDC issuer URL (offline rendering; IRSA).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// AWS partition (offline rendering; default: derived from the region).
    #[arg(long, value_parser = ["aws", "aws-cn", "aws-us-gov"])]
    pub partition: Option<String>,
    /// Write one file per document to DIR instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `karpctl convert`.
#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// Input: a YAML file, a directory of them, or - for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub file: PathBuf,
    /// Write the converted documents to DIR (one file per document) instead of stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Node role for converted EC2NodeClasses (replaces instanceProfile with role).
    #[arg(long, value_name = "NAME")]
    pub node_role: Option<String>,
    /// Treat warnings (fields with no v1 equivalent) as errors.
    #[arg(long)]
    pub strict: bool,
}

/// `karpctl migrate`: from Cluster Autoscaler and node groups to Karpenter (src/migrate/).
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The install's shape (the default NodePool is left out: the inferred ones replace it).
    #[command(flatten)]
    pub install: InstallArgs,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print the plan (resources and steps); change nothing.
    #[arg(long, conflicts_with = "rollback")]
    pub dry_run: bool,
    /// Restore Cluster Autoscaler and every node group as recorded, uncordon, remove the inferred NodePools.
    #[arg(long)]
    pub rollback: bool,
    /// Nodes the controller's node group keeps (the other groups go to 0).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub keep: u32,
    /// The node group that hosts the Karpenter controller and stays (default: the first
    /// untainted on-demand group by name).
    #[arg(long, value_name = "NAME")]
    pub controller_nodegroup: Option<String>,
    /// Widen each NodePool's instance types to their whole families (m5.large -> m5).
    #[arg(long)]
    pub widen: bool,
    /// Nodes drained at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub parallel: u32,
    /// How long one eviction may wait for a PodDisruptionBudget, and a drained node for its pods
    /// to go (e.g. 10m, 90s).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub drain_timeout: std::time::Duration,
    /// How long to wait for the controller and the inferred EC2NodeClasses to become Ready.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pub wait_timeout: std::time::Duration,
}
