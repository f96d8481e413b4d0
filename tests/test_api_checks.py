"""The Python API checks its input as the CLI does, and says so in the API's own terms."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import EXAMPLES

import refiner
from refiner.cli import main

POLICY = json.loads((EXAMPLES / "policy.json").read_text())
FINDING = json.loads((EXAMPLES / "finding.json").read_text())  # role/ExampleRole


def role_policy(role: str) -> dict:
    """`aws iam get-role-policy` output: the policy names its principal."""
    return {"RoleName": role, "PolicyName": "Inline", "PolicyDocument": copy.deepcopy(POLICY)}


def test_the_findings_principal_must_be_the_policys_as_on_the_cli(tmp_path, capsys):
    assert refiner.refine(role_policy("ExampleRole"), FINDING).changed
    with pytest.raises(refiner.InputError) as api_error:
        refiner.refine(role_policy("OtherRole"), FINDING)
    policy = tmp_path / "other.json"
    policy.write_text(json.dumps(role_policy("OtherRole")))
    assert main(["refine", str(policy), "--unused", str(EXAMPLES / "finding.json")]) == 2
    cli_error = capsys.readouterr().err
    assert "role/ExampleRole" in str(api_error.value) and "OtherRole" in str(api_error.value)
    assert "the finding is for arn:aws:iam::111122223333:role/ExampleRole" in cli_error


def bad_calls():
    inactive = {**FINDING, "status": "ARCHIVED"}
    first = {**FINDING, "nextToken": "page-2"}
    other = {**FINDING, "id": "another-finding"}
    return {
        "inactive finding": lambda: refiner.refine(POLICY, inactive),
        "a page missing": lambda: refiner.refine(POLICY, [first]),
        "pages of two findings": lambda: refiner.refine(POLICY, [FINDING, other]),
        "a page repeated": lambda: refiner.verify(POLICY, POLICY, [first, first, FINDING]),
        "not a policy": lambda: refiner.refine(FINDING, FINDING),
        "deadline": lambda: refiner.refine(POLICY, FINDING, deadline=0),
        "detach recommendation": lambda: refiner.refine(
            {"recommendedSteps": [{"unusedPermissionsRecommendedStep": {
                "recommendedAction": "DETACH_POLICY"}}]}, FINDING),
    }


@pytest.mark.parametrize("name", list(bad_calls()))
def test_input_errors_name_api_arguments_not_command_line_flags(name):
    with pytest.raises(refiner.InputError) as error:
        bad_calls()[name]()
    message = str(error.value)
    assert "--" not in message, message
    if name == "inactive finding":  # and what it names does what it says
        assert "allow_inactive_finding=True" in message
        assert refiner.refine(POLICY, {**FINDING, "status": "ARCHIVED"},
                              allow_inactive_finding=True).changed
