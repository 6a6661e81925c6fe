//! `karpctl render`: print (or write) every document karpctl would use, changing nothing.
//! Offline with `--account`/`--region`(/`--issuer`), otherwise from the discovered cluster.

use std::fmt::Write as _;

use serde_json::json;

use crate::cli::{GlobalArgs, RenderArgs};
use crate::cluster::{Caller, ClusterInfo};
use crate::context::Hooks;

use crate::error::{Error, Result};
use crate::output::Report;
use crate::render::{DocKind, Document, Documents};
use crate::settings::{Common, RenderSettings, RenderSource};

use super::session::{IfGone, Session};

/// Run `render`.
pub async fn run(g: &GlobalArgs, a: &RenderArgs, hooks: &Hooks) -> Result<Report> {
    document(&RenderSettings::resolve(g, a)?, hooks).await
}

/// Every document of the set, from offline facts or the discovered cluster.
pub async fn document(a: &RenderSettings, hooks: &Hooks) -> Result<Report> {
    let opts = &a.install;
    let (target, cluster) = match &a.source {
        RenderSource::Offline { account, region, partition } => {
            let t = opts.target(&a.cluster, account, region, *partition, a.issuer.clone());
            // No cluster fact the set takes (subnets, security group) carries a document.
            let caller = Caller { arn: String::new(), account: account.clone(), partition: *partition };
            (t, ClusterInfo::gone(&a.cluster, region, caller))
        }
        RenderSource::Cluster(aws) => {
            let common = Common { cluster: a.cluster.clone(), aws: aws.clone(), yes: false };
            let session = Session::open(&common, hooks, IfGone::Fail, None).await?;
            let mut t = opts.target_for(&session.cluster);
            if a.issuer.is_some() {
                t.issuer = a.issuer.clone();
            }
            (t, session.cluster)
        }
    };
    let desired = super::session::desired(target)?;
    let set = crate::resources::desired_set(&desired, &cluster, None)?;
    let docs = crate::render::documents(&set, &desired, &Documents::render(&desired)?)?;
    let mut text = String::new();
    let mut files = Vec::new();
    if let Some(dir) = &a.dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("failed to create directory", dir, e))?;
        for d in &docs {
            let path = dir.join(file_name(d));
            std::fs::write(&path, with_newline(&d.text)).map_err(|e| Error::io("failed to write", &path, e))?;
            let _ = writeln!(text, "wrote {}", path.display());
            files.push(path.display().to_string());
        }
    } else {
        for d in &docs {
            let _ = writeln!(text, "# {} ({})", d.resource, kind_name(d.kind));
            let _ = writeln!(text, "{}\n", d.text.trim_end());
        }
    }
    let mut report = Report::raw("render", text);
    report.raw = false;
    report.body.insert("documents".into(), json!(docs));
    if a.dir.is_some() {
        report.body.insert("files".into(), json!(files));
    }
    Ok(report)
}

fn with_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// A stable file name for a document: its resource id with `/` made safe, and its format's extension.
fn file_name(d: &Document) -> String {
    let ext = match d.kind {
        DocKind::HelmValues | DocKind::Manifest => "yaml",
        _ => "json",
    };
    format!("{}.{ext}", d.resource.replace(['/', ':'], "_"))
}

fn kind_name(k: DocKind) -> String {
    serde_json::to_value(k).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}
