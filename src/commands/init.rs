//! `karpctl init`: discover the cluster, observe every resource, plan, confirm, apply in
//! dependency order. A second run plans `none` everywhere and writes nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::{GlobalArgs, InitArgs};
use crate::cluster::ClusterInfo;
use crate::context::Hooks;
use crate::desired::Desired;
use crate::error::{Error, Result};
use crate::helm::{self, ExtraValues};

use crate::kube::{Access, Wait};
use crate::output::{self, Report};
use crate::plan::{self, Action, Change};
use crate::resources::helm_release::CONTROLLER;
use crate::resources::{self, ClusterApi, ClusterSide, Cx};
use crate::settings::InitSettings;
use crate::versions::{self, UpgradePath};

use super::plan_view::{confirm, past, table, Ask, Tense};
use super::session::{IfGone, Session};
use super::upgrade::{self, Installed, Walk};

/// Run `init`.
pub async fn run(g: &GlobalArgs, a: &InitArgs, hooks: &Hooks) -> Result<Report> {
    walk(&InitSettings::resolve(g, a)?, hooks, Walk::Init).await
}

/// The walk `init` and `upgrade` share: the same set, in the same order, with the version
/// checks (Kubernetes range, upgrade path) before the first write.
pub(crate) async fn walk(s: &InitSettings, hooks: &Hooks, walk: Walk) -> Result<Report> {
    // Everything the user typed was checked (InitSettings) before this first AWS call.
    let opts = &s.install;
    let session = Session::open(&s.common, hooks, IfGone::Fail, Some(&s.install)).await?;
    let info = &session.cluster;
    if let Some(w) = info.require_installable()? {
        output::warn(&w);
    }
    let desired = super::session::desired(opts.target_for(info))?;
    versions::check_kubernetes(&info.version, &desired.target.karpenter_version, desired.release)?;
    let cluster_side = match &s.emit {
        Some(dir) => ClusterSide::Off(format!("--emit: written to {}", dir.display())),
        None => {
            let access = Access::for_install(&desired.target.namespace, !info.auth_mode.has_api());
            session.connect(&s.access, s.extra.clone(), true, &access).await.map_err(|e| {
                // Without cluster access the AWS side can still be done: say so, once.
                let emit = "run init --emit DIR to do the AWS side only and write the cluster side to DIR";
                let hint = match e.hint.clone() {
                    Some(h) if h.contains("--emit") => h,
                    Some(h) => format!("{h}; or {emit}"),
                    None => emit.to_string(),
                };
                Error { hint: Some(hint), ..e }
            })?
        }
    };
    let cx = session.cx(desired, cluster_side)?;
    super::cluster_preflight(&cx, s.adopt).await?;

    let spinner = output::spinner("observing");
    let set = resources::desired_set(&cx.desired, &cx.cluster, opts.subnets.as_deref())?;
    let mut planned = plan::plan(&cx, set, s.adopt).await;
    spinner.finish_and_clear();
    let planned = planned.as_mut().map_err(|e| e.clone())?;
    // Shown in the order the changes are applied: dependency level, then the set's order.
    planned.sort_by_key(|p| p.level);
    let path = upgrade::check_path(&Installed::from_planned(planned, &cx.desired.target.namespace), &cx.desired, walk)?;
    for drift in path.iter().flat_map(|p| &p.drift) {
        output::warn(drift);
    }
    let blockers = plan::foreign(planned, s.adopt);
    if !blockers.is_empty() {
        return Err(plan::foreign_error(&blockers));
    }
    let agent = resources::pod_identity_agent::id();
    if s.no_pod_identity_agent
        && planned.iter().any(|p| p.change.resource == agent && p.change.action == Action::Create)
    {
        return Err(Error::invalid(
            format!("cluster {} has no eks-pod-identity-agent add-on, which Pod Identity needs", cx.cluster.name),
            "drop --no-pod-identity-agent to let karpctl install it, install it yourself, or use --auth irsa",
        ));
    }
    let changes: Vec<Change> = planned.iter().map(|p| p.change.clone()).collect();
    let pending = changes.iter().filter(|c| c.action.is_change()).count();
    for c in changes.iter().filter(|c| c.action == Action::Skip && c.detail.starts_with("public subnet")) {
        output::warn(&format!("{}: {}", c.resource.name, c.detail));
    }

    let view = View { command: walk.command(), path: path.as_ref() };
    if s.dry_run {
        let mut report = report(&cx, &changes, true, None, &view);
        if s.detailed_exitcode && pending > 0 {
            report.exit_code = 3;
        }
        return Ok(report);
    }
    if pending > 0 && !s.common.yes {
        let prompt =
            format!("Apply {pending} changes in account {} ({})?", cx.cluster.caller.account, cx.cluster.region);
        let plan = plan_text(&cx, &changes, true, &view);
        confirm("changes", pending, hooks.interactive, &plan, Ask::YesNo { prompt }).await?;
    }
    let bar = output::spinner(&format!("applying {pending} changes"));
    // The outcome is printed once, at the end; while applying, the spinner (on a terminal) and
    // the log (-v) say what is done.
    let result = plan::apply(&cx, planned, &|c: &Change| {
        let line = format!("{} {}", past(c.action), c.resource);
        tracing::info!("{line}");
        bar.set_message(line);
    })
    .await;
    bar.finish_and_clear();
    result.map_err(|e| e.resumable(walk.command()))?;
    let mut changes = changes;
    if let Ok(api) = cx.api() {
        let timeout = s.wait_timeout;
        wait_until_ready(&cx, api, Wait { interval: Wait::INSTALL.interval.min(timeout), timeout }).await?;
        // Only now does the new controller run: what it no longer needs can go.
        changes.extend(upgrade::retire(&cx).await.map_err(|e| e.resumable(walk.command()))?);
    }
    let emitted = match &s.emit {
        Some(dir) => Some(emit(&cx, dir, &s.extra)?),
        None => None,
    };
    Ok(report(&cx, &changes, false, emitted, &view))
}

