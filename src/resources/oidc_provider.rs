//! The IAM OIDC identity provider for the cluster's issuer (IRSA only). Created with the client
//! id `sts.amazonaws.com` when missing; one another tool created is used as it is, except that
//! a missing `sts.amazonaws.com` client id is added (IRSA cannot work without it).

use async_trait::async_trait;

use super::{iam_owned, iam_tags, ignore_gone, Cx, Drift, Kind, Observed, Presence, Resource, ResourceId};
use crate::desired::{issuer_host_path, AuthMode, Desired, STS_AUDIENCE};
use crate::error::{AwsContext, Error, Result, ResultExt};
use crate::render::{Document, Documents};

/// The OIDC provider.
#[derive(Debug, Clone)]
pub struct OidcProvider {
    id: ResourceId,
    arn: Option<String>,
}

impl OidcProvider {
    /// The provider for the cluster's issuer.
    pub fn new(d: &Desired) -> Self {
        OidcProvider { id: id(d), arn: d.oidc_provider_arn() }
    }

    /// A provider known by its ARN (teardown finds karpctl's by its tags once the cluster is gone).
    pub fn with_arn(arn: &str) -> Self {
        let hp = arn.split_once(":oidc-provider/").map(|(_, hp)| hp).unwrap_or(arn);
        OidcProvider { id: ResourceId::new(Kind::OidcProvider, hp), arn: Some(arn.to_string()) }
    }
}

/// The ARNs of the OIDC providers karpctl created for this cluster (each provider's tags read
/// concurrently: IAM cannot filter by tag, and lists no tags).
pub async fn find_owned(cx: &Cx) -> Result<Vec<String>> {
    let iam = &cx.aws.iam;
    let list = iam
        .list_open_id_connect_providers()
        .send()
        .await
        .or_aws("failed to list IAM OIDC providers", "iam:ListOpenIDConnectProviders")?;
    let reads = list.open_id_connect_provider_list().iter().filter_map(|p| p.arn()).map(|arn| async move {
        let got = iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
            .or_aws("failed to read an IAM OIDC provider", "iam:GetOpenIDConnectProvider");
        Ok::<_, Error>(got.found()?.is_some_and(|g| iam_owned(&cx.desired, g.tags())).then(|| arn.to_string()))
    });
    Ok(futures::future::try_join_all(reads).await?.into_iter().flatten().collect())
}

/// The provider's resource id: `oidc-provider/<issuer host/path>`.
pub fn id(d: &Desired) -> ResourceId {
    let hp = d.target.issuer.as_deref().and_then(|i| issuer_host_path(i).ok()).unwrap_or_default();
    ResourceId::new(Kind::OidcProvider, hp)
}

/// What observing it finds that applying or removing it uses.
#[derive(Debug)]
pub struct Facts {
    missing_audience: bool,
}

#[async_trait]
impl Resource for OidcProvider {
    type Facts = Facts;

    fn id(&self) -> ResourceId {
        self.id.clone()
    }

    fn not_wanted(&self, cx: &Cx) -> Option<String> {
        (cx.desired.target.auth != AuthMode::Irsa).then(|| "not needed with --auth pod-identity".to_string())
    }

    fn kept_by(&self) -> Option<super::Keep> {
        Some(super::Keep::Iam)
    }

    fn documents(&self, _d: &Desired, _docs: &Documents) -> Result<Vec<Document>> {
        Ok(Vec::new())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<Facts>> {
        let Some(arn) = self.arn.clone() else { return Ok(Observed::absent()) };
        let got = cx
            .aws
            .iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(&arn)
            .send()
            .await
            .or_aws("failed to read the IAM OIDC provider", "iam:GetOpenIDConnectProvider");
        let Some(got) = got.found()? else { return Ok(Observed::absent()) };
        let missing_audience = !got.client_id_list().iter().any(|c| c == STS_AUDIENCE);
        let drift =
            if missing_audience { vec![Drift::new(format!("client id {STS_AUDIENCE} missing"))] } else { Vec::new() };
        // One another tool (eksctl, Terraform) made for the same cluster is used, never adopted.
        let presence = if iam_owned(&cx.desired, got.tags()) { Presence::Owned } else { Presence::Shared };
        Ok(Observed::present_as(presence, drift, Facts { missing_audience }))
    }

    async fn apply(&self, cx: &Cx, seen: &Observed<Facts>) -> Result<()> {
        let iam = &cx.aws.iam;
        let (Some(issuer), Some(arn)) = (cx.desired.target.issuer.as_deref(), cx.desired.oidc_provider_arn()) else {
            return Ok(());
        };
        match seen.facts() {
            None => {
                iam.create_open_id_connect_provider()
                    .url(issuer)
                    .client_id_list(STS_AUDIENCE)
                    .set_tags(Some(iam_tags(&cx.desired)?))
                    .send()
                    .await
                    .or_aws("failed to create the IAM OIDC provider", "iam:CreateOpenIDConnectProvider")?;
            }
            Some(f) if f.missing_audience => {
                iam.add_client_id_to_open_id_connect_provider()
                    .open_id_connect_provider_arn(&arn)
                    .client_id(STS_AUDIENCE)
                    .send()
                    .await
                    .or_aws(
                        "failed to add sts.amazonaws.com to the IAM OIDC provider",
                        "iam:AddClientIDToOpenIDConnectProvider",
                    )?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed<Facts>) -> Result<()> {
        let Some(arn) = &self.arn else { return Ok(()) };
        let done = cx.aws.iam.delete_open_id_connect_provider().open_id_connect_provider_arn(arn).send().await;
        ignore_gone(done.or_aws("failed to delete the IAM OIDC provider", "iam:DeleteOpenIDConnectProvider"))
    }
}
