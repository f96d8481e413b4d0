"""The pattern grammar and the refiner's glob matcher, against the regex oracle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import matches as oracle_matches

from refiner.errors import InputError
from refiner.patterns import Glob, intersects_prefix, parse

ALPHABET = "abAB:*?"
pattern_texts = st.text("abAB*?", min_size=1, max_size=8).map(lambda body: f"s:{body}")
strings = st.text("abAB:", max_size=10)


@pytest.mark.parametrize("text,service,action", [
    ("*", ("*",), ()),
    ("s3:Get*", ("s3",), ("Get", "*")),
    ("*:Get*", ("*",), ("Get", "*")),
    ("s3:Get?bject", ("s3",), ("Get", "?", "bject")),
    ("iam:*AccessKey*", ("iam",), ("*", "AccessKey", "*")),
    ("partnercentral-account-management:AssociatePartnerUser",
     ("partnercentral-account-management",), ("AssociatePartnerUser",)),
])
def test_parse_symbolic_form(text, service, action):
    pattern = parse(text)
    assert (pattern.service, pattern.action) == (service, action)


@pytest.mark.parametrize("text", ["", "s3", "s3:", ":Get", "s3:Get Object", "s3:a:b", "*a",
                                  "s3:Get*\n", "s3:" + "a" * 300, "s3:Gét"])
def test_invalid_patterns_are_input_errors(text):
    with pytest.raises(InputError):
        parse(text)


def test_non_string_pattern_is_input_error():
    with pytest.raises(InputError):
        parse(7)


@given(pattern_texts, strings)
def test_glob_agrees_with_regex_oracle(text, string):
    assert Glob(parse(text)).matches("s:" + string) == oracle_matches(text, "s:" + string)


@given(pattern_texts, strings, st.text("abAB", max_size=4))
def test_covers_prefix_means_every_extension_matches(text, prefix, tail):
    glob = Glob(parse(text))
    if glob.covers_prefix("s:" + prefix):
        assert oracle_matches(text, "s:" + prefix + tail)


@given(pattern_texts, strings)
def test_covers_prefix_is_exact(text, prefix):
    """When the glob does not cover prefix*, some extension of prefix is refused."""
    glob = Glob(parse(text))
    if not glob.covers_prefix("s:" + prefix):
        tails = ["", "a", "b", "ab", "ba", "aaaaaaaaa", "bbbbbbbbbb", ":"]
        assert not all(oracle_matches(text, "s:" + prefix + t) for t in tails)


@given(pattern_texts, strings)
def test_intersects_prefix_finds_a_match_when_one_exists(text, prefix):
    found = any(oracle_matches(text, "s:" + prefix + t)
                for t in ["", "a", "b", "ab", "ba", "aa", "bb", "aab", "abb", "bab", "aaaaaaaa"])
    if found:
        assert intersects_prefix(parse(text), "s:" + prefix)


def test_matching_is_case_insensitive():
    assert Glob(parse("S3:getOBJECT")).matches("s3:GetObject")


def test_adversarial_pattern_matches_quickly():
    glob = Glob(parse("s3:*a*a*a*a*a*a*a*a*a*a*a*b"))
    assert not glob.matches("s3:" + "a" * 200)
    assert glob.matches("s3:" + "a" * 200 + "b")


@given(st.text(alphabet="s3:GetObject*?-_.é ", max_size=24) | st.text(max_size=12))
def test_reading_by_terminals_agrees_with_the_grammar(text):
    """The fast reading (the grammar's terminals as regular expressions) accepts exactly what
    the Lark parser accepts, and reads it into the same tokens."""
    from lark.exceptions import UnexpectedInput

    from refiner.patterns import _tokens_by_terminals, parse_by_grammar

    fast = _tokens_by_terminals(text)
    try:
        reference = parse_by_grammar(text)
    except UnexpectedInput:
        reference = None
    assert fast == reference
