//! Conformance against the official Karpenter reference (KARPCTL_REFERENCE_DIR), for every
//! version in its `versions/` folder and so every entry of karpctl's version table: the
//! controller policies statement for statement in all three partitions, the event rules, the
//! helm value keys, the CRD set, and the default manifests against that version's CRD schemas.
//! Skips with a printed reason when the variable is unset; fails when it is set but wrong.

use crate::support::crd_schema;

use std::collections::BTreeMap;
use std::path::Path;

use karpctl::desired::{AuthMode, Desired, Partition, Target, DEFAULT_KARPENTER_VERSION};
use karpctl::render::{yaml_to_json, Documents};
use karpctl::versions::{self, TABLE};
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

const ACCOUNT: &str = "111122223333";
const CLUSTER: &str = "conformance-cluster";

fn desired(partition: Partition, region: &str, auth: AuthMode) -> Desired {
    desired_for(DEFAULT_KARPENTER_VERSION, partition, region, auth)
}

fn desired_for(version: &str, partition: Partition, region: &str, auth: AuthMode) -> Desired {
    Desired::new(Target {
        cluster: CLUSTER.into(),
        account: ACCOUNT.into(),
        region: region.into(),
        partition,
        issuer: Some(format!("https://oidc.eks.{region}.amazonaws.com/id/EXAMPLE0123")),
        namespace: "kube-system".into(),
        auth,
        karpenter_version: version.into(),
        interruption: true,
        default_nodepool: true,
    })
    .unwrap()
}

/// The template's resources, by logical id.
fn template(dir: &Path) -> serde_yaml_ng::Mapping {
    let text = std::fs::read_to_string(dir.join("cloudformation.yaml")).expect("read cloudformation.yaml");
    let doc: Yaml = serde_yaml_ng::from_str(&text).expect("parse cloudformation.yaml");
    doc.get("Resources").and_then(Yaml::as_mapping).cloned().expect("Resources")
}

/// Apply CloudFormation's `!Sub` to a string the way the stack would for this account.
fn sub(s: &str, d: &Desired) -> String {
    let t = &d.target;
    s.replace("${AWS::Partition}", t.partition.as_str())
        .replace("${AWS::Region}", &t.region)
        .replace("${AWS::AccountId}", &t.account)
        .replace("${AWS::URLSuffix}", t.partition.url_suffix())
        .replace("${ClusterName}", &t.cluster)
        .replace("${KarpenterNodeRole.Arn}", &d.node_role_arn())
        .replace("${KarpenterInterruptionQueue.Arn}", &d.queue_arn())
}

/// The string under a `!Sub` tag (or a plain string).
fn sub_string(v: &Yaml) -> String {
    match v {
        Yaml::Tagged(t) => t.value.as_str().expect("!Sub string").to_string(),
        Yaml::String(s) => s.clone(),
        other => panic!("expected a !Sub string, got {other:?}"),
    }
}

/// Compare IAM documents as IAM does: a lone string equals a one-element list.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()),
        Value::Array(a) if a.len() == 1 => normalize(&a[0]),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// Every `versions/X.Y.Z` directory of the reference, with its version; fails when the folder
/// is missing or empty, since a set variable promises the files are there.
fn version_dirs(root: &Path) -> Vec<(String, std::path::PathBuf)> {
    let dir = root.join("versions");
    let mut out: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} is unreadable ({e}): the reference has no versions/ folder", dir.display()))
        .map(|e| e.expect("read versions/ entry").path())
        .filter(|p| p.is_dir())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort_by_key(|(v, _)| versions::parse(v));
    assert!(!out.is_empty(), "{} holds no version directories", dir.display());
    out
}

const PARTITIONS: [(Partition, &str); 3] =
    [(Partition::Aws, "eu-west-1"), (Partition::AwsCn, "cn-north-1"), (Partition::AwsUsGov, "us-gov-west-1")];

fn check_policies(dir: &Path, partition: Partition, region: &str) {
    check_policies_for(DEFAULT_KARPENTER_VERSION, dir, partition, region, 6);
}

