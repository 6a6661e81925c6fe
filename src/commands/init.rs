//! `karpctl init`: discover the cluster, observe every resource, plan, confirm, apply in
//! dependency order. A second run plans `none` everywhere and writes nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::aws::Aws;
use crate::cli::{GlobalArgs, InitArgs};
use crate::cluster::{self, ClusterInfo};
use crate::context::Hooks;
use crate::desired::Desired;
use crate::error::{Error, ErrorKind, Result};
use crate::helm::{self, ExtraValues};
use crate::kube::{Access, Wait};
use crate::output::{self, Report};
use crate::plan::{self, Action, Change};
use crate::render::Documents;
use crate::resources::helm_release::CONTROLLER;
use crate::resources::{self, ClusterApi, ClusterSide, Cx};
use crate::settings::{self, InstallOptions};
use crate::versions::{self, UpgradePath};

use super::upgrade::{self, Installed, Walk};

/// Run `init`.
pub async fn run(g: &GlobalArgs, a: &InitArgs, hooks: &Hooks) -> Result<Report> {
    walk(g, a, hooks, Walk::Init).await
}

/// The walk `init` and `upgrade` share: the same set, in the same order, with the version
/// checks (Kubernetes range, upgrade path) before the first write.
pub(crate) async fn walk(g: &GlobalArgs, a: &InitArgs, hooks: &Hooks, walk: Walk) -> Result<Report> {
    // Everything the user typed is checked before the first AWS call.
    let cluster_name = settings::require_cluster(g)?;
    let opts = InstallOptions::from_args(&a.install)?;
    let extra = ExtraValues::new(&a.values, &a.set)?;
    if let Some(dir) = &a.emit {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::invalid(format!("--emit {} is not a directory", dir.display()), "pass a directory"));
        }
    }
    let aws = Aws::connect(&settings::aws_options(g)?, hooks).await?;
    let info = cluster::discover(&aws, &cluster_name).await?;
    if let Some(w) = info.require_installable()? {
        output::warn(&w);
    }
    let desired = Desired::new(opts.target_for(&info))?;
    versions::check_kubernetes(&info.version, &desired.target.karpenter_version, desired.release)?;
    for (full, short) in desired.names.shortened() {
        output::warn(&format!("name {full} is too long; using {short}"));
    }
    let docs = Documents::render(&desired)?;
    let cluster_side = match &a.emit {
        Some(dir) => ClusterSide::Off(format!("--emit: written to {}", dir.display())),
        None => {
            let access = Access::for_install(&desired.target.namespace, !info.auth_mode.has_api());
            super::connect_cluster(&a.cluster, &info, &aws, extra.clone(), true, &access).await.map_err(|e| {
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
    let cx = Cx { aws, desired, docs, cluster: info, cluster_side };
    super::cluster_preflight(&cx, a.adopt).await?;

    let spinner = output::spinner("observing");
    let set = resources::desired_set(&cx.desired, &cx.cluster, opts.subnets.as_deref());
    let mut planned = plan::plan(&cx, set, a.adopt).await;
    spinner.finish_and_clear();
    let planned = planned.as_mut().map_err(|e| e.clone())?;
    // Shown in the order the changes are applied: dependency level, then the set's order.
    planned.sort_by_key(|p| p.level);
    let path = upgrade::check_path(&Installed::from_planned(planned, &cx.desired.target.namespace), &cx.desired, walk)?;
    for drift in path.iter().flat_map(|p| &p.drift) {
        output::warn(drift);
    }
    let blockers = plan::foreign(planned, a.adopt);
    if !blockers.is_empty() {
        return Err(plan::foreign_error(&blockers));
    }
    let agent = format!("eks-addon/{}", resources::pod_identity_agent::AGENT_ADDON);
    if a.no_pod_identity_agent
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
        output::warn(&format!("{}: {}", c.resource.trim_start_matches("ec2-tags/"), c.detail));
    }

    let view = View { command: walk.command(), path: path.as_ref() };
    if a.dry_run {
        let mut report = report(&cx, &changes, true, None, &view);
        if a.detailed_exitcode && pending > 0 {
            report.exit_code = 3;
        }
        return Ok(report);
    }
    if pending > 0 && !g.yes {
        confirm(&cx, &changes, pending, hooks.interactive, &view).await?;
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
        let timeout = a.wait_timeout;
        wait_until_ready(&cx, api, Wait { interval: Wait::INSTALL.interval.min(timeout), timeout }).await?;
        // Only now does the new controller run: what it no longer needs can go.
        changes.extend(upgrade::retire(&cx).await.map_err(|e| e.resumable(walk.command()))?);
    }
    let emitted = match &a.emit {
        Some(dir) => Some(emit(&cx, dir, &extra)?),
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

/// Ask before the first write; without a terminal, refuse (a CI job must say `--yes`).
async fn confirm(cx: &Cx, changes: &[Change], pending: usize, interactive: bool, view: &View<'_>) -> Result<()> {
    if !interactive {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{pending} changes need confirmation and there is no terminal to ask"),
        )
        .with_hint("review them with --dry-run, then run again with --yes"));
    }
    eprint!("{}", plan_text(cx, changes, true, view));
    let prompt = format!("Apply {pending} changes in account {} ({})?", cx.cluster.caller.account, cx.cluster.region);
    let answer = output::ask(move || dialoguer::Confirm::new().with_prompt(prompt).default(false).interact()).await?;
    if answer {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Refused, "not confirmed; nothing was changed")
            .with_hint("run again and answer yes, or pass --yes"))
    }
}

/// What a planned action reads as once applied.
fn past(a: Action) -> &'static str {
    match a {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Adopt => "adopted",
        Action::Delete => "deleted",
        Action::None => "unchanged",
        Action::Skip => "skipped",
    }
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
    let width = changes.iter().map(|c| c.resource.len()).max().unwrap_or(0);
    let verb = |a: Action| if dry_run { a.as_str() } else { past(a) };
    let verb_width = if dry_run { 6 } else { 9 };
    for ch in changes {
        let action = match ch.action {
            Action::Create => console::style(verb(ch.action)).green(),
            Action::Update | Action::Adopt => console::style(verb(ch.action)).yellow(),
            Action::Delete => console::style(verb(ch.action)).red(),
            Action::None | Action::Skip => console::style(verb(ch.action)).dim(),
        };
        let line = format!("  {action:<verb_width$}  {:<width$}  {}", ch.resource, ch.detail, width = width);
        let _ = writeln!(out, "{}", line.trim_end());
        if let Some(d) = &ch.diff {
            out.push_str(&output::diff_text(d, verb_width + 4));
        }
    }
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
