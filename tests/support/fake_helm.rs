//! Installing the fake helm (`tests/support/fake-helm`) where a test's karpctl will run it.

use std::path::{Path, PathBuf};

/// Copy fake-helm into `dir` as an executable `helm`, run by the emulator's interpreter
/// (`KARPCTL_PYTHON`, which has the PyYAML it imports) named by its absolute path. Through
/// `/usr/bin/env python3` every helm call would start pyenv's shell shims first: a third of a
/// cluster test's CPU time went there.
pub fn install(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-helm");
    let script = std::fs::read_to_string(&src).expect("read fake-helm");
    let interpreter = std::env::var("KARPCTL_PYTHON")
        .ok()
        // Absolute but not resolved: the venv's python is a symlink, and only the path inside
        // the venv makes it the venv's interpreter (with its PyYAML).
        .and_then(|p| std::path::absolute(p).ok())
        .map_or_else(|| "/usr/bin/env python3".to_string(), |p| p.display().to_string());
    let body = script.split_once('\n').map_or("", |(_, rest)| rest);
    let helm = dir.join("helm");
    std::fs::write(&helm, format!("#!{interpreter}\n{body}")).expect("write fake helm");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).expect("make fake helm executable");
    helm
}
