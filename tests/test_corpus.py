"""Real AWS managed policies with seeded findings: every refinement is proven by the gate and
checked again by the brute-force oracle over the whole catalog."""

from __future__ import annotations

import json
import random
import re

import pytest
from corpus import allowed_actions, generate_finding, policies, statements
from oracle import allowed_by, entries, union_matcher

from refiner.finding import parse_finding
from refiner.pipeline import refine_and_prove
from refiner.policy import load_policy

SEED = 20261124
RATES = (0.05, 0.3, 0.9)


SHAPES = {
    "NotAction": lambda s: "NotAction" in s,
    "Deny": lambda s: s.get("Effect") == "Deny",
    "star": lambda s: "*" in entries(s.get("Action", [])),
    "mid-wildcard": lambda s: any(re.search(r":.*\*.", p) for p in entries(s.get("Action", []))),
}


def sample(per_shape: int = 3, others: int = 12) -> list[str]:
    """A fixed sample: a few policies of each shape, some others, and ReadOnlyAccess."""
    chooser = random.Random(SEED)
    names = list(policies())
    picked = {"ReadOnlyAccess"}
    for has_shape in SHAPES.values():
        matching = [n for n in names if any(map(has_shape, statements(policies()[n])))]
        picked |= set(chooser.sample(matching, min(per_shape, len(matching))))
    picked |= set(chooser.sample([n for n in names if n not in picked], others))
    return sorted(picked)


def check_against_oracle(catalog, document, finding):
    unused = parse_finding(finding, catalog)
    result = refine_and_prove(load_policy(json.loads(json.dumps(document))), unused, catalog, 20_000)
    assert result.violations == [], [v.describe() for v in result.violations]
    actions = catalog.all_actions()
    used = {a for a in actions if a.lower() not in unused.actions
            and a.split(":")[0] not in unused.services}
    for original, refined in result.refinement.pairs:
        before, after = allowed_by(original, actions), allowed_by(refined, actions)
        if original.get("Effect") != "Allow":
            assert refined == original
            continue
        assert after <= before, sorted(after - before)[:5]           # nothing new
        assert not (after - used), sorted(after - used)[:5]          # nothing unused
        assert before & used <= after, sorted((before & used) - after)[:5]  # nothing used lost
        if refined is not None and "Action" in refined:
            # new patterns are inside the original's patterns on non-catalog strings too
            inside = union_matcher(entries(original["Action"]))
            for pattern in entries(refined["Action"]):
                assert inside(pattern.replace("*", "Zz").replace("?", "q")), pattern
    return result


@pytest.mark.parametrize("name", sample())
def test_corpus_sample_is_proven_and_right(name, catalog):
    document = policies()[name]
    allowed = allowed_actions(document, catalog.all_actions())
    rate = RATES[sum(map(ord, name)) % len(RATES)]
    finding = generate_finding(allowed, rate, SEED, whole_services=1)
    check_against_oracle(catalog, document, finding)


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
def test_whole_corpus_against_oracle(rate, catalog):
    for document in policies().values():
        allowed = allowed_actions(document, catalog.all_actions())
        finding = generate_finding(allowed, rate, SEED)
        check_against_oracle(catalog, document, finding)


def test_sample_holds_every_shape():
    chosen = [s for n in sample() for s in statements(policies()[n])]
    for shape, has_shape in SHAPES.items():
        assert any(map(has_shape, chosen)), shape
