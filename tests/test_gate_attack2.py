"""A second attacker's cases against the gate's reading of policy variables as deployed (at
614b5a9), each accepted (exit 0) before its fix: Fn::Sub-free `${*}`, `${?}`, `${$}` of a
document whose Version is not 2012-10-17 (literal text to IAM, read by the request model as
the escaped character); a Terraform heredoc that interpolates, whose `${local.x}` was read as
the policy variable a jsonencode's `$${local.x}` is; a CloudFormation dynamic reference
(`{{resolve:ssm:...}}`, any string once deployed) in a Version-less statement; a Deny whose
Effect (or whole statement) is an expression, no longer held; and a Terraform expression in a
field aws_iam_policy_document renders (`&{` to `${`), taken for the same expression in a
jsonencode, which does not render it."""

from __future__ import annotations

import json

import pytest
from iac_support import gate_templates as gate

CFN_ROLE = """Resources:
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
            VERSION
            Statement:
              - Effect: Allow
                Action: s3:GetObject
                Resource: RESOURCE
"""


def cfn_role(resource: str, version: str = "") -> str:
    """AppRole's inline policy on resource, its document of the given Version line."""
    return CFN_ROLE.replace("            VERSION\n", f"            {version}\n" if version else "") \
        .replace("RESOURCE", json.dumps(resource))


# --- ${*}, ${?}, ${$} are IAM's escapes only in Version 2012-10-17 ---------------------------

@pytest.mark.parametrize("escape", ["${*}", "${?}", "${$}"])
@pytest.mark.parametrize("version", ["", 'Version: "2008-10-17"'])
def test_escape_outside_2012_is_literal_text(escape, version):
    """BASE lets AppRole GetObject on bucket/<one character>. HEAD writes bucket/${*} (or
    ${?}, ${$}) in the same Version-less (or 2008-10-17) document: IAM reads it as literal
    text, `$`, `{`, the wildcard or character, `}`, so HEAD allows arn:aws:s3:::bucket/${x}
    (four characters and more), which BASE did not. The request model read the escape as the
    one character, inside bucket/?: accepted."""
    code, found = gate(cfn_role("arn:aws:s3:::bucket/?", version),
                       cfn_role(f"arn:aws:s3:::bucket/{escape}", version))
    assert code != 0, found


@pytest.mark.parametrize("escape", ["${*}", "${?}", "${$}"])
def test_escape_in_2012_is_the_character(escape):
    """In Version 2012-10-17 the escape is the one character: bucket/? covers it (no false
    rejection from reading other Versions literally)."""
    version = 'Version: "2012-10-17"'
    code, found = gate(cfn_role("arn:aws:s3:::bucket/?", version),
                       cfn_role(f"arn:aws:s3:::bucket/{escape}", version))
    assert code == 0, found


def test_variable_in_a_version_expression_is_unknown():
    """A Version written as an expression may be 2012-10-17 (a policy variable) or not
    (literal text): a changed statement with `${` is read neither way alone."""
    base = "Conditions:\n  Always: !Equals [a, a]\n" + cfn_role(
        "arn:aws:s3:::bucket/?", 'Version: !If [Always, "2008-10-17", "2012-10-17"]')
    head = base.replace('"arn:aws:s3:::bucket/?"', '"arn:aws:s3:::bucket/${*}"')
    code, found = gate(base, head)
    assert code != 0, found


# --- a Terraform heredoc that interpolates --------------------------------------------------

TF_ROLE = """locals {
  b = "*"
}

resource "aws_iam_role" "app" {
  name = "app"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole",
                   Principal = { Service = "lambda.amazonaws.com" } }]
  })
}
"""


def tf_heredoc(resource: str, name: str = "legacy") -> str:
    return f"""
resource "aws_iam_role_policy" "{name}" {{
  name   = "{name}"
  role   = aws_iam_role.app.id
  policy = <<EOT
{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": ["s3:GetObject"],
  "Resource": ["{resource}"]}}]}}
EOT
}}
"""


def tf_jsonencode(resource: str, name: str = "legacy") -> str:
    return f"""
resource "aws_iam_role_policy" "{name}" {{
  name   = "{name}"
  role   = aws_iam_role.app.id
  policy = jsonencode({{
    Version   = "2012-10-17"
    Statement = [{{ Effect = "Allow", Action = ["s3:GetObject"], Resource = ["{resource}"] }}]
  }})
}}
"""


