//! The helm (and kubectl) command lines of an install, as data: `init --emit` writes them as a
//! script, and the cluster-side install runs exactly the same argv. Credentials never appear
//! in them: helm gets the cluster endpoint and token through its environment.
//!
//! The runner ([`run_steps`]) runs the helm steps only. The manifests that the emitted script
//! applies with `kubectl apply --server-side` go through [`crate::kube::Kube::apply`] instead
//! (the same server-side apply with the same field manager), so an install needs no kubectl and
//! its progress and errors come from karpctl itself.

use std::path::Path;

use crate::desired::Desired;
use crate::error::{Error, ErrorKind, Result};

mod binary;
pub mod env;
mod run;

pub use binary::*;
pub use env::*;
use run::flag_value;
pub use run::*;

/// Where the Karpenter charts live (OCI). The v0.x `https://charts.karpenter.sh` is gone.
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
    fn set_must_be_key_value() {
        assert!(ExtraValues::new(&[], &["a.b=1".into()]).is_ok());
        assert!(ExtraValues::new(&[], &["novalue".into()]).is_err());
        assert!(ExtraValues::new(&[], &["=1".into()]).is_err());
        assert!(ExtraValues::new(&["/no/such/file.yaml".into()], &[]).is_err());
    }
}
