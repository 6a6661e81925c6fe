//! Each command's flags resolved into the settings its walk takes (the way ripgrep turns its
//! low-level flags into high-level settings): everything a user typed is checked here, in the
//! order the checks have always run, before the first AWS call; the walks never see clap.

use std::path::PathBuf;
use std::time::Duration;

use crate::aws::AwsOptions;
use crate::cli::{ClusterArgs, DoctorArgs, GlobalArgs, InitArgs, MigrateArgs, Only, RenderArgs, TeardownArgs};
use crate::desired::Partition;
use crate::error::{Error, Result};
use crate::helm::ExtraValues;

use super::InstallOptions;

/// What every command that reaches AWS for a cluster needs.
#[derive(Debug, Clone)]
pub struct Common {
    /// The cluster's name, validated.
    pub cluster: String,
    /// How to reach AWS.
    pub aws: AwsOptions,
    /// `--yes`: no confirmation asked.
    pub yes: bool,
}

impl Common {
    /// The cluster name first, then the AWS flags (the order the errors have always come in).
    fn resolve(g: &GlobalArgs, install: &crate::cli::InstallArgs) -> Result<(Self, InstallOptions)> {
        let cluster = super::require_cluster(g)?;
        let opts = InstallOptions::from_args(install)?;
        Ok((Common { cluster, aws: super::aws_options(g)?, yes: g.yes }, opts))
    }
}

/// How to reach the cluster itself (`--kubeconfig`, `--context`, `--helm`).
#[derive(Debug, Clone, Default)]
pub struct ClusterAccess {
    /// The kubeconfig to use instead of the endpoint, CA and a token from AWS.
    pub kubeconfig: Option<PathBuf>,
    /// Its context.
    pub context: Option<String>,
    /// The helm binary (None: helm on PATH).
    pub helm: Option<PathBuf>,
}

impl From<&ClusterArgs> for ClusterAccess {
    fn from(a: &ClusterArgs) -> Self {
        ClusterAccess { kubeconfig: a.kubeconfig.clone(), context: a.context.clone(), helm: a.helm.clone() }
    }
}

/// `init` and `upgrade`.
#[derive(Debug, Clone)]
pub struct InitSettings {
    /// Cluster and AWS.
    pub common: Common,
    /// The install's shape.
    pub install: InstallOptions,
    /// The user's extra helm values.
    pub extra: ExtraValues,
    /// `--emit DIR`: the AWS side only, the cluster side written there.
    pub emit: Option<PathBuf>,
    /// How to reach the cluster.
    pub access: ClusterAccess,
    /// `--adopt`.
    pub adopt: bool,
    /// `--no-pod-identity-agent`.
    pub no_pod_identity_agent: bool,
    /// `--dry-run`: the planner stops before apply.
    pub dry_run: bool,
    /// `--detailed-exitcode`.
    pub detailed_exitcode: bool,
    /// How long to wait for Karpenter to be ready.
    pub wait_timeout: Duration,
}

impl InitSettings {
    /// Resolve `init`'s flags (`upgrade` passes its own, with `--to` as the version).
    pub fn resolve(g: &GlobalArgs, a: &InitArgs) -> Result<Self> {
        let (common, install) = Common::resolve(g, &a.install)?;
        let extra = ExtraValues::new(&a.values, &a.set)?;
        if let Some(dir) = &a.emit {
            if dir.exists() && !dir.is_dir() {
                return Err(Error::invalid(format!("--emit {} is not a directory", dir.display()), "pass a directory"));
            }
        }
        Ok(InitSettings {
            common,
            install,
            extra,
            emit: a.emit.clone(),
            access: (&a.cluster).into(),
            adopt: a.adopt,
            no_pod_identity_agent: a.no_pod_identity_agent,
            dry_run: a.dry_run,
            detailed_exitcode: a.detailed_exitcode,
            wait_timeout: a.wait_timeout,
        })
    }
}

/// What a `migrate` run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateMode {
    /// `--dry-run`: the plan, nothing written.
    Plan,
    /// The install, then the steps.
    Apply,
    /// `--rollback`: what the records say, restored.
    Rollback,
}

