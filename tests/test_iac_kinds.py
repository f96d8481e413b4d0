"""What each document in a template is (identity, trust, resource, SAM), read from real public
templates and from written equivalents; refine leaves what an identity finding does not
cover as it is; what readers do not model is named, never a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from iac_support import FIXTURES, finding

from refiner.cli import main
from refiner.iac import read_template, template_from_bytes
from refiner.iac.cloudformation import _yaml11_int

PUBLIC = FIXTURES / "public"
SAM_TEMPLATES = PUBLIC / "sam-function-with-policy-templates.yaml"
REPLICATION = PUBLIC / "s3-replication-destination.yaml"


def kinds(path) -> dict[str, str]:
    return {p.id: p.document_type for p in read_template(str(path)).policies}


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def verify(capsys, base, head) -> tuple[int, str]:
    code = main(["verify", str(base), str(head)])
    return code, capsys.readouterr().out


# --- what each document is ------------------------------------------------------------------

def test_sam_policy_templates_expand_as_the_translator_expands_them():
    template = read_template(str(SAM_TEMPLATES))
    expected = json.loads((PUBLIC / "sam-function-with-policy-templates.expected.json")
                          .read_text())["Resources"]
    by_id = {p.id: p for p in template.policies}
    # Each SAM Policies entry is the translator's inline policy of the function's role,
    # or an attachment of a managed policy (resolved from the snapshot).
    for function in ("OnePolicyTemplate", "MultiplePolicyTemplates", "AllCombinations"):
        role = expected[f"{function}Role"]["Properties"]
        inline = [entry["PolicyDocument"] for entry in role["Policies"]]
        ours = [p for p in template.policies if p.principal_hint == function]
        assert [p.document for p in ours if p.managed_arn is None] == inline
        assert all(p.document_type == "identity" for p in ours)
        managed = [p.managed_arn.rsplit("/", 1)[1] for p in ours if p.managed_arn]
        assert set(managed) <= {arn.rsplit("/", 1)[1] for arn in role["ManagedPolicyArns"]}
    invoke = by_id["AllCombinations.Policies[3]"]  # AWSLambdaRole, by name
    assert invoke.managed_arn == "arn:aws:iam::aws:policy/AWSLambdaRole"
    assert invoke.document["Statement"][0]["Action"] == ["lambda:InvokeFunction"]
    retired = by_id["AllCombinations.Policies[1]"]  # not in the snapshot: never guessed
    assert retired.document is None and "AmazonDynamoDBFullAccess is not in refiner's " \
        "snapshot" in retired.refusal
    assert by_id["OnePolicyTemplate.Policies[0]"].read_only.startswith(
        "the SAM policy template SQSPollerPolicy")
    assert "Parameters.FunctionNameParam" in by_id["AllCombinations.Policies[2]"].inputs


def test_an_unknown_policy_template_is_unknown(tmp_path):
    template = read_template(write(tmp_path / "t.yaml", """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - NoSuchPolicy: {X: 1}
        - S3ReadPolicy: {}
"""))
    first, second = template.policies
    assert (first.document_type, first.refusal) == (
        "unknown", "NoSuchPolicy is not a SAM policy template refiner knows")
    assert second.refusal == "S3ReadPolicy needs a value for BucketName"


def test_trust_and_resource_policies_of_a_public_template():
    assert kinds(REPLICATION) == {"KmsKey.KeyPolicy": "resource",
                                  "S3BucketDestinationPolicy": "resource"}
    policy = read_template(str(REPLICATION)).policy("S3BucketDestinationPolicy")
    assert policy.inputs == {"Parameters.AccountIdSource", "Resources.S3BucketDestination"}


def test_inline_policies_are_identified_by_their_name(tmp_path):
    template = read_template(write(tmp_path / "t.json", json.dumps({"Resources": {"R": {
        "Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Action":
                                                        "sts:AssumeRole", "Principal": {
                                                            "Service": "ec2.amazonaws.com"}}]},
            "Policies": [{"PolicyName": name, "PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}
                for name in ("read", "write")]}}}})))
    assert [(p.id, p.document_type, p.principal_hint) for p in template.policies] == [
        ("R.Policies[read]", "identity", "R"), ("R.Policies[write]", "identity", "R"),
        ("R.AssumeRolePolicyDocument", "trust", "R")]


TERRAFORM_KINDS = """\
data "aws_iam_policy_document" "bucket" {
  statement {
    actions   = ["s3:*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
  }
}

resource "aws_s3_bucket_policy" "trail" {
  bucket = "trail"
  policy = data.aws_iam_policy_document.bucket.json
}

resource "aws_iam_role" "app" {
  name               = "app"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole",
                   Principal = { Service = "lambda.amazonaws.com" } }]
  })

  inline_policy {
    name   = "logs"
    policy = jsonencode({
      Version   = "2012-10-17"
      Statement = [{ Effect = "Allow", Action = ["logs:*"], Resource = "*" }]
    })
  }
}

