"""refine on a template, principal by principal (issue 16): a finding refines only the policies
that reach its principal; a policy shared with a principal whose finding is not given is left
as it is; one shared by principals whose findings are all given is refined against what all
of them leave unused. Checked per principal with the suite's regex oracle over the union of the
principal's documents, not with refiner's code."""

from __future__ import annotations

import json

import pytest
from oracle import allowed_by

from refiner.cli import main
from refiner.iac import template_from_text

CATALOG = {"s3": ["GetObject", "PutObject", "DeleteObject", "ListBucket"],
           "sqs": ["SendMessage", "ReceiveMessage", "DeleteMessage"],
           "cloudwatch": ["PutMetricData", "GetMetricData"]}
ACTIONS = [f"{service}:{name}" for service, names in CATALOG.items() for name in names]


def allow(*actions: str) -> dict:
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}


def role(name: str, inline: dict) -> dict:
    return {"Type": "AWS::IAM::Role", "Properties": {
        "RoleName": name,
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []},
        "Policies": [{"PolicyName": "own", "PolicyDocument": inline}]}}


TEMPLATE = {"Resources": {
    "RoleA": role("a-role", allow("s3:GetObject", "s3:PutObject", "s3:DeleteObject")),
    "RoleB": role("b-role", allow("sqs:*")),
    "Shared": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
        "PolicyDocument": allow("cloudwatch:PutMetricData", "cloudwatch:GetMetricData",
                                "s3:ListBucket"),
        "Roles": [{"Ref": "RoleA"}, {"Ref": "RoleB"}]}}}}
UNUSED = {"a-role": {"s3": ["DeleteObject", "ListBucket"], "cloudwatch": ["GetMetricData"]},
          "b-role": {"sqs": ["DeleteMessage"], "cloudwatch": ["GetMetricData"]}}
# Policy ids as the reader names them (an inline policy by its place or its PolicyName).
IDS = {p.id.split(".")[0]: p.id for p in template_from_text("t.json", json.dumps(TEMPLATE)).policies
       if p.id.startswith(("RoleA.Policies", "RoleB.Policies", "Shared"))}
A_OWN, B_OWN = IDS["RoleA"], IDS["RoleB"]
HOLDS = {"a-role": [A_OWN, "Shared"], "b-role": [B_OWN, "Shared"]}


def finding_for(tmp_path, name: str) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({
        "id": f"finding-{name}", "resource": f"arn:aws:iam::111122223333:role/{name}",
        "status": "ACTIVE", "findingType": "UnusedPermission",
        "findingDetails": [{"unusedPermissionDetails": {
            "serviceNamespace": service, "actions": [{"action": a} for a in actions]}}
            for service, actions in UNUSED[name].items()]}))
    return str(path)


def list_finding(tmp_path, name: str) -> str:
    path = tmp_path / f"{name}-list.json"
    path.write_text(json.dumps([{"serviceNamespace": s, "actions": a}
                                for s, a in UNUSED[name].items()]))
    return str(path)


def refine(tmp_path, capsys, *args: str) -> tuple[int, dict, str]:
    template = tmp_path / "t.json"
    template.write_text(json.dumps(TEMPLATE, indent=2))
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    out = tmp_path / "out.json"
    code = main(["refine", str(template), "--catalog", str(catalog), "-o", str(out), *args])
    err = capsys.readouterr().err
    documents = {}
    if out.exists():
        written = template_from_text(str(out), out.read_text())
        documents = {p.id: p.document for p in written.policies}
    return code, documents, err


def can_do(documents: dict, principal: str) -> set[str]:
    return {a for policy in HOLDS[principal] for s in documents[policy]["Statement"]
            for a in allowed_by(s, ACTIONS)}


def unused_by(principal: str) -> set[str]:
    return {f"{s}:{a}" for s, actions in UNUSED[principal].items() for a in actions}


def original() -> dict:
    return {A_OWN: TEMPLATE["Resources"]["RoleA"]["Properties"]["Policies"][0][
        "PolicyDocument"], B_OWN: TEMPLATE["Resources"]["RoleB"]["Properties"][
        "Policies"][0]["PolicyDocument"],
        "Shared": TEMPLATE["Resources"]["Shared"]["Properties"]["PolicyDocument"]}


def check_per_principal(documents: dict, with_findings: list[str]) -> None:
    """No principal loses an action it uses; a principal with no finding loses nothing."""
    before = original()
    for principal in HOLDS:
        lost = can_do(before, principal) - can_do(documents, principal)
        allowed = unused_by(principal) if principal in with_findings else set()
        assert lost <= allowed, (principal, lost)


