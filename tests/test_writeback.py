"""Minimal diffs: a refinement written back changes only the changed Action/NotAction values and
cuts out removed statements; every other byte of the input stays as it was, in any layout."""

from __future__ import annotations

import functools
import itertools
import json

from corpus import allowed_actions, generate_finding, policies
from hypothesis import given, settings
from hypothesis import strategies as st

from refiner.catalog import load_default
from refiner.finding import parse_finding
from refiner.pipeline import refine_and_prove
from refiner.policy import load_policy, parse_json_text
from refiner.prove import same_json
from refiner.writeback import locate


def layouts() -> dict:
    """The ways people write policy files: indent widths, tabs, one line, CRLF, no final
    newline, and a sloppy mix."""
    return {
        "indent 2": lambda d: json.dumps(d, indent=2) + "\n",
        "indent 4": lambda d: json.dumps(d, indent=4) + "\n",
        "tabs": lambda d: json.dumps(d, indent="\t") + "\n",
        "one line": lambda d: json.dumps(d),
        "compact": lambda d: json.dumps(d, separators=(",", ":")),
        "crlf": lambda d: json.dumps(d, indent=2).replace("\n", "\r\n") + "\r\n",
        "no final newline": lambda d: json.dumps(d, indent=3),
        "sloppy": lambda d: json.dumps(d, indent=1, separators=(" ,", " :  ")) + "\n\n",
    }


embedded_catalog = functools.lru_cache(maxsize=1)(load_default)
NAMES = sorted(policies())


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(NAMES), layout=st.sampled_from(sorted(layouts())),
       rate=st.sampled_from([0.05, 0.3, 0.9]), seed=st.integers(0, 2**16))
def test_only_changed_action_lists_and_removed_statements_differ(name, layout, rate, seed):
    catalog = embedded_catalog()
    document = policies()[name]
    text = layouts()[layout](document)
    finding = generate_finding(allowed_actions(document, catalog.all_actions()), rate, seed)
    policy = load_policy(parse_json_text(text, name), name, text)
    run = refine_and_prove(policy, parse_finding(finding, catalog), catalog, 20_000)
    assert run.violations == []
    if not run.refinement.changed:
        assert run.text == text  # byte for byte
        return
    if run.detach:
        return
    _same_outside_action_values(text, run.text, run.refinement.pairs)
    # The statements read back keep every key but the action list, by type and value.
    for (original, new), written in zip([p for p in run.refinement.pairs if p[1] is not None],
                                        run.refined.statements, strict=True):
        key = "Action" if "Action" in original else "NotAction"
        assert list(written) == list(original)
        assert all(same_json(written[k], original[k]) for k in original if k != key)
        assert written[key] == new[key]
    assert (run.text.endswith("\n"), run.text.endswith("\r\n")) == (text.endswith("\n"),
                                                                     text.endswith("\r\n"))


def _same_outside_action_values(before: str, after: str, pairs) -> None:
    """after is before with some Action/NotAction values rewritten and the removed statements
    (each with one separator) cut out: everything else is the same text."""
    old_list, new_list = locate(before).members["Statement"], locate(after).members["Statement"]
    assert before[:old_list.start] == after[:new_list.start]
    assert before[old_list.end:] == after[new_list.end:]
    if not isinstance(old_list.members, list):
        old_nodes, new_nodes, kept = [old_list], [new_list], pairs
    else:
        old_nodes, new_nodes = old_list.members, new_list.members
        kept = [pair for pair in pairs if pair[1] is not None]
        old_nodes = [node for node, (_, refined) in zip(old_nodes, pairs, strict=True)
                     if refined is not None]
        assert before[old_list.start:old_list.members[0].start] == \
            after[new_list.start:new_nodes[0].start]  # "[" and the layout after it
        assert before[old_list.members[-1].end:old_list.end] == \
            after[new_nodes[-1].end:new_list.end]
        separators = {before[a.end:b.start] for a, b in itertools.pairwise(old_list.members)}
        assert {after[a.end:b.start] for a, b in itertools.pairwise(new_nodes)} <= separators
    for old, new, (original, refined) in zip(old_nodes, new_nodes, kept, strict=True):
        if refined is original:
            assert before[old.start:old.end] == after[new.start:new.end]
            continue
        key = "Action" if "Action" in original else "NotAction"
        old_value, new_value = old.members[key], new.members[key]
        assert before[old.start:old_value.start] == after[new.start:new_value.start]
        assert before[old_value.end:old.end] == after[new_value.end:new.end]
        if isinstance(old_value.members, list) and isinstance(new_value.members, list):
            # A list stays laid out as it was: the same opening and closing.
            old_items, new_items = old_value.members, new_value.members
            assert after[new_value.start:new_items[0].start] == \
                before[old_value.start:old_items[0].start]
            assert after[new_items[-1].end:new_value.end] == before[old_items[-1].end:old_value.end]


def test_kept_spans_equal_computed_ones():
    from refiner.writeback import locate

    text = '{"Statement": [{"Action": ["s3:GetObject", "s3:Put*"], "Effect": "Allow"}]}'
    fresh = locate.__wrapped__(text)
    assert locate(text) == fresh and locate(text) == fresh  # computed, then kept
    assert locate(text + " ") == locate.__wrapped__(text + " ")
