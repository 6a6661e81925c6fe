//! What `doctor` checks on a cluster karpctl migrated (or is migrating): the migration's
//! records (record.rs) say it happened, so Cluster Autoscaler must stay at 0 (else it scales the
//! node groups back up against Karpenter), each recorded node group must sit at its floor, and
//! each inferred NodePool must be Ready. A cluster without records gets no checks. Read-only.

use serde_json::Value;

use super::discover::{self, Autoscaler, NodeGroup};
use super::steps::applied_pools;
use crate::aws::Aws;
use crate::checks::{Check, Status};
use crate::error::Result;
use crate::kube::Kube;
use crate::kube::{readiness, Readiness};

/// The migration's checks; `kube` is the cluster API, or why doctor has none. A failure to
/// read is one failing check, not doctor's end: the rest of doctor still reports.
pub async fn doctor(aws: &Aws, cluster: &str, kube: std::result::Result<&Kube, String>) -> Vec<Check> {
    match observe(aws, cluster, kube.as_ref().ok().copied()).await {
        Ok((groups, cas, pools)) => judge(cluster, &groups, cas.as_deref(), pools, kube.err()),
        Err(e) => vec![Check::new("migrate.records", Status::Fail, e.message)
            .with_hint(e.hint.unwrap_or_else(|| "check the credentials' EKS and cluster read access".into()))],
    }
}

type Pools = Option<Vec<(String, Readiness)>>;

async fn observe(
    aws: &Aws,
    cluster: &str,
    kube: Option<&Kube>,
) -> Result<(Vec<NodeGroup>, Option<Vec<Autoscaler>>, Pools)> {
    let groups = discover::node_groups(aws, cluster).await?;
    let Some(kube) = kube else { return Ok((groups, None, None)) };
    let cas = discover::autoscalers(kube).await?;
    let mut pools = Vec::new();
    for name in applied_pools(kube).await? {
        let obj = kube.get("karpenter.sh/v1", "NodePool", None, &name).await?;
        let obj = obj.and_then(|o| serde_json::to_value(o).ok()).unwrap_or(Value::Null);
        pools.push((name, readiness(&obj, "Ready")));
    }
    Ok((groups, Some(cas), Some(pools)))
}

