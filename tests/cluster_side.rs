//! The cluster side, tested on our side of each boundary: a fake `helm` (tests/support/fake-helm)
//! records argv, environment and values file; an in-test API server
//! (tests/support/apiserver.rs) records every request and keeps objects in memory.

use crate::support::apiserver;
use crate::support::fake_helm;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiserver::{ApiServer, Later};
use async_trait::async_trait;
use karpctl::desired::{AuthMode, Desired, Partition, Target, DEFAULT_KARPENTER_VERSION};
use karpctl::error::ErrorKind;
use karpctl::helm::{self, ExtraValues, StepStatus};
use karpctl::kube::aws_auth::{self, AwsAuthChange, ForeignEntry, NodeRoleMapping};
use karpctl::kube::token::decode;
use karpctl::kube::{Access, Kube, TokenSource, Wait};
use karpctl::render::Documents;
use serde_json::{json, Value};

/// A throwaway self-signed CA (its key was discarded): the client must load a real certificate.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUYzMe4japnmzG8omzGkiIIbIaZmswCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPa2FycGN0bC10ZXN0LWNhMCAXDTI2MTEyNTE2MjAwMFoYDzIx
MjYxMTAxMTYyMDAwWjAaMRgwFgYDVQQDDA9rYXJwY3RsLXRlc3QtY2EwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAARQXUs+PvJiFKc3zTrdm11QIM83NU1N077kDCj2
gYPN+UNW7qm3vux/EiyY2eekss/RIz5fe/rBZrAvMgo7f86To1MwUTAdBgNVHQ4E
FgQUvvgZW90Uy8NGwOCD0cG2Gu6foG0wHwYDVR0jBBgwFoAUvvgZW90Uy8NGwOCD
0cG2Gu6foG0wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAp2jq
Imasn7oW+sG+XItj3ewF1vl56hPPCjzrKh6jFKcCICSoGRJuzJRGafSADqq04Jk5
h4wVoptTidRTg5f3/Xbm
-----END CERTIFICATE-----
";

const NODE_ROLE: &str = "arn:aws:iam::111122223333:role/KarpenterNodeRole-demo";

fn ca_data() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(CA_PEM)
}

/// Tokens `k8s-aws-v1.test-N`, counted, so tests see when a new one is made.
#[derive(Debug, Default)]
struct Tokens(AtomicUsize);

#[async_trait]
impl TokenSource for Tokens {
    async fn token(&self) -> karpctl::Result<String> {
        Ok(format!("k8s-aws-v1.test-{}", self.0.fetch_add(1, Ordering::SeqCst)))
    }
}

async fn connect(server: &ApiServer) -> (Kube, Arc<Tokens>) {
    let tokens = Arc::new(Tokens::default());
    let k = Kube::eks(&server.url, Some(&ca_data()), tokens.clone()).expect("client");
    (k, tokens)
}

fn desired() -> Desired {
    Desired::new(Target {
        cluster: "demo".into(),
        account: "111122223333".into(),
        region: "eu-west-1".into(),
        partition: Partition::Aws,
        issuer: Some("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC123".into()),
        namespace: "kube-system".into(),
        auth: AuthMode::PodIdentity,
        karpenter_version: DEFAULT_KARPENTER_VERSION.into(),
        interruption: true,
        default_nodepool: true,
    })
    .expect("desired state")
}

fn fast(timeout_ms: u64) -> Wait {
    Wait::new(Duration::from_millis(2), Duration::from_millis(timeout_ms))
}