resource "aws_ssoadmin_permission_set_inline_policy" "analysts" {
  inline_policy      = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["athena:*"], Resource = "*" }]
  })
  instance_arn       = "arn:aws:sso:::instance/ssoins-1"
  permission_set_arn = aws_ssoadmin_permission_set.analysts.arn
}

resource "aws_sqs_queue" "jobs" {
  name   = "jobs"
  policy = <<EOF
{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
  "Action": "sqs:SendMessage", "Resource": "*"}]}
EOF
}
"""


def test_terraform_documents_know_what_they_are(tmp_path):
    template = read_template(write(tmp_path / "main.tf", TERRAFORM_KINDS))
    assert {p.id: (p.document_type, p.principal_hint) for p in template.policies} == {
        "data.aws_iam_policy_document.bucket": ("resource", None),
        "aws_s3_bucket_policy.trail": ("resource", None),
        "aws_iam_role.app.assume_role_policy": ("trust", "aws_iam_role.app"),
        "aws_iam_role.app.inline_policy[logs]": ("identity", "aws_iam_role.app"),
        "aws_ssoadmin_permission_set_inline_policy.analysts": (
            "identity", "aws_ssoadmin_permission_set.analysts"),
        "aws_sqs_queue.jobs.policy": ("resource", None)}


# --- refine: an identity finding is used on identity policies only ---------------------------

def test_refine_leaves_a_terraform_bucket_policy_untouched(tmp_path, capsys):
    path = write(tmp_path / "main.tf", TERRAFORM_KINDS)
    unused = finding(tmp_path, {"s3": ["GetObject"], "logs": ["DeleteLogGroup"],
                                "athena": ["DeleteWorkGroup"], "sqs": ["SendMessage"]})
    assert main(["refine", path, "--unused", unused, "--in-place"]) == 0
    err = capsys.readouterr().err
    after = Path(path).read_text()
    assert 'actions   = ["s3:*"]' in after  # the CloudTrail bucket policy, as it was
    assert '"sqs:SendMessage"' in after
    assert 'Action = ["logs:*"]' not in after and 'Action = ["athena:*"]' not in after
    for policy, kind in (("data.aws_iam_policy_document.bucket", "a resource policy"),
                         ("aws_iam_role.app.assume_role_policy", "a trust policy"),
                         ("aws_sqs_queue.jobs.policy", "a resource policy")):
        line, = [line for line in err.splitlines() if f": {policy}: " in line]
        assert f"left as it is: {kind}" in line
    assert main(["verify", str(tmp_path / "main.tf.bak"), path]) == 0


def test_a_template_of_resource_policies_only_has_nothing_to_refine(tmp_path, capsys):
    unused = finding(tmp_path, {"kms": ["Decrypt"]})
    assert main(["refine", str(REPLICATION), "--unused", unused]) == 2
    err = capsys.readouterr().err
    assert "no policy could be refined" in err and "KmsKey.KeyPolicy" in err


# --- the gate sees every kind ----------------------------------------------------------------

@pytest.mark.parametrize("needle,replacement", [
    ("identifiers = [\"cloudtrail.amazonaws.com\"]", "identifiers = [\"*\"]"),  # resource
    ("Action = \"sts:AssumeRole\",", "Action = \"sts:*\","),  # trust
    ("Service = \"lambda.amazonaws.com\"", "AWS = \"*\""),  # trust principal
    ("Action = [\"logs:*\"]", "Action = [\"*\"]"),  # inline_policy
    ("\"Action\": \"sqs:SendMessage\"", "\"Action\": \"sqs:*\""),  # queue policy
])
def test_a_widening_of_any_kind_is_never_accepted(tmp_path, capsys, needle, replacement):
    assert needle in TERRAFORM_KINDS
    base = write(tmp_path / "base.tf", TERRAFORM_KINDS)
    head = write(tmp_path / "head.tf", TERRAFORM_KINDS.replace(needle, replacement))
    code, _ = verify(capsys, base, head)
    assert code in (1, 3)


def test_a_sam_policy_template_widened_is_rejected(tmp_path, capsys):
    text = SAM_TEMPLATES.read_text()
    base = write(tmp_path / "base.yaml", text)
    head = write(tmp_path / "head.yaml", text.replace("LambdaInvokePolicy", "LambdaInvokePolicy",
                                                      1).replace("- SQSPollerPolicy:",
                                                                 "- SQSSendMessagePolicy:", 1))
    code, out = verify(capsys, base, head)
    assert code == 1 and "MultiplePolicyTemplates.Policies[0]" in out
    assert verify(capsys, base, base)[0] == 0


# --- robust reading --------------------------------------------------------------------------

def test_a_rain_module_is_named_not_a_crash(tmp_path, capsys):
    template = read_template(str(PUBLIC / "rain-module.json"))
    assert template.policies == []
    (line, why), = template.unknowns
    assert line == 11 and "Storage: its Type is {'Rain::Module': ...}" in why
    listed = write(tmp_path / "t.json", json.dumps({"Resources": {"X": {"Type": ["a"]}}}))
    assert read_template(listed).unknowns == [(1, "X: its Type is a list, not a resource type "
                                                  "refiner reads")]
    for path in (listed, str(PUBLIC / "rain-module.json")):
        assert main(["verify", path, path]) == 0
    capsys.readouterr()


def test_refiner_debug_changes_what_is_printed_not_the_exit_code(tmp_path, monkeypatch):
    policy = write(tmp_path / "p.json", json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    code = "\n".join([
        "import sys, refiner.iac",
        "def broken(*args, **kwargs): raise RuntimeError('a bug')",
        "refiner.iac.read_template = broken",
        "from refiner.cli import main",
        f"sys.exit(main(['verify', {policy!r}, {policy!r}]))"])
    for debug in ("", "1"):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={"REFINER_DEBUG": debug, "PATH": "/usr/bin:/bin"}, timeout=120)
        assert run.returncode == 3
        assert ("Traceback" in run.stderr) == bool(debug)


YAML_11 = """\
Resources:
  P:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: s3:ListBucket
            Resource: '*'
            Condition:
              Bool: {aws:SecureTransport: yes}
              NumericLessThanEquals: {s3:max-keys: 0777}
  Q:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: s3:ListBucket
            Resource: '*'
            Condition: {Bool: {aws:SecureTransport: y}}
  R:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument: >
        {"Statement": [{"Effect": "Allow",
          "Action": "s3:ListBucket", "Resource": "*"}]}
