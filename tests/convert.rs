//! `karpctl convert`: a table of old manifests and the v1 manifests they must become,
//! written out by hand (not produced by the converter), each output also checked against
//! the reference v1 CRD schemas; then the error cases.

use crate::support::crd_schema;

use karpctl::convert::{convert_stream, to_yaml, ConvertError, ConvertOptions};
use serde::Deserialize;
use serde_json::Value;

struct Case {
    name: &'static str,
    input: &'static str,
    node_role: Option<&'static str>,
    expected: &'static str,
    /// Each entry must be a substring of exactly one warning, and there must be no other
    /// warnings.
    warnings: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "inline provider: old implicit defaults written out, AL2 default kept with a warning",
        input: r#"
apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata:
  name: default
spec:
  provider:
    instanceProfile: KarpenterNodeInstanceProfile-demo
    subnetSelector:
      karpenter.sh/discovery: demo
    securityGroupSelector:
      karpenter.sh/discovery: demo
"#,
        node_role: None,
        expected: r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: kubernetes.io/os, operator: In, values: [linux]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m, r]}
        - {key: karpenter.k8s.aws/instance-generation, operator: Gt, values: ["2"]}
      expireAfter: Never
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: Never
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: default
spec:
  amiSelectorTerms:
    - alias: al2@latest
  instanceProfile: KarpenterNodeInstanceProfile-demo
  subnetSelectorTerms:
    - tags: {karpenter.sh/discovery: demo}
  securityGroupSelectorTerms:
    - tags: {karpenter.sh/discovery: demo}
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
"#,
        warnings: &["(line 2, Provisioner/default): spec.provider.amiFamily: not set; the old API defaulted to AL2"],
    },
    Case {
        name: "every Provisioner field; providerRef resolved to an AWSNodeTemplate later in the stream",
        input: r#"
apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata:
  name: general
  namespace: karpenter
  labels:
    team: platform
spec:
  providerRef:
    name: general-template
  labels:
    billing: team-a
    karpenter.sh/provisioner-name: general
  annotations:
    karpenter.sh/do-not-consolidate: "true"
    example.com/owner: platform
  requirements:
    - key: karpenter.sh/capacity-type
      operator: In
      values: ["spot", "on-demand"]
    - key: node.kubernetes.io/instance-type
      operator: In
      values: [m5.large, m5.xlarge]
    - key: topology.kubernetes.io/zone
      operator: In
      values: [us-west-2a]
    - key: karpenter.sh/provisioner-name
      operator: DoesNotExist
  taints:
    - key: example.com/special
      value: "true"
      effect: NoSchedule
  startupTaints:
    - key: example.com/init
      effect: NoExecute
  limits:
    resources:
      cpu: 1000
      memory: 1000Gi
  ttlSecondsAfterEmpty: 30
  ttlSecondsUntilExpired: 2592000
  weight: 10
  kubeletConfiguration:
    maxPods: 110
    systemReserved:
      cpu: 100m
      memory: 100Mi
    containerRuntime: dockerd
---
apiVersion: karpenter.k8s.aws/v1alpha1
kind: AWSNodeTemplate
metadata:
  name: general-template
spec:
  amiFamily: Bottlerocket
  instanceProfile: KarpenterNodeInstanceProfile-demo
  subnetSelector:
    karpenter.sh/discovery: demo
  securityGroupSelector:
    aws-ids: sg-0123, sg-0456
  tags:
    team: platform
"#,
        node_role: Some("KarpenterNodeRole-demo"),
        expected: r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: general
  labels: {team: platform}
spec:
  template:
    metadata:
      labels: {billing: team-a}
      annotations:
        karpenter.sh/do-not-disrupt: "true"
        example.com/owner: platform
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: general-template}
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot, on-demand]}
        - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large, m5.xlarge]}
        - {key: topology.kubernetes.io/zone, operator: In, values: [us-west-2a]}
        - {key: kubernetes.io/os, operator: In, values: [linux]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
      taints:
        - {key: example.com/special, value: "true", effect: NoSchedule}
      startupTaints:
        - {key: example.com/init, effect: NoExecute}
      expireAfter: 720h
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 30s
  limits:
    cpu: 1000
    memory: 1000Gi
  weight: 10
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: general-template
spec:
  amiSelectorTerms:
    - alias: bottlerocket@latest
  role: KarpenterNodeRole-demo
  subnetSelectorTerms:
    - tags: {karpenter.sh/discovery: demo}
  securityGroupSelectorTerms:
    - id: sg-0123
    - id: sg-0456
  kubelet:
    maxPods: 110
    systemReserved: {cpu: 100m, memory: 100Mi}
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
  tags: {team: platform}
"#,
        warnings: &[
            "Provisioner/general): spec.labels[\"karpenter.sh/provisioner-name\"]: renamed to karpenter.sh/nodepool",
            "Provisioner/general): spec.requirements[3] (karpenter.sh/provisioner-name): renamed to karpenter.sh/nodepool",
            "Provisioner/general): spec.kubeletConfiguration.containerRuntime: no v1 equivalent",
        ],
    },
    Case {
        name: "consolidation.enabled; constrained keys get no default; expiry in hours and minutes",
        input: r#"
apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata:
  name: consolidating
spec:
  providerRef:
    name: elsewhere
  consolidation:
    enabled: true
  ttlSecondsUntilExpired: 5400
  labels:
    kubernetes.io/os: linux
  requirements:
    - key: karpenter.k8s.aws/instance-category
      operator: In
      values: [c]
    - key: kubernetes.io/arch
      operator: In
      values: [arm64]
"#,
        node_role: None,
        expected: r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: consolidating
spec:
  template:
    metadata:
      labels: {kubernetes.io/os: linux}
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: elsewhere}
      requirements:
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c]}
        - {key: kubernetes.io/arch, operator: In, values: [arm64]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      expireAfter: 1h30m
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 0s
"#,
        warnings: &[],
    },
    Case {
        name: "AWSNodeTemplate: every field, name/owner AMI selection keeps the family, comma lists multiply out",
        input: r#"
apiVersion: karpenter.k8s.aws/v1alpha1
kind: AWSNodeTemplate
metadata:
  name: full
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{}'
spec:
  amiFamily: AL2023
  amiSelector:
    aws::name: my-ami-*, other-ami
    aws::owners: "123456789012"
  subnetSelector:
    karpenter.sh/discovery: demo
    kubernetes.io/role/internal-elb: "1"
  securityGroupSelector:
    Name: nodes-a,nodes-b
  instanceProfile: KarpenterNodeInstanceProfile-demo
  userData: |
    echo hello
  tags:
    team: platform
    cost-center: 42
  blockDeviceMappings:
    - deviceName: /dev/xvda
      ebs:
        volumeSize: 100Gi
        volumeType: gp3
        iops: 3000
        throughput: 125
        encrypted: true
        deleteOnTermination: true
        kmsKeyID: arn:aws:kms:us-west-2:111122223333:key/abcd
  metadataOptions:
    httpTokens: required
    httpPutResponseHopLimit: 1
  detailedMonitoring: true
  context: example-context
"#,
        node_role: None,
        expected: r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: full
spec:
  amiFamily: AL2023
  amiSelectorTerms:
    - {name: my-ami-*, owner: "123456789012"}
    - {name: other-ami, owner: "123456789012"}
  instanceProfile: KarpenterNodeInstanceProfile-demo
  subnetSelectorTerms:
    - tags: {karpenter.sh/discovery: demo, kubernetes.io/role/internal-elb: "1"}
  securityGroupSelectorTerms:
    - tags: {Name: nodes-a}
    - tags: {Name: nodes-b}
  blockDeviceMappings:
    - deviceName: /dev/xvda
      ebs:
        volumeSize: 100Gi
        volumeType: gp3
        iops: 3000
        throughput: 125
        encrypted: true
        deleteOnTermination: true
        kmsKeyID: arn:aws:kms:us-west-2:111122223333:key/abcd
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 1, httpTokens: required}
  tags: {team: platform, cost-center: "42"}
  userData: |
    echo hello
  detailedMonitoring: true
  context: example-context
