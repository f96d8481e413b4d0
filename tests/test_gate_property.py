"""The gate's guarantee per principal, over generated templates: a HEAD that gives a role or a
user an action it could not use (an attachment, a group membership), or that adds a principal
to a trust policy, is never accepted. What a principal may do is read by the test suite's own
regex oracle over the union of its documents, not by refiner's code."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import allowed_by

from refiner.gate import compare_templates
from refiner.iac import template_from_text
from refiner.managed import document_for_arn

ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteBucket", "ec2:DescribeInstances",
           "ec2:RunInstances", "iam:PassRole", "iam:CreateUser", "sqs:SendMessage"]
PATTERNS = ACTIONS + ["s3:*", "s3:Get*", "ec2:Describe*", "iam:*", "*"]
MANAGED = ["arn:aws:iam::aws:policy/AdministratorAccess",
           "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess"]


def document(patterns: list[str]) -> dict:
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": patterns, "Resource": "*"}]}


@st.composite
def templates(draw) -> dict:
    roles = [f"Role{n}" for n in range(draw(st.integers(1, 3)))]
    users = [f"User{n}" for n in range(draw(st.integers(0, 2)))]
    groups = [f"Group{n}" for n in range(draw(st.integers(0, 2)))]
    policies = [f"Policy{n}" for n in range(draw(st.integers(1, 3)))]
    some = st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True)
    resources: dict = {}
    for name in roles:
        resources[name] = {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                 "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "own", "PolicyDocument": document(draw(some))}],
            "ManagedPolicyArns": draw(st.lists(st.sampled_from(MANAGED), max_size=1))}}
    for name in users:
        resources[name] = {"Type": "AWS::IAM::User", "Properties": {
            "Groups": [{"Ref": g} for g in draw(st.lists(st.sampled_from(groups), unique=True))]
            if groups else []}}
    for name in groups:
        resources[name] = {"Type": "AWS::IAM::Group", "Properties": {
            "Policies": [{"PolicyName": "group", "PolicyDocument": document(draw(some))}]}}
    for name in policies:
        targets = {"Roles": draw(st.lists(st.sampled_from(roles), unique=True))}
        if users:
            targets["Users"] = draw(st.lists(st.sampled_from(users), unique=True))
        resources[name] = {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
            "PolicyDocument": document(draw(some)),
            **{key: [{"Ref": t} for t in value] for key, value in targets.items()}}}
    return {"Resources": resources}


@st.composite
def changes(draw) -> tuple[dict, dict, str]:
    """(BASE, HEAD, what HEAD adds): one attachment, membership or trust principal."""
    base = draw(templates())
    head = copy.deepcopy(base)
    resources = head["Resources"]
    kinds = ["managed arn", "policy roles", "trust"]
    if any(r["Type"] == "AWS::IAM::User" for r in resources.values()) and \
            any(r["Type"] == "AWS::IAM::Group" for r in resources.values()):
        kinds.append("membership")
    kind = draw(st.sampled_from(kinds))
    names = {t: sorted(n for n, r in resources.items() if r["Type"] == t)
             for t in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group",
                       "AWS::IAM::ManagedPolicy")}
    if kind == "managed arn":
        role = draw(st.sampled_from(names["AWS::IAM::Role"]))
        resources[role]["Properties"]["ManagedPolicyArns"].append(draw(st.sampled_from(MANAGED)))
    elif kind == "policy roles":
        policy = draw(st.sampled_from(names["AWS::IAM::ManagedPolicy"]))
        role = draw(st.sampled_from(names["AWS::IAM::Role"]))
        resources[policy]["Properties"]["Roles"].append({"Ref": role})
    elif kind == "membership":
        user = draw(st.sampled_from(names["AWS::IAM::User"]))
        group = draw(st.sampled_from(names["AWS::IAM::Group"]))
        resources[user]["Properties"]["Groups"].append({"Ref": group})
    else:
        role = draw(st.sampled_from(names["AWS::IAM::Role"]))
        trust = resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        trust["Principal"] = {**trust["Principal"], "AWS": draw(st.sampled_from(
            ["*", "arn:aws:iam::444455556666:root", "444455556666"]))}
    return base, head, kind


def can_do(template: dict, principal: str) -> set[str]:
    """The oracle: the actions of ACTIONS the union of a principal's documents allows."""
    resources = template["Resources"]
    own = resources[principal]["Properties"]
    documents = [p["PolicyDocument"] for p in own.get("Policies", [])]
    documents += [document_for_arn(arn) for arn in own.get("ManagedPolicyArns", [])]
    for group in own.get("Groups", []):
        documents += [p["PolicyDocument"]
                      for p in resources[group["Ref"]]["Properties"]["Policies"]]
    for resource in resources.values():
        if resource["Type"] == "AWS::IAM::ManagedPolicy" and any(
                ref == {"Ref": principal} for key in ("Roles", "Users")
                for ref in resource["Properties"].get(key, [])):
            documents.append(resource["Properties"]["PolicyDocument"])
    return {action for d in documents for s in d["Statement"] for action in allowed_by(s, ACTIONS)}


def principals(template: dict) -> list[str]:
    return [n for n, r in template["Resources"].items()
            if r["Type"] in ("AWS::IAM::Role", "AWS::IAM::User")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes())