/// Progress lines, collected.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl Seen {
    fn push(&self, s: &str) {
        self.0.lock().unwrap().push(s.to_string());
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// helm

/// The fake helm, copied into a directory of its own as `helm`, with its log beside it.
struct FakeHelm {
    dir: tempfile::TempDir,
}

impl FakeHelm {
    fn new() -> FakeHelm {
        let dir = tempfile::tempdir().unwrap();
        fake_helm::install(dir.path());
        FakeHelm { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("helm")
    }

    /// Settings for fake-helm (see the script), written beside it.
    fn configure(&self, settings: Value) {
        std::fs::write(self.dir.path().join("fake-helm.json"), settings.to_string()).unwrap();
    }

    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("log/calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn argv(call: &Value) -> String {
    call["argv"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn helm_runs_crd_chart_then_controller_with_the_cluster_only_in_its_environment() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let helm = FakeHelm::new();
    let d = desired();
    let docs = Documents::render(&d).unwrap();
    let user_values = helm.dir.path().join("mine.yaml");
    std::fs::write(&user_values, "replicas: 1\n").unwrap();
    let extra = ExtraValues::new(std::slice::from_ref(&user_values), &["logLevel=debug".into()]).unwrap();
    let values_path = Mutex::new(PathBuf::new());
    let seen = Seen::default();

    let outcomes = helm::run_steps(
        &helm.path(),
        |p| {
            *values_path.lock().unwrap() = p.to_path_buf();
            helm::install_steps(&d, p, &extra, &[Path::new("nodepool.yaml")])
        },
        &kube,
        &docs.helm_values_yaml,
        &|s| seen.push(&s.argv.join(" ")),
    )
    .await
    .expect("install runs");

    let values_path = values_path.into_inner().unwrap();
    let vp = values_path.display().to_string();
    let user = std::fs::canonicalize(&user_values).unwrap().display().to_string();
    let calls = helm.calls();
    let argvs: Vec<String> = calls.iter().map(argv).collect();
    assert_eq!(
        argvs,
        vec![
            "helm registry logout public.ecr.aws".to_string(),
            format!(
                "helm upgrade --install karpenter-crd oci://public.ecr.aws/karpenter/karpenter-crd --version 1.14.1 \
                 --namespace kube-system --create-namespace --wait --timeout 10m -f {vp}"
            ),
            format!(
                "helm upgrade --install karpenter oci://public.ecr.aws/karpenter/karpenter --version 1.14.1 \
                 --namespace kube-system --create-namespace --wait --timeout 10m -f {vp} -f {user} --set logLevel=debug"
            ),
        ]
    );
    // The kubectl step is not run: manifests go through server-side apply instead.
    let statuses: Vec<&StepStatus> = outcomes.iter().map(|o| &o.status).collect();
    assert_eq!(statuses, vec![&StepStatus::Done, &StepStatus::Done, &StepStatus::Done, &StepStatus::Skipped]);
    assert_eq!(outcomes[3].step.argv[0], "kubectl");
    assert_eq!(seen.all().len(), 3, "progress for each helm step");

    let mut tokens = Vec::new();
    for call in &calls {
        let env = &call["env"];
        assert_eq!(env["HELM_KUBEAPISERVER"], json!(server.url));
        let token = env["HELM_KUBETOKEN"].as_str().expect("token in the environment");
        assert!(token.starts_with("k8s-aws-v1."));
        // Never on the command line.
        assert!(call["argv"].as_array().unwrap().iter().all(|w| !w.as_str().unwrap().contains("k8s-aws-v1")));
        assert_eq!(call["cafile"], json!(CA_PEM));
        assert_eq!(call["kubeconfig"], json!("apiVersion: v1\nkind: Config\n"), "the user's kubeconfig is kept out");
        tokens.push(token.to_string());
        // Each run's private files are gone once it is over.
        assert!(!Path::new(env["HELM_KUBECAFILE"].as_str().unwrap()).exists());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "a fresh token for every helm run");

    let values = &calls[2]["values"][0];
    assert_eq!(values["path"], json!(vp));
    assert_eq!(values["content"], json!(docs.helm_values_yaml));
    assert_eq!(values["mode"], json!(0o600));
    assert_eq!(calls[2]["values"][1]["content"], json!("replicas: 1\n"));
    assert!(!values_path.exists(), "the values file is removed afterwards");
    assert!(!values_path.parent().unwrap().exists(), "and so is its directory");
    assert!(server.karpctl_requests().is_empty(), "helm talks to the cluster, not karpctl");
}

#[tokio::test]
async fn a_failing_helm_run_reports_helms_stderr_and_still_cleans_up() {
    let helm = FakeHelm::new();
    helm.configure(json!({"FAKE_HELM_FAIL": "upgrade:karpenter",
        "FAKE_HELM_STDERR": "Error: UPGRADE FAILED: values don't meet the specifications of the schema(s)"}));
    let env = helm::HelmEnv::new(vec![("HELM_KUBEAPISERVER".into(), "https://example".into())]);
    let d = desired();
    let values_path = Mutex::new(PathBuf::new());
    let err = helm::run_steps(
        &helm.path(),
        |p| {
            *values_path.lock().unwrap() = p.to_path_buf();
            helm::install_steps(&d, p, &ExtraValues::default(), &[])
        },
        &env,
        "settings: {}\n",
        &|_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::ClusterState);
    assert_eq!(err.message, "helm upgrade --install karpenter failed (exit status: 1)");
    assert_eq!(
        err.cause.as_deref(),
        Some("Error: UPGRADE FAILED: values don't meet the specifications of the schema(s)")
    );
    assert!(err.hint.unwrap().contains("helm -n kube-system status karpenter"));
    assert_eq!(helm.calls().len(), 3, "logout, CRDs, then the failing controller");
    assert!(!values_path.into_inner().unwrap().exists());
}

#[tokio::test]
async fn a_helm_timeout_is_a_timeout_and_a_failed_logout_is_harmless() {
    let helm = FakeHelm::new();
    helm.configure(json!({"FAKE_HELM_FAIL": "upgrade:karpenter-crd",
        "FAKE_HELM_STDERR": "Error: UPGRADE FAILED: context deadline exceeded"}));
    let d = desired();
    let env = helm::HelmEnv::default();
    let err =
        helm::run_steps(&helm.path(), |p| helm::install_steps(&d, p, &ExtraValues::default(), &[]), &env, "", &|_| {})
            .await
            .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(err.hint.unwrap().contains("kubectl -n kube-system get pods"));
    assert_eq!(helm.calls().len(), 2, "nothing runs after a failure");

    let helm = FakeHelm::new();
    helm.configure(json!({"FAKE_HELM_FAIL": "registry", "FAKE_HELM_STDERR": "Error: not logged in"}));
    let out =
        helm::run_steps(&helm.path(), |p| helm::install_steps(&d, p, &ExtraValues::default(), &[]), &env, "", &|_| {})
            .await
            .expect("a failed logout does not stop the install");
    assert_eq!(out[0].status, StepStatus::FailedHarmlessly("Error: not logged in".into()));
    assert_eq!(out[2].status, StepStatus::Done);
}

#[tokio::test]
async fn helm_must_be_3_8_or_newer() {
    let helm = FakeHelm::new();
    let v = helm::check_helm(&helm.path()).await.unwrap();
    assert_eq!(v.version, (3, 15, 2));
    assert_eq!(v.raw, "v3.15.2+gabc");
    assert_eq!(argv(&helm.calls()[0]), "helm version --short");

    helm.configure(json!({"FAKE_HELM_VERSION": "v3.7.2+g663a896"}));
    let e = helm::check_helm(&helm.path()).await.unwrap_err();
    assert_eq!(e.message, "helm v3.7.2+g663a896 is too old: karpctl needs 3.8 or newer");
    assert!(e.hint.unwrap().contains("https://helm.sh/docs/intro/install/"));

    helm.configure(json!({"FAKE_HELM_FAIL": "version", "FAKE_HELM_STDERR": "segfault"}));
    let e = helm::check_helm(&helm.path()).await.unwrap_err();
    assert_eq!(e.cause.as_deref(), Some("segfault"));
}

// ---------------------------------------------------------------------------------------------
// token and connection

#[tokio::test]
async fn the_token_is_presigned_for_the_real_sts_endpoint_and_sent_as_bearer() {
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_credential_types::Credentials;
    let server = ApiServer::start().await;
    let creds =
        SharedCredentialsProvider::new(Credentials::new("AKIDTEST", "secret", Some("session".into()), None, "t"));
    let tokens = karpctl::kube::EksTokenSource::with_provider(creds, "eu-west-1", Partition::Aws, "demo").shared();
    let kube = Kube::eks(&server.url, Some(&ca_data()), tokens).unwrap();
    kube.get("karpenter.sh/v1", "NodePool", None, "default").await.unwrap();

    let auth = server.requests()[0].header("authorization").unwrap().to_string();
    let token = auth.strip_prefix("Bearer ").expect("bearer token");
    let d = decode(token).unwrap();
    assert_eq!(d.host, "sts.eu-west-1.amazonaws.com");
    assert_eq!(d.param("Action"), Some("GetCallerIdentity"));
    assert_eq!(d.param("Version"), Some("2011-06-15"));
    assert_eq!(d.param("X-Amz-Expires"), Some("60"));
    assert_eq!(d.param("X-Amz-SignedHeaders"), Some("host;x-k8s-aws-id"));
    assert_eq!(d.param("X-Amz-Security-Token"), Some("session"));
    assert!(d.param("X-Amz-Credential").unwrap().starts_with("AKIDTEST/"));
    assert!(!format!("{kube:?}").contains("k8s-aws-v1"), "Debug shows no token");
}

#[tokio::test]
async fn connect_from_cluster_info_signs_for_sts_even_with_an_endpoint_override() {
    // Dummy credentials from the environment, as the rest of the suite sets them.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let server = ApiServer::start().await;
    let opts = karpctl::aws::AwsOptions {
        region: Some("eu-west-1".into()),
        profile: None,
        endpoint_url: Some("http://127.0.0.1:9".into()),
    };
    let aws = karpctl::aws::Aws::connect(&opts, &karpctl::Hooks::default()).await.unwrap();
    let info = cluster_info(&server);
    let kube = Kube::connect(&info, &aws, None, None).await.unwrap();
    assert_eq!(kube.preflight(&[]).await.unwrap(), "v1.33.1-eks-test");
    let auth = server.requests()[0].header("authorization").unwrap().to_string();
    let d = decode(auth.strip_prefix("Bearer ").unwrap()).unwrap();
    assert_eq!(d.host, "sts.eu-west-1.amazonaws.com");

    let mut no_endpoint = cluster_info(&server);
    no_endpoint.endpoint = None;
    let e = Kube::connect(&no_endpoint, &aws, None, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClusterState);
}

fn cluster_info(server: &ApiServer) -> karpctl::cluster::ClusterInfo {
    karpctl::cluster::ClusterInfo {
        name: "demo".into(),
        arn: "arn:aws:eks:eu-west-1:111122223333:cluster/demo".into(),
        region: "eu-west-1".into(),
        caller: karpctl::cluster::Caller {
            arn: "arn:aws:iam::111122223333:user/me".into(),
            account: "111122223333".into(),
            partition: Partition::Aws,
        },
        version: "1.33".into(),
        status: "ACTIVE".into(),
        endpoint: Some(server.url.clone()),
        ca_data: Some(ca_data()),
        issuer: None,
        vpc_id: None,
        subnet_ids: vec![],
        cluster_security_group_id: None,
        auth_mode: karpctl::cluster::ClusterAuth::ConfigMap,
        auto_mode: false,
    }
}

#[tokio::test]
async fn the_client_is_rebuilt_with_a_fresh_token_once_the_old_one_ages() {
    let server = ApiServer::start().await;
    let (kube, tokens) = connect(&server).await;
    kube.get("v1", "ConfigMap", Some("kube-system"), "a").await.unwrap();
    kube.get("v1", "ConfigMap", Some("kube-system"), "b").await.unwrap();
    assert_eq!(tokens.0.load(Ordering::SeqCst), 1, "a young token is reused");

    let kube = kube.with_refresh_after(Duration::ZERO);
    server.clear_requests();
    kube.get("v1", "ConfigMap", Some("kube-system"), "a").await.unwrap();
    kube.get("v1", "ConfigMap", Some("kube-system"), "b").await.unwrap();
    let auths: Vec<String> = server.requests().iter().map(|r| r.header("authorization").unwrap().to_string()).collect();
    assert_eq!(auths.len(), 2);
    assert_ne!(auths[0], auths[1], "an old token is replaced");
}

#[tokio::test]
async fn kubeconfig_and_context_replace_the_token() {
    let server = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: other\nclusters:\n- name: c\n  cluster:\n    server: {}\n\
             users:\n- name: u\n  user:\n    token: static-token\ncontexts:\n- name: test\n  context:\n    cluster: c\n    user: u\n\
             - name: other\n  context:\n    cluster: c\n    user: nobody\n",
            server.url
        ),
    )
    .unwrap();
    let kube = Kube::from_kubeconfig(Some(&path), Some("test")).await.unwrap();
    kube.get("v1", "ConfigMap", Some("kube-system"), "aws-auth").await.unwrap();
    assert_eq!(server.requests()[0].header("authorization"), Some("Bearer static-token"));
    let env = kube.helm_env().await.unwrap();
    assert_eq!(env.get("KUBECONFIG"), Some(path.display().to_string().as_str()));
    assert_eq!(env.get("HELM_KUBECONTEXT"), Some("test"));
    assert_eq!(env.get("HELM_KUBETOKEN"), None);

    let e = Kube::from_kubeconfig(Some(&path), Some("nope")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.hint.unwrap().contains("--context"));
    let e = Kube::from_kubeconfig(Some(&dir.path().join("missing")), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
}

#[tokio::test]
async fn helm_env_holds_endpoint_ca_and_token_in_private_files_removed_on_drop() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let env = kube.helm_env().await.unwrap();
    assert_eq!(env.get("HELM_KUBEAPISERVER"), Some(server.url.as_str()));
    assert_eq!(env.get("HELM_KUBETOKEN"), Some("k8s-aws-v1.test-0"));
    let ca = PathBuf::from(env.get("HELM_KUBECAFILE").unwrap());
    assert_eq!(std::fs::read_to_string(&ca).unwrap(), CA_PEM);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&ca).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(ca.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }
    assert!(!format!("{env:?}").contains("k8s-aws-v1"));
    drop(env);
    assert!(!ca.exists());
}

// ---------------------------------------------------------------------------------------------
// preflight

#[tokio::test]
async fn preflight_checks_the_api_and_each_permission() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let needs = Access::for_install("karpenter", true);
    assert_eq!(kube.preflight(&needs).await.unwrap(), "v1.33.1-eks-test");
    let reqs = server.requests();
    assert_eq!(reqs[0].path, "/version");
    let reviews: Vec<Value> = reqs[1..]
        .iter()
        .inspect(|r| {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews");
        })
        .map(|r| r.json()["spec"]["resourceAttributes"].clone())
        .collect();
    assert_eq!(reviews.len(), needs.len());
    assert!(reviews
        .contains(&json!({"verb": "create", "group": "apps", "resource": "deployments", "namespace": "karpenter"})));
    assert!(
        reviews.contains(&json!({"verb": "update", "group": "", "resource": "configmaps", "namespace": "kube-system"}))
    );
    assert!(reviews.contains(&json!({"verb": "patch", "group": "karpenter.sh", "resource": "nodepools"})));
}