/// The checks from what was observed (pure, so the unit tests judge every case).
fn judge(
    cluster: &str,
    groups: &[NodeGroup],
    cas: Option<&[Autoscaler]>,
    pools: Pools,
    no_api: Option<String>,
) -> Vec<Check> {
    let recorded_groups: Vec<&NodeGroup> = groups.iter().filter(|g| g.original.is_some()).collect();
    let recorded_ca = cas.is_some_and(|c| c.iter().any(|ca| ca.original.is_some()));
    if recorded_groups.is_empty() && !recorded_ca {
        return Vec::new();
    }
    let cont = format!("run `karpctl migrate --cluster {cluster}` to continue the migration");
    let back = format!("`karpctl migrate --cluster {cluster} --rollback` to undo it");
    let mut out = Vec::new();
    match cas {
        None => out.push(Check::new("migrate.cluster-autoscaler", Status::Skip, no_api.clone().unwrap_or_default())),
        Some(cas) => {
            let running: Vec<String> = cas
                .iter()
                .filter(|ca| ca.replicas > 0)
                .map(|ca| format!("{}/{} ({} replicas)", ca.namespace, ca.name, ca.replicas))
                .collect();
            out.push(if running.is_empty() {
                Check::new("migrate.cluster-autoscaler", Status::Pass, "no Cluster Autoscaler runs")
            } else {
                Check::new(
                    "migrate.cluster-autoscaler",
                    Status::Fail,
                    format!(
                        "Cluster Autoscaler runs after the migration: deployment {}; it scales the node groups against Karpenter",
                        running.join(", ")
                    ),
                )
                .with_hint(format!("{cont} (it scales it to 0), or {back}"))
            });
        }
    }
    for g in recorded_groups {
        let id = format!("migrate.{}", g.target().replacen('/', ".", 1));
        let what = g.describe();
        out.push(match g.floor {
            Some(floor) if floor == g.scaling => {
                Check::new(id, Status::Pass, format!("{what} is at its floor ({floor})"))
            }
            Some(floor) => Check::new(id, Status::Fail, format!("{what} is at {}, not its floor {floor}", g.scaling))
                .with_hint(format!("{cont}, or {back}")),
            None => Check::new(id, Status::Fail, format!("{what} has no recorded floor yet"))
                .with_hint(format!("{cont}, or {back}")),
        });
    }
    match pools {
        None => out.push(Check::new("migrate.nodepools", Status::Skip, no_api.unwrap_or_default())),
        Some(pools) => {
            for (name, ready) in pools {
                let id = format!("migrate.nodepool.{name}");
                out.push(match ready {
                    Readiness::Ready => Check::new(id, Status::Pass, format!("NodePool {name} is Ready")),
                    Readiness::NotReady(c) => {
                        let why = c.map(|c| c.to_string()).unwrap_or_else(|| "no conditions yet".into());
                        Check::new(id, Status::Fail, format!("NodePool {name} is not Ready: {why}"))
                            .with_hint(format!("kubectl describe nodepool {name}; {cont}, or {back}"))
                    }
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::Scaling;

    fn group(original: Option<Scaling>, floor: Option<Scaling>, now: Scaling) -> NodeGroup {
        NodeGroup { capacity_type: "SPOT".into(), scaling: now, original, floor, ..NodeGroup::sample("web") }
    }

    fn ca(replicas: i64, original: Option<i64>) -> Autoscaler {
        Autoscaler { namespace: "kube-system".into(), name: "cluster-autoscaler".into(), replicas, original }
    }

    fn status(checks: &[Check]) -> Vec<(String, Status)> {
        checks.iter().map(|c| (c.id.clone(), c.status)).collect()
    }

    #[test]
    fn no_records_no_checks_and_each_failure_names_the_fix() {
        let s = |min, max, desired| Scaling { min, max, desired };
        let untouched = [group(None, None, s(1, 4, 2))];
        assert!(judge("c", &untouched, Some(&[ca(1, None)]), Some(vec![]), None).is_empty());

        let done = [group(Some(s(1, 4, 2)), Some(s(0, 4, 0)), s(0, 4, 0))];
        let ok = judge("c", &done, Some(&[ca(0, Some(1))]), Some(vec![("web".into(), Readiness::Ready)]), None);
        assert_eq!(
            status(&ok),
            vec![
                ("migrate.cluster-autoscaler".into(), Status::Pass),
                ("migrate.nodegroup.web".into(), Status::Pass),
                ("migrate.nodepool.web".into(), Status::Pass),
            ]
        );

        let half = [group(Some(s(1, 4, 2)), Some(s(0, 4, 0)), s(1, 4, 2))];
        let bad =
            judge("c", &half, Some(&[ca(1, Some(1))]), Some(vec![("web".into(), Readiness::NotReady(None))]), None);
        assert!(bad.iter().all(|c| c.status == Status::Fail), "{bad:?}");
        assert!(bad[0].message.contains("kube-system/cluster-autoscaler"), "{}", bad[0].message);
        assert!(bad[1].message.contains("min=1,max=4,desired=2, not its floor min=0,max=4,desired=0"));
        for c in &bad {
            let hint = c.hint.clone().unwrap_or_default();
            assert!(hint.contains("karpctl migrate --cluster c") && hint.contains("--rollback"), "{hint}");
        }

        // Without the cluster API, the groups are still judged.
        let aws_only = judge("c", &half, None, None, Some("--only aws".into()));
        assert_eq!(status(&aws_only)[0], ("migrate.cluster-autoscaler".into(), Status::Skip));
        assert_eq!(status(&aws_only)[1], ("migrate.nodegroup.web".into(), Status::Fail));
    }
}
