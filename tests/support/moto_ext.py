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


def set_cluster_status(request, full_url, headers):
    """Test-only: POST /moto-api/karpctl/clusters/{name}/status {"status": ...}.
    BaseResponse.setup_class resolves account and region exactly as for AWS calls."""
    if request.method != "POST":
        return 405, {}, json.dumps({"message": "use POST"})
    # Read the body first: with a form content type (curl -d), Flask would
    # otherwise consume it as form data inside setup_class.
    try:
        body = json.loads(request.get_data(cache=True) or b"{}")
    except ValueError:
        return 400, {}, json.dumps({"message": "body must be JSON"})
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
