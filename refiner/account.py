"""Read an account's IAM data (`aws iam get-account-authorization-details`) and its findings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .jsontext import dumps, parse_json_text, read_text
from .policy import decoded_document


@dataclass
class PolicyRef:
    """One policy of a principal, as JSON text ready to cross to a worker.

    policy_id is the managed policy's ARN or the inline policy's name (Access Analyzer's
    existingPolicyId); kind is "managed", "inline" or "group" (a group's policy, shared with
    the group's other members: reported, never rewritten)."""

    policy_id: str
    name: str
    kind: str
    text: str
    updated_at: str | None = None
    aws_managed: bool = False

    def as_task(self) -> dict:
        return {"policyId": self.policy_id, "name": self.name, "kind": self.kind,
                "text": self.text, "updatedAt": self.updated_at, "awsManaged": self.aws_managed}


@dataclass
class Principal:
    arn: str
    kind: str  # "role" or "user"
    name: str
    policies: list[PolicyRef] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # attached policies the export lacks


class Account:
    """Principals by ARN, from one or more exports (pages of one account, or several accounts)."""

    def __init__(self):
        self.principals: dict[str, Principal] = {}
        self._managed: dict[str, PolicyRef] = {}
        self._groups: dict[str, dict] = {}  # "account:group name" -> group detail
        self._pending: list[tuple[Principal, dict]] = []

    @classmethod
    def read(cls, paths: list[str]) -> Account:
        account = cls()
        for path in paths:
            account._add(read_json_object(path, "authorization details"), path)
        account._resolve()
        return account

    def _add(self, export: dict, path: str) -> None:
        if not any(key in export for key in ("RoleDetailList", "UserDetailList", "Policies")):
            raise InputError(f"authorization details {path}: expected the output of "
                             "`aws iam get-account-authorization-details`")
        for policy in _list(export, "Policies", path):
            ref = _managed_policy(policy, path)
            if ref is not None:
                self._managed[ref.policy_id] = ref
        for group in _list(export, "GroupDetailList", path):
            self._groups[_account_of(group.get("Arn", "")) + ":" + str(group.get("GroupName"))] = group
        for kind, key, inline_key in (("role", "RoleDetailList", "RolePolicyList"),
                                      ("user", "UserDetailList", "UserPolicyList")):
            for detail in _list(export, key, path):
                arn, name = detail.get("Arn"), detail.get(f"{kind.title()}Name")
                if not isinstance(arn, str) or not isinstance(name, str):
                    raise InputError(f"authorization details {path}: a {kind} without Arn or name")
                principal = self.principals.setdefault(arn, Principal(arn, kind, name))
                for inline in _list(detail, inline_key, path):
                    _add_policy(principal, _inline_policy(inline, "inline", path))
                self._pending.append((principal, detail))

    def _resolve(self) -> None:
        """Attach managed and group policies once every page is read (a page may name a
        policy that another page holds)."""
        for principal, detail in self._pending:
            arn = principal.arn
            self._attach(principal, _list(detail, "AttachedManagedPolicies", arn), "managed")
            for group_name in _list(detail, "GroupList", arn, of=str):
                group = self._groups.get(f"{_account_of(principal.arn)}:{group_name}")
                if group is None:
                    principal.missing.append(f"group {group_name}")
                    continue
                for inline in _list(group, "GroupPolicyList", group_name):
                    _add_policy(principal, _inline_policy(inline, "group", "group " + group_name))
                self._attach(principal, _list(group, "AttachedManagedPolicies", group_name),
                             "group")
        self._pending = []

    def _attach(self, principal: Principal, attached: list, kind: str) -> None:
        for entry in attached:
            arn = entry.get("PolicyArn") if isinstance(entry, dict) else None
            ref = self._managed.get(arn)
            if ref is None:
                principal.missing.append(f"policy {arn}")
                continue
            _add_policy(principal, PolicyRef(ref.policy_id, ref.name, kind, ref.text,
                                             ref.updated_at, ref.aws_managed))


def _add_policy(principal: Principal, ref: PolicyRef) -> None:
    """Once each: the same export given twice (or a policy both attached and reached through
    a group) must not make two steps for one policy."""
    if all((p.policy_id, p.kind) != (ref.policy_id, ref.kind) for p in principal.policies):
        principal.policies.append(ref)


def read_json_object(path: str, what: str) -> dict:
    value = parse_json_text(read_text(path, what), f"{what} {path}")
    if not isinstance(value, dict):
        raise InputError(f"{what} {path}: expected a JSON object")
    return value


def _list(holder: dict, key: str, where: str, of: type = dict) -> list:
    """holder[key] when it is a list of `of` (missing: empty); anything else is malformed
    input, never read as "nothing attached"."""
    value = holder.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, of) for item in value):
        raise InputError(f"authorization details ({where}): {key} must be a list of "
                         f"{'objects' if of is dict else 'names'}")
    return value


