//! `karpctl init` against the emulator: what a fresh run creates (and its content), that a
//! second run writes nothing, the install options (IRSA, CONFIG_MAP clusters,
//! --no-interruption), dry runs, refusals before any write, crash recovery, the JSON document,
//! and the compiled binary (confirmation without a terminal, --emit). Drift repair, foreign
//! resources and --adopt are in init_drift.rs.

use crate::support;

use std::collections::BTreeMap;

use karpctl::desired::AuthMode;
use karpctl::resources::managed_policy::{version_record, VERSION_TAG};
use karpctl::resources::policy_eq;
use karpctl::ErrorKind;
use serde_json::{json, Value};
use support::install::{
    attached, changes, detail, ec2_tags, iam_tags, ownership, pending, policy_document, queue_attributes, queue_url,
    render, role_trust, snapshot, target, write_ops,
};
use support::{karpctl_bin, Env, SeededCluster, DEFAULT_ACCOUNT, REGION};

const INIT: &[&str] = &["init", "-c", "demo", "--yes"];

/// How many resources a default install of `demo` considers (`expected_ids`): with the
/// pod-identity default on an API_AND_CONFIG_MAP cluster, all but the OIDC provider and the
/// aws-auth mapping (access entries are used instead) are created.
const CONSIDERED: usize = 29;

/// How many of them live in the cluster (two helm releases, the EC2NodeClass, the NodePool,
/// the aws-auth mapping).
const CLUSTER_SIDE: usize = 5;

/// The ids of the cluster side of a default install of `demo` in `account`.
fn cluster_side_ids(account: &str) -> Vec<String> {
    vec![
        format!("aws-auth/arn:aws:iam::{account}:role/KarpenterNodeRole-demo"),
        "helm-release/kube-system/karpenter-crd".to_string(),
        "helm-release/kube-system/karpenter".to_string(),
        "ec2nodeclass/default".to_string(),
        "nodepool/default".to_string(),
    ]
}

/// Whether a resource is skipped by a default install of `demo` on an API_AND_CONFIG_MAP cluster.
fn skipped_by_default(id: &str) -> bool {
    id.starts_with("oidc-provider/") || id.starts_with("aws-auth/")
}

/// A fresh account with the cluster `demo` (API_AND_CONFIG_MAP).
async fn demo() -> (Env, SeededCluster) {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    (env, seeded)
}

/// Every resource id of a default install of `demo`, in the set's order.
fn expected_ids(env: &Env, seeded: &SeededCluster, issuer_host_path: &str) -> Vec<String> {
    let mut ids = vec![
        format!("oidc-provider/{issuer_host_path}"),
        "iam-role/KarpenterNodeRole-demo".to_string(),
        "iam-instance-profile/KarpenterNodeInstanceProfile-demo".to_string(),
    ];
    for part in ["NodeLifecycle", "IAMIntegration", "EKSIntegration", "Interruption", "ZonalShift", "ResourceDiscovery"]
    {
        ids.push(format!("iam-policy/KarpenterController{part}Policy-demo"));
    }
    ids.push("iam-role/KarpenterControllerRole-demo".to_string());
    ids.push(format!("access-entry/arn:aws:iam::{}:role/KarpenterNodeRole-demo", env.account));
    ids.push("eks-addon/eks-pod-identity-agent".to_string());
    ids.push("pod-identity-association/kube-system/karpenter".to_string());
    for id in seeded.subnet_ids.iter().chain([&seeded.security_group_id]) {
        ids.push(format!("ec2-tags/{id}"));
    }
    ids.push("service-linked-role/AWSServiceRoleForEC2Spot".to_string());
    ids.push("sqs-queue/demo".to_string());
    for kind in
        ["ScheduledChange", "SpotInterruption", "Rebalance", "InstanceStateChange", "CapacityReservationInterruption"]
    {
        ids.push(format!("event-rule/Karpenter-demo-{kind}"));
    }
    ids.extend(cluster_side_ids(&env.account));
    ids
}

fn position(ch: &[(String, String)], id: &str) -> usize {
    ch.iter().position(|(r, _)| r == id).unwrap_or_else(|| panic!("{id} not in {ch:?}"))
}

