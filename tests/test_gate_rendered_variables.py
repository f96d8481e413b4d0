"""The gate reads policy variables as the deployed document holds them: Terraform's
aws_iam_policy_document renders `&{...}` as `${...}` (jsonencode does not), a heredoc's or a
.tf.json string's `$${...}` is Terraform's escape of `${...}`, and CloudFormation's Fn::Sub
substitutes its own `${Name}` (`${!Name}` being a literal `${Name}`). A statement of a
document whose Version is not 2012-10-17 is compared with other documents' only when, so
rendered, it cannot hold `${` (IAM reads it as literal text there, as a variable in 2012-10-17)."""

from __future__ import annotations

import json

import pytest
from iac_support import gate_templates as gate

from refiner.iac import template_from_text

TF_ROLE = """resource "aws_iam_role" "app" {
  name = "app"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole",
                   Principal = { Service = "lambda.amazonaws.com" } }]
  })
}
"""

# A data source of the home directories, attached to the role as a managed policy.
TF_DATA_SOURCE = """
data "aws_iam_policy_document" "home" {
  VERSION
  statement {
    actions   = ["s3:PutObject"]
    resources = ["arn:aws:s3:::home/&{aws:userid}/*"]
  }
}

resource "aws_iam_policy" "home" {
  name   = "home"
  policy = data.aws_iam_policy_document.home.json
}

resource "aws_iam_role_policy_attachment" "home" {
  role       = aws_iam_role.app.name
  policy_arn = aws_iam_policy.home.arn
}
"""


def tf_inline(resource: str, version: str = 'Version = "2012-10-17"') -> str:
    """An inline policy of the role written with jsonencode (resource: HCL string source)."""
    return f"""
resource "aws_iam_role_policy" "legacy" {{
  name   = "legacy"
  role   = aws_iam_role.app.id
  policy = jsonencode({{
    {version}
    Statement = [{{ Effect = "Allow", Action = ["s3:PutObject"], Resource = [{resource}] }}]
  }})
}}
"""


def tf_data_source(version: str = "") -> str:
    return TF_DATA_SOURCE.replace("VERSION", version)




def test_jsonencode_ampersand_is_literal_where_the_data_source_renders_a_variable():
    """BASE: the data source (PutObject home/<caller's userid>/*). HEAD: the same text in
    jsonencode instead, where `&{aws:userid}` is literal: app may now PutObject
    arn:aws:s3:::home/&{aws:userid}/f, which BASE did not allow (its userid is never that)."""
    base = TF_ROLE + tf_data_source()
    head = TF_ROLE + tf_inline('"arn:aws:s3:::home/&{aws:userid}/*"')
    code, found = gate(base, head, "main.tf")
    assert code != 0, found


def test_data_source_ampersand_is_the_variable_jsonencode_escapes():
    """jsonencode's `$${aws:userid}` (HCL's escape) and the data source's `&{aws:userid}` are
    one policy variable in two documents of Version 2012-10-17: moving one to the other grants
    nothing new (read as literal text, `&{` made this a false rejection)."""
    base = TF_ROLE + tf_inline('"arn:aws:s3:::home/$${aws:userid}/*"')
    head = TF_ROLE + tf_data_source()
    code, found = gate(base, head, "main.tf")
    assert code == 0, found
    code, found = gate(base, TF_ROLE + tf_data_source('version = "2012-10-17"'), "main.tf")
    assert code == 0, found


def test_data_source_of_version_2008_with_ampersand_is_unknown():
    """The provider refuses `&{` in a data source of version 2008-10-17: what HEAD would
    deploy is not known, and the literal text it looks like must not be taken to cover it
    (the new data source itself accepted: only what app gains is judged)."""
    base = TF_ROLE + tf_inline('"arn:aws:s3:::home/&{aws:userid}/*"', "")
    head = base + tf_data_source('version = "2008-10-17"')
    code, found = gate(base, head, "main.tf", allow_new_policies=True)
    assert code != 0 and all(v.kind == "unknown" for v in found), found
    refused = template_from_text("main.tf", head).policy("data.aws_iam_policy_document.home")
    assert "2008-10-17" in refused.refusal


