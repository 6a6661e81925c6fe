"""EKS additions to moto 5.2.1's server, for karpctl's integration tests.

moto 5.2.1 facts (checked with boto3 against `python -m moto.server`):
- IAM GetRole: AssumeRolePolicyDocument is URL-encoded JSON on the wire, as
  on real IAM (boto3 decodes it; the Rust SDK does not: percent-decode it).
- IAM CreateServiceLinkedRole(spot.amazonaws.com) creates role
  AWSServiceRoleForspot (real IAM: AWSServiceRoleForEC2Spot), path
  /aws-service-role/spot.amazonaws.com/; a second call fails with HTTP 409
  EntityAlreadyExists (real IAM: 400 InvalidInput "...has been taken...").
- IAM tags: TagRole/TagPolicy/TagInstanceProfile/TagOpenIDConnectProvider all
  work and GetRole/GetPolicy/GetInstanceProfile/GetOpenIDConnectProvider and
  ListRoleTags/ListPolicyTags/ListOpenIDConnectProviderTags return them, but
  ListInstanceProfileTags is NOT implemented (HTTP 500).
- IAM CreateOpenIDConnectProvider works without ThumbprintList;
  AddClientIDToOpenIDConnectProvider is NOT implemented (HTTP 500): added below.
- SQS GetQueueAttributes: SqsManagedSseEnabled is "true" by default and Policy
  appears (byte-for-byte) after SetQueueAttributes; asking for them by name works.
- EventBridge PutRule/PutTargets/ListTargetsByRule/TagResource/
  ListTagsForResource work; DescribeRule returns EventPattern exactly as sent.
- EC2 CreateTags/DescribeTags work on subnets and security groups (and tag:
  filters on DescribeSubnets/DescribeSecurityGroups).
- EKS CreateCluster/DescribeCluster answer status ACTIVE immediately; every
  cluster of one server process shares the same OIDC issuer id and endpoint.
- EKS DescribeCluster on a missing cluster: HTTP 404, header
  `X-Amzn-ErrorType: ResourceNotFoundException`, body {"message": "No cluster
  found for name: X.", ...null fields}.
- A raw CreateCluster whose resourcesVpcConfig carries clusterSecurityGroupId
  and vpcId is stored verbatim, so DescribeCluster echoes both back.

What this module adds, on moto's own EKS dispatcher (moto.eks.urls.url_paths)
and EKS backends (so state is per account and region and `/moto-api/reset`
clears it, since it hangs off moto's Cluster objects):
- access entries, pod identity associations, add-ons (Create/Describe/List/
  Update/Delete as applicable), TagResource/UntagResource/ListTagsForResource
  on their ARNs, DescribeUpdate;
- CreateCluster: accessConfig and computeConfig stored and echoed by
  DescribeCluster (no accessConfig sent -> none echoed, i.e. CONFIG_MAP);
  UpdateClusterConfig with accessConfig (forward-only, as on EKS);
- test-only control route on moto's /moto-api app (no signature needed):
    POST /moto-api/karpctl/clusters/{name}/status
    headers: x-moto-account-id: <account>   (optional, default 123456789012)
    body:    {"status": "CREATING", "region": "us-west-2"}
  region: body "region", else the SigV4 Authorization scope, else us-east-1.
And on moto's IAM dispatcher (moto.iam.urls.url_paths), with moto's IAM
backend and its OpenIDConnectProvider objects:
- AddClientIDToOpenIDConnectProvider: idempotent, as on IAM (adding a client
  id the provider has is no error); NoSuchEntity for an unknown ARN.
Not emulated: access policies
(AssociateAccessPolicy etc. answer 500), validation that IAM principals exist.
Small pages on every paginated IAM, EC2 and EKS call: see the last section.
"""

import json
from urllib.parse import parse_qs, unquote