#[tokio::test]
async fn preflight_denied_names_every_missing_permission() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    server.deny("patch", "karpenter.sh", "nodepools", None);
    server.deny("update", "", "configmaps", Some("kube-system"));
    let e = kube.preflight(&Access::for_install("kube-system", true)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
    assert_eq!(
        e.message,
        "the cluster does not allow karpctl to patch nodepools.karpenter.sh, update configmaps in kube-system"
    );
    assert!(e.cause.unwrap().contains("RBAC: no rule allows patch nodepools"));
    assert!(e.hint.unwrap().contains("kubectl auth can-i patch nodepools.karpenter.sh"));
    assert!(server.requests().iter().all(|r| r.method == "GET" || r.path.ends_with("selfsubjectaccessreviews")));
}

#[tokio::test]
async fn preflight_explains_an_unreachable_or_refusing_cluster() {
    // A port nothing listens on: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kube = Kube::eks(&format!("http://127.0.0.1:{port}"), None, Arc::new(Tokens::default())).unwrap();
    let e = kube.preflight(&[]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network);
    assert!(e.message.starts_with("cannot reach the cluster API at http://127.0.0.1:"), "{}", e.message);
    assert!(e.hint.unwrap().contains("private-only endpoint"));

    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    server.fail_once("GET", "/version", 401, "Unauthorized");
    let e = kube.preflight(&[]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Credentials);
    assert_eq!(e.message, format!("the cluster API at {} does not accept karpctl's token", server.url));
    assert!(e.hint.unwrap().contains("access entry"));
}

