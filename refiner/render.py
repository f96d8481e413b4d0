"""Render a proven refinement: the policy as JSON, a unified diff, or an Access Analyzer response."""

from __future__ import annotations

import difflib
import json
from datetime import datetime, timezone

from . import jsontext

FORMATS = ("json", "diff", "aws")


def as_json(document: dict) -> str:
    return jsontext.dumps(document, indent=2) + "\n"


def as_diff(run, name: str) -> str:
    """Unified diff of the input file and the refined one, as they are written (empty when
    nothing changes)."""
    lines = difflib.unified_diff(
        run.policy.source.text.splitlines(keepends=True),
        (run.text or "").splitlines(keepends=True),
        fromfile=f"a/{name}",
        tofile=f"b/{name}",
    )
    return "".join(lines)


def as_recommendation(run, resource_arn: str | None, extra: dict | None = None) -> str:
    """An object shaped like Access Analyzer's GetFindingRecommendation response; the
    recommended policy is the refined document's text as written."""
    policy = run.policy
    step: dict = {"recommendedAction": "DETACH_POLICY" if run.detach else "CREATE_POLICY"}
    if not run.detach:
        step["recommendedPolicy"] = run.document_text
    if policy.policy_id:
        step["existingPolicyId"] = policy.policy_id
    if policy.updated_at:
        step["policyUpdatedAt"] = policy.updated_at
    response: dict = {"recommendationType": "UnusedPermissionRecommendation"}
    if resource_arn:
        response["resourceArn"] = resource_arn
    response.update(
        {
            "status": "SUCCEEDED",
            "startedAt": _timestamp(run.started_at),
            "completedAt": _timestamp(run.completed_at),
            "recommendedSteps": [{"unusedPermissionsRecommendedStep": step}],
        }
    )
    response.update(extra or {})
    return as_json(response)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- verify ---------------------------------------------------------------------------------

RULES = {
    "unsound": ("error", "The refined policy admits an action the original did not, or an "
                "unused action."),
    "incomplete": ("error", "A catalog action the original allowed, and that is used, is lost."),
    "structure": ("error", "A refined statement changes Effect, Resource, NotResource, Principal "
                  "or Condition, changes a Deny statement, or adds a statement."),
    "not-least": ("warning", "A new entry could be dropped or narrowed without losing a used "
                  "catalog action."),
    "unknown": ("error", "The solver gave no answer in time: the refinement is not accepted."),
    "solver-disagreement": ("error", "Z3 and cvc5 disagree on a proof obligation."),
}


def as_verdicts_json(violations, lines: list[int | None], accepted: bool) -> str:
    return as_json({
        "accepted": accepted,
        "verdicts": [
            {"verdict": v.kind, "statement": v.statement, "sid": v.sid, "message": v.message,
             "witness": v.witness, "pattern": v.pattern, "line": line}
            for v, line in zip(violations, lines, strict=True)
        ],
    })


def as_sarif(violations, lines: list[int | None], artifact: str, version: str) -> str:
    """SARIF 2.1.0 for GitHub code scanning: one rule per verdict kind, located in the refined
    policy file at the pattern's line where it can be found."""
    results = []
    for violation, line in zip(violations, lines, strict=True):
        level = RULES[violation.kind][0]
        location = {"physicalLocation": {"artifactLocation": {"uri": artifact},
                                         "region": {"startLine": line or 1}}}
        results.append({
            "ruleId": violation.kind,
            "level": level,
            "message": {"text": violation.describe()},
            "locations": [location],
        })
    rules = [
        {"id": kind, "name": kind.title().replace("-", ""),
         "shortDescription": {"text": text}, "fullDescription": {"text": text},
         "defaultConfiguration": {"level": level}, "help": {"text": text}}
        for kind, (level, text) in RULES.items()
    ]
    return as_json({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "refiner", "version": version, "rules": rules}},
            "results": results,
        }],
    })


def pattern_line(text: str, violation) -> int | None:
    """The 1-based line of the violation's pattern in a policy file (after its Sid, if any)."""
    lines = text.splitlines()
    start = 0
    if violation.sid:
        quoted_sid = json.dumps(violation.sid)
        start = next((i for i, line in enumerate(lines) if quoted_sid in line), 0)
    if violation.pattern:
        quoted = json.dumps(violation.pattern)
        for i in list(range(start, len(lines))) + list(range(start)):
            if quoted in lines[i]:
                return i + 1
    return start + 1 if violation.sid else None
