//! A node group's launch template, read for the parts an EC2NodeClass carries (security
//! groups, block device mappings, metadata options, the AMI and user data), so Karpenter's
//! nodes get the disks, IMDS settings and image the group's nodes had instead of Karpenter's
//! defaults, and for what a self-managed Auto Scaling group's NodePool needs from it (the
//! instance type, and whether it asks for spot).

use aws_sdk_ec2::types::ResponseLaunchTemplateData;
use serde_json::{json, Map, Value};

use crate::aws::Aws;
use crate::error::{AwsContext, Result};

/// What the EC2NodeClass takes from a launch template, in EC2NodeClass spelling.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Template {
    /// Security group ids (the template's and its network interfaces').
    pub security_groups: Vec<String>,
    /// `blockDeviceMappings` entries.
    pub block_devices: Vec<Value>,
    /// `metadataOptions`, when the template sets any.
    pub metadata: Option<Value>,
    /// The AMI id, when the template names one (a custom AMI).
    pub image_id: Option<String>,
    /// The user data, base64-decoded (as an EC2NodeClass's `userData` holds it).
    pub user_data: Option<String>,
    /// The instance type, when the template names one.
    pub instance_type: Option<String>,
    /// The template asks for spot instances (`InstanceMarketOptions.MarketType = spot`).
    pub spot: bool,
}

/// Which launch template, and which version of it (an EKS node group and an Auto Scaling
/// group name it the same way, in two SDK types).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateRef {
    /// Its id (preferred when both are known).
    pub id: Option<String>,
    /// Its name.
    pub name: Option<String>,
    /// The version (a number, `$Default` or `$Latest`); None: `$Default`.
    pub version: Option<String>,
}

impl From<&aws_sdk_eks::types::LaunchTemplateSpecification> for TemplateRef {
    fn from(s: &aws_sdk_eks::types::LaunchTemplateSpecification) -> Self {
        TemplateRef {
            id: s.id().map(str::to_string),
            name: s.name().map(str::to_string),
            version: s.version().map(str::to_string),
        }
    }
}

impl From<&aws_sdk_autoscaling::types::LaunchTemplateSpecification> for TemplateRef {
    fn from(s: &aws_sdk_autoscaling::types::LaunchTemplateSpecification) -> Self {
        TemplateRef {
            id: s.launch_template_id().map(str::to_string),
            name: s.launch_template_name().map(str::to_string),
            version: s.version().map(str::to_string),
        }
    }
}

/// Read the version the node group uses (its own, else the template's default).
pub async fn read(aws: &Aws, spec: &TemplateRef) -> Result<Option<Template>> {
    let what = spec.name.as_deref().or(spec.id.as_deref()).unwrap_or_default().to_string();
    let got = aws
        .ec2
        .describe_launch_template_versions()
        .set_launch_template_id(spec.id.clone())
        .set_launch_template_name(if spec.id.is_some() { None } else { spec.name.clone() })
        .versions(spec.version.as_deref().unwrap_or("$Default"))
        .send()
        .await
        .or_aws(format!("failed to read launch template {what}"), "ec2:DescribeLaunchTemplateVersions")?;
    Ok(got.launch_template_versions().first().and_then(|v| v.launch_template_data()).map(from_data))
}

