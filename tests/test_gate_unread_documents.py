"""A document a principal gains whose statements are not all under its Statement key (a
PolicyDocument that is an Fn::If or an Fn::Sub of JSON text, a data source merging source or
override documents, or with a dynamic statement block refiner does not expand) is unknown:
the gate read only its Statement and accepted what the rest grants (an attacker's breaks,
each accepted before)."""

from __future__ import annotations

import pytest
from iac_support import gate_templates as gate

CFN_BASE = """Conditions:
  Always: !Equals [a, a]
Resources:
  AppRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: logs
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Effect: Allow
                Action: s3:GetObject
                Resource: "arn:aws:s3:::logs/*"
"""

CFN_IF_DOCUMENT = """  Extra:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      Roles: [!Ref AppRole]
      PolicyDocument: !If
        - Always
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: "*"
              Resource: "*"
        - !Ref AWS::NoValue
"""

TF_ROLES = """variable "extra" {
  type = list(string)
}
""" + "".join(f"""
resource "aws_iam_role" "{name}" {{
  name = "{name}"
  assume_role_policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [{{ Effect = "Allow", Action = "sts:AssumeRole",
                   Principal = {{ Service = "lambda.amazonaws.com" }} }}]
  }})
}}
""" for name in ("app", "other"))

# A data source that `other` holds; HEAD attaches it to `app` as well.
TF_SHARED = """
data "aws_iam_policy_document" "shared" {
  MORE
  statement {
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::logs/*"]
  }
}

resource "aws_iam_policy" "shared" {
  name   = "shared"
  policy = data.aws_iam_policy_document.shared.json
}

resource "aws_iam_role_policy_attachment" "other" {
  role       = aws_iam_role.other.name
  policy_arn = aws_iam_policy.shared.arn
}

resource "aws_iam_role_policy" "logs" {
  name   = "logs"
  role   = aws_iam_role.app.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "s3:GetObject", Resource = "arn:aws:s3:::logs/*" }]
  })
}
"""

TF_ATTACH = """
resource "aws_iam_role_policy_attachment" "app" {
  role       = aws_iam_role.app.name
  policy_arn = aws_iam_policy.shared.arn
}
"""

GRANTS_MORE = {
    "source": 'source_policy_documents = [jsonencode({ Version = "2012-10-17", Statement = '
              '[{ Effect = "Allow", Action = "*", Resource = "*" }] })]',
    "override": 'override_policy_documents = [jsonencode({ Version = "2012-10-17", Statement '
                '= [{ Effect = "Allow", Action = "*", Resource = "*" }] })]',
    "dynamic": 'dynamic "statement" {\n    for_each = var.extra\n    content {\n'
               '      actions   = [statement.value]\n      resources = ["*"]\n    }\n  }',
}




CFN_SUB_DOCUMENT = """  Extra:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      Roles: [!Ref AppRole]
      PolicyDocument: !Sub '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "*", "Resource": "arn:${AWS::Partition}:s3:::*"}]}'
"""


@pytest.mark.parametrize("extra, function", [(CFN_IF_DOCUMENT, "Fn::If"),
                                             (CFN_SUB_DOCUMENT, "Fn::Sub")])
def test_a_policy_document_that_is_a_function_is_unknown(extra, function):
    """AppRole gains Extra, whose PolicyDocument is an Fn::If of an Allow on everything, or
    an Fn::Sub of one's JSON text: it has no Statement key, and was taken to grant nothing."""
    code, found = gate(CFN_BASE, CFN_BASE + extra, "t.yaml")
    assert code != 0 and any(v.kind == "unknown" and function in v.message
                             for v in found), found


@pytest.mark.parametrize("more", sorted(GRANTS_MORE))
def test_a_data_source_with_statements_not_read_is_unknown_to_whoever_gains_it(more):
    """app now holds the data source, whose statements merged from source or override
    documents, or made by a dynamic block for each of var.extra, allow anything."""
    base = TF_ROLES + TF_SHARED.replace("MORE", GRANTS_MORE[more])
    code, found = gate(base, base + TF_ATTACH, "main.tf")
    assert code != 0 and any(v.kind == "unknown" and "not read" in v.message
                             for v in found), found


def test_a_data_source_not_read_held_as_it_was_is_no_gain():
    """Without the attachment, nothing changed for anyone: accepted (a document the gate
    cannot read, held as it was, is not a gain)."""
    base = TF_ROLES + TF_SHARED.replace("MORE", GRANTS_MORE["source"])
    code, found = gate(base, base.replace('"arn:aws:s3:::logs/*" }]', '"arn:aws:s3:::logs/a" }]'),
                       "main.tf")
    assert code == 0, found