"""


def test_yaml_is_read_as_cloudformation_reads_it(tmp_path):
    template = read_template(write(tmp_path / "t.yaml", YAML_11))
    p, q, r = template.policies
    condition = p.document["Statement"][0]["Condition"]
    assert condition["Bool"]["aws:SecureTransport"] is True
    assert condition["NumericLessThanEquals"]["s3:max-keys"].text == "511"
    assert q.refusal_line == 21 and "'y' is a boolean to some YAML 1.1 readers" in q.refusal
    assert r.refusal is None and r.document["Statement"][0]["Action"] == "s3:ListBucket"
    assert "does not rewrite" in r.read_only  # judged by the gate; refine cannot write it


@pytest.mark.parametrize("text,value", [("0777", 511), ("0x1F", 31), ("1_000", 1000),
                                        ("1:20", 80), ("-0b101", -5), ("0", 0)])
def test_yaml_11_integers_read_as_pyyaml_reads_them(text, value):
    yaml = pytest.importorskip("yaml")
    assert _yaml11_int(text) == value == yaml.safe_load(f"v: {text}")["v"]


def test_a_statement_written_as_fn_if_is_named(tmp_path):
    template = read_template(write(tmp_path / "t.yaml", """\
Conditions:
  C: !Equals [a, b]
