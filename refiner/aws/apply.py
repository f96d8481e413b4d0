"""`refiner aws apply` and `rollback`: put proven recommendations into IAM, journaled so they can be undone.

Every change is a dry run unless asked for (--yes). Before each change the policy is read
again and the change is refused if it differs from what was refined (never a stale
recommendation). Each IAM call is preceded by a journal entry (JSON Lines, flushed to disk)
holding what is needed to undo it, and followed by one saying it was done; rollback undoes
in reverse order, each undo safe to repeat, so a crash between two calls, or during a
rollback, leaves a journal that rollback can still finish."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..outdir import check_complete
from ..prove import same_json
from ..recommend import RECOMMENDATIONS, STATE
from ..refinement import policy_size
from . import aws_errors, client, session

MAX_VERSIONS = 5  # IAM keeps at most five versions of a managed policy


@dataclass
class Change:
    """One recommended step, planned: which policy, what IAM calls, how big."""

    finding_id: str
    principal: dict  # arn, kind ("role"/"user"), name
    policy: dict  # as recommend read it: policyId, name, kind, text, updatedAt, awsManaged
    action: str  # CREATE_POLICY or DETACH_POLICY
    document: str | None  # the recommended policy's text

    @property
    def calls(self) -> list[str]:
        managed = self.policy["kind"] == "managed"
        who = self.principal["kind"].title()
        if self.action == "DETACH_POLICY":
            return [f"Detach{who}Policy"] if managed else [f"Delete{who}Policy"]
        if not managed:
            return [f"Put{who}Policy"]
        if self.policy.get("awsManaged"):
            return ["CreatePolicy", f"Attach{who}Policy", f"Detach{who}Policy"]
        return ["CreatePolicyVersion (SetAsDefault)"]

    def describe(self) -> str:
        before = policy_size(json.loads(self.policy["text"]))
        after = policy_size(json.loads(self.document)) if self.document else 0
        diff = list(difflib.unified_diff(self.policy["text"].splitlines(),
                                         (self.document or "").splitlines(), lineterm=""))
        added = sum(line.startswith("+") and not line.startswith("+++") for line in diff)
        removed = sum(line.startswith("-") and not line.startswith("---") for line in diff)
        return (f"{self.principal['arn']}: {self.policy['policyId']}: {', '.join(self.calls)}; "
                f"{before:,} -> {after:,} characters, +{added}/-{removed} lines")


@dataclass
class ApplyJob:
    outdir: str
    yes: bool = False
    only: list[str] = field(default_factory=list)
    journal: str | None = None
    prune_oldest: bool = False
    profile: str | None = None
    region: str | None = None


def plan(outdir: str, only: list[str] | None = None) -> list[Change]:
    """The changes recommend's output asks for (SUCCEEDED findings), optionally only those of
    the principals or policies named."""
    out = Path(outdir)
    check_complete(outdir)
    if not (out / RECOMMENDATIONS).is_dir() or not (out / STATE).is_dir():
        raise InputError(f"{outdir} is not an output folder of `refiner recommend`")
    changes = []
    for path in sorted((out / RECOMMENDATIONS).glob("*.json")):
        recommendation = json.loads(path.read_text(encoding="utf-8"))
        if recommendation.get("status") != "SUCCEEDED":
            continue
        state = json.loads((out / STATE / path.name).read_text(encoding="utf-8"))
        if "policies" not in state:
            raise InputError(f"{outdir} was written by an older refiner recommend, which did "
                             "not keep the policies it refined: run recommend again")
        policies = {p["policyId"]: p for p in state["policies"]}
        for step in recommendation["recommendedSteps"]:
            detail = step["unusedPermissionsRecommendedStep"]
            change = Change(state["row"]["findingId"], state["principal"],
                            policies[detail["existingPolicyId"]], detail["recommendedAction"],
                            detail.get("recommendedPolicy"))
            if not only or change.principal["arn"] in only or change.policy["policyId"] in only:
                changes.append(change)
    return changes


def apply(job: ApplyJob) -> tuple[list[Change], list[tuple[Change, str]]]:
    """Apply every planned change (only with job.yes; else nothing is called): the changes
    made and those refused, with the reason."""
    changes = plan(job.outdir, job.only)
    if not job.yes:
        return [], []
    iam = client(session(job.profile, job.region), "iam")
    journal = Journal(job.journal or str(Path(job.outdir) / "journal.jsonl"))
    made, refused = [], []
    for change in changes:
        try:
            stale = _stale(iam, change)
            if stale:
                refused.append((change, stale))
                continue
            refusal = _apply_one(iam, journal, change, job.prune_oldest)
        except aws_errors() as error:
            refused.append((change, f"AWS refused: {error}"))
            continue
        if refusal:
            refused.append((change, refusal))
        else:
            made.append(change)
    return made, refused


# --- one change -----------------------------------------------------------------------------

def _stale(iam, change: Change) -> str | None:
    """Why the policy in IAM is not the one that was refined (None when it is)."""
    current = _current_document(iam, change)
    if current is None:
        return "the policy no longer exists"
    if not same_json(current, json.loads(change.policy["text"])):
        return "the policy changed since the recommendation was made"
    return None


def _current_document(iam, change: Change) -> dict | None:
    principal, policy = change.principal, change.policy
    try:
        if policy["kind"] == "managed":
            arn = policy["policyId"]
            default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            return _version_document(iam, arn, default)
        get = getattr(iam, f"get_{principal['kind']}_policy")
        return _document(get(**{_name_key(principal): principal["name"],
                                "PolicyName": policy["name"]})["PolicyDocument"])
    except iam.exceptions.NoSuchEntityException:
        return None


def _apply_one(iam, journal: Journal, change: Change, prune_oldest: bool) -> str | None:
    principal, policy = change.principal, change.policy
    who = {_name_key(principal): principal["name"]}
    kind = principal["kind"]
    if policy["kind"] != "managed":  # inline: the original is saved before it is replaced
        base = {"principal": principal, "policyName": policy["name"],
                "previousDocument": policy["text"]}
        if change.action == "DETACH_POLICY":
            _call(journal, {"op": "delete_inline", **base},
                  lambda: getattr(iam, f"delete_{kind}_policy")(**who, PolicyName=policy["name"]))
        else:
            _call(journal, {"op": "put_inline", **base},
                  lambda: getattr(iam, f"put_{kind}_policy")(**who, PolicyName=policy["name"],
                                                              PolicyDocument=change.document))
        return None
    arn = policy["policyId"]
    attachment = {"principal": principal, "policyArn": arn}
    if change.action == "DETACH_POLICY":
        _call(journal, {"op": "detach", **attachment},
              lambda: getattr(iam, f"detach_{kind}_policy")(**who, PolicyArn=arn))
        return None
    if policy.get("awsManaged"):  # AWS's own policies cannot change: a customer one replaces it
        name = f"{policy['name']}-refined"[:128]
        created = _call(journal, {"op": "create_policy", "policyName": name},
                        lambda: {"policyArn": iam.create_policy(
                            PolicyName=name, PolicyDocument=change.document,
                            Description=f"refiner: proven refinement of {arn}")["Policy"]["Arn"]})
        new = {"principal": principal, "policyArn": created["policyArn"]}
        _call(journal, {"op": "attach", **new},
              lambda: getattr(iam, f"attach_{kind}_policy")(**who, PolicyArn=new["policyArn"]))
        _call(journal, {"op": "detach", **attachment},
              lambda: getattr(iam, f"detach_{kind}_policy")(**who, PolicyArn=arn))
        return None
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    if len(versions) >= MAX_VERSIONS:
        if not prune_oldest:
            return (f"{arn} has {len(versions)} versions, IAM's limit: --prune-oldest deletes the "
                    "oldest non-default one (saved in the journal)")
        oldest = min((v for v in versions if not v["IsDefaultVersion"]),
                     key=lambda v: v["CreateDate"])
        saved = _version_document(iam, arn, oldest["VersionId"])
        copies = sum(same_json(_version_document(iam, arn, v["VersionId"]), saved)
                     for v in versions)
        _call(journal, {"op": "delete_policy_version", "policyArn": arn,
                        "versionId": oldest["VersionId"], "document": json.dumps(saved),
                        "copiesBefore": copies},
              lambda: iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"]))
        versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    default = next(v["VersionId"] for v in versions if v["IsDefaultVersion"])
    _call(journal, {"op": "create_policy_version", "policyArn": arn, "defaultBefore": default,
                    "versionsBefore": sorted(v["VersionId"] for v in versions)},
          lambda: {"versionId": iam.create_policy_version(
              PolicyArn=arn, PolicyDocument=change.document, SetAsDefault=True)
              ["PolicyVersion"]["VersionId"]})
    return None


def _call(journal: Journal, intent: dict, action) -> dict:
    """Journal the intent (on disk before the call), make the call, journal that it was done."""
    number = journal.write({"state": "intent", **intent})
    result = action()
    result = result if isinstance(result, dict) and "ResponseMetadata" not in result else {}
    journal.write({"state": "done", "seq": number, **result})
    return result


# --- the journal and rollback -------------------------------------------------------------------

class Journal:
    """Append-only JSON Lines; every entry reaches the disk before the call it announces."""

    def __init__(self, path: str):
        self.path = path
        self._next = 1 + sum(1 for entry in read_journal(path) if entry["state"] == "intent") \
            if Path(path).exists() else 1

    def write(self, entry: dict) -> int:
        number = entry.get("seq") or self._next
        if entry["state"] == "intent":
            self._next += 1
        line = json.dumps({"seq": number, **{k: v for k, v in entry.items() if k != "seq"}})
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, (line + "\n").encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return number


def read_journal(path: str) -> list[dict]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"cannot read journal {path}: {error.strerror}") from None
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entries.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # a last line cut short by a crash: its call never ran
                break
            raise InputError(f"journal {path} line {number} is not JSON") from None
    return entries


def rollback(journal_path: str, profile: str | None = None, region: str | None = None) -> int:
    """Undo every journaled change, newest first (also those whose call may have happened
    without being marked done); returns how many were undone. Safe to run again."""
    entries = read_journal(journal_path)
    intents = {e["seq"]: e for e in entries if e["state"] == "intent"}
    undone = {e["seq"] for e in entries if e["state"] == "undone"}
    results = {e["seq"]: e for e in entries if e["state"] == "done"}
    iam = client(session(profile, region), "iam")
    journal = Journal(journal_path)
    count = 0
    for number in sorted(intents, reverse=True):
        if number in undone:
            continue
        try:
            _undo(iam, intents[number], results.get(number, {}))
        except aws_errors() as error:
            raise InputError(f"rollback stopped at journal entry {number} "
                             f"({intents[number]['op']}): {error}; run it again") from None
        journal.write({"state": "undone", "seq": number})
        count += 1
    return count


def _undo(iam, intent: dict, result: dict) -> None:
    """Put back what one journaled call changed; harmless if the call never happened."""
    op = intent["op"]
    gone = iam.exceptions.NoSuchEntityException
    if op in ("put_inline", "delete_inline"):
        principal = intent["principal"]
        getattr(iam, f"put_{principal['kind']}_policy")(
            **{_name_key(principal): principal["name"]}, PolicyName=intent["policyName"],
            PolicyDocument=intent["previousDocument"])
    elif op in ("attach", "detach"):
        principal = intent["principal"]
        verb = "detach" if op == "attach" else "attach"
        with contextlib.suppress(gone):  # never attached, or detached already: nothing to undo
            getattr(iam, f"{verb}_{principal['kind']}_policy")(
                **{_name_key(principal): principal["name"]}, PolicyArn=intent["policyArn"])
    elif op == "create_policy_version":
        arn = intent["policyArn"]
        if iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] != intent["defaultBefore"]:
            iam.set_default_policy_version(PolicyArn=arn, VersionId=intent["defaultBefore"])
        for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
            if version["VersionId"] not in intent["versionsBefore"]:
                iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
    elif op == "delete_policy_version":
        # The content returns as a new version (IAM gives it a new id); counting the versions
        # that hold it makes a repeated rollback create it only once.
        arn, saved = intent["policyArn"], json.loads(intent["document"])
        held = sum(same_json(_version_document(iam, arn, v["VersionId"]), saved)
                   for v in iam.list_policy_versions(PolicyArn=arn)["Versions"])
        for _ in range(intent["copiesBefore"] - held):
            iam.create_policy_version(PolicyArn=arn, PolicyDocument=intent["document"],
                                      SetAsDefault=False)
    elif op == "create_policy":
        arn = result.get("policyArn") or _policy_arn_by_name(iam, intent["policyName"])
        if arn is not None:
            _delete_policy(iam, arn)


def _policy_arn_by_name(iam, name: str) -> str | None:
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        for policy in page["Policies"]:
            if policy["PolicyName"] == name:
                return policy["Arn"]
    return None


def _delete_policy(iam, arn: str) -> None:
    gone = iam.exceptions.NoSuchEntityException
    try:
        entities = iam.list_entities_for_policy(PolicyArn=arn)
    except gone:
        return
    for role in entities.get("PolicyRoles", []):
        iam.detach_role_policy(RoleName=role["RoleName"], PolicyArn=arn)
    for user in entities.get("PolicyUsers", []):
        iam.detach_user_policy(UserName=user["UserName"], PolicyArn=arn)
    for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
        if not version["IsDefaultVersion"]:
            iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
    iam.delete_policy(PolicyArn=arn)


def _version_document(iam, arn: str, version_id: str) -> dict:
    return _document(iam.get_policy_version(PolicyArn=arn, VersionId=version_id)
                     ["PolicyVersion"]["Document"])


def _document(value) -> dict:
    """IAM returns documents decoded (boto3) or URL-encoded (other clients)."""
    if isinstance(value, str):
        import urllib.parse

        return json.loads(urllib.parse.unquote(value))
    return value


def _name_key(principal: dict) -> str:
    return "RoleName" if principal["kind"] == "role" else "UserName"