/// What the plan text and report say beyond the changes.
struct View<'a> {
    command: &'static str,
    path: Option<&'a UpgradePath>,
}

/// Wait until the controller runs and the default EC2NodeClass is Ready, or say which
/// condition is failing: an install is done when Karpenter can launch nodes, not when helm returns.
async fn wait_until_ready(cx: &Cx, api: &ClusterApi, wait: Wait) -> Result<()> {
    let bar = output::spinner("waiting for Karpenter");
    let progress = |msg: &str| bar.set_message(msg.to_string());
    let ns = &cx.desired.target.namespace;
    let mut result = api.kube.wait_deployment_available(ns, CONTROLLER, wait, &progress).await;
    if result.is_ok() && cx.desired.target.default_nodepool {
        result = api.kube.wait_ready("karpenter.k8s.aws/v1", "EC2NodeClass", None, "default", wait, &progress).await;
    }
    bar.finish_and_clear();
    result
}

/// The plan (or, after apply, the outcome) as text: one line per resource with the diff of each
/// document to update under it, then a summary.
fn plan_text(cx: &Cx, changes: &[Change], dry_run: bool, view: &View<'_>) -> String {
    let c = &cx.cluster;
    let mut out = format!(
        "Cluster {} ({}, account {}, authentication {}, controller auth {})\n",
        c.name,
        c.region,
        c.caller.account,
        c.auth_mode.as_str(),
        match cx.desired.target.auth {
            crate::desired::AuthMode::Irsa => "irsa",
            crate::desired::AuthMode::PodIdentity => "pod-identity",
        }
    );
    for line in view.path.map(UpgradePath::describe).unwrap_or_default() {
        let _ = writeln!(out, "{line}");
    }
    table(&mut out, changes, if dry_run { Tense::Planned } else { Tense::Done });
    let count = |a: Action| changes.iter().filter(|c| c.action == a).count();
    let (create, update, adopt) = (count(Action::Create), count(Action::Update), count(Action::Adopt));
    let (none, skip, delete) = (count(Action::None), count(Action::Skip), count(Action::Delete));
    let _ = if delete > 0 {
        writeln!(out, "Removed {delete} no longer used by Karpenter {}.", cx.desired.target.karpenter_version)
    } else {
        Ok(())
    };
    let _ = if create + update + adopt == 0 {
        writeln!(out, "Nothing to change: {none} up to date, {skip} skipped.")
    } else if dry_run {
        writeln!(
            out,
            "Plan: {create} to create, {update} to update, {adopt} to adopt, {none} unchanged, {skip} skipped."
        )
    } else {
        writeln!(out, "Applied: {create} created, {update} updated, {adopt} adopted, {none} unchanged, {skip} skipped.")
    };
    out
}

