//! The discovery tag `karpenter.sh/discovery = C` on one of the cluster's subnets or its cluster
//! security group: what the EC2NodeClass selectors find. karpctl marks the tags it adds, so
//! teardown later removes only those, never a tag that was there before. Only private subnets
//! are tagged unless the user chose the subnets (`--subnets`): Karpenter launches nodes into
//! every subnet its selector matches, and a node in a public subnet is reachable from the
//! internet. A subnet tagged for another cluster is never retagged, even with `--adopt`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, RouteTable, Subnet, Tag};
use tokio::sync::OnceCell;

use super::ignore_gone;
use super::{Cx, Drift, Observed, Presence, Resource};
use crate::desired::{DISCOVERY_MARKER_TAG, DISCOVERY_TAG, TAG_MANAGED_BY_VALUE};
use crate::error::{Error, ErrorKind, Result};

/// The discovery tag on one subnet or security group.
#[derive(Debug, Clone)]
pub struct DiscoveryTags {
    resource_id: String,
    /// For a subnet of the desired set: the survey saying whether it is public.
    survey: Option<Arc<SubnetSurvey>>,
}

impl DiscoveryTags {
    /// The tag on `resource_id` (a subnet or security group id), whatever kind of subnet it is.
    pub fn new(resource_id: String) -> Self {
        DiscoveryTags { resource_id, survey: None }
    }

    /// The tag on one of the subnets `survey` covers: public ones are left untagged unless the
    /// user chose them.
    pub fn subnet(resource_id: String, survey: Arc<SubnetSurvey>) -> Self {
        DiscoveryTags { resource_id, survey: Some(survey) }
    }
}

/// Which of a set of subnets are public, read once for all of them (one DescribeSubnets and one
/// DescribeRouteTables, shared by every subnet's observation).
#[derive(Debug)]
pub struct SubnetSurvey {
    vpc_id: Option<String>,
    subnet_ids: Vec<String>,
    /// Chosen with `--subnets`: tagged even when public (with a warning), and each must exist
    /// in the cluster's VPC.
    chosen: bool,
    found: OnceCell<HashMap<String, Option<String>>>,
}

impl SubnetSurvey {
    /// A survey of `subnet_ids` in `vpc_id`; `chosen` when the user named them.
    pub fn new(vpc_id: Option<String>, subnet_ids: Vec<String>, chosen: bool) -> Self {
        SubnetSurvey { vpc_id, subnet_ids, chosen, found: OnceCell::new() }
    }

    /// Whether the subnets were chosen with `--subnets`.
    pub fn chosen(&self) -> bool {
        self.chosen
    }

    /// Why `subnet` is public (None: private).
    pub async fn public_reason(&self, cx: &Cx, subnet: &str) -> Result<Option<String>> {
        let found = self.found.get_or_try_init(|| self.read(cx)).await?;
        match found.get(subnet) {
            Some(reason) => Ok(reason.clone()),
            None => Err(Error::new(ErrorKind::InvalidInput, format!("subnet {subnet} not found"))
                .with_hint("--subnets takes subnets of the cluster's VPC, e.g. --subnets subnet-0abc,subnet-0def")),
        }
    }

    async fn read(&self, cx: &Cx) -> Result<HashMap<String, Option<String>>> {
        let ec2 = &cx.aws.ec2;
        let ids = Some(self.subnet_ids.clone());
        let (subnets, tables) = tokio::join!(
            ec2.describe_subnets().set_subnet_ids(ids).into_paginator().items().send().try_collect(),
            route_tables(cx, self.vpc_id.as_deref())
        );
        let subnets = subnets.map_err(|e| Error::aws("failed to read the cluster's subnets", "ec2:DescribeSubnets", e));
        let subnets = match subnets {
            Err(e) if self.chosen && e.kind == ErrorKind::NotFound => {
                return Err(Error::new(ErrorKind::InvalidInput, "a subnet given with --subnets does not exist")
                    .with_cause(e.to_string())
                    .with_hint("--subnets takes subnets of the cluster's VPC"));
            }
            other => other?,
        };
        let tables = tables?;
        let mut out = HashMap::new();
        for s in &subnets {
            let id = s.subnet_id().unwrap_or_default().to_string();
            if self.chosen && self.vpc_id.is_some() && s.vpc_id() != self.vpc_id.as_deref() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("subnet {id} is in {}, not in the cluster's VPC", s.vpc_id().unwrap_or("another VPC")),
                )
                .with_hint("--subnets takes subnets of the cluster's VPC"));
            }
            out.insert(id, public_reason(s, &tables));
        }
        Ok(out)
    }
}

/// Every route table of a VPC (none without a VPC).
pub async fn route_tables(cx: &Cx, vpc_id: Option<&str>) -> Result<Vec<RouteTable>> {
    let Some(vpc) = vpc_id else { return Ok(Vec::new()) };
    let filter = Filter::builder().name("vpc-id").values(vpc).build();
    let tables = cx.aws.ec2.describe_route_tables().filters(filter).into_paginator().items().send().try_collect();
    tables.await.map_err(|e| Error::aws("failed to read the VPC's route tables", "ec2:DescribeRouteTables", e))
}

/// Why a subnet is public, or None when it is private: it gives instances public IPs on launch,
/// or its route table (its own, else the VPC's main one) routes to an internet gateway.
pub fn public_reason(subnet: &Subnet, tables: &[RouteTable]) -> Option<String> {
    let id = subnet.subnet_id().unwrap_or_default();
    if subnet.map_public_ip_on_launch() == Some(true) {
        return Some("assigns public IPs on launch".to_string());
    }
    let own = |t: &&RouteTable| t.associations().iter().any(|a| a.subnet_id() == Some(id));
    let main = |t: &&RouteTable| t.associations().iter().any(|a| a.main() == Some(true));
    let table = tables.iter().find(own).or_else(|| tables.iter().find(main))?;
    let igw = table.routes().iter().find_map(|r| r.gateway_id().filter(|g| g.starts_with("igw-")))?;
    Some(format!("routes to internet gateway {igw} ({})", table.route_table_id().unwrap_or("route table")))
}