def test_terraform_local_in_a_version_less_document_is_not_compared():
    """A local may hold `$${aws:userid}`: literal text in BASE's Version-less jsonencode, the
    caller's id in HEAD's 2012-10-17 one, though both read `local.home` (HEAD grants
    PutObject on arn:aws:s3:::home/AROAEXAMPLE:s/f)."""
    local = 'locals {\n  home = "arn:aws:s3:::home/$${aws:userid}/*"\n}\n'
    base = local + TF_ROLE + tf_inline("local.home", "")
    head = base + tf_inline("local.home").replace('"legacy"', '"extra"')
    code, found = gate(base, head, "main.tf")
    assert code != 0, found


def tf_heredoc(resource: str) -> str:
    return TF_ROLE + f"""
resource "aws_iam_role_policy" "legacy" {{
  name   = "legacy"
  role   = aws_iam_role.app.id
  policy = <<EOT
{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": ["s3:PutObject"],
  "Resource": ["{resource}"]}}]}}
EOT
}}
"""


def tf_json_policy(resource: str) -> str:
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": resource}]}
    return json.dumps({"resource": {"aws_iam_policy": {"home": {
        "name": "home", "policy": json.dumps(document)}}}}, indent=1)


def tf_json_data_source(resource: str) -> str:
    return json.dumps({"data": {"aws_iam_policy_document": {"home": {"statement": [
        {"actions": ["s3:PutObject"], "resources": [resource]}]}}}}, indent=1)


@pytest.mark.parametrize("written, path", [(tf_heredoc, "main.tf"),
                                           (tf_json_policy, "main.tf.json"),
                                           (tf_json_data_source, "main.tf.json")])
def test_terraform_template_escape_is_the_policy_variable(written, path):
    """`$${aws:userid}` in a heredoc or a .tf.json string is Terraform's escape of
    `${aws:userid}`: the caller's id once deployed, not `$` then the id. BASE allows
    arn:aws:s3:::home/$*; HEAD's home/<caller's userid>/* is not under it (read as `$` and the
    id, it was: accepted)."""
    code, found = gate(written("arn:aws:s3:::home/$*"),
                       written("arn:aws:s3:::home/$${aws:userid}/*"), path)
    assert code != 0, found


def test_heredoc_escape_is_the_variable_the_data_source_renders():
    """A heredoc's `$${aws:userid}` and the data source's `&{aws:userid}` are one policy
    variable: moving the policy from one to the other grants nothing new."""
    code, found = gate(tf_heredoc("arn:aws:s3:::home/$${aws:userid}/*"),
                       TF_ROLE + tf_data_source(), "main.tf")
    assert code == 0, found


CFN_BASE = """Resources:
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
            Statement:
              - Effect: Allow
                Action: [s3:GetObject, s3:PutObject]
                Resource: BASE_RESOURCE
"""

# HEAD gives AppRole a managed policy of Version 2012-10-17 whose statement is BASE's,
# narrower: the same resource, part of its actions.
CFN_EXTRA = """  Extra:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      Roles: [!Ref AppRole]
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Action: s3:GetObject
            Resource: HEAD_RESOURCE
"""

CFN_CONTEXT = """Conditions:
  Always: !Equals [a, a]
Parameters:
  Prefix: {Type: String, Default: "arn:aws:s3:::home/${aws:userid}/*"}
Mappings:
  Homes:
    all: {arn: "arn:aws:s3:::home/${aws:userid}/*"}
"""


