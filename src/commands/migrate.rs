//! `karpctl migrate`: discover the node groups and Cluster Autoscaler, plan (the install as
//! init plans it, the inferred NodePools, the steps), confirm, then walk: init's walk with the
//! controller pinned to the group that stays, then the steps of src/migrate/. `--rollback`
//! restores what the records say.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::aws::Aws;
use crate::cli::{GlobalArgs, MigrateArgs};
use crate::cluster;
use crate::context::Hooks;
use crate::error::{Error, ErrorKind, Result};
use crate::kube::{Kube, Wait};
use crate::migrate::discover::{self, GroupKind, NodeGroup, Workloads};
use crate::migrate::plan::{self, Plan, Step};
use crate::migrate::{infer, rollback, steps, NODEGROUP_LABEL};
use crate::output::{self, Report};
use crate::settings::{MigrateMode, MigrateSettings};

use super::upgrade::Walk;

/// A wait's polling interval: often enough for a test's short timeout, at most every 5 s.
fn wait_for(timeout: Duration) -> Wait {
    Wait::new((timeout / 10).clamp(Duration::from_millis(20), Duration::from_secs(5)), timeout)
}

/// Run `migrate`: its flags resolved (and checked) once, before anything is read or written.
pub async fn run(g: &GlobalArgs, a: &MigrateArgs, hooks: &Hooks) -> Result<Report> {
    migrate(&MigrateSettings::resolve(g, a)?, hooks).await
}

/// The walk, on resolved settings.
pub async fn migrate(s: &MigrateSettings, hooks: &Hooks) -> Result<Report> {
    let cluster_name = s.common.cluster.clone();
    let aws = Aws::connect(&s.common.aws, hooks).await?;
    let info = cluster::discover(&aws, &cluster_name).await?;
    info.require_usable()?;
    let kube = Kube::connect(&info, &aws, s.access.kubeconfig.as_deref(), s.access.context.as_deref()).await?;
    let node_role = crate::names::node_role(&cluster_name).name;
    let bar = output::spinner("migrating");
    let progress = |m: &str| bar.set_message(m.to_string());
    let cx = steps::Ctx {
        aws: &aws,
        kube: &kube,
        cluster: &cluster_name,
        node_role: &node_role,
        parallel: s.parallel,
        drain: wait_for(s.drain_timeout),
        ready: wait_for(s.wait_timeout),
        progress: &progress,
    };
    if s.mode == MigrateMode::Rollback {
        bar.finish_and_clear();
        confirm(s.common.yes, hooks, &format!("Roll back the migration of cluster {cluster_name}?")).await?;
        let done = rollback::rollback(&cx).await.map_err(|e| e.resumable("karpctl migrate --rollback"))?;
        return Ok(report(&cluster_name, s.mode, None, &[], &done, None));
    }

    let groups = discover::node_groups(&aws, &cluster_name).await?;
    let autoscalers = discover::autoscalers(&kube).await?;
    let w = Workloads::observe(&kube).await?;
    let plan = plan::plan(&groups, &autoscalers, &w, &s.plan)?;
    let applied = steps::applied_pools(&kube).await?;
    let planned = plan.steps(&groups, &w, &applied);
    bar.finish_and_clear();

    // init's walk, with the controller kept on the group that stays and no default NodePool.
    let dir = tempfile::tempdir()
        .map_err(|e| Error::io("failed to create a temporary directory in", &std::env::temp_dir(), e))?;
    let values = dir.path().join("migrate-values.yaml");
    let pinned = groups.iter().find(|g| g.name == plan.controller_group);
    std::fs::write(&values, pinned.map(pin_values).unwrap_or_default())
        .map_err(|e| Error::io("failed to write", &values, e))?;
    let mut install = s.install.clone();
    install.extra.files.push(values.display().to_string());
    // With --yes nothing is shown or asked before the walk, which plans again itself: a dry
    // walk first would only repeat its reads.
    if s.mode == MigrateMode::Plan || !s.common.yes {
        let install_plan = super::init::walk(&install, hooks, Walk::Init).await?;
        if s.mode == MigrateMode::Plan {
            return Ok(report(&cluster_name, s.mode, Some(&plan), &planned, &[], Some(&install_plan)));
        }
        let pending = planned.iter().filter(|s| !s.done).count();
        let install_pending = install_plan
            .body
            .get("changes")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| !matches!(c["action"].as_str(), Some("none") | Some("skip"))));
        if pending > 0 || install_pending {
            if hooks.interactive {
                eprint!("{}", report(&cluster_name, s.mode, Some(&plan), &planned, &[], Some(&install_plan)).text);
            }
            confirm(s.common.yes, hooks, &format!("Migrate cluster {cluster_name} ({pending} steps)?")).await?;
        }
    }
    install.dry_run = false;
    install.common.yes = true;
    let installed = super::init::walk(&install, hooks, Walk::Init).await.map_err(|e| e.resumable("karpctl migrate"))?;
    let bar = output::spinner("migrating");
    let progress = |m: &str| bar.set_message(m.to_string());
    let cx = steps::Ctx { progress: &progress, ..cx };
    let done = steps::apply(&cx, &plan, &groups).await.map_err(|e| e.resumable("karpctl migrate"));
    bar.finish_and_clear();
    Ok(report(&cluster_name, s.mode, Some(&plan), &done?, &[], Some(&installed)))
}

