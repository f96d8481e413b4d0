"""Terraform: a module (.tf) with aws_iam_policy_document, jsonencode and a heredoc; .tf.json;
plans. Only the changed action lists are edited; expressions are never guessed at."""

from __future__ import annotations

import json
import re

from iac_support import FIXTURES, assert_only_action_lists_changed, finding

from refiner.catalog import load_default
from refiner.cli import main
from refiner.finding import read_findings
from refiner.iac import read_template, refine_template

MODULE = FIXTURES / "terraform" / "main.tf"
TF_JSON = FIXTURES / "reports.tf.json"
PLAN = FIXTURES / "plan.json"
MODULE_UNUSED = {"s3": ["GetObjectAcl", "GetBucketPolicy", "GetBucketAcl"],
                 "dynamodb": ["DeleteTable"], "sqs": ["PurgeQueue", "GetQueueUrl"],
                 "logs": ["DeleteLogGroup", "DeleteLogStream", "PutRetentionPolicy"]}


def refine(*args) -> int:
    return main(["refine", *map(str, args)])


def in_process(path, unused_file):
    catalog = load_default()
    return refine_template(read_template(str(path)), read_findings([unused_file], catalog, False),
                           catalog, 20_000)


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def test_module_policies_are_found_by_address():
    template = read_template(str(MODULE))
    assert template.kind == "terraform"
    assert [(p.id, p.document_type) for p in template.policies] == [
        ("data.aws_iam_policy_document.assume", "trust"),
        ("aws_iam_role.ingest.assume_role_policy", "trust"),
        ("data.aws_iam_policy_document.ingest", "identity"),
        ("aws_iam_policy.ingest", "identity"), ("aws_iam_role_policy.logs", "identity"),
        ("aws_iam_role_policy.jobs", "identity")]
    assert template.policy("aws_iam_role_policy.jobs").principal_hint == "aws_iam_role.ingest"
    assert template.policy("aws_iam_role_policy.jobs").inputs == {"aws_sqs_queue.jobs",
                                                                 "var.name"}
    reference = template.policy("aws_iam_policy.ingest")
    assert "data.aws_iam_policy_document.ingest.json" in reference.refusal
    ingest = template.policy("data.aws_iam_policy_document.ingest").document
    assert [s.get("Sid") for s in ingest["Statement"]] == ["ReadUploads", "RecordUploads",
                                                          "PurgeJobs", "Decrypt"]
    assert ingest["Statement"][0]["Effect"] == "Allow"  # the data source's default
    # An expression as the provider renders it (its value's `&{` is `${` once deployed).
    assert ingest["Statement"][0]["Resource"][0] == {
        "terraform": 'replace(aws_s3_bucket.uploads.arn, "&{", "${")'}
    assert ingest["Statement"][3]["Condition"] == [{"test": "StringEquals",
                                                   "variable": "kms:ViaService",
                                                   "values": ["s3.us-east-1.amazonaws.com"]}]


def test_module_refined_with_only_action_lists_changed(tmp_path, capsys):
    unused = finding(tmp_path, MODULE_UNUSED)
    before = MODULE.read_text()
    result = in_process(MODULE, unused)
    assert {o.policy.id: o.status for o in result.outcomes} == {
        "data.aws_iam_policy_document.assume": "left",  # the role's trust policy
        "aws_iam_role.ingest.assume_role_policy": "left",
        "data.aws_iam_policy_document.ingest": "refined",
        "aws_iam_policy.ingest": "refused",
        "aws_iam_role_policy.logs": "refined",
        "aws_iam_role_policy.jobs": "refined"}
    out = tmp_path / "main.tf"
    assert refine(MODULE, "--unused", unused, "-o", out) == 0
    err = capsys.readouterr().err
    assert f"{MODULE}:{line_of(before, 'policy = data.aws_iam_policy_document.ingest')}: " \
        "aws_iam_policy.ingest: not refined" in err
    after = out.read_text()
    assert after == result.text
    assert_only_action_lists_changed(before, after, result)
    # Comments stay, the PurgeJobs statement block is cut out, the heredoc keeps its template.
    assert [c for c in re.findall(r"(?:#|//).*", before)] == re.findall(r"(?:#|//).*", after)
    assert "PurgeJobs" not in after and "sqs:PurgeQueue" not in after
    assert '"Resource": "${aws_sqs_queue.jobs.arn}"' in after
    assert "dynamodb:DeleteTable" not in after and '"logs:*"' not in after
    again = read_template(str(out))
    assert [p.id for p in again.policies] == [p.id for p in read_template(str(MODULE)).policies]
    # Refining what was written changes nothing more.
    assert refine(out, "--unused", unused) == 0
    assert capsys.readouterr().out == after


