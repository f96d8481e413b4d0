"""What `refiner aws apply` would change: recommend's output as changes naming principal, policy, findings."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..account import finding_file_name
from ..errors import InputError
from ..outdir import MANIFEST, check_complete
from ..recommend import RECOMMENDATIONS, STATE
from ..refinement import policy_size
from .live import Refused, arn_identity, aws_managed, inline_owner, principal_disagrees

SHARED = "shared"
PRINCIPAL_FIELDS = ("arn", "id", "account", "partition", "kind", "name")
INLINE_KINDS = ("role-inline", "user-inline", "group-inline")


def ref_label(ref: dict) -> str:
    """A policy named by owner and kind, never by name alone."""
    if ref["kind"] == "managed":
        return ref["arn"]
    return f"{ref['owner']} inline policy {ref['name']}"


def ref_key(ref: dict) -> tuple:
    return (ref["kind"], ref.get("arn"), ref.get("owner"), ref.get("name"))


@dataclass
class Change:
    """One change to one policy: for one principal (a per-finding step), or for every
    principal the document reaches (a consolidated recommendation, principal None)."""

    key: str
    findings: list[dict]  # {"id", "updatedAt", "principal"} of each finding it rests on
    principal: dict | None  # arn, id, account, partition, kind, name
    ref: dict
    policy: dict  # text, updatedAt, versionId, awsManaged, reach
    action: str  # CREATE_POLICY or DETACH_POLICY
    document: str | None
    shared: str | None = None  # the consolidated recommendation's name
    problem: str | None = None  # why it cannot be applied, known from the files alone
    calls: list[str] = field(default_factory=list)
    copy: bool = False  # recommend --shared copy: this principal's own copy of a shared policy

    @property
    def how(self) -> str:
        """put-inline, delete-inline, detach, version (a new default version) or copy (a new
        customer managed policy attached instead, AWS's detach-and-attach)."""
        if self.ref["kind"] != "managed":
            return "delete-inline" if self.action == "DETACH_POLICY" else "put-inline"
        if self.action == "DETACH_POLICY":
            return "detach"
        if self.principal is None:
            return "version"
        if self.copy or self.policy.get("awsManaged") or aws_managed(self.ref["arn"]):
            return "copy"
        others = {r["id"] for r in self.policy.get("reach", [])} - {self.principal.get("id")}
        return "copy" if others else "version"

    @property
    def label(self) -> str:
        who = self.principal["arn"] if self.principal else f"shared {self.shared}"
        return f"{who}: {ref_label(self.ref)}"

    def describe(self) -> str:
        before = policy_size(json.loads(self.policy["text"]))
        after = policy_size(json.loads(self.document)) if self.document else 0
        diff = list(difflib.unified_diff(self.policy["text"].splitlines(),
                                         (self.document or "").splitlines(), lineterm=""))
        added = sum(line.startswith("+") and not line.startswith("+++") for line in diff)
        removed = sum(line.startswith("-") and not line.startswith("---") for line in diff)
        reach = len(self.policy.get("reach", []))
        return (f"{self.label}: {self.how}" + (f" (reaches {reach})" if reach > 1 else "")
                + (f" [{', '.join(self.calls)}]" if self.calls else "")
                + f"; {before:,} -> {after:,} characters, +{added}/-{removed} lines")

    def matches(self, only: list[str]) -> bool:
        names = {self.ref.get("arn"), self.ref.get("owner"), *(f["id"] for f in self.findings)}
        if self.principal:
            names.add(self.principal["arn"])
        else:  # a consolidated change is every reached principal's
            names |= {r["arn"] for r in self.policy.get("reach", [])}
        return bool(names & set(only))


def plan(outdir: str, only: list[str] | None = None) -> list[Change]:
    """The changes recommend's output asks for (SUCCEEDED findings, consolidated
    recommendations once each), optionally only those naming one of `only` (a principal,
    policy, owner or finding id)."""
    out = Path(outdir)
    if (out / MANIFEST).is_file():  # recommend wrote here: it must have finished
        check_complete(outdir)
    if not (out / RECOMMENDATIONS).is_dir() or not (out / STATE).is_dir():
        raise InputError(f"{outdir} is not an output folder of `refiner recommend`")
    changes: list[Change] = []
    shared_done: set[str] = set()
    for path in sorted((out / RECOMMENDATIONS).glob("*.json")):
        recommendation = _read(path)
        if recommendation.get("status") != "SUCCEEDED":
            continue
        state = _read(out / STATE / path.name)
        principal = state.get("principal")
        lacking = [key for key in PRINCIPAL_FIELDS if not isinstance(principal, dict)
                   or not isinstance(principal.get(key), str)]
        if lacking:
            raise InputError(f"{out / STATE / path.name} does not name the principal's "
                             f"{', '.join(lacking)} (written by an older refiner recommend?): "
                             "run recommend again")
        disagrees = principal_disagrees(principal)
        if disagrees:
            raise InputError(f"{out / STATE / path.name}: the principal's fields disagree with "
                             f"its ARN: {disagrees}: refused")
        finding = _finding_of(state)
        try:
            changes += _steps(out, path, recommendation, state, finding, shared_done)
        except (AttributeError, KeyError, TypeError) as error:
            raise InputError(f"{path} or a file it names is not in the shape refiner recommend "
                             f"writes (at {error!r}): run recommend again") from None
    for change in changes:
        change.problem = change.problem or _unreadable(change) or _malformed(change)
    return [c for c in changes if not only or c.matches(only)]


def _steps(out: Path, path: Path, recommendation: dict, state: dict, finding: dict,
           shared_done: set[str]) -> list[Change]:
    changes: list[Change] = []
    for number, step in enumerate(recommendation.get("recommendedSteps", []), 1):
        detail = step.get("unusedPermissionsRecommendedStep", {})
        shared = step.get("sharedPolicy") or detail.get("sharedPolicy")
        if shared:
            if shared not in shared_done:
                shared_done.add(shared)
                change = _consolidated(out, shared)
                if change is not None:
                    changes.append(change)
            continue
        changes.append(_per_finding(out, finding, state, detail, f"{path.stem}#{number}"))
    return changes


def _unreadable(change: Change) -> str | None:
    """Why a change's recorded documents cannot be read (None: they can)."""
    for what, text in (("recorded policy", change.policy.get("text")),
                       ("recommended policy", change.document)):
        if text is None and what == "recommended policy" and change.action == "DETACH_POLICY":
            continue
        try:
            if not isinstance(json.loads(text), dict):
                return f"the {what} is not a JSON object"
        except (TypeError, ValueError):
            return f"the {what} is not JSON"
    return None


VIAS = ("attached", "inline", "boundary")


def _malformed(change: Change) -> str | None:
    """Why a change's ref or reach cannot be trusted as recorded (None: it can): an inline
    ref whose kind is not its owner ARN's, a managed ref that is not a policy ARN, a reach
    entry without its ARN, unique id and how it reaches."""
    ref = change.ref
    try:
        if ref["kind"] in INLINE_KINDS:
            inline_owner(ref)
            if not isinstance(ref["name"], str):
                return "the policy ref names no policy"
        elif ref["kind"] != "managed" or arn_identity(ref["arn"])["kind"] != "policy":
            return f"the policy ref {ref!r} is not a managed policy's or an inline one's"
    except Refused as refusal:
        return str(refusal)
    except (KeyError, TypeError):
        return f"the policy ref {ref!r} is not in the shape recommend writes"
    reach = change.policy.get("reach", [])
    if not isinstance(reach, list):
        return "the recorded reach is not a list"
    for entry in reach:
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str)
                                                for k in ("arn", "id", "via"))
                and (entry["via"] in VIAS or entry["via"].startswith("group:"))):
            return (f"a reach entry {entry!r} does not say the principal's arn, id and how the "
                    "policy reaches it (via): re-run recommend")
    return None