def cfn_gate(base_resource: object, head_resource: object | None = None):
    """BASE: AppRole's Version-less inline policy on base_resource; HEAD: besides, Extra."""
    head_resource = base_resource if head_resource is None else head_resource
    base = CFN_CONTEXT + CFN_BASE.replace("BASE_RESOURCE", json.dumps(base_resource))
    return gate(base, base + CFN_EXTRA.replace("HEAD_RESOURCE", json.dumps(head_resource)))


@pytest.mark.parametrize("resource", [
    {"Fn::Sub": "arn:aws:s3:::${AWS::AccountId}-logs/*"},
    {"Fn::Sub": "arn:${AWS::Partition}:s3:::${AWS::Region}-${AWS::StackName}/*"},
    {"Fn::Sub": ["arn:aws:s3:::${Name}/*", {"Name": "logs"}]},
    {"Fn::Join": ["", ["arn:aws:s3:::", {"Ref": "AWS::AccountId"}, "/*"]]},
    ["arn:aws:s3:::logs/*", {"Fn::If": ["Always", "arn:aws:s3:::more/*",
                                        {"Ref": "AWS::NoValue"}]}],
])
def test_what_fn_sub_substitutes_is_not_a_policy_variable(resource):
    """CloudFormation fills in Fn::Sub's ${...} (pseudo parameters, its variable map): the
    Version-less statement holds no `${` and covers HEAD's narrower one."""
    code, found = cfn_gate(resource)
    assert code == 0, found


@pytest.mark.parametrize("resource", [
    # ${!Name} is Fn::Sub's escape for a literal ${Name}: a policy variable once deployed.
    {"Fn::Sub": "arn:aws:s3:::home/${!aws:userid}/*"},
    # A variable map's literal value is put in as written.
    {"Fn::Sub": ["arn:aws:s3:::home/${Who}/*", {"Who": "${aws:userid}"}]},
    # `$` and `{` written apart, put together by CloudFormation.
    {"Fn::Sub": ["arn:aws:s3:::home/${Dollar}{aws:userid}/*", {"Dollar": {"Fn::Sub": "$"}}]},
    {"Fn::Join": ["", ["arn:aws:s3:::home/$", "{aws:userid}/*"]]},
    {"Fn::Join": ["", ["arn:aws:s3:::home/$", {"Ref": "Prefix"}, "{aws:userid}/*"]]},
    # A mapping's value, not written in the statement.
    {"Fn::FindInMap": ["Homes", "all", "arn"]},
    # A parameter's value (here its Default), substituted or referred to.
    {"Fn::Sub": "${Prefix}"},
    {"Ref": "Prefix"},
    # A resource's attribute: a custom resource's (or a nested stack's output, an SSM
    # parameter's Value) may be any string, `${aws:userid}` among them.
    {"Fn::Sub": "${AppRole.RoleId}"},
    {"Fn::Sub": ["arn:aws:s3:::${Name}", {"Name": {"Fn::GetAtt": ["AppRole", "RoleId"]}}]},
    {"Fn::Join": ["", [{"Fn::GetAtt": ["AppRole", "RoleId"]}]]},
])
def test_a_statement_that_renders_a_variable_is_literal_in_a_version_less_document(resource):
    """Deployed, BASE's Version-less statement holds `${aws:userid}` as literal text; HEAD's
    statement, written the same in a 2012-10-17 document, matches the caller's own home
    (AppRole may GetObject arn:aws:s3:::home/AROAEXAMPLE:s/f): never accepted."""
    code, found = cfn_gate(resource)
    assert code != 0, found


def test_fn_sub_escape_in_a_2012_document_is_not_covered_by_literal_text():
    """BASE's Version-less statement names the literal text home/${aws:userid}/*; HEAD's
    Fn::Sub `${!aws:userid}` in a 2012-10-17 document is the caller's id: a widening."""
    code, found = cfn_gate("arn:aws:s3:::home/${aws:userid}/*",
                           {"Fn::Sub": "arn:aws:s3:::home/${!aws:userid}/*"})
    assert code != 0, found