def test_an_interpolation_in_actions_is_refused_by_its_line(tmp_path, capsys):
    text = MODULE.read_text().replace('"dynamodb:PutItem", ', '"dynamodb:${var.verb}", ')
    text = text.replace('Action = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]',
                        "Action = var.xray_actions")
    module = tmp_path / "main.tf"
    module.write_text(text)
    unused = finding(tmp_path, MODULE_UNUSED)
    assert refine(module, "--unused", unused, "-o", tmp_path / "out.tf") == 0
    err = capsys.readouterr().err
    assert f"{module}:{line_of(text, '${var.verb}')}: data.aws_iam_policy_document.ingest: not " \
        "refined: Action uses the Terraform expression" in err
    assert f"{module}:{line_of(text, 'var.xray_actions')}: aws_iam_role_policy.logs: not " \
        "refined: Action uses the Terraform expression `var.xray_actions`" in err
    assert refine(module, "--unused", unused, "--policy",
                  "data.aws_iam_policy_document.ingest") == 2
    assert "Action uses the Terraform expression" in capsys.readouterr().err


def test_tf_json_data_source_and_string_policy(tmp_path, capsys):
    unused = finding(tmp_path, {"athena": ["DeleteWorkGroup", "DeleteDataCatalog"],
                                "s3": ["DeleteObject", "PutBucketPolicy", "PutObjectAcl"]})
    before = TF_JSON.read_text()
    result = in_process(TF_JSON, unused)
    out = tmp_path / "out.tf.json"
    assert refine(TF_JSON, "--unused", unused, "-o", out) == 0
    assert "aws_iam_policy.reports: not refined: policy is a Terraform expression" in \
        capsys.readouterr().err
    after = out.read_text()
    assert after == result.text
    assert_only_action_lists_changed(before, after, result)
    value = json.loads(after)
    statements = value["data"]["aws_iam_policy_document"]["reports"]["statement"]
    assert [s["sid"] for s in statements] == ["Read", "Query"]
    uploader = json.loads(value["resource"]["aws_iam_user_policy"]["uploader"]["policy"])
    assert uploader["Statement"][0]["Resource"] == "arn:aws:s3:::$${aws:username}/*"
    assert "s3:PutObjectAcl" not in uploader["Statement"][0]["Action"]


def test_a_plan_is_read_for_verify_and_refused_for_refine(tmp_path, capsys):
    template = read_template(str(PLAN))
    assert [p.id for p in template.policies] == [
        "aws_iam_policy.ingest", "module.worker.aws_iam_role_policy.jobs",
        "data.aws_iam_policy_document.ingest"]
    unused = finding(tmp_path, {"s3": ["GetObject"]})
    assert refine(PLAN, "--unused", unused) == 2
    assert "a plan is generated" in capsys.readouterr().err
    head = tmp_path / "plan.json"
    head.write_text(PLAN.read_text().replace('sqs:GetQueueAttributes', 'sqs:Get*'))
    assert main(["verify", str(PLAN), str(head)]) == 1
    out = capsys.readouterr().out
    assert f"{head}:{line_of(head.read_text(), 'sqs:Get*')}: unsound" in out  # the policy's line
    assert "module.worker.aws_iam_role_policy.jobs: sqs:Get* admits an action" in out
    assert main(["verify", str(head), str(PLAN)]) == 0


AMPERSANDS_TF = """data "aws_iam_policy_document" "home" {
  statement {
    sid         = "Home"
    actions     = ["s3:GetObject"]
    resources   = ["arn:aws:s3:::home/&{aws:userid}/*", "$${aws:username}"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::111122223333:user/&{aws:username}"]
    }
    condition {
      test     = "StringLike"
      variable = "s3:prefix&{x}"
      values   = ["home/&{aws:userid}/"]
    }
  }
  statement {
    effect        = "Deny"
    not_actions   = ["s3:GetObject"]
    not_resources = ["arn:aws:s3:::home/&{aws:userid}"]
  }
}

resource "aws_iam_policy" "literal" {
  name   = "literal"
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "s3:GetObject",
                   Resource = "arn:aws:s3:::home/&{aws:userid}/*" }]
  })
}
"""