Resources:
  P:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Fn::If: [C, {Effect: Allow, Action: 's3:*', Resource: '*'}, !Ref AWS::NoValue]
"""))
    policy, = template.policies
    assert (policy.refusal, policy.refusal_line) == ("a statement is Fn::If (an intrinsic "
                                                     "function)", 9)
    assert policy.inputs == {"Conditions.C"}


def test_a_shared_yaml_anchor_is_named_not_an_internal_error(tmp_path, capsys):
    path = write(tmp_path / "t.yaml", """\
Resources:
  A: &shared
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - {Effect: Allow, Action: 'ec2:*', Resource: '*'}
  B: *shared
""")
    unused = finding(tmp_path, {"ec2": ["RunInstances"]})
    assert main(["refine", path, "--unused", unused]) == 2
    err = capsys.readouterr().err
    assert "the document is shared through the YAML alias *shared (anchored at line 2)" in err
    assert main(["verify", path, path]) == 0


def test_parameters_are_inputs_only_of_the_documents_that_read_them(tmp_path):
    template = read_template(write(tmp_path / "t.yaml", """\
Parameters:
  Bucket: {Type: String}
  Stage: {Type: String}
Conditions:
  Prod: !Equals [!Ref Stage, prod]
Resources:
  Reads:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - {Effect: Allow, Action: 's3:GetObject', Resource: !Sub 'arn:aws:s3:::${Bucket}/*'}
  Other:
    Type: AWS::IAM::ManagedPolicy
    Condition: Prod
    Properties:
      PolicyDocument:
        Statement:
          - {Effect: Allow, Action: 'sqs:*', Resource: '*'}
"""))
    reads, other = template.policies
    assert reads.inputs == {"Parameters.Bucket"}
    assert other.inputs == {"Resources.Other.Condition", "Conditions.Prod", "Parameters.Stage"}
    assert template.definitions["Conditions.Prod"] == '{"Fn::Equals":[{"Ref":"Stage"},"prod"]}'


def test_fn_foreach_and_properties_by_fn_if_are_unknowns(tmp_path):
    template = read_template(write(tmp_path / "t.yaml", """\
Transform: [AWS::LanguageExtensions, MyMacro]
Conditions:
  C: !Equals [a, b]
Resources:
  Fn::ForEach::Roles:
    - Name
    - [A, B]
    - Role${Name}: {Type: AWS::IAM::Role}
  R:
    Type: AWS::IAM::ManagedPolicy
    Properties: !If [C, {PolicyDocument: {}}, {PolicyDocument: {}}]
"""))
    assert [why.split(":")[0] for _, why in template.unknowns] == [
        "the Transform MyMacro is a macro", "Fn", "R"]
    assert template.policies == []


# --- Terraform: dynamic blocks, .tf.json comments ---------------------------------------------

def test_a_public_module_with_dynamic_blocks_names_them(tmp_path):
    template = read_template(str(PUBLIC / "terraform-aws-iam-read-only-policy.tf"))
    document = template.policy("data.aws_iam_policy_document.this")
    assert document.document_type == "identity"  # its json feeds an aws_iam_policy
    assert [line for line, _ in document.unknowns] == [23, 40, 57, 71]
    assert "var.allowed_services" in document.inputs
    assert "data.aws_iam_policy_document.this.count" in document.inputs


DYNAMIC = """\
locals {
  reads = [
    { sid = "Objects", actions = ["s3:GetObject"] },
    { sid = "Queues", actions = ["sqs:ReceiveMessage"] },
  ]
}

