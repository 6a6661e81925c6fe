//! helm's environment: how helm reaches the same cluster as karpctl (endpoint, CA file and a
//! fresh token, or the user's kubeconfig), never through argv.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::helm;
use crate::kube::connect::Target;
use crate::kube::Kube;

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

/// The runner asks for a fresh environment (and so a fresh token) for every helm step.
#[async_trait]
impl EnvSource for Kube {
    async fn helm_env(&self) -> Result<HelmEnv> {
        Kube::helm_env(self).await
    }
}

impl Kube {
    /// helm's way to the same cluster: endpoint, CA file and a fresh token
    /// (`HELM_KUBEAPISERVER`, `HELM_KUBECAFILE`, `HELM_KUBETOKEN`: never argv, which `ps` shows
    /// to every user), with `KUBECONFIG` pointing at an empty kubeconfig so the user's current
    /// context cannot mix in; or, with `--kubeconfig`/`--context`, `KUBECONFIG` and
    /// `HELM_KUBECONTEXT`. The CA and empty kubeconfig are private (0600) files in a private
    /// directory, removed when the last clone of the value is dropped.
    pub async fn helm_env(&self) -> Result<HelmEnv> {
        match self.target() {
            Target::Eks { endpoint, ca_pem, tokens, .. } => {
                let dir = helm::private_dir()?;
                let kubeconfig = dir.path().join("kubeconfig");
                helm::write_private(&kubeconfig, b"apiVersion: v1\nkind: Config\n")?;
                let mut vars = vec![("HELM_KUBEAPISERVER".to_string(), endpoint.clone())];
                if let Some(pem) = ca_pem {
                    let ca = dir.path().join("ca.crt");
                    helm::write_private(&ca, pem)?;
                    vars.push(("HELM_KUBECAFILE".into(), ca.display().to_string()));
                }
                vars.push(("HELM_KUBETOKEN".into(), tokens.token().await?));
                vars.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
                Ok(HelmEnv::with_files(vars, dir))
            }
            Target::Kubeconfig { path, context, .. } => {
                let mut vars = Vec::new();
                if let Some(p) = path {
                    vars.push(("KUBECONFIG".to_string(), p.display().to_string()));
                }
                if let Some(c) = context {
                    vars.push(("HELM_KUBECONTEXT".to_string(), c.clone()));
                }
                Ok(HelmEnv::new(vars))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
