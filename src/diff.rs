//! What differs between a document karpctl found and the one it wants, shown the way
//! `terraform plan` does: the lines of both documents that differ, with a little context, under
//! the `update` line of a plan and the failing check of `doctor` (and as `diff` in JSON).
//!
//! Both documents are printed as YAML (no brackets or trailing commas to churn) after the found
//! one is brought into the wanted one's shape wherever the two are equal by the resource's own
//! comparison: the same key order, and (for IAM) a lone value shown as the one-element list it
//! equals. So the diff shows exactly what the comparison objected to, and nothing it accepted.
//! The line diff itself is the `similar` crate's (Myers), not ours.

use serde_json::{Map, Value};
use similar::{ChangeTag, TextDiff};

use crate::resources::manifest::contains;
use crate::resources::policy_eq;

/// Lines of unchanged context kept around each change: enough to see where a line sits in a
/// statement (its `Sid`, `Effect`), few enough to keep a plan readable.
const CONTEXT: usize = 3;

/// How a resource compares its document: the diff follows the same rule, so it shows a
/// difference exactly when the resource reports drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Equal as JSON values (event patterns, helm values).
    Exact,
    /// Equal as IAM evaluates policies: a lone value equals a one-element list, `true` equals
    /// `"true"` (permission, trust and queue policies).
    Iam,
    /// Every wanted field is there with its value; fields the server added are not drift
    /// (server-side-applied manifests).
    Fields,
}

impl Compare {
    fn same(self, have: &Value, want: &Value) -> bool {
        match self {
            Compare::Exact => have == want,
            Compare::Iam => policy_eq(have, want),
            Compare::Fields => contains(have, want),
        }
    }
}

/// The diff of `have` (found) against `want` (desired) as lines starting with `-` (found only),
/// `+` (wanted only) or ` ` (context), hunks separated by `...`; `None` when they compare equal.
pub fn documents(have: &Value, want: &Value, how: Compare) -> Option<String> {
    if how.same(have, want) {
        return None;
    }
    let old = yaml(&conform(have, want, how));
    let new = yaml(want);
    let diff = TextDiff::from_lines(&old, &new);
    let wanted: Vec<&str> = new.lines().collect();
    let mut out: Vec<String> = Vec::new();
    for (i, group) in diff.grouped_ops(CONTEXT).iter().enumerate() {
        let start = group.first().map_or(0, |op| op.new_range().start);
        let path = ancestors(&wanted, start);
        if i > 0 || !path.is_empty() {
            out.push("  ...".to_string());
        }
        out.extend(path.into_iter().map(|l| format!("  {l}")));
        for op in group {
            for change in diff.iter_changes(op) {
                let sign = match change.tag() {
                    ChangeTag::Delete => '-',
                    ChangeTag::Insert => '+',
                    ChangeTag::Equal => ' ',
                };
                out.push(format!("{sign} {}", change.value().trim_end_matches('\n')));
            }
        }
    }
    // Equal by text but not by the rule (a number against a string of other digits, say, both
    // printed alike) still differs: show both values whole rather than nothing.
    if out.is_empty() {
        out.push(format!("- {}", have));
        out.push(format!("+ {}", want));
    }
    Some(out.join("\n"))
}

/// Several labelled diffs of one resource as one text (a queue's policy and its attributes).
pub fn join(parts: impl IntoIterator<Item = Option<String>>) -> Option<String> {
    let parts: Vec<String> = parts.into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// The lines of a YAML text that enclose line `at` (its parent key, that key's parent, ...),
/// outermost first: printed above a hunk, they say where it is (`Statement:`, `- Sid: X`) the
/// way terraform names the block a change is in.
fn ancestors<'a>(lines: &[&'a str], at: usize) -> Vec<&'a str> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let item = |l: &str| l.trim_start().starts_with('-');
    let Some(mut current) = lines.get(at).copied() else { return Vec::new() };
    let mut out = Vec::new();
    for line in lines[..at].iter().rev() {
        // A list item's parent is the key above it at its own indent (YAML does not indent a
        // list under its key); anything else's parent is the nearest line indented less.
        let (i, c) = (indent(line), indent(current));
        let parent = if item(current) { i < c || (i == c && !item(line)) } else { i < c };
        if !line.trim().is_empty() && parent {
            out.push(*line);
            current = line;
        }
        if indent(current) == 0 && !item(current) {
            break;
        }
    }
    out.reverse();
    out
}

fn yaml(v: &Value) -> String {
    // A JSON value always serialises; the fallback only keeps this total.
    serde_yaml_ng::to_string(v).unwrap_or_else(|_| v.to_string())
}

/// `have` reshaped to look like `want` wherever the two compare equal under `how`, and keyed in
/// `want`'s order (keys only `have` has follow, sorted), so that a line diff shows only what
/// truly differs.
fn conform(have: &Value, want: &Value, how: Compare) -> Value {
    if how.same(have, want) {
        return want.clone();
    }
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => {
            let mut out = Map::new();
            for (k, wv) in w {
                if let Some(hv) = h.get(k) {
                    out.insert(k.clone(), conform(hv, wv, how));
                }
            }
            // Fields the server added around the wanted ones are not drift.
            if how != Compare::Fields {
                let mut extra: Vec<(&String, &Value)> = h.iter().filter(|(k, _)| !w.contains_key(*k)).collect();
                extra.sort_by(|a, b| a.0.cmp(b.0));
                for (k, hv) in extra {
                    out.insert(k.clone(), sorted(hv));
                }
            }
            Value::Object(out)
        }
        (Value::Array(h), Value::Array(w)) => Value::Array(
            h.iter()
                .enumerate()
                .map(|(i, hv)| match counterpart(hv, i, w) {
                    Some(wv) => conform(hv, wv, how),
                    None => sorted(hv),
                })
                .collect(),
        ),
        // IAM reads a lone value as a one-element list: show it as one next to a wanted list.
        (h, Value::Array(_)) if how == Compare::Iam && !h.is_array() => {
            conform(&Value::Array(vec![h.clone()]), want, how)
        }
        (h, _) => sorted(h),
    }
}

