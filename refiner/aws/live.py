"""The live account as apply, rollback and compare read it: credentials, principals, documents, reach."""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from datetime import datetime

from . import client

# arn:PARTITION:iam::ACCOUNT:RESOURCE, in every partition (aws, aws-cn, aws-us-gov, ...)
ARN = re.compile(r"arn:(?P<partition>aws(?:-[a-z]+)*):(?P<service>[a-z0-9-]+):[^:]*:"
                 r"(?P<account>[^:]*):(?P<resource>.+)\Z")


class Refused(Exception):
    """A change or an undo that must not be made, and why (one line)."""


def parse_arn(arn: str) -> dict:
    found = ARN.match(arn or "")
    if not found:
        raise Refused(f"{arn!r} is not an ARN refiner reads")
    return found.groupdict()


def aws_managed(arn: str) -> bool:
    """AWS's own policies (arn:aws:iam::aws:policy/..., also in aws-cn and aws-us-gov)."""
    found = ARN.match(arn or "")
    return bool(found) and found["account"] == "aws"


def document(value) -> dict:
    """IAM returns documents decoded (boto3) or URL-encoded (other clients)."""
    if isinstance(value, str):
        return json.loads(urllib.parse.unquote(value))
    return value


def name_key(kind: str) -> str:
    return {"role": "RoleName", "user": "UserName", "group": "GroupName"}[kind]


def inline_owner_kind(ref: dict) -> str:
    """role, user or group for a ref of kind role-inline, user-inline or group-inline."""
    return ref["kind"].removesuffix("-inline")


def owner_name(arn: str) -> str:
    """The name in a role, user or group ARN (the last part of its path)."""
    return parse_arn(arn)["resource"].rsplit("/", 1)[-1]


def arn_identity(arn: str) -> dict:
    """What an IAM ARN says of its entity: kind (role, user, group, policy), name, account,
    partition. Every other record of these is checked against it, never trusted beside it."""
    parts = parse_arn(arn)
    kind, _, rest = parts["resource"].partition("/")
    if parts["service"] != "iam" or not rest or kind not in ("role", "user", "group", "policy"):
        raise Refused(f"{arn!r} is not the ARN of an IAM role, user, group or policy")
    return {"kind": kind, "name": rest.rsplit("/", 1)[-1], "account": parts["account"],
            "partition": parts["partition"]}


def principal_disagrees(principal: dict) -> str | None:
    """How a recorded principal's kind, name, account or partition differ from its ARN's."""
    try:
        said = arn_identity(principal["arn"])
    except Refused as refusal:
        return str(refusal)
    if said["kind"] not in ("role", "user"):
        return f"{principal['arn']} is not a role or user"
    wrong = [f"{key} {principal.get(key)!r} (the ARN says {said[key]!r})"
             for key in ("kind", "name", "account", "partition") if principal.get(key) != said[key]]
    return f"{principal['arn']}: " + ", ".join(wrong) if wrong else None


def inline_owner(ref: dict) -> dict:
    """The one owner an inline ref names, from its owner ARN: {arn, kind, name, account,
    partition}; refused when the ref's kind is not the ARN's (role-inline on a user ARN)."""
    said = arn_identity(ref["owner"])
    if said["kind"] != inline_owner_kind(ref):
        raise Refused(f"a {ref['kind']} policy whose owner {ref['owner']} is a {said['kind']}")
    return {"arn": ref["owner"], **said}


# --- credentials and accounts ------------------------------------------------------------------

class Accounts:
    """IAM clients per account: the credentials' own, and member accounts through the role
    named with --assume-role-name (as fetch reads them); any other account is refused."""

    def __init__(self, aws_session, assume_role_name: str | None = None):
        self._session = aws_session
        self.assume_role_name = assume_role_name
        identity = client(aws_session, "sts").get_caller_identity()
        self.account = identity["Account"]
        self.partition = parse_arn(identity["Arn"])["partition"]
        self._iam: dict[str, object] = {}

    def iam(self, account: str, partition: str | None = None):
        if partition and partition != self.partition:
            raise Refused(f"account {account} is in partition {partition}; the credentials are "
                          f"of {self.partition}")
        if account not in self._iam:
            if account == self.account:
                self._iam[account] = client(self._session, "iam")
            elif self.assume_role_name:
                self._iam[account] = client(assumed(self._session, account,
                                                    self.assume_role_name, self.partition), "iam")
            else:
                raise Refused(f"account {account} is not the credentials' account "
                              f"({self.account}): give --assume-role-name to act in it")
        return self._iam[account]

    def service(self, name: str):
        return client(self._session, name)


