"""Read IAM policies in the shapes users have them (document, AWS CLI output) and check them."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .jsontext import parse_json_text, read_json, read_text  # noqa: F401 (re-exported)
from .patterns import parse


@dataclass
class PolicyInput:
    """A policy document as read, plus what the surrounding AWS CLI output said about it."""

    document: dict
    statements_as_list: bool
    policy_id: str | None = None
    updated_at: str | None = None
    kind: str = "managed"  # "inline" for `iam get-role-policy` output: AWS's size limits differ

    @property
    def statements(self) -> list[dict]:
        statement = self.document.get("Statement", [])
        return statement if isinstance(statement, list) else [statement]


def load_policy(raw: object, label: str = "policy") -> PolicyInput:
    """Accept a policy document, `iam get-policy-version` or `iam get-role-policy` output
    (a document given as a string may be URL-encoded), or refiner's own `--format aws`."""
    if not isinstance(raw, dict):
        raise InputError(f"{label}: expected a JSON object with a Statement")
    policy_id = updated_at = None
    if isinstance(raw.get("PolicyVersion"), dict):
        version = raw["PolicyVersion"]
        updated_at = version.get("CreateDate")
        document = _document(version.get("Document"), label)
    elif "PolicyDocument" in raw:
        policy_id = raw.get("PolicyName")
        document = _document(raw["PolicyDocument"], label)
    elif isinstance(raw.get("recommendedSteps"), list):
        document = _from_recommendation(raw, label)
    else:
        document = raw
    if not isinstance(document, dict) or "Statement" not in document:
        raise InputError(f"{label}: no Statement found (not an IAM policy document)")
    kind = "inline" if "PolicyDocument" in raw else "managed"
    policy = PolicyInput(document, isinstance(document["Statement"], list), policy_id, updated_at,
                         kind)
    for index, statement in enumerate(policy.statements):
        check_statement(statement, f"{label}: statement {index}")
    return policy


def _document(value: object, label: str) -> object:
    if isinstance(value, str):
        text = value if value.lstrip().startswith("{") else urllib.parse.unquote(value)
        return parse_json_text(text, f"{label} document")
    return value


def _from_recommendation(raw: dict, label: str) -> dict:
    for step in raw["recommendedSteps"]:
        detail = step.get("unusedPermissionsRecommendedStep", {}) if isinstance(step, dict) else {}
        if detail.get("recommendedAction") == "CREATE_POLICY":
            return _document(detail.get("recommendedPolicy"), label)
        if detail.get("recommendedAction") == "DETACH_POLICY":
            return {"Version": "2012-10-17", "Statement": []}
    raise InputError(f"{label}: recommendation has no CREATE_POLICY or DETACH_POLICY step")


def check_statement(statement: object, label: str) -> None:
    """A statement must be an object with Effect Allow/Deny and Action xor NotAction."""
    if not isinstance(statement, dict):
        raise InputError(f"{label} is not a JSON object")
    if statement.get("Effect") not in ("Allow", "Deny"):
        raise InputError(f"{label}: Effect must be \"Allow\" or \"Deny\"")
    keys = [key for key in ("Action", "NotAction") if key in statement]
    if len(keys) != 1:
        raise InputError(f"{label}: needs exactly one of Action and NotAction")
    value = statement[keys[0]]
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise InputError(f"{label}: {keys[0]} must be a string or a list of strings")
    for entry in entries:
        try:
            parse(entry)
        except InputError as error:
            raise InputError(f"{label}: {error}") from None


def action_key(statement: dict) -> str:
    return "Action" if "Action" in statement else "NotAction"


def patterns_of(statement: dict) -> list[str]:
    value = statement[action_key(statement)]
    return [value] if isinstance(value, str) else list(value)


def write_atomically(path: str, text: str) -> None:
    """Write text to path through a temporary file in the same folder and a rename."""
    import os
    import tempfile

    target = Path(path)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