def _per_finding(out: Path, finding: dict, state: dict, detail: dict, key: str) -> Change:
    principal = state["principal"]
    action = detail.get("recommendedAction")
    change = Change(key, [finding], principal, {"kind": "managed", "arn": ""},
                    {"text": "{}"}, action, detail.get("recommendedPolicy"))
    policies = [p for p in state.get("policies", []) if isinstance(p.get("ref"), dict)]
    named = detail.get("policyRef") or detail.get("ref")
    if isinstance(named, dict):
        found = [p for p in policies if ref_key(p["ref"]) == ref_key(named)]
    else:  # Access Analyzer's shape: existingPolicyId is a managed ARN or the inline name
        wanted = detail.get("existingPolicyId")
        own = f"{principal['kind']}-inline"
        found = [p for p in policies if p["ref"].get("arn") == wanted
                 or (p["ref"]["kind"] == own and p["ref"].get("name") == wanted
                     and p["ref"].get("owner") == principal["arn"])]
    if len(found) != 1:
        change.problem = (f"step names policy {detail.get('ref') or detail.get('existingPolicyId')}"
                          f", which {'is ambiguous' if found else 'is not'} among the "
                          "principal's recorded policies")
        return change
    policy = found[0]
    if policy.get("sharedPolicy") and not ("reach" in policy and "text" in policy):
        # A shared document's reach (and text) are kept once, in its shared record.
        record = _read(_shared_path(out, policy["sharedPolicy"]))
        policy = {**policy, "reach": record["reach"], "text": policy.get("text") or record["text"]}
    change.ref, change.policy = policy["ref"], policy
    change.copy = isinstance(detail.get("copyOf"), dict)
    if action not in ("CREATE_POLICY", "DETACH_POLICY"):
        change.problem = f"unknown recommendedAction {action!r}"
    elif action == "CREATE_POLICY" and not isinstance(change.document, str):
        change.problem = "CREATE_POLICY without a recommendedPolicy"
    elif policy["ref"]["kind"] == "group-inline":
        change.problem = "a group's policy is changed only by a consolidated recommendation"
    elif policy["ref"]["kind"] in INLINE_KINDS and policy["ref"].get("owner") != principal["arn"]:
        change.problem = "an inline policy of another owner"
    elif change.how == "copy" and {r.get("via") for r in policy.get("reach", [])
                                   if r.get("id") == principal["id"]} != {"attached"}:
        change.problem = "the policy reaches this principal otherwise than attached to it (a " \
            "group or a boundary): a copy cannot replace it for this principal alone"
    return change


