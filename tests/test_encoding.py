"""The kernel's string encoding agrees with Python on every string it will ever see.

Names enter refiner only in IAM's action alphabet (the grammar's WORD, ':' and the wildcards),
and the kernel refuses to encode anything outside printable ASCII: beyond it, Z3's and cvc5's
\\u{...} escapes (which stop at 2ffff) and Python's strings disagree on length."""

from __future__ import annotations

import pytest
import z3
from hypothesis import given
from hypothesis import strategies as st

from refiner.patterns import is_action_name
from refiner.prove import _decode, _smt_string

PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@given(PRINTABLE)
def test_z3_reads_every_printable_string_as_python_does(value):
    literal = z3.parse_smt2_string(f"(assert (= x {_smt_string(value)}))",
                                   decls={"x": z3.String("x")})[0].arg(1)
    assert z3.simplify(z3.Length(literal)).as_long() == len(value)
    assert _decode(literal.as_string()) == value


@given(st.text(min_size=1, max_size=10).filter(lambda v: any(not " " <= c <= "~" for c in v)))
def test_anything_else_is_refused_not_encoded(value):
    with pytest.raises(ValueError):
        _smt_string(value)


@given(st.text(max_size=30))
def test_action_names_are_printable_ascii(value):
    if is_action_name(value):
        assert all(" " <= c <= "~" for c in value) and value.count(":") == 1


@pytest.mark.parametrize("name", ["s3:G\U00030000", "s3:Get\U0010ffff", "s3:Gét", "s3:Get Object",
                                  "s3:", ":Get", "s3:Get*", "s3:a:b"])
def test_names_outside_the_alphabet_are_not_action_names(name):
    assert not is_action_name(name)
