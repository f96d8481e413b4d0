"""Verdicts name what they are about: every lost used action and every admitted unused action
of a statement, in the catalog's spelling, witnesses that are real actions, and policy-level
verdicts without a statement number (text, JSON and SARIF)."""

from __future__ import annotations

import copy
import json

from conftest import EXAMPLES
from oracle import allowed_by, matches

from refiner.cli import main

POLICY = EXAMPLES / "policy.json"
FINDING = str(EXAMPLES / "finding.json")
ORIGINAL = json.loads(POLICY.read_text())
# AWS's published answer for the worked example (October 2024).
AWS_ANSWER_GET = ["s3:GetAccess*", "s3:GetAccountPublicAccessBlock", "s3:GetDataAccess",
                  "s3:GetJobTagging", "s3:GetMulti*", "s3:GetObject*", "s3:GetStorage*"]


def verify(tmp_path, capsys, document, original=POLICY, finding=FINDING, fmt="json"):
    path = tmp_path / f"candidate-{fmt}.json"
    path.write_text(json.dumps(document, indent=2))
    code = main(["verify", str(original), str(path), "--unused", finding, "--format", fmt])
    out = capsys.readouterr().out
    return code, (json.loads(out) if fmt in ("json", "sarif") else out)


def aws_answer():
    document = copy.deepcopy(ORIGINAL)
    document["Statement"][0]["Action"] = ["lambda:Invoke*"]
    document["Statement"][1]["Action"] = AWS_ANSWER_GET + ["s3:List*"]
    return document


def used_catalog_actions(catalog):
    finding = json.loads((EXAMPLES / "finding.json").read_text())
    unused = {f"{d['unusedPermissionDetails']['serviceNamespace']}:{a['action']}".lower()
              for d in finding["findingDetails"]
              for a in d["unusedPermissionDetails"].get("actions", [])}
    return [a for a in catalog.all_actions() if a.lower() not in unused]


def test_aws_published_answer_names_every_lost_action(tmp_path, capsys, catalog):
    code, report = verify(tmp_path, capsys, aws_answer())
    assert code == 1
    [verdict] = report["verdicts"]
    # The oracle (regular expressions, no refiner code): used actions s3:Get* allowed that
    # AWS's entries do not.
    expected = sorted((a for a in used_catalog_actions(catalog)
                       if matches("s3:Get*", a) and not any(matches(p, a) for p in AWS_ANSWER_GET)),
                      key=str.lower)
    assert {"s3:GetBucketAbac", "s3:GetBucketMetadataTableConfiguration"} <= set(expected)
    assert verdict["verdict"] == "incomplete" and verdict["statement"] == 1
    assert verdict["actions"] == expected
    assert verdict["witness"] in expected  # a catalog action, in the catalog's spelling
    code, text = verify(tmp_path, capsys, aws_answer(), fmt="text")
    assert "s3:GetBucketAbac" in text and "s3:GetBucketMetadataTableConfiguration" in text
    code, sarif = verify(tmp_path, capsys, aws_answer(), fmt="sarif")
    [result] = sarif["runs"][0]["results"]
    assert result["properties"]["actions"] == expected
    assert all(action in result["message"]["text"] for action in expected)


def test_a_wider_wildcard_has_a_catalog_witness_and_its_full_set(tmp_path, capsys, catalog):
    original = tmp_path / "ec2.json"
    statement = {"Sid": "Ec2", "Effect": "Allow", "Action": ["ec2:Describe*"], "Resource": "*"}
    original.write_text(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    finding = tmp_path / "finding.json"
    finding.write_text(json.dumps([{"serviceNamespace": "ec2", "actions": ["DescribeVolumes"]}]))
    wider = {"Version": "2012-10-17", "Statement": [{**statement, "Action": ["ec2:*"]}]}
    code, report = verify(tmp_path, capsys, wider, original, str(finding))
    assert code == 1
    new = next(v for v in report["verdicts"] if "original does not" in v["message"])
    expected = sorted(allowed_by(wider["Statement"][0], catalog.all_actions())
                      - allowed_by(statement, catalog.all_actions()), key=str.lower)
    assert new["actions"] == expected and new["witness"] in expected
    assert new["witness"] != "ec2:" and catalog.canonical(new["witness"]) == new["witness"]
    unused = next(v for v in report["verdicts"] if v["message"].endswith("an unused action"))
    assert unused["actions"] == ["ec2:DescribeVolumes"] == [unused["witness"]]


def test_not_action_verdicts_name_their_sets(tmp_path, capsys, catalog):
    original = tmp_path / "not-action.json"
    statement = {"Effect": "Allow", "NotAction": ["iam:*", "s3:Delete*"], "Resource": "*"}
    original.write_text(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    finding = tmp_path / "finding.json"
    finding.write_text(json.dumps([{"serviceNamespace": "sqs", "actions": ["SendMessage",
                                                                           "DeleteQueue"]}]))
    # Drops the s3:Delete* exclusion and excludes only one of the two unused actions.
    refined = {"Version": "2012-10-17",
               "Statement": [{**statement, "NotAction": ["iam:*", "sqs:SendMessage"]}]}
    code, report = verify(tmp_path, capsys, refined, original, str(finding))
    assert code == 1
    lost = next(v for v in report["verdicts"] if "no longer excludes" in v["message"])
    assert lost["actions"] == sorted((a for a in catalog.all_actions() if matches("s3:Delete*", a)),
                                     key=str.lower)
    missed = next(v for v in report["verdicts"] if "does not exclude an unused" in v["message"])
    assert missed["actions"] == ["sqs:DeleteQueue"] == [missed["witness"]]


def test_policy_level_verdicts_have_no_statement_number(tmp_path, capsys):
    document = {**aws_answer(), "Version": "2008-10-17"}
    code, report = verify(tmp_path, capsys, document)
    policy_level = [v for v in report["verdicts"] if v["message"] == "the policy changes Version"]
    assert code == 1 and [v["statement"] for v in policy_level] == [None]
    code, text = verify(tmp_path, capsys, document, fmt="text")
    assert "statement -1" not in text and "structure: the policy changes Version" in text


def test_an_unknown_verdict_names_no_action(catalog):
    from refiner.finding import parse_finding
    from refiner.naming import Namer
    from refiner.prove import Violation

    statement = {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "*"}
    narrowed = {**statement, "Action": ["s3:GetObject"]}
    unused = parse_finding([{"serviceNamespace": "s3", "actions": ["GetBucketAcl"]}], catalog)
    undecided = Violation("unknown", 0, None, "loses a used action that s3:Get* allowed? "
                          "solver gave no answer (timeout)", None, "s3:Get*", "loses-used")
    lost = Violation("incomplete", 0, None, "loses a used action that s3:Get* allowed",
                     "s3:getbucketpolicy", "s3:Get*", "loses-used")
    named = Namer(catalog, unused).name_all([undecided, lost], [(0, statement, narrowed)])
    assert named[0] == undecided
    assert "s3:GetBucketPolicy" in named[1].actions and named[1].witness == "s3:GetBucketPolicy"
    assert "s3:GetObject" not in named[1].actions and "s3:GetBucketAcl" not in named[1].actions
