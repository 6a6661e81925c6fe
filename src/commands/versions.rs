//! `karpctl versions`: the version table, so users and scripts can see which Karpenter
//! releases karpctl knows, which are LTS, and which Kubernetes versions each runs on.

use std::fmt::Write as _;

use serde_json::json;

use crate::output::Report;
use crate::versions::{newest, TABLE};

/// Run `versions` (offline: the table is in the binary).
pub fn run() -> Report {
    let mut text = String::from("VERSION  LTS  KUBERNETES  POLICIES  RULES  CRDS\n");
    for r in TABLE {
        let _ = writeln!(
            text,
            "{:<8} {:<4} {:<11} {:<9} {:<6} {}{}",
            r.version,
            if r.lts { "yes" } else { "" },
            r.kubernetes_range(),
            r.policies.len(),
            r.rules.len(),
            r.crds.len(),
            if r.version == newest().version { "  (default)" } else { "" }
        );
    }
    let _ = writeln!(
        text,
        "Any patch of these minors is accepted (its minor's documents apply); others need --allow-unknown-version."
    );
    let versions: Vec<_> = TABLE
        .iter()
        .map(|r| {
            json!({
                "version": r.version,
                "minor": r.minor(),
                "lts": r.lts,
                "kubernetes": {"min": format!("1.{}", r.kubernetes.0), "max": format!("1.{}", r.kubernetes.1)},
                "policies": r.policies.iter().map(|p| p.name()).collect::<Vec<_>>(),
                "rules": r.rules.iter().map(|x| x.kind).collect::<Vec<_>>(),
                "crds": r.crds,
                "values_keys": r.values_keys,
                "drifts_nodes": r.drifts_nodes,
            })
        })
        .collect();
    let mut report = Report::raw("versions", text);
    report.raw = false;
    report.body.insert("default".into(), json!(newest().version));
    report.body.insert("versions".into(), json!(versions));
    report
}
