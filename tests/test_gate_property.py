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
    if kind == "trust":
        assert code == 3  # until the kernel reads whole statements
