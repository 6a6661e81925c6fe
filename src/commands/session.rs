//! The one session every command opens: AWS, the discovered cluster, the desired state (with its
//! "name too long" warnings, said once, by every command), and the cluster API. The copies each
//! command had drifted apart; there is one now.

use crate::aws::Aws;
use crate::cluster::{self, ClusterInfo};
use crate::context::Hooks;
use crate::desired::{Desired, Target};
use crate::error::{ErrorKind, Result};
use crate::helm::{self, ExtraValues};
use crate::kube::{Access, Kube};
use crate::output;
use crate::render::Documents;
use crate::resources::early::Early;
use crate::resources::{ClusterApi, ClusterSide, Cx};
use crate::settings::{ClusterAccess, Common, InstallOptions};

/// AWS and the cluster a command works on.
#[derive(Debug)]
pub struct Session {
    /// The AWS clients.
    pub aws: Aws,
    /// The discovered cluster (or, for teardown, what is left of it).
    pub cluster: ClusterInfo,
    /// The first reads started beside discovery.
    early: Early,
}

/// What to do when the cluster does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfGone {
    /// Fail (init, doctor, render): there is nothing to work on.
    Fail,
    /// Go on with the AWS side only (teardown): karpctl's resources may outlive the cluster.
    AwsOnly,
}

impl Session {
    /// Connect to AWS and discover the cluster.
    ///
    /// With `install`, the first reads of what that install has start now, beside discovery
    /// ([`Early`]): a command that observes the install's resources passes it.
    pub async fn open(
        common: &Common,
        hooks: &Hooks,
        if_gone: IfGone,
        install: Option<&InstallOptions>,
    ) -> Result<Self> {
        let aws = Aws::connect(&common.aws, hooks).await?;
        let name = &common.cluster;
        let early = install.map(|opts| Early::start(&aws, name, opts)).unwrap_or_default();
        let cluster = match cluster::discover(&aws, name).await {
            Ok(info) => info,
            Err(e) if e.kind == ErrorKind::NotFound && if_gone == IfGone::AwsOnly => {
                output::warn(&format!(
                    "cluster {name} not found in {}: removing karpctl's AWS resources and Karpenter's leftovers only",
                    aws.region()
                ));
                ClusterInfo::gone(name, &aws.region(), cluster::caller(&aws).await?)
            }
            Err(e) => return Err(e),
        };
        Ok(Session { aws, cluster, early })
    }

    /// Reach the cluster: helm (required when `need_helm`), the API client, and a preflight of
    /// the permissions `access` lists, all before the first write.
    pub async fn connect(
        &self,
        how: &ClusterAccess,
        extra: ExtraValues,
        need_helm: bool,
        access: &[Access],
    ) -> Result<ClusterSide> {
        let helm = match helm::find_helm(how.helm.as_deref()) {
            Ok(path) => {
                helm::check_helm(&path).await?;
                Some(path)
            }
            Err(e) if need_helm => return Err(e),
            Err(e) => {
                output::warn(&format!("{}; helm releases are not checked", e.message));
                None
            }
        };
        let kube = Kube::connect(&self.cluster, &self.aws, how.kubeconfig.as_deref(), how.context.as_deref()).await?;
        kube.preflight(access).await?;
        Ok(ClusterSide::Api(Box::new(ClusterApi { kube, helm, extra })))
    }

    /// What every resource needs, for this desired state.
    pub fn cx(self, desired: Desired, cluster_side: ClusterSide) -> Result<Cx> {
        let docs = Documents::render(&desired)?;
        let (aws, cluster, early) = (self.aws, self.cluster, self.early);
        Ok(Cx {
            aws,
            desired,
            docs,
            cluster,
            cluster_side,
            progress: Default::default(),
            early,
            removal: Default::default(),
        })
    }
}

/// The desired state for `target`, warning once about every name karpctl had to shorten.
pub fn desired(target: Target) -> Result<Desired> {
    let desired = Desired::new(target)?;
    for (full, short) in desired.names.shortened() {
        output::warn(&format!("name {full} is too long; using {short}"));
    }
    Ok(desired)
}
