"""Refinement semantics on the embedded catalog: the shapes the issue names, checked with the
brute-force oracle (tests/oracle.py) rather than with the refiner's own matcher."""

from __future__ import annotations

from oracle import allowed_by, entries, matches

from refiner.finding import parse_finding
from refiner.pipeline import refine_and_prove
from refiner.policy import load_policy


def refine(catalog, statements, finding):
    document = {"Version": "2012-10-17", "Statement": statements}
    unused = parse_finding(finding, catalog)
    run = refine_and_prove(load_policy(document), unused, catalog, 20_000)
    assert run.violations == []
    return unused, run.refinement


def exact_on_catalog(catalog, unused, original, refined):
    actions = catalog.all_actions()
    used = {a for a in actions if not unused.is_unused(a)}
    assert allowed_by(refined, actions) == allowed_by(original, actions) & used


def test_wildcards_in_the_service_part(catalog):
    statement = {"Effect": "Allow", "Action": ["*:Describe*", "s3*:Get*"], "Resource": "*"}
    finding = [{"serviceNamespace": "ec2", "actions": ["DescribeInstances"]},
               {"serviceNamespace": "s3", "actions": ["GetObject"]},
               {"serviceNamespace": "rds", "actions": []}]
    unused, refinement = refine(catalog, [statement], finding)
    (refined,) = refinement.document["Statement"]
    exact_on_catalog(catalog, unused, statement, refined)
    assert not any(p.lower().startswith("rds:") for p in refined["Action"])
    assert "s3*:Get*" not in refined["Action"] and "*:Describe*" not in refined["Action"]
    # every new pattern stays inside one of the originals, beyond the catalog too
    for pattern in refined["Action"]:
        probe = pattern.replace("*", "Zz")
        assert matches("*:Describe*", probe) or matches("s3*:Get*", probe)


def test_question_mark_never_widens(catalog):
    statement = {"Effect": "Allow", "Action": "s3:GetObject?cl", "Resource": "*"}
    unused, refinement = refine(catalog, [statement], [
        {"serviceNamespace": "s3", "actions": ["GetObjectTagging"]}])
    assert refinement.document["Statement"] == [statement]  # matches nothing unused: kept
    statement = {"Effect": "Allow", "Action": "s3:GetObject????*", "Resource": "*"}
    unused, refinement = refine(catalog, [statement], [
        {"serviceNamespace": "s3", "actions": ["GetObjectTagging"]}])
    (refined,) = refinement.document["Statement"]
    exact_on_catalog(catalog, unused, statement, refined)
    assert "s3:GetObjectAcl" not in refined["Action"]  # three letters: outside the original
    for pattern in refined["Action"]:
        for filling in ("", "Z", "Zz#"):
            assert matches(statement["Action"], pattern.replace("*", filling)), pattern


def test_not_action_gets_the_unused_actions(catalog):
    statement = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
    unused, refinement = refine(catalog, [statement], [
        {"serviceNamespace": "s3", "actions": ["DeleteBucket"]},
        {"serviceNamespace": "iam", "actions": ["CreateUser"]},
        {"serviceNamespace": "ec2", "actions": []}])
    (refined,) = refinement.document["Statement"]
    assert refined["NotAction"] == ["iam:*", "ec2:*", "s3:DeleteBucket"]
    exact_on_catalog(catalog, unused, statement, refined)


def test_deny_untouched_statement_removed_single_string_kept(catalog):
    statements = [
        {"Sid": "Gone", "Effect": "Allow", "Action": "s3:DeleteBucket", "Resource": "*"},
        {"Sid": "Deny", "Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"},
        {"Sid": "One", "Effect": "Allow", "Action": "s3:PutObject*", "Resource": "*"},
    ]
    _, refinement = refine(catalog, statements, [
        {"serviceNamespace": "s3", "actions": ["DeleteBucket", "PutObjectAcl"]}])
    gone, deny, one = refinement.pairs
    assert gone[1] is None and deny[1] is statements[1]
    assert [s["Sid"] for s in refinement.document["Statement"]] == ["Deny", "One"]
    values = entries(one[1]["Action"])
    assert "s3:PutObjectAcl" not in values and "s3:PutObject" in values


def test_used_action_below_an_unused_one_is_listed_by_name(catalog):
    statement = {"Effect": "Allow", "Action": "s3:GetObject*", "Resource": "*"}
    unused, refinement = refine(catalog, [statement], [
        {"serviceNamespace": "s3", "actions": ["GetObjectAcl"]}])
    (refined,) = refinement.document["Statement"]
    assert "s3:GetObject" in refined["Action"] and "s3:GetObjectAcl" not in refined["Action"]
    exact_on_catalog(catalog, unused, statement, refined)