// ---------------------------------------------------------------------------------------------
// server-side apply, get, list, delete

#[tokio::test]
async fn manifests_go_through_server_side_apply_as_karpctl() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let docs = Documents::render(&desired()).unwrap();
    let yaml = format!("{}\n---\n{}", docs.node_class_yaml, docs.node_pool_yaml);
    let applied = kube.apply_yaml(&yaml).await.unwrap();
    assert_eq!(applied.len(), 2);

    let reqs = server.requests();
    let expected = [
        ("/apis/karpenter.k8s.aws/v1/ec2nodeclasses/default", &docs.node_class_yaml),
        ("/apis/karpenter.sh/v1/nodepools/default", &docs.node_pool_yaml),
    ];
    assert_eq!(reqs.len(), 2);
    for (req, (path, yaml)) in reqs.iter().zip(expected) {
        assert_eq!(req.method, "PATCH");
        assert_eq!(req.path, path);
        assert_eq!(req.param("fieldManager"), Some("karpctl"));
        assert_eq!(req.param("force"), Some("true"));
        assert_eq!(req.header("content-type"), Some("application/apply-patch+yaml"));
        let manifest: Value = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(req.json(), manifest, "the body is the manifest, unchanged");
    }
    assert_eq!(server.object(expected[1].0).unwrap()["spec"], applied[1]["spec"]);

    // Applying again sends the same thing and changes nothing.
    server.clear_requests();
    kube.apply_yaml(&yaml).await.unwrap();
    assert_eq!(server.requests().iter().map(|r| r.body.clone()).collect::<Vec<_>>(), {
        let m: Vec<String> = reqs.iter().map(|r| r.body.clone()).collect();
        m
    });
    assert_eq!(server.object(expected[1].0).unwrap()["metadata"]["generation"], json!(1));

    let e = kube.apply(&json!({"kind": "NodePool"})).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Render);
}

