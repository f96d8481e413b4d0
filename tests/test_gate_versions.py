"""The per-principal gate and policy documents of different Versions: a document without
Version (or with 2008-10-17) reads policy variables such as ${aws:userid} as literal text; one
with 2012-10-17 fills them in (IAM User Guide, "IAM JSON policy elements: Version"). Statements
written the same in documents of different Versions match different requests, so the gate
never takes one for the other (breaks an attacker's review found at a865f56: each was
accepted)."""

from __future__ import annotations

from refiner.gate import compare_templates
from refiner.iac import template_from_text

TRUST = """      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
"""

BASE = """Resources:
  AppRole:
    Type: AWS::IAM::Role
    Properties:
""" + TRUST + """      Policies:
        - PolicyName: home
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [s3:GetObject, s3:PutObject]
                Resource: "arn:aws:s3:::home/${aws:userid}/*"
"""

# HEAD attaches a new managed policy, Version 2012-10-17, whose statement is written like
# BASE's (a different Sid, part of its action list): ${aws:userid} is now the caller's id.
HEAD = BASE + """  Extra:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      Roles: [!Ref AppRole]
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Sid: Objects
            Effect: Allow
            Action: s3:PutObject
            Resource: "arn:aws:s3:::home/${aws:userid}/*"
"""


def test_a_statement_in_a_document_of_another_version_is_not_covered():
    """AppRole may now s3:PutObject arn:aws:s3:::home/AROAEXAMPLE:session/file (aws:userid
    AROAEXAMPLE:session): HEAD's Extra allows it; BASE's only statement matches the literal
    resource text home/${aws:userid}/..., not that one. The gate must not accept."""
    base = template_from_text("t.yaml", BASE)
    head = template_from_text("t.yaml", HEAD)
    comparison = compare_templates(base, head)
    assert comparison.exit_code() != 0, [v.violation for v in comparison.verdicts]


GUARD_BASE = """Resources:
  AppRole:
    Type: AWS::IAM::Role
    Properties:
""" + TRUST + """      Policies:
        - PolicyName: work
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Effect: Allow
                Action: s3:GetObject
                Resource: "arn:aws:s3:::data/*"
  Guard:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      Roles: [ROLES]
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Deny
            Action: s3:GetObject
            Resource: "arn:aws:s3:::data/private/${aws:userid}/*"
"""

# HEAD detaches Guard and gives AppRole the same Deny statement in an inline policy without
# Version: there ${aws:userid} is literal text, so the Deny no longer denies the caller's own
# private prefix.
GUARD_HEAD = GUARD_BASE.replace("[ROLES]", "[]").replace(
    """                Resource: "arn:aws:s3:::data/*"
""", """                Resource: "arn:aws:s3:::data/*"
        - PolicyName: guard
          PolicyDocument:
            Statement:
              - Effect: Deny
                Action: s3:GetObject
                Resource: "arn:aws:s3:::data/private/${aws:userid}/*"
""", 1)


def test_a_deny_moved_to_a_document_of_another_version_is_not_kept():
    """AppRole (aws:userid AROAEXAMPLE:s) may now s3:GetObject
    arn:aws:s3:::data/private/AROAEXAMPLE:s/f: work allows it, and HEAD's guard (no Version:
    ${aws:userid} literal) does not deny it; BASE's Guard (2012-10-17) did. Not acceptable."""
    base = template_from_text("t.yaml", GUARD_BASE.replace("[ROLES]", "[!Ref AppRole]"))
    head = template_from_text("t.yaml", GUARD_HEAD)
    comparison = compare_templates(base, head)
    assert comparison.exit_code() != 0, [v.violation for v in comparison.verdicts]


BOUND_BASE = """Resources:
  AppRole:
    Type: AWS::IAM::Role
    Properties:
""" + TRUST + """      PermissionsBoundary: !Ref Bound
      Policies:
        - PolicyName: work
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Effect: Allow
                Action: s3:*
                Resource: "*"
  Bound:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: s3:*
            Resource: "arn:aws:s3:::home/${aws:userid}/*"
"""

# HEAD bounds AppRole by Bound2: Bound's statement in a document with Version 2012-10-17.
BOUND_HEAD = BOUND_BASE.replace("!Ref Bound\n", "!Ref Bound2\n") + """  Bound2:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Action: s3:*
            Resource: "arn:aws:s3:::home/${aws:userid}/*"
"""


def test_a_boundary_statement_in_a_document_of_another_version_is_not_covered():
    """BASE's boundary (no Version) lets AppRole reach only objects under the literal prefix
    home/${aws:userid}/; HEAD's (2012-10-17) lets it s3:GetObject
    arn:aws:s3:::home/AROAEXAMPLE:s/f. A widening: not acceptable."""
    base = template_from_text("t.yaml", BOUND_BASE)
    head = template_from_text("t.yaml", BOUND_HEAD)
    comparison = compare_templates(base, head)
    assert comparison.exit_code() != 0, [v.violation for v in comparison.verdicts]


OLD_STYLE = """Resources:
  AppRole:
    Type: AWS::IAM::Role
    Properties:
""" + TRUST + """      Policies:
        - PolicyName: home
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: s3:GetObject
                Resource: "arn:aws:s3:::home/${aws:userid}/*"
              - Effect: Deny
                Action: s3:DeleteObject
                Resource: "arn:aws:s3:::home/${aws:userid}/*"
  Work:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      Roles: [!Ref AppRole]
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Action: [ACTIONS]
            Resource: "*"
"""


def test_a_document_without_version_held_as_it_was_is_judged_as_before():
    """Literal variables make a statement incomparable with another document's, not with
    itself: a role that keeps its Version-less policy unchanged while another of its policies
    narrows is accepted, and one whose other policy widens is rejected, not unknown."""
    base = template_from_text("t.yaml", OLD_STYLE.replace("[ACTIONS]", "[s3:ListBucket, sqs:*]"))
    narrowed = template_from_text("t.yaml", OLD_STYLE.replace("[ACTIONS]", "[s3:ListBucket]"))
    widened = template_from_text("t.yaml", OLD_STYLE.replace("[ACTIONS]", "[s3:ListBucket, sqs:*, sns:*]"))
    assert compare_templates(base, narrowed).exit_code() == 0
    assert compare_templates(base, widened).exit_code() == 1


def test_a_version_less_document_renamed_or_given_a_version():
    """The same Version-less policy under another name holds the same statements: accepted.
    Given Version 2012-10-17 besides, its variables are filled in: never accepted."""
    base = template_from_text("t.yaml", OLD_STYLE.replace("[ACTIONS]", "[s3:ListBucket]"))
    renamed = OLD_STYLE.replace("[ACTIONS]", "[s3:ListBucket]").replace("PolicyName: home",
                                                                       "PolicyName: house")
    assert compare_templates(base, template_from_text("t.yaml", renamed)).exit_code() == 0
    versioned = renamed.replace("""          PolicyDocument:
            Statement:""", """          PolicyDocument:
            Version: "2012-10-17"
            Statement:""", 1)
    assert versioned != renamed
    assert compare_templates(base, template_from_text("t.yaml", versioned)).exit_code() != 0