/// The helm values that keep the controller on the node group that stays, off Karpenter's
/// own nodes (karpenter-facts §13): a managed group by EKS's node group label, a self-managed
/// one by the labels its node-template tags say its nodes carry.
fn pin_values(group: &NodeGroup) -> String {
    let mut terms = vec![json!({"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"})];
    match group.kind {
        GroupKind::Managed => terms.push(json!({"key": NODEGROUP_LABEL, "operator": "In", "values": [group.name]})),
        GroupKind::SelfManaged => {
            terms.extend(group.labels.iter().map(|(k, v)| json!({"key": k, "operator": "In", "values": [v]})))
        }
    }
    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": terms}]}}}});
    serde_yaml_ng::to_string(&affinity).unwrap_or_default()
}

/// Ask before the first write; without a terminal, `--yes` is required.
async fn confirm(yes: bool, hooks: &Hooks, prompt: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !hooks.interactive {
        return Err(Error::new(ErrorKind::Refused, "the migration needs confirmation and there is no terminal to ask")
            .with_hint("review it with --dry-run, then run again with --yes"));
    }
    let prompt = prompt.to_string();
    if output::ask(move || dialoguer::Confirm::new().with_prompt(prompt).default(false).interact()).await? {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Refused, "not confirmed; nothing was changed")
            .with_hint("run again and answer yes, or pass --yes"))
    }
}

fn step_lines(out: &mut String, steps: &[Step], dry_run: bool) {
    let width = steps.iter().map(|s| s.target.len()).max().unwrap_or(0);
    for s in steps {
        let mark = match (s.done, dry_run) {
            (true, _) => console::style("done").dim(),
            (false, true) => console::style("todo").yellow(),
            (false, false) => console::style("left").red(),
        };
        let line = format!("  {mark}  {:<7} {:<width$}  {}", s.step, s.target, s.detail);
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn report(
    cluster: &str,
    mode: MigrateMode,
    plan: Option<&Plan>,
    steps: &[Step],
    restored: &[Step],
    install: Option<&Report>,
) -> Report {
    let mut text = String::new();
    let mut r = Report::raw("migrate", String::new());
    r.raw = false;
    r.body.insert("cluster".into(), json!(cluster));
    r.body.insert("dry_run".into(), json!(mode == MigrateMode::Plan));
    r.body.insert("rollback".into(), json!(mode == MigrateMode::Rollback));
    if mode == MigrateMode::Rollback {
        let _ = writeln!(text, "Rolled back the migration of cluster {cluster}:");
        step_lines(&mut text, restored, false);
        if restored.is_empty() {
            let _ = writeln!(text, "  nothing recorded: no migration to roll back");
        }
        let _ = writeln!(text, "The Karpenter install stays; karpctl teardown removes it.");
        r.body.insert("steps".into(), json!(restored));
        r.text = text;
        return r;
    }
    let Some(plan) = plan else { return r };
    let keep = plan.groups.iter().find(|g| g.name == plan.controller_group).map_or(0, |g| g.target.desired);
    let _ = writeln!(
        text,
        "Migration of cluster {cluster}: {} node group{}, {} Cluster Autoscaler{}; the controller stays on {} ({keep} node{})",
        plan.groups.len(),
        if plan.groups.len() == 1 { "" } else { "s" },
        plan.autoscalers.len(),
        if plan.autoscalers.len() == 1 { "" } else { "s" },
        plan.controller_group,
        if keep == 1 { "" } else { "s" },
    );
    if let Some(install) = install {
        let _ = writeln!(text, "Karpenter install (init's walk):");
        for line in install.text.lines() {
            let _ = writeln!(text, "  {line}");
        }
        r.body.insert("install".into(), json!({"changes": install.body.get("changes").cloned().unwrap_or(json!([]))}));
    }
    let _ = writeln!(text, "Steps:");
    step_lines(&mut text, steps, mode == MigrateMode::Plan);
    let notes: Vec<&String> = plan.pools.iter().flat_map(|p| &p.image.notes).collect();
    if !notes.is_empty() {
        let _ = writeln!(text, "Not carried over as it was (check before applying):");
        for n in &notes {
            let _ = writeln!(text, "  {n}");
        }
    }
    if !plan.interrupted.is_empty() {
        let _ = writeln!(text, "Will be interrupted by the drain:");
        for p in &plan.interrupted {
            let _ = writeln!(text, "  {p}");
        }
    }
    let left = steps.iter().filter(|s| !s.done).count();
    let _ = if mode == MigrateMode::Plan {
        writeln!(text, "Plan: {left} steps to do, {} done.", steps.len() - left)
    } else {
        writeln!(
            text,
            "Migrated: Cluster Autoscaler at 0, node groups at their floor; karpctl migrate --rollback undoes it."
        )
    };
    let node_role = crate::names::node_role(cluster).name;
    let resources: Vec<Value> =
        plan.pools.iter().flat_map(|p| [infer::node_class(p, cluster, &node_role), infer::node_pool(p)]).collect();
    r.body.insert("controller_nodegroup".into(), json!(plan.controller_group));
    r.body.insert("resources".into(), json!(resources));
    r.body.insert("nodegroups".into(), json!(plan.groups));
    r.body.insert("steps".into(), json!(steps));
    r.body.insert("will_be_interrupted".into(), json!(plan.interrupted));
    r.body.insert("notes".into(), json!(notes));
    r.text = text;
    r
}