def assumed(aws_session, account: str, role_name: str, partition: str = "aws",
            session_name: str = "refiner"):
    """A session in another account through the role of that name."""
    import boto3

    arn = f"arn:{partition}:iam::{account}:role/{role_name}"
    granted = client(aws_session, "sts").assume_role(
        RoleArn=arn, RoleSessionName=session_name)["Credentials"]
    return boto3.Session(aws_access_key_id=granted["AccessKeyId"],
                         aws_secret_access_key=granted["SecretAccessKey"],
                         aws_session_token=granted["SessionToken"],
                         region_name=aws_session.region_name)


# --- principals --------------------------------------------------------------------------------

@dataclass
class Live:
    """What IAM holds for a principal now (None: it does not exist)."""

    id: str | None
    boundary: str | None = None


def principal_now(iam, kind: str, name: str) -> Live:
    try:
        if kind == "role":
            found = iam.get_role(RoleName=name)["Role"]
            unique = found["RoleId"]
        elif kind == "user":
            found = iam.get_user(UserName=name)["User"]
            unique = found["UserId"]
        else:
            found = iam.get_group(GroupName=name)["Group"]
            unique = found["GroupId"]
    except iam.exceptions.NoSuchEntityException:
        return Live(None)
    return Live(unique, (found.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn"))


def same_principal(iam, principal: dict) -> None:
    """Refused unless the principal exists with the unique id it had when it was recorded."""
    live = principal_now(iam, principal["kind"], principal["name"])
    if live.id is None:
        raise Refused(f"{principal['arn']} no longer exists")
    if not principal.get("id"):
        raise Refused(f"{principal['arn']}: the recommendation does not name its unique id "
                      "(re-run recommend)")
    if live.id != principal["id"]:
        raise Refused(f"{principal['arn']} was deleted and re-created since the "
                      f"recommendation (id {principal['id']}, now {live.id})")


def same_policy(iam, ref: dict) -> None:
    """Refused unless the managed policy exists with the unique id (PolicyId) recorded when
    it was refined, or, where the export gave none (moto's), its creation time: one deleted
    and re-created under its ARN is another policy."""
    try:
        live = iam.get_policy(PolicyArn=ref["arn"])["Policy"]
    except iam.exceptions.NoSuchEntityException:
        raise Refused(f"{ref['arn']} no longer exists") from None
    if ref.get("id"):
        recorded, now, same = ref["id"], live.get("PolicyId"), ref["id"] == live.get("PolicyId")
    elif ref.get("createDate"):
        recorded, now = ref["createDate"], live.get("CreateDate")
        same = same_instant(now, recorded)
    else:
        raise Refused(f"{ref['arn']}: the recommendation does not record the policy's unique "
                      "id (PolicyId): re-run recommend")
    if not same:
        raise Refused(f"{ref['arn']} was deleted and re-created since the recommendation "
                      f"(id {recorded}, now {now})")


def same_instant(now, then) -> bool:
    """Times as AWS gives them (datetime, or ISO 8601 with Z or +00:00) and as files hold them."""
    if now is None or then is None:
        return now == then
    try:
        return _instant(now) == _instant(then)
    except ValueError:
        return now == then


def _instant(value) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def attached_arns(iam, kind: str, name: str) -> list[str]:
    operation = f"list_attached_{kind}_policies"
    return [p["PolicyArn"] for page in iam.get_paginator(operation).paginate(
            **{name_key(kind): name}) for p in page["AttachedPolicies"]]


# --- documents ------------------------------------------------------------------------------------

def default_version(iam, arn: str) -> str | None:
    try:
        return iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    except iam.exceptions.NoSuchEntityException:
        return None


def version_document(iam, arn: str, version_id: str) -> dict:
    return document(iam.get_policy_version(PolicyArn=arn, VersionId=version_id)
                    ["PolicyVersion"]["Document"])


def managed_document(iam, arn: str) -> dict | None:
    default = default_version(iam, arn)
    return None if default is None else version_document(iam, arn, default)


def inline_document(iam, kind: str, owner: str, name: str) -> dict | None:
    try:
        return document(getattr(iam, f"get_{kind}_policy")(
            **{name_key(kind): owner, "PolicyName": name})["PolicyDocument"])
    except iam.exceptions.NoSuchEntityException:
        return None


def document_now(iam, ref: dict, owner: dict | None = None) -> dict | None:
    """The document a policy ref names, as IAM holds it now (None: it does not exist); an
    inline one of the owner resolved from the ref (inline_owner), the one the write uses."""
    if ref["kind"] == "managed":
        return managed_document(iam, ref["arn"])
    owner = owner or inline_owner(ref)
    return inline_document(iam, owner["kind"], owner["name"], ref["name"])


# --- reach -----------------------------------------------------------------------------------------

def reach_now(iam, ref: dict, recorded: list[dict]) -> dict[tuple[str, str], str]:
    """Every principal a document reaches now, as {(unique id, how): name}, how being
    attached, inline, group:<group ARN> or boundary. For a managed policy ListEntitiesForPolicy,
    once per usage (PolicyUsageFilter); each boundary use is confirmed by reading the
    principal, and the recorded boundary holders are read too, since not every IAM
    implementation filters."""
    if ref["kind"] in ("role-inline", "user-inline"):
        owner = inline_owner(ref)
        live = principal_now(iam, owner["kind"], owner["name"])
        return {(live.id, "inline"): f"{owner['kind']} {owner['name']}"} if live.id else {}
    if ref["kind"] == "group-inline":
        return _members(iam, inline_owner(ref)["name"])
    arn = ref["arn"]
    reach: dict[tuple[str, str], str] = {}
    candidates: set[tuple[str, str]] = set()
    for usage in ("PermissionsPolicy", "PermissionsBoundary"):
        for page in iam.get_paginator("list_entities_for_policy").paginate(
                PolicyArn=arn, PolicyUsageFilter=usage):
            if usage == "PermissionsBoundary":
                candidates |= {("role", r["RoleName"]) for r in page["PolicyRoles"]}
                candidates |= {("user", u["UserName"]) for u in page["PolicyUsers"]}
                continue
            reach |= {(r["RoleId"], "attached"): f"role {r['RoleName']}"
                      for r in page["PolicyRoles"]}
            reach |= {(u["UserId"], "attached"): f"user {u['UserName']}"
                      for u in page["PolicyUsers"]}
            for group in page["PolicyGroups"]:
                reach |= _members(iam, group["GroupName"])
    candidates |= {(parse_arn(r["arn"])["resource"].split("/", 1)[0], owner_name(r["arn"]))
                   for r in recorded if r.get("via") == "boundary"}
    for kind, name in sorted(candidates):
        live = principal_now(iam, kind, name)
        if live.id and live.boundary == arn:
            reach[live.id, "boundary"] = f"{kind} {name}"
    return reach


def _members(iam, group: str) -> dict[tuple[str, str], str]:
    members: dict[tuple[str, str], str] = {}
    for page in iam.get_paginator("get_group").paginate(GroupName=group):
        members |= {(u["UserId"], f"group:{page['Group']['Arn']}"): u["Arn"]
                    for u in page["Users"]}
    return members


def reach_differs(iam, ref: dict, recorded: list[dict]) -> str | None:
    """One line saying how the live reach differs from the recorded one (None: the same)."""
    if not recorded:
        return "the recommendation does not say whom the policy reaches (re-run recommend)"
    want = {(r["id"], r["via"]): r["arn"] for r in recorded}
    have = reach_now(iam, ref, recorded)
    if set(want) == set(have):
        return None
    parts = [f"reaches {have[key]} ({key[1]}) since the recommendation"
             for key in sorted(set(have) - set(want))]
    parts += [f"no longer reaches {want[key]} ({key[1]})" for key in sorted(set(want) - set(have))]
    return "; ".join(parts)
