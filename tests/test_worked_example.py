"""AWS's worked example on the embedded catalog, in both finding shapes."""

from __future__ import annotations

import json
import re

import pytest
from conftest import EXAMPLES
from oracle import matches

from refiner.cli import main

AWS_2024_GET = [
    "s3:GetAccess*", "s3:GetAccountPublicAccessBlock", "s3:GetDataAccess", "s3:GetJobTagging",
    "s3:GetMulti*", "s3:GetObject*", "s3:GetStorage*",
]
WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def expected_expansion(wildcard_prefix: str, used: list[str], unused: list[str]) -> list[str]:
    """The spec, computed naively: for each used action, the shortest candidate prefix on its
    chain (a word prefix of any name that starts it) with no unused name below it; a prefix
    holding one used action is that action; an action with no safe prefix is itself."""
    names = used + unused
    nodes = {wildcard_prefix.lower()}
    for name in names:
        service, action = name.split(":")
        for cut in [m.start() for m in WORD_START.finditer(action)] + [len(action)]:
            nodes.add(f"{service}:{action[:cut]}".lower())
    spelled = {}
    for name in names:
        for node in nodes:
            if name.lower().startswith(node):
                spelled.setdefault(node, name[: len(node)])
    emitted = set()
    for action in used:
        chain = sorted((n for n in nodes if action.lower().startswith(n)
                        and n.startswith(wildcard_prefix.lower())), key=len)
        safe = [n for n in chain if not any(u.lower().startswith(n) for u in unused)]
        if not safe:
            emitted.add(action)
            continue
        below = [u for u in used if u.lower().startswith(safe[0])]
        emitted.add(below[0] if len(below) == 1 else spelled[safe[0]] + "*")
    return sorted(emitted, key=lambda t: (t.lower(), t))


def test_both_finding_shapes_name_the_same_actions():
    listed = json.loads((EXAMPLES / "unused.json").read_text())
    v2 = json.loads((EXAMPLES / "finding.json").read_text())["findingDetails"]
    from_list = {(e["serviceNamespace"], n.split(":")[-1]) for e in listed for n in e["actions"]}
    from_v2 = {(d["unusedPermissionDetails"]["serviceNamespace"], a["action"])
               for d in v2 for a in d["unusedPermissionDetails"]["actions"]}
    assert from_list == from_v2 and len(from_list) == 8 + 22


@pytest.mark.parametrize("finding", ["finding.json", "unused.json"])
def test_worked_example(finding, catalog, capsys):
    code = main(["refine", str(EXAMPLES / "policy.json"), "--unused", str(EXAMPLES / finding)])
    out = capsys.readouterr().out
    assert code == 0
    refined = json.loads(out)
    lambda_statement, s3_statement = refined["Statement"]
    assert lambda_statement["Action"] == ["lambda:Invoke*"]

    listed = json.loads((EXAMPLES / "unused.json").read_text())
    (s3_entry,) = [entry for entry in listed if entry["serviceNamespace"] == "s3"]
    unused_s3 = ["s3:" + name.removeprefix("s3:") for name in s3_entry["actions"]]
    assert len(unused_s3) == 22
    used_get = [a for a in catalog.actions_of("s3") if matches("s3:Get*", a)
                and a.lower() not in {u.lower() for u in unused_s3}]
    expected = expected_expansion("s3:Get", used_get, unused_s3)
    assert s3_statement["Action"] == expected + ["s3:List*"]
    assert set(AWS_2024_GET) <= set(expected)
    # the rest are used Get actions newer than AWS's 2024 catalog, each kept
    for extra in set(expected) - set(AWS_2024_GET):
        assert not any(matches(p, extra.rstrip("*")) for p in AWS_2024_GET)


def test_worked_example_aws_format_carries_the_role(capsys):
    code = main(["refine", str(EXAMPLES / "policy.json"), "--unused",
                 str(EXAMPLES / "finding.json"), "--format", "aws"])
    response = json.loads(capsys.readouterr().out)
    assert code == 0
    assert response["resourceArn"] == "arn:aws:iam::111122223333:role/ExampleRole"
    assert response["status"] == "SUCCEEDED"
    (step,) = response["recommendedSteps"]
    detail = step["unusedPermissionsRecommendedStep"]
    assert detail["recommendedAction"] == "CREATE_POLICY"
    policy = json.loads(detail["recommendedPolicy"])
    assert policy["Statement"][0]["Action"] == ["lambda:Invoke*"]


def test_worked_example_diff_shows_only_changed_lines(capsys):
    code = main(["refine", str(EXAMPLES / "policy.json"), "--unused",
                 str(EXAMPLES / "unused.json"), "--format", "diff"])
    diff = capsys.readouterr().out
    assert code == 0
    removed = [line[1:].strip().strip('",') for line in diff.splitlines()
               if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip().strip('",') for line in diff.splitlines()
             if line.startswith("+") and not line.startswith("+++")]
    assert "s3:Get*" in removed and "lambda:AddPermission" in removed
    assert "s3:GetObject*" in added and "s3:List*" not in added + removed