def test_a_head_that_grants_a_principal_more_is_never_accepted(change):
    base, head, kind = change
    widened = kind == "trust" or any(can_do(head, p) - can_do(base, p) for p in principals(base))
    comparison = compare_templates(template_from_text("t.json", json.dumps(base)),
                                   template_from_text("t.json", json.dumps(head)))
    code = comparison.exit_code()
    if widened:
        assert code != 0, (kind, [v.violation.describe() for v in comparison.verdicts])
    if kind == "trust":  # a principal added to a trust policy: a proven widening, by request
        assert code == 1, [v.violation.describe() for v in comparison.verdicts]


@st.composite
def terraform_changes(draw) -> tuple[str, str, str, dict, dict]:
    """(BASE .tf, HEAD .tf, what HEAD adds, BASE model, HEAD model): roles with inline
    policies and attached AWS managed policies, users in groups with group policies; HEAD
    adds one attachment, membership or trust principal. The model is what the oracle reads."""
    some = st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True)
    model = {"roles": {f"r{n}": {"inline": draw(some), "arns": draw(
                 st.lists(st.sampled_from(MANAGED), max_size=1)), "trust": ""}
                       for n in range(draw(st.integers(1, 3)))},
             "groups": {f"g{n}": draw(some) for n in range(draw(st.integers(1, 2)))},
             "users": {}}
    model["users"] = {f"u{n}": draw(st.lists(st.sampled_from(sorted(model["groups"])),
                                             unique=True, max_size=1))
                      for n in range(draw(st.integers(1, 2)))}
    head = copy.deepcopy(model)
    kind = draw(st.sampled_from(["attachment", "membership", "trust"]))
    if kind == "attachment":
        head["roles"][draw(st.sampled_from(sorted(head["roles"])))]["arns"].append(
            draw(st.sampled_from(MANAGED)))
    elif kind == "membership":
        head["users"][draw(st.sampled_from(sorted(head["users"])))].append(
            draw(st.sampled_from(sorted(head["groups"]))))
    else:
        head["roles"][draw(st.sampled_from(sorted(head["roles"])))]["trust"] = draw(
            st.sampled_from(['"*"', '"444455556666"']))
    return terraform(model), terraform(head), kind, model, head


def terraform(model: dict) -> str:
    def doc(patterns):
        return "jsonencode({ Version = \"2012-10-17\", Statement = [{ Effect = \"Allow\", " \
            f"Action = {json.dumps(patterns)}, Resource = \"*\" }}] }})"

    text = []
    for name, role in model["roles"].items():
        principal = f", Principal = {{ AWS = {role['trust']} }}" if role["trust"] else ""
        text.append(f'resource "aws_iam_role" "{name}" {{\n  name = "{name}"\n'
                    f'  assume_role_policy = jsonencode({{ Version = "2012-10-17", Statement = '
                    f'[{{ Effect = "Allow", Action = "sts:AssumeRole"{principal} }}] }})\n}}\n')
        text.append(f'resource "aws_iam_role_policy" "{name}" {{\n  role = aws_iam_role.{name}.id\n'
                    f'  policy = {doc(role["inline"])}\n}}\n')
        for number, arn in enumerate(role["arns"]):
            text.append(f'resource "aws_iam_role_policy_attachment" "{name}_{number}" {{\n'
                        f'  role = aws_iam_role.{name}.name\n  policy_arn = "{arn}"\n}}\n')
    for name, patterns in model["groups"].items():
        text.append(f'resource "aws_iam_group" "{name}" {{\n  name = "{name}"\n}}\n')
        text.append(f'resource "aws_iam_group_policy" "{name}" {{\n'
                    f'  group = aws_iam_group.{name}.name\n  policy = {doc(patterns)}\n}}\n')
    for name, groups in model["users"].items():
        text.append(f'resource "aws_iam_user" "{name}" {{\n  name = "{name}"\n}}\n')
        if groups:
            listed = ", ".join(f"aws_iam_group.{g}.name" for g in groups)
            text.append(f'resource "aws_iam_user_group_membership" "{name}" {{\n'
                        f'  user = aws_iam_user.{name}.name\n  groups = [{listed}]\n}}\n')
    return "\n".join(text)


def terraform_can_do(model: dict) -> dict[str, set[str]]:
    def allowed(patterns):
        return allowed_by({"Effect": "Allow", "Action": patterns}, ACTIONS)

    found = {}
    for name, role in model["roles"].items():
        found[name] = allowed(role["inline"]) | {
            a for arn in role["arns"] for s in document_for_arn(arn)["Statement"]
            for a in allowed_by(s, ACTIONS)}
    for name, groups in model["users"].items():
        found[name] = {a for g in groups for a in allowed(model["groups"][g])}
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terraform_changes())
def test_terraform_a_head_that_grants_a_principal_more_is_never_accepted(change):
    base_text, head_text, kind, base, head = change
    before, after = terraform_can_do(base), terraform_can_do(head)
    widened = kind == "trust" or any(after[p] - before[p] for p in before)
    comparison = compare_templates(template_from_text("main.tf", base_text),
                                   template_from_text("main.tf", head_text))
    if widened:
        assert comparison.exit_code() != 0, (kind, [v.violation.describe()
                                                   for v in comparison.verdicts])
