//! Documents from templates: every policy, pattern, values file and manifest karpctl writes is
//! rendered from a minijinja template under `templates/` (embedded in the binary) with strict
//! undefined variables, then parsed, so an invalid document can never leave the program.

use minijinja::{context, AutoEscape, Environment, UndefinedBehavior, Value as JValue};
use serde_json::Value;

use crate::desired::{issuer_host_path, AuthMode, Desired, PolicyPart, SERVICE_ACCOUNT};
use crate::error::{Error, ErrorKind, Result};

/// IAM's limit on a managed policy document, counted without white space.
pub const POLICY_SIZE_MAX: usize = 6144;

/// The templates, embedded so the binary is self-contained.
const TEMPLATES: &[(&str, &str)] = &[
    ("policies/node-lifecycle.json.j2", include_str!("../templates/policies/node-lifecycle.json.j2")),
    ("policies/iam-integration.json.j2", include_str!("../templates/policies/iam-integration.json.j2")),
    ("policies/eks-integration.json.j2", include_str!("../templates/policies/eks-integration.json.j2")),
    ("policies/interruption.json.j2", include_str!("../templates/policies/interruption.json.j2")),
    ("policies/zonal-shift.json.j2", include_str!("../templates/policies/zonal-shift.json.j2")),
    ("policies/resource-discovery.json.j2", include_str!("../templates/policies/resource-discovery.json.j2")),
    ("trust/irsa.json.j2", include_str!("../templates/trust/irsa.json.j2")),
    ("trust/pod-identity.json.j2", include_str!("../templates/trust/pod-identity.json.j2")),
    ("trust/node.json.j2", include_str!("../templates/trust/node.json.j2")),
    ("queue-policy.json.j2", include_str!("../templates/queue-policy.json.j2")),
    ("event-pattern.json.j2", include_str!("../templates/event-pattern.json.j2")),
    ("manifests/helm-values.yaml.j2", include_str!("../templates/manifests/helm-values.yaml.j2")),
    ("manifests/ec2nodeclass.yaml.j2", include_str!("../templates/manifests/ec2nodeclass.yaml.j2")),
    ("manifests/nodepool.yaml.j2", include_str!("../templates/manifests/nodepool.yaml.j2")),
];

/// What kind of document a rendered entry is (the contract's `render` kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocKind {
    /// An IAM role's trust policy.
    TrustPolicy,
    /// An IAM permission policy.
    PermissionPolicy,
    /// The SQS queue policy.
    QueuePolicy,
    /// An EventBridge rule's event pattern.
    EventPattern,
    /// Values for a helm release.
    HelmValues,
    /// A Kubernetes manifest.
    Manifest,
}

/// One rendered document, labelled with the resource it belongs to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Document {
    /// `<kind>/<name>` as in the contract.
    pub resource: String,
    /// Its kind.
    pub kind: DocKind,
    /// The document, as JSON (YAML documents appear as their JSON equivalent).
    pub content: Value,
    /// The exact text karpctl writes (YAML for values and manifests, pretty JSON otherwise).
    #[serde(skip)]
    pub text: String,
}

impl Document {
    /// A JSON document of `resource` (shown pretty-printed).
    pub fn json(resource: &crate::resources::ResourceId, kind: DocKind, v: &Value) -> Self {
        let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
        Document { resource: resource.to_string(), kind, content: v.clone(), text }
    }

    /// A YAML document of `resource`, kept as written, with its JSON equivalent.
    pub fn yaml(resource: &crate::resources::ResourceId, kind: DocKind, text: &str) -> Result<Self> {
        let label = if kind == DocKind::HelmValues { "helm values" } else { "manifest" };
        Ok(Document {
            resource: resource.to_string(),
            kind,
            content: yaml_to_json(label, text)?,
            text: text.to_string(),
        })
    }
}

/// The documents of a set, in its order: each resource says which are its own
/// ([`crate::resources::Resource::documents`]).
pub fn documents(set: &crate::resources::Set, d: &Desired, docs: &Documents) -> Result<Vec<Document>> {
    let mut out = Vec::new();
    for r in set {
        out.extend(r.documents(d, docs)?);
    }
    Ok(out)
}

/// Every document of the desired state, rendered once per run.
#[derive(Debug, Clone)]
pub struct Documents {
    /// The controller role's trust policy for the chosen auth mode.
    pub controller_trust: Value,
    /// The node role's trust policy.
    pub node_trust: Value,
    /// The controller policies of the version, in `PolicyPart::ALL` order, with their names.
    pub policies: Vec<(PolicyPart, String, Value)>,
    /// The interruption queue's policy.
    pub queue_policy: Value,
    /// The version's event rules' names and patterns, in `versions::ALL_RULES` order.
    pub event_patterns: Vec<(String, Value)>,
    /// Helm values for the controller chart (YAML text as written to a values file).
    pub helm_values_yaml: String,
    /// The default EC2NodeClass manifest (YAML text).
    pub node_class_yaml: String,
    /// The default NodePool manifest (YAML text).
    pub node_pool_yaml: String,
}