#[tokio::test]
async fn get_list_and_delete_by_api_version_and_kind() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    for (name, pool) in [("a", "default"), ("b", "default"), ("c", "gpu")] {
        server.insert(json!({"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": pool}}}));
    }
    let all = kube.list("karpenter.sh/v1", "NodeClaim", None, None).await.unwrap();
    assert_eq!(all.len(), 3);
    let mine = kube.list("karpenter.sh/v1", "NodeClaim", None, Some("karpenter.sh/nodepool=default")).await.unwrap();
    let names: Vec<_> = mine.iter().map(|o| o.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, vec!["a", "b"]);
    assert_eq!(server.requests()[1].param("labelSelector"), Some("karpenter.sh/nodepool=default"));
    assert_eq!(server.requests()[1].path, "/apis/karpenter.sh/v1/nodeclaims");

    assert!(kube.get("karpenter.sh/v1", "NodeClaim", None, "a").await.unwrap().is_some());
    assert!(kube.get("karpenter.sh/v1", "NodeClaim", None, "zz").await.unwrap().is_none());
    assert!(kube.delete("karpenter.sh/v1", "NodeClaim", None, "a").await.unwrap());
    assert!(!kube.delete("karpenter.sh/v1", "NodeClaim", None, "a").await.unwrap(), "already gone");
    let del = server.writes().into_iter().find(|r| r.method == "DELETE").unwrap();
    assert_eq!(del.path, "/apis/karpenter.sh/v1/nodeclaims/a");
}

