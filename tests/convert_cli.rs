//! `karpctl convert` as a user runs it: files, directories and stdin in; YAML, JSON or files
//! out; warnings on stderr; one-line errors with the document's position and the exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const PROVISIONER: &str = "apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata: {name: default}
spec:
  requirements:
    - key: node.kubernetes.io/instance-type
      operator: In
      values: [t3.medium, m5.large]
  limits: {resources: {cpu: 1000}}
  provider:
    amiFamily: AL2023
    subnetSelector: {karpenter.sh/discovery: my-cluster}
    securityGroupSelector: {karpenter.sh/discovery: my-cluster}
  ttlSecondsAfterEmpty: 60
";

fn karpctl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_karpctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("KARPCTL_CLUSTER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn stdin_to_v1_yaml_on_stdout() {
    let out = karpctl(&["convert", "-f", "-", "--node-role", "KarpenterNodeRole-my-cluster"], Some(PROVISIONER));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_slice(&out.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["apiVersion"], "karpenter.sh/v1");
    assert_eq!(docs[0]["kind"], "NodePool");
    assert_eq!(docs[0]["spec"]["disruption"]["consolidationPolicy"], "WhenEmpty");
    assert_eq!(docs[0]["spec"]["disruption"]["consolidateAfter"], "1m");
    assert_eq!(docs[1]["kind"], "EC2NodeClass");
    assert_eq!(docs[1]["spec"]["role"], "KarpenterNodeRole-my-cluster");
    assert_eq!(docs[1]["spec"]["amiSelectorTerms"][0]["alias"], "al2023@latest");
}

#[test]
fn json_output_and_dir_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.yaml");
    std::fs::write(&input, PROVISIONER).unwrap();
    let out = karpctl(&["convert", "-f", input.to_str().unwrap(), "--node-role", "r", "-o", "json"], None);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["command"], "convert");
    assert_eq!(doc["documents"][0]["resource"], "nodepool/default");
    assert_eq!(doc["documents"][1]["resource"], "ec2nodeclass/default");
    let outdir = dir.path().join("out");
    let out = karpctl(
        &["convert", "-f", dir.path().to_str().unwrap(), "--node-role", "r", "--dir", outdir.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut files: Vec<String> =
        std::fs::read_dir(&outdir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["ec2nodeclass-default.yaml", "nodepool-default.yaml"]);
}

#[test]
fn warnings_go_to_stderr_and_strict_makes_them_errors() {
    let legacy = PROVISIONER.replace("    amiFamily: AL2023\n", "");
    let out = karpctl(&["convert", "-f", "-", "--node-role", "r"], Some(&legacy));
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("warning: stdin: document 1"), "{stderr}");
    assert!(stderr.contains("amiFamily"), "{stderr}");
    let out = karpctl(&["convert", "-f", "-", "--node-role", "r", "--strict"], Some(&legacy));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_is_one_line_with_the_position_and_exit_1() {
    for (input, expect) in [
        ("apiVersion: v1\nkind: ConfigMap\n---\nkind: [unclosed\n", "document 2"),
        ("apiVersion: karpenter.sh/v9\nkind: Provisioner\nmetadata: {name: x}\n", "document 1"),
        ("apiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata: {name: x}\nspec: {}\n", "Provisioner/x"),
    ] {
        let out = karpctl(&["convert", "-f", "-", "--node-role", "r"], Some(input));
        assert_eq!(out.status.code(), Some(1), "{input}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap();
        assert!(first.starts_with("error: stdin: ") && first.contains(expect), "{stderr}");
        assert!(stderr.lines().any(|l| l.starts_with("hint: ")), "{stderr}");
    }
    assert_eq!(karpctl(&["convert"], None).status.code(), Some(2), "missing -f is a usage error");
    assert_eq!(karpctl(&["convert", "-f", "-", "--strictly"], None).status.code(), Some(2));
}

/// A Provisioner as the seed's own documents write it: no role, no instance profile.
const PROVISIONER_NO_ROLE: &str = "apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata: {name: default}
spec:
  provider:
    subnetSelector: {karpenter.sh/discovery: demo}
    securityGroupSelector: {karpenter.sh/discovery: demo}
";

#[test]
fn cluster_flag_gives_karpctls_node_role() {
    let out = karpctl(&["convert", "-f", "-", "-c", "demo"], Some(PROVISIONER_NO_ROLE));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("role: KarpenterNodeRole-demo"));
    // The name is shortened exactly as init shortens it.
    let long = "c".repeat(60);
    let out = karpctl(&["convert", "-f", "-", "-c", &long, "-o", "json"], Some(PROVISIONER_NO_ROLE));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let role = doc["documents"][1]["content"]["spec"]["role"].as_str().unwrap().to_string();
    assert_eq!(role, karpctl::names::node_role(&long).name);
    assert_eq!(role.len(), 64);
    // --node-role still wins; without either, the error says both ways out.
    let out = karpctl(&["convert", "-f", "-", "-c", "demo", "--node-role", "Mine"], Some(PROVISIONER_NO_ROLE));
    assert!(String::from_utf8_lossy(&out.stdout).contains("role: Mine"));
    let out = karpctl(&["convert", "-f", "-"], Some(PROVISIONER_NO_ROLE));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass -c CLUSTER"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = karpctl(&["convert", "-f", "-", "-c", "bad name"], Some(PROVISIONER_NO_ROLE));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid cluster name"));
}

#[test]
fn a_v1beta1_provisioner_converts_as_v1alpha5_with_a_warning() {
    let input = PROVISIONER.replace("karpenter.sh/v1alpha5", "karpenter.sh/v1beta1");
    let out = karpctl(&["convert", "-f", "-", "-c", "demo"], Some(&input));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("karpenter.sh/v1beta1 never had a Provisioner kind; converted as karpenter.sh/v1alpha5"),
        "{stderr}"
    );
    let expected = karpctl(&["convert", "-f", "-", "-c", "demo"], Some(PROVISIONER));
    assert_eq!(out.stdout, expected.stdout, "the same conversion as v1alpha5");
    // --strict refuses it like any warning.
    let out = karpctl(&["convert", "-f", "-", "-c", "demo", "--strict"], Some(&input));
    assert_eq!(out.status.code(), Some(1));
}