"#,
        warnings: &[],
    },
    Case {
        name: "AMI families with an alias; --node-role replaces the instance profile or fills its absence",
        input: r#"
apiVersion: karpenter.k8s.aws/v1alpha1
kind: AWSNodeTemplate
metadata: {name: al2}
spec:
  amiFamily: AL2
  subnetSelector: {karpenter.sh/discovery: demo}
  securityGroupSelector: {karpenter.sh/discovery: demo}
---
apiVersion: karpenter.k8s.aws/v1alpha1
kind: AWSNodeTemplate
metadata: {name: al2023}
spec:
  amiFamily: AL2023
  instanceProfile: old-profile
  subnetSelector: {karpenter.sh/discovery: demo}
  securityGroupSelector: {karpenter.sh/discovery: demo}
---
apiVersion: karpenter.k8s.aws/v1alpha1
kind: AWSNodeTemplate
metadata: {name: win2019}
spec:
  amiFamily: Windows2019
  subnetSelector: {karpenter.sh/discovery: demo}
  securityGroupSelector: {karpenter.sh/discovery: demo}
---
apiVersion: karpenter.k8s.aws/v1alpha1
kind: AWSNodeTemplate
metadata: {name: win2022}
spec:
  amiFamily: Windows2022
  subnetSelector: {karpenter.sh/discovery: demo}
  securityGroupSelector: {karpenter.sh/discovery: demo}
"#,
        node_role: Some("KarpenterNodeRole-demo"),
        expected: r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: al2}
