#!/usr/bin/env python3
"""Self-test of moto_server.py + moto_ext.py with boto3.

    python3 tests/support/test_moto_ext.py      (or: python3 -m pytest tests/support)

Starts the launcher on a free loopback port (--port 0, port read from its first
stdout line), resets moto before each test, and exercises every added route.
"""

import json
import os
import re
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

import boto3
from botocore.exceptions import ClientError

os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
HERE = os.path.dirname(os.path.abspath(__file__))
REGION, ACCOUNT_A, ACCOUNT_B = "us-west-2", "111111111111", "222222222222"
NODE_ROLE = f"arn:aws:iam::{ACCOUNT_A}:role/KarpenterNodeRole-c1"
ADMIN_ROLE = f"arn:aws:iam::{ACCOUNT_A}:role/path/Admin"


def fake_sigv4(region, service="eks"):
    """moto does not check signatures; it only reads region/service from the scope."""
    return (f"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/{region}/{service}/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=0000")


class MotoExtTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "moto_server.py"),
                                     "--host", "127.0.0.1", "--port", "0"],
                                    stdout=subprocess.PIPE, text=True)
        cls.addClassCleanup(cls.stop_server)  # also runs when setUpClass fails
        line = cls.proc.stdout.readline()  # "moto_server listening on http://127.0.0.1:PORT"
        match = re.search(r"http://\S+:(\d+)$", line.strip())
        assert match, f"launcher did not start: {line!r}"
        cls.url = f"http://127.0.0.1:{match.group(1)}"
        with urllib.request.urlopen(cls.url + "/moto-api/") as resp:  # readiness URL
            assert resp.status == 200

    @classmethod
    def stop_server(cls):
        cls.proc.terminate()
        assert cls.proc.wait(10) == 0, "launcher should exit 0 on SIGTERM"

    def setUp(self):
        self.http("POST", "/moto-api/reset")

    # -- helpers -------------------------------------------------------------
    def client(self, service, account=ACCOUNT_A, region=REGION):
        c = boto3.client(service, endpoint_url=self.url, region_name=region,
                         aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x")
        c.meta.events.register(f"before-sign.{service}.*",
                               lambda request, **_: request.headers.__setitem__("x-moto-account-id", account))
        return c

    def http(self, method, path, body=None, headers=None):
        req = urllib.request.Request(self.url + path, method=method, headers=headers or {},
                                     data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), json.loads(err.read() or b"{}")

    def raw_create_cluster(self, name, account=ACCOUNT_A, region=REGION, **extra):
        """The raw request karpctl's Rust tests send to seed a cluster."""
        body = {"name": name, "roleArn": f"arn:aws:iam::{account}:role/eks-cluster", "version": "1.31",
                "resourcesVpcConfig": {"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"],
                                       "clusterSecurityGroupId": "sg-cluster", "vpcId": "vpc-1"}, **extra}
        status, _, out = self.http("POST", "/clusters", body, {
            "Content-Type": "application/json", "Authorization": fake_sigv4(region),
            "x-moto-account-id": account})
        self.assertEqual(status, 200, out)
        return out["cluster"]

    def set_status(self, name, status, account=ACCOUNT_A, region=REGION):
        return self.http("POST", f"/moto-api/karpctl/clusters/{name}/status",
                         {"status": status, "region": region}, {"x-moto-account-id": account})

    def assertError(self, code, http_status, fn, **kwargs):
        with self.assertRaises(ClientError) as ctx:
            fn(**kwargs)
        resp = ctx.exception.response
        self.assertEqual(resp["Error"]["Code"], code)
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], http_status)
        self.assertEqual(resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"], code)
        return resp

    def assertQueryError(self, code, fn, **kwargs):
        """An error of a query-protocol service (Auto Scaling): HTTP 400, the code in the XML body
        (no x-amzn-errortype header, as on AWS)."""
        with self.assertRaises(ClientError) as ctx:
            fn(**kwargs)
        resp = ctx.exception.response
        self.assertEqual((resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]), (code, 400))
        return resp

    # -- tests ---------------------------------------------------------------
    def test_raw_cluster_echoes_vpc_access_and_compute_config(self):
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="cluster", Description="d", VpcId=vpc)["GroupId"]
        body = {"name": "c1", "roleArn": f"arn:aws:iam::{ACCOUNT_A}:role/eks-cluster",
                "resourcesVpcConfig": {"subnetIds": [subnet], "securityGroupIds": [],
                                       "clusterSecurityGroupId": sg, "vpcId": vpc},
                "accessConfig": {"authenticationMode": "API_AND_CONFIG_MAP",
                                 "bootstrapClusterCreatorAdminPermissions": True},
                "computeConfig": {"enabled": True, "nodePools": ["general-purpose"]}}
        status, _, _ = self.http("POST", "/clusters", body, {"Content-Type": "application/json",
                                 "Authorization": fake_sigv4(REGION), "x-moto-account-id": ACCOUNT_A})
        self.assertEqual(status, 200)
        cluster = self.client("eks").describe_cluster(name="c1")["cluster"]
        self.assertEqual(cluster["status"], "ACTIVE")
        self.assertEqual(cluster["accessConfig"], {"authenticationMode": "API_AND_CONFIG_MAP"})
        self.assertEqual(cluster["computeConfig"], {"enabled": True, "nodePools": ["general-purpose"]})
        self.assertEqual(cluster["resourcesVpcConfig"]["clusterSecurityGroupId"], sg)
        self.assertEqual(cluster["resourcesVpcConfig"]["vpcId"], vpc)
        self.raw_create_cluster("legacy")
        legacy = self.client("eks").describe_cluster(name="legacy")["cluster"]
        self.assertNotIn("accessConfig", legacy)
        self.assertNotIn("computeConfig", legacy)
        self.assertError("ResourceNotFoundException", 404, self.client("eks").describe_cluster, name="nope")

    def test_access_entries(self):
        eks = self.client("eks")
        self.raw_create_cluster("c1", accessConfig={"authenticationMode": "API_AND_CONFIG_MAP"})
        node = eks.create_access_entry(clusterName="c1", principalArn=NODE_ROLE, type="EC2_LINUX")["accessEntry"]
        self.assertEqual(node["username"], "system:node:{{EC2PrivateDNSName}}")
        self.assertEqual(node["kubernetesGroups"], ["system:nodes"])
        self.assertEqual(node["type"], "EC2_LINUX")
        self.assertRegex(node["accessEntryArn"],
                         rf"^arn:aws:eks:{REGION}:{ACCOUNT_A}:access-entry/c1/role/{ACCOUNT_A}/KarpenterNodeRole-c1/[0-9a-f-]{{36}}$")
        admin = eks.create_access_entry(clusterName="c1", principalArn=ADMIN_ROLE, kubernetesGroups=["admins"],
                                        tags={"team": "x"})["accessEntry"]
        self.assertEqual(admin["type"], "STANDARD")
        self.assertEqual(admin["username"], f"arn:aws:sts::{ACCOUNT_A}:assumed-role/Admin/{{{{SessionName}}}}")
        self.assertEqual(eks.describe_access_entry(clusterName="c1", principalArn=NODE_ROLE)["accessEntry"], node)
        self.assertEqual(sorted(eks.list_access_entries(clusterName="c1")["accessEntries"]), sorted([NODE_ROLE, ADMIN_ROLE]))
        updated = eks.update_access_entry(clusterName="c1", principalArn=ADMIN_ROLE, kubernetesGroups=["ops"])["accessEntry"]
        self.assertEqual(updated["kubernetesGroups"], ["ops"])
        self.assertGreaterEqual(updated["modifiedAt"], admin["modifiedAt"])
        # tags on the access entry ARN
        arn = admin["accessEntryArn"]
        eks.tag_resource(resourceArn=arn, tags={"env": "test"})
        eks.untag_resource(resourceArn=arn, tagKeys=["team"])
        self.assertEqual(eks.list_tags_for_resource(resourceArn=arn)["tags"], {"env": "test"})
        # errors
        self.assertError("ResourceInUseException", 409, eks.create_access_entry, clusterName="c1",
                         principalArn=NODE_ROLE, type="EC2_LINUX")
        self.assertError("InvalidParameterException", 400, eks.create_access_entry, clusterName="c1",
                         principalArn=NODE_ROLE + "2", kubernetesGroups=["system:nodes"])
        missing = f"arn:aws:iam::{ACCOUNT_A}:role/missing"
        for call in (eks.describe_access_entry, eks.delete_access_entry):
            self.assertError("ResourceNotFoundException", 404, call, clusterName="c1", principalArn=missing)
        self.assertError("ResourceNotFoundException", 404, eks.update_access_entry, clusterName="c1",
                         principalArn=missing, kubernetesGroups=["a"])
        self.assertError("ResourceNotFoundException", 404, eks.list_access_entries, clusterName="nope")
        self.assertError("ResourceNotFoundException", 404, eks.create_access_entry, clusterName="nope",
                         principalArn=NODE_ROLE, type="EC2_LINUX")
        eks.delete_access_entry(clusterName="c1", principalArn=NODE_ROLE)
        self.assertEqual(eks.list_access_entries(clusterName="c1")["accessEntries"], [ADMIN_ROLE])
        # a cluster without accessConfig is CONFIG_MAP: access entry APIs refuse
        self.raw_create_cluster("legacy")
        self.assertError("InvalidRequestException", 400, eks.list_access_entries, clusterName="legacy")

    def test_update_cluster_config_access_mode(self):
        eks = self.client("eks")
        self.raw_create_cluster("c1")
        update = eks.update_cluster_config(name="c1", accessConfig={"authenticationMode": "API_AND_CONFIG_MAP"})["update"]
        self.assertEqual((update["type"], update["status"]), ("AccessConfigUpdate", "Successful"))
        self.assertEqual(eks.describe_update(name="c1", updateId=update["id"])["update"]["id"], update["id"])
        cluster = eks.describe_cluster(name="c1")["cluster"]
        self.assertEqual(cluster["accessConfig"], {"authenticationMode": "API_AND_CONFIG_MAP"})
        self.assertEqual(cluster["resourcesVpcConfig"]["clusterSecurityGroupId"], "sg-cluster")
        self.assertError("InvalidParameterException", 400, eks.update_cluster_config, name="c1",
                         accessConfig={"authenticationMode": "CONFIG_MAP"})
        self.assertError("ResourceNotFoundException", 404, eks.describe_update, name="c1", updateId="nope")

    def test_pod_identity_associations(self):
        eks = self.client("eks")
        self.raw_create_cluster("c1")
        role = f"arn:aws:iam::{ACCOUNT_A}:role/KarpenterController"
        assoc = eks.create_pod_identity_association(clusterName="c1", namespace="kube-system", serviceAccount="karpenter",
                                                    roleArn=role, tags={"a": "b"})["association"]
        aid = assoc["associationId"]
        self.assertRegex(aid, r"^a-[a-z0-9]{17}$")
        self.assertEqual(assoc["associationArn"], f"arn:aws:eks:{REGION}:{ACCOUNT_A}:podidentityassociation/c1/{aid}")
        eks.create_pod_identity_association(clusterName="c1", namespace="other", serviceAccount="karpenter", roleArn=role)
        self.assertError("ResourceInUseException", 409, eks.create_pod_identity_association, clusterName="c1",
                         namespace="kube-system", serviceAccount="karpenter", roleArn=role)
        self.assertEqual(len(eks.list_pod_identity_associations(clusterName="c1")["associations"]), 2)
        found = eks.list_pod_identity_associations(clusterName="c1", namespace="kube-system",
                                                   serviceAccount="karpenter")["associations"]
        self.assertEqual(found, [{"clusterName": "c1", "namespace": "kube-system", "serviceAccount": "karpenter",
                                  "associationArn": assoc["associationArn"], "associationId": aid}])
        self.assertEqual(eks.list_pod_identity_associations(clusterName="c1", serviceAccount="x")["associations"], [])
        self.assertEqual(eks.describe_pod_identity_association(clusterName="c1", associationId=aid)["association"], assoc)
        new_role = role + "2"
        updated = eks.update_pod_identity_association(clusterName="c1", associationId=aid, roleArn=new_role)
        self.assertEqual(updated["association"]["roleArn"], new_role)
        eks.tag_resource(resourceArn=assoc["associationArn"], tags={"c": "d"})
        self.assertEqual(eks.list_tags_for_resource(resourceArn=assoc["associationArn"])["tags"], {"a": "b", "c": "d"})
        self.assertEqual(eks.delete_pod_identity_association(clusterName="c1", associationId=aid)["association"]["associationId"], aid)
        self.assertError("ResourceNotFoundException", 404, eks.describe_pod_identity_association,
                         clusterName="c1", associationId=aid)
        self.assertError("ResourceNotFoundException", 404, eks.list_pod_identity_associations, clusterName="nope")

    def test_addons(self):
        eks = self.client("eks")
        self.raw_create_cluster("c1")
        created = eks.create_addon(clusterName="c1", addonName="eks-pod-identity-agent")["addon"]
        self.assertEqual(created["status"], "CREATING")
        eks.get_waiter("addon_active").wait(clusterName="c1", addonName="eks-pod-identity-agent")
        addon = eks.describe_addon(clusterName="c1", addonName="eks-pod-identity-agent")["addon"]
        self.assertEqual((addon["status"], addon["clusterName"]), ("ACTIVE", "c1"))
        eks.create_addon(clusterName="c1", addonName="vpc-cni", addonVersion="v1.18.0-eksbuild.1")
        self.assertEqual(eks.describe_addon(clusterName="c1", addonName="vpc-cni")["addon"]["addonVersion"], "v1.18.0-eksbuild.1")
        self.assertEqual(eks.list_addons(clusterName="c1")["addons"], ["eks-pod-identity-agent", "vpc-cni"])
        self.assertError("ResourceInUseException", 409, eks.create_addon, clusterName="c1", addonName="vpc-cni")
        self.assertEqual(eks.delete_addon(clusterName="c1", addonName="vpc-cni")["addon"]["status"], "DELETING")
        self.assertError("ResourceNotFoundException", 404, eks.describe_addon, clusterName="c1", addonName="vpc-cni")
        self.assertError("ResourceNotFoundException", 404, eks.delete_addon, clusterName="c1", addonName="vpc-cni")
        self.assertError("ResourceNotFoundException", 404, eks.list_addons, clusterName="nope")

    def test_control_route_sets_cluster_status(self):
        eks = self.client("eks")
        self.raw_create_cluster("c1")
        self.assertEqual(self.set_status("c1", "CREATING")[0], 200)
        self.assertEqual(eks.describe_cluster(name="c1")["cluster"]["status"], "CREATING")
        self.assertEqual(self.set_status("c1", "BOGUS")[0], 400)
        self.assertEqual(self.set_status("nope", "FAILED")[0], 404)
        self.assertEqual(self.set_status("c1", "FAILED", account=ACCOUNT_B)[0], 404)
        # region from the SigV4 scope when the body has none
        status, _, _ = self.http("POST", "/moto-api/karpctl/clusters/c1/status", {"status": "FAILED"},
                                 {"Authorization": fake_sigv4(REGION), "x-moto-account-id": ACCOUNT_A})
        self.assertEqual(status, 200)
        self.assertEqual(eks.describe_cluster(name="c1")["cluster"]["status"], "FAILED")

    def test_iam_add_client_id_to_oidc_provider(self):
        iam = self.client("iam")
        url = "https://oidc.eks.us-west-2.amazonaws.com/id/ABC"
        arn = iam.create_open_id_connect_provider(Url=url, ClientIDList=["other"])["OpenIDConnectProviderArn"]
        self.assertEqual(arn, f"arn:aws:iam::{ACCOUNT_A}:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC")
        iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="sts.amazonaws.com")
        iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="sts.amazonaws.com")
        got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        self.assertEqual(got["ClientIDList"], ["other", "sts.amazonaws.com"])  # idempotent, order kept
        self.assertEqual(iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=arn)["Tags"], [])
        other = self.client("iam", ACCOUNT_B)
        with self.assertRaises(ClientError) as ctx:  # per account: B has no such provider
            other.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="x")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "NoSuchEntity")

    def test_account_and_region_isolation(self):
        a, b, a_east = self.client("eks"), self.client("eks", ACCOUNT_B), self.client("eks", region="us-east-1")
        self.raw_create_cluster("c1", accessConfig={"authenticationMode": "API"})
        self.raw_create_cluster("c1", account=ACCOUNT_B, accessConfig={"authenticationMode": "API"})
        a.create_access_entry(clusterName="c1", principalArn=NODE_ROLE, type="EC2_LINUX")
        a.create_addon(clusterName="c1", addonName="vpc-cni")
        a.create_pod_identity_association(clusterName="c1", namespace="n", serviceAccount="s", roleArn=NODE_ROLE)
        self.assertEqual(b.list_access_entries(clusterName="c1")["accessEntries"], [])
        self.assertEqual(b.list_addons(clusterName="c1")["addons"], [])
        self.assertEqual(b.list_pod_identity_associations(clusterName="c1")["associations"], [])
        self.assertError("ResourceNotFoundException", 404, a_east.list_access_entries, clusterName="c1")
        self.assertTrue(b.describe_cluster(name="c1")["cluster"]["arn"].startswith(f"arn:aws:eks:{REGION}:{ACCOUNT_B}:"))
        self.set_status("c1", "CREATING", account=ACCOUNT_B)
        self.assertEqual(a.describe_cluster(name="c1")["cluster"]["status"], "ACTIVE")
        # /moto-api/reset clears the extension's state too
        self.http("POST", "/moto-api/reset")
        self.assertError("ResourceNotFoundException", 404, a.list_addons, clusterName="c1")

    # -- small pages (pagination section of moto_ext.py) ----------------------
    def test_lists_answer_small_pages_with_tokens(self):
        iam, ec2, eks = self.client("iam"), self.client("ec2"), self.client("eks")
        iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")
        names = ["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonSSMManagedInstanceCore"]
        for n in names:
            iam.attach_role_policy(RoleName="r", PolicyArn=f"arn:aws:iam::aws:policy/{n}")
        first = iam.list_attached_role_policies(RoleName="r", MaxItems=1000)
        self.assertEqual(len(first["AttachedPolicies"]), 2)
        self.assertTrue(first["IsTruncated"])
        rest = iam.list_attached_role_policies(RoleName="r", Marker=first["Marker"])
        self.assertEqual((len(rest["AttachedPolicies"]), rest["IsTruncated"]), (1, False))
        self.assertEqual(iam.list_attached_role_policies(RoleName="r", MaxItems=1)["AttachedPolicies"][0],
                         first["AttachedPolicies"][0])  # a smaller limit of the client's wins
        pages = iam.get_paginator("list_attached_role_policies").paginate(RoleName="r")
        self.assertEqual(sorted(p["PolicyName"] for pg in pages for p in pg["AttachedPolicies"]), sorted(names))
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        for i in range(3):
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")
        filters = [{"Name": "vpc-id", "Values": [vpc]}]
        page = ec2.describe_subnets(Filters=filters)
        self.assertEqual(len(page["Subnets"]), 2)
        self.assertIn("NextToken", page)
        pages = ec2.get_paginator("describe_subnets").paginate(Filters=filters)
        self.assertEqual(sum(len(pg["Subnets"]) for pg in pages), 3)
        for n in ("c1", "c2", "c3"):
            self.raw_create_cluster(n)
        page = eks.list_clusters()
        self.assertEqual(len(page["clusters"]), 2)
        self.assertEqual(eks.list_clusters(nextToken=page["nextToken"])["clusters"], ["c3"])
        self.assertError("InvalidParameterException", 400, eks.list_clusters, nextToken="not-ours")
        with self.assertRaises(ClientError) as ctx:
            iam.list_attached_role_policies(RoleName="r", Marker="not-ours")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "InvalidInput")

    # -- issue 15 (migrate): node group tags and scaling-config validation ------

    def nodegroup(self, eks, name="ng", scaling=None):
        self.raw_create_cluster("mig")
        return eks.create_nodegroup(
            clusterName="mig", nodegroupName=name, nodeRole=f"arn:aws:iam::{ACCOUNT_A}:role/node",
            subnets=["subnet-1"], instanceTypes=["m5.large"], capacityType="SPOT",
            scalingConfig=scaling or {"minSize": 1, "maxSize": 5, "desiredSize": 3},
            labels={"team": "a"}, taints=[{"key": "dedicated", "value": "a", "effect": "NO_SCHEDULE"}],
        )["nodegroup"]

    def test_nodegroup_tags_round_trip(self):
        eks = self.client("eks")
        arn = self.nodegroup(eks)["nodegroupArn"]
        eks.tag_resource(resourceArn=arn, tags={"karpctl.io/migrate": "min=1,max=5,desired=3"})
        self.assertEqual(eks.list_tags_for_resource(resourceArn=arn)["tags"],
                         {"karpctl.io/migrate": "min=1,max=5,desired=3"})
        got = eks.describe_nodegroup(clusterName="mig", nodegroupName="ng")["nodegroup"]
        self.assertEqual(got["tags"], {"karpctl.io/migrate": "min=1,max=5,desired=3"})
        eks.untag_resource(resourceArn=arn, tagKeys=["karpctl.io/migrate"])
        self.assertEqual(eks.list_tags_for_resource(resourceArn=arn)["tags"], {})

    def test_scaling_config_is_validated_like_eks(self):
        eks = self.client("eks")
        self.nodegroup(eks)
        update = eks.update_nodegroup_config
        # maxSize: "Valid Range: Minimum value of 1" (EKS API reference, NodegroupScalingConfig);
        # boto3 checks that itself, the Rust SDK does not: sent raw.
        status, headers, _ = self.http("POST", "/clusters/mig/node-groups/ng/update-config",
                                       {"scalingConfig": {"minSize": 0, "maxSize": 0, "desiredSize": 0}},
                                       {"Content-Type": "application/json", "Authorization": fake_sigv4(REGION),
                                        "x-moto-account-id": ACCOUNT_A})
        headers = {k.lower(): v for k, v in headers.items()}
        self.assertEqual((status, headers.get("x-amzn-errortype")), (400, "InvalidParameterException"))
        resp = self.assertError("InvalidParameterException", 400, update, clusterName="mig",
                                nodegroupName="ng", scalingConfig={"minSize": 3, "desiredSize": 2})
        self.assertEqual(resp["Error"]["Message"], "Minimum capacity 3 can't be greater than desired size 2")
        self.assertError("InvalidParameterException", 400, update, clusterName="mig", nodegroupName="ng",
                         scalingConfig={"desiredSize": 6})
        update(clusterName="mig", nodegroupName="ng", scalingConfig={"minSize": 0, "maxSize": 1, "desiredSize": 0})
        got = eks.describe_nodegroup(clusterName="mig", nodegroupName="ng")["nodegroup"]["scalingConfig"]
        self.assertEqual(got, {"minSize": 0, "maxSize": 1, "desiredSize": 0})

    # -- issue 15 (migrate): self-managed Auto Scaling groups, strict as AWS ------

    def asg(self, name="workers"):
        ec2, asg = self.client("ec2"), self.client("autoscaling")
        lt = ec2.create_launch_template(LaunchTemplateName=name + "-lt",
                                        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large"})
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=1, MaxSize=4, DesiredCapacity=2, AvailabilityZones=[REGION + "a"],
            LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]},
            Tags=[{"Key": "kubernetes.io/cluster/mig", "Value": "owned", "PropagateAtLaunch": True}])
        return asg

    def test_asg_scaling_is_validated_like_auto_scaling(self):
        asg = self.asg()
        update = asg.update_auto_scaling_group
        resp = self.assertQueryError("ValidationError", update, AutoScalingGroupName="workers", DesiredCapacity=5)
        self.assertEqual(resp["Error"]["Message"],
                         "Desired capacity:5 must be between the specified min size:1 and max size:4")
        resp = self.assertQueryError("ValidationError", update, AutoScalingGroupName="workers", MinSize=5)
        self.assertEqual(resp["Error"]["Message"], "Max bound, 4, must be greater than or equal to min bound, 5")
        self.assertQueryError("ValidationError", update, AutoScalingGroupName="nope", MinSize=0)
        update(AutoScalingGroupName="workers", MinSize=0, MaxSize=4, DesiredCapacity=0)
        got = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["workers"])["AutoScalingGroups"][0]
        self.assertEqual((got["MinSize"], got["MaxSize"], got["DesiredCapacity"]), (0, 4, 0))

    def test_asg_tags_need_the_group_and_stay_within_the_limit(self):
        asg = self.asg()
        tag = lambda k, g="workers": {"ResourceId": g, "ResourceType": "auto-scaling-group", "Key": k,
                                      "Value": "v", "PropagateAtLaunch": False}
        self.assertQueryError("ValidationError", asg.create_or_update_tags, Tags=[tag("a", "nope")])
        self.assertQueryError("ValidationError", asg.delete_tags, Tags=[tag("a", "nope")])
        self.assertQueryError("ValidationError", asg.create_or_update_tags, Tags=[dict(tag("a"), Value="x" * 257)])
        asg.create_or_update_tags(Tags=[tag(f"k{i}") for i in range(49)])  # 49 + the cluster tag = 50
        self.assertQueryError("LimitExceeded", asg.create_or_update_tags, Tags=[tag("one-too-many")])
        asg.create_or_update_tags(Tags=[tag("k0")])  # rewriting a tag it has adds none
        asg.delete_tags(Tags=[tag("k0")])
        keys = {t["Key"] for t in asg.describe_tags()["Tags"]}
        self.assertNotIn("k0", keys)


if __name__ == "__main__":
    unittest.main(verbosity=2)