fn check_policies_for(version: &str, dir: &Path, partition: Partition, region: &str, count: usize) {
    let d = desired_for(version, partition, region, AuthMode::PodIdentity);
    let docs = Documents::render(&d).unwrap();
    let ours: BTreeMap<String, Value> = docs.policies.iter().map(|(_, n, doc)| (n.clone(), doc.clone())).collect();
    let mut seen = 0;
    for (_, res) in template(dir) {
        if res.get("Type").and_then(Yaml::as_str) != Some("AWS::IAM::ManagedPolicy") {
            continue;
        }
        let props = &res["Properties"];
        let name = sub(&sub_string(&props["ManagedPolicyName"]), &d);
        let expected: Value = serde_json::from_str(&sub(&sub_string(&props["PolicyDocument"]), &d)).unwrap();
        let got = ours.get(&name).unwrap_or_else(|| panic!("{version}: karpctl renders no policy named {name}"));
        let (exp_st, got_st) = (expected["Statement"].as_array().unwrap(), got["Statement"].as_array().unwrap());
        assert_eq!(exp_st.len(), got_st.len(), "{version} {name}: statement count");
        for (e, g) in exp_st.iter().zip(got_st) {
            assert_eq!(normalize(e), normalize(g), "{version} {name}: statement {}", e["Sid"]);
        }
        assert_eq!(normalize(&expected), normalize(got), "{version} {name}");
        seen += 1;
    }
    assert_eq!(seen, count, "{version}: the template's controller policies");
    assert_eq!(ours.len(), seen, "{version}: karpctl renders a policy the template does not have");
}

/// The (source, detail-type) pairs of a template's event rules, sorted.
fn template_rules(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = template(dir)
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Yaml::as_str) == Some("AWS::Events::Rule"))
        .map(|(_, r)| {
            let p = &r["Properties"]["EventPattern"];
            (p["source"][0].as_str().unwrap().to_string(), p["detail-type"][0].as_str().unwrap().to_string())
        })
        .collect();
    out.sort();
    out
}

fn our_rules(docs: &Documents) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = docs
        .event_patterns
        .iter()
        .map(|(_, p)| (p["source"][0].as_str().unwrap().into(), p["detail-type"][0].as_str().unwrap().into()))
        .collect();
    out.sort();
    out
}

#[test]
fn the_version_table_has_exactly_the_reference_versions() {
    let Some(root) = crd_schema::reference_dir() else { return };
    let theirs: Vec<String> = version_dirs(&root).into_iter().map(|(v, _)| v).collect();
    let ours: Vec<String> = TABLE.iter().map(|r| r.version.to_string()).collect();
    assert_eq!(ours, theirs);
    for (v, dir) in version_dirs(&root) {
        // Each chart's version equals its directory's name (SOURCE.md): the right files are there.
        for chart in ["chart/Chart.yaml", "chart/karpenter-crd.Chart.yaml"] {
            let text = std::fs::read_to_string(dir.join(chart)).unwrap_or_else(|e| panic!("{v}/{chart}: {e}"));
            let doc: Yaml = serde_yaml_ng::from_str(&text).unwrap();
            assert_eq!(doc["version"].as_str(), Some(v.as_str()), "{v}/{chart}");
        }
    }
}

#[test]
fn every_versions_controller_policies_match_its_template_in_every_partition() {
    let Some(root) = crd_schema::reference_dir() else { return };
    for (v, dir) in version_dirs(&root) {
        let count = template(&dir)
            .iter()
            .filter(|(_, r)| r.get("Type").and_then(Yaml::as_str) == Some("AWS::IAM::ManagedPolicy"))
            .count();
        for (partition, region) in PARTITIONS {
            check_policies_for(&v, &dir, partition, region, count);
        }
    }
}

#[test]
fn every_versions_event_rules_match_its_template() {
    let Some(root) = crd_schema::reference_dir() else { return };
    for (v, dir) in version_dirs(&root) {
        let d = desired_for(&v, Partition::Aws, "eu-west-1", AuthMode::PodIdentity);
        assert_eq!(our_rules(&Documents::render(&d).unwrap()), template_rules(&dir), "{v}");
    }
}

/// The CRD names a directory of CRD files defines.
fn crd_names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir.join("crds"))
        .expect("read crds/")
        .map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let doc: Yaml = serde_yaml_ng::from_str(&text).unwrap();
            doc["metadata"]["name"].as_str().expect("CRD metadata.name").to_string()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_versions_crd_set_matches_its_crd_chart() {
    let Some(root) = crd_schema::reference_dir() else { return };
    for (v, dir) in version_dirs(&root) {
        let release = versions::lookup(&v).unwrap();
        assert_eq!(release.crds, crd_names(&dir), "{v}");
    }
}