/// The EC2NodeClass parts of a launch template's data.
pub fn from_data(d: &ResponseLaunchTemplateData) -> Template {
    let mut security_groups: Vec<String> = d.security_group_ids().to_vec();
    for sg in d.network_interfaces().iter().flat_map(|n| n.groups()) {
        if !security_groups.contains(sg) {
            security_groups.push(sg.clone());
        }
    }
    let block_devices = d
        .block_device_mappings()
        .iter()
        .map(|b| {
            let mut m = json!({"deviceName": b.device_name()});
            if let Some(e) = b.ebs() {
                let mut ebs = Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        ebs.insert(k.into(), v);
                    }
                };
                put("volumeSize", e.volume_size().map(|s| json!(format!("{s}Gi"))));
                put("volumeType", e.volume_type().map(|t| json!(t.as_str())));
                put("iops", e.iops().map(|v| json!(v)));
                put("throughput", e.throughput().map(|v| json!(v)));
                put("encrypted", e.encrypted().map(|v| json!(v)));
                put("kmsKeyID", e.kms_key_id().map(|v| json!(v)));
                put("snapshotID", e.snapshot_id().map(|v| json!(v)));
                put("deleteOnTermination", e.delete_on_termination().map(|v| json!(v)));
                m["ebs"] = Value::Object(ebs);
            }
            m
        })
        .collect();
    let metadata = d.metadata_options().map(|o| {
        let mut m = Map::new();
        if let Some(v) = o.http_endpoint() {
            m.insert("httpEndpoint".into(), json!(v.as_str()));
        }
        if let Some(v) = o.http_protocol_ipv6() {
            m.insert("httpProtocolIPv6".into(), json!(v.as_str()));
        }
        if let Some(v) = o.http_put_response_hop_limit() {
            m.insert("httpPutResponseHopLimit".into(), json!(v));
        }
        if let Some(v) = o.http_tokens() {
            m.insert("httpTokens".into(), json!(v.as_str()));
        }
        Value::Object(m)
    });
    // EC2 hands user data back base64-encoded; text that is not valid base64 or UTF-8 is
    // kept out (an EC2NodeClass holds text), and said so by the plan like any user data not
    // carried.
    let user_data = d.user_data().filter(|u| !u.is_empty()).map(|u| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(u.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| UNREADABLE.to_string())
    });
    Template {
        security_groups,
        block_devices,
        metadata: metadata.filter(|m| m.as_object().is_some_and(|o| !o.is_empty())),
        image_id: d.image_id().filter(|i| !i.is_empty()).map(str::to_string),
        user_data,
        instance_type: d.instance_type().map(|t| t.as_str().to_string()),
        spot: d
            .instance_market_options()
            .and_then(|m| m.market_type())
            .is_some_and(|m| *m == aws_sdk_ec2::types::MarketType::Spot),
    }
}

/// What `user_data` holds when the template's was not base64 of UTF-8 text.
pub const UNREADABLE: &str = "<user data that is not UTF-8 text>";

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{
        LaunchTemplateBlockDeviceMapping, LaunchTemplateEbsBlockDevice, LaunchTemplateHttpTokensState,
        LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptions,
        LaunchTemplateInstanceNetworkInterfaceSpecification, VolumeType,
    };

    #[test]
    fn security_groups_disks_and_imds_in_ec2nodeclass_spelling() {
        let d = ResponseLaunchTemplateData::builder()
            .security_group_ids("sg-1")
            .network_interfaces(
                LaunchTemplateInstanceNetworkInterfaceSpecification::builder().groups("sg-2").groups("sg-1").build(),
            )
            .block_device_mappings(
                LaunchTemplateBlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        LaunchTemplateEbsBlockDevice::builder()
                            .volume_size(100)
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .build(),
                    )
                    .build(),
            )
            .metadata_options(
                LaunchTemplateInstanceMetadataOptions::builder()
                    .http_tokens(LaunchTemplateHttpTokensState::Required)
                    .http_put_response_hop_limit(1)
                    .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                    .build(),
            )
            .build();
        let t = from_data(&d);
        assert_eq!(t.security_groups, vec!["sg-1", "sg-2"]);
        assert_eq!(
            t.block_devices,
            vec![
                json!({"deviceName": "/dev/xvda", "ebs": {"volumeSize": "100Gi", "volumeType": "gp3", "encrypted": true}})
            ]
        );
        assert_eq!(
            t.metadata,
            Some(json!({"httpEndpoint": "enabled", "httpPutResponseHopLimit": 1, "httpTokens": "required"}))
        );
        assert_eq!(t.image_id, None);
        assert_eq!(from_data(&ResponseLaunchTemplateData::builder().build()), Template::default());
    }

    #[test]
    fn ami_user_data_instance_type_and_spot() {
        use aws_sdk_ec2::types::{InstanceType, LaunchTemplateInstanceMarketOptions, MarketType};
        let d = ResponseLaunchTemplateData::builder()
            .image_id("ami-0abc")
            .user_data("IyEvYmluL2Jhc2gKZWNobyBoaQo=")
            .instance_type(InstanceType::M5Large)
            .instance_market_options(
                LaunchTemplateInstanceMarketOptions::builder().market_type(MarketType::Spot).build(),
            )
            .build();
        let t = from_data(&d);
        assert_eq!(t.image_id.as_deref(), Some("ami-0abc"));
        assert_eq!(t.user_data.as_deref(), Some("#!/bin/bash\necho hi\n"));
        assert_eq!(t.instance_type.as_deref(), Some("m5.large"));
        assert!(t.spot);
        let bad = from_data(&ResponseLaunchTemplateData::builder().user_data("not base64!").build());
        assert_eq!(bad.user_data.as_deref(), Some(UNREADABLE));
    }
}