def test_data_source_renders_ampersand_as_a_policy_variable():
    """aws_iam_policy_document renders `&{` as `${` in resources, not_resources, principals'
    identifiers and conditions' values (the provider's rule), nowhere else; jsonencode does
    not: there `&{` is literal text."""
    from refiner.iac import template_from_text

    template = template_from_text("main.tf", AMPERSANDS_TF)
    first, second = template.policy("data.aws_iam_policy_document.home").document["Statement"]
    assert first["Resource"] == ["arn:aws:s3:::home/${aws:userid}/*", "${aws:username}"]
    assert first["Principal"] == [{"type": "AWS", "identifiers": [
        "arn:aws:iam::111122223333:user/${aws:username}"]}]
    assert first["Condition"] == [{"test": "StringLike", "variable": "s3:prefix&{x}",
                                   "values": ["home/${aws:userid}/"]}]
    assert second["NotResource"] == ["arn:aws:s3:::home/${aws:userid}"]
    literal = template.policy("aws_iam_policy.literal").document["Statement"][0]
    assert literal["Resource"] == "arn:aws:s3:::home/&{aws:userid}/*"


def test_tf_json_data_source_renders_ampersand_and_keeps_it_beside_a_template_sequence():
    """In .tf.json a string is a template: `&{` is rendered where it stands alone; beside a
    template sequence (`${local.x}`) the rendered text could not be told from an
    interpolation, so the string is an expression, compared by its source."""
    from refiner.iac import template_from_text

    def data_source(resource: str) -> str:
        return json.dumps({"data": {"aws_iam_policy_document": {"home": {"statement": [
            {"actions": ["s3:GetObject"], "resources": [resource]}]}}}}, indent=1)

    rendered = template_from_text("main.tf.json", data_source("arn:aws:s3:::home/&{aws:userid}"))
    policy = rendered.policy("data.aws_iam_policy_document.home")
    assert policy.refusal is None
    assert policy.document["Statement"][0]["Resource"] == ["arn:aws:s3:::home/${aws:userid}"]
    mixed = "arn:aws:s3:::${local.b}/&{aws:userid}"
    policy = template_from_text("main.tf.json", data_source(mixed)).policy(
        "data.aws_iam_policy_document.home")
    assert policy.document["Statement"][0]["Resource"] == [
        {"terraform": f'replace({mixed}, "&{{", "${{")'}]  # as the provider renders it
    assert policy.inputs == {"local.b"}


HEREDOC_TF = """resource "aws_iam_user_policy" "home" {
  name   = "home"
  user   = "alice"
  policy = <<EOT
{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Action": ["s3:GetObject", "s3:DeleteObject"],
    "Resource": "arn:aws:s3:::home/$${aws:username}/*"
  }]
}
EOT
}
"""


def test_heredoc_escape_is_read_as_the_policy_variable_and_written_back_escaped(tmp_path):
    """A heredoc is a template: its `$${aws:username}` is the policy variable
    `${aws:username}` of the document Terraform sends (read so, by the gate too); refine
    writes the escape back, not an interpolation Terraform would refuse."""
    from refiner.iac import template_from_text

    path = tmp_path / "main.tf"
    path.write_text(HEREDOC_TF)
    policy = read_template(str(path)).policy("aws_iam_user_policy.home")
    assert policy.document["Statement"][0]["Resource"] == "arn:aws:s3:::home/${aws:username}/*"
    assert "${aws:username}" in policy.document_text
    result = in_process(path, finding(tmp_path, {"s3": ["DeleteObject"]}))
    assert [o.status for o in result.outcomes] == ["refined"]
    assert result.text == HEREDOC_TF.replace('["s3:GetObject", "s3:DeleteObject"]',
                                             '["s3:GetObject"]')
    again = template_from_text("main.tf", result.text).policy("aws_iam_user_policy.home")
    assert again.document["Statement"][0]["Resource"] == "arn:aws:s3:::home/${aws:username}/*"
    # A heredoc that interpolates as well is not rendered: refused with its line.
    mixed = HEREDOC_TF.replace('"arn:aws:s3:::home/', '"arn:${var.partition}:s3:::home/')
    refused = template_from_text("main.tf", mixed).policy("aws_iam_user_policy.home")
    assert "interpolates and escapes" in refused.refusal and refused.refusal_line == 4