/// The spec field names of a version's EC2NodeClass CRD (v1).
fn nodeclass_spec_fields(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("crds/karpenter.k8s.aws_ec2nodeclasses.yaml")).expect("read CRD");
    let crd = yaml_to_json("EC2NodeClass CRD", &text).unwrap();
    let v1 = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == "v1").expect("v1").clone();
    let props = v1.pointer("/schema/openAPIV3Schema/properties/spec/properties").and_then(|p| p.as_object());
    props.expect("spec properties").keys().cloned().collect()
}

/// doctor tells a CRD release older than the controller by the fields the table lists: each
/// is in that version's CRD and not in the oldest one's, and no field the version's CRD added
/// since the oldest is left out.
#[test]
fn every_versions_new_nodeclass_fields_are_the_ones_its_crd_added() {
    let Some(root) = crd_schema::reference_dir() else { return };
    let dirs = version_dirs(&root);
    let oldest = nodeclass_spec_fields(&dirs[0].1);
    for (v, dir) in &dirs {
        let fields = nodeclass_spec_fields(dir);
        let mut added: Vec<&str> =
            fields.iter().map(String::as_str).filter(|f| !oldest.iter().any(|o| o == f)).collect();
        added.sort();
        assert_eq!(versions::lookup(v).unwrap().nodeclass_fields, added, "{v}");
    }
}

#[test]
fn every_versions_values_keys_exist_in_its_chart() {
    let Some(root) = crd_schema::reference_dir() else { return };
    for (v, dir) in version_dirs(&root) {
        let release = versions::lookup(&v).unwrap();
        let chart_text = std::fs::read_to_string(dir.join("chart/values.yaml")).expect("read values.yaml");
        let chart = yaml_to_json("chart values", &chart_text).unwrap();
        for key in release.values_keys {
            assert!(exists_in_chart(&chart, key), "{v}: values key {key} is not in the chart's values.yaml");
        }
        for auth in [AuthMode::Irsa, AuthMode::PodIdentity] {
            let d = desired_for(&v, Partition::Aws, "eu-west-1", auth);
            let values = yaml_to_json("values", &Documents::render(&d).unwrap().helm_values_yaml).unwrap();
            let mut paths = Vec::new();
            leaf_paths(&values, "", &mut paths);
            for p in &paths {
                assert!(release.values_keys.contains(&p.as_str()), "{v}: karpctl sets {p}, missing from the table");
                assert!(exists_in_chart(&chart, p), "{v}: helm value {p} does not exist in the chart's values.yaml");
            }
        }
    }
}

#[test]
fn every_versions_default_manifests_validate_against_its_crds() {
    let Some(root) = crd_schema::reference_dir() else { return };
    for (v, dir) in version_dirs(&root) {
        let d = desired_for(&v, Partition::Aws, "eu-west-1", AuthMode::PodIdentity);
        let docs = Documents::render(&d).unwrap();
        for text in [&docs.node_pool_yaml, &docs.node_class_yaml] {
            let manifest = yaml_to_json("manifest", text).unwrap();
            let errors = crd_schema::validate_manifest(&dir, &manifest);
            assert!(errors.is_empty(), "{v}: {} is invalid: {errors:?}", manifest["kind"]);
        }
    }
}

#[test]
fn controller_policies_match_the_reference_template_in_aws() {
    let Some(dir) = crd_schema::reference_dir() else { return };
    check_policies(&dir, Partition::Aws, "eu-west-1");
}

#[test]
fn controller_policies_match_the_reference_template_in_aws_cn() {
    let Some(dir) = crd_schema::reference_dir() else { return };
    check_policies(&dir, Partition::AwsCn, "cn-north-1");
}