spec:
  amiSelectorTerms: [{alias: al2@latest}]
  role: KarpenterNodeRole-demo
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: al2023}
spec:
  amiSelectorTerms: [{alias: al2023@latest}]
  role: KarpenterNodeRole-demo
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: win2019}
spec:
  amiSelectorTerms: [{alias: windows2019@latest}]
  role: KarpenterNodeRole-demo
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: win2022}
spec:
  amiSelectorTerms: [{alias: windows2022@latest}]
  role: KarpenterNodeRole-demo
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
"#,
        warnings: &[],
    },
    Case {
        name: "Ubuntu with an AMI selector becomes AL2 plus Ubuntu's root volume",
        input: r#"
apiVersion: karpenter.k8s.aws/v1alpha1
kind: AWSNodeTemplate
metadata: {name: ubuntu}
spec:
  amiFamily: Ubuntu
  amiSelector:
    aws-ids: ami-0abc123
  instanceProfile: profile
  subnetSelector: {karpenter.sh/discovery: demo}
  securityGroupSelector: {karpenter.sh/discovery: demo}
"#,
        node_role: None,
        expected: r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: ubuntu}
spec:
  amiFamily: AL2
  amiSelectorTerms: [{id: ami-0abc123}]
  instanceProfile: profile
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  blockDeviceMappings:
    - deviceName: /dev/sda1
      rootVolume: true
      ebs: {encrypted: true, volumeType: gp3, volumeSize: 20Gi}
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
"#,
        warnings: &["(line 2, AWSNodeTemplate/ubuntu): spec.amiFamily: Ubuntu is not an AMI family in v1; converted to AL2"],
    },
    Case {
        name: "Custom family: ids win over other AMI filters; launchTemplate, virtualName, restricted tags reported",
        input: r#"
apiVersion: karpenter.k8s.aws/v1alpha1
kind: AWSNodeTemplate
metadata: {name: custom}
spec:
  amiFamily: Custom
  amiSelector:
    aws::ids: ami-0aaa,ami-0bbb
    purpose: nodes
  launchTemplate: my-template
  instanceProfile: profile
  subnetSelector:
    aws-ids: subnet-0aaa
  securityGroupSelector:
    Name: ""
  blockDeviceMappings:
    - deviceName: /dev/sdb
      virtualName: ephemeral0
  tags:
    kubernetes.io/cluster/demo: owned
    team: a
  userData: |
    #!/bin/bash
    /etc/eks/bootstrap.sh demo --kubelet-extra-args '--register-with-taints=karpenter.sh/unregistered:NoExecute'
"#,
        node_role: None,
        expected: r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: custom}
spec:
  amiFamily: Custom
  amiSelectorTerms: [{id: ami-0aaa}, {id: ami-0bbb}]
  instanceProfile: profile
  subnetSelectorTerms: [{id: subnet-0aaa}]
  securityGroupSelectorTerms: [{tags: {Name: "*"}}]
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
  tags: {team: a}
  userData: |
    #!/bin/bash
    /etc/eks/bootstrap.sh demo --kubelet-extra-args '--register-with-taints=karpenter.sh/unregistered:NoExecute'
