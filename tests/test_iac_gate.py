"""`refiner verify BASE HEAD` without a finding: the "no new access" gate. HEAD may narrow access
but never widen it, statement by statement, over all strings; a new policy is a new grant.
With a finding, templates are verified policy by policy as refinements."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import EXAMPLES
from iac_support import FIXTURES, finding

from refiner.cli import main

SERVERLESS = (FIXTURES / "serverless.yaml").read_text()
DEPLOY = (FIXTURES / "deploy.json").read_text()
UNUSED = {"dynamodb": ["UpdateTable", "DeleteItem", "DescribeTable"],
          "sqs": ["DeleteQueue", "PurgeQueue"], "s3": ["GetBucketPolicy"]}


def edited(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def verify(capsys, base: str, head: str, *args) -> tuple[int, str]:
    code = main(["verify", base, head, *args])
    return code, capsys.readouterr().out


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture
def base(tmp_path) -> str:
    return write(tmp_path / "base.yaml", SERVERLESS)


def test_a_widened_wildcard_is_rejected_at_its_line(tmp_path, capsys, base):
    head_text = edited(SERVERLESS, "- dynamodb:Update*    # UpdateItem and friends",
                       "- dynamodb:*    # UpdateItem and friends")
    head = write(tmp_path / "head.yaml", head_text)
    code, out = verify(capsys, base, head, "--format", "sarif", "--sarif-root", str(tmp_path))
    assert code == 1
    results = json.loads(out)["runs"][0]["results"]
    assert len(results) == 1
    result, = results
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "head.yaml"
    assert location["region"]["startLine"] == line_of(head_text, "- dynamodb:*")
    assert result["ruleId"] == "unsound"
    assert "ApiFunctionRole.Policies[orders-api]" in result["message"]["text"]
    assert "dynamodb:* admits an action the original does not" in result["message"]["text"]


def test_an_added_action_is_rejected(tmp_path, capsys, base):
    head_text = edited(SERVERLESS, "                  - dynamodb:Query\n",
                       "                  - dynamodb:Query\n                  - dynamodb:Scan\n")
    head = write(tmp_path / "head.yaml", head_text)
    code, out = verify(capsys, base, head)
    assert code == 1
    assert f"{head}:{line_of(head_text, 'dynamodb:Scan')}: unsound: statement 0 (OrdersTable): " \
        "ApiFunctionRole.Policies[orders-api]: dynamodb:Scan admits an action the original does not" in out


NEW_POLICY = """\
        - PolicyName: worker-extra
          PolicyDocument:
            Version: '2012-10-17'
            Statement:
              - Effect: Allow
                Action: s3:ListAllMyBuckets
                Resource: '*'