/// `migrate`.
#[derive(Debug, Clone)]
pub struct MigrateSettings {
    /// Cluster and AWS.
    pub common: Common,
    /// How to reach the cluster.
    pub access: ClusterAccess,
    /// The Karpenter install, as init's walk takes it: planned only (`dry_run`), no default
    /// NodePool (the inferred ones replace it). The command adds the values file that pins the
    /// controller once discovery has chosen its group, and sets `dry_run` off to apply.
    pub install: InitSettings,
    /// Plan, apply or roll back.
    pub mode: MigrateMode,
    /// `--keep`, `--controller-nodegroup`, `--widen`.
    pub plan: crate::migrate::plan::Options,
    /// `--parallel`: nodes drained at once.
    pub parallel: usize,
    /// `--drain-timeout`: one eviction's and one node's bound.
    pub drain_timeout: Duration,
    /// `--wait-timeout`: the controller's and the inferred pools' wait for Ready.
    pub wait_timeout: Duration,
}

impl MigrateSettings {
    /// Resolve `migrate`'s flags: the install's as init resolves them, then migrate's own.
    pub fn resolve(g: &GlobalArgs, a: &MigrateArgs) -> Result<Self> {
        let mut install_args = a.install.clone();
        install_args.no_default_nodepool = true;
        install_args.default_nodepool = false;
        let init = InitArgs {
            install: install_args,
            cluster: a.cluster.clone(),
            adopt: false,
            no_pod_identity_agent: false,
            dry_run: true,
            detailed_exitcode: false,
            emit: None,
            set: Vec::new(),
            values: Vec::new(),
            wait_timeout: a.wait_timeout,
        };
        let install = InitSettings::resolve(g, &init)?;
        if let Some(name) = &a.controller_nodegroup {
            if name.trim().is_empty() {
                return Err(Error::invalid(
                    "--controller-nodegroup is empty",
                    "name the node group that keeps the controller",
                ));
            }
        }
        let mode = match (a.dry_run, a.rollback) {
            (true, _) => MigrateMode::Plan,
            (false, true) => MigrateMode::Rollback,
            (false, false) => MigrateMode::Apply,
        };
        Ok(MigrateSettings {
            common: install.common.clone(),
            access: (&a.cluster).into(),
            install,
            mode,
            plan: crate::migrate::plan::Options {
                keep: a.keep,
                controller_group: a.controller_nodegroup.clone(),
                widen: a.widen,
            },
            parallel: a.parallel.max(1) as usize,
            drain_timeout: a.drain_timeout,
            wait_timeout: a.wait_timeout,
        })
    }
}

/// The smoke test's options (`doctor --smoke`).
#[derive(Debug, Clone)]
pub struct SmokeSettings {
    /// Pods to run.
    pub replicas: u32,
    /// How long to wait for a node and for the pods.
    pub timeout: Duration,
    /// Wait for consolidation to remove the node afterwards.
    pub wait_scale_down: bool,
}

/// `doctor`.
#[derive(Debug, Clone)]
pub struct DoctorSettings {
    /// Cluster and AWS.
    pub common: Common,
    /// The install's shape to check against.
    pub install: InstallOptions,
    /// How to reach the cluster.
    pub access: ClusterAccess,
    /// `--only aws`.
    pub only: Option<Only>,
    /// `--smoke`, with its options.
    pub smoke: Option<SmokeSettings>,
}

impl DoctorSettings {
    /// Resolve `doctor`'s flags.
    pub fn resolve(g: &GlobalArgs, a: &DoctorArgs) -> Result<Self> {
        let (common, install) = Common::resolve(g, &a.install)?;
        let smoke = a.smoke.then(|| SmokeSettings {
            replicas: a.replicas,
            timeout: Duration::from_secs(a.smoke_timeout),
            wait_scale_down: a.smoke_wait_scale_down,
        });
        Ok(DoctorSettings { common, install, access: (&a.cluster).into(), only: a.only, smoke })
    }
}