import moto.eks.urls as eks_urls
import moto.iam.urls as iam_urls
import moto.moto_api._internal.urls as moto_api_urls
from moto.core.responses import ActionResult, BaseResponse, EmptyResult
from moto.core.utils import utcnow
from moto.eks.exceptions import (
    InvalidParameterException,
    InvalidRequestException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from moto.eks.models import eks_backends, paginated_list
from moto.eks.responses import EKSResponse
from moto.iam.exceptions import LimitExceededException
from moto.iam.responses import IamResponse
from moto.moto_api._internal import mock_random as random

# Real EKS only allows moving forward along this list (never back to CONFIG_MAP).
AUTH_MODES = ["CONFIG_MAP", "API_AND_CONFIG_MAP", "API"]
# Node-type access entries get a fixed username and the system:nodes group.
NODE_USERNAMES = {
    "EC2_LINUX": "system:node:{{EC2PrivateDNSName}}",
    "EC2_WINDOWS": "system:node:{{EC2PrivateDNSName}}",
    "FARGATE_LINUX": "system:node:{{SessionName}}",
    "HYBRID_LINUX": "system:node:{{SessionName}}",
}
CLUSTER_STATUSES = {"CREATING", "ACTIVE", "DELETING", "FAILED", "UPDATING", "PENDING"}
ARN_KEYS = ("accessEntryArn", "associationArn", "addonArn")
C = "/clusters/(?P<name>[^/]+)"
# The routes Flask must know; moto then finds the operation from botocore's
# EKS model (method + raw URI). principalArn uses ".+" because werkzeug has
# already decoded %2F in it when Flask matches the route.
EXTRA_EKS_PATHS = [
    C + "/access-entries$",
    C + "/access-entries/(?P<principalArn>.+)$",
    C + "/pod-identity-associations$",
    C + "/pod-identity-associations/(?P<associationId>[^/]+)$",
    C + "/addons$",
    C + "/addons/(?P<addonName>[^/]+)$",
    C + "/updates/(?P<updateId>[^/]+)$",
]
CONTROL_PATH = "{0}/moto-api/karpctl/clusters/(?P<name>[^/]+)/status$"


def _state(cluster, kind):
    """Per-cluster dict for our resources; dies with the cluster and on reset."""
    return cluster.__dict__.setdefault("karpctl_" + kind, {})


def _auth_mode(cluster):
    return getattr(cluster, "access_config", {}).get("authenticationMode", "CONFIG_MAP")


class KarpctlEKSResponse(EKSResponse):
    """moto's EKSResponse plus the operations above; dict results are
    serialized by moto against botocore's output shapes (restJson1), and
    moto.eks.exceptions give the restJson1 errors the Rust SDK maps by code."""

    # -- request helpers: read JSON body / path / query precisely, instead of
    # _get_param, which mixes body, query string and even headers.
    def _body(self):
        return json.loads(self.body) if self.body else {}

    def _path(self, key):
        return unquote(self.uri_match.group(key))

    def _query(self, key):
        return parse_qs(self.parsed_url.query).get(key, [])

    def _cluster(self):
        return self.eks_backend.describe_cluster(self._path("name"))  # 404s like moto

    def _arn(self, kind, *parts):
        prefix = f"arn:{self.partition}:eks:{self.region}:{self.current_account}"
        return f"{prefix}:{kind}/" + "/".join(parts)

    def _get(self, cluster, kind, key, message):
        try:
            return _state(cluster, kind)[key]
        except KeyError:
            raise ResourceNotFoundException(message=message, clusterName=cluster.name)

    # -- clusters: keep moto's handling, add accessConfig / computeConfig.
    def create_cluster(self):
        body = self._body()
        access = body.get("accessConfig")
        mode = (access or {}).get("authenticationMode", "CONFIG_MAP")
        if mode not in AUTH_MODES:
            raise InvalidParameterException(message=f"Invalid authenticationMode {mode}")
        result = super().create_cluster()
        cluster = result.result["cluster"]
        if access is not None:  # absent => no accessConfig echoed (CONFIG_MAP)
            cluster.access_config = {"authenticationMode": mode}
        if body.get("computeConfig") is not None:
            cluster.compute_config = body["computeConfig"]
        return result

    def update_cluster_config(self):
        # moto's version returns {"cluster": ...}, but the API answers an Update.
        body, cluster = self._body(), self._cluster()
        params, kind = [], "ConfigUpdate"
        if "resourcesVpcConfig" in body:  # merge: keep clusterSecurityGroupId/vpcId
            cluster.resources_vpc_config = {**cluster.resources_vpc_config, **body["resourcesVpcConfig"]}
        if "logging" in body:
            cluster.logging = body["logging"]
        if "accessConfig" in body:
            new, cur = body["accessConfig"].get("authenticationMode"), _auth_mode(cluster)
            if new not in AUTH_MODES or AUTH_MODES.index(new) <= AUTH_MODES.index(cur):
                raise InvalidParameterException(
                    message=f"Unsupported authentication mode update from {cur} to {new}")
            cluster.access_config = {"authenticationMode": new}
            params.append({"type": "AuthenticationMode", "value": new})
            kind = "AccessConfigUpdate"
        if "computeConfig" in body:
            cluster.compute_config = body["computeConfig"]
            kind = "AutoModeUpdate"
        update = {"id": str(random.uuid4()), "status": "Successful", "type": kind,
                  "params": params, "createdAt": utcnow(), "errors": []}
        _state(cluster, "updates")[update["id"]] = update
        return ActionResult({"update": update})

    def describe_update(self):
        update_id = self._path("updateId")
        update = self._get(self._cluster(), "updates", update_id, f"No update found for ID: {update_id}")
        return ActionResult({"update": update})

    # -- access entries (only on API / API_AND_CONFIG_MAP clusters, as on EKS)
    def _api_cluster(self):
        cluster = self._cluster()
        if _auth_mode(cluster) == "CONFIG_MAP":
            raise InvalidRequestException(message="The cluster's authentication mode must be "
                                          "set to one of [API, API_AND_CONFIG_MAP] to perform this operation.")
        return cluster

    def _access_entry(self):
        return self._get(self._api_cluster(), "access_entries", self._path("principalArn"),
                         "The specified principalArn could not be found. You can view your "
                         "available access entries with 'list-access-entries'.")

    def create_access_entry(self):
        cluster, body = self._api_cluster(), self._body()
        arn, kind = body["principalArn"], body.get("type", "STANDARD")
        groups = body.get("kubernetesGroups") or []
        if arn in _state(cluster, "access_entries"):
            raise ResourceInUseException(message="The specified access entry resource is "
                                         "already in use on this cluster.", clusterName=cluster.name)
        if kind != "STANDARD" and (groups or body.get("username")):
            raise InvalidParameterException(message=f"username and kubernetesGroups cannot be set for type {kind}")
        if any(g.startswith("system:") for g in groups):
            raise InvalidParameterException(message="The kubernetes group name system:... is invalid, it cannot start with system:")
        account, resource = arn.split(":", 5)[4:]  # "role/some/path/name" or "user/name"
        principal, name = resource.split("/")[0], resource.split("/")[-1]
        username = body.get("username") or NODE_USERNAMES.get(kind) or (
            f"arn:{self.partition}:sts::{account}:assumed-role/{name}/{{{{SessionName}}}}"
            if principal == "role" else arn)
        now = utcnow()
        entry = _state(cluster, "access_entries")[arn] = {
            "clusterName": cluster.name, "principalArn": arn, "type": kind, "username": username,
            "kubernetesGroups": ["system:nodes"] if kind in NODE_USERNAMES else groups,
            "accessEntryArn": self._arn("access-entry", cluster.name, principal, account, name, str(random.uuid4())),
            "createdAt": now, "modifiedAt": now, "tags": body.get("tags") or {}}
        return ActionResult({"accessEntry": entry})

    def describe_access_entry(self):
        return ActionResult({"accessEntry": self._access_entry()})

    def update_access_entry(self):
        entry, body = self._access_entry(), self._body()
        for key in ("kubernetesGroups", "username"):
            if key in body:
                entry[key] = body[key]
        entry["modifiedAt"] = utcnow()
        return ActionResult({"accessEntry": entry})

    def delete_access_entry(self):
        entry = self._access_entry()
        del _state(self._cluster(), "access_entries")[entry["principalArn"]]
        return EmptyResult()

    def list_access_entries(self):
        names = list(_state(self._api_cluster(), "access_entries"))
        limit = int((self._query("maxResults") or [100])[0])
        page, token = paginated_list(names, limit, (self._query("nextToken") or [None])[0])
        return ActionResult({"accessEntries": page, "nextToken": token})

    # -- pod identity associations
    def _association(self):
        assoc_id = self._path("associationId")
        return self._get(self._cluster(), "pod_identity_associations", assoc_id,
                         f"No Pod Identity Association found with id {assoc_id}")

    def create_pod_identity_association(self):
        cluster, body = self._cluster(), self._body()
        ns, sa = body["namespace"], body["serviceAccount"]
        for a in _state(cluster, "pod_identity_associations").values():
            if (a["namespace"], a["serviceAccount"]) == (ns, sa):
                raise ResourceInUseException(message=f"Association already exists: {a['associationId']}",
                                             clusterName=cluster.name)
        assoc_id, now = "a-" + random.get_random_string(17, lower_case=True), utcnow()
        assoc = _state(cluster, "pod_identity_associations")[assoc_id] = {
            "clusterName": cluster.name, "namespace": ns, "serviceAccount": sa,
            "roleArn": body["roleArn"], "associationId": assoc_id,
            "associationArn": self._arn("podidentityassociation", cluster.name, assoc_id),
            "tags": body.get("tags") or {}, "createdAt": now, "modifiedAt": now}
        return ActionResult({"association": assoc})

    def list_pod_identity_associations(self):
        wanted = {k: self._query(k)[0] for k in ("namespace", "serviceAccount") if self._query(k)}
        found = [a for a in _state(self._cluster(), "pod_identity_associations").values()
                 if all(a[k] == v for k, v in wanted.items())]
        return ActionResult({"associations": found})  # serializer keeps summary fields only

    def describe_pod_identity_association(self):
        return ActionResult({"association": self._association()})

    def update_pod_identity_association(self):
        assoc, body = self._association(), self._body()
        assoc["roleArn"] = body.get("roleArn", assoc["roleArn"])
        assoc["modifiedAt"] = utcnow()
        return ActionResult({"association": assoc})

    def delete_pod_identity_association(self):
        assoc = self._association()
        del _state(self._cluster(), "pod_identity_associations")[assoc["associationId"]]
        return ActionResult({"association": assoc})

    # -- add-ons: created add-ons are ACTIVE at once (Create answers CREATING).
    def _addon(self):
        name = self._path("addonName")
        return self._get(self._cluster(), "addons", name, f"No addon: {name} found in cluster")

    def create_addon(self):
        cluster, body = self._cluster(), self._body()
        name = body["addonName"]
        if name in _state(cluster, "addons"):
            raise ResourceInUseException(message=f"Addon already exists: {name}", clusterName=cluster.name, addonName=name)
        now = utcnow()
        addon = _state(cluster, "addons")[name] = {
            "addonName": name, "clusterName": cluster.name, "status": "ACTIVE",
            "addonVersion": body.get("addonVersion") or "v1.0.0-eksbuild.1", "health": {"issues": []},
            "addonArn": self._arn("addon", cluster.name, name, str(random.uuid4())),
            "createdAt": now, "modifiedAt": now, "tags": body.get("tags") or {},
            "serviceAccountRoleArn": body.get("serviceAccountRoleArn"),
            "configurationValues": body.get("configurationValues")}
        return ActionResult({"addon": {**addon, "status": "CREATING"}})

    def describe_addon(self):
        return ActionResult({"addon": self._addon()})

    def list_addons(self):
        return ActionResult({"addons": sorted(_state(self._cluster(), "addons"))})

    def delete_addon(self):
        addon = self._addon()
        del _state(self._cluster(), "addons")[addon["addonName"]]
        return ActionResult({"addon": {**addon, "status": "DELETING"}})

    # -- tags: our ARNs first, then moto's own (cluster) tagging.
    def _tagged(self):
        arn = self._extract_arn_from_path()
        for cluster in self.eks_backend.clusters.values():
            for kind in ("access_entries", "pod_identity_associations", "addons"):
                for item in _state(cluster, kind).values():
                    if arn in (item.get(k) for k in ARN_KEYS):
                        return item
        return None

    def tag_resource(self):
        item = self._tagged()
        if item is None:
            return super().tag_resource()
        item["tags"].update(self._body().get("tags", {}))
        return EmptyResult()

    def untag_resource(self):
        item = self._tagged()
        if item is None:
            return super().untag_resource()
        for key in self._query("tagKeys"):
            item["tags"].pop(key, None)
        return EmptyResult()

    def list_tags_for_resource(self):
        item = self._tagged()
        return super().list_tags_for_resource() if item is None else ActionResult({"tags": item["tags"]})


class KarpctlIamResponse(IamResponse):
    """moto's IamResponse plus the IAM operations karpctl needs that moto lacks."""

    def add_client_id_to_open_id_connect_provider(self):
        # get_open_id_connect_provider raises NoSuchEntity for an unknown ARN, as IAM does.
        provider = self.backend.get_open_id_connect_provider(self._get_param("OpenIDConnectProviderArn"))
        client_id = self._get_param("ClientID")
        if client_id not in provider.client_id_list:
            if len(provider.client_id_list) >= 100:  # moto's own quota check at create
                raise LimitExceededException("Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: 100")
            provider.client_id_list = [*provider.client_id_list, client_id]
        return EmptyResult()


def _post_json(request):
    """The JSON body of a test-only POST route, or the response refusing it."""
    if request.method != "POST":
        return None, (405, {}, json.dumps({"message": "use POST"}))
    try:
        return json.loads(request.get_data(cache=True) or b"{}"), None
    except ValueError:
        return None, (400, {}, json.dumps({"message": "body must be JSON"}))


def set_cluster_status(request, full_url, headers):
    """Test-only: POST /moto-api/karpctl/clusters/{name}/status {"status": ...}.
    BaseResponse.setup_class resolves account and region exactly as for AWS calls."""
    # Read the body first: with a form content type (curl -d), Flask would
    # otherwise consume it as form data inside setup_class.
    body, refused = _post_json(request)
    if refused:
        return refused
    resp = BaseResponse(service_name="eks")
    resp.setup_class(request, full_url, headers)
    name, status = unquote(resp.path.split("/")[-2]), body.get("status")
    cluster = eks_backends[resp.current_account][body.get("region") or resp.region].clusters.get(name)
    if cluster is None:
        return 404, {}, json.dumps({"message": f"No cluster found for name: {name}."})
    if status not in CLUSTER_STATUSES:
        return 400, {}, json.dumps({"message": f"status must be one of {sorted(CLUSTER_STATUSES)}"})
    cluster.status = status
    return 200, {"Content-Type": "application/json"}, json.dumps({"name": name, "status": status})


def apply():
    """Route every EKS URL to KarpctlEKSResponse and IAM to KarpctlIamResponse,
    and add our routes. Must run before the server handles its first EKS / IAM /
    moto-api request: moto builds each service's Flask app lazily from these
    url_paths dicts."""
    for pattern in iam_urls.url_paths:
        iam_urls.url_paths[pattern] = KarpctlIamResponse.dispatch
    handler = KarpctlEKSResponse.dispatch
    for pattern in eks_urls.url_paths:
        eks_urls.url_paths[pattern] = handler
    for path in EXTRA_EKS_PATHS:
        eks_urls.url_paths["{0}" + path] = handler
    moto_api_urls.url_paths[CONTROL_PATH] = set_cluster_status
    apply_pagination()  # small pages: see the pagination section at the end


# ============================================================================
# issue 12 (part a): AWS's eventual consistency and asynchrony, switchable.
#
# Real AWS is slower to agree with itself than moto. Each behaviour below is
# off unless switched on, per emulator account, with the test-only route
#     POST /moto-api/karpctl/strict   (header x-moto-account-id: <account>)
#     body: {"aws": true} for every behaviour at real AWS's values (STRICT_AWS),
#           and/or individual keys of STRICT_OFF with values of their own;
# or for every account with the environment variable KARPCTL_MOTO_STRICT
# (the same JSON, read at start). Times are in seconds, from the write that
# starts them. The behaviours and their sources:
# - iam_propagation: for this long after CreateRole, EKS CreateAccessEntry
#   answers InvalidParameterException "The specified principalArn is invalid:
#   invalid principal." and Create/UpdatePodIdentityAssociation answer
#   InvalidParameterException "Role provided in the request does not exist".
#   Source: IAM user guide, "Changes that I make are not always immediately
#   visible"; terraform-provider-aws retries both for 2 minutes
#   (propagationTimeout, internal/service/eks).
# - addon_create / addon_delete / addon_outcome: CreateAddon leaves the add-on
#   CREATING this long, then addon_outcome (ACTIVE, CREATE_FAILED or DEGRADED,
#   the last two with a health issue); DeleteAddon leaves it DELETING this
#   long, during which CreateAddon answers ResourceInUseException "Addon X
#   cannot be created as it is currently in DELETING state" (EKS API
#   reference: Addon.status; the message is modelled on EKS's "Addon vpc-cni
#   cannot be updated as it is currently in UPDATING state",
#   awslabs/cdk-eks-blueprints#447).
# - queue_deleted_recently: after DeleteQueue, CreateQueue of that name fails
#   with AWS.SimpleQueueService.QueueDeletedRecently (SQS API reference,
#   DeleteQueue: "you must wait at least 60 seconds"); queue_url_linger: for
#   this long GetQueueUrl still answers with the deleted queue's URL, while
#   GetQueueAttributes says NonExistentQueue (DeleteQueue: "the queue might
#   still be visible for up to 60 seconds").
# - rule_targets_settle: DeleteRule this soon after RemoveTargets answers
#   ValidationException "Rule can't be deleted since it has targets."
#   (EventBridge reference, RemoveTargets: "removed targets might continue to
#   be invoked" for a short period); remove_targets_fail_first: the first
#   RemoveTargets of each rule reports FailedEntryCount 1
#   (ConcurrentModificationException) and removes nothing (RemoveTargets
#   response: FailedEntries).
# - role_write_window: a write to a role (Attach/DetachRolePolicy,
#   PutRolePolicy, UpdateAssumeRolePolicy, TagRole, DeleteRole) this soon after
#   another write to the same role answers 409 ConcurrentModification (IAM API
#   reference, Errors; hashicorp/terraform-provider-aws retries it on role
#   policy attachments).
# - role_detach_settle: DeleteRole this soon after the role's last
#   DetachRolePolicy answers 409 DeleteConflict "Cannot delete entity, must
#   detach all policies first." (IAM DeleteRole; the detach is eventually
#   consistent).
# Always on: RemoveRoleFromInstanceProfile of a role not in the profile answers
# NoSuchEntity (IAM API reference, Errors), not moto's HTTP 500.
# ============================================================================

import os as _os
import threading as _threading
import time as _time

import moto.events.urls as events_urls
import moto.sqs.urls as sqs_urls
from moto.events.responses import EventsHandler
from moto.iam.exceptions import DeleteConflictException, IAMException, NotFoundException
from moto.sqs.exceptions import SQSException
from moto.sqs.responses import SQSResponse

STRICT_OFF = {
    "iam_propagation": 0, "addon_create": 0, "addon_delete": 0, "addon_outcome": "ACTIVE",
    "queue_deleted_recently": 0, "queue_url_linger": 0, "rule_targets_settle": 0,
    "remove_targets_fail_first": False, "role_write_window": 0, "role_detach_settle": 0,
}
# Real AWS's values (where AWS documents one; the rest as observed).
STRICT_AWS = {
    **STRICT_OFF, "iam_propagation": 10, "addon_create": 20, "addon_delete": 20,
    "queue_deleted_recently": 60, "queue_url_linger": 5, "rule_targets_settle": 2,
    "remove_targets_fail_first": True, "role_write_window": 0.05, "role_detach_settle": 2,
}
STRICT_PATH = "{0}/moto-api/karpctl/strict$"
_STRICT = {}          # account -> settings
_EVENTS = {}          # (account, kind, key) -> monotonic time of the write
_LOCK = _threading.Lock()


def _settings_from(body):
    base = dict(STRICT_AWS if body.get("aws") else STRICT_OFF)
    base.update({k: v for k, v in body.items() if k in STRICT_OFF})
    return base


_DEFAULT = _settings_from(json.loads(_os.environ.get("KARPCTL_MOTO_STRICT") or "{}"))


def _strict(account, key):
    return _STRICT.get(account, _DEFAULT)[key]


def _mark(account, kind, key):
    with _LOCK:
        _EVENTS[(account, kind, key)] = _time.monotonic()


def _within(account, kind, key, setting):
    """Whether the event (account, kind, key) happened less than `setting` seconds ago."""
    window = _strict(account, setting)
    at = _EVENTS.get((account, kind, key))
    return bool(window) and at is not None and _time.monotonic() - at < window


def set_strict(request, full_url, headers):
    """Test-only: POST /moto-api/karpctl/strict {"aws": true, "iam_propagation": 1, ...}."""
    body, refused = _post_json(request)
    if refused:
        return refused
    unknown = sorted(set(body) - set(STRICT_OFF) - {"aws"})
    if unknown:
        return 400, {}, json.dumps({"message": f"unknown settings {unknown}; known: {sorted(STRICT_OFF)}"})
    resp = BaseResponse(service_name="iam")
    resp.setup_class(request, full_url, headers)
    _STRICT[resp.current_account] = _settings_from(body)
    return 200, {"Content-Type": "application/json"}, json.dumps(_STRICT[resp.current_account])


class ConcurrentModificationException(IAMException):
    code = "ConcurrentModification"
    # moto finds an exception's error model from its module's package name.
    __module__ = "moto.iam.exceptions"


def _role_name(arn):
    return (arn or "").rsplit("/", 1)[-1]


class StrictIamResponse(KarpctlIamResponse):
    """IAM with role propagation, concurrent-write conflicts and DeleteConflict."""

    def _role_write(self):
        name, account = self._get_param("RoleName"), self.current_account
        with _LOCK:
            at = _EVENTS.get((account, "role-write", name))
            now = _time.monotonic()
            if _strict(account, "role_write_window") and at is not None \
                    and now - at < _strict(account, "role_write_window"):
                raise ConcurrentModificationException(
                    f"Rate exceeded: another request is modifying role {name}; try again")
            _EVENTS[(account, "role-write", name)] = now

    def create_role(self):
        result = super().create_role()
        _mark(self.current_account, "role-created", self._get_param("RoleName"))
        return result

    def detach_role_policy(self):
        self._role_write()
        result = super().detach_role_policy()
        _mark(self.current_account, "role-detached", self._get_param("RoleName"))
        return result

    def remove_role_from_instance_profile(self):
        # Always on (a moto defect, not a strict behaviour): moto answers a role that is not in
        # the profile with HTTP 500 (ValueError from list.remove); IAM answers NoSuchEntity.
        profile = self.backend.get_instance_profile(self._get_param("InstanceProfileName"))
        role = self._get_param("RoleName")
        if role not in [r.name for r in profile.roles]:
            raise NotFoundException(f"The role {role} is not in instance profile {profile.name}.")
        return super().remove_role_from_instance_profile()

    def delete_role(self):
        name = self._get_param("RoleName")
        if _within(self.current_account, "role-detached", name, "role_detach_settle"):
            raise DeleteConflictException("Cannot delete entity, must detach all policies first.")
        self._role_write()
        return super().delete_role()


def _one_writer_at_a_time(action):
    def write(self):
        self._role_write()
        return getattr(super(StrictIamResponse, self), action)()
    write.__name__ = action
    return write


for _action in ("attach_role_policy", "put_role_policy", "update_assume_role_policy", "tag_role"):
    setattr(StrictIamResponse, _action, _one_writer_at_a_time(_action))


def _unpropagated(account, role_arn):
    return _within(account, "role-created", _role_name(role_arn), "iam_propagation")


class StrictEKSResponse(KarpctlEKSResponse):
    """EKS with IAM propagation and asynchronous add-ons."""

    def create_access_entry(self):
        if _unpropagated(self.current_account, self._body().get("principalArn")):
            raise InvalidParameterException(message="The specified principalArn is invalid: invalid principal.")
        return super().create_access_entry()

    def create_pod_identity_association(self):
        if _unpropagated(self.current_account, self._body().get("roleArn")):
            raise InvalidParameterException(message="Role provided in the request does not exist")
        return super().create_pod_identity_association()

    def update_pod_identity_association(self):
        if _unpropagated(self.current_account, self._body().get("roleArn")):
            raise InvalidParameterException(message="Role provided in the request does not exist")
        return super().update_pod_identity_association()

    def _settle_addons(self, cluster):
        """Move add-ons whose transition has run its time to where it ends."""
        addons, now = _state(cluster, "addons"), _time.monotonic()
        for name, addon in list(addons.items()):
            until = addon.get("_until")
            if until is None or now < until:
                continue
            if addon["status"] == "DELETING":
                del addons[name]
                continue
            outcome = addon.pop("_outcome", "ACTIVE")
            addon["status"] = outcome
            if outcome != "ACTIVE":
                addon["health"] = {"issues": [{
                    "code": "InsufficientNumberOfReplicas",
                    "message": "The add-on is unhealthy because it doesn't have the desired number of replicas.",
                    "resourceIds": [name]}]}
            del addon["_until"]

    def _public(self, addon):
        return {k: v for k, v in addon.items() if not k.startswith("_")}

    def create_addon(self):
        cluster, name, account = self._cluster(), self._body().get("addonName"), self.current_account
        self._settle_addons(cluster)
        existing = _state(cluster, "addons").get(name)
        if existing is not None and existing["status"] == "DELETING":
            raise ResourceInUseException(
                message=f"Addon {name} cannot be created as it is currently in DELETING state",
                clusterName=cluster.name, addonName=name)
        result = super().create_addon()
        wait = _strict(account, "addon_create")
        if wait or _strict(account, "addon_outcome") != "ACTIVE":
            addon = _state(cluster, "addons")[name]
            addon.update({"status": "CREATING", "_until": _time.monotonic() + wait,
                          "_outcome": _strict(account, "addon_outcome")})
        return ActionResult({"addon": self._public(result.result["addon"])})

    def describe_addon(self):
        self._settle_addons(self._cluster())
        return ActionResult({"addon": self._public(self._addon())})

    def list_addons(self):
        self._settle_addons(self._cluster())
        return super().list_addons()

    def delete_addon(self):
        cluster = self._cluster()
        self._settle_addons(cluster)
        addon = self._addon()
        wait = _strict(self.current_account, "addon_delete")
        if not wait:
            return super().delete_addon()
        if addon["status"] != "DELETING":
            addon.update({"status": "DELETING", "_until": _time.monotonic() + wait})
        return ActionResult({"addon": self._public(addon)})

    def _tagged(self):
        item = super()._tagged()
        return None if item is not None and item.get("status") == "DELETING" else item


class QueueDeletedRecently(SQSException):
    __module__ = "moto.sqs.exceptions"

    def __init__(self):
        super().__init__("AWS.SimpleQueueService.QueueDeletedRecently",
                         "You must wait 60 seconds after deleting a queue before you can create "
                         "another with the same name.")


class StrictSQSResponse(SQSResponse):
    """SQS that remembers deleted queue names for a while."""

    def create_queue(self):
        name = self._get_param("QueueName")
        if _within(self.current_account, "queue-deleted", name, "queue_deleted_recently"):
            raise QueueDeletedRecently()
        return super().create_queue()

    def get_queue_url(self):
        name, account = self._get_param("QueueName"), self.current_account
        if name not in self.sqs_backend.queues and _within(account, "queue-deleted", name, "queue_url_linger"):
            url = f"{self.uri.split('://')[0]}://{self.headers.get('Host', 'localhost')}/{account}/{name}"
            return ActionResult({"QueueUrl": url})
        return super().get_queue_url()

    def delete_queue(self):
        name = self._get_queue_name()
        result = super().delete_queue()
        _mark(self.current_account, "queue-deleted", name)
        return result


class StrictEventsHandler(EventsHandler):
    """EventBridge whose target removal takes a moment to be seen by DeleteRule."""

    def remove_targets(self):
        rule, account = self._get_param("Rule"), self.current_account
        if _strict(account, "remove_targets_fail_first"):
            with _LOCK:
                first = (account, "targets-failed", rule) not in _EVENTS
                _EVENTS.setdefault((account, "targets-failed", rule), _time.monotonic())
            if first:
                failed = [{"TargetId": i, "ErrorCode": "ConcurrentModificationException",
                           "ErrorMessage": "the rule is being modified; try again"}
                          for i in self._get_param("Ids") or []]
                return json.dumps({"FailedEntryCount": len(failed), "FailedEntries": failed}), \
                    self.response_headers
        result = super().remove_targets()
        _mark(account, "targets-removed", rule)
        return result

    def put_targets(self):
        # A rule made again later is a new rule: its first removal may fail again.
        with _LOCK:
            _EVENTS.pop((self.current_account, "targets-failed", self._get_param("Rule")), None)
        return super().put_targets()

    def delete_rule(self):
        if _within(self.current_account, "targets-removed", self._get_param("Name"), "rule_targets_settle"):
            return self.error("ValidationException", "Rule can't be deleted since it has targets.")
        return super().delete_rule()


def apply_strict():
    """Route IAM, EKS, SQS and EventBridge to the strict responses above (which do
    nothing unless switched on), and add the switch route. Called by apply()."""
    for pattern in iam_urls.url_paths:
        iam_urls.url_paths[pattern] = StrictIamResponse.dispatch
    for pattern in eks_urls.url_paths:
        eks_urls.url_paths[pattern] = StrictEKSResponse.dispatch
    for pattern in sqs_urls.url_paths:
        sqs_urls.url_paths[pattern] = StrictSQSResponse().dispatch
    for pattern in events_urls.url_paths:
        events_urls.url_paths[pattern] = StrictEventsHandler.dispatch
    moto_api_urls.url_paths[STRICT_PATH] = set_strict


_apply_before_strict = apply


def apply():  # noqa: F811 -- extends the apply() above
    _apply_before_strict()
    apply_strict()



# ===========================================================================
# Small pages (issue 12, pagination). Separate section: owned by the
# pagination work; the strict-behaviour sections live above.
#
# Real AWS pages every List*/Describe* that has a paginator in the service's
# API model, and may return a page shorter than MaxItems/MaxResults with a
# token to continue, even when more items exist: "IAM might return fewer
# results, even when there are more results available. We recommend that you
# check IsTruncated after every call" (IAM API reference, "MaxItems"); EC2:
# "NextToken: the token to include in another request to get the next page"
# (EC2 API reference, "Pagination"). moto answers most of them in one piece,
# so a client that reads only the first page passes here and fails on AWS.
#
# What this adds: every operation that botocore's paginator model
# (paginators-1.json) lists for IAM, EC2 and EKS answers pages of
# at most PAGE_SIZE items (the client's own smaller limit wins), with the
# model's output token (Marker + IsTruncated for IAM, NextToken for EC2,
# nextToken for EKS). The handler below still computes the full
# answer (filters and all); the page is cut from it, and the token is the
# offset of the next page. An unknown token is refused, as AWS refuses a
# token it did not issue.
#
# Switch: environment variable KARPCTL_MOTO_PAGE_SIZE (read at start):
#   unset -> 2 (small pages: every karpctl integration test runs with them),
#   N > 0 -> pages of at most N items, 0 -> off (moto's own behaviour).
# The benchmark (benches/perf.rs) sets 100, IAM's default MaxItems, so it
# counts the round trips a real region needs, not the test pages'.
# ===========================================================================

import base64
import os
from urllib.parse import urlencode

import botocore.session
from moto.core.responses import BaseResponse as _BaseResponse
from moto.core.utils import camelcase_to_underscores

# EventBridge is left whole: the Rust SDK has no paginators for it, karpctl's one list there
# (ListTargetsByRule, one target per rule) pages by NextToken itself, and the tests' own
# ListRules would need a hand-written loop each.
PAGED_SERVICES = ("iam", "ec2", "eks")
TOKEN_PREFIX = "karpctl-page:"


def page_size():
    """KARPCTL_MOTO_PAGE_SIZE, default 2; 0 turns the pager off."""
    return int(os.environ.get("KARPCTL_MOTO_PAGE_SIZE", "2"))


_PAGINATORS = {}


def _paginator(service, operation):
    """botocore's paginator config for the operation, or None when it is not paginated."""
    if service not in _PAGINATORS:
        model = botocore.session.get_session().get_paginator_model(service)
        _PAGINATORS[service] = model._paginator_config  # {operation: config}
    return _PAGINATORS[service].get(operation)


def encode_token(offset):
    return base64.b64encode(f"{TOKEN_PREFIX}{offset}".encode()).decode()


def decode_token(token):
    """The offset in a token this pager issued, or None for any other string."""
    try:
        text = base64.b64decode(token.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if not text.startswith(TOKEN_PREFIX) or not text[len(TOKEN_PREFIX):].isdigit():
        return None
    return int(text[len(TOKEN_PREFIX):])


def _pop(response, key):
    """Remove a request parameter wherever moto's handlers may read it (parsed params,
    querystring, the URL's query for restJson handlers), returning its value."""
    value = None
    params = getattr(response, "params", None)
    if isinstance(params, dict) or hasattr(params, "pop"):
        for k in (key, key[0].upper() + key[1:], key[0].lower() + key[1:]):
            if params is not None and k in params:
                value = params.pop(k)
    qs = getattr(response, "querystring", None) or {}
    for k in list(qs):
        if k.lower() == key.lower():
            got = qs.pop(k)
            value = value if value is not None else (got[0] if isinstance(got, list) and got else got)
    url = getattr(response, "parsed_url", None)
    if url is not None and url.query:
        pairs = parse_qs(url.query, keep_blank_values=True)
        for k in [k for k in pairs if k.lower() == key.lower()]:
            got = pairs.pop(k)
            value = value if value is not None else got[0]
        response.parsed_url = url._replace(query=urlencode(pairs, doseq=True))
    return value


def _keys(config, name):
    v = config.get(name)
    return v if isinstance(v, list) else [v] if v else []


class _Page:
    """What the request asked for: where to start and how many at most."""

    def __init__(self, config, offset, limit):
        self.config, self.offset, self.limit = config, offset, limit


def _invalid_token(service, token):
    """The error each service gives for a token it did not issue (IAM InvalidInput, EC2
    InvalidNextToken, EKS InvalidParameterException, EventBridge ValidationException)."""
    from moto.ec2.exceptions import InvalidNextToken
    from moto.events.exceptions import ValidationException
    from moto.iam.exceptions import InvalidInput
    message = f"Invalid pagination token: {token}"
    return {
        "iam": lambda: InvalidInput(message),
        "ec2": lambda: InvalidNextToken(token),
        "eks": lambda: InvalidParameterException(message=message),
    }.get(service, lambda: ValidationException(message))()


_ORIGINAL_CALL_ACTION = _BaseResponse.call_action
_ORIGINAL_SERIALIZED = _BaseResponse.serialized


def _paged_call_action(self):
    self._karpctl_page = None
    size = page_size()
    if size > 0 and self.boto3_service_name in PAGED_SERVICES:
        try:
            operation = self._get_action()
        except Exception:  # noqa: BLE001 - not an operation moto knows; let moto answer
            operation = None
        config = _paginator(self.boto3_service_name, operation) if operation else None
        if config and len(_keys(config, "input_token")) == 1:
            token = _pop(self, _keys(config, "input_token")[0])
            limit = _pop(self, config["limit_key"]) if config.get("limit_key") else None
            offset = 0 if not token else decode_token(str(token))
            if offset is None:
                err = _invalid_token(self.boto3_service_name, token)

                def refuse():
                    raise err
                # call_action looks the handler up on the instance: answer through moto's
                # own error path, in the service's protocol.
                setattr(self, camelcase_to_underscores(operation), refuse)
            asked = int(limit) if limit not in (None, "") else size
            self._karpctl_page = _Page(config, offset, max(1, min(size, asked)))
    return _ORIGINAL_CALL_ACTION(self)


def _paged_serialized(self, action_result):
    page = getattr(self, "_karpctl_page", None)
    result = action_result.result if isinstance(action_result, ActionResult) else None
    if page is not None and isinstance(result, dict):
        keys = [k for k in _keys(page.config, "result_key") if "." not in k]
        items = [(k, item) for k in keys for item in (result.get(k) or [])]
        cut = items[page.offset:page.offset + page.limit]
        for k in keys:
            if k in result or any(key == k for key, _ in cut):
                result[k] = [item for key, item in cut if key == k]
        more = page.offset + page.limit < len(items)
        out_token = _keys(page.config, "output_token")[0]
        result[out_token] = encode_token(page.offset + page.limit) if more else None
        if page.config.get("more_results"):
            result[page.config["more_results"]] = more
    return _ORIGINAL_SERIALIZED(self, action_result)


def apply_pagination():
    """Install the pager on every moto response class (they all inherit these two methods
    from BaseResponse); a no-op when KARPCTL_MOTO_PAGE_SIZE is 0."""
    if page_size() > 0:
        _BaseResponse.call_action = _paged_call_action
        _BaseResponse.serialized = _paged_serialized


# ===========================================================================
# Managed node groups (issue 15, `karpctl migrate`).
#
# moto 5.2.1 facts (checked with boto3 against the server):
# - CreateNodegroup/DescribeNodegroup/ListNodegroups work and echo instance
#   types, capacity type, AMI type, labels, taints, subnets, scaling config,
#   launch template and tags given at creation; UpdateNodegroupConfig merges
#   labels, taints and scalingConfig.
# - TagResource/UntagResource/ListTagsForResource on a node group ARN answer
#   ResourceNotFoundException ("It does not tag a managed node group", moto's
#   own docstring); real EKS tags node groups like clusters.
# - UpdateNodegroupConfig stores any scalingConfig; real EKS refuses
#   maxSize < 1 ("Valid Range: Minimum value of 1", EKS API reference,
#   NodegroupScalingConfig), minSize or desiredSize < 0, "Minimum capacity M
#   can't be greater than desired size D" and "desiredSize can't be greater
#   than maxSize" (InvalidParameterException, as reported in
#   terraform-aws-modules/terraform-aws-eks#2508 and #3306), checked against
#   the node group's config with the update merged in.
# - Self-managed Auto Scaling groups are not modelled by the EKS backend (the
#   node group's autoScalingGroups name is not a real autoscaling group).
#
# What this adds: node group ARNs in the tag operations (the tags are the
# node group's own, so DescribeNodegroup shows them), and the validation.
# ===========================================================================


def _nodegroup_tagged(self):
    arn = self._extract_arn_from_path()
    for cluster in self.eks_backend.clusters.values():
        for group in cluster.nodegroups.values():
            if group.arn == arn:
                return {"tags": group.tags}
    return _tagged_before_nodegroups(self)


_tagged_before_nodegroups = KarpctlEKSResponse._tagged
KarpctlEKSResponse._tagged = _nodegroup_tagged


def _validated_update_nodegroup_config(self):
    scaling = self._body().get("scalingConfig")
    if scaling:
        group = self._nodegroup_or_404()
        merged = {**group.scaling_config, **scaling}
        low, high, want = merged.get("minSize", 0), merged.get("maxSize", 1), merged.get("desiredSize", 0)
        if high < 1:
            raise InvalidParameterException(message="maxSize must be greater than or equal to 1")
        if low < 0 or want < 0:
            raise InvalidParameterException(message="minSize and desiredSize must be 0 or more")
        if low > want:
            raise InvalidParameterException(message=f"Minimum capacity {low} can't be greater than desired size {want}")
        if want > high:
            raise InvalidParameterException(message="desiredSize can't be greater than maxSize")
    return EKSResponse.update_nodegroup_config(self)


def _nodegroup_or_404(self):
    return self.eks_backend.describe_nodegroup(self._path("name"), unquote(self.uri_match.group("nodegroupName")))


KarpctlEKSResponse._nodegroup_or_404 = _nodegroup_or_404
KarpctlEKSResponse.update_nodegroup_config = _validated_update_nodegroup_config


# ===========================================================================
# Self-managed Auto Scaling groups (issue 15, `karpctl migrate`).
#
# moto 5.2.1 facts (checked with boto3 against the server):
# - CreateAutoScalingGroup with a launch template or a mixed instances policy
#   launches fake EC2 instances (DescribeAutoScalingGroups lists their ids);
#   DescribeAutoScalingGroups honours tag-key / tag-value / tag:K filters and
#   pages by NextToken/MaxRecords itself (default 50).
# - UpdateAutoScalingGroup stores any MinSize/MaxSize/DesiredCapacity; real
#   Auto Scaling refuses a desired capacity outside [min, max] ("Desired
#   capacity:D must be between the specified min size:m and max size:M") and
#   a min above the max ("Max bound, M, must be greater than or equal to min
#   bound, m"), ValidationError, checked with the group's current values for
#   what the request leaves out (AWS CLI reference, update-auto-scaling-group;
#   the messages as AWS returns them, quoted in terraform-provider-aws issues
#   #4339 and #1209).
# - CreateOrUpdateTags / DeleteTags on a group that does not exist answer HTTP
#   500 (a KeyError); real Auto Scaling answers ValidationError. More than 50
#   tags on a group is stored; real Auto Scaling refuses it with LimitExceeded
#   ("Tags per Auto Scaling group: 50", Auto Scaling service quotas), and a
#   key over 128 or a value over 256 characters with ValidationError (API
#   reference, Tag).
#
# What this adds: those refusals, before moto's own handler runs.
# ===========================================================================

from moto.autoscaling.exceptions import ValidationError as _AsgValidation
from moto.autoscaling.responses import AutoScalingResponse as _AsgResponse

ASG_TAG_LIMIT = 50


def _asg_limit_exceeded(message):
    # moto serializes only exceptions defined in its own modules (it finds the service by the
    # class's module): one of its Auto Scaling errors, with Auto Scaling's limit code.
    err = _AsgValidation(message)
    err.code = "LimitExceeded"
    return err


def _asg_or_error(self, name):
    group = self.autoscaling_backend.autoscaling_groups.get(name)
    if group is None:
        raise _AsgValidation(f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found")
    return group


def _validated_update_asg(self):
    group = _asg_or_error(self, self._get_param("AutoScalingGroupName"))
    low = self._get_int_param("MinSize")
    high = self._get_int_param("MaxSize")
    want = self._get_int_param("DesiredCapacity")
    low = group.min_size if low is None else low
    high = group.max_size if high is None else high
    if low > high:
        raise _AsgValidation(f"Max bound, {high}, must be greater than or equal to min bound, {low}")
    if want is not None and not low <= want <= high:
        raise _AsgValidation(
            f"Desired capacity:{want} must be between the specified min size:{low} and max size:{high}"
        )
    return _update_asg_before(self)


def _validated_create_or_update_tags(self):
    added = {}
    for tag in self._get_param("Tags", []):
        key, value = tag.get("Key", ""), tag.get("Value", "") or ""
        if len(key) > 128 or len(value) > 256:
            raise _AsgValidation(f"Tag key or value too long: {key[:40]}")
        added.setdefault(tag["ResourceId"], set()).add(key)
    for name, keys in added.items():
        group = _asg_or_error(self, name)
        total = {t["Key"] for t in group.tags} | keys
        if len(total) > ASG_TAG_LIMIT:
            raise _asg_limit_exceeded(
                f"The number of tags on Auto Scaling group {name} would be {len(total)}, over the limit of {ASG_TAG_LIMIT}"
            )
    return _create_or_update_tags_before(self)


def _validated_delete_tags(self):
    for tag in self._get_params().get("Tags", []):
        _asg_or_error(self, tag["ResourceId"])
    return _delete_tags_before(self)


_update_asg_before = _AsgResponse.update_auto_scaling_group
_create_or_update_tags_before = _AsgResponse.create_or_update_tags
_delete_tags_before = _AsgResponse.delete_tags
_AsgResponse.update_auto_scaling_group = _validated_update_asg
_AsgResponse.create_or_update_tags = _validated_create_or_update_tags
_AsgResponse.delete_tags = _validated_delete_tags
