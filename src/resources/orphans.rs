//! What Karpenter leaves behind when it is removed before it could clean up: instances,
//! launch templates and instance profiles it made for this cluster. Teardown finds them by
//! Karpenter's own tags (never by name); instances go first, and the node role waits for the
//! profiles that hold it. Another cluster's are never matched: every query includes this
//! cluster's tag (and, for instance profiles, Karpenter's path for this cluster and region).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, InstanceStateName};

use super::instance_profile::{delete_instance_profile, remove_roles};
use super::{ignore_gone, Cx, Dep, Hold, Kind, Observed, Resource, ResourceId};
use crate::desired::Desired;
use crate::error::{AwsContext, Error, ErrorKind, Result, ResultExt};
use crate::render::{Document, Documents};

/// How long teardown waits for terminated instances to be gone (they hold ENIs in the subnets).
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often it looks.
const TERMINATE_POLL: Duration = Duration::from_secs(5);

/// What kind of leftover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanKind {
    /// An EC2 instance tagged `karpenter.sh/nodepool` and `kubernetes.io/cluster/C=owned`.
    Instance,
    /// A launch template tagged `karpenter.k8s.aws/cluster=C`.
    LaunchTemplate,
    /// An instance profile tagged `kubernetes.io/cluster/C` and `karpenter.k8s.aws/ec2nodeclass`.
    InstanceProfile,
}

/// One leftover of Karpenter's.
#[derive(Debug, Clone)]
pub struct Orphan {
    kind: OrphanKind,
    /// Instance id, launch template id, or instance profile name.
    key: String,
    /// The roles an instance profile holds (taken out before it is deleted).
    roles: Vec<String>,
    /// For an instance, the launch templates and profiles found with it: it "depends on"
    /// them, so teardown terminates it before deleting them.
    after: Vec<ResourceId>,
}

impl Orphan {
    /// A leftover of `kind` identified by `key`.
    pub fn new(kind: OrphanKind, key: impl Into<String>) -> Self {
        Orphan { kind, key: key.into(), roles: Vec::new(), after: Vec::new() }
    }
}

/// Find this cluster's leftovers (every query concurrently, every page read).
pub async fn find(cx: &Cx) -> Result<Vec<Orphan>> {
    let cluster = &cx.desired.target.cluster;
    let ec2 = &cx.aws.ec2;
    let instances = ec2
        .describe_instances()
        .filters(Filter::builder().name("tag-key").values("karpenter.sh/nodepool").build())
        .filters(Filter::builder().name(format!("tag:kubernetes.io/cluster/{cluster}")).values("owned").build())
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(
                    ["pending", "running", "stopping", "stopped", "shutting-down"].map(String::from).to_vec(),
                ))
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .try_collect();
    let templates = ec2
        .describe_launch_templates()
        .filters(Filter::builder().name("tag:karpenter.k8s.aws/cluster").values(cluster).build())
        .into_paginator()
        .items()
        .send()
        .try_collect();
    let (instances, templates, profiles) = tokio::join!(instances, templates, karpenter_profiles(cx));
    let instances = instances.or_aws("failed to look for Karpenter's instances", "ec2:DescribeInstances")?;
    let templates =
        templates.or_aws("failed to look for Karpenter's launch templates", "ec2:DescribeLaunchTemplates")?;
    let templates = templates.iter().filter_map(|t| t.launch_template_id()).map(str::to_string).collect();
    let instances =
        instances.iter().flat_map(|r| r.instances()).filter_map(|i| i.instance_id()).map(str::to_string).collect();
    Ok(leftovers(instances, templates, profiles?))
}

/// The leftovers from what the searches found: instance ids, launch template ids, and instance
/// profiles with the roles they hold.
pub fn leftovers(instances: Vec<String>, templates: Vec<String>, profiles: Vec<(String, Vec<String>)>) -> Vec<Orphan> {
    let mut rest: Vec<Orphan> = templates.into_iter().map(|t| Orphan::new(OrphanKind::LaunchTemplate, t)).collect();
    for (name, roles) in profiles {
        rest.push(Orphan { roles, ..Orphan::new(OrphanKind::InstanceProfile, name) });
    }
    // Instances use the templates and profiles: they go first.
    let used: Vec<ResourceId> = rest.iter().map(Orphan::id_of).collect();
    let mut out: Vec<Orphan> =
        instances.into_iter().map(|i| Orphan { after: used.clone(), ..Orphan::new(OrphanKind::Instance, i) }).collect();
    out.extend(rest);
    out
}

/// The IAM path under which Karpenter creates this cluster's instance profiles:
/// `/karpenter/<region>/<cluster>/<EC2NodeClass uid>/` (Karpenter's instance profile provider;
/// it lists a cluster's own with this prefix too). The trailing slash keeps cluster `a` from
/// matching cluster `ab`.
pub fn profile_path(region: &str, cluster: &str) -> String {
    format!("/karpenter/{region}/{cluster}/")
}