"""


def test_a_new_policy_is_rejected_unless_allowed(tmp_path, capsys, base):
    head_text = edited(SERVERLESS, "        - PolicyName: worker-logs\n",
                       NEW_POLICY + "        - PolicyName: worker-logs\n")
    head = write(tmp_path / "head.yaml", head_text)
    code, out = verify(capsys, base, head, "--format", "json")
    assert code == 1
    verdicts = json.loads(out)["verdicts"]
    # Inline policies pair by PolicyName: only the new one is judged, as a grant to the role
    # that holds it (nothing it held admitted s3:ListAllMyBuckets).
    assert {v["policy"] for v in verdicts} == {"WorkerFunctionRole"}
    assert any(v["verdict"] == "unsound" and "WorkerFunctionRole gains inline worker-extra"
               in v["message"] and v["pattern"] == "s3:ListAllMyBuckets" for v in verdicts)
    # Appended at the end instead, the others keep their ids: only the new one is judged.
    head_text = edited(SERVERLESS, "  WorkerFunction:\n",
                       "  Extra:\n    Type: AWS::IAM::ManagedPolicy\n    Properties:\n"
                       "      PolicyDocument: {Statement: [{Effect: Allow, Action: 's3:*', "
                       "Resource: '*'}]}\n\n  WorkerFunction:\n")
    head = write(tmp_path / "head2.yaml", head_text)
    code, out = verify(capsys, base, head)
    assert code == 1
    assert f"{head}:{line_of(head_text, 'Extra:') + 3}: structure: Extra: a new " \
        "policy, a new grant" in out
    assert verify(capsys, base, head, "--allow-new-policies")[0] == 0


def test_a_narrowing_is_accepted(tmp_path, capsys, base):
    narrowed = edited(SERVERLESS, 'Action: "sqs:*"   # TODO: narrow',
                      "Action: [sqs:ReceiveMessage, sqs:DeleteMessage]   # narrowed")
    narrowed = edited(narrowed, """              - Sid: NoDeletes
                Effect: Deny
                Action: s3:DeleteObject""", """              - Sid: NoDeletes
                Effect: Deny
                Action: s3:Delete*""")  # a Deny that denies more
    narrowed = edited(narrowed, "          PolicyDocument:\n            Version: '2012-10-17'\n"
                      "            Statement:\n              - Effect: Allow\n"
                      "                Action:\n                  - logs:CreateLogStream\n",
                      "          PolicyDocument:\n            Version: '2012-10-17'\n"
                      "            Statement:\n              - Effect: Deny\n"
                      "                Action: logs:DeleteLogGroup\n"
                      "                Resource: '*'\n"
                      "              - Effect: Allow\n"
                      "                Action:\n                  - logs:CreateLogStream\n")
    head = write(tmp_path / "head.yaml", narrowed)
    code, out = verify(capsys, base, head)
    assert code == 0, out
    assert "refiner verify: accepted (" in out
    # refine's own output is a narrowing too.
    refined = tmp_path / "refined.yaml"
    unused = finding(tmp_path, UNUSED)
    assert main(["refine", base, "--unused", unused, "-o", str(refined)]) == 0
    capsys.readouterr()
    assert verify(capsys, base, str(refined))[0] == 0


# A Resource or Condition written as an expression (!GetAtt, !If) is a string the gate cannot
# read: a change that hinges on it is unknown (exit 3), never accepted.
@pytest.mark.parametrize("old,new,code,verdict", [
    ("Resource: !GetAtt OrdersQueue.Arn\n\n", "Resource: '*'\n\n", 3,
     "Resource entry {'Fn::GetAtt': ['OrdersQueue', 'Arn']} is not a string"),
    ("Resource: !GetAtt OrdersQueue.Arn\n\n", "Resource: 'arn:aws:sqs:*'\n\n", 3,
     "cannot tell whether it admits a request the original does not"),
    ("                Effect: Deny\n                Action: s3:DeleteObject",
     "                Effect: Deny\n                Action: s3:DeleteObjectVersion", 1,
     "the Deny statement no longer denies an action it denied"),
    ("              - Sid: NoDeletes\n                Effect: Deny",
     "              - Sid: NoDeletes\n                Effect: Allow", 3,
     "cannot tell whether it no longer denies a request the original denied"),
])
def test_what_else_widens_is_rejected(tmp_path, capsys, base, old, new, code, verdict):
    head = write(tmp_path / "head.yaml", edited(SERVERLESS, old, new))
    found, out = verify(capsys, base, head)
    assert found == code and verdict in out, out


def test_a_removed_deny_is_not_accepted(tmp_path, capsys, base):
    start = SERVERLESS.index("              - Sid: NoDeletes")
    end = SERVERLESS.index("  ReportFunction:\n")
    head = write(tmp_path / "head.yaml", SERVERLESS[:start] + "\n" + SERVERLESS[end:])
    code, out = verify(capsys, base, head)
    assert code == 3 and "no longer denies a request the original denied" in out


def test_plain_policies_are_gated_too(tmp_path, capsys):
    policy = (EXAMPLES / "policy.json").read_text()
    document = json.loads(policy)
    document["Statement"][0]["Action"] = ["lambda:*"]
    wider = write(tmp_path / "wider.json", json.dumps(document, indent=2))
    code, out = verify(capsys, str(EXAMPLES / "policy.json"), wider)
    assert code == 1 and out.startswith(f"{wider}:") and "lambda:* admits" in out
    assert verify(capsys, wider, str(EXAMPLES / "policy.json"))[0] == 0


def test_an_unresolvable_action_list_is_judged_only_when_unchanged(tmp_path, capsys):
    base = write(tmp_path / "base.json", DEPLOY)
    same = write(tmp_path / "same.json", edited(DEPLOY, '"Description": "Read the artifacts"',
                                                '"Description": "Read artifacts"'))
    assert verify(capsys, base, same)[0] == 0
    changed_text = edited(DEPLOY, '"s3:ListBucket",\n                    {"Fn::Join"',
                          '"s3:ListBucket", "s3:GetObject",\n                    {"Fn::Join"')
    changed = write(tmp_path / "changed.json", changed_text)
    code, out = verify(capsys, base, changed)
    assert code == 3
    assert f"{changed}:{line_of(changed_text, 'Fn::Join')}: unknown: " \
        "DeployUser.Policies[upload-artifacts] cannot be judged" in out


def test_with_a_finding_templates_are_verified_as_refinements(tmp_path, capsys, base):
    unused = finding(tmp_path, UNUSED)
    refined = tmp_path / "refined.yaml"
    assert main(["refine", base, "--unused", unused, "-o", str(refined)]) == 0
    capsys.readouterr()
    assert verify(capsys, base, str(refined), "--unused", unused)[0] == 0
    code, out = verify(capsys, base, base, "--unused", unused)  # unused actions still allowed
    assert code == 1 and "admits an unused action" in out


def test_sarif_paths_are_relative_to_the_repository_root(tmp_path, capsys, monkeypatch):
    repository = tmp_path / "repo"
    (repository / "infra" / "app").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repository)], check=True)
    base = write(repository / "infra" / "app" / "base.yaml", SERVERLESS)
    head = write(repository / "infra" / "app" / "template.yaml",
                 edited(SERVERLESS, "Action: sqs:SendMessage", "Action: sqs:Send*"))
    monkeypatch.chdir(repository / "infra")
    code, out = verify(capsys, base, head, "--format", "sarif")
    assert code == 1
    result, = json.loads(out)["runs"][0]["results"]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "infra/app/template.yaml"


# --- found by review: ways HEAD could grant more and still pass ---------------------------------

def _gate(tmp_path, capsys, base_text: str, head_text: str, suffix: str) -> tuple[int, str]:
    """verify BASE HEAD on two texts; the exit code and everything it printed."""
    base = write(tmp_path / f"base{suffix}", base_text)
    head = write(tmp_path / f"head{suffix}", head_text)
    code = main(["verify", base, head])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


NARROW_YAML = """Resources:
  P:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Action: s3:GetObject
            Resource: "*"