@pytest.mark.parametrize("written", [tf_heredoc, tf_jsonencode])
def test_interpolating_heredoc_is_not_the_escaped_policy_variable(written):
    """BASE: `$${local.b}`, Terraform's escape: the deployed document holds the policy
    variable ${local.b}, which no request has (AppRole may GetObject nothing). HEAD: the same
    policy as a heredoc that interpolates `${local.b}`, which Terraform makes `*`: AppRole may
    GetObject arn:aws:s3:::bucket/anything. Both were read as the text ${local.b}: the policy
    unchanged, accepted."""
    base = TF_ROLE + written("arn:aws:s3:::bucket/$${local.b}")
    head = TF_ROLE + tf_heredoc("arn:aws:s3:::bucket/${local.b}")
    code, found = gate(base, head, "main.tf")
    assert code != 0, found


def test_interpolating_heredoc_gained_is_not_covered_by_the_escaped_variable():
    """BASE: AppRole's jsonencode policy on bucket/${local.b} (the policy variable, written
    `$${local.b}`). HEAD adds a heredoc policy that interpolates local.b (`*`): AppRole gains
    GetObject on every object of the bucket; it was covered by BASE's equal text."""
    base = TF_ROLE + tf_jsonencode("arn:aws:s3:::bucket/$${local.b}")
    head = base + tf_heredoc("arn:aws:s3:::bucket/${local.b}", "extra")
    code, found = gate(base, head, "main.tf")
    assert code != 0, found


def test_interpolating_heredoc_unchanged_is_accepted():
    """The same interpolating heredoc on both sides (its inputs unchanged) grants the same."""
    base = TF_ROLE + tf_heredoc("arn:aws:s3:::bucket/${local.b}")
    code, found = gate(base, base.replace('"s3:GetObject"', '"s3:GetObject"  '), "main.tf")
    assert code == 0, found


def test_heredoc_interpolating_a_key_is_unknown():
    """A heredoc whose object key interpolates (a condition key Terraform makes) is not read
    as the same text written literally elsewhere: BASE's key aws:ResourceTag/${local.t}, the
    escape written `$${local.t}` (a key no request has: GetObject on nothing), becomes
    aws:ResourceTag/team once HEAD interpolates it (GetObject on objects tagged team=x)."""
    condition = '"Condition": {"StringEquals": {"aws:ResourceTag/KEY": "x"}}'
    role = TF_ROLE.replace('b = "*"', 't = "team"')
    base = role + tf_heredoc("arn:aws:s3:::bucket/*").replace(
        '"Resource"', condition.replace("KEY", "$${local.t}") + ', "Resource"')
    head = role + tf_heredoc("arn:aws:s3:::bucket/*").replace(
        '"Resource"', condition.replace("KEY", "${local.t}") + ', "Resource"')
    code, found = gate(base, head, "main.tf")
    assert code != 0, found


# --- CloudFormation dynamic references ------------------------------------------------------

CFN_EXTRA = """  Extra:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      Roles: [!Ref AppRole]
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Action: s3:GetObject
            Resource: RESOURCE
"""


@pytest.mark.parametrize("resource", [
    "arn:aws:s3:::home/{{resolve:ssm:/home/prefix}}/*",
    {"Fn::Sub": "arn:aws:s3:::home/{{resolve:ssm:/home/${AWS::Region}}}/*"},
    {"Fn::Join": ["", ["arn:aws:s3:::home/{{resolve:", "ssm:/home/prefix}}/*"]]},
])
def test_dynamic_reference_in_a_version_less_statement_is_not_compared(resource):
    """BASE: AppRole's Version-less statement on arn:aws:s3:::home/{{resolve:ssm:...}}/*,
    whose SSM value may be `${aws:userid}`: literal text there. HEAD gives AppRole the same
    statement in a 2012-10-17 document, where it is the caller's home (GetObject on
    arn:aws:s3:::home/AROAEXAMPLE:s/f): a dynamic reference is any string, as a parameter is."""
    base = cfn_role("arn:aws:s3:::home/x/*").replace('"arn:aws:s3:::home/x/*"',
                                                      json.dumps(resource))
    head = base + CFN_EXTRA.replace("RESOURCE", json.dumps(resource))
    code, found = gate(base, head)
    assert code != 0, found


# --- a Deny whose Effect is an expression ---------------------------------------------------