// ---------------------------------------------------------------------------------------------
// waits

fn node_class(server: &ApiServer) -> String {
    server
        .insert(json!({"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": "default"}}))
}

#[tokio::test]
async fn wait_ready_returns_when_the_node_class_becomes_ready() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let path = node_class(&server);
    server.later(&path, 2, Later::Status(json!({"conditions": [{"type": "Ready", "status": "True"}]})));
    let seen = Seen::default();
    // The timeout is generous: the object turns Ready on its third read, not after some time.
    kube.wait_ready("karpenter.k8s.aws/v1", "EC2NodeClass", None, "default", fast(10_000), &|s| seen.push(s))
        .await
        .unwrap();
    assert_eq!(
        seen.all(),
        vec![
            "EC2NodeClass default: no status conditions yet (is the Karpenter controller running?)",
            "EC2NodeClass default: ready"
        ]
    );
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn wait_ready_times_out_with_the_failing_condition() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let path = node_class(&server);
    server.set_status(
        &path,
        json!({"conditions": [
            {"type": "Ready", "status": "False", "reason": "UnhealthyDependents", "message": "SubnetsReady=False"},
            {"type": "AMIsReady", "status": "True"},
            {"type": "SubnetsReady", "status": "False", "reason": "SubnetsNotFound",
             "message": "SubnetSelector did not match any Subnets"}]}),
    );
    let e =
        kube.wait_ready("karpenter.k8s.aws/v1", "EC2NodeClass", None, "default", fast(30), &|_| {}).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(e.message, "EC2NodeClass default is not Ready after 30ms");
    assert_eq!(e.cause.as_deref(), Some("SubnetsReady=False: SubnetSelector did not match any Subnets"));
    assert!(e.hint.unwrap().contains("karpenter.sh/discovery"));
}

#[tokio::test]
async fn waits_see_through_a_passing_failure_but_stop_on_a_refusal() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let path = node_class(&server);
    server.set_status(&path, json!({"conditions": [{"type": "Ready", "status": "True"}]}));
    // A 500 (kube-rs itself retries only 429/503/504): the wait looks again.
    server.fail_once("GET", &path, 500, "InternalError");
    let seen = Seen::default();
    kube.wait_ready("karpenter.k8s.aws/v1", "EC2NodeClass", None, "default", fast(10_000), &|s| seen.push(s))
        .await
        .unwrap();
    assert!(seen.all()[0].contains("injected InternalError"), "{:?}", seen.all());

    server.fail_once("GET", &path, 403, "Forbidden");
    let e = kube
        .wait_ready("karpenter.k8s.aws/v1", "EC2NodeClass", None, "default", fast(10_000), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
}

