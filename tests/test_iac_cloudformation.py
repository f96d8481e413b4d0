"""CloudFormation templates (YAML with short tags and comments, JSON with intrinsic functions and
JSON-string documents): every identity policy refined and written back, only the changed
Action lists edited, the written file read again and proven."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
from iac_support import FIXTURES, assert_only_action_lists_changed, finding

from refiner.catalog import load_default
from refiner.cli import main
from refiner.finding import read_findings
from refiner.iac import read_template, refine_template

SERVERLESS = FIXTURES / "serverless.yaml"
DEPLOY = FIXTURES / "deploy.json"
SERVERLESS_UNUSED = {
    "dynamodb": ["UpdateTable", "UpdateTimeToLive", "UpdateContinuousBackups", "DeleteItem",
                 "DescribeTable", "BatchWriteItem"],
    "sqs": ["DeleteQueue", "CreateQueue", "SetQueueAttributes", "PurgeQueue", "AddPermission",
            "RemovePermission", "TagQueue", "UntagQueue"],
    "s3": ["GetBucketPolicy", "GetBucketAcl", "GetObjectAcl"],
}
DEPLOY_UNUSED = {"s3": ["GetObjectAcl", "GetBucketPolicy", "PutObjectTagging"],
                 "sqs": ["PurgeQueue", "DeleteQueue"], "athena": ["DeleteWorkGroup"]}


def refine(*args) -> int:
    return main(["refine", *map(str, args)])


def in_process(path, unused_file):
    catalog = load_default()
    template = read_template(str(path))
    return refine_template(template, read_findings([unused_file], catalog, False), catalog,
                           20_000)


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def comments(text: str) -> list[str]:
    return [m.group() for line in text.splitlines()
            if (m := re.search(r"(?<=\s)#.*$", line)) is not None]


def test_serverless_template_keeps_everything_but_the_changed_action_lists(tmp_path, capsys):
    template = tmp_path / "template.yaml"
    template.write_bytes(SERVERLESS.read_bytes())
    os.chmod(template, 0o640)
    unused = finding(tmp_path, SERVERLESS_UNUSED)
    before = SERVERLESS.read_text()
    expected = in_process(template, unused)
    assert [o.status for o in expected.outcomes] == ["refined", "left", "refined", "unchanged",
                                                     "left", "refined", "left"]
    assert [o.policy.document_type for o in expected.outcomes if o.status == "left"] == \
        ["trust"] * 3  # the roles' trust policies: an identity finding says nothing of them
    assert refine(template, "--unused", unused, "--in-place") == 0
    assert "original is kept as" in capsys.readouterr().err
    after = template.read_text()
    assert after == expected.text != before
    assert (tmp_path / "template.yaml.bak").read_text() == before
    assert stat.S_IMODE(template.stat().st_mode) == 0o640
    assert_only_action_lists_changed(before, after, expected)
    assert comments(after) == comments(before)  # every comment, in order
    for tag in ("!Sub", "!GetAtt", "!Ref", "!If", "!Equals"):
        assert after.count(tag) == before.count(tag)
    # Read by another YAML library: the Action lists are the proven ones, all else as it was.
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader, suffix, node):
        if isinstance(node, yaml.SequenceNode):
            return {suffix: loader.construct_sequence(node, deep=True)}
        if isinstance(node, yaml.MappingNode):
            return {suffix: loader.construct_mapping(node, deep=True)}
        return {suffix: node.value}

    Loader.add_multi_constructor("!", tagged)
    old, new = yaml.load(before, Loader), yaml.load(after, Loader)
    for outcome in expected.outcomes:
        if outcome.status == "left":
            continue
        logical, _, name = outcome.policy.id.partition(".Policies[")
        documents = [next(entry for entry in tree["Resources"][logical]["Properties"]["Policies"]
                          if entry["PolicyName"] == name[:-1])["PolicyDocument"]
                     for tree in (old, new)]
        refined = outcome.run.refined.document if outcome.status == "refined" else None
        for index, statement in enumerate(documents[1]["Statement"]):
            key = "Action" if "Action" in statement else "NotAction"
            if refined is not None:
                written = refined["Statement"][index][key]
                assert statement[key] == written
        without = [[{k: v for k, v in s.items() if k not in ("Action", "NotAction")}
                    for s in d["Statement"]] for d in documents]
        assert all(s in without[0] for s in without[1])
    for tree in (old, new):
        for document in (r.get("Properties", {}).get("Policies")
                         for r in tree["Resources"].values()):
            for entry in document or []:
                entry.pop("PolicyDocument")
    assert old == new  # everything around the policy documents


def test_refining_the_written_template_again_changes_nothing(tmp_path, capsys):
    unused = finding(tmp_path, SERVERLESS_UNUSED)
    first = tmp_path / "first.yaml"
    assert refine(SERVERLESS, "--unused", unused, "-o", first) == 0
    capsys.readouterr()
    assert refine(first, "--unused", unused) == 0
    assert capsys.readouterr().out == first.read_text()
    assert refine(first, "--unused", unused, "--in-place") == 0
    assert "nothing to change" in capsys.readouterr().err
    assert not (tmp_path / "first.yaml.bak").exists()


def test_an_fn_join_in_an_action_list_is_refused_by_its_line(tmp_path, capsys):
    text = DEPLOY.read_text()
    join_line = line_of(text, "Fn::Join")
    unused = finding(tmp_path, DEPLOY_UNUSED)
    # Named alone, it is refused: one line with the file's line, exit 2, nothing written.
    assert refine(DEPLOY, "--unused", unused, "--policy", "DeployUser.Policies[upload-artifacts]") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    error, = captured.err.strip().splitlines()
    assert f"DeployUser.Policies[upload-artifacts] (line {join_line}): not refined: Action uses Fn::Join" \
        in error
    # With the others: they are refined and written, the refusal is a warning with file:line.
    out = tmp_path / "out.json"
    assert refine(DEPLOY, "--unused", unused, "-o", out) == 0
    warning = capsys.readouterr().err
    assert f"{DEPLOY}:{join_line}: DeployUser.Policies[upload-artifacts]: not refined: Action uses Fn::Join" \
        in warning
    written = out.read_text()
    result = in_process(DEPLOY, unused)
    assert written == result.text
    assert_only_action_lists_changed(text, written, result)
    assert json.loads(written)["Resources"]["DeployUser"] == json.loads(text)["Resources"][
        "DeployUser"]


def test_a_json_string_document_and_a_permission_set_are_refined(tmp_path, capsys):
    unused = finding(tmp_path, DEPLOY_UNUSED)
    out = tmp_path / "out.json"
    assert refine(DEPLOY, "--unused", unused, "-o", out) == 0
    capsys.readouterr()
    before, after = json.loads(DEPLOY.read_text()), json.loads(out.read_text())
    legacy = json.loads(after["Resources"]["LegacyPolicy"]["Properties"]["PolicyDocument"])
    assert isinstance(legacy["Statement"][0]["Action"], list)
    assert not any(a.lower() in ("sqs:*", "sqs:purgequeue")
                   for a in legacy["Statement"][0]["Action"])
    athena = after["Resources"]["AnalystPermissions"]["Properties"]["InlinePolicy"]
    assert "athena:*" not in athena["Statement"][0]["Action"]
    # The refinement is a narrowing: the gate accepts it, and rejects the way back.
    assert main(["verify", str(DEPLOY), str(out)]) == 0
    assert main(["verify", str(out), str(DEPLOY)]) == 1
    assert "LegacyPolicy" in capsys.readouterr().out
    assert {k: v for k, v in after.items() if k != "Resources"} == \
        {k: v for k, v in before.items() if k != "Resources"}


SHORT_FORMS = """\
Resources:
  Builder:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {}
      Policies:
        - PolicyName: build
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action:
                  - s3:GetObject
                  - !Join [':', [s3, !Ref Verb]]   # built from a parameter
                Resource: '*'
        - PolicyName: logs
          PolicyDocument:
            Statement:
              - {Effect: Allow, Action: 'logs:*', Resource: '*'}   # one line
  Shared:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: &common
              - sqs:SendMessage
            Resource: '*'
          - Effect: Allow
            Action: *common
            Resource: arn:aws:sqs:*:*:other
