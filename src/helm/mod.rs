//! The helm (and kubectl) command lines of an install, as data: `init --emit` writes them as a
//! script, and the cluster-side install runs exactly the same argv. Credentials never appear
//! in them: helm gets the cluster endpoint and token through its environment.
//!
//! The runner ([`run_steps`]) runs the helm steps only. The manifests that the emitted script
//! applies with `kubectl apply --server-side` go through [`crate::kube::Kube::apply`] instead
//! (the same server-side apply with the same field manager), so an install needs no kubectl and
//! its progress and errors come from karpctl itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::desired::Desired;
use crate::error::{Error, ErrorKind, Result};

/// Where the Karpenter charts live (OCI). The v0.x `https://charts.karpenter.sh` is gone.
pub const CHART_REPO: &str = "oci://public.ecr.aws/karpenter";
/// How long helm may wait for the controller to become ready.
pub const HELM_TIMEOUT: &str = "10m";

/// One command of the install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Full argv, program first.
    pub argv: Vec<String>,
    /// Whether its failure is harmless (logging out of a registry one is not logged into).
    pub may_fail: bool,
    /// Why it runs, for the emitted script.
    pub why: &'static str,
}

/// User-supplied helm values, layered over karpctl's.
#[derive(Debug, Clone, Default)]
pub struct ExtraValues {
    /// `--values FILE`, in order.
    pub files: Vec<String>,
    /// `--set KEY=VALUE`, in order.
    pub sets: Vec<String>,
}

impl ExtraValues {
    /// Validate `--set` and `--values` before anything is written.
    pub fn new(files: &[std::path::PathBuf], sets: &[String]) -> Result<Self> {
        for s in sets {
            match s.split_once('=') {
                Some((k, _)) if !k.trim().is_empty() => {}
                _ => {
                    return Err(Error::invalid(
                        format!("invalid --set {s:?}"),
                        "write --set KEY=VALUE, e.g. --set replicas=1",
                    ))
                }
            }
        }
        for f in files {
            if !f.is_file() {
                return Err(Error::invalid(
                    format!("values file {} does not exist", f.display()),
                    "pass an existing YAML file to --values",
                ));
            }
        }
        // Absolute paths, so an emitted script works from any directory.
        let files = files
            .iter()
            .map(|f| {
                std::fs::canonicalize(f).map(|p| p.display().to_string()).map_err(|e| Error::io("failed to read", f, e))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ExtraValues { files, sets: sets.to_vec() })
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

/// The install's commands: CRD chart first (helm never upgrades a chart's `crds/`), then the
/// controller with karpctl's values file and the user's values layered last, then the manifests.
pub fn install_steps(d: &Desired, values_file: &Path, extra: &ExtraValues, manifests: &[&Path]) -> Vec<Step> {
    let t = &d.target;
    let chart = |name: &str| {
        vec![
            s("helm"),
            s("upgrade"),
            s("--install"),
            s(name),
            format!("{CHART_REPO}/{name}"),
            s("--version"),
            t.karpenter_version.clone(),
            s("--namespace"),
            t.namespace.clone(),
            s("--create-namespace"),
            s("--wait"),
            s("--timeout"),
            s(HELM_TIMEOUT),
        ]
    };
    // Both charts get karpctl's values: the CRD chart reads only `additionalAnnotations`, whose
    // `karpctl.io/managed-by` marks both releases as karpctl's (helm releases carry no tags).
    let mut crds = chart("karpenter-crd");
    crds.extend([s("-f"), values_file.display().to_string()]);
    let mut controller = chart("karpenter");
    controller.extend([s("-f"), values_file.display().to_string()]);
    for f in &extra.files {
        controller.extend([s("-f"), f.clone()]);
    }
    for kv in &extra.sets {
        controller.extend([s("--set"), kv.clone()]);
    }
    let mut steps = vec![
        Step {
            argv: vec![s("helm"), s("registry"), s("logout"), s("public.ecr.aws")],
            may_fail: true,
            why: "stale public.ecr.aws credentials make anonymous chart pulls fail",
        },
        Step { argv: crds, may_fail: false, why: "CRDs first: helm upgrade never updates a chart's crds/" },
        Step { argv: controller, may_fail: false, why: "the controller, with karpctl's values and yours layered last" },
    ];
    if !manifests.is_empty() {
        let mut apply = vec![s("kubectl"), s("apply"), s("--server-side"), s("--field-manager"), s("karpctl")];
        for m in manifests {
            apply.extend([s("-f"), m.display().to_string()]);
        }
        steps.push(Step { argv: apply, may_fail: false, why: "the default EC2NodeClass and NodePool" });
    }
    steps
}

/// `helm uninstall NAME`, waiting until its resources are gone.
pub fn uninstall_step(name: &str, namespace: &str) -> Step {
    Step {
        argv: ["helm", "uninstall", name, "--namespace", namespace, "--wait", "--timeout", HELM_TIMEOUT]
            .map(String::from)
            .to_vec(),
        may_fail: false,
        why: "remove the release",
    }
}

/// Which release a step installs or removes (`None` for other steps).
pub fn step_release(step: &Step) -> Option<&str> {
    let argv = &step.argv;
    match argv.get(1).map(String::as_str) {
        Some("upgrade") => flag_value(argv, "--install"),
        Some("uninstall") => argv.get(2).map(String::as_str),
        _ => None,
    }
}

/// The values helm should hold for the controller release: karpctl's, then each `--values`
/// file, then each `--set`, merged the way helm merges them. `--set` is read in its simple form
/// (`a.b=value`, value a number, `true`/`false`, `null` or a string); lists and escaped dots are
/// not interpreted, so a release installed with such a `--set` is always upgraded.
pub fn effective_values(karpctl_yaml: &str, extra: &ExtraValues) -> Result<serde_json::Value> {
    let mut merged = yaml_values("karpctl's helm values", karpctl_yaml)?;
    for f in &extra.files {
        let path = Path::new(f);
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("failed to read", path, e))?;
        deep_merge(&mut merged, yaml_values(f, &text)?);
    }
    for kv in &extra.sets {
        let Some((key, raw)) = kv.split_once('=') else { continue };
        let value = serde_json::from_str::<serde_json::Value>(raw)
            .ok()
            .filter(|v| !v.is_object() && !v.is_array() && !v.is_string())
            .unwrap_or_else(|| serde_json::Value::String(raw.to_string()));
        let mut patch = value;
        for part in key.split('.').rev() {
            let mut m = serde_json::Map::new();
            m.insert(part.to_string(), patch);
            patch = serde_json::Value::Object(m);
        }
        deep_merge(&mut merged, patch);
    }
    Ok(merged)
}

fn yaml_values(name: &str, text: &str) -> Result<serde_json::Value> {
    let v: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        Error::new(ErrorKind::InvalidInput, format!("{name} is not valid YAML")).with_cause(e.to_string())
    })?;
    Ok(if v.is_null() { serde_json::Value::Object(Default::default()) } else { v })
}

