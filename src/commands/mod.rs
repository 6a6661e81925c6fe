//! The subcommands: each a thin walk over the desired state and its resources.

pub mod convert;
pub mod doctor;
pub mod init;
pub mod render;
pub mod smoke;
pub mod teardown;
pub mod upgrade;
pub mod versions;

use crate::aws::Aws;
use crate::cli::ClusterArgs;
use crate::cluster::ClusterInfo;
use crate::error::Result;
use crate::helm::{self, ExtraValues};
use crate::kube::{Access, Kube};
use crate::resources::{ClusterApi, ClusterSide};

/// Reach the cluster: helm (required when `need_helm`), the API client, and a preflight of the
/// permissions `access` lists, all before the first write.
pub(crate) async fn connect_cluster(
    args: &ClusterArgs,
    info: &ClusterInfo,
    aws: &Aws,
    extra: ExtraValues,
    need_helm: bool,
    access: &[Access],
) -> Result<ClusterSide> {
    let helm = match helm::find_helm(args.helm.as_deref()) {
        Ok(path) => {
            helm::check_helm(&path).await?;
            Some(path)
        }
        Err(e) if need_helm => return Err(e),
        Err(e) => {
            crate::output::warn(&format!("{}; helm releases are not checked", e.message));
            None
        }
    };
    let kube = Kube::connect(info, aws, args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    kube.preflight(access).await?;
    Ok(ClusterSide::Api(Box::new(ClusterApi { kube, helm, extra })))
}
