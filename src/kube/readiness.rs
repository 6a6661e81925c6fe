//! Reading status conditions: which condition explains why an object is not Ready.

use std::fmt;

use serde_json::Value;

/// One entry of an object's `status.conditions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `Ready`, `SubnetsReady`, `Available`, ...
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason, when given.
    pub reason: Option<String>,
    /// The human-readable message, when given.
    pub message: Option<String>,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.type_, self.status)?;
        match (&self.reason, &self.message) {
            (_, Some(m)) if !m.is_empty() => write!(f, ": {m}"),
            (Some(r), _) if !r.is_empty() => write!(f, " ({r})"),
            _ => Ok(()),
        }
    }
}

/// Whether an object is ready, and if not, the condition that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The readiness condition is True.
    Ready,
    /// Not (yet) ready: the most telling condition (a False one other than the summary, else
    /// the summary), or None when the object has no conditions yet.
    NotReady(Option<Condition>),
}

/// The object's conditions, in order.
pub fn conditions(object: &Value) -> Vec<Condition> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| Condition {
                    type_: s(c, "type").unwrap_or_default(),
                    status: s(c, "status").unwrap_or_else(|| "Unknown".into()),
                    reason: s(c, "reason"),
                    message: s(c, "message"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Readiness by the condition `summary` (`Ready` for Karpenter's resources): a pure function of
/// the object, so `doctor` can judge one read and the wait loop many.
pub fn readiness(object: &Value, summary: &str) -> Readiness {
    let all = conditions(object);
    if all.iter().any(|c| c.type_ == summary && c.status == "True") {
        return Readiness::Ready;
    }
    let failing = all
        .iter()
        .find(|c| c.type_ != summary && c.status == "False")
        .or_else(|| all.iter().find(|c| c.type_ == summary));
    Readiness::NotReady(failing.cloned())
}

/// A Deployment is available as Kubernetes (and `helm --wait`) judge it: the controller has seen
/// the current spec and the `Available` condition is True.
pub fn deployment_readiness(object: &Value) -> Readiness {
    let generation = object.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let observed = object.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
    let all = conditions(object);
    let available = all.iter().find(|c| c.type_ == "Available");
    if observed >= generation && available.is_some_and(|c| c.status == "True") {
        return Readiness::Ready;
    }
    if observed < generation {
        return Readiness::NotReady(Some(Condition {
            type_: "Available".into(),
            status: "Unknown".into(),
            reason: Some("RolloutPending".into()),
            message: Some("the deployment controller has not seen the new spec yet".into()),
        }));
    }
    // A stuck rollout says why in Progressing (ProgressDeadlineExceeded); otherwise Available
    // carries "Deployment does not have minimum availability."; else count replicas.
    let progressing = all.iter().find(|c| c.type_ == "Progressing" && c.status == "False");
    let replicas = object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let ready = object.pointer("/status/availableReplicas").and_then(Value::as_i64).unwrap_or(0);
    let counted = Condition {
        type_: "Available".into(),
        status: available.map(|c| c.status.clone()).unwrap_or_else(|| "Unknown".into()),
        reason: None,
        message: Some(format!(
            "{ready}/{replicas} replicas available{}",
            available.and_then(|c| c.message.as_deref()).map(|m| format!("; {m}")).unwrap_or_default()
        )),
    };
    Readiness::NotReady(Some(progressing.cloned().unwrap_or(counted)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn ready_when_ready_true() {
        let o = json!({"status": {"conditions": [
            {"type": "SubnetsReady", "status": "True"},
            {"type": "Ready", "status": "True"}]}});
        assert_eq!(readiness(&o, "Ready"), Readiness::Ready);
    }

    #[test]
    fn the_failing_condition_is_the_false_one_not_the_summary() {
        let o = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "UnhealthyDependents", "message": "SubnetsReady=False"},
            {"type": "SubnetsReady", "status": "False", "reason": "SubnetsNotFound", "message": "SubnetSelector did not match any Subnets"},
            {"type": "AMIsReady", "status": "True"}]}});
        let Readiness::NotReady(Some(c)) = readiness(&o, "Ready") else { panic!("not ready expected") };
        assert_eq!(c.type_, "SubnetsReady");
        assert_eq!(c.to_string(), "SubnetsReady=False: SubnetSelector did not match any Subnets");
        assert_eq!(readiness(&json!({}), "Ready"), Readiness::NotReady(None));
        let only_summary = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "AwaitingReconciliation"}]}});
        let Readiness::NotReady(Some(c)) = readiness(&only_summary, "Ready") else { panic!() };
        assert_eq!(c.to_string(), "Ready=Unknown (AwaitingReconciliation)");
    }

    #[test]
    fn deployment_available_needs_the_current_generation() {
        let mut d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "availableReplicas": 2, "conditions": [{"type": "Available", "status": "True"}]}});
        assert!(matches!(deployment_readiness(&d), Readiness::NotReady(_)));
        d["status"]["observedGeneration"] = json!(2);
        assert_eq!(deployment_readiness(&d), Readiness::Ready);
        let stuck = json!({"metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "availableReplicas": 0, "conditions": [
                {"type": "Available", "status": "False", "message": "Deployment does not have minimum availability."}]}});
        let Readiness::NotReady(Some(c)) = deployment_readiness(&stuck) else { panic!() };
        assert_eq!(
            c.message.as_deref(),
            Some("0/2 replicas available; Deployment does not have minimum availability.")
        );
    }
}