/// `teardown`.
#[derive(Debug, Clone)]
pub struct TeardownSettings {
    /// Cluster and AWS.
    pub common: Common,
    /// The install's shape (its namespace matters; interruption is always looked for).
    pub install: InstallOptions,
    /// How to reach the cluster.
    pub access: ClusterAccess,
    /// `--all-nodepools`.
    pub all_nodepools: bool,
    /// `--keep-crds`.
    pub keep_crds: bool,
    /// `--keep-iam`.
    pub keep_iam: bool,
    /// `--dry-run`: the planner stops before removing anything.
    pub dry_run: bool,
    /// `--force`.
    pub force: bool,
    /// How long to wait for Karpenter to drain.
    pub wait_timeout: Duration,
}

impl TeardownSettings {
    /// Resolve `teardown`'s flags.
    pub fn resolve(g: &GlobalArgs, a: &TeardownArgs) -> Result<Self> {
        let (common, mut install) = Common::resolve(g, &a.install)?;
        // Teardown removes whatever karpctl made, whichever options init had.
        install.interruption = true;
        Ok(TeardownSettings {
            common,
            install,
            access: (&a.cluster).into(),
            all_nodepools: a.all_nodepools,
            keep_crds: a.keep_crds,
            keep_iam: a.keep_iam,
            dry_run: a.dry_run,
            force: a.force,
            wait_timeout: a.wait_timeout,
        })
    }
}

/// Where `render` takes the cluster's facts from.
#[derive(Debug, Clone)]
pub enum RenderSource {
    /// `--account`/`--region`: offline, no AWS call.
    Offline {
        /// The account id.
        account: String,
        /// The region.
        region: String,
        /// The partition (given, or the region's).
        partition: Partition,
    },
    /// The discovered cluster.
    Cluster(AwsOptions),
}

/// `render`.
#[derive(Debug, Clone)]
pub struct RenderSettings {
    /// The cluster's name.
    pub cluster: String,
    /// The install's shape.
    pub install: InstallOptions,
    /// Offline facts or the cluster to discover.
    pub source: RenderSource,
    /// `--issuer`.
    pub issuer: Option<String>,
    /// `--dir`: one file per document.
    pub dir: Option<PathBuf>,
}

impl RenderSettings {
    /// Resolve `render`'s flags.
    pub fn resolve(g: &GlobalArgs, a: &RenderArgs) -> Result<Self> {
        let cluster = super::require_cluster(g)?;
        let install = InstallOptions::from_args(&a.install)?;
        let source = match &a.account {
            Some(account) => {
                let region = super::offline_region(g)?;
                let partition = match &a.partition {
                    Some(p) => Partition::parse(p)?,
                    None => Partition::from_region(&region),
                };
                RenderSource::Offline { account: account.clone(), region, partition }
            }
            None => RenderSource::Cluster(super::aws_options(g)?),
        };
        Ok(RenderSettings { cluster, install, source, issuer: a.issuer.clone(), dir: a.dir.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn migrate(args: &[&str]) -> Result<MigrateSettings> {
        let cli = Cli::try_parse_from([&["karpctl", "-c", "demo", "migrate"], args].concat()).expect("parses");
        let Command::Migrate(a) = &cli.command else { panic!("not migrate") };
        MigrateSettings::resolve(&cli.global, a)
    }

    #[test]
    fn migrate_resolves_its_mode_and_its_install_without_the_default_nodepool() {
        let plan = migrate(&["--dry-run", "--keep", "3", "--widen", "--default-nodepool"]).unwrap();
        assert_eq!(plan.mode, MigrateMode::Plan);
        assert!(plan.install.dry_run && !plan.install.install.default_nodepool, "the inferred pools replace it");
        assert_eq!((plan.plan.keep, plan.plan.widen, plan.common.cluster.as_str()), (3, true, "demo"));
        assert_eq!(migrate(&["--rollback"]).unwrap().mode, MigrateMode::Rollback);
        assert_eq!(migrate(&[]).unwrap().mode, MigrateMode::Apply);
        assert!(migrate(&["--controller-nodegroup", " "]).is_err());
        assert!(migrate(&["--karpenter-version", "nope"]).is_err(), "the install's flags are checked too");
    }
}