fn count<'a>(ops: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for op in ops {
        *m.entry(op.to_string()).or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn fresh_init_creates_exactly_the_expected_set_with_the_rendered_content() {
    let (env, seeded) = demo().await;
    let t = target(&env, "demo").await;
    let issuer = t.issuer.clone().expect("the emulator gives clusters an issuer");
    let hp = issuer.strip_prefix("https://").unwrap().to_string();
    let (d, docs) = render(t);
    let report = env.run(INIT).await.unwrap();
    assert_eq!(report.exit_code, 0);

    // The set: every expected resource once, created; only the OIDC provider (pod-identity) and
    // the aws-auth mapping (the cluster has access entries) skipped.
    let ch = changes(&report);
    let mut got: Vec<&str> = ch.iter().map(|(r, _)| r.as_str()).collect();
    let mut want = expected_ids(&env, &seeded, &hp);
    assert_eq!(want.len(), CONSIDERED);
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for (r, a) in &ch {
        let expect = if skipped_by_default(r) { "skip" } else { "create" };
        assert_eq!(a, expect, "{r}");
    }
    assert_eq!(detail(&report, &format!("oidc-provider/{hp}")), "not needed with --auth pod-identity");
    let aws_auth = format!("aws-auth/{}", d.node_role_arn());
    assert_eq!(detail(&report, &aws_auth), "the cluster uses EKS access entries (see access-entry/...)");
    assert_eq!(report.to_json()["cluster_side"]["status"], "ready");
    // Listed in apply order: whatever a resource needs comes before it.
    let node_role = position(&ch, "iam-role/KarpenterNodeRole-demo");
    let controller_role = position(&ch, "iam-role/KarpenterControllerRole-demo");
    for (_, name) in &d.names.policies {
        assert!(position(&ch, &format!("iam-policy/{}", name.name)) < controller_role);
    }
    assert!(node_role < position(&ch, "iam-instance-profile/KarpenterNodeInstanceProfile-demo"));
    assert!(node_role < position(&ch, &format!("access-entry/{}", d.node_role_arn())));
    assert!(controller_role < position(&ch, "pod-identity-association/kube-system/karpenter"));
    for rule in &d.names.rules {
        assert!(position(&ch, "sqs-queue/demo") < position(&ch, &format!("event-rule/{}", rule.name)));
    }
    // The cluster side: CRDs before the controller and the manifests; the controller after the
    // identity and the queue it starts with; the NodePool after the EC2NodeClass it references,
    // which comes after the node role it names.
    let crds = position(&ch, "helm-release/kube-system/karpenter-crd");
    let controller = position(&ch, "helm-release/kube-system/karpenter");
    let node_class = position(&ch, "ec2nodeclass/default");
    let node_pool = position(&ch, "nodepool/default");
    assert!(crds < controller && crds < node_class && node_class < node_pool, "{ch:?}");
    for before in
        ["iam-role/KarpenterControllerRole-demo", "pod-identity-association/kube-system/karpenter", "sqs-queue/demo"]
    {
        assert!(position(&ch, before) < controller, "{before} before the controller: {ch:?}");
    }
    assert!(node_role < node_class, "{ch:?}");
    // The cluster side went to the stand-in: two helm upgrades, two server-side applies.
    let helm_writes = env.cluster.helm_writes();
    assert_eq!(helm_writes.len(), 2, "{helm_writes:?}");
    assert!(helm_writes[0].starts_with("helm upgrade --install karpenter-crd "), "{helm_writes:?}");
    assert!(helm_writes[1].starts_with("helm upgrade --install karpenter "), "{helm_writes:?}");
    let api_writes: Vec<String> = env
        .cluster
        .api
        .karpctl_writes()
        .iter()
        .filter(|r| !r.path.ends_with("/selfsubjectaccessreviews"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        api_writes,
        ["PATCH /apis/karpenter.k8s.aws/v1/ec2nodeclasses/default", "PATCH /apis/karpenter.sh/v1/nodepools/default"]
    );

    // Exactly these writes, nothing else.
    let writes = env.recorder.writes();
    let want_writes = count(
        [
            ["CreateRole"; 2].as_slice(),
            &["AttachRolePolicy"; 10],
            &["CreatePolicy"; 6],
            &["CreateInstanceProfile", "AddRoleToInstanceProfile"],
            &["CreateTags"; 4],
            &["CreateServiceLinkedRole", "CreateQueue"],
            &["PutRule"; 5],
            &["PutTargets"; 5],
            &["CreateAccessEntry", "CreateAddon", "CreatePodIdentityAssociation"],
        ]
        .concat(),
    );
    assert_eq!(count(writes.iter().map(|c| c.operation.as_str())), want_writes);

    // Nothing beyond the set exists in the account.
    let state = snapshot(&env, &seeded).await;
    let keys = |k: &str| state[k].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys("roles"), ["KarpenterControllerRole-demo", "KarpenterNodeRole-demo"]);
    let mut policy_names: Vec<String> = d.names.policies.iter().map(|(_, n)| n.name.clone()).collect();
    policy_names.sort();
    assert_eq!(keys("policies"), policy_names);
    assert_eq!(keys("instance_profiles"), ["KarpenterNodeInstanceProfile-demo"]);
    assert_eq!(keys("queues"), ["demo"]);
    assert_eq!(keys("rules").len(), 5);
    assert_eq!(state["oidc_providers"], json!({}));
    assert_eq!(state["service_linked_roles"], json!(["/aws-service-role/spot.amazonaws.com/"]));
    assert_eq!(keys("access_entries"), ["arn:aws:iam::ACCOUNT:role/KarpenterNodeRole-demo"]);
    assert_eq!(state["pod_identity_associations"].as_array().unwrap().len(), 1);
    assert_eq!(keys("addons"), ["eks-pod-identity-agent"]);

    let owned = ownership("demo");
    // Node role: trust, the four AWS managed policies, tags.
    let node_trust = role_trust(&env, "KarpenterNodeRole-demo").await;
    assert!(policy_eq(&node_trust, &docs.node_trust), "{node_trust}");
    assert_eq!(node_trust["Statement"][0]["Principal"]["Service"], "ec2.amazonaws.com");
    assert_eq!(node_trust["Statement"][0]["Effect"], "Allow");
    assert_eq!(
        attached(&env, "KarpenterNodeRole-demo").await,
        [
            "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
            "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
            "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
            "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
        ]
    );
    let role = env.aws.iam.get_role().role_name("KarpenterNodeRole-demo").send().await.unwrap();
    assert_eq!(iam_tags(role.role().unwrap().tags()), owned);

    // Controller role: Pod Identity trust, the six controller policies, tags.
    let controller_trust = role_trust(&env, "KarpenterControllerRole-demo").await;
    assert!(policy_eq(&controller_trust, &docs.controller_trust), "{controller_trust}");
    assert_eq!(controller_trust["Statement"][0]["Principal"]["Service"], "pods.eks.amazonaws.com");
    assert_eq!(controller_trust["Statement"][0]["Action"], json!(["sts:AssumeRole", "sts:TagSession"]));
    let mut policy_arns: Vec<String> = d.names.policies.iter().map(|(_, n)| d.policy_arn(&n.name)).collect();
    policy_arns.sort();
    assert_eq!(attached(&env, "KarpenterControllerRole-demo").await, policy_arns);
    assert!(policy_arns
        .iter()
        .all(|a| a.starts_with(&format!("arn:aws:iam::{}:policy/KarpenterController", env.account))));
    let role = env.aws.iam.get_role().role_name("KarpenterControllerRole-demo").send().await.unwrap();
    assert_eq!(iam_tags(role.role().unwrap().tags()), owned);

    // The six policies: default version equal to the rendered document, tags.
    for (_, name, doc) in &docs.policies {
        let arn = d.policy_arn(name);
        let got = policy_document(&env, &arn).await;
        assert!(policy_eq(&got, doc), "{name}: {got}");
        let p = env.aws.iam.get_policy().policy_arn(&arn).send().await.unwrap();
        // Ownership, and the record of the version karpctl wrote (read by the next run instead
        // of the document).
        let mut tags = owned.clone();
        tags.insert(VERSION_TAG.to_string(), version_record("v1", &doc.to_string()));
        assert_eq!(iam_tags(p.policy().unwrap().tags()), tags, "{name}");
    }
    let iam_integration = policy_document(&env, &d.policy_arn("KarpenterControllerIAMIntegrationPolicy-demo")).await;
    let pass_role = iam_integration["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "AllowPassingInstanceRole")
        .expect("PassRole statement");
    assert_eq!(pass_role["Action"], "iam:PassRole");
    assert_eq!(pass_role["Resource"], format!("arn:aws:iam::{}:role/KarpenterNodeRole-demo", env.account));
    assert!(pass_role["Condition"]["StringEquals"]["iam:PassedToService"]
        .as_array()
        .unwrap()
        .contains(&json!("ec2.amazonaws.com")));

    // Instance profile: holds the node role, tagged.
    let p = env.aws.iam.get_instance_profile().instance_profile_name("KarpenterNodeInstanceProfile-demo").send();
    let p = p.await.unwrap();
    let p = p.instance_profile().unwrap();
    assert_eq!(p.roles().iter().map(|r| r.role_name()).collect::<Vec<_>>(), ["KarpenterNodeRole-demo"]);
    assert_eq!(iam_tags(p.tags()), owned);

    // Discovery tags on the three subnets and the cluster security group.
    for id in seeded.subnet_ids.iter().chain([&seeded.security_group_id]) {
        let tags = ec2_tags(&env, id).await;
        assert_eq!(tags.get("karpenter.sh/discovery").map(String::as_str), Some("demo"), "{id}");
        assert_eq!(tags.get("karpctl.io/discovery-tagged").map(String::as_str), Some("karpctl"), "{id}");
    }

    // Queue: attributes, policy, tags.
    let url = queue_url(&env, "demo").await;
    let attrs = queue_attributes(&env, &url).await;
    assert_eq!(attrs["MessageRetentionPeriod"], "300");
    assert_eq!(attrs["SqsManagedSseEnabled"], "true");
    let queue_policy = karpctl::resources::parse_policy(&attrs["Policy"]).unwrap();
    assert!(policy_eq(&queue_policy, &docs.queue_policy), "{queue_policy}");
    let queue_arn = format!("arn:aws:sqs:{REGION}:{}:demo", env.account);
    let statements = queue_policy["Statement"].as_array().unwrap();
    let allow = statements.iter().find(|s| s["Effect"] == "Allow").unwrap();
    assert_eq!(allow["Action"], "sqs:SendMessage");
    assert_eq!(allow["Resource"], queue_arn.as_str());
    assert_eq!(allow["Principal"]["Service"], json!(["events.amazonaws.com", "sqs.amazonaws.com"]));
    let deny = statements.iter().find(|s| s["Sid"] == "DenyHTTP").unwrap();
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");
    let tags = env.aws.sqs.list_queue_tags().queue_url(&url).send().await.unwrap();
    let tags: BTreeMap<String, String> = tags.tags().cloned().unwrap_or_default().into_iter().collect();
    assert_eq!(tags, owned);

    // Rules: pattern (checked against karpenter-facts §6 literally, and the rendered one), enabled,
    // exactly one target (the queue), tags.
    let facts_table = [
        ("ScheduledChange", "aws.health", "AWS Health Event"),
        ("SpotInterruption", "aws.ec2", "EC2 Spot Instance Interruption Warning"),
        ("Rebalance", "aws.ec2", "EC2 Instance Rebalance Recommendation"),
        ("InstanceStateChange", "aws.ec2", "EC2 Instance State-change Notification"),
        ("CapacityReservationInterruption", "aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning"),
    ];
    let ours: Vec<(&str, &str, &str)> =
        karpctl::versions::ALL_RULES.iter().map(|r| (r.kind, r.source, r.detail_type)).collect();
    assert_eq!(ours, facts_table);
    for (i, (kind, source, detail_type)) in facts_table.iter().enumerate() {
        let name = format!("Karpenter-demo-{kind}");
        let rule = &state["rules"][&name];
        assert_eq!(rule["pattern"], json!({"source": [source], "detail-type": [detail_type]}), "{name}");
        assert_eq!(rule["pattern"], docs.event_patterns[i].1, "{name}");
        assert_eq!(rule["state"], "ENABLED", "{name}");
        assert_eq!(
            rule["targets"],
            json!([{"id": "KarpenterInterruptionQueueTarget", "arn": "arn:aws:sqs:eu-west-1:ACCOUNT:demo"}]),
            "{name}"
        );
        assert_eq!(rule["tags"], json!(owned), "{name}");
    }

    // Access entry (through the emulator extension): EC2_LINUX for the node role, tagged.
    let entry = &state["access_entries"]["arn:aws:iam::ACCOUNT:role/KarpenterNodeRole-demo"];
    assert_eq!(entry["type"], "EC2_LINUX");
    assert_eq!(entry["username"], "system:node:{{EC2PrivateDNSName}}");
    assert_eq!(entry["tags"], json!(owned));
    // Pod Identity association: kube-system/karpenter → the controller role, tagged.
    assert_eq!(
        state["pod_identity_associations"][0],
        json!({
            "namespace": "kube-system",
            "serviceAccount": "karpenter",
            "roleArn": "arn:aws:iam::ACCOUNT:role/KarpenterControllerRole-demo",
            "tags": owned,
        })
    );

    // The Pod Identity agent add-on (through the emulator extension), which the association
    // needs to hand out credentials: installed and tagged.
    assert_eq!(state["addons"]["eks-pod-identity-agent"], json!({"status": "ACTIVE", "tags": owned}));

    // A second run changes nothing and sends zero mutating requests, to AWS or the cluster.
    env.recorder.clear();
    env.cluster.api.clear_requests();
    let again = env.run(INIT).await.unwrap();
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
    assert_eq!(changes(&again).iter().filter(|(_, a)| a == "none").count(), CONSIDERED - 2);
    assert!(env.recorder.calls().len() > CONSIDERED - CLUSTER_SIDE, "the second run observes everything again");
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
    assert_eq!(env.cluster.helm_writes().len(), 2, "no further helm upgrade: {:?}", env.cluster.helm_writes());
    let api_writes: Vec<String> = env
        .cluster
        .api
        .karpctl_writes()
        .iter()
        .filter(|r| !r.path.ends_with("/selfsubjectaccessreviews"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(api_writes, Vec::<String>::new());
    assert_eq!(snapshot(&env, &seeded).await, state);
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let (env, seeded) = demo().await;
    let report = env.run(&["init", "-c", "demo", "--dry-run"]).await.unwrap();
    let ch = changes(&report);
    assert_eq!(ch.iter().filter(|(_, a)| a == "create").count(), CONSIDERED - 2, "{ch:?}");
    for id in cluster_side_ids(&env.account).iter().filter(|id| !skipped_by_default(id)) {
        assert!(ch.contains(&(id.clone(), "create".into())), "{id}: {ch:?}");
    }
    assert_eq!(report.exit_code, 0);
    let doc = report.to_json();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["cluster_side"]["status"], "planned");
    assert!(report.text.contains(&format!("Plan: {} to create", CONSIDERED - 2)), "{}", report.text);
    assert!(!env.recorder.calls().is_empty());
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
    // The cluster side was observed, not written: no helm upgrade, no API write.
    assert!(!env.cluster.helm_calls().is_empty(), "the releases were looked up");
    assert_eq!(env.cluster.helm_writes(), Vec::<String>::new());
    assert_eq!(env.cluster.releases(), json!({}));
    let api_writes: Vec<String> = env
        .cluster
        .api
        .karpctl_writes()
        .iter()
        .filter(|r| !r.path.ends_with("/selfsubjectaccessreviews"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(api_writes, Vec::<String>::new());
    let state = snapshot(&env, &seeded).await;
    assert_eq!(state["roles"], json!({}));
    assert_eq!(state["queues"], json!({}));
    assert!(ec2_tags(&env, &seeded.subnet_ids[0]).await.is_empty());
}

#[tokio::test]
async fn detailed_exitcode_is_3_while_changes_are_pending_and_0_after_init() {
    let (env, _) = demo().await;
    let dry = env.run(&["init", "-c", "demo", "--dry-run", "--detailed-exitcode"]).await.unwrap();
    assert_eq!(dry.exit_code, 3);
    let plain_dry = env.run(&["init", "-c", "demo", "--dry-run"]).await.unwrap();
    assert_eq!(plain_dry.exit_code, 0, "without --detailed-exitcode pending changes exit 0");
    assert_eq!(env.recorder.writes().len(), 0);
    env.run(INIT).await.unwrap();
    env.recorder.clear();
    let after = env.run(&["init", "-c", "demo", "--dry-run", "--detailed-exitcode"]).await.unwrap();
    assert_eq!(after.exit_code, 0);
    assert_eq!(env.recorder.writes().len(), 0);
}

#[tokio::test]
async fn the_json_document_follows_the_contract() {
    let (env, _) = demo().await;
    for args in [&["init", "-c", "demo", "--dry-run"][..], INIT] {
        let doc = env.run(args).await.unwrap().to_json();
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(keys[..2], ["schema_version", "command"]);
        assert_eq!(doc["schema_version"], 1);
        assert_eq!(doc["command"], "init");
        assert_eq!(doc["dry_run"], json!(args.contains(&"--dry-run")));
        let changes = doc["changes"].as_array().unwrap();
        assert_eq!(changes.len(), CONSIDERED);
        for c in changes {
            let mut fields: Vec<&String> = c.as_object().unwrap().keys().collect();
            fields.sort();
            assert_eq!(fields, ["action", "detail", "resource"], "{c}");
            assert!(["create", "update", "delete", "none", "adopt", "skip"].contains(&c["action"].as_str().unwrap()));
            assert!(c["detail"].is_string());
            let resource = c["resource"].as_str().unwrap();
            let (kind, name) = resource.split_once('/').unwrap();
            assert!(!kind.is_empty() && !name.is_empty(), "{resource}");
        }
    }
}

#[tokio::test]
async fn irsa_creates_the_oidc_provider_and_the_irsa_trust() {
    let (env, seeded) = demo().await;
    let mut t = target(&env, "demo").await;
    t.auth = AuthMode::Irsa;
    let issuer = t.issuer.clone().unwrap();
    let hp = issuer.strip_prefix("https://").unwrap().to_string();
    let (d, docs) = render(t);
    let report = env.run(&["init", "-c", "demo", "--yes", "--auth", "irsa"]).await.unwrap();
    let oidc_id = format!("oidc-provider/{hp}");
    let ch = changes(&report);
    assert!(ch.contains(&(oidc_id.clone(), "create".into())), "{ch:?}");
    assert!(position(&ch, &oidc_id) < position(&ch, "iam-role/KarpenterControllerRole-demo"));
    assert!(ch.contains(&("pod-identity-association/kube-system/karpenter".into(), "skip".into())));
    assert_eq!(detail(&report, "pod-identity-association/kube-system/karpenter"), "not used with --auth irsa");

    // The provider: ARN without the scheme, client id sts.amazonaws.com, karpctl's tags.
    let arn = format!("arn:aws:iam::{}:oidc-provider/{hp}", env.account);
    assert!(!arn.contains("https"));
    assert_eq!(Some(arn.clone()), d.oidc_provider_arn());
    let list = env.aws.iam.list_open_id_connect_providers().send().await.unwrap();
    let arns: Vec<&str> = list.open_id_connect_provider_list().iter().filter_map(|p| p.arn()).collect();
    assert_eq!(arns, [arn.as_str()]);
    let p = env.aws.iam.get_open_id_connect_provider().open_id_connect_provider_arn(&arn).send().await.unwrap();
    assert_eq!(p.client_id_list(), ["sts.amazonaws.com"]);
    assert_eq!(p.url(), Some(hp.as_str()));
    assert_eq!(iam_tags(p.tags()), ownership("demo"));

    // The IRSA trust: federated to the provider, aud and sub conditions.
    let trust = role_trust(&env, "KarpenterControllerRole-demo").await;
    assert!(policy_eq(&trust, &docs.controller_trust), "{trust}");
    let statement = &trust["Statement"][0];
    assert_eq!(statement["Principal"]["Federated"], arn.as_str());
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    assert_eq!(
        statement["Condition"]["StringEquals"],
        json!({
            format!("{hp}:aud"): "sts.amazonaws.com",
            format!("{hp}:sub"): "system:serviceaccount:kube-system:karpenter",
        })
    );
    assert!(ch.contains(&("eks-addon/eks-pod-identity-agent".into(), "skip".into())));
    assert_eq!(detail(&report, "eks-addon/eks-pod-identity-agent"), "not used with --auth irsa");
    let state = snapshot(&env, &seeded).await;
    assert_eq!(state["pod_identity_associations"], json!([]));
    assert_eq!(state["addons"], json!({}));

    env.recorder.clear();
    let again = env.run(&["init", "-c", "demo", "--yes", "--auth", "irsa"]).await.unwrap();
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
}

#[tokio::test]
async fn an_existing_pod_identity_agent_is_used_as_it_is_and_never_tagged() {
    let (env, seeded) = demo().await;
    let eks = &env.aws.eks;
    eks.create_addon().cluster_name("demo").addon_name("eks-pod-identity-agent").send().await.unwrap();
    let report = env.run(INIT).await.unwrap();
    let id = "eks-addon/eks-pod-identity-agent";
    assert!(changes(&report).contains(&(id.into(), "none".into())));
    assert_eq!(detail(&report, id), "exists; not karpctl's, used as it is");
    let ops = write_ops(&env);
    assert!(!ops.iter().any(|o| o.contains("Addon") || o == "TagResource"), "{ops:?}");
    assert_eq!(
        snapshot(&env, &seeded).await["addons"],
        json!({"eks-pod-identity-agent": {"status": "ACTIVE", "tags": {}}})
    );
    assert_eq!(pending(&report).len(), CONSIDERED - 3);
}

/// Create an OIDC provider for the cluster's issuer the way another tool would: no karpctl tags.
async fn foreign_oidc_provider(env: &Env, client_id: &str) -> (String, String) {
    let issuer = target(env, "demo").await.issuer.unwrap();
    let out =
        env.aws.iam.create_open_id_connect_provider().url(&issuer).client_id_list(client_id).send().await.unwrap();
    (out.open_id_connect_provider_arn().unwrap().to_string(), issuer.strip_prefix("https://").unwrap().to_string())
}

#[tokio::test]
async fn an_existing_oidc_provider_is_used_as_it_is_and_never_tagged() {
    let (env, _) = demo().await;
    let (arn, hp) = foreign_oidc_provider(&env, "sts.amazonaws.com").await;
    let report = env.run(&["init", "-c", "demo", "--yes", "--auth", "irsa"]).await.unwrap();
    let id = format!("oidc-provider/{hp}");
    assert!(changes(&report).contains(&(id.clone(), "none".into())));
    assert_eq!(detail(&report, &id), "exists; not karpctl's, used as it is");
    let ops = write_ops(&env);
    assert!(!ops.iter().any(|o| o.contains("OpenIDConnectProvider")), "{ops:?}");
    let p = env.aws.iam.get_open_id_connect_provider().open_id_connect_provider_arn(&arn).send().await.unwrap();
    assert!(p.tags().is_empty(), "{:?}", p.tags());
    assert_eq!(p.client_id_list(), ["sts.amazonaws.com"]);
    assert_eq!(role_trust(&env, "KarpenterControllerRole-demo").await["Statement"][0]["Principal"]["Federated"], arn);
    // --adopt does not take it over either: it is shared, not foreign.
    env.recorder.clear();
    let again = env.run(&["init", "-c", "demo", "--yes", "--auth", "irsa", "--adopt"]).await.unwrap();
    assert!(changes(&again).contains(&(id, "none".into())));
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
}

#[tokio::test]
async fn an_existing_oidc_provider_without_the_sts_client_id_gets_it_added() {
    let (env, _) = demo().await;
    let (arn, hp) = foreign_oidc_provider(&env, "other-audience").await;
    let report = env.run(&["init", "-c", "demo", "--yes", "--auth", "irsa"]).await.unwrap();
    let id = format!("oidc-provider/{hp}");
    assert!(changes(&report).contains(&(id.clone(), "update".into())));
    assert_eq!(detail(&report, &id), "client id sts.amazonaws.com missing");
    let ops = write_ops(&env);
    assert_eq!(
        ops.iter().filter(|o| o.contains("OpenIDConnectProvider")).collect::<Vec<_>>(),
        ["AddClientIDToOpenIDConnectProvider"]
    );
    let p = env.aws.iam.get_open_id_connect_provider().open_id_connect_provider_arn(&arn).send().await.unwrap();
    assert_eq!(p.client_id_list(), ["other-audience", "sts.amazonaws.com"]);
    assert!(p.tags().is_empty(), "never tagged: {:?}", p.tags());
    env.recorder.clear();
    let again = env.run(&["init", "-c", "demo", "--yes", "--auth", "irsa"]).await.unwrap();
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
    assert_eq!(env.recorder.writes().len(), 0);
}

#[tokio::test]
async fn a_config_map_cluster_skips_the_access_entry_and_emits_the_aws_auth_entry() {
    let env = Env::new().await;
    let seeded = env.seed_cluster("demo", None).await;
    let dir = tempfile::tempdir().unwrap();
    let emit = dir.path().join("out");
    let report = env.run(&["init", "-c", "demo", "--yes", "--emit", emit.to_str().unwrap()]).await.unwrap();
    let node_role_arn = format!("arn:aws:iam::{}:role/KarpenterNodeRole-demo", env.account);
    let id = format!("access-entry/{node_role_arn}");
    assert!(changes(&report).contains(&(id.clone(), "skip".into())));
    let reason = detail(&report, &id);
    assert!(reason.contains("aws-auth ConfigMap"), "{reason}");
    assert!(!env.recorder.calls().iter().any(|c| c.operation.contains("AccessEntr")), "{:?}", env.recorder.calls());
    // Everything else on the AWS side is installed as usual; the cluster side is written to the
    // directory instead (the aws-auth mapping among it).
    for id in cluster_side_ids(&env.account) {
        assert!(changes(&report).contains(&(id.clone(), "skip".into())), "{id}");
        assert!(detail(&report, &id).starts_with("--emit: written to "), "{id}: {}", detail(&report, &id));
    }
    assert_eq!(pending(&report).len(), CONSIDERED - 2 - CLUSTER_SIDE);
    assert_eq!(env.cluster.helm_calls(), Vec::<Value>::new(), "--emit runs no helm");
    assert_eq!(env.cluster.api.requests().len(), 0, "--emit does not reach the cluster API");
    assert_eq!(snapshot(&env, &seeded).await["access_entries"], json!({}));
    let entry = std::fs::read_to_string(emit.join("aws-auth-maproles.yaml")).unwrap();
    let yaml: Value = serde_yaml_ng::from_str(&entry).unwrap();
    assert_eq!(
        yaml,
        json!([{
            "rolearn": node_role_arn,
            "username": "system:node:{{EC2PrivateDNSName}}",
            "groups": ["system:bootstrappers", "system:nodes"],
        }])
    );
}

#[tokio::test]
async fn no_interruption_leaves_out_the_queue_and_rules() {
    let (env, seeded) = demo().await;
    let report = env.run(&["init", "-c", "demo", "--yes", "--no-interruption"]).await.unwrap();
    let ch = changes(&report);
    let mut skipped = vec!["sqs-queue/demo".to_string()];
    for kind in
        ["ScheduledChange", "SpotInterruption", "Rebalance", "InstanceStateChange", "CapacityReservationInterruption"]
    {
        skipped.push(format!("event-rule/Karpenter-demo-{kind}"));
    }
    for id in &skipped {
        assert!(ch.contains(&(id.clone(), "skip".into())), "{id}: {ch:?}");
        assert_eq!(detail(&report, id), "--no-interruption");
    }
    assert_eq!(pending(&report).len(), CONSIDERED - 2 - 6, "{ch:?}");
    let services: Vec<String> = env.recorder.calls().into_iter().map(|c| c.service).collect();
    assert!(!services.iter().any(|s| s == "sqs" || s == "eventbridge"), "{services:?}");
    let state = snapshot(&env, &seeded).await;
    assert_eq!(state["queues"], json!({}));
    assert_eq!(state["rules"], json!({}));
    assert_eq!(state["roles"].as_object().unwrap().len(), 2);
    // The controller is installed without an interruption queue setting.
    let release = &env.cluster.releases()["kube-system/karpenter"];
    assert_eq!(release["values"]["settings"], json!({"clusterName": "demo"}), "{release}");
}

#[tokio::test]
async fn invalid_input_is_refused_before_any_aws_call() {
    let (env, _) = demo().await;
    for (args, needle) in [
        (&["init", "-c", "demo", "--yes", "--karpenter-version", "v1.14.1"][..], "leading 'v'"),
        (&["init", "-c", "demo", "--yes", "--karpenter-version", "1.14"], "X.Y.Z"),
        (&["init", "-c", "demo", "--yes", "--namespace", "Kube_System"], "DNS label"),
        (&["init", "-c", "demo", "--yes", "--namespace=karpenter-"], "DNS label"),
        (&["init", "-c", "demo", "--yes", "--set", "novalue"], "KEY=VALUE"),
        (&["init", "-c", "bad name", "--yes"], "letters, digits"),
    ] {
        env.recorder.clear();
        let err = env.run(args).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{args:?}: {err}");
        assert_eq!(err.exit_code(), 1);
        let hint = err.hint.clone().unwrap_or_default();
        assert!(hint.contains(needle), "{args:?}: hint {hint:?}");
        assert_eq!(env.recorder.calls(), Vec::new(), "{args:?}");
    }
}

#[tokio::test]
async fn a_cluster_that_is_not_active_is_refused_without_writes() {
    let (env, _) = demo().await;
    // UPDATING is worked on with a warning (tests/strict.rs); FAILED, CREATING, DELETING are not.
    env.set_cluster_status("demo", "FAILED");
    let err = env.run(INIT).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ClusterState);
    assert!(err.message.contains("FAILED, not ACTIVE"), "{}", err.message);
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
}

#[tokio::test]
async fn without_yes_and_without_a_terminal_init_is_refused() {
    let (env, seeded) = demo().await;
    assert!(!env.hooks().interactive);
    let err = env.run(&["init", "-c", "demo"]).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Refused);
    assert!(err.hint.as_deref().unwrap_or_default().contains("--yes"), "{:?}", err.hint);
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
    assert_eq!(snapshot(&env, &seeded).await["roles"], json!({}));
    // With nothing to change there is nothing to confirm.
    env.run(INIT).await.unwrap();
    env.recorder.clear();
    let report = env.run(&["init", "-c", "demo"]).await.unwrap();
    assert_eq!(pending(&report), Vec::<(String, String)>::new());
    assert_eq!(env.recorder.writes().len(), 0);
}

/// Fail every write after the first `n`, then run again: the install converges to exactly what
/// a clean run produces, and a further run writes nothing.
async fn recovers_after_a_failure_after_write(n: usize) {
    let (clean, clean_seeded) = demo().await;
    clean.run(INIT).await.unwrap();
    let want = snapshot(&clean, &clean_seeded).await;

    let (env, seeded) = demo().await;
    *env.recorder.fail_after_writes.lock().unwrap() = Some(n);
    let err = env.run(INIT).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert!(err.hint.as_deref().unwrap_or_default().contains("run init again"), "{:?}", err.hint);
    assert_eq!(env.recorder.writes().len(), n, "exactly {n} writes were sent before the failure");
    assert_ne!(snapshot(&env, &seeded).await, want, "the failed run stopped midway");

    *env.recorder.fail_after_writes.lock().unwrap() = None;
    env.recorder.clear();
    let report = env.run(INIT).await.unwrap();
    // How much of the failed run landed depends on timing: apply runs a level's resources
    // concurrently, and the first error cancels the requests still in flight (as a crash would).
    // Whatever landed, the re-run only creates and repairs.
    let repaired = pending(&report);
    assert!(repaired.iter().all(|(_, a)| a == "create" || a == "update"), "{repaired:?}");
    assert_eq!(snapshot(&env, &seeded).await, want);

    env.recorder.clear();
    let again = env.run(INIT).await.unwrap();
    assert_eq!(pending(&again), Vec::<(String, String)>::new());
    assert_eq!(env.recorder.writes().len(), 0, "{:?}", env.recorder.writes());
}

#[tokio::test]
async fn recovers_after_a_failure_after_the_1st_write() {
    recovers_after_a_failure_after_write(1).await;
}

#[tokio::test]
async fn recovers_after_a_failure_after_the_5th_write() {
    recovers_after_a_failure_after_write(5).await;
}

#[tokio::test]
async fn recovers_after_a_failure_after_the_10th_write() {
    recovers_after_a_failure_after_write(10).await;
}

// The compiled binary runs against the emulator's default account: each test uses a cluster
// name of its own there.

// The binary reaches the test's cluster stand-in, which answers from this test's runtime: the
// blocking run goes to a blocking thread so the runtime keeps serving it.

#[tokio::test]
async fn binary_init_without_yes_and_without_a_terminal_exits_1_with_a_hint() {
    let env = Env::default_account().await;
    let name = "init-bin-no-yes";
    env.seed_cluster(name, Some("API")).await;
    let mut args: Vec<String> = ["init", "-c", name].map(String::from).to_vec();
    args.extend(env.cluster.args());
    let out = tokio::task::spawn_blocking(move || karpctl_bin(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    // (the count depends on whether another test already made the account's spot role)
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.ends_with(" changes need confirmation and there is no terminal to ask"),
        "{stderr}"
    );
    let hint = stderr.lines().find(|l| l.starts_with("hint: ")).unwrap_or_else(|| panic!("no hint: {stderr}"));
    assert!(hint.contains("--yes"), "{hint}");
    let role = env.aws.iam.get_role().role_name(format!("KarpenterNodeRole-{name}")).send().await;
    assert!(role.is_err(), "nothing was created");
    // The refusal came after the plan, which reached the cluster, and before any cluster write.
    assert!(env.cluster.api.requests().iter().any(|r| r.path == "/version"), "the cluster was reached");
    assert_eq!(env.cluster.helm_writes(), Vec::<String>::new());
    assert_eq!(env.cluster.api.writes().iter().filter(|r| !r.path.ends_with("/selfsubjectaccessreviews")).count(), 0);
}

#[tokio::test]
async fn binary_init_emit_writes_the_cluster_side_files() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::default_account().await;
    let name = "init-bin-emit";
    env.seed_cluster(name, Some("API_AND_CONFIG_MAP")).await;
    let (_, docs) = render(target(&env, name).await);
    assert_eq!(env.account, DEFAULT_ACCOUNT);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("emitted");
    let out = karpctl_bin(&[
        "init",
        "-c",
        name,
        "--yes",
        "--emit",
        dir.to_str().unwrap(),
        "--set",
        "replicas=1",
        "-o",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["command"], "init");
    assert_eq!(doc["dry_run"], false);
    assert_eq!(doc["cluster_side"]["status"], "emitted");
    let mut files: Vec<String> = doc["cluster_side"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    files.sort();
    assert_eq!(files, ["ec2nodeclass.yaml", "install.sh", "nodepool.yaml", "values.yaml"]);

    // values.yaml: the rendered values, carrying the cluster and queue names.
    let values = std::fs::read_to_string(dir.join("values.yaml")).unwrap();
    assert_eq!(values, docs.helm_values_yaml);
    let v: Value = serde_yaml_ng::from_str(&values).unwrap();
    assert_eq!(v["settings"], json!({"clusterName": name, "interruptionQueue": name}));
    assert_eq!(v["additionalAnnotations"], json!({"karpctl.io/managed-by": "karpctl"}));
    assert!(v.get("serviceAccount").is_none(), "pod-identity needs no role annotation");
    // The manifests.
    let node_class = std::fs::read_to_string(dir.join("ec2nodeclass.yaml")).unwrap();
    assert_eq!(node_class, docs.node_class_yaml);
    let nc: Value = serde_yaml_ng::from_str(&node_class).unwrap();
    assert_eq!(nc["apiVersion"], "karpenter.k8s.aws/v1");
    assert_eq!(nc["spec"]["role"], format!("KarpenterNodeRole-{name}"));
    assert_eq!(nc["spec"]["subnetSelectorTerms"], json!([{"tags": {"karpenter.sh/discovery": name}}]));
    assert_eq!(nc["spec"]["securityGroupSelectorTerms"], json!([{"tags": {"karpenter.sh/discovery": name}}]));
    let node_pool = std::fs::read_to_string(dir.join("nodepool.yaml")).unwrap();
    assert_eq!(node_pool, docs.node_pool_yaml);
    let np: Value = serde_yaml_ng::from_str(&node_pool).unwrap();
    assert_eq!(np["kind"], "NodePool");
    assert_eq!(np["spec"]["template"]["spec"]["nodeClassRef"]["name"], "default");

    // install.sh: executable, and the exact helm and kubectl commands.
    let script = dir.join("install.sh");
    assert_ne!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o111, 0, "install.sh is executable");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#!/bin/sh\n"), "{text}");
    // Both charts get karpctl's values: its additionalAnnotations mark both releases as karpctl's.
    let crd = "helm upgrade --install karpenter-crd oci://public.ecr.aws/karpenter/karpenter-crd --version 1.14.1 \
               --namespace kube-system --create-namespace --wait --timeout 10m -f values.yaml";
    let controller = "helm upgrade --install karpenter oci://public.ecr.aws/karpenter/karpenter --version 1.14.1 \
                      --namespace kube-system --create-namespace --wait --timeout 10m -f values.yaml --set replicas=1";
    let controller_quoted = controller.replace("replicas=1", "'replicas=1'");
    let apply = "kubectl apply --server-side --field-manager karpctl -f ec2nodeclass.yaml -f nodepool.yaml";
    for line in ["helm registry logout public.ecr.aws || true", crd, &controller_quoted, apply] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    // Run it with stand-ins for helm and kubectl that record their argv and working directory
    // (helm registry logout fails, as it does when not logged in: the script goes on).
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = tmp.path().join("calls.log");
    for tool in ["helm", "kubectl"] {
        let fake = bin.join(tool);
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$(pwd) {tool} $*\" >> '{}'\n[ \"$1\" != registry ] || exit 1\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let run = std::process::Command::new(&script).current_dir(tmp.path()).env("PATH", path).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let dir = std::fs::canonicalize(&dir).unwrap();
    let d = dir.display();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{d} helm registry logout public.ecr.aws\n{d} {crd}\n{d} {controller}\n{d} {apply}\n")
    );
}

#[test]
fn binary_without_a_cluster_is_a_usage_error_exit_2() {
    // The contract: a missing argument is a usage error (2), whether clap or karpctl finds it.
    for args in [&["init"][..], &["render"], &["render", "--account", "111122223333"], &["init", "-o", "json"]] {
        let out = karpctl_bin(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: no cluster given"), "{stderr}");
        assert!(stderr.contains("hint: pass --cluster NAME (or set KARPCTL_CLUSTER)"), "{stderr}");
        if args.contains(&"json") {
            let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
            assert_eq!(doc["error"]["kind"], "usage");
        }
    }
}

#[tokio::test]
async fn binary_init_prints_the_outcome_once_in_the_past_tense() {
    let env = Env::default_account().await;
    let name = "init-bin-outcome";
    env.seed_cluster(name, Some("API")).await;
    let mut args: Vec<String> = ["init", "-c", name, "--yes"].map(String::from).to_vec();
    args.extend(env.cluster.args());
    let out = tokio::task::spawn_blocking(move || karpctl_bin(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let role = format!("iam-role/KarpenterNodeRole-{name}");
    // Once, on stdout, as done: not also as progress on stderr, and not with the plan's verbs.
    assert!(!stderr.contains(&role), "{stderr}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains(&role)).collect();
    assert_eq!(rows.len(), 1, "{stdout}");
    assert!(rows[0].trim_start().starts_with("created "), "{stdout}");
    assert!(!stdout.lines().any(|l| l.trim_start().starts_with("create ")), "{stdout}");
    assert!(stdout.contains("Applied: "), "{stdout}");
}