fn report(cx: &Cx, changes: &[Change], dry_run: bool, emitted: Option<Vec<PathBuf>>, view: &View<'_>) -> Report {
    let mut text = plan_text(cx, changes, dry_run, view);
    let cluster_side = match (&emitted, dry_run) {
        (Some(files), _) => {
            let _ = writeln!(
                text,
                "Cluster side: written for you to apply. Run {} to install the charts and the default NodePool.",
                files.iter().find(|f| f.ends_with("install.sh")).map(|f| f.display().to_string()).unwrap_or_default()
            );
            json!({"status": "emitted", "files": files})
        }
        (None, true) => json!({"status": "planned"}),
        (None, false) => {
            // Without the default NodePool (--no-default-nodepool, or migrate, which applies its
            // own inferred ones) there is no default EC2NodeClass to be Ready.
            let _ = if cx.desired.target.default_nodepool {
                writeln!(text, "Karpenter is running and the default EC2NodeClass is Ready.")
            } else {
                writeln!(text, "Karpenter is running (no default NodePool or EC2NodeClass installed).")
            };
            json!({"status": "ready"})
        }
    };
    let mut r = Report::raw(view.command, text);
    r.raw = false;
    r.body.insert("cluster".into(), json!(cx.cluster.name));
    r.body.insert("karpenter_version".into(), json!(cx.desired.target.karpenter_version));
    if let Some(path) = view.path {
        r.body.insert("upgrade".into(), json!(path));
    }
    r.body.insert("dry_run".into(), json!(dry_run));
    r.body.insert("changes".into(), json!(changes));
    r.body.insert("cluster_side".into(), cluster_side);
    r
}

/// Write the cluster side for the user to apply: values, manifests, and the exact commands.
fn emit(cx: &Cx, dir: &Path, extra: &ExtraValues) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("failed to create directory", dir, e))?;
    let write = |name: &str, text: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io("failed to write", &path, e))?;
        Ok(path)
    };
    let mut files = vec![write("values.yaml", &cx.docs.helm_values_yaml)?];
    let mut manifests: Vec<&Path> = Vec::new();
    if cx.desired.target.default_nodepool {
        files.push(write("ec2nodeclass.yaml", &cx.docs.node_class_yaml)?);
        files.push(write("nodepool.yaml", &cx.docs.node_pool_yaml)?);
        manifests = vec![Path::new("ec2nodeclass.yaml"), Path::new("nodepool.yaml")];
    }
    if !cx.cluster.auth_mode.has_api() {
        files.push(write("aws-auth-maproles.yaml", &aws_auth_entry(&cx.desired, &cx.cluster))?);
    }
    let steps = helm::install_steps(&cx.desired, Path::new("values.yaml"), extra, &manifests);
    let script = write("install.sh", &helm::script(&steps))?;
    set_executable(&script)?;
    files.push(script);
    Ok(files)
}

/// The aws-auth `mapRoles` entry nodes need on CONFIG_MAP clusters, for the user to merge.
fn aws_auth_entry(d: &Desired, c: &ClusterInfo) -> String {
    format!(
        "# Merge this entry into mapRoles of the aws-auth ConfigMap (kube-system) of cluster {}:\n\
         #   kubectl edit configmap aws-auth -n kube-system\n\
         - rolearn: {}\n  username: system:node:{{{{EC2PrivateDNSName}}}}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n",
        c.name,
        d.node_role_arn()
    )
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("failed to chmod", path, e))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> Result<()> {
    Ok(())
}