def test_one_principal_s_finding_refines_only_its_own_policies(tmp_path, capsys):
    code, documents, err = refine(tmp_path, capsys, "--unused", finding_for(tmp_path, "a-role"))
    assert code == 0, err
    check_per_principal(documents, ["a-role"])
    assert "s3:DeleteObject" not in documents[A_OWN]["Statement"][0]["Action"]
    assert documents[B_OWN] == original()[B_OWN]
    assert documents["Shared"] == original()["Shared"]
    assert "Shared: shared with RoleB, whose finding is not given" in err


def test_a_shared_policy_is_refined_against_the_intersection(tmp_path, capsys):
    code, documents, err = refine(tmp_path, capsys, "--unused", finding_for(tmp_path, "a-role"),
                                  "--unused", finding_for(tmp_path, "b-role"))
    assert code == 0, err
    check_per_principal(documents, ["a-role", "b-role"])
    shared = allowed_by(documents["Shared"]["Statement"][0], ACTIONS)
    assert shared == {"cloudwatch:PutMetricData", "s3:ListBucket"}  # b-role lists buckets
    assert "sqs:DeleteMessage" not in allowed_by(documents[B_OWN]["Statement"][0],
                                                 ACTIONS)
    assert can_do(documents, "a-role") == {"s3:GetObject", "s3:PutObject",
                                           "cloudwatch:PutMetricData", "s3:ListBucket"}


def test_policy_of_a_role_selects_its_policies_and_a_list_finding_warns(tmp_path, capsys):
    code, documents, err = refine(tmp_path, capsys, "--unused", list_finding(tmp_path, "a-role"),
                                  "--policy", "RoleA")
    assert code == 0, err
    assert documents[B_OWN] == original()[B_OWN]
    assert allowed_by(documents["Shared"]["Statement"][0], ACTIONS) == {
        "cloudwatch:PutMetricData"}
    assert "reach 2 principals (RoleA, RoleB)" in err


def test_several_policy_options_accumulate(tmp_path, capsys):
    code, documents, err = refine(tmp_path, capsys, "--unused", finding_for(tmp_path, "b-role"),
                                  "--policy", B_OWN, "--policy", "RoleA")
    assert code == 0, err
    assert "sqs:DeleteMessage" not in allowed_by(documents[B_OWN]["Statement"][0],
                                                 ACTIONS)
    assert documents[A_OWN] == original()[A_OWN]
    assert f"{A_OWN}: it reaches no principal a finding names" in err
    assert "Shared: shared with RoleA, whose finding is not given" in err


@pytest.mark.parametrize("mix", [True, False])
def test_findings_that_do_not_fit_the_template_are_refused(tmp_path, capsys, mix):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"id": "x", "resource": "arn:aws:iam::1:role/nobody",
                                 "status": "ACTIVE", "findingType": "UnusedPermission",
                                 "findingDetails": []}))
    args = ["--unused", list_finding(tmp_path, "a-role"), "--unused",
            finding_for(tmp_path, "b-role")] if mix else ["--unused", str(other)]
    code, _, err = refine(tmp_path, capsys, *args)
    assert code == 2
    assert ("names no principal" in err) if mix else ("no role or user of the template" in err)


TERRAFORM = """\
resource "aws_iam_role" "app" {
  name               = "app"
  assume_role_policy = "{}"
}

resource "aws_iam_role" "other" {
  name               = "other"
  assume_role_policy = "{}"
}

resource "aws_iam_role_policy" "app" {
  role   = aws_iam_role.app.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["s3:GetObject", "s3:DeleteObject"], Resource = "*" }]
  })
}

resource "aws_iam_role_policy" "other" {
  role   = "other"
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["s3:GetObject", "s3:DeleteObject"], Resource = "*" }]
  })
}
"""


def test_terraform_a_finding_refines_the_policies_of_its_role_only(tmp_path, capsys):
    template = tmp_path / "main.tf"
    template.write_text(TERRAFORM)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    finding = tmp_path / "f.json"
    finding.write_text(json.dumps({
        "id": "f", "resource": "arn:aws:iam::111122223333:role/app", "status": "ACTIVE",
        "findingType": "UnusedPermission", "findingDetails": [{"unusedPermissionDetails": {
            "serviceNamespace": "s3", "actions": [{"action": "DeleteObject"}]}}]}))
    out = tmp_path / "out.tf"
    assert main(["refine", str(template), "--catalog", str(catalog), "--unused", str(finding),
                 "-o", str(out)]) == 0, capsys.readouterr().err
    written = {p.id: p.document for p in template_from_text(str(out), out.read_text()).policies}
    assert written["aws_iam_role_policy.app"]["Statement"][0]["Action"] == ["s3:GetObject"]
    assert written["aws_iam_role_policy.other"]["Statement"][0]["Action"] == [
        "s3:GetObject", "s3:DeleteObject"]