"""


def test_a_repeated_key_cannot_hide_a_wider_policy(tmp_path, capsys):
    wider = NARROW_YAML + """      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Action: "*"
            Resource: "*"
"""
    code, output = _gate(tmp_path, capsys, NARROW_YAML, wider, ".yaml")
    assert code == 2 and "'PolicyDocument' twice" in output


def test_a_merge_key_cannot_hide_a_policy(tmp_path, capsys):
    merged = """Wide: &wide
  PolicyDocument:
    Version: "2012-10-17"
    Statement:
      - {Effect: Allow, Action: "*", Resource: "*"}
Resources:
  P:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      <<: *wide
"""
    code, output = _gate(tmp_path, capsys, NARROW_YAML, merged, ".yaml")
    assert code == 2 and "merge key" in output


def test_an_expression_whose_inputs_changed_cannot_be_judged(tmp_path, capsys):
    base = """Conditions:
  Wide: !Equals [a, b]
Resources:
  P:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Action: !If [Wide, "*", "s3:GetObject"]
            Resource: "*"
"""
    code, output = _gate(tmp_path, capsys, base, base.replace("[a, b]", "[a, a]"), ".yaml")
    assert code == 3 and "what they read" in output
    code, _ = _gate(tmp_path, capsys, base, base, ".yaml")
    assert code == 0  # nothing it reads changed: taken at its word
    tf = """variable "acts" {
  default = ["s3:GetObject"]
}
data "aws_iam_policy_document" "d" {
  statement {
    actions   = var.acts
    resources = ["*"]
  }
}
"""
    code, output = _gate(tmp_path, capsys, tf, tf.replace('"s3:GetObject"', '"*"'), ".tf")
    assert code == 3 and "what they read" in output


def test_a_plan_whose_policy_is_known_only_at_apply_cannot_be_judged(tmp_path, capsys):
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
    resource = {"address": "aws_iam_policy.p", "mode": "managed", "type": "aws_iam_policy",
                "name": "p", "values": {"name": "p", "policy": policy}}
    base = {"format_version": "1.2", "terraform_version": "1.9.0",
            "planned_values": {"root_module": {"resources": [resource]}}}
    unknown = {**resource, "values": {"name": "p"}}  # Terraform leaves unknown values out
    head = {"format_version": "1.2", "terraform_version": "1.9.0",
            "planned_values": {"root_module": {"resources": [unknown]}},
            "prior_state": {"values": {"root_module": {"resources": [resource]}}},
            "resource_changes": [{"address": "aws_iam_policy.p",
                                  "change": {"after_unknown": {"policy": True}}}]}
    code, output = _gate(tmp_path, capsys, json.dumps(base), json.dumps(head), ".json")
    assert code == 3 and "not known until apply" in output


TRUSTED = """Resources:
  Deployer:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal:
              AWS: ["arn:aws:iam::111111111111:root", "arn:aws:iam::222222222222:root"]
            Action: sts:AssumeRole
  Logs:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: logs
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: cloudtrail.amazonaws.com}
            Action: s3:PutObject
            Resource: "arn:aws:s3:::logs/*"
