//! Running the helm steps: each with a fresh environment, its outcome and stderr's tail kept.

use std::path::Path;

use super::binary::{INSTALL_HINT, STDERR_TAIL};
use super::*;
use crate::error::{Error, ErrorKind, Result};

/// Run a read-only helm command (`list`, `get values`) and return what it printed.
pub async fn query(helm: &Path, args: &[&str], env: &HelmEnv) -> Result<String> {
    let mut cmd = tokio::process::Command::new(helm);
    cmd.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HELM_KUBE") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.vars().iter().map(|(k, v)| (k, v)));
    let out = cmd.output().await.map_err(|e| Error::io("failed to run", helm, e).with_hint(INSTALL_HINT))?;
    if !out.status.success() {
        return Err(Error::new(ErrorKind::ClusterState, format!("helm {} failed ({})", args.join(" "), out.status))
            .with_cause(tail(&String::from_utf8_lossy(&out.stderr))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepStatus {
    /// It ran and succeeded.
    Done,
    /// It failed, and its failure is harmless (`may_fail`); helm's stderr.
    FailedHarmlessly(String),
    /// Not a helm step: manifests are applied by server-side apply through the cluster client.
    Skipped,
}

/// One step and what became of it, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// The step, as run (its argv has the real values path).
    pub step: Step,
    /// What happened.
    pub status: StepStatus,
}

/// Run the install: write `values_yaml` to a private temporary directory (file mode 0600),
/// compute the steps with its path (`steps`, e.g. a closure over [`install_steps`], so they are
/// the same steps `--emit` writes), run each helm step with `helm` and a fresh environment from
/// `env`, and remove the directory whatever happens. `progress` hears of each step as it starts.
///
/// A `may_fail` step's failure is recorded and ignored; any other failure stops the run with
/// helm's own stderr as the cause. Non-helm steps are skipped (see the module doc).
pub async fn run_steps(
    helm: &Path,
    steps: impl FnOnce(&Path) -> Vec<Step>,
    env: &dyn EnvSource,
    values_yaml: &str,
    progress: &(dyn Fn(&Step) + Sync),
) -> Result<Vec<StepOutcome>> {
    let dir = private_dir()?;
    let values = dir.path().join("values.yaml");
    let result = async {
        write_private(&values, values_yaml.as_bytes())?;
        let mut outcomes = Vec::new();
        for step in steps(&values) {
            if step.argv.first().map(String::as_str) != Some("helm") {
                outcomes.push(StepOutcome { step, status: StepStatus::Skipped });
                continue;
            }
            progress(&step);
            let env = env.helm_env().await?;
            let status = run_one(helm, &step, &env).await?;
            outcomes.push(StepOutcome { step, status });
        }
        Ok(outcomes)
    }
    .await;
    if let Err(e) = dir.close() {
        tracing::warn!("failed to remove the temporary helm values: {e}");
    }
    result
}

async fn run_one(helm: &Path, step: &Step, env: &HelmEnv) -> Result<StepStatus> {
    // The token only ever travels in the environment; a step that would put it on argv (where
    // `ps` shows it to every user) is a defect, refused before it runs.
    if let Some(token) = env.get("HELM_KUBETOKEN").filter(|t| !t.is_empty()) {
        if step.argv.iter().any(|w| w.contains(token)) {
            return Err(Error::defect("refusing to put the cluster token on helm's command line"));
        }
    }
    let mut cmd = tokio::process::Command::new(helm);
    cmd.args(&step.argv[1..]).stdin(std::process::Stdio::null()).kill_on_drop(true);
    // Inherited HELM_KUBE* settings (a context, an impersonated user) would point helm at
    // something other than the cluster karpctl checked.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HELM_KUBE") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.vars().iter().map(|(k, v)| (k, v)));
    let shown = display_step(step);
    tracing::debug!(command = %shown, "running helm");
    let out = cmd.output().await.map_err(|e| Error::io("failed to run", helm, e).with_hint(INSTALL_HINT))?;
    if out.status.success() {
        return Ok(StepStatus::Done);
    }
    let stderr = tail(&String::from_utf8_lossy(&out.stderr));
    if step.may_fail {
        tracing::debug!(command = %shown, "harmless failure: {stderr}");
        return Ok(StepStatus::FailedHarmlessly(stderr));
    }
    // helm has no error codes: its own timeout wording is the only sign of a timeout.
    let timed_out = stderr.contains("context deadline exceeded") || stderr.contains("timed out waiting");
    let kind = if timed_out { ErrorKind::Timeout } else { ErrorKind::ClusterState };
    let namespace = flag_value(&step.argv, "--namespace").unwrap_or("kube-system");
    let hint = if timed_out {
        format!(
            "the release did not become ready in time; look at the pods: kubectl -n {namespace} get pods, \
             kubectl -n {namespace} logs deploy/karpenter"
        )
    } else {
        format!("helm's message says why; after fixing it run init again (helm upgrade --install is idempotent); release state: helm -n {namespace} status {}", release(&step.argv).unwrap_or("karpenter"))
    };
    let cause = if stderr.is_empty() { format!("helm printed nothing on stderr ({})", out.status) } else { stderr };
    Err(Error::new(kind, format!("{shown} failed ({})", out.status)).with_cause(cause).with_hint(hint))
}

/// `helm upgrade --install karpenter`: enough to say which step, short enough for one line.
fn display_step(step: &Step) -> String {
    let words: Vec<&str> = step.argv.iter().map(String::as_str).take_while(|w| !w.contains("://")).collect();
    words.join(" ")
}

pub(super) fn flag_value<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter().position(|w| w == flag).and_then(|i| argv.get(i + 1)).map(String::as_str)
}

fn release(argv: &[String]) -> Option<&str> {
    flag_value(argv, "--install")
}

pub(super) fn tail(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().rev().nth(STDERR_TAIL) {
        Some((i, _)) => format!("...{}", &s[i..]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::tests::target;
    use crate::desired::{AuthMode, Desired};

    #[test]
    fn steps_are_named_without_their_chart_url_and_stderr_is_bounded() {
        let d = Desired::new(target(AuthMode::PodIdentity)).unwrap();
        let steps = install_steps(&d, Path::new("/v.yaml"), &ExtraValues::default(), &[]);
        assert_eq!(display_step(&steps[2]), "helm upgrade --install karpenter");
        assert_eq!(release(&steps[1].argv), Some("karpenter-crd"));
        let long = "x".repeat(10_000);
        assert_eq!(tail(&long).len(), STDERR_TAIL + 4);
        assert_eq!(tail("  Error: boom\n"), "Error: boom");
    }
}
