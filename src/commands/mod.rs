//! The subcommands: each a thin walk over the desired state and its resources.

pub mod convert;
pub mod doctor;
pub mod init;
pub mod migrate;
pub mod plan_view;
pub mod render;
pub mod session;
pub mod smoke;
pub mod teardown;
pub mod upgrade;
pub mod versions;

use crate::error::Result;
use crate::helm;

/// What must hold in the cluster before init writes anything there: no Karpenter controller
/// karpctl did not install, Karpenter's CRDs (if present) owned by the karpenter-crd release
/// (or `--adopt` hands them over), and room for the controller's replicas.
pub(crate) async fn cluster_preflight(cx: &crate::resources::Cx, adopt: bool) -> Result<()> {
    use crate::error::{Error, ErrorKind};
    use crate::kube::{karpenter, survey};
    use crate::resources::helm_release::CRDS;
    let Ok(api) = cx.api() else { return Ok(()) };
    let namespace = &cx.desired.target.namespace;
    let foreign = survey::foreign_controllers(&api.kube, namespace).await?;
    if !foreign.is_empty() {
        return Err(survey::foreign_controller_error(&foreign));
    }
    let unowned = karpenter::unowned_crds(&api.kube, CRDS, namespace).await?;
    if !unowned.is_empty() && !adopt {
        return Err(Error::new(
            ErrorKind::Foreign,
            format!(
                "Karpenter's CRDs {} exist but the {CRDS} release in {namespace} does not own them \
                 (installed by the karpenter chart's crds/ directory or with kubectl); helm would refuse to install over them",
                unowned.join(", ")
            ),
        )
        .with_hint(format!(
            "run again with --adopt to hand them to the {CRDS} release (helm's app.kubernetes.io/managed-by label and \
             meta.helm.sh/release-name and release-namespace annotations); deleting them instead deletes every NodePool and EC2NodeClass"
        )));
    }
    let values = helm::effective_values(&cx.docs.helm_values_yaml, &api.extra)?;
    let replicas = values["replicas"].as_i64().unwrap_or(2);
    let eligible = survey::eligible_nodes(&api.kube).await?;
    if (eligible.len() as i64) < replicas && !fargate_selects(cx, namespace).await? {
        return Err(survey::placement_error(replicas, &eligible, namespace));
    }
    Ok(())
}

/// Whether a Fargate profile of the cluster selects `namespace` (with no label selector the
/// controller's pods would not carry). Every page of the list, then every profile at once.
async fn fargate_selects(cx: &crate::resources::Cx, namespace: &str) -> Result<bool> {
    const WHAT: &str = "failed to read the cluster's Fargate profiles";
    let eks = &cx.aws.eks;
    let names: Vec<String> = eks
        .list_fargate_profiles()
        .cluster_name(&cx.cluster.name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| crate::error::Error::aws(WHAT, "eks:ListFargateProfiles", e))?;
    let described = names.iter().map(|name| async move {
        eks.describe_fargate_profile()
            .cluster_name(&cx.cluster.name)
            .fargate_profile_name(name)
            .send()
            .await
            .map_err(|e| crate::error::Error::aws(WHAT, "eks:DescribeFargateProfile", e))
    });
    let profiles = futures::future::try_join_all(described).await?;
    Ok(profiles.iter().filter_map(|out| out.fargate_profile()).any(|p| {
        p.selectors().iter().any(|s| {
            s.namespace() == Some(namespace)
                && s.labels().is_none_or(|l| l.iter().all(|(k, v)| k == "app.kubernetes.io/name" && v == "karpenter"))
        })
    }))
}