"""


def test_short_forms_aliases_and_flow_mappings(tmp_path, capsys):
    template = tmp_path / "t.yaml"
    template.write_text(SHORT_FORMS)
    unused = finding(tmp_path, {"logs": ["DeleteLogGroup"], "sqs": ["SendMessage"]})
    out = tmp_path / "out.yaml"
    assert refine(template, "--unused", unused, "-o", out) == 0
    err = capsys.readouterr().err
    assert f"{template}:{line_of(SHORT_FORMS, '!Join')}: Builder.Policies[build]: not refined: " \
        "Action uses Fn::Join" in err
    assert f"{template}:{line_of(SHORT_FORMS, '&common')}: Shared: not refined: Action is a " \
        "YAML anchor or alias" in err
    written = out.read_text()
    result = in_process(template, unused)
    assert written == result.text
    assert_only_action_lists_changed(SHORT_FORMS, written, result)
    line = written.splitlines()[line_of(SHORT_FORMS, "# one line") - 1]
    assert line.startswith("              - {Effect: Allow, Action: [") and \
        line.endswith("], Resource: '*'}   # one line")
    assert "'logs:*'" not in written


def test_a_policy_left_with_no_statement_is_named_and_kept(tmp_path, capsys):
    unused = finding(tmp_path, {**SERVERLESS_UNUSED,
                                "logs": ["CreateLogStream", "PutLogEvents"]})
    out = tmp_path / "out.yaml"
    assert refine(SERVERLESS, "--unused", unused, "-o", out) == 4
    err = capsys.readouterr().err
    assert "WorkerFunctionRole.Policies[worker-logs]: no statement is left: remove this policy" in err
    written = out.read_text()
    assert "logs:CreateLogStream" in written and "sqs:*" not in written


@pytest.mark.parametrize("args,needle", [
    (["--policy", "Nope"],
     "has no policy, role or user Nope (its policies: ApiFunctionRole.Policies[orders-api], "),
    (["--format", "aws"], "--format aws is for a policy file"),
])
def test_bad_usage_on_templates(tmp_path, capsys, args, needle):
    unused = finding(tmp_path, SERVERLESS_UNUSED)
    assert refine(SERVERLESS, "--unused", unused, *args) == 2
    assert needle in capsys.readouterr().err


def test_policy_option_needs_a_template(tmp_path, capsys):
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    unused = finding(tmp_path, {"s3": ["GetObject"]})
    assert refine(policy, "--unused", unused, "--policy", "X") == 2
    assert "--policy picks a policy of a template" in capsys.readouterr().err


def test_one_policy_refined_with_policy_option(tmp_path, capsys):
    unused = finding(tmp_path, SERVERLESS_UNUSED)
    assert refine(SERVERLESS, "--unused", unused, "--policy", "WorkerFunctionRole.Policies[worker]",
                  "--format", "diff") == 0
    diff = capsys.readouterr().out
    policies = read_template(str(SERVERLESS)).policies
    ids = [p.id for p in policies]
    first = policies[ids.index("WorkerFunctionRole.Policies[worker]")].line
    after = policies[ids.index("WorkerFunctionRole.Policies[worker]") + 1].line
    hunks = re.findall(r"^@@ -(\d+),(\d+) ", diff, re.MULTILINE)
    assert hunks and all(first - 3 <= int(a) and int(a) + int(b) <= after + 3 for a, b in hunks)


def test_the_byte_check_catches_an_edit_outside_the_action_lists(tmp_path):
    unused = finding(tmp_path, SERVERLESS_UNUSED)
    result = in_process(SERVERLESS, unused)
    before = SERVERLESS.read_text()
    assert_only_action_lists_changed(before, result.text, result)
    for stray in (result.text.replace("# the table and its indexes", "# the table"),
                  result.text.replace("Resource: !GetAtt OrdersQueue.Arn",
                                      "Resource: !GetAtt OrdersQueue.Arn ", 1)):
        with pytest.raises(AssertionError):
            assert_only_action_lists_changed(before, stray, result)