fn environment() -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Templates quote explicitly (`tojson`) where a value stands alone; values inside strings are
    // validated names, so minijinja's JSON auto-escaping for `.json.j2` would only double-quote them.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    for (name, source) in TEMPLATES {
        env.add_template(name, source).map_err(|e| render_error(name, e))?;
    }
    Ok(env)
}

fn render_error(name: &str, e: minijinja::Error) -> Error {
    Error::defect(format!("failed to render template {name}")).with_cause(e.to_string())
}

fn render_text(env: &Environment<'_>, name: &str, ctx: &JValue) -> Result<String> {
    env.get_template(name).and_then(|t| t.render(ctx)).map_err(|e| render_error(name, e))
}

fn render_json(env: &Environment<'_>, name: &str, ctx: &JValue) -> Result<Value> {
    let text = render_text(env, name, ctx)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::defect(format!("template {name} rendered invalid JSON")).with_cause(e.to_string()))
}

/// Parse rendered YAML text into its JSON equivalent.
pub fn yaml_to_json(name: &str, text: &str) -> Result<Value> {
    serde_yaml_ng::from_str(text)
        .map_err(|e| Error::new(ErrorKind::Render, format!("{name} is not valid YAML")).with_cause(e.to_string()))
}

/// The size IAM counts for a policy: its JSON without insignificant white space.
pub fn policy_size(doc: &Value) -> usize {
    doc.to_string().len()
}

impl Documents {
    /// Render every document for the desired state, checking policy sizes.
    pub fn render(d: &Desired) -> Result<Self> {
        let env = environment()?;
        let t = &d.target;
        let issuer_hp = match &t.issuer {
            Some(i) => issuer_host_path(i)?,
            None => String::new(),
        };
        let auth = match t.auth {
            AuthMode::Irsa => "irsa",
            AuthMode::PodIdentity => "pod-identity",
        };
        let ctx = context! {
            partition => t.partition.as_str(),
            url_suffix => t.partition.url_suffix(),
            region => t.region,
            account => t.account,
            cluster => t.cluster,
            namespace => t.namespace,
            service_account => SERVICE_ACCOUNT,
            karpenter_version => t.karpenter_version,
            interruption => t.interruption,
            auth => auth,
            issuer_host_path => issuer_hp,
            oidc_provider_arn => d.oidc_provider_arn().unwrap_or_default(),
            node_role => d.names.node_role.name,
            node_role_arn => d.node_role_arn(),
            controller_role_arn => d.controller_role_arn(),
            queue_name => d.names.queue.name,
            queue_arn => d.queue_arn(),
            placement_groups => d.release.placement_groups,
            instance_status => d.release.instance_status,
        };
        let trust_template = match t.auth {
            AuthMode::Irsa => "trust/irsa.json.j2",
            AuthMode::PodIdentity => "trust/pod-identity.json.j2",
        };
        let mut policies = Vec::new();
        for (part, name) in d.wanted_policies() {
            let doc = render_json(&env, part.template(), &ctx)?;
            let size = policy_size(&doc);
            if size > POLICY_SIZE_MAX {
                return Err(Error::invalid(
                    format!("policy {} would be {size} characters, over IAM's limit of {POLICY_SIZE_MAX}", name.name),
                    "use a shorter cluster name; the policy embeds it several times",
                ));
            }
            policies.push((*part, name.name.clone(), doc));
        }
        let mut event_patterns = Vec::new();
        for (rule, name) in d.wanted_rules() {
            let c = context! { source => rule.source, detail_type => rule.detail_type };
            event_patterns.push((name.name.clone(), render_json(&env, "event-pattern.json.j2", &c)?));
        }
        let docs = Documents {
            controller_trust: render_json(&env, trust_template, &ctx)?,
            node_trust: render_json(&env, "trust/node.json.j2", &ctx)?,
            policies,
            queue_policy: render_json(&env, "queue-policy.json.j2", &ctx)?,
            event_patterns,
            helm_values_yaml: render_text(&env, "manifests/helm-values.yaml.j2", &ctx)?,
            node_class_yaml: render_text(&env, "manifests/ec2nodeclass.yaml.j2", &ctx)?,
            node_pool_yaml: render_text(&env, "manifests/nodepool.yaml.j2", &ctx)?,
        };
        // Parse the YAML now so a broken template fails here, not in helm or the API server.
        for (name, text) in [
            ("helm values", &docs.helm_values_yaml),
            ("EC2NodeClass", &docs.node_class_yaml),
            ("NodePool", &docs.node_pool_yaml),
        ] {
            yaml_to_json(name, text)?;
        }
        Ok(docs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::tests::target;
    use serde_json::json;

    #[test]
    fn irsa_trust_names_provider_without_scheme_and_has_aud() {
        let d = Desired::new(target(AuthMode::Irsa)).unwrap();
        let docs = Documents::render(&d).unwrap();
        let hp = "oidc.eks.eu-west-1.amazonaws.com/id/ABC123";
        assert_eq!(
            docs.controller_trust["Statement"][0],
            json!({
                "Effect": "Allow",
                "Principal": {"Federated": format!("arn:aws:iam::111122223333:oidc-provider/{hp}")},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    format!("{hp}:aud"): "sts.amazonaws.com",
                    format!("{hp}:sub"): "system:serviceaccount:kube-system:karpenter"
                }}
            })
        );
    }