"#,
        warnings: &[
            "AWSNodeTemplate/custom): spec.launchTemplate: no v1 equivalent",
            "AWSNodeTemplate/custom): spec.amiSelector: v1 id terms cannot be combined with other filters; kept the ids, dropped purpose",
            "AWSNodeTemplate/custom): spec.amiFamily: Custom: in v1 the user data must register nodes with the taint karpenter.sh/unregistered:NoExecute",
            "AWSNodeTemplate/custom): spec.blockDeviceMappings[0]: instance store mapping (virtualName ephemeral0) has no v1 equivalent",
            "AWSNodeTemplate/custom): spec.tags[\"kubernetes.io/cluster/demo\"]: Karpenter v1 sets this tag itself",
        ],
    },
    Case {
        name: "fields with no v1 equivalent are reported, never dropped silently",
        input: r#"
apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata: {name: odd}
spec:
  providerRef: {name: odd}
  futureField: 1
  requirements:
    - key: karpenter.k8s.aws/instance-pods
      operator: Gt
      values: ["20"]
    - key: kubernetes.io/os
      operator: In
      values: [linux]
  kubeletConfiguration:
    containerRuntime: containerd
    imageGCHighThresholdPercent: 85
    imageGCLowThresholdPercent: 80
---
apiVersion: karpenter.k8s.aws/v1alpha1
kind: AWSNodeTemplate
metadata: {name: odd}
spec:
  amiFamily: AL2023
  instanceProfile: profile
  subnetSelector: {karpenter.sh/discovery: demo}
  securityGroupSelector: {karpenter.sh/discovery: demo}
  metadataOptions: {httpEndpoint: disabled, httpFuture: x}
"#,
        node_role: None,
        expected: r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: odd}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: odd}
      requirements:
        - {key: kubernetes.io/os, operator: In, values: [linux]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m, r]}
        - {key: karpenter.k8s.aws/instance-generation, operator: Gt, values: ["2"]}
      expireAfter: Never
  disruption: {consolidationPolicy: WhenEmpty, consolidateAfter: Never}
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: odd}
spec:
  amiSelectorTerms: [{alias: al2023@latest}]
  instanceProfile: profile
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  kubelet: {imageGCHighThresholdPercent: 85, imageGCLowThresholdPercent: 80}
  metadataOptions: {httpEndpoint: disabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
"#,
        warnings: &[
            "Provisioner/odd): spec.futureField: no v1 equivalent",
            "Provisioner/odd): spec.requirements[0] (karpenter.k8s.aws/instance-pods): karpenter.k8s.aws/instance-pods is not a label Karpenter v1 knows",
            "Provisioner/odd): spec.kubeletConfiguration.containerRuntime: no v1 equivalent",
            "AWSNodeTemplate/odd): spec.metadataOptions.httpFuture: no v1 equivalent",
        ],
    },
    Case {
        name: "v1beta1 NodePool and EC2NodeClass: expireAfter and kubelet move, WhenUnderutilized renamed, alias from family",
        input: r#"
apiVersion: karpenter.sh/v1beta1
kind: NodePool
metadata:
  name: default
spec:
  template:
    metadata:
      labels: {team: a}
      annotations: {karpenter.sh/do-not-evict: "true"}
    spec:
      nodeClassRef:
        apiVersion: karpenter.k8s.aws/v1beta1
        kind: EC2NodeClass
        name: default
      requirements:
        - key: karpenter.k8s.aws/instance-category
          operator: In
          values: [c, m]
          minValues: 2
      kubelet:
        maxPods: 50
        evictionHard: {memory.available: 5%}
  disruption:
    consolidationPolicy: WhenUnderutilized
    expireAfter: 168h
    budgets:
      - nodes: 10%
  limits:
    cpu: "100"
  weight: 5
---
apiVersion: karpenter.k8s.aws/v1beta1
kind: EC2NodeClass
metadata:
  name: default
spec:
  amiFamily: AL2023
  role: KarpenterNodeRole-demo
  subnetSelectorTerms:
    - tags: {karpenter.sh/discovery: demo}
  securityGroupSelectorTerms:
    - tags: {karpenter.sh/discovery: demo}
  tags: {team: a}
"#,
        node_role: None,
        expected: r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    metadata:
      labels: {team: a}
      annotations: {karpenter.sh/do-not-disrupt: "true"}
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m], minValues: 2}
      expireAfter: 168h
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 0s
    budgets:
      - nodes: 10%
  limits:
    cpu: "100"
  weight: 5
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: default
spec:
  amiSelectorTerms: [{alias: al2023@latest}]
  role: KarpenterNodeRole-demo
  subnetSelectorTerms:
    - tags: {karpenter.sh/discovery: demo}
  securityGroupSelectorTerms:
    - tags: {karpenter.sh/discovery: demo}
  kubelet:
    maxPods: 50
    evictionHard: {memory.available: 5%}
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
  tags: {team: a}
