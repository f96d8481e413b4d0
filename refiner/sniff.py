"""Say what an input that is not the expected shape looks like, so the error line can name it."""

from __future__ import annotations

import os
import re

from .errors import InputError
from .jsontext import decode, parse_json_text, read_text

POLICY_SHAPES = ("a policy document, `aws iam get-policy-version`, `get-role-policy` or "
                 "`get-user-policy` output, or a GetFindingRecommendation response (what "
                 "refine's aws format writes)")
FINDING_SHAPES = ("a list of {serviceNamespace, actions} or an Access Analyzer GetFindingV2 "
                  "response (findingDetails[].unusedPermissionDetails)")

_YAML_KEY = re.compile(r"^(---|[A-Za-z_][\w.-]*:(\s|$))", re.MULTILINE)
_HCL_BLOCK = re.compile(r'^\s*(resource|data|provider|variable|module|terraform)\s+("|\{)',
                        re.MULTILINE)
_CLOUDFORMATION_KEY = re.compile(
    r"""(?:^|[{,]\s*)(["']?)(?:Resources|AWSTemplateFormatVersion)\1\s*:""", re.MULTILINE)


def value_kind(value: object) -> str | None:
    """What a parsed JSON value looks like, when it is a known shape."""
    if isinstance(value, list) and value and all(
        isinstance(item, dict) and "serviceNamespace" in item for item in value
    ):
        return "an unused-permissions finding"
    if not isinstance(value, dict):
        return None
    if "findingDetails" in value or "findingType" in value:
        return "an Access Analyzer finding"
    if "recommendedSteps" in value:
        return "an Access Analyzer recommendation"
    if "Resources" in value or "AWSTemplateFormatVersion" in value:
        return "a CloudFormation template"
    if "planned_values" in value or "resource_changes" in value or "terraform_version" in value:
        return "a Terraform plan (terraform show -json)"
    if "resource" in value and isinstance(value["resource"], dict | list):
        return "a Terraform JSON configuration (.tf.json)"
    if "RoleDetailList" in value or "UserDetailList" in value:
        return "`aws iam get-account-authorization-details` output"
    if "Statement" in value or "PolicyVersion" in value or "PolicyDocument" in value:
        return "an IAM policy"
    return None


def text_kind(text: str) -> str | None:
    """What a text that is not JSON looks like, when it is a known shape."""
    if _HCL_BLOCK.search(text):
        return "Terraform HCL (.tf)"
    if "AWSTemplateFormatVersion" in text or re.search(r"^Resources:", text, re.MULTILINE):
        return "a CloudFormation template in YAML"
    if _YAML_KEY.search(text) and not text.lstrip().startswith(("{", "[")):
        return "YAML"
    return None


def wrong_shape(label: str, kind: str | None, expected: str, shapes: str) -> str:
    """One line: what the input looks like, what was expected, and the shapes accepted."""
    looks = f" looks like {kind}, not {expected}" if kind else f" is not {expected}"
    return f"{label}{looks}; it accepts {shapes}"


def read_json_as(path: str, what: str, label: str, expected: str, shapes: str,
                 data: bytes | None = None) -> tuple[str, object]:
    """A JSON file's text and value (data: its bytes, when already read); text that is not
    JSON but looks like a known shape (YAML, HCL) is named in the error line."""
    text = read_text(path, what) if data is None else decode(data, path, what)
    try:
        return text, parse_json_text(text, label)
    except InputError:
        kind = text_kind(text)
        if kind is None:
            raise
        raise InputError(wrong_shape(label, kind, expected, shapes)) from None


def template_kind(path: str) -> str | None:
    """The kind of template a file is (a key of model.KINDS), or None for anything else (a
    policy file, standard input, an unreadable file: the policy reader reports those)."""
    if path == "-" or not os.path.isfile(path):
        return None  # standard input and pipes are read once, by the policy reader
    if path.lower().endswith(".tf"):
        return "terraform"
    try:
        text = read_text(path, "file")
    except InputError:
        return None
    return kind_of(path, text)


def kind_of(path: str, text: str) -> str | None:
    """The kind of template a text is (its file name decides for .tf), or None."""
    if path.lower().endswith(".tf"):
        return "terraform"
    try:
        value = parse_json_text(text, path)
    except InputError:
        if text.lstrip().startswith(("{", "[")):
            # YAML in flow style is a template too; JSON with an error is named by the
            # policy reader.
            return "cloudformation-yaml" if not _looks_like_json(text) and \
                _CLOUDFORMATION_KEY.search(text) else None
        if _CLOUDFORMATION_KEY.search(text):  # also with the key quoted: "Resources":
            return "cloudformation-yaml"
        kind = text_kind(text)
        return {"Terraform HCL (.tf)": "terraform",
                "a CloudFormation template in YAML": "cloudformation-yaml"}.get(kind)
    kind = value_kind(value)
    if kind == "a CloudFormation template":
        return "cloudformation-json"
    if kind == "a Terraform plan (terraform show -json)":
        return "terraform-plan"
    if kind == "a Terraform JSON configuration (.tf.json)" or (
            path.lower().endswith(".tf.json") and isinstance(value, dict)
            and ("data" in value or "resource" in value)):
        return "terraform-json"
    return None


def _looks_like_json(text: str) -> bool:
    """Whether a text that starts with { is meant as JSON (its keys are quoted)."""
    return re.match(r"\s*[{\[]\s*(?:\"|[}\]])", text) is not None
