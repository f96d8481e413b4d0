"""Render a proven refinement: the policy as JSON, a unified diff, or an Access Analyzer response."""

from __future__ import annotations

import json
import os
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

from . import jsontext

FORMATS = ("json", "diff", "aws")


def as_json(document: dict) -> str:
    return jsontext.dumps(document, indent=2) + "\n"


def as_diff(run, name: str) -> str:
    """Unified diff of the input file and the refined one, as they are written (empty when
    nothing changes)."""
    return file_diff(run.policy.source.text, run.text or "", name)


def review_diff(run, name: str) -> str:
    """The diff a reviewer reads: the file's own diff, unless its document is held compact (on
    fewer lines than it has statements, as AWS exports and URL-encoded documents are), whose
    diff would be one long line: then both documents are diffed pretty-printed, one entry a
    line."""
    document_text = run.policy.source.document_text()
    if len(document_text.splitlines()) > len(run.policy.statements) + 1:
        return as_diff(run, name)
    after = "" if run.refined is None else as_json(run.refined.document)
    return file_diff(as_json(run.policy.document), after, name)


def file_diff(before: str, after: str, name: str) -> str:
    """A unified diff of two texts of the file called name."""
    import difflib

    return "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        fromfile=f"a/{name}", tofile=f"b/{name}"))


def bare_document(run) -> str:
    """The refined policy document alone, without the AWS CLI output it was read from (what
    put-role-policy and create-policy-version take): its text as written, a nested object's
    indentation taken back to the margin. It must read back as the proven document."""
    from .prove import same_json

    text = run.document_text
    lines = text.splitlines()
    if len(lines) > 1:  # JSON strings hold no raw line breaks: only whitespace between tokens
        margin = min((len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()),
                     default=0)
        text = "\n".join([lines[0]] + [line[margin:] for line in lines[1:]])
    if not same_json(jsontext.loads(text, "refined document"), run.refined.document):
        raise AssertionError("the bare document does not read back as the proven one")
    return text.rstrip("\n") + "\n"


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
            "startedAt": timestamp(run.started_at),
            "completedAt": timestamp(run.completed_at),
            "recommendedSteps": [{"unusedPermissionsRecommendedStep": step}],
        }
    )
    response.update(extra or {})
    return as_json(response)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- verify ---------------------------------------------------------------------------------

INFORMATION_URI = "https://pypi.org/project/iam-refiner/"
FINGERPRINT = "refinerVerdict/v1"
# kind: (SARIF level, GitHub's security-severity (0-10), description)
RULES = {
    "unsound": ("error", "8.0", "The refined policy admits an action the original did not, or "
                "an unused action."),
    "structure": ("error", "7.0", "The refinement changes something other than Action or "
                  "NotAction lists (Effect, Resource, Principal, Condition, Sid, a Deny "
                  "statement, a top-level key such as Version) or adds a statement."),
    "unknown": ("error", "5.0", "The solver gave no answer in time: the refinement is not "
                "accepted."),
    "solver-disagreement": ("error", "5.0", "Z3 and cvc5 disagree on a proof obligation."),
    "incomplete": ("error", "3.0", "A catalog action the original allowed, and that is used, "
                   "is lost."),
    "not-least": ("warning", "2.0", "A new entry could be dropped or narrowed without losing a "
                  "used catalog action."),
}


def as_verdicts_json(violations, lines: list[int | None], accepted: bool, inputs: dict) -> str:
    """The verdicts, and the inputs they are about (file names, the catalog's version)."""
    return as_json({
        "accepted": accepted,
        "inputs": inputs,
        "verdicts": [
            {"verdict": v.kind, "statement": v.statement, "sid": v.sid, "message": v.message,
             "witness": v.witness, "actions": list(v.actions), "pattern": v.pattern,
             "line": line, **({"request": v.request} if v.request is not None else {})}
            for v, line in zip(violations, lines, strict=True)
        ],
    })


def as_sarif(violations, lines: list[int | None], artifact: str, version: str,
             root: str | None = None, failure: str | None = None) -> str:
    """SARIF 2.1.0 for GitHub code scanning: one rule per verdict kind, results located in the
    refined policy file (artifact, as a URI relative to root, default the working directory)
    at the pattern's line where it can be found. failure: the run ended without verdicts
    (bad input, no proof in time), said as a tool execution notification."""
    uri = artifact_uri(artifact, root)
    results = []
    for violation, line in zip(violations, lines, strict=True):
        location = {"physicalLocation": {"artifactLocation": {"uri": uri},
                                         "region": {"startLine": line or 1}}}
        result = {
            "ruleId": violation.kind,
            "level": RULES[violation.kind][0],
            "message": {"text": violation.describe()},
            "locations": [location],
            "partialFingerprints": {FINGERPRINT: _fingerprint(violation)},
        }
        properties = {}
        if violation.actions:
            properties["actions"] = list(violation.actions)
        if violation.request is not None:  # the counterexample request, as data
            properties["request"] = violation.request
        if properties:
            result["properties"] = properties
        results.append(result)
    rules = [
        {"id": kind, "name": kind.title().replace("-", ""),
         "shortDescription": {"text": text}, "fullDescription": {"text": text},
         "defaultConfiguration": {"level": level}, "help": {"text": text},
         "properties": {"security-severity": severity,
                        "tags": ["security", "iam", "least-privilege"]}}
        for kind, (level, severity, text) in RULES.items()
    ]
    invocation: dict = {"executionSuccessful": failure is None}
    if failure is not None:
        invocation["toolExecutionNotifications"] = [{"level": "error",
                                                     "message": {"text": failure}}]
    return as_json({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "refiner", "version": version,
                                "informationUri": INFORMATION_URI, "rules": rules}},
            "invocations": [invocation],
            "results": results,
        }],
    })


def artifact_uri(path: str, root: str | None = None) -> str:
    """A file's URI as code scanning wants it: relative to root (the working directory by
    default), with forward slashes and percent-encoding; a file outside root gets an
    absolute file: URI."""
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(os.path.abspath(root or os.curdir))
    except ValueError:
        return absolute.as_uri()
    return urllib.parse.quote(relative.as_posix())


def _fingerprint(violation) -> str:
    """Stable across runs and unrelated edits: the verdict's kind, Sid, pattern and message
    (not the statement's position, not the solver's witness)."""
    parts = [violation.kind, violation.sid or "", violation.pattern or "", violation.message]
    import hashlib

    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


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