def _consolidated(out: Path, name: str) -> Change | None:
    shared = _read(_shared_path(out, name))
    if shared.get("status", "CHANGED") != "CHANGED":  # unchanged, copied, reported, failed
        return None
    if shared.get("recommendedAction") == "DETACH_POLICY":
        change = Change(f"shared:{name}", [], None, shared["ref"], shared, "DETACH_POLICY", None,
                        shared=name)
        change.problem = ("a consolidated DETACH_POLICY (nothing of the document is used by "
                          "anyone it reaches) is not applied: detach it from each by hand")
        return change
    if shared.get("refined") is None:  # unchanged: nothing to apply
        return None
    policy = {**shared, "text": shared["text"], "reach": shared.get("reach", [])}
    findings = []
    problem = None
    for finding_id in shared.get("findings", []):
        state_path = out / STATE / finding_file_name(finding_id)
        if not state_path.is_file():
            problem = f"no state file for finding {finding_id}"
            continue
        findings.append(_finding_of(_read(state_path)))
    change = Change(f"shared:{name}", findings, None, shared["ref"], policy, "CREATE_POLICY",
                    shared["refined"], shared=name, problem=problem)
    if shared["ref"]["kind"] == "managed" and (shared.get("awsManaged")
                                               or aws_managed(shared["ref"]["arn"])):
        change.problem = "an AWS managed policy cannot be changed in place"
    return change


def _shared_path(out: Path, name: str) -> Path:
    path = out / SHARED / f"{name}.json"
    return path if path.is_file() else out / SHARED / name


def _finding_of(state: dict) -> dict:
    finding = state.get("finding") if isinstance(state.get("finding"), dict) else state
    finding_id = finding.get("findingId") or finding.get("id") or \
        state.get("row", {}).get("findingId")
    return {"id": finding_id, "updatedAt": finding.get("updatedAt"),
            "principal": state.get("principal")}


def _read(path: Path) -> dict:
    """A file recommend wrote; missing or cut short means a run was killed mid-way."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} is missing: the folder was left half-written (a killed "
                         "recommend?): run recommend again") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path} cannot be read ({getattr(error, 'strerror', None) or error}): "
                         "the folder was left half-written (a killed recommend?): run "
                         "recommend again") from None
    if not isinstance(value, dict):
        raise InputError(f"{path} is not a file recommend writes")
    return value