/// helm's merge: maps merge key by key, anything else is replaced.
fn deep_merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, p) => *b = p,
    }
}

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

/// The steps as a POSIX shell script.
pub fn script(steps: &[Step]) -> String {
    let mut out = String::from(
        "#!/bin/sh\n# Written by karpctl init --emit: the cluster side of the install.\nset -eu\ncd \"$(dirname \"$0\")\"\n",
    );
    for step in steps {
        let words: Vec<String> = step
            .argv
            .iter()
            .map(|w| shlex::try_quote(w).map(|q| q.into_owned()).unwrap_or_else(|_| w.clone()))
            .collect();
        out.push_str(&format!(
            "\n# {}\n{}{}\n",
            step.why,
            words.join(" "),
            if step.may_fail { " || true" } else { "" }
        ));
    }
    out
}

/// `--helm PATH`'s environment twin.
pub const HELM_ENV_VAR: &str = "KARPCTL_HELM";
/// The oldest helm karpctl runs: OCI charts (`oci://public.ecr.aws/karpenter`) are GA from 3.8.
pub const MIN_HELM: (u64, u64) = (3, 8);
/// How long `helm version` may take before karpctl gives up on it.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of helm's stderr an error keeps: its last lines say why; a debug dump would not fit.
const STDERR_TAIL: usize = 4000;

const INSTALL_HINT: &str = "install helm 3.8 or newer (https://helm.sh/docs/intro/install/) or pass --helm PATH \
     (or KARPCTL_HELM); init --emit DIR writes the commands for you to run instead";

/// Find helm before anything is written: `--helm PATH`, then `KARPCTL_HELM`, then `PATH`.
pub fn find_helm(explicit: Option<&Path>) -> Result<PathBuf> {
    locate_helm(explicit, std::env::var_os(HELM_ENV_VAR), std::env::var_os("PATH"))
}