"""


@pytest.mark.parametrize(("old", "new", "code", "verdict"), [
    # who may assume the role, judged by whole requests: a principal dropped only narrows
    (', "arn:aws:iam::222222222222:root"', "", 0, None),
    ('"arn:aws:iam::222222222222:root"', '"arn:aws:iam::333333333333:root"', 1, "333333333333"),
    ('"arn:aws:iam::222222222222:root"', '"*"', 1, '"principal":"*"'),
    # a resource policy: a narrower resource is accepted, another service admitted is not
    ('Resource: "arn:aws:s3:::logs/*"', 'Resource: "arn:aws:s3:::logs/trail/*"', 0, None),
    ("{Service: cloudtrail.amazonaws.com}", "{Service: [cloudtrail.amazonaws.com, "
     "config.amazonaws.com]}", 1, "config.amazonaws.com"),
])
def test_trust_and_resource_policies_are_judged_by_who_they_admit(tmp_path, capsys, old, new,
                                                                  code, verdict):
    got, out = verify(capsys, write(tmp_path / "base.yaml", TRUSTED),
                      write(tmp_path / "head.yaml", edited(TRUSTED, old, new)))
    assert got == code, out
    if verdict:
        assert "unsound" in out and verdict in out, out


def test_a_trust_statement_without_a_principal_is_unknown(tmp_path, capsys):
    """IAM refuses a trust statement that names nobody: read as "everyone", it would hide a
    widening, so the gate says it cannot judge it."""
    nameless = edited(TRUSTED, 'AWS: ["arn:aws:iam::111111111111:root", '
                      '"arn:aws:iam::222222222222:root"]', "{}").replace("Principal:\n", "Sid: x\n")
    got, out = verify(capsys, write(tmp_path / "base.yaml", nameless),
                      write(tmp_path / "head.yaml", TRUSTED))
    assert got == 3 and "without Principal" in out, out
