"""A synthetic AWS account made from the managed-policy corpus with a fixed seed: authorization
details as `aws iam get-account-authorization-details` writes them, and one GetFindingV2
response per principal (the tests and bench/account.py use it)."""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path

from corpus import allowed_actions, generate_finding, policies

ACCOUNT = "111122223333"
SCENARIOS = (("5%", 0.05, 0), ("30%", 0.3, 0), ("service", 0.3, 1))


@cache
def _allowed(name: str, catalog_actions: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(allowed_actions(policies()[name], list(catalog_actions)))


def _pool(chooser: random.Random, size: int, limit: int) -> list[str]:
    """Corpus policies no larger than limit characters (AWS's size rules for their kind)."""
    names = [n for n, d in policies().items() if len(json.dumps(d, separators=(",", ":"))) <= limit]
    return sorted(chooser.sample(names, min(size, len(names))))


def build(folder: Path, roles: int, catalog_actions: list[str], seed: int = 20261125,
          users: int = 0, unused_roles: int = 0, paged: int = 0, account: str = ACCOUNT,
          varied: bool = False) -> tuple[Path, Path]:
    """Write folder/authorization-details.json and folder/findings/*.json; return both paths.

    Every role has one inline policy and two or three attached managed policies (shared by
    many roles); `users` users get an inline policy and a group with a policy of its own;
    `unused_roles` of the roles get an UnusedIAMRole finding instead; `paged` findings are
    split into two pages (nextToken); varied: larger and more varied policies (inline ones up to
    a role's 10,240 characters from a pool of 200, managed ones from a pool of 200); account:
    the account id of every ARN (an organization is several such accounts)."""
    chooser = random.Random(seed)
    catalog_key = tuple(catalog_actions)
    managed_pool = _pool(chooser, 200 if varied else 40, 6_144)
    inline_pool = _pool(chooser, 200 if varied else 40, 10_240 if varied else 2_000)
    user_inline_pool = _pool(chooser, 40, 2_000) if varied else inline_pool
    details = {"UserDetailList": [], "GroupDetailList": [], "RoleDetailList": [], "Policies": [],
               "IsTruncated": False}
    used_managed: dict[str, int] = {}  # name -> attachments
    findings_dir = folder / "findings"
    findings_dir.mkdir(parents=True, exist_ok=True)
    principals = [("role", number) for number in range(roles)] + \
        [("user", number) for number in range(users)]
    for kind, number in principals:
        name = f"{kind.title()}{number:05d}"
        arn = f"arn:aws:iam::{account}:{kind}/{name}"
        inline = chooser.choice(inline_pool if kind == "role" else user_inline_pool)
        attached = chooser.sample(managed_pool, chooser.choice((2, 3)))
        for policy_name in attached:
            used_managed[policy_name] = used_managed.get(policy_name, 0) + 1
        entry = {"Path": "/", f"{kind.title()}Name": name, f"{kind.title()}Id": f"ID{number}",
                 "Arn": arn, "CreateDate": "2024-01-01T00:00:00Z",
                 f"{kind.title()}PolicyList": [{"PolicyName": f"{name}-inline",
                                                "PolicyDocument": policies()[inline]}],
                 "AttachedManagedPolicies": [{"PolicyName": m, "PolicyArn": _arn(m)}
                                             for m in attached]}
        names = [inline, *attached]
        if kind == "user":
            group = f"Group{number:03d}"
            entry["GroupList"] = [group]
            group_policy = chooser.choice(user_inline_pool)
            details["GroupDetailList"].append({
                "Path": "/", "GroupName": group, "GroupId": f"G{number}",
                "Arn": f"arn:aws:iam::{account}:group/{group}",
                "GroupPolicyList": [{"PolicyName": f"{group}-inline",
                                     "PolicyDocument": policies()[group_policy]}],
                "AttachedManagedPolicies": []})
            names.append(group_policy)
            details["UserDetailList"].append(entry)
        else:
            details["RoleDetailList"].append(entry)
        allowed = sorted({a for n in names for a in _allowed(n, catalog_key)})
        label, rate, services = SCENARIOS[number % len(SCENARIOS)]
        finding_id = f"{kind}-{number:05d}-{label.strip('%')}" + \
            (f"-{account}" if account != ACCOUNT else "")
        response = {"id": finding_id, "resource": arn,
                    "resourceType": f"AWS::IAM::{kind.title()}", "resourceOwnerAccount": account,
                    "status": "ACTIVE", "findingType": "UnusedPermission",
                    "analyzedAt": "2026-11-20T00:00:00Z", "createdAt": "2026-11-20T00:00:00Z",
                    "updatedAt": "2026-11-20T00:00:00Z"}
        if kind == "role" and number < unused_roles:
            response["findingType"] = "UnusedIAMRole"
            response["findingDetails"] = [{"unusedIamRoleDetails": {
                "lastAccessed": "2025-01-01T00:00:00Z"}}]
        else:
            response["findingDetails"] = [
                {"unusedPermissionDetails": {"serviceNamespace": e["serviceNamespace"],
                                             **({"actions": [{"action": a} for a in e["actions"]]}
                                                if e["actions"] else {})}}
                for e in generate_finding(allowed, rate, seed + number, services)]
        if number < paged and len(response["findingDetails"]) > 1:
            half = len(response["findingDetails"]) // 2
            first = {**response, "findingDetails": response["findingDetails"][:half],
                     "nextToken": f"{finding_id}-page2"}
            second = {**response, "findingDetails": response["findingDetails"][half:]}
            _write(findings_dir / f"{finding_id}.1.json", first)
            _write(findings_dir / f"{finding_id}.2.json", second)
        else:
            _write(findings_dir / f"{finding_id}.json", response)
    for name in sorted(used_managed):
        details["Policies"].append({
            "PolicyName": name, "PolicyId": f"P{abs(hash(name)) % 10**8}", "Arn": _arn(name),
            "Path": "/", "DefaultVersionId": "v2", "AttachmentCount": used_managed[name],
            "IsAttachable": True,
            "CreateDate": "2024-01-01T00:00:00Z", "UpdateDate": "2024-02-01T00:00:00Z",
            "PolicyVersionList": [
                {"Document": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "*", "Resource": "*"}]},
                 "VersionId": "v1", "IsDefaultVersion": False, "CreateDate": "2024-01-01T00:00:00Z"},
                {"Document": policies()[name], "VersionId": "v2", "IsDefaultVersion": True,
                 "CreateDate": "2024-02-01T00:00:00Z"}]})
    details_path = folder / "authorization-details.json"
    _write(details_path, details)
    return details_path, findings_dir


def _arn(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"


def _write(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")