#[tokio::test]
async fn a_busy_api_server_is_retried_a_bounded_number_of_times() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let path = node_class(&server);
    let gets = |server: &ApiServer| server.requests().iter().filter(|r| r.method == "GET" && r.path == path).count();
    // A passing refusal (a control plane restarting, API Priority and Fairness shedding load)
    // is absorbed by the client's own retries.
    server.fail_once("GET", &path, 503, "ServiceUnavailable");
    server.fail_once("GET", &path, 429, "TooManyRequests");
    let got = kube.get("karpenter.k8s.aws/v1", "EC2NodeClass", None, "default").await.unwrap();
    assert!(got.is_some());
    // One that persists ends the call after four retries (kube-rs's default: fifteen, backing
    // off to minutes), with the API server's answer.
    for _ in 0..30 {
        server.fail_once("GET", &path, 503, "ServiceUnavailable");
    }
    server.clear_requests();
    let e = kube.get("karpenter.k8s.aws/v1", "EC2NodeClass", None, "default").await.unwrap_err();
    assert_eq!(gets(&server), 5);
    assert_eq!(e.code.as_deref(), Some("ServiceUnavailable"), "{e:?}");
}

#[tokio::test]
async fn wait_for_the_controller_deployment() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let path = server.insert(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "karpenter", "namespace": "kube-system"}, "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "availableReplicas": 0,
                   "conditions": [{"type": "Available", "status": "False", "message": "Deployment does not have minimum availability."}]}}));
    let e = kube.wait_deployment_available("kube-system", "karpenter", fast(20), &|_| {}).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(e.message, "deployment kube-system/karpenter is not available after 20ms");
    assert_eq!(
        e.cause.as_deref(),
        Some("Available=False: 0/2 replicas available; Deployment does not have minimum availability.")
    );
    assert!(e.hint.unwrap().contains("kubectl -n kube-system logs deploy/karpenter"));

    server.later(
        &path,
        1,
        Later::Status(json!({"observedGeneration": 1, "availableReplicas": 2,
            "conditions": [{"type": "Available", "status": "True"}]})),
    );
    let seen = Seen::default();
    kube.wait_deployment_available("kube-system", "karpenter", fast(10_000), &|s| seen.push(s)).await.unwrap();
    assert_eq!(seen.all().last().unwrap(), "deployment kube-system/karpenter: ready");
}

#[tokio::test]
async fn wait_gone_waits_for_node_claims_to_drain() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let a = server.insert(json!({"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": "default-abc", "labels": {"karpenter.sh/nodepool": "default"}}}));
    server.later(&a, 2, Later::Remove);
    let seen = Seen::default();
    kube.wait_gone(
        "karpenter.sh/v1",
        "NodeClaim",
        None,
        Some("karpenter.sh/nodepool=default"),
        None,
        fast(10_000),
        &|s| seen.push(s),
    )
    .await
    .unwrap();
    assert_eq!(seen.all()[0], "NodeClaim objects with karpenter.sh/nodepool=default: 1 remaining: default-abc");

    server.insert(json!({"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": "stuck"}}));
    let e = kube.wait_gone("karpenter.sh/v1", "NodeClaim", None, None, None, fast(10), &|_| {}).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(e.cause.as_deref(), Some("1 remaining: stuck"));
}

// ---------------------------------------------------------------------------------------------
// aws-auth

const AWS_AUTH: &str = "/api/v1/namespaces/kube-system/configmaps/aws-auth";

fn seed_aws_auth(server: &ApiServer, map_roles: &str) {
    server.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "aws-auth", "namespace": "kube-system"},
        "data": {"mapRoles": map_roles, "mapUsers": "- userarn: arn:aws:iam::111122223333:user/ops\n  username: ops\n"}}));
}

#[tokio::test]
async fn aws_auth_is_created_when_absent_and_left_alone_after() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    assert_eq!(aws_auth::observe_node_role(&kube, NODE_ROLE).await.unwrap(), NodeRoleMapping::NoConfigMap);
    assert_eq!(aws_auth::ensure_node_role(&kube, NODE_ROLE).await.unwrap(), AwsAuthChange::Created);
    let writes = server.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].method, "POST");
    assert_eq!(writes[0].path, "/api/v1/namespaces/kube-system/configmaps");
    assert_eq!(writes[0].param("fieldManager"), Some("karpctl"));
    assert_eq!(writes[0].json()["data"]["mapRoles"], json!(aws_auth::node_entry(NODE_ROLE, 0)));

    server.clear_requests();
    assert_eq!(aws_auth::ensure_node_role(&kube, NODE_ROLE).await.unwrap(), AwsAuthChange::Unchanged);
    assert!(server.writes().is_empty());
    assert_eq!(aws_auth::observe_node_role(&kube, NODE_ROLE).await.unwrap(), NodeRoleMapping::Present);
}

