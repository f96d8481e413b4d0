"""Each refinement strategy, stated as properties over generated catalogs, policies and findings
and checked by brute force (tests/oracle.py): every strategy is proven, sound and complete, and
each keeps its own promise (characters: no cut could be one character shorter; exact: no new
wildcard; size: admits exactly the used catalog actions)."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import EXAMPLES
from hypothesis import given
from oracle import entries, is_unused, matches, statement_allows
from strategies import cases
from test_properties import paired, probes

from refiner.cli import main
from refiner.errors import InputError
from refiner.finding import parse_finding
from refiner.pipeline import refine_and_prove
from refiner.policy import load_policy
from refiner.refinement import STRATEGIES, Refiner


def run(case, strategy):
    catalog, document, finding = case
    unused = parse_finding(finding, catalog)
    result = refine_and_prove(load_policy(copy.deepcopy(document)), unused, catalog, 20_000,
                              strategy=strategy)
    return unused, result


def new_entries(original: dict, refined: dict | None) -> list[str]:
    if refined is None or "Action" not in original:
        return []
    before = {p.lower() for p in entries(original["Action"])}
    return [e for e in entries(refined["Action"]) if e.lower() not in before]


def check_proven_sound_and_complete(case, unused, result):
    """What every strategy owes: the kernel's proof, and the oracle agrees with it."""
    catalog, document, _ = case
    assert result.violations == []
    dead = set(unused.actions)
    strings = probes(document, catalog, unused)
    for original, refined in paired(document, result):
        for string in strings:
            if statement_allows(refined, string):
                assert statement_allows(original, string), (string, refined)
                if original.get("Effect") == "Allow":
                    assert not is_unused(string, dead, unused.services), (string, refined)
        for action in catalog.all_actions():
            if statement_allows(original, action) and not is_unused(action, dead, unused.services):
                assert statement_allows(refined, action), (action, original, refined)


def one_character_shorter_is_unsafe(entry: str, original: dict, unused) -> bool:
    """`p*` cut one character shorter reaches an unused name or leaves every original pattern
    (or would cut into the service name)."""
    service, _, action = entry[:-1].partition(":")
    if not action:
        return True
    shorter = f"{service}:{action[:-1]}"
    reaches_unused = any(name.lower().startswith(shorter.lower())
                         for name in unused.actions.values()) or service.lower() in unused.services
    leaves_original = not any(all(matches(p, shorter + tail) for tail in ("", "#", "Zz#"))
                              for p in entries(original["Action"]))
    return reaches_unused or leaves_original


@given(cases())
def test_words_is_proven_sound_and_complete(case):
    unused, result = run(case, "words")
    check_proven_sound_and_complete(case, unused, result)


@given(cases())
def test_characters_cuts_each_prefix_as_short_as_safe(case):
    unused, result = run(case, "characters")
    check_proven_sound_and_complete(case, unused, result)
    catalog, document, _ = case
    dead = set(unused.actions)
    for original, refined in paired(document, result):
        for entry in new_entries(original, refined):
            if entry.endswith("*"):
                assert one_character_shorter_is_unsafe(entry, original, unused), (entry, original)
                used_below = [a for a in catalog.all_actions() if matches(entry, a)
                              and not is_unused(a, dead, unused.services)]
                assert len(used_below) >= 2, (entry, used_below)  # one would be named instead
            else:
                assert catalog.canonical(entry) == entry


@given(cases())
def test_exact_adds_no_wildcard(case):
    unused, result = run(case, "exact")
    check_proven_sound_and_complete(case, unused, result)
    catalog, document, _ = case
    for original, refined in paired(document, result):
        for entry in new_entries(original, refined):
            assert "*" not in entry and "?" not in entry, entry
            assert catalog.canonical(entry) == entry


@given(cases())
def test_size_admits_exactly_the_used_catalog_actions_with_shortest_cuts(case):
    unused, result = run(case, "size")
    check_proven_sound_and_complete(case, unused, result)
    catalog, document, _ = case
    dead = set(unused.actions)
    for original, refined in paired(document, result):
        for action in catalog.all_actions():
            used = not is_unused(action, dead, unused.services)
            assert statement_allows(refined, action) == (
                statement_allows(original, action) and (used or original.get("Effect") != "Allow"))
        for entry in new_entries(original, refined):
            if entry.endswith("*"):
                assert one_character_shorter_is_unsafe(entry, original, unused), (entry, original)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_refines_the_worked_example_and_the_checker_agrees(strategy, capsys):
    code = main(["refine", str(EXAMPLES / "policy.json"), "--unused",
                 str(EXAMPLES / "unused.json"), "--strategy", strategy])
    assert code == 0
    s3 = json.loads(capsys.readouterr().out)["Statement"][1]["Action"]
    assert s3[-1] == "s3:List*" and "s3:Get*" not in s3
    if strategy == "exact":
        assert all("*" not in entry for entry in s3[:-1]) and "s3:GetObject" in s3
    if strategy in ("characters", "size"):
        assert "s3:GetO*" in s3


def test_size_is_the_max_size_fallback(capsys):
    """--max-size keeps what it did: words first, the size strategy when that is over N."""
    args = ["refine", str(EXAMPLES / "policy.json"), "--unused", str(EXAMPLES / "unused.json")]
    assert main(args + ["--strategy", "size"]) == 0
    size = capsys.readouterr().out
    assert main(args + ["--max-size", "50"]) == 0
    assert capsys.readouterr().out == size
    assert main(args + ["--max-size", "100000"]) == 0
    assert capsys.readouterr().out != size


def test_an_unknown_strategy_is_bad_input(catalog, capsys):
    with pytest.raises(InputError, match="unknown strategy 'fastest'"):
        Refiner(parse_finding([], catalog), catalog, "fastest")
    code = main(["refine", str(EXAMPLES / "policy.json"), "--unused",
                 str(EXAMPLES / "unused.json"), "--strategy", "fastest"])
    assert code == 2 and "invalid choice" in capsys.readouterr().err