/// [`find_helm`] with its inputs passed in, so tests need not change the process environment.
pub fn locate_helm(explicit: Option<&Path>, from_env: Option<OsString>, path: Option<OsString>) -> Result<PathBuf> {
    let named = |p: PathBuf, source: &str| {
        if is_executable(&p) {
            Ok(p)
        } else {
            Err(Error::new(ErrorKind::NotFound, format!("helm not found at {} ({source})", p.display()))
                .with_hint(INSTALL_HINT))
        }
    };
    if let Some(p) = explicit {
        return named(p.to_path_buf(), "--helm");
    }
    if let Some(p) = from_env.filter(|v| !v.is_empty()) {
        return named(PathBuf::from(p), HELM_ENV_VAR);
    }
    path.iter().flat_map(std::env::split_paths).map(|dir| dir.join("helm")).find(|p| is_executable(p)).ok_or_else(
        || Error::new(ErrorKind::NotFound, "helm is not installed (not found on PATH)").with_hint(INSTALL_HINT),
    )
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// A helm release version, as `helm version --short` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmVersion {
    /// Major, minor, patch.
    pub version: (u64, u64, u64),
    /// What helm printed, e.g. `v3.15.2+g1a500d5`.
    pub raw: String,
}

/// Parse `v3.15.2+gabc` (or `3.15`); None for anything else.
pub fn parse_helm_version(s: &str) -> Option<HelmVersion> {
    let raw = s.trim().to_string();
    let core = raw.strip_prefix('v').unwrap_or(&raw);
    let core = core.split(['+', '-']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = match parts.next() {
        Some(p) => p.ok()?,
        None => 0,
    };
    Some(HelmVersion { version: (major, minor, patch), raw })
}

/// Run `helm version --short` and refuse helm older than [`MIN_HELM`], before the first write.
pub async fn check_helm(helm: &Path) -> Result<HelmVersion> {
    let run = tokio::process::Command::new(helm)
        .args(["version", "--short"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(VERSION_TIMEOUT, run)
        .await
        .map_err(|_| {
            Error::new(ErrorKind::Timeout, format!("{} version --short did not answer", helm.display()))
                .with_hint(INSTALL_HINT)
        })?
        .map_err(|e| Error::io("failed to run", helm, e).with_hint(INSTALL_HINT))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{} version --short failed ({})", helm.display(), out.status),
        )
        .with_cause(tail(&String::from_utf8_lossy(&out.stderr)))
        .with_hint(INSTALL_HINT));
    }
    let v = parse_helm_version(&stdout).ok_or_else(|| {
        Error::new(ErrorKind::InvalidInput, format!("cannot tell which helm {} is", helm.display()))
            .with_cause(format!("helm version --short printed {:?}", stdout.trim()))
            .with_hint(INSTALL_HINT)
    })?;
    if (v.version.0, v.version.1) < MIN_HELM {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("helm {} is too old: karpctl needs {}.{} or newer", v.raw, MIN_HELM.0, MIN_HELM.1),
        )
        .with_cause("the Karpenter charts are OCI charts, which older helm cannot pull")
        .with_hint(INSTALL_HINT));
    }
    Ok(v)
}

/// The environment that points helm at the cluster: `HELM_KUBEAPISERVER`, `HELM_KUBECAFILE`,
/// `HELM_KUBETOKEN` (or `KUBECONFIG`/`HELM_KUBECONTEXT` with `--kubeconfig`), plus the private
/// files they name, which live as long as any clone of this value.
#[derive(Clone, Default)]
pub struct HelmEnv {
    vars: Vec<(String, String)>,
    _files: Option<Arc<tempfile::TempDir>>,
}

impl HelmEnv {
    /// Variables that name no files of their own.
    pub fn new(vars: Vec<(String, String)>) -> Self {
        HelmEnv { vars, _files: None }
    }

    /// Variables naming files in `dir`, which is removed when the last clone is dropped.
    pub fn with_files(vars: Vec<(String, String)>, dir: tempfile::TempDir) -> Self {
        HelmEnv { vars, _files: Some(Arc::new(dir)) }
    }

    /// The variables, in the order they are set.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// One variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Never prints the token: a `{:?}` in a log line must not leak cluster credentials.
impl std::fmt::Debug for HelmEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), if k == "HELM_KUBETOKEN" { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("HelmEnv").field("vars", &shown).finish()
    }
}

/// Where the runner gets helm's environment. Asked once per step, so every helm run starts
/// with a fresh token: `--wait` can keep one run talking to the cluster for its whole timeout.
#[async_trait]
pub trait EnvSource: Send + Sync {
    /// The environment for the next helm run.
    async fn helm_env(&self) -> Result<HelmEnv>;
}

#[async_trait]
impl EnvSource for HelmEnv {
    async fn helm_env(&self) -> Result<HelmEnv> {
        Ok(self.clone())
    }
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

/// Write `contents` to a new file only the owner can read (0600), for values and CA files.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| Error::io("failed to create", path, e))?;
    f.write_all(contents).map_err(|e| Error::io("failed to write", path, e))
}