"#,
        warnings: &[],
    },
    Case {
        name: "v1beta1: WhenEmpty keeps consolidateAfter; explicit AMI terms keep the family; other v1 fields pass",
        input: r#"
apiVersion: karpenter.k8s.aws/v1beta1
kind: EC2NodeClass
metadata:
  name: pinned
spec:
  amiFamily: AL2
  amiSelectorTerms:
    - id: ami-0123456789
  instanceProfile: profile
  subnetSelectorTerms:
    - id: subnet-0aaa
  securityGroupSelectorTerms:
    - name: nodes
  blockDeviceMappings:
    - deviceName: /dev/xvda
      rootVolume: true
      ebs: {volumeSize: 50Gi, volumeType: gp3}
  associatePublicIPAddress: false
  instanceStorePolicy: RAID0
  metadataOptions:
    httpEndpoint: enabled
    httpProtocolIPv6: disabled
    httpPutResponseHopLimit: 1
    httpTokens: required
  detailedMonitoring: false
---
apiVersion: karpenter.sh/v1beta1
kind: NodePool
metadata:
  name: batch
spec:
  template:
    spec:
      nodeClassRef:
        name: pinned
      requirements:
        - key: karpenter.sh/capacity-type
          operator: In
          values: [spot]
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 10m
"#,
        node_role: None,
        expected: r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: pinned
spec:
  amiFamily: AL2
  amiSelectorTerms:
    - id: ami-0123456789
  instanceProfile: profile
  subnetSelectorTerms:
    - id: subnet-0aaa
  securityGroupSelectorTerms:
    - name: nodes
  blockDeviceMappings:
    - deviceName: /dev/xvda
      rootVolume: true
      ebs: {volumeSize: 50Gi, volumeType: gp3}
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 1, httpTokens: required}
  detailedMonitoring: false
  associatePublicIPAddress: false
  instanceStorePolicy: RAID0
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: batch
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: pinned}
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot]}
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 10m
"#,
        warnings: &[],
    },
    Case {
        name: "kubelet whose EC2NodeClass is not in the input is reported with the block to copy",
        input: r#"
apiVersion: karpenter.sh/v1beta1
kind: NodePool
metadata: {name: orphan}
spec:
  template:
    spec:
      nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: elsewhere}
      requirements: []
      kubelet: {maxPods: 20}
"#,
        node_role: None,
        expected: r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: orphan}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: elsewhere}
      requirements: []
"#,
        warnings: &[
            "NodePool/orphan): spec.template.spec.kubelet: kubelet settings moved to EC2NodeClass.spec.kubelet in v1, but EC2NodeClass \"elsewhere\" is not converted from this input; add spec.kubelet {\"maxPods\":20}",
        ],
    },
    Case {
        name: "two Provisioners sharing a template with different kubelet settings: first wins, second warned",
        input: r#"
apiVersion: karpenter.k8s.aws/v1alpha1
kind: AWSNodeTemplate
metadata: {name: shared}
spec:
  amiFamily: AL2023
  subnetSelector: {karpenter.sh/discovery: demo}
  securityGroupSelector: {karpenter.sh/discovery: demo}
---
apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata: {name: a}
spec:
  providerRef: {name: shared}
  requirements: [{key: karpenter.k8s.aws/instance-family, operator: In, values: [m5]}]
  kubeletConfiguration: {maxPods: 30}
---
apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata: {name: b}
spec:
  providerRef: {name: shared}
  requirements: [{key: karpenter.k8s.aws/instance-family, operator: In, values: [c5]}]
  kubeletConfiguration: {maxPods: 60}
"#,
        node_role: Some("KarpenterNodeRole-demo"),
        expected: r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: shared}
