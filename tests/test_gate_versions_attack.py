"""An attacker's cases against the per-principal gate (at 53bd7f2): documents whose text is
equal on both sides but reads values that changed (a Version or a Resource from a mapping, a
Terraform local) were taken to mean the same; they are now unknown. Terraform's `&{...}` (an
IAM policy variable in aws_iam_policy_document, literal text in jsonencode) was read as
literal text in both, and Fn::Sub's `${AWS::AccountId}` was taken for a policy variable in a
Version-less document (a false rejection): both fixed, with the cases around them."""

from pathlib import Path

from iac_support import gate_templates as _exit

FIXTURES = Path(__file__).parent / "fixtures" / "gate-versions"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


VER_BASE = _fixture("ver-base.yaml")

VER_HEAD = _fixture("ver-head.yaml")

ALLOW_BASE = _fixture("allow-base.yaml")

ALLOW_HEAD = _fixture("allow-head.yaml")

MAP_BASE = _fixture("map-base.yaml")

MAP_HEAD = _fixture("map-head.yaml")

TF_BASE = _fixture("tf-base.tf")

TF_HEAD = _fixture("tf-head.tf")

SUB_BASE = _fixture("sub-base.yaml")

SUB_HEAD = _fixture("sub-head.yaml")




def test_deny_moved_whose_version_expression_changed_is_not_kept():
    """Guard (Version !FindInMap -> 2012-10-17) denied s3:GetObject on
    data/private/<caller userid>/*; HEAD's inline guard is the same JSON but the mapping now
    gives 2008-10-17: ${aws:userid} is literal, so AppRole may GetObject
    arn:aws:s3:::data/private/AROAEXAMPLE:s/f (work allows *). The 'held as it was' skip accepts."""
    code, found = _exit(VER_BASE, VER_HEAD)
    assert code != 0, found


def test_allow_moved_whose_version_expression_changed_is_not_covered():
    """Home (Version via mapping = 2008-10-17: literal) moved inline, mapping now 2012-10-17:
    AppRole may s3:PutObject arn:aws:s3:::home/AROAEXAMPLE:s/f, which BASE did not allow."""
    code, found = _exit(ALLOW_BASE, ALLOW_HEAD)
    assert code != 0, found


def test_deny_moved_whose_resource_mapping_changed_is_not_kept():
    """The Deny on s3:GetObject arn:aws:s3:::secret/* becomes one on arn:aws:s3:::nothing."""
    code, found = _exit(MAP_BASE, MAP_HEAD)
    assert code != 0, found


def test_terraform_ampersand_variable_is_not_literal_text():
    """aws_iam_policy_document renders &{aws:userid} as ${aws:userid} (Version 2012-10-17): a
    policy variable. jsonencode leaves &{aws:userid} literal. aws_iam_role.app gains PutObject on
    arn:aws:s3:::home/AROAEXAMPLE:s/f."""
    code, found = _exit(TF_BASE, TF_HEAD, "main.tf")
    assert code != 0, found


def test_fn_sub_substitutions_are_not_policy_variables():
    """False rejection: Fn::Sub's ${AWS::AccountId} is resolved by CloudFormation; the
    Version-less statement has no IAM variable and covers HEAD's narrower one (accepted
    before 53bd7f2)."""
    code, found = _exit(SUB_BASE, SUB_HEAD)
    assert code == 0, found


TF4_BASE = _fixture("tf4-base.tf")

TF4_HEAD = _fixture("tf4-head.tf")

BOUND_BASE = _fixture("bound-base.yaml")

BOUND_HEAD = _fixture("bound-head.yaml")


def test_terraform_deny_moved_whose_version_local_changed_is_not_kept():
    """local.guard_version 2012-10-17 -> 2008-10-17 while the guard moves from an attached
    aws_iam_policy to an inline aws_iam_role_policy of the same JSON: ${aws:userid} is now
    literal; app may GetObject arn:aws:s3:::data/private/AROAEXAMPLE:s/f."""
    code, found = _exit(TF4_BASE, TF4_HEAD, "main.tf")
    assert code != 0, found


def test_boundary_moved_whose_version_mapping_changed_is_not_kept():
    """Boundary Bound (mapping Version 2008-10-17: literal) replaced by Bound2, the same JSON,
    the mapping now 2012-10-17: AppRole may s3:PutObject arn:aws:s3:::home/AROAEXAMPLE:s/f."""
    code, found = _exit(BOUND_BASE, BOUND_HEAD)
    assert code != 0, found