/// A private (0700) temporary directory, removed on drop.
pub(crate) fn private_dir() -> Result<tempfile::TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix("karpctl-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o700));
    }
    b.tempdir().map_err(|e| Error::io("failed to create a temporary directory in", &std::env::temp_dir(), e))
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
            return Err(Error::new(ErrorKind::Render, "refusing to put the cluster token on helm's command line")
                .with_hint("this is a karpctl defect; please report it"));
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

fn flag_value<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter().position(|w| w == flag).and_then(|i| argv.get(i + 1)).map(String::as_str)
}

fn release(argv: &[String]) -> Option<&str> {
    flag_value(argv, "--install")
}

fn tail(s: &str) -> String {
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
    use crate::desired::AuthMode;

    #[test]
    fn crd_chart_then_controller_with_user_values_last() {
        let d = Desired::new(target(AuthMode::PodIdentity)).unwrap();
        let extra = ExtraValues { files: vec!["mine.yaml".into()], sets: vec!["replicas=1".into()] };
        let steps = install_steps(&d, Path::new("/tmp/x/values.yaml"), &extra, &[Path::new("np.yaml")]);
        assert_eq!(steps[0].argv.join(" "), "helm registry logout public.ecr.aws");
        assert!(steps[0].may_fail);
        assert_eq!(
            steps[1].argv.join(" "),
            "helm upgrade --install karpenter-crd oci://public.ecr.aws/karpenter/karpenter-crd --version 1.14.1 \
             --namespace kube-system --create-namespace --wait --timeout 10m -f /tmp/x/values.yaml"
        );
        assert_eq!(
            steps[2].argv.join(" "),
            "helm upgrade --install karpenter oci://public.ecr.aws/karpenter/karpenter --version 1.14.1 \
             --namespace kube-system --create-namespace --wait --timeout 10m -f /tmp/x/values.yaml -f mine.yaml --set replicas=1"
        );
        assert_eq!(steps[3].argv.join(" "), "kubectl apply --server-side --field-manager karpctl -f np.yaml");
        let sh = script(&steps);
        assert!(sh.contains("helm registry logout public.ecr.aws || true\n"));
        assert!(sh.starts_with("#!/bin/sh\n"));
    }

    #[test]
    fn helm_versions() {
        assert_eq!(parse_helm_version("v3.15.2+gabc\n").unwrap().version, (3, 15, 2));
        assert_eq!(parse_helm_version("v3.8.0").unwrap().version, (3, 8, 0));
        assert_eq!(parse_helm_version("v4.0.1+g1234").unwrap().version, (4, 0, 1));
        assert_eq!(parse_helm_version("3.7").unwrap().version, (3, 7, 0));
        assert!(parse_helm_version("version.BuildInfo{Version:\"v3.1\"}").is_none());
        assert!(parse_helm_version("").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn helm_is_found_by_flag_then_env_then_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let flag = make("flag-helm", 0o755);
        let env = make("env-helm", 0o755);
        let on_path = make("bin/helm", 0o755);
        make("noexec/helm", 0o644);
        let path = std::env::join_paths([dir.path().join("empty"), dir.path().join("noexec"), dir.path().join("bin")])
            .unwrap();
        assert_eq!(locate_helm(Some(&flag), Some(env.clone().into()), Some(path.clone())).unwrap(), flag);
        assert_eq!(locate_helm(None, Some(env.clone().into()), Some(path.clone())).unwrap(), env);
        assert_eq!(locate_helm(None, Some("".into()), Some(path.clone())).unwrap(), on_path);
        let e = locate_helm(None, None, Some(dir.path().join("noexec").into())).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.hint.unwrap().contains("install helm 3.8"));
        let e = locate_helm(Some(Path::new("/no/such/helm")), None, Some(path)).unwrap_err();
        assert_eq!(e.message, "helm not found at /no/such/helm (--helm)");
    }

    #[test]
    fn helm_env_debug_hides_the_token() {
        let env = HelmEnv::new(vec![
            ("HELM_KUBEAPISERVER".into(), "https://x".into()),
            ("HELM_KUBETOKEN".into(), "k8s-aws-v1.secret".into()),
        ]);
        let shown = format!("{env:?}");
        assert!(shown.contains("https://x") && !shown.contains("secret"), "{shown}");
        assert_eq!(env.get("HELM_KUBETOKEN"), Some("k8s-aws-v1.secret"));
    }

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

    #[test]
    fn set_must_be_key_value() {
        assert!(ExtraValues::new(&[], &["a.b=1".into()]).is_ok());
        assert!(ExtraValues::new(&[], &["novalue".into()]).is_err());
        assert!(ExtraValues::new(&[], &["=1".into()]).is_err());
        assert!(ExtraValues::new(&["/no/such/file.yaml".into()], &[]).is_err());
    }
}
