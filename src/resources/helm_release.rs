//! The two helm releases: `karpenter-crd` (CRDs first: `helm upgrade` never updates a chart's
//! `crds/`) and `karpenter` (the controller). Observed with `helm list` / `helm get values`,
//! installed with the same commands `init --emit` writes. helm releases carry no tags: karpctl
//! marks its own through the `additionalAnnotations` value.

use async_trait::async_trait;
use serde_json::Value;

use super::{Cx, Dep, Drift, Kind, Observed, Resource, ResourceId};
use crate::desired::{Desired, TAG_MANAGED_BY, TAG_MANAGED_BY_VALUE};
use crate::diff::{self, Compare};
use crate::error::{Error, ErrorKind, Result};
use crate::helm::{self, Step};
use crate::kube::karpenter;
use crate::output;
use crate::render::{DocKind, Document, Documents};

/// The controller release's name.
pub const CONTROLLER: &str = "karpenter";
/// The CRD release's name.
pub const CRDS: &str = "karpenter-crd";

/// One release.
#[derive(Debug, Clone)]
pub struct HelmRelease {
    name: &'static str,
    namespace: String,
    depends: Vec<Dep>,
}

/// What observing it finds that applying or removing it uses.
#[derive(Debug)]
pub struct Facts {
    /// The values the release was installed with (`helm get values`).
    values: Value,
    /// The chart version installed.
    version: String,
}

/// The id of a release.
pub fn id(namespace: &str, name: &str) -> ResourceId {
    ResourceId::new(Kind::HelmRelease, format!("{namespace}/{name}"))
}

impl HelmRelease {
    /// The CRD chart, after the controller permissions and event rules of its version: an
    /// upgrade grants the new version what it needs before anything of it runs.
    pub fn crds(d: &Desired) -> Self {
        let mut depends: Vec<Dep> =
            d.wanted_policies().map(|(_, n)| Dep::on(super::managed_policy::id(&n.name))).collect();
        if d.target.interruption {
            depends.extend(d.wanted_rules().map(|(_, n)| Dep::on(super::event_rule::id(&n.name))));
        }
        HelmRelease { name: CRDS, namespace: d.target.namespace.clone(), depends }
    }

    /// The controller chart, after its CRDs and the identity and queue it starts with.
    pub fn controller(d: &Desired) -> Self {
        let ns = &d.target.namespace;
        let depends = [
            id(ns, CRDS),
            super::role::id(&d.names.controller_role.name),
            super::pod_identity::id(ns),
            // Without a running agent the controller gets no credentials and hangs at start.
            super::pod_identity_agent::id(),
            super::queue::id(&d.names.queue.name),
        ]
        .into_iter()
        .map(Dep::on)
        .collect();
        HelmRelease { name: CONTROLLER, namespace: ns.clone(), depends }
    }

    async fn run(&self, cx: &Cx, steps: impl FnOnce(&std::path::Path) -> Vec<Step>) -> Result<()> {
        let api = cx.cluster_api()?;
        let helm = api.helm.as_deref().ok_or_else(|| {
            Error::new(ErrorKind::NotFound, "helm is needed for the cluster side")
                .with_hint("install helm 3.8+ or pass --helm PATH")
        })?;
        let bar = output::spinner(&format!("helm: {}", self.name));
        let progress =
            |s: &Step| output::progress(&bar, &format!("running {}", s.argv[..s.argv.len().min(4)].join(" ")));
        let r = helm::run_steps(helm, steps, &api.kube, &cx.docs.helm_values_yaml, &progress).await;
        bar.finish_and_clear();
        r.map(|_| ())
    }
}

#[async_trait]
impl Resource for HelmRelease {
    type Facts = Facts;

    fn id(&self) -> ResourceId {
        id(&self.namespace, self.name)
    }

    fn depends_on(&self) -> Vec<Dep> {
        self.depends.clone()
    }

    fn is_cluster_side(&self) -> bool {
        true
    }

    fn kept_by(&self) -> Option<super::Keep> {
        (self.name == CRDS).then_some(super::Keep::Crds)
    }

