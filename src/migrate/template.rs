//! A node group's launch template, read for the parts an EC2NodeClass carries (security
//! groups, block device mappings, metadata options), so Karpenter's nodes get the disks and
//! IMDS settings the group's nodes had instead of Karpenter's defaults.

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
}

/// Read the version the node group uses (its own, else the template's default).
pub async fn read(aws: &Aws, spec: &aws_sdk_eks::types::LaunchTemplateSpecification) -> Result<Option<Template>> {
    let what = spec.name().or(spec.id()).unwrap_or_default().to_string();
    let got = aws
        .ec2
        .describe_launch_template_versions()
        .set_launch_template_id(spec.id().map(str::to_string))
        .set_launch_template_name(if spec.id().is_some() { None } else { spec.name().map(str::to_string) })
        .versions(spec.version().unwrap_or("$Default"))
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
    Template {
        security_groups,
        block_devices,
        metadata: metadata.filter(|m| m.as_object().is_some_and(|o| !o.is_empty())),
    }
}

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
        assert_eq!(from_data(&ResponseLaunchTemplateData::builder().build()), Template::default());
    }
}