#[async_trait]
impl Resource for DiscoveryTags {
    fn id(&self) -> String {
        format!("ec2-tags/{}", self.resource_id)
    }

    async fn observe(&self, cx: &Cx) -> Result<Observed> {
        let tags = cx
            .aws
            .ec2
            .describe_tags()
            .filters(Filter::builder().name("resource-id").values(&self.resource_id).build())
            .filters(Filter::builder().name("key").values(DISCOVERY_TAG).values(DISCOVERY_MARKER_TAG).build())
            .into_paginator()
            .items()
            .send()
            .try_collect();
        // The survey is read alongside the tags, not after them: an untagged subnet needs both,
        // and waiting for the tags first made observation two round trips deep.
        let survey = async {
            match &self.survey {
                Some(s) => Some(s.public_reason(cx, &self.resource_id).await),
                None => None,
            }
        };
        let (out, public) = tokio::join!(tags, survey);
        let out = out.map_err(|e| {
            Error::aws(format!("failed to read the tags of {}", self.resource_id), "ec2:DescribeTags", e)
        })?;
        let value = |key: &str| out.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value());
        let cluster = cx.desired.target.cluster.as_str();
        let seen = match value(DISCOVERY_TAG) {
            // karpctl's marker is still there: karpctl tagged it and the tag was removed since.
            None if value(DISCOVERY_MARKER_TAG).is_some() => {
                Observed::present(true, vec![Drift::new(format!("{DISCOVERY_TAG} tag removed"))], ())
            }
            None => match (&self.survey, public) {
                (Some(survey), Some(public)) if !survey.chosen() => match public? {
                    Some(why) => Observed::skipped(format!(
                        "public subnet ({why}): not tagged; choose the subnets with --subnets to tag it anyway"
                    )),
                    None => Observed::absent(),
                },
                // Chosen: still checked to exist in the cluster's VPC.
                (_, Some(public)) => public.map(|_| Observed::absent())?,
                _ => Observed::absent(),
            },
            // Another cluster's Karpenter selects it: retagging would move its nodes here.
            Some(v) if v != cluster => Observed::skipped(format!(
                "tagged {DISCOVERY_TAG}={v} for another cluster; never retagged, even with --adopt"
            )),
            Some(_) => {
                // Without the marker it was tagged for this cluster before karpctl came: fine as it
                // is, and not karpctl's to remove.
                let presence = if value(DISCOVERY_MARKER_TAG).is_some() { Presence::Owned } else { Presence::Shared };
                Observed::present_as(presence, Vec::new(), ())
            }
        };
        Ok(seen)
    }

    async fn apply(&self, cx: &Cx, seen: &Observed) -> Result<()> {
        if seen.presence == Presence::Shared {
            return Ok(());
        }
        cx.aws
            .ec2
            .create_tags()
            .resources(&self.resource_id)
            .tags(Tag::builder().key(DISCOVERY_TAG).value(&cx.desired.target.cluster).build())
            .tags(Tag::builder().key(DISCOVERY_MARKER_TAG).value(TAG_MANAGED_BY_VALUE).build())
            .send()
            .await
            .map_err(|e| Error::aws(format!("failed to tag {}", self.resource_id), "ec2:CreateTags", e))?;
        Ok(())
    }

    async fn delete(&self, cx: &Cx, _seen: &Observed) -> Result<()> {
        // Only tags karpctl added reach here (Owned = marker present); both go.
        let r = cx
            .aws
            .ec2
            .delete_tags()
            .resources(&self.resource_id)
            .tags(Tag::builder().key(DISCOVERY_TAG).value(&cx.desired.target.cluster).build())
            .tags(Tag::builder().key(DISCOVERY_MARKER_TAG).build())
            .send()
            .await;
        ignore_gone(r.map_err(|e| Error::aws(format!("failed to untag {}", self.resource_id), "ec2:DeleteTags", e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{Route, RouteTableAssociation};

    fn subnet(id: &str, public_ip: bool) -> Subnet {
        Subnet::builder().subnet_id(id).map_public_ip_on_launch(public_ip).build()
    }

    fn table(id: &str, subnet: Option<&str>, main: bool, gateway: &str) -> RouteTable {
        let assoc = RouteTableAssociation::builder().set_subnet_id(subnet.map(str::to_string)).main(main).build();
        let route = Route::builder().destination_cidr_block("0.0.0.0/0").gateway_id(gateway).build();
        RouteTable::builder().route_table_id(id).associations(assoc).routes(route).build()
    }

    #[test]
    fn a_subnet_is_public_by_its_own_route_table_else_the_main_one() {
        let tables = [table("rtb-main", None, true, "local"), table("rtb-pub", Some("subnet-a"), false, "igw-1")];
        assert_eq!(
            public_reason(&subnet("subnet-a", false), &tables).as_deref(),
            Some("routes to internet gateway igw-1 (rtb-pub)")
        );
        assert_eq!(public_reason(&subnet("subnet-b", false), &tables), None);
        assert_eq!(public_reason(&subnet("subnet-b", true), &tables).as_deref(), Some("assigns public IPs on launch"));
        let public_main = [table("rtb-main", None, true, "igw-2"), table("rtb-nat", Some("subnet-c"), false, "nat-1")];
        assert!(public_reason(&subnet("subnet-b", false), &public_main).is_some());
        assert_eq!(public_reason(&subnet("subnet-c", false), &public_main), None);
    }
}