spec:
  amiSelectorTerms: [{alias: al2023@latest}]
  role: KarpenterNodeRole-demo
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: demo}}]
  kubelet: {maxPods: 30}
  metadataOptions: {httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 2, httpTokens: required}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: a}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: shared}
      requirements:
        - {key: karpenter.k8s.aws/instance-family, operator: In, values: [m5]}
        - {key: kubernetes.io/os, operator: In, values: [linux]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      expireAfter: Never
  disruption: {consolidationPolicy: WhenEmpty, consolidateAfter: Never}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: b}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: shared}
      requirements:
        - {key: karpenter.k8s.aws/instance-family, operator: In, values: [c5]}
        - {key: kubernetes.io/os, operator: In, values: [linux]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      expireAfter: Never
  disruption: {consolidationPolicy: WhenEmpty, consolidateAfter: Never}
"#,
        warnings: &[
            "document 3 (line 18, Provisioner/b): spec.kubeletConfiguration: EC2NodeClass \"shared\" is shared with Provisioner/a, whose kubelet settings it takes",
        ],
    },
    Case {
        name: "unrelated documents and v1 objects pass through unchanged; old keys in them are reported",
        input: r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {mode: fast}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata:
      annotations: {karpenter.sh/do-not-evict: "true"}
    spec:
      nodeSelector: {karpenter.sh/provisioner-name: default}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: already-v1}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: []
"#,
        node_role: None,
        expected: r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {mode: fast}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata:
      annotations: {karpenter.sh/do-not-evict: "true"}
    spec:
      nodeSelector: {karpenter.sh/provisioner-name: default}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: already-v1}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: []
"#,
        warnings: &[
            "Deployment/web): spec.template.spec.nodeSelector[\"karpenter.sh/provisioner-name\"]: uses karpenter.sh/provisioner-name",
            "Deployment/web): spec.template.metadata.annotations[\"karpenter.sh/do-not-evict\"]: uses karpenter.sh/do-not-evict",
        ],
    },
    Case {
        name: "kubectl List output: items are converted one by one",
        input: r#"
apiVersion: v1
kind: List
items:
  - apiVersion: karpenter.sh/v1alpha5
    kind: Provisioner
    metadata: {name: listed, resourceVersion: "123", uid: abc}
    spec:
      providerRef: {name: listed-template}
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [t3.large]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: kubernetes.io/os, operator: In, values: [linux]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      ttlSecondsUntilExpired: 86400
    status: {resources: {cpu: "4"}}
"#,
        node_role: None,
        expected: r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: listed}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: listed-template}
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [t3.large]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: kubernetes.io/os, operator: In, values: [linux]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      expireAfter: 24h
  disruption: {consolidationPolicy: WhenEmpty, consolidateAfter: Never}
"#,
        warnings: &[],
    },
];

fn parse_docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|de| Value::deserialize(de).expect("expected output in the test is valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn options(node_role: Option<&str>) -> ConvertOptions {
    ConvertOptions { node_role: node_role.map(str::to_string), strict: false }
}

