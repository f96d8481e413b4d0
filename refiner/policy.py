"""Read IAM policies in the shapes users have them (document, AWS CLI output) and check them."""

from __future__ import annotations

import codecs
import urllib.parse
from dataclasses import dataclass

from .errors import InputError
from .jsontext import (  # noqa: F401 (read_json, read_text re-exported)
    dumps,
    parse_json_text,
    read_bytes,
    read_json,
    read_text,
)
from .patterns import glob, parse
from .sniff import POLICY_SHAPES, read_json_as, value_kind, wrong_shape
from .writeback import Source


@dataclass
class PolicyInput:
    """A policy document as read, plus what the surrounding AWS CLI output said about it and
    the text it came from (so a refinement can be written back changing only what changed)."""

    document: dict
    statements_as_list: bool
    policy_id: str | None = None
    updated_at: str | None = None
    kind: str = "managed"  # "inline" for `iam get-role-policy` output: AWS's size limits differ
    principal: tuple[str, str] | None = None  # ("role", name) for get-role-policy output, ...
    source: Source | None = None

    @property
    def statements(self) -> list[dict]:
        statement = self.document.get("Statement", [])
        return statement if isinstance(statement, list) else [statement]


# The AWS CLI outputs of an inline policy name their principal with one of these keys.
_PRINCIPAL_KEYS = {"RoleName": "role", "UserName": "user", "GroupName": "group"}


def read_policy(path: str, label: str) -> PolicyInput:
    """Read a policy file (or standard input, "-") in any shape load_policy accepts."""
    data = read_bytes(path, "policy")  # read once: a pipe or FIFO cannot be read again
    text, raw = read_json_as(path, "policy", label, "an IAM policy", POLICY_SHAPES, data)
    policy = load_policy(raw, label, text)
    policy.source.bom = data.startswith(codecs.BOM_UTF8)
    return policy


def load_policy(raw: object, label: str = "policy", text: str | None = None) -> PolicyInput:
    """Accept a policy document, `iam get-policy-version`, `get-role-policy`/`get-user-policy`
    output (a document given as a string may be URL-encoded), or refiner's own `--format aws`.
    text: the JSON text raw was read from (without it, raw is written out with two-space
    indentation to serve as one)."""
    if not isinstance(raw, dict):
        raise InputError(wrong_shape(label, value_kind(raw), "an IAM policy", POLICY_SHAPES))
    policy = PolicyInput({}, True)
    path: tuple = ()
    if isinstance(raw.get("PolicyVersion"), dict):
        policy.updated_at = raw["PolicyVersion"].get("CreateDate")
        path = ("PolicyVersion", "Document")
    elif "PolicyDocument" in raw:
        policy.policy_id = raw.get("PolicyName")
        path = ("PolicyDocument",)
        policy.principal = next(((kind, raw[key]) for key, kind in _PRINCIPAL_KEYS.items()
                                 if isinstance(raw.get(key), str)), None)
        owner = policy.principal[0] if policy.principal else "role"
        policy.kind = "inline" if owner == "role" else f"{owner}-inline"
    elif isinstance(raw.get("recommendedSteps"), list):
        path = _recommended_policy_path(raw, label)
        if path is None:  # DETACH_POLICY: what is recommended has no statement at all
            detached = {"Version": "2012-10-17", "Statement": []}
            return PolicyInput(detached, True, source=Source(dumps(detached, indent=2)))
    held: object = raw
    for key in path:
        held = held.get(key) if isinstance(held, dict) else held[key]
    source = Source(text if text is not None else dumps(raw, indent=2) + "\n", path)
    if isinstance(held, str):
        source.encoding = "json" if decoded_document(held) == held else "url"
        held = parse_json_text(source.document_text(), f"{label} document")
    if not isinstance(held, dict) or "Statement" not in held:
        kind = value_kind(held)
        raise InputError(wrong_shape(label, None if kind == "an IAM policy" else kind,
                                     "an IAM policy (no Statement found)", POLICY_SHAPES))
    policy.document, policy.source = held, source
    policy.statements_as_list = isinstance(held["Statement"], list)
    if not policy.statements:
        raise InputError(f"{label}: Statement is empty (not a valid IAM policy)")
    for index, statement in enumerate(policy.statements):
        check_statement(statement, f"{label}: statement {index}")
    return policy


def decoded_document(held: str) -> str:
    """A policy document held in a string: JSON text, or URL-encoded JSON text (IAM's API)."""
    return held if held.lstrip().startswith("{") else urllib.parse.unquote(held)


def _recommended_policy_path(raw: dict, label: str) -> tuple | None:
    """Where the policy of a recommendation's one step is held (None for a DETACH_POLICY
    step). A recommendation for several policies names none of them alone: refused."""
    if len(raw["recommendedSteps"]) > 1:
        raise InputError(f"{label}: the recommendation has {len(raw['recommendedSteps'])} steps "
                         "(one per policy): give the recommendedPolicy of the one to check")
    for number, step in enumerate(raw["recommendedSteps"]):
        detail = step.get("unusedPermissionsRecommendedStep") if isinstance(step, dict) else None
        action = detail.get("recommendedAction") if isinstance(detail, dict) else None
        if action == "CREATE_POLICY":
            return ("recommendedSteps", number, "unusedPermissionsRecommendedStep",
                    "recommendedPolicy")
        if action == "DETACH_POLICY":
            return None
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
    for element in ("Resource", "Principal"):  # IAM refuses both; a reader must not pick one
        if element in statement and f"Not{element}" in statement:
            raise InputError(f"{label}: has both {element} and Not{element}; IAM accepts one")
    value = statement[keys[0]]
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise InputError(f"{label}: {keys[0]} must be a string or a list of strings")
    if not entries:  # IAM refuses it; an empty NotAction would even read as "allow everything"
        raise InputError(f"{label}: {keys[0]} is an empty list (not a valid IAM statement)")
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


def pattern_count(statements: list[dict]) -> int:
    """How many Action/NotAction entries the statements have."""
    return sum(len(patterns_of(statement)) for statement in statements)


def allowed_among(statement: dict, names) -> set[str]:
    """The names an Allow statement admits, by the refiner's glob matcher (for reports, not
    proofs): Action admits what some entry matches, NotAction what none does."""
    if statement.get("Effect") != "Allow":
        return set()
    matchers = [glob(text) for text in patterns_of(statement)]
    listed = "Action" in statement
    return {name for name in names if any(m.matches(name) for m in matchers) == listed}