data "aws_iam_policy_document" "literal" {
  dynamic "statement" {
    for_each = local.reads
    iterator = read
    content {
      sid       = read.value.sid
      actions   = read.value["actions"]
      resources = ["*"]
    }
  }
}

data "aws_iam_policy_document" "variable" {
  statement {
    actions   = ["ec2:Describe*"]
    resources = ["*"]
  }
  dynamic "statement" {
    for_each = var.extra
    content {
      actions   = statement.value
      resources = ["*"]
    }
  }
}
"""


def test_dynamic_blocks_expand_from_a_literal_else_only_that_block_is_unknown(tmp_path):
    template = read_template(write(tmp_path / "main.tf", DYNAMIC))
    literal, variable = template.policies
    assert [(s["Sid"], s["Action"]) for s in literal.document["Statement"]] == [
        ("Objects", ["s3:GetObject"]), ("Queues", ["sqs:ReceiveMessage"])]
    assert literal.unknowns == [] and literal.read_only is not None
    assert variable.refusal is None and variable.unknowns[0][0] == 25
    assert variable.document["Statement"][0]["Action"] == ["ec2:Describe*"]
    assert variable.inputs == {"var.extra"}
    widened = write(tmp_path / "head.tf", DYNAMIC.replace('"sqs:ReceiveMessage"', '"sqs:*"'))
    assert main(["verify", str(tmp_path / "main.tf"), widened]) == 1


def test_tf_json_comments_are_ignored(tmp_path):
    document = {"data": {"aws_iam_policy_document": {"p": {
        "//": "read-only access for reports",
        "statement": [{"//": "the bucket", "actions": ["s3:GetObject"], "resources": ["*"]}]}}}}
    template = read_template(write(tmp_path / "main.tf.json", json.dumps(document)))
    policy, = template.policies
    assert policy.document == {"Version": "2012-10-17", "Statement": [
        {"Action": ["s3:GetObject"], "Resource": ["*"], "Effect": "Allow"}]}


# --- files that cannot be read ---------------------------------------------------------------

@pytest.mark.parametrize("name,data,line,why", [
    ("t.json", b'{"Resources": {"R": {"Type": "AWS::IAM::Role",}}}', 1, "not valid JSON"),
    ("t.json", b'{"Resources": {"R": {}, "R": {}}}', 1, "repeats the key 'R'"),
    ("t.yaml", b"Resources:\n  R:\n    Type: AWS::IAM::Role\n    X: \xff\n", 4, "not UTF-8"),
    ("main.tf", b'resource "aws_iam_policy" "p" {\n  policy = \n}\n', 2, "not HCL"),
])
def test_unreadable_infrastructure_is_unknown_with_its_location(name, data, line, why):
    template = template_from_bytes(name, data)
    assert template.kind == "unreadable" and template.policies == []
    (at, message), = template.unknowns
    assert at == line and why in message


def test_yaml_with_a_quoted_key_or_in_flow_style_is_a_template():
    quoted = b'"Resources":\n  P:\n    Type: AWS::IAM::ManagedPolicy\n    Properties:\n' \
        b'      PolicyDocument: {Statement: [{Effect: Allow, Action: "s3:*", Resource: "*"}]}\n'
    flow = b'{Resources: {P: {Type: AWS::IAM::ManagedPolicy, Properties: {PolicyDocument: ' \
        b'{Statement: [{Effect: Allow, Action: "s3:*", Resource: "*"}]}}}}}\n'
    for data in (quoted, flow):
        template = template_from_bytes("t.yaml", data)
        assert template.kind == "cloudformation-yaml" and [p.id for p in template.policies] \
            == ["P"]
    assert template_from_bytes("notes.json", b"{not json") is None  # nothing of IAM