#[test]
fn mapping_table() {
    let reference = crd_schema::reference_dir();
    if reference.is_none() {
        eprintln!("skipping CRD schema validation of converted documents: no reference directory");
    }
    let mut failures = Vec::new();
    for case in CASES {
        let converted = match convert_stream("input.yaml", case.input, &options(case.node_role)) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("[{}] unexpected error: {e}", case.name));
                continue;
            }
        };
        let expected = parse_docs(case.expected);
        if converted.documents != expected {
            let actual = to_yaml(&converted.documents).unwrap_or_default();
            failures.push(format!("[{}] output differs; got:\n{actual}", case.name));
        }
        for want in case.warnings {
            let hits = converted.warnings.iter().filter(|w| w.contains(want)).count();
            if hits != 1 {
                failures.push(format!(
                    "[{}] expected one warning containing {want:?}, found {hits} in {:#?}",
                    case.name, converted.warnings
                ));
            }
        }
        if converted.warnings.len() != case.warnings.len() {
            failures.push(format!(
                "[{}] expected {} warnings, got {:#?}",
                case.name,
                case.warnings.len(),
                converted.warnings
            ));
        }
        for w in &converted.warnings {
            if w.contains('\n') || !w.starts_with("input.yaml: document ") {
                failures.push(format!("[{}] warning is not one positioned line: {w:?}", case.name));
            }
        }
        if let Some(dir) = &reference {
            for doc in &converted.documents {
                let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
                let group = doc
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .split('/')
                    .next()
                    .unwrap_or_default();
                if !matches!((group, kind), ("karpenter.sh", "NodePool") | ("karpenter.k8s.aws", "EC2NodeClass")) {
                    continue;
                }
                let errors = crd_schema::validate_manifest(dir, doc);
                if !errors.is_empty() {
                    failures.push(format!("[{}] {kind} fails the v1 CRD schema: {errors:#?}", case.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn strict_turns_the_first_warning_into_an_error() {
    let case = &CASES[0];
    let opts = ConvertOptions { node_role: None, strict: true };
    let err = convert_stream("input.yaml", case.input, &opts).unwrap_err();
    assert!(matches!(err, ConvertError::StrictWarning { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("spec.provider.amiFamily"), "{text}");
    assert!(text.contains("--strict"), "{text}");
    assert!(!text.contains('\n'));
    assert!(err.hint().is_some());

    // A clean input is not affected by --strict.
    let clean = CASES.iter().find(|c| c.warnings.is_empty()).expect("a case without warnings");
    let ok = convert_stream("input.yaml", clean.input, &ConvertOptions { strict: true, ..options(clean.node_role) });
    assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.to_string()));
}

/// The exact text, so key order (apiVersion, kind, metadata, spec) is pinned down too.
#[test]
fn yaml_output_is_ordered_and_stable() {
    let input = r#"
apiVersion: karpenter.sh/v1alpha5
kind: Provisioner
metadata:
  name: tiny
spec:
  weight: 3
  ttlSecondsAfterEmpty: 60
  requirements:
    - {key: karpenter.k8s.aws/instance-family, operator: In, values: [m5]}
    - {key: kubernetes.io/os, operator: In, values: [linux]}
    - {key: kubernetes.io/arch, operator: In, values: [amd64]}
    - {key: karpenter.sh/capacity-type, operator: In, values: [spot]}
  providerRef:
    name: tiny
"#;
    let expected = r#"apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: tiny
spec:
  template:
    spec:
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: tiny
      requirements:
      - key: karpenter.k8s.aws/instance-family
        operator: In
        values:
        - m5
      - key: kubernetes.io/os
        operator: In
        values:
        - linux
      - key: kubernetes.io/arch
        operator: In
        values:
        - amd64
      - key: karpenter.sh/capacity-type
        operator: In
        values:
        - spot
      expireAfter: Never
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 1m
  weight: 3
"#;
    let first = convert_stream("-", input, &ConvertOptions::default()).unwrap();
    let text = to_yaml(&first.documents).unwrap();
    assert_eq!(text, expected);
    let second = convert_stream("-", input, &ConvertOptions::default()).unwrap();
    assert_eq!(to_yaml(&second.documents).unwrap(), text);
}

#[test]
fn multi_document_output_uses_separators() {
    let converted = convert_stream("input.yaml", CASES[0].input, &ConvertOptions::default()).unwrap();
    let text = to_yaml(&converted.documents).unwrap();
    assert_eq!(text.matches("\n---\n").count(), 1, "{text}");
    assert_eq!(parse_docs(&text), converted.documents);
}

/// Each error: one line, naming the source, the document and (where known) the line.
fn expect_error(input: &str, opts: &ConvertOptions, must_contain: &[&str]) -> ConvertError {
    let err = match convert_stream("bad.yaml", input, opts) {
        Ok(c) => panic!("expected an error, got {:?}", c.documents),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(!text.contains('\n'), "error is not one line: {text:?}");
    for want in must_contain {
        assert!(text.contains(want), "error {text:?} does not contain {want:?}");
    }
    assert!(err.hint().is_some(), "no hint for {text}");
    err
}

#[test]
fn invalid_yaml_is_an_error_with_its_line() {
    let input = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nspec:\n  requirements: [a, b\n";
    let err = expect_error(input, &ConvertOptions::default(), &["bad.yaml: document 2 (line ", "invalid YAML"]);
    match err {
        ConvertError::Yaml { position, .. } => {
            assert_eq!(position.document, 2);
            assert!(position.line.is_some_and(|l| l >= 8), "{position:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unknown_karpenter_api_version_is_an_error() {
    let input = "apiVersion: v1\nkind: Namespace\nmetadata: {name: karpenter}\n---\napiVersion: karpenter.sh/v1alpha4\nkind: Provisioner\nmetadata: {name: old}\nspec: {}\n";
    let err = expect_error(
        input,
        &ConvertOptions::default(),
        &["bad.yaml: document 2 (line 5, Provisioner/old)", "karpenter.sh/v1alpha4"],
    );
    assert!(matches!(err, ConvertError::UnknownApiVersion { .. }));
}

#[test]
fn provisioner_without_provider_is_an_error() {
    let input = "---\napiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata:\n  name: lonely\nspec:\n  requirements: []\n";
    let err = expect_error(
        input,
        &ConvertOptions::default(),
        &["bad.yaml: document 1 (line 2, Provisioner/lonely)", "neither spec.provider nor spec.providerRef"],
    );
    assert!(matches!(err, ConvertError::MissingProvider { .. }));
}

#[test]
fn missing_node_role_is_an_error() {
    let input = "apiVersion: karpenter.k8s.aws/v1alpha1\nkind: AWSNodeTemplate\nmetadata: {name: t}\nspec:\n  amiFamily: AL2023\n  subnetSelector: {a: b}\n  securityGroupSelector: {a: b}\n";
    let err = expect_error(input, &ConvertOptions::default(), &["document 1", "--node-role"]);
    assert!(matches!(err, ConvertError::NoNodeRole { .. }));
}

#[test]
fn ubuntu_without_ami_selector_is_an_error() {
    let input = "apiVersion: karpenter.k8s.aws/v1alpha1\nkind: AWSNodeTemplate\nmetadata: {name: u}\nspec:\n  amiFamily: Ubuntu\n  instanceProfile: p\n  subnetSelector: {a: b}\n  securityGroupSelector: {a: b}\n";
    expect_error(input, &ConvertOptions::default(), &["AWSNodeTemplate/u", "spec.amiFamily", "Ubuntu"]);
}

#[test]
fn missing_security_groups_with_launch_template_is_an_error() {
    let input = "apiVersion: karpenter.k8s.aws/v1alpha1\nkind: AWSNodeTemplate\nmetadata: {name: lt}\nspec:\n  launchTemplate: mine\n  subnetSelector: {a: b}\n";
    let err = expect_error(input, &ConvertOptions::default(), &["spec.securityGroupSelector"]);
    assert!(err.hint().unwrap_or_default().contains("launch template"));
}

#[test]
fn the_same_ec2nodeclass_twice_is_an_error() {
    let input = "apiVersion: karpenter.k8s.aws/v1alpha1\nkind: AWSNodeTemplate\nmetadata: {name: dup}\nspec:\n  instanceProfile: p\n  amiFamily: AL2023\n  subnetSelector: {a: b}\n  securityGroupSelector: {a: b}\n---\napiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata: {name: dup}\nspec:\n  provider:\n    instanceProfile: p\n    amiFamily: AL2023\n    subnetSelector: {a: b}\n    securityGroupSelector: {a: b}\n";
    let err = expect_error(input, &ConvertOptions::default(), &["document 2", "EC2NodeClass \"dup\"", "document 1"]);
    assert!(matches!(err, ConvertError::Duplicate { .. }));
}

#[test]
fn the_first_error_in_document_order_is_reported() {
    let input = "apiVersion: karpenter.k8s.aws/v1alpha1\nkind: AWSNodeTemplate\nmetadata: {name: t}\nspec: {}\n---\napiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata: {name: p}\nspec: {}\n";
    expect_error(input, &ConvertOptions::default(), &["document 1", "subnetSelector"]);
}

/// The schema check must be able to fail, or the table above proves nothing.
#[test]
fn crd_schema_check_rejects_invalid_manifests() {
    let Some(dir) = crd_schema::reference_dir() else {
        return;
    };
    let nodepool_with_old_kubelet = parse_docs(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: a}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: a}
      requirements: []
      kubelet: {maxPods: 10}
  disruption: {consolidationPolicy: WhenUnderutilized, consolidateAfter: 0s}
"#,
    );
    let errors = crd_schema::validate_manifest(&dir, &nodepool_with_old_kubelet[0]);
    assert!(errors.iter().any(|e| e.contains("kubelet")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains("WhenUnderutilized")), "{errors:#?}");

    let nodeclass_without_ami = parse_docs(
        "apiVersion: karpenter.k8s.aws/v1beta1\nkind: EC2NodeClass\nmetadata: {name: a}\nspec:\n  role: r\n  subnetSelectorTerms: [{tags: {a: b}}]\n  securityGroupSelectorTerms: [{tags: {a: b}}]\n",
    );
    let errors = crd_schema::validate_manifest(&dir, &nodeclass_without_ami[0]);
    assert!(errors.iter().any(|e| e.contains("amiSelectorTerms")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains("apiVersion")), "{errors:#?}");

    let unknown_kind = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"});
    assert!(!crd_schema::validate_manifest(&dir, &unknown_kind).is_empty());
}
