"""The guarantees of `refine`, stated as properties over generated catalogs, policies and findings
and checked by brute force (tests/oracle.py), not by the Z3 checker."""

from __future__ import annotations

import copy
import re

from hypothesis import assume, given
from hypothesis import strategies as st
from oracle import entries, is_unused, matches, statement_allows
from strategies import cases

from refiner.finding import parse_finding
from refiner.pipeline import refine_and_prove
from refiner.policy import load_policy

WORD = re.compile(r"[A-Z]+[0-9]*(?![a-z])|[A-Z][a-z0-9]*|[a-z0-9]+")


def run(catalog, document, finding):
    unused = parse_finding(finding, catalog)
    result = refine_and_prove(load_policy(copy.deepcopy(document)), unused, catalog, 20_000)
    return unused, result


def probes(document, catalog, unused) -> set[str]:
    """Strings to test soundness on: the catalog, the unused names, and strings built from
    every pattern (each wildcard filled a few ways), which reach far outside the catalog."""
    strings = set(catalog.all_actions()) | set(unused.actions.values())
    strings |= {f"{service}:Anything" for service in unused.services}
    for statement in document["Statement"]:
        for pattern in entries(statement.get("Action", statement.get("NotAction"))):
            for star, one in (("", "q"), ("Zz", "Q"), ("Object", "x"), (":", ":")):
                strings.add(pattern.replace("*", star).replace("?", one))
    return strings


def paired(document, result):
    """(original statement, refined statement or None), by the original's position."""
    assert [o for o, _ in result.refinement.pairs] == document["Statement"]
    return result.refinement.pairs


def new_entries(document, result):
    """(original, refined, the refined Action entries not in the original) per kept statement."""
    for original, refined in paired(document, result):
        if refined is None or "Action" not in original:
            continue
        before = {p.lower() for p in entries(original["Action"])}
        yield original, refined, [e for e in entries(refined["Action"]) if e.lower() not in before]


def _same_shape(a, b):
    return {k: v for k, v in a.items() if k not in ("Action", "NotAction")} == {
        k: v for k, v in b.items() if k not in ("Action", "NotAction")
    } and ("Action" in a) == ("Action" in b)


@given(cases())
def test_refinement_is_proven(case):
    catalog, document, finding = case
    _, result = run(catalog, document, finding)
    assert result.violations == []


@given(cases())
def test_soundness_refined_admits_nothing_new_and_nothing_unused(case):
    catalog, document, finding = case
    unused, result = run(catalog, document, finding)
    dead = set(unused.actions)
    for original, refined in paired(document, result):
        for string in probes(document, catalog, unused):
            if statement_allows(refined, string):
                assert statement_allows(original, string), (string, refined)
                if original.get("Effect") == "Allow":
                    assert not is_unused(string, dead, unused.services), (string, refined)


@given(cases())
def test_completeness_every_used_allowed_action_stays(case):
    catalog, document, finding = case
    unused, result = run(catalog, document, finding)
    for original, refined in paired(document, result):
        for action in catalog.all_actions():
            if statement_allows(original, action) and not is_unused(
                action, set(unused.actions), unused.services
            ):
                assert statement_allows(refined, action), (action, original, refined)


@given(cases())
def test_least_general_each_new_wildcard_is_as_short_as_safe(case):
    """Dropping the last CamelCase word of a new `Prefix*` would admit an unused action or
    leave every original pattern it came from."""
    catalog, document, finding = case
    unused, result = run(catalog, document, finding)
    for original, _, new in new_entries(document, result):
        for entry in new:
            if not entry.endswith("*"):
                continue
            service, _, action = entry[:-1].partition(":")
            words = WORD.findall(action)
            shorter = f"{service}:{action[: len(action) - len(words[-1])]}" if words else ""
            wider_reaches_unused = any(
                name.lower().startswith(shorter.lower()) for name in unused.actions.values()
            ) or service.lower() in unused.services
            wider_leaves_original = not any(
                all(matches(p, shorter + tail) for tail in ("", "#", "Zz#"))
                for p in entries(original["Action"])
            )
            assert wider_reaches_unused or wider_leaves_original, (entry, original)


@given(cases())
def test_no_emitted_pattern_covers_another_new_one(case):
    catalog, document, finding = case
    _, result = run(catalog, document, finding)
    for _, refined, new in new_entries(document, result):
        everything = entries(refined["Action"])
        for entry in new:
            probe = entry.replace("*", "")
            coverers = [o for o in everything if o != entry and matches(o, probe)]
            if entry.endswith("*"):
                coverers = [o for o in coverers if matches(o, probe + "Zz#")]
            assert not coverers, (entry, coverers)


@given(cases())
def test_idempotent(case):
    catalog, document, finding = case
    _, first = run(catalog, document, finding)
    assume(not first.detach)  # nothing is left to refine again
    _, second = run(catalog, first.refined.document, finding)
    assert not second.changed and second.text == first.text


@given(cases())
def test_structure_is_preserved(case):
    catalog, document, finding = case
    _, result = run(catalog, document, finding)
    refined_document = result.refinement.document
    assert list(refined_document) == list(document)
    for original, refined in paired(document, result):
        if original.get("Effect") == "Deny":
            assert refined == original
        if refined is None:
            continue
        assert list(refined) == list(original)
        key = "Action" if "Action" in original else "NotAction"
        assert _same_shape(original, refined)
        kept = [e for e in entries(refined[key]) if e in entries(original[key])]
        assert kept == [e for e in entries(original[key]) if e in kept]  # order kept
    # statements that touch nothing unused come back as the very same objects' values
    removed = sum(refined is None for _, refined in paired(document, result))
    assert len(refined_document["Statement"]) == len(document["Statement"]) - removed


@given(st.data())
def test_new_entries_use_catalog_casing_without_duplicates(data):
    catalog, document, finding = data.draw(cases())
    _, result = run(catalog, document, finding)
    for _, _, new in new_entries(document, result):
        assert len({v.lower() for v in new}) == len(new), new
        for entry in new:
            if not entry.endswith("*"):
                assert catalog.canonical(entry) == entry


@given(cases())
def test_compact_refinement_is_proven_and_exact_on_the_catalog(case):
    """--max-size's coarser prefixes: still proven, still admit exactly the used catalog
    actions the original allowed (the CLI keeps whichever form is shorter)."""
    catalog, document, finding = case
    unused = parse_finding(finding, catalog)
    coarse = refine_and_prove(load_policy(copy.deepcopy(document)), unused, catalog, 20_000,
                              compact=True)
    assert coarse.violations == []
    dead = set(unused.actions)
    for original, compact in coarse.refinement.pairs:
        for action in catalog.all_actions():
            used = not is_unused(action, dead, unused.services)
            assert statement_allows(compact, action) == (statement_allows(original, action)
                                                         and (used or original.get("Effect") != "Allow"))