/// Instance profiles Karpenter made for this cluster, with the roles they hold: listed on
/// Karpenter's path for the cluster, then each one's tags read (concurrently, bounded) to
/// confirm it carries Karpenter's tags for the cluster. IAM cannot filter by tag, and the
/// path alone is only a name.
async fn karpenter_profiles(cx: &Cx) -> Result<Vec<(String, Vec<String>)>> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let iam = &cx.aws.iam;
    let path = profile_path(&cx.cluster.region, &cx.desired.target.cluster);
    let listed = iam.list_instance_profiles().path_prefix(&path).into_paginator().items().send().try_collect().await;
    let listed = listed.or_aws("failed to list instance profiles", "iam:ListInstanceProfiles")?;
    let cluster_key = format!("kubernetes.io/cluster/{}", cx.desired.target.cluster);
    let found: Vec<Option<(String, Vec<String>)>> = stream::iter(listed)
        .map(|p| {
            let cluster_key = &cluster_key;
            async move {
                let name = p.instance_profile_name().to_string();
                let got = iam
                    .get_instance_profile()
                    .instance_profile_name(&name)
                    .send()
                    .await
                    .or_aws(format!("failed to read instance profile {name}"), "iam:GetInstanceProfile");
                let Some(got) = got.found()? else { return Ok(None) };
                let Some(profile) = got.instance_profile() else { return Ok(None) };
                let has = |k: &str| profile.tags().iter().any(|t| t.key() == k);
                let roles = profile.roles().iter().map(|r| r.role_name().to_string()).collect();
                Ok::<_, Error>((has(cluster_key) && has("karpenter.k8s.aws/ec2nodeclass")).then_some((name, roles)))
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

async fn terminate(cx: &Cx, id: &str) -> Result<()> {
    let ec2 = &cx.aws.ec2;
    let r = ec2.terminate_instances().instance_ids(id).send().await;
    ignore_gone(r.or_aws(format!("failed to terminate instance {id}"), "ec2:TerminateInstances"))?;
    let deadline = tokio::time::Instant::now() + TERMINATE_TIMEOUT;
    let mut step = crate::kube::FIRST_LOOK;
    loop {
        let out = ec2.describe_instances().instance_ids(id).send().await;
        let state = match out.or_aws(format!("failed to read instance {id}"), "ec2:DescribeInstances").found()? {
            None => return Ok(()),
            Some(o) => o
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find_map(|i| i.state().and_then(|s| s.name()).cloned()),
        };
        if matches!(state, None | Some(InstanceStateName::Terminated)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::new(ErrorKind::Timeout, format!("instance {id} is still {state:?} after termination"))
                .with_hint("run teardown again to keep waiting, or check the instance in the EC2 console"));
        }
        tokio::time::sleep(step).await;
        step = (step * 2).min(TERMINATE_POLL);
    }
}

impl Orphan {
    fn id_of(&self) -> ResourceId {
        let kind = match self.kind {
            OrphanKind::Instance => Kind::Ec2Instance,
            OrphanKind::LaunchTemplate => Kind::LaunchTemplate,
            OrphanKind::InstanceProfile => Kind::IamInstanceProfile,
        };
        ResourceId::new(kind, &self.key)
    }
}

#[async_trait]
impl Resource for Orphan {
    type Facts = ();

    fn id(&self) -> ResourceId {
        self.id_of()
    }

    fn depends_on(&self) -> Vec<Dep> {
        // A profile "depends on" the roles it holds, as karpctl's own profile does on the node
        // role: so the role waits for the profile to be deleted before it is. A role that is
        // not karpctl's is not in the set, and nothing waits.
        let roles = self.roles.iter().map(|r| Dep::if_present(super::role::id(r)));
        self.after.iter().cloned().map(Dep::on).chain(roles).collect()
    }

    fn documents(&self, _d: &Desired, _docs: &Documents) -> Result<Vec<Document>> {
        Ok(Vec::new())
    }

    async fn observe(&self, _cx: &Cx) -> Result<Observed<()>> {
        // Found by Karpenter's tags for this cluster: that is what makes it removable.
        Ok(Observed::present(true, Vec::new(), ()))
    }

    async fn apply(&self, _cx: &Cx, _seen: &Observed<()>) -> Result<()> {
        // Leftovers are only ever removed; no desired state creates them.
        Ok(())
    }

    fn removed_after(&self, other: &dyn super::AnyResource) -> bool {
        match self.kind {
            // Karpenter terminates its own while it runs, once their NodePools are deleted;
            // what is left then is terminated before the controller release goes.
            OrphanKind::Instance => matches!(other.id().kind, Kind::NodePool | Kind::Ec2NodeClass),
            OrphanKind::LaunchTemplate | OrphanKind::InstanceProfile => other.is_cluster_side(),
        }
    }

    fn holds(&self) -> Hold {
        match self.kind {
            // Taking its roles out lets them go; the instances it is waiting for hold it.
            OrphanKind::InstanceProfile => Hold::UntilPrepared,
            OrphanKind::Instance | OrphanKind::LaunchTemplate => Hold::UntilDeleted,
        }
    }

    async fn prepare_delete(&self, cx: &Cx, _seen: &Observed<()>) -> Result<()> {
        match self.kind {
            OrphanKind::InstanceProfile => remove_roles(cx, &self.key, &self.roles).await,
            OrphanKind::Instance | OrphanKind::LaunchTemplate => Ok(()),
        }
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed<()>) -> Result<()> {
        match self.kind {
            OrphanKind::Instance => terminate(cx, &self.key).await,
            OrphanKind::LaunchTemplate => {
                let r = cx.aws.ec2.delete_launch_template().launch_template_id(&self.key).send().await;
                ignore_gone(
                    r.or_aws(format!("failed to delete launch template {}", self.key), "ec2:DeleteLaunchTemplate"),
                )
            }
            OrphanKind::InstanceProfile => delete_instance_profile(cx, &self.key).await,
        }
    }
}
