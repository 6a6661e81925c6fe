//! The account's EC2 Spot service-linked role. Without it a fresh account fails spot launches
//! with `AuthFailure.ServiceLinkedRoleCreationNotPermitted`. It belongs to the account, not to
//! karpctl: created when missing, never tagged or deleted.

use async_trait::async_trait;

use super::{Cx, Kind, Observed, Presence, Resource, ResourceId};
use crate::desired::Desired;
use crate::error::{AwsContext, Error, ErrorKind, Result};
use crate::render::{Document, Documents};

/// Service-linked roles for spot live under this path (the name differs between AWS and
/// emulators, the path does not).
const SPOT_ROLE_PATH: &str = "/aws-service-role/spot.amazonaws.com/";

/// The spot service-linked role.
#[derive(Debug, Clone, Copy)]
pub struct SpotServiceLinkedRole;

async fn exists(cx: &Cx) -> Result<bool> {
    let out = cx
        .aws
        .iam
        .list_roles()
        .path_prefix(SPOT_ROLE_PATH)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .or_aws("failed to look for the EC2 Spot service-linked role", "iam:ListRoles")?;
    Ok(!out.is_empty())
}

#[async_trait]
impl Resource for SpotServiceLinkedRole {
    type Facts = ();

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::ServiceLinkedRole, "AWSServiceRoleForEC2Spot")
    }

    fn documents(&self, _d: &Desired, _docs: &Documents) -> Result<Vec<Document>> {
        Ok(Vec::new())
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed<()>> {
        if exists(cx).await? {
            Ok(Observed::present_as(Presence::Shared, Vec::new(), ()))
        } else {
            Ok(Observed::absent())
        }
    }

    async fn apply(&self, cx: &Cx, _seen: &Observed<()>) -> Result<()> {
        let created = cx.aws.iam.create_service_linked_role().aws_service_name("spot.amazonaws.com").send().await;
        match created {
            Ok(_) => Ok(()),
            Err(e) => {
                let err =
                    Error::aws("failed to create the EC2 Spot service-linked role", "iam:CreateServiceLinkedRole", e);
                // Created meanwhile (AWS says InvalidInput "has been taken"): that is success.
                if matches!(err.kind, ErrorKind::AlreadyExists | ErrorKind::Aws) && exists(cx).await? {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn delete(&self, _cx: &Cx, _seen: &Observed<()>) -> Result<()> {
        // The account's, never karpctl's: observation never reports it as owned, so this is
        // not reached; deleting it would break spot for every other user of the account.
        Ok(())
    }
}