    #[test]
    fn pod_identity_trust() {
        let d = Desired::new(target(AuthMode::PodIdentity)).unwrap();
        let docs = Documents::render(&d).unwrap();
        assert_eq!(docs.controller_trust["Statement"][0]["Principal"], json!({"Service": "pods.eks.amazonaws.com"}));
        assert_eq!(docs.controller_trust["Statement"][0]["Action"], json!(["sts:AssumeRole", "sts:TagSession"]));
        // Scoped with the session tags EKS Pod Identity sets (EKS user guide, "Create IAM role
        // with trust policy required by EKS Pod Identity") and the calling account.
        let t = &d.target;
        assert_eq!(
            docs.controller_trust["Statement"][0]["Condition"]["StringEquals"],
            json!({
                "aws:SourceAccount": t.account,
                "aws:RequestTag/eks-cluster-name": t.cluster,
                "aws:RequestTag/kubernetes-namespace": t.namespace,
                "aws:RequestTag/kubernetes-service-account": "karpenter",
            })
        );
    }

    #[test]
    fn helm_values_follow_the_options() {
        let mut t = target(AuthMode::Irsa);
        let d = Desired::new(t.clone()).unwrap();
        let v = yaml_to_json("v", &Documents::render(&d).unwrap().helm_values_yaml).unwrap();
        assert_eq!(v["settings"], json!({"clusterName": "demo", "interruptionQueue": "demo"}));
        assert_eq!(
            v["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"],
            "arn:aws:iam::111122223333:role/KarpenterControllerRole-demo"
        );
        t.auth = AuthMode::PodIdentity;
        t.interruption = false;
        let d = Desired::new(t).unwrap();
        let v = yaml_to_json("v", &Documents::render(&d).unwrap().helm_values_yaml).unwrap();
        assert_eq!(v["settings"], json!({"clusterName": "demo"}));
        assert!(v.get("serviceAccount").is_none());
    }

    #[test]
    fn node_trust_uses_the_china_suffix() {
        let mut t = target(AuthMode::PodIdentity);
        t.partition = crate::desired::Partition::AwsCn;
        t.region = "cn-north-1".into();
        let docs = Documents::render(&Desired::new(t).unwrap()).unwrap();
        assert_eq!(docs.node_trust["Statement"][0]["Principal"]["Service"], "ec2.amazonaws.com.cn");
    }

    fn list(d: &Desired) -> Vec<Document> {
        let cluster = crate::cluster::ClusterInfo::gone(
            &d.target.cluster,
            &d.target.region,
            crate::cluster::Caller {
                arn: String::new(),
                account: d.target.account.clone(),
                partition: d.target.partition,
            },
        );
        let set = crate::resources::desired_set(d, &cluster, None).unwrap();
        documents(&set, d, &Documents::render(d).unwrap()).unwrap()
    }

    #[test]
    fn list_follows_options() {
        let mut t = target(AuthMode::PodIdentity);
        let d = Desired::new(t.clone()).unwrap();
        let all = list(&d);
        assert_eq!(all.len(), 1 + 6 + 1 + 1 + 5 + 1 + 2);
        let order: Vec<&str> = all.iter().map(|doc| doc.resource.split('/').next().unwrap_or("")).collect();
        let mut expected = vec!["iam-role"];
        expected.extend(["iam-policy"; 6]);
        expected.extend(["iam-role", "sqs-queue"]);
        expected.extend(["event-rule"; 5]);
        expected.extend(["helm-release", "ec2nodeclass", "nodepool"]);
        assert_eq!(order, expected);
        t.interruption = false;
        t.default_nodepool = false;
        let d = Desired::new(t).unwrap();
        let some = list(&d);
        assert_eq!(some.len(), 1 + 6 + 1 + 1);
        assert!(some.iter().all(|doc| !doc.resource.starts_with("event-rule/")));
    }

    #[test]
    fn policies_fit_even_for_the_longest_cluster_name() {
        let mut t = target(AuthMode::PodIdentity);
        t.cluster = "c".repeat(100);
        let d = Desired::new(t).unwrap();
        let docs = Documents::render(&d).unwrap();
        assert!(docs.policies.iter().all(|(_, _, p)| policy_size(p) <= POLICY_SIZE_MAX));
    }
}