    fn removed_after(&self, other: &dyn super::AnyResource) -> bool {
        // The controller drains the NodePools, releases the EC2NodeClasses and terminates its
        // instances; without it, its instances are terminated by tag before the releases go.
        // The CRD release goes after the controller's as it depends on it.
        matches!(other.id().kind, Kind::NodePool | Kind::Ec2NodeClass | Kind::Ec2Instance)
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        // Without the cluster API the planner skips it with that reason instead.
        cx.api().ok().filter(|api| api.helm.is_none()).map(|_| "helm not found (pass --helm PATH)".into())
    }

    fn documents(&self, _d: &Desired, docs: &Documents) -> Result<Vec<Document>> {
        // The CRD chart takes no values of karpctl's.
        if self.name != CONTROLLER {
            return Ok(Vec::new());
        }
        Ok(vec![Document::yaml(&id(&self.namespace, self.name), DocKind::HelmValues, &docs.helm_values_yaml)?])
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<Facts>> {
        let api = cx.cluster_api()?;
        let Some(helm) = api.helm.as_deref() else { return Ok(Observed::absent()) };
        let env = crate::helm::EnvSource::helm_env(&api.kube).await?;
        let filter = format!("^{}$", self.name);
        let list =
            helm::query(helm, &["list", "--namespace", &self.namespace, "--filter", &filter, "-o", "json"], &env)
                .await?;
        let releases: Vec<Value> = serde_json::from_str(&list).map_err(|e| {
            Error::new(ErrorKind::ClusterState, "helm list printed something other than JSON").with_cause(e.to_string())
        })?;
        let Some(release) = releases.iter().find(|r| r["name"] == self.name) else { return Ok(Observed::absent()) };
        let chart = release["chart"].as_str().unwrap_or_default();
        let version = chart.strip_prefix(&format!("{}-", self.name)).unwrap_or(chart).to_string();
        let status = release["status"].as_str().unwrap_or("unknown");
        let values_text =
            helm::query(helm, &["get", "values", self.name, "--namespace", &self.namespace, "-o", "json"], &env)
                .await?;
        let values: Value = serde_json::from_str(&values_text).unwrap_or(Value::Null);
        let owned = values["additionalAnnotations"][TAG_MANAGED_BY] == TAG_MANAGED_BY_VALUE;
        let want = &cx.desired.target.karpenter_version;
        let mut drift = Vec::new();
        if &version != want {
            drift.push(Drift::new(format!("chart {version}, not {want}")));
        }
        if status != "deployed" {
            drift.push(Drift::new(format!("release status is {status}")).with_hint(format!(
                "see `helm -n {} history {}`; karpctl init upgrades it again",
                self.namespace, self.name
            )));
        }
        if self.name == CONTROLLER {
            let want = helm::effective_values(&cx.docs.helm_values_yaml, &api.extra)?;
            if values != want {
                drift.push(Drift::new("values differ").with_diff(diff::documents(&values, &want, Compare::Exact)));
            }
        }
        Ok(Observed::present(owned, drift, Facts { values, version }))
    }

    async fn apply(&self, cx: &Cx, _seen: &Observed<Facts>) -> Result<()> {
        let api = cx.cluster_api()?;
        let (d, extra, name) = (&cx.desired, &api.extra, self.name);
        if name == CRDS {
            // init has refused unowned CRDs unless --adopt: these are the user's to hand over.
            for crd in karpenter::adopt_crds(&api.kube, CRDS, &self.namespace).await? {
                output::warn(&format!("adopted CRD {crd} into the {CRDS} release"));
            }
        }
        self.run(cx, |values| {
            helm::install_steps(d, values, extra, &[])
                .into_iter()
                // The registry logout belongs to the first chart pulled.
                .filter(|s| helm::step_release(s).map_or(name == CRDS && s.may_fail, |r| r == name))
                .collect()
        })
        .await
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed<Facts>) -> Result<()> {
        cx.removal.release_if_stopped(cx).await?;
        let (name, ns) = (self.name, self.namespace.clone());
        self.run(cx, move |_| vec![helm::uninstall_step(name, &ns)]).await
    }
}

impl HelmRelease {
    /// The values an observed release was installed with, so doctor reads them once.
    pub fn installed_values(seen: &Observed) -> Option<&Value> {
        seen.facts_of::<Self>().map(|f| &f.values)
    }

    /// The chart version an observed release runs, for upgrade paths and doctor.
    pub fn installed_version(seen: &Observed) -> Option<&str> {
        seen.facts_of::<Self>().map(|f| f.version.as_str())
    }
}
