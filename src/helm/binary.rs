//! Finding helm and checking its version before anything runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::run::tail;
use crate::error::{Error, ErrorKind, Result};

/// `--helm PATH`'s environment twin.
pub const HELM_ENV_VAR: &str = "KARPCTL_HELM";
/// The oldest helm karpctl runs: OCI charts (`oci://public.ecr.aws/karpenter`) are GA from 3.8.
pub const MIN_HELM: (u64, u64) = (3, 8);
/// How long `helm version` may take before karpctl gives up on it.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of helm's stderr an error keeps: its last lines say why; a debug dump would not fit.
pub(super) const STDERR_TAIL: usize = 4000;

pub(super) const INSTALL_HINT: &str =
    "install helm 3.8 or newer (https://helm.sh/docs/intro/install/) or pass --helm PATH \
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