CFN_GUARD = """Conditions:
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
        - PolicyName: all
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Effect: Allow
                Action: s3:*
                Resource: "*"
  Guard:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      Roles: [!Ref AppRole]
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - STATEMENT
"""


@pytest.mark.parametrize("statement", [
    "{Effect: !If [Always, Deny, Deny], Action: s3:DeleteObject, Resource: '*'}",
    "!If [Always, {Effect: Deny, Action: s3:DeleteObject, Resource: '*'}, "
    "{Effect: Deny, Action: s3:DeleteObject, Resource: '*'}]",
])
def test_deny_written_as_an_expression_no_longer_held_is_not_dropped(statement):
    """Guard denies AppRole s3:DeleteObject, its Effect (or the whole statement) written
    with Fn::If. HEAD detaches Guard from AppRole (Roles: []): AppRole may DeleteObject again
    (its inline policy allows s3:*). The gate skipped every statement whose Effect is not the
    string Deny: accepted."""
    base = CFN_GUARD.replace("STATEMENT", statement)
    head = base.replace("Roles: [!Ref AppRole]", "Roles: []")
    code, found = gate(base, head)
    assert code != 0, found


def test_terraform_deny_statement_from_a_local_no_longer_held_is_not_dropped():
    """A guard policy whose statement is local.deny (a Deny of s3:DeleteObject), attached to
    app; HEAD removes the attachment: app (allowed s3:*) may DeleteObject again."""
    base = """locals {
  deny = { Effect = "Deny", Action = "s3:DeleteObject", Resource = "*" }
}
""" + TF_ROLE.replace('locals {\n  b = "*"\n}\n', "") + """
resource "aws_iam_role_policy" "all" {
  name   = "all"
  role   = aws_iam_role.app.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "s3:*", Resource = "*" }]
  })
}

resource "aws_iam_policy" "guard" {
  name   = "guard"
  policy = jsonencode({ Version = "2012-10-17", Statement = [local.deny] })
}
"""
    attachment = """
resource "aws_iam_role_policy_attachment" "guard" {
  role       = aws_iam_role.app.name
  policy_arn = aws_iam_policy.guard.arn
}
"""
    code, found = gate(base + attachment, base, "main.tf")
    assert code != 0, found


# --- aws_iam_policy_document renders &{ in what an expression gives -------------------------

TF_HOMES = """locals {
  homes = ["arn:aws:s3:::home/&{aws:userid}/*"]
}
""" + TF_ROLE.replace('locals {\n  b = "*"\n}\n', "")

TF_HOMES_JSONENCODE = """
resource "aws_iam_role_policy" "legacy" {
  name   = "legacy"
  role   = aws_iam_role.app.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["s3:PutObject"], Resource = local.homes }]
  })
}
"""

TF_HOMES_DATA = """
data "aws_iam_policy_document" "home" {
  statement {
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = local.homes
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


@pytest.mark.parametrize("keep", [False, True])
def test_data_source_renders_ampersand_in_what_an_expression_gives(keep):
    """local.homes holds arn:aws:s3:::home/&{aws:userid}/*. BASE: jsonencode's Resource =
    local.homes, literal text (&{ is no variable). HEAD: a data source's resources =
    local.homes, which the provider renders as home/${aws:userid}/*: app may PutObject in the
    caller's home, arn:aws:s3:::home/AROAEXAMPLE:s/f. The two documents were equal JSON
    (paired by content, or covered): accepted."""
    head = TF_HOMES + (TF_HOMES_JSONENCODE if keep else "") + TF_HOMES_DATA
    code, found = gate(TF_HOMES + TF_HOMES_JSONENCODE, head, "main.tf",
                       allow_new_policies=keep)
    assert code != 0, found


def test_data_source_expression_in_version_2008_is_not_rendered():
    """In version 2008-10-17 the provider renders nothing (it refuses `&{`): a data source's
    expression there means what jsonencode's means (no false rejection)."""
    base = TF_HOMES.replace('"arn:aws:s3:::home/&{aws:userid}/*"', '"arn:aws:s3:::home/*"') + \
        TF_HOMES_JSONENCODE.replace('Version   = "2012-10-17"', 'Version   = "2008-10-17"')
    head = TF_HOMES.replace('"arn:aws:s3:::home/&{aws:userid}/*"', '"arn:aws:s3:::home/*"') + \
        TF_HOMES_DATA.replace('statement {', 'version = "2008-10-17"\n  statement {')
    code, found = gate(base, head, "main.tf")
    assert code == 0, found
