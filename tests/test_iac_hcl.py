"""HCL read by the tree-sitter grammar: what the hand-written reader it replaced got wrong."""

from __future__ import annotations

import pytest

from refiner.errors import InputError
from refiner.iac import parse_template

POLICY = """resource "aws_iam_policy" "{name}" {{
  policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [{{
      Effect = "Allow"
{statement}
    }}]
  }})
}}
"""


def module(statement: str, name: str = "p") -> str:
    return POLICY.format(name=name, statement=statement)


def test_an_interpolated_label_is_refused_not_a_crash():
    # HCL allows no template sequence in a block label; the old reader crashed (TypeError).
    text = module('      Action = ["s3:GetObject"]\n      Resource = "*"', name="p${var.x}")
    with pytest.raises(InputError, match="m.tf: line 1: a block label"):
        parse_template("m.tf", text, "terraform")


def test_two_elements_on_one_line_are_refused_as_hcl_refuses_them():
    # The old reader took `[...] Resource = "*"` for one expression that Action used.
    text = module('      Action = ["s3:GetObject", "s3:PutObject"] Resource = "*"')
    with pytest.raises(InputError, match="m.tf: line 6: an object's element must start"):
        parse_template("m.tf", text, "terraform")
    text = module('      Action = ["s3:GetObject"]\n      , Resource = "*"')
    with pytest.raises(InputError, match="m.tf: line 7: a comma must end"):
        parse_template("m.tf", text, "terraform")


def test_unicode_identifiers_are_hcl():
    # HCL identifiers are Unicode (UAX #31); the old reader refused the file.
    text = 'locals {\n  größe = 1\n}\n\n' + module('      Action = ["s3:GetObject"]\n'
                                                  '      Resource = "*"')
    template = parse_template("m.tf", text, "terraform")
    policy = template.policy("aws_iam_policy.p")
    assert policy.refusal is None
    assert policy.document["Statement"][0]["Action"] == ["s3:GetObject"]
