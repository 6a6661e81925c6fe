//! `karpctl convert`: old Karpenter YAML (a file, a directory, or stdin) to v1, offline.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use serde_json::json;

use crate::cli::{ConvertArgs, GlobalArgs};
use crate::convert::{self, ConvertError, ConvertOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::names;
use crate::output::{self, Report};

/// Run `convert`.
pub fn run(g: &GlobalArgs, a: &ConvertArgs) -> Result<Report> {
    let node_role = match (&a.node_role, &g.cluster) {
        (Some(role), _) => Some(role.clone()),
        // `-c C`: the node role karpctl itself creates for that cluster.
        (None, Some(cluster)) => {
            names::validate_cluster_name(cluster)?;
            Some(names::node_role(cluster).name)
        }
        (None, None) => None,
    };
    let sources = read_sources(&a.file)?;
    let opts = ConvertOptions { node_role, strict: a.strict };
    let converted = convert::convert_sources(&sources, &opts).map_err(convert_error)?;
    for w in &converted.warnings {
        output::warn(w);
    }
    let docs = &converted.documents;
    let mut text = String::new();
    let mut files = Vec::new();
    if let Some(dir) = &a.dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("failed to create directory", dir, e))?;
        for (doc, name) in docs.iter().zip(convert::output_file_names(docs)) {
            let path = dir.join(name);
            let yaml = convert::to_yaml(std::slice::from_ref(doc)).map_err(convert_error)?;
            std::fs::write(&path, yaml).map_err(|e| Error::io("failed to write", &path, e))?;
            let _ = writeln!(text, "wrote {}", path.display());
            files.push(path.display().to_string());
        }
    } else {
        text = convert::to_yaml(docs).map_err(convert_error)?;
    }
    let mut report = Report::raw("convert", text);
    report.raw = false;
    let documents: Vec<_> =
        docs.iter().map(|d| json!({"resource": convert::resource_name(d), "kind": "manifest", "content": d})).collect();
    report.body.insert("documents".into(), json!(documents));
    report.body.insert("warnings".into(), json!(converted.warnings));
    if a.dir.is_some() {
        report.body.insert("files".into(), json!(files));
    }
    Ok(report)
}

fn convert_error(e: ConvertError) -> Error {
    let err = Error::new(ErrorKind::InvalidInput, e.to_string());
    match e.hint() {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

/// The input as (name, text) pairs: stdin, one file, or a directory's `*.yaml`/`*.yml` files in
/// name order (so a Provisioner finds its AWSNodeTemplate in another file, deterministically).
fn read_sources(path: &Path) -> Result<Vec<(String, String)>> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| Error::io("failed to read", Path::new("stdin"), e))?;
        return Ok(vec![("stdin".into(), text)]);
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io("failed to read", p, e));
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| Error::io("failed to read directory", path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::invalid(
                format!("{} holds no .yaml or .yml files", path.display()),
                "pass a YAML file, a directory of them, or - for stdin",
            ));
        }
        return files.iter().map(|p| Ok((p.display().to_string(), read(p)?))).collect();
    }
    Ok(vec![(path.display().to_string(), read(path)?)])
}