#[test]
fn node_role_queue_and_rules_match_the_reference_template() {
    let Some(dir) = crd_schema::reference_dir() else { return };
    for (partition, region) in [(Partition::Aws, "us-east-1"), (Partition::AwsCn, "cn-northwest-1")] {
        let d = desired(partition, region, AuthMode::PodIdentity);
        let docs = Documents::render(&d).unwrap();
        let res = template(&dir);
        let node = &res["KarpenterNodeRole"]["Properties"];
        let principal = sub(&sub_string(&node["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]), &d);
        assert_eq!(docs.node_trust["Statement"][0]["Principal"]["Service"], principal);
        let managed: Vec<String> =
            node["ManagedPolicyArns"].as_sequence().unwrap().iter().map(|v| sub(&sub_string(v), &d)).collect();
        let ours: Vec<String> =
            karpctl::desired::NODE_MANAGED_POLICIES.iter().map(|p| d.aws_managed_policy_arn(p)).collect();
        assert_eq!(ours, managed);
        // Queue attributes and policy statements.
        let q = &res["KarpenterInterruptionQueue"]["Properties"];
        assert_eq!(q["MessageRetentionPeriod"].as_u64(), Some(300));
        assert_eq!(q["SqsManagedSseEnabled"].as_bool(), Some(true));
        let qp = &res["KarpenterInterruptionQueuePolicy"]["Properties"]["PolicyDocument"];
        assert_eq!(docs.queue_policy["Id"], qp["Id"].as_str().unwrap());
        let st = &docs.queue_policy["Statement"];
        assert_eq!(st[0]["Principal"]["Service"], serde_json::json!(["events.amazonaws.com", "sqs.amazonaws.com"]));
        assert_eq!(st[0]["Action"], qp["Statement"][0]["Action"].as_str().unwrap());
        assert_eq!(st[1]["Sid"], "DenyHTTP");
        assert_eq!(st[1]["Effect"], "Deny");
        assert_eq!(st[1]["Action"], "sqs:*");
        assert_eq!(st[1]["Principal"], "*");
        // Event patterns: the same five (source, detail-type) pairs.
        assert_eq!(our_rules(&docs), template_rules(&dir));
    }
}

/// Every leaf key path of a values document (`settings.clusterName`, ...).
fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaf_paths(child, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Whether `path` exists in the chart's values: every segment must exist, except below a key
/// whose default is an empty map (`annotations: {}`, `resources: {}`), which takes any keys.
fn exists_in_chart(chart: &Value, path: &str) -> bool {
    let mut cur = chart;
    for seg in path.split('.') {
        match cur {
            Value::Object(m) if m.is_empty() => return true,
            Value::Object(m) => match m.get(seg) {
                Some(next) => cur = next,
                None => return false,
            },
            _ => return false,
        }
    }
    true
}

#[test]
fn every_helm_value_karpctl_sets_exists_in_the_chart() {
    let Some(dir) = crd_schema::reference_dir() else { return };
    let chart_text = std::fs::read_to_string(dir.join("chart/values.yaml")).expect("read chart values.yaml");
    let chart = yaml_to_json("chart values", &chart_text).unwrap();
    for auth in [AuthMode::Irsa, AuthMode::PodIdentity] {
        let d = desired(Partition::Aws, "eu-west-1", auth);
        let values = yaml_to_json("values", &Documents::render(&d).unwrap().helm_values_yaml).unwrap();
        let mut paths = Vec::new();
        leaf_paths(&values, "", &mut paths);
        assert!(paths.contains(&"settings.interruptionQueue".to_string()));
        for p in &paths {
            assert!(exists_in_chart(&chart, p), "helm value {p} does not exist in the chart's values.yaml");
        }
    }
    // The check itself must catch a stale key, such as the v0.x one a peer tool still sends.
    assert!(!exists_in_chart(&chart, "settings.interruptionQueueName"));
    assert!(!exists_in_chart(&chart, "settings.aws.defaultInstanceProfile"));
}

#[test]
fn default_nodepool_and_ec2nodeclass_validate_against_the_crds() {
    let Some(dir) = crd_schema::reference_dir() else { return };
    let d = desired(Partition::Aws, "eu-west-1", AuthMode::PodIdentity);
    let docs = Documents::render(&d).unwrap();
    for text in [&docs.node_pool_yaml, &docs.node_class_yaml] {
        let manifest = yaml_to_json("manifest", text).unwrap();
        let errors = crd_schema::validate_manifest(&dir, &manifest);
        assert!(errors.is_empty(), "{} is invalid: {errors:?}", manifest["kind"]);
    }
    // And the validator rejects a broken one, so the check above can fail.
    let mut broken = yaml_to_json("manifest", &docs.node_pool_yaml).unwrap();
    broken["spec"]["disruption"]["consolidationPolicy"] = "WhenUnderutilized".into();
    assert!(!crd_schema::validate_manifest(&dir, &broken).is_empty());
}