#[tokio::test]
async fn aws_auth_entry_is_appended_keeping_the_existing_text_and_other_keys() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    let existing = "# node groups\n- rolearn: arn:aws:iam::111122223333:role/ng-1\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n  - system:bootstrappers\n  - system:nodes\n";
    seed_aws_auth(&server, existing);
    let rv = server.object(AWS_AUTH).unwrap()["metadata"]["resourceVersion"].clone();
    assert_eq!(aws_auth::observe_node_role(&kube, NODE_ROLE).await.unwrap(), NodeRoleMapping::Missing);

    assert_eq!(aws_auth::ensure_node_role(&kube, NODE_ROLE).await.unwrap(), AwsAuthChange::Updated);
    let put = server.writes().into_iter().find(|r| r.method == "PUT").expect("a replace");
    assert_eq!(put.path, AWS_AUTH);
    let body = put.json();
    assert_eq!(body["metadata"]["resourceVersion"], rv, "the write is conditional on what was read");
    assert_eq!(body["data"]["mapRoles"], json!(format!("{existing}{}", aws_auth::node_entry(NODE_ROLE, 0))));
    let stored = server.object(AWS_AUTH).unwrap();
    assert_eq!(stored["data"]["mapUsers"], json!("- userarn: arn:aws:iam::111122223333:user/ops\n  username: ops\n"));

    // Teardown takes exactly that entry back out.
    assert!(aws_auth::remove_node_role(&kube, NODE_ROLE).await.unwrap());
    assert_eq!(server.object(AWS_AUTH).unwrap()["data"]["mapRoles"], json!(existing));
    assert!(!aws_auth::remove_node_role(&kube, NODE_ROLE).await.unwrap());
}

#[tokio::test]
async fn aws_auth_already_containing_the_entry_is_not_written() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    seed_aws_auth(
        &server,
        &format!("- rolearn: {NODE_ROLE}\n  groups: [system:nodes, system:bootstrappers]\n  username: system:node:{{{{EC2PrivateDNSName}}}}\n"),
    );
    assert_eq!(aws_auth::ensure_node_role(&kube, NODE_ROLE).await.unwrap(), AwsAuthChange::Unchanged);
    assert!(server.writes().is_empty());
}

#[tokio::test]
async fn aws_auth_foreign_mapping_of_the_role_is_reported_not_changed() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    seed_aws_auth(&server, &format!("- rolearn: {NODE_ROLE}\n  username: admin\n  groups:\n    - system:masters\n"));
    let foreign = vec![ForeignEntry { username: Some("admin".into()), groups: vec!["system:masters".into()] }];
    assert_eq!(aws_auth::ensure_node_role(&kube, NODE_ROLE).await.unwrap(), AwsAuthChange::Foreign(foreign.clone()));
    assert_eq!(aws_auth::observe_node_role(&kube, NODE_ROLE).await.unwrap(), NodeRoleMapping::Foreign(foreign));
    assert!(server.writes().is_empty());
    assert!(!aws_auth::remove_node_role(&kube, NODE_ROLE).await.unwrap(), "someone else's mapping stays");
}

#[tokio::test]
async fn aws_auth_update_that_loses_a_race_is_redone_on_the_fresh_text() {
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    seed_aws_auth(&server, "- rolearn: arn:aws:iam::111122223333:role/ng-1\n  username: a\n  groups: [g]\n");
    server.fail_once("PUT", AWS_AUTH, 409, "Conflict");
    assert_eq!(aws_auth::ensure_node_role(&kube, NODE_ROLE).await.unwrap(), AwsAuthChange::Updated);
    let methods: Vec<String> = server.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, vec!["GET", "PUT", "GET", "PUT"]);

    // A real concurrent edit: the stale write is refused by resourceVersion, and the other
    // editor's entry survives the retry.
    let server = ApiServer::start().await;
    let (kube, _) = connect(&server).await;
    seed_aws_auth(&server, "");
    server.edit_before_next_write(
        AWS_AUTH,
        json!({"data": {"mapRoles": "- rolearn: arn:aws:iam::1:role/x\n  username: x\n"}}),
    );
    assert_eq!(aws_auth::ensure_node_role(&kube, NODE_ROLE).await.unwrap(), AwsAuthChange::Updated);
    let roles = server.object(AWS_AUTH).unwrap()["data"]["mapRoles"].as_str().unwrap().to_string();
    assert!(roles.starts_with("- rolearn: arn:aws:iam::1:role/x\n"));
    assert!(roles.contains(NODE_ROLE));
    let methods: Vec<String> = server.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, vec!["GET", "PUT", "GET", "PUT"]);
}