/// The wanted element an element of a found list is compared with: the statement with the same
/// `Sid` when statements carry one (a statement added in the middle shifts the rest), else the
/// element at the same place.
fn counterpart<'a>(have: &Value, index: usize, want: &'a [Value]) -> Option<&'a Value> {
    if let Some(sid) = have.get("Sid").and_then(Value::as_str) {
        if let Some(w) = want.iter().find(|w| w.get("Sid").and_then(Value::as_str) == Some(sid)) {
            return Some(w);
        }
    }
    want.get(index)
}

/// A found value with no wanted counterpart, its keys sorted so the output is deterministic.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(actions: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "AllowRead", "Effect": "Allow", "Action": actions, "Resource": "*"},
            {"Sid": "AllowTag", "Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "*",
             "Condition": {"StringEquals": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}}
        ]})
    }

    #[test]
    fn equal_documents_have_no_diff() {
        let want = policy(json!(["ec2:DescribeImages"]));
        assert_eq!(documents(&want, &want, Compare::Iam), None);
        // IAM's equivalences are not differences.
        assert_eq!(documents(&policy(json!("ec2:DescribeImages")), &want, Compare::Iam), None);
    }

    #[test]
    fn a_missing_action_is_the_only_changed_line() {
        let want = policy(json!(["ec2:DescribeImages", "ec2:DescribeSubnets"]));
        // Found in another key order and with the lone action unlisted: neither is shown.
        let have = json!({"Statement": [
            {"Resource": "*", "Action": "ec2:DescribeImages", "Effect": "Allow", "Sid": "AllowRead"},
            {"Sid": "AllowTag", "Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "*",
             "Condition": {"StringEquals": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}}
        ], "Version": "2012-10-17"});
        let d = documents(&have, &want, Compare::Iam).unwrap();
        let changed: Vec<&str> = d.lines().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(changed, ["+   - ec2:DescribeSubnets"], "{d}");
        assert!(d.contains("  - Sid: AllowRead"), "context names the statement:\n{d}");
        assert!(d.starts_with("  ...\n  Statement:\n  - Sid: AllowRead\n"), "{d}");
        let lines = ["a:", "- b: 1", "  c:", "  - x", "  - y"];
        assert_eq!(ancestors(&lines, 4), ["a:", "- b: 1", "  c:"]);
        assert_eq!(ancestors(&lines, 2), ["a:", "- b: 1"]);
        assert!(ancestors(&lines, 0).is_empty());
    }

    #[test]
    fn a_changed_condition_shows_both_values_and_extra_keys_show_as_removed() {
        let want = policy(json!("ec2:DescribeImages"));
        let mut have = want.clone();
        have["Statement"][1]["Condition"]["StringEquals"]["aws:RequestTag/karpenter.sh/nodepool"] = json!("x");
        have["Statement"][0]["NotResource"] = json!("arn:aws:s3:::b");
        let d = documents(&have, &want, Compare::Iam).unwrap();
        assert!(d.contains("-       aws:RequestTag/karpenter.sh/nodepool: x"), "{d}");
        assert!(d.contains("+       aws:RequestTag/karpenter.sh/nodepool: '*'"), "{d}");
        assert!(d.contains("-   NotResource: arn:aws:s3:::b"), "{d}");
    }

    #[test]
    fn statements_are_matched_by_sid() {
        let want = policy(json!("ec2:DescribeImages"));
        let mut have = want.clone();
        have["Statement"].as_array_mut().unwrap().remove(0);
        let d = documents(&have, &want, Compare::Iam).unwrap();
        assert!(d.lines().filter(|l| l.starts_with('-')).count() == 0, "only additions:\n{d}");
        assert!(d.contains("+ - Sid: AllowRead"), "{d}");
    }

    #[test]
    fn server_defaults_are_not_shown_for_manifests() {
        let want =
            json!({"spec": {"role": "KarpenterNodeRole-demo", "amiSelectorTerms": [{"alias": "al2023@latest"}]}});
        let have = json!({"spec": {"role": "other", "metadataOptions": {"httpTokens": "required"},
                          "amiSelectorTerms": [{"alias": "al2023@latest"}]}});
        let d = documents(&have, &want, Compare::Fields).unwrap();
        assert!(!d.contains("metadataOptions"), "{d}");
        assert!(d.contains("-   role: other") && d.contains("+   role: KarpenterNodeRole-demo"), "{d}");
        assert_eq!(documents(&have, &have, Compare::Fields), None);
    }

    #[test]
    fn exact_comparison_shows_added_values_and_far_changes_in_separate_hunks() {
        let want = json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9, "j": 10});
        let mut have = want.clone();
        have["a"] = json!(0);
        have["j"] = json!(0);
        have["extra"] = json!(true);
        let d = documents(&have, &want, Compare::Exact).unwrap();
        assert!(d.contains("\n  ...\n"), "{d}");
        assert!(d.contains("- extra: true"), "{d}");
        assert_eq!(join([None, Some("x".into()), Some("y".into())]).as_deref(), Some("x\ny"));
        assert_eq!(join([None, None]), None);
    }
}