def _managed_policy(policy: dict, path: str) -> PolicyRef | None:
    arn = policy.get("Arn")
    if not isinstance(arn, str):
        raise InputError(f"authorization details {path}: a policy without Arn")
    versions = [v for v in _list(policy, "PolicyVersionList", arn) if v.get("IsDefaultVersion")]
    if not versions:
        return None
    # moto's export lacks PolicyName: the ARN's last part is the name.
    name = policy.get("PolicyName") or arn.rsplit("/", 1)[-1]
    return PolicyRef(arn, name, "managed", _document_text(versions[0].get("Document"), path),
                     versions[0].get("CreateDate"), arn.startswith("arn:aws:iam::aws:"))


def _inline_policy(inline: dict, kind: str, path: str) -> PolicyRef:
    name = inline.get("PolicyName")
    if not isinstance(name, str):
        raise InputError(f"authorization details {path}: an inline policy without PolicyName")
    return PolicyRef(name, name, kind, _document_text(inline.get("PolicyDocument"), path))


def _document_text(document: object, path: str) -> str:
    """A policy document as text: exports hold objects or (URL-encoded) strings."""
    if isinstance(document, str):
        return decoded_document(document)
    if isinstance(document, dict):
        return dumps(document, indent=2) + "\n"
    raise InputError(f"authorization details {path}: a policy document is neither an object "
                     "nor a string")


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""


# --- findings ---------------------------------------------------------------------------------

@dataclass
class FindingPages:
    """The pages of one finding as read: their JSON texts (what crosses to a worker) and the
    first page's fields that decide what to do with it."""

    texts: list[str] = field(default_factory=list)
    head: dict = field(default_factory=dict)


def finding_pages(paths: list[str]) -> dict[str, FindingPages]:
    """Finding id -> its GetFindingV2 pages, from files, folders of them (*.json, *.jsonl)
    and JSON Lines files (one response a line)."""
    pages: dict[str, FindingPages] = {}
    for label, text in _finding_texts(paths):
        value = parse_json_text(text, label)
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise InputError(f"{label}: expected a GetFindingV2 response with an id")
        found = pages.setdefault(value["id"], FindingPages(head=value))
        found.texts.append(text)
    return pages


def finding_file_name(finding_id: str) -> str:
    """A file name for a finding id that is safe on every file system."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", finding_id) + ".json"


def _finding_texts(paths: list[str]) -> Iterator[tuple[str, str]]:
    for path in paths:
        folder = Path(path)
        files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".jsonl")) \
            if folder.is_dir() else [folder]
        for file in files:
            text = read_text(str(file), "findings")
            if file.suffix == ".jsonl":
                # Lines end at "\n" only: JSON strings may hold U+2028 and the like.
                for number, line in enumerate(text.split("\n"), 1):
                    if line.strip():
                        yield f"findings {file} line {number}", line
            else:
                yield f"findings {file}", text
