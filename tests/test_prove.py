"""The proof gate (the trusted kernel): it accepts what is right, rejects what is wrong with a
witness the brute-force oracle confirms, and fails closed when the solver gives no answer."""

from __future__ import annotations

import copy
import json

import hypothesis
import pytest
from conftest import EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import is_unused, statement_allows
from strategies import cases, patterns

from refiner import prove
from refiner.errors import InputError
from refiner.finding import parse_finding
from refiner.policy import load_policy
from refiner.prove import Checker, Violation
from refiner.refinement import Refiner


@pytest.fixture(scope="module")
def example(catalog):
    unused = parse_finding(json.loads((EXAMPLES / "unused.json").read_text()), catalog)
    policy = load_policy(json.loads((EXAMPLES / "policy.json").read_text()))
    refinement = Refiner(unused, catalog).refine_policy(policy)
    checker = Checker(catalog.all_actions(), unused.actions, unused.services)
    return checker, refinement.pairs


def check(example, index, edit):
    checker, pairs = example
    original, refined = pairs[index]
    mutated = copy.deepcopy(refined)
    edit(mutated)
    return checker.check_statement(index, original, mutated)


def replace(old, new):
    def edit(statement):
        statement["Action"] = [new if a == old else a for a in statement["Action"]]
    return edit


def test_accepts_the_refiners_output(example):
    checker, pairs = example
    for index, (original, refined) in enumerate(pairs):
        assert checker.check_statement(index, original, refined) == []


def test_rejects_keeping_an_unused_action(example):
    (violation,) = check(example, 0, lambda s: s["Action"].append("lambda:AddPermission"))
    assert violation.kind == "unsound" and violation.witness == "lambda:addpermission"


def test_rejects_widening_a_prefix(example):
    (violation,) = check(example, 1, replace("s3:GetObject*", "s3:Get*"))
    assert violation.kind == "unsound"
    assert violation.witness.startswith("s3:get") and not violation.witness.startswith("s3:getobject")


def test_rejects_dropping_a_used_action(example):
    (violation,) = check(example, 1, lambda s: s["Action"].remove("s3:GetJobTagging"))
    assert violation.kind == "incomplete" and violation.witness == "s3:getjobtagging"


def test_rejects_a_changed_resource(example):
    (violation,) = check(example, 1, lambda s: s.update(Resource="arn:aws:s3:::bucket/*"))
    assert violation.kind == "structure" and "Resource" in violation.message


def test_rejects_a_question_mark_turned_into_a_star(catalog):
    original = {"Effect": "Allow", "Action": "s3:GetObjec?", "Resource": "*"}
    refined = {"Effect": "Allow", "Action": "s3:GetObjec*", "Resource": "*"}
    checker = Checker(catalog.all_actions(), [], [])
    (violation,) = checker.check_statement(0, original, refined)
    assert violation.kind == "unsound"
    assert violation.witness.startswith("s3:getobjec") and len(violation.witness) != len("s3:getobject")


def test_accepts_a_change_of_letter_case_only(example):
    assert check(example, 1, replace("s3:GetObject*", "S3:getobject*")) == []


def test_rejects_a_removed_or_changed_deny(catalog):
    deny = {"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"}
    checker = Checker(catalog.all_actions(), ["s3:DeleteObject"], [])
    assert checker.check_statement(0, deny, None)[0].kind == "structure"
    narrowed = dict(deny, Action="s3:DeleteBucket")
    assert checker.check_statement(0, deny, narrowed)[0].kind == "structure"
    assert checker.check_statement(0, deny, dict(deny)) == []


def test_rejects_a_pattern_reaching_into_a_wholly_unused_service(catalog):
    original = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    refined = {"Effect": "Allow", "Action": ["s3:*", "ec2:Describe*"], "Resource": "*"}
    checker = Checker([a for a in catalog.all_actions() if a.startswith(("s3:", "ec2:"))],
                      [], ["ec2"])
    (violation,) = checker.check_statement(0, original, refined)
    assert violation.kind == "unsound" and violation.witness.startswith("ec2:describe")


def test_not_action_must_exclude_unused_and_keep_used(catalog):
    original = {"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"}
    checker = Checker(catalog.all_actions(), ["s3:DeleteBucket"], ["ec2"])
    good = {"Effect": "Allow", "NotAction": ["iam:*", "ec2:*", "s3:DeleteBucket"], "Resource": "*"}
    assert checker.check_statement(0, original, good) == []
    missing = {"Effect": "Allow", "NotAction": ["iam:*", "ec2:*"], "Resource": "*"}
    assert checker.check_statement(0, original, missing)[0].witness == "s3:deletebucket"
    too_much = {"Effect": "Allow", "NotAction": ["iam:*", "ec2:*", "s3:Delete*"], "Resource": "*"}
    (violation,) = checker.check_statement(0, original, too_much)
    assert violation.kind == "incomplete" and violation.witness.startswith("s3:delete")
    lost = {"Effect": "Allow", "NotAction": ["ec2:*", "s3:DeleteBucket"], "Resource": "*"}
    assert checker.check_statement(0, original, lost)[0].witness.startswith("iam:")


def test_a_solver_without_an_answer_rejects(catalog, monkeypatch):
    import z3

    monkeypatch.setattr(prove, "_TRUE_CLAIMS", None)  # no claim remembered true: Z3 decides all
    checker = Checker(catalog.all_actions(), [], [])
    monkeypatch.setattr(z3, "simplify", lambda expression, *a, **k: expression)
    monkeypatch.setattr(z3.Solver, "check", lambda self, *a: z3.unknown)
    original = {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}
    refined = {"Effect": "Allow", "Action": "s3:GetObject*", "Resource": "*"}
    violations = checker.check_statement(0, original, refined)
    assert violations and all(v.kind in ("unknown", "incomplete") for v in violations)
    assert any(v.kind == "unknown" for v in violations)


def test_violation_describes_itself():
    text = Violation("unsound", 2, "S3", "admits an unused action", "s3:x").describe()
    assert text == "unsound: statement 2 (S3): admits an unused action: s3:x"


# --- the checker against the brute-force oracle on random mutations ------------------------

def mutate(data, catalog, statement):
    mutated = copy.deepcopy(statement)
    key = "Action" if "Action" in mutated else "NotAction"
    values = [mutated[key]] if isinstance(mutated[key], str) else list(mutated[key])
    move = data.draw(st.sampled_from(["add", "remove", "widen", "ask", "none"]))
    if move == "add":
        values.append(data.draw(patterns(catalog)))
    elif move == "remove" and len(values) > 1:
        values.pop(data.draw(st.integers(0, len(values) - 1)))
    elif move == "widen":
        at = data.draw(st.integers(0, len(values) - 1))
        cut = data.draw(st.integers(values[at].index(":") + 1, len(values[at])))
        values[at] = values[at][:cut] + "*"
    elif move == "ask":
        at = data.draw(st.integers(0, len(values) - 1))
        if "*" in values[at]:
            values[at] = values[at].replace("*", "?", 1)
    mutated[key] = values
    return mutated


def oracle_violation(original, refined, strings, used, unused, dead_services):
    for string in strings:
        allowed = statement_allows(refined, string)
        if allowed and not statement_allows(original, string):
            return string
        if allowed and is_unused(string, unused, dead_services):
            return string
    for action in used:
        if statement_allows(original, action) and not statement_allows(refined, action):
            return action
    return None


@given(cases(), st.data())
def test_checker_rejects_exactly_the_mutations_the_oracle_faults(case, data):
    catalog, document, finding = case
    unused = parse_finding(finding, catalog)
    refinement = Refiner(unused, catalog).refine_policy(load_policy(copy.deepcopy(document)))
    checker = Checker(catalog.all_actions(), unused.actions, unused.services)
    dead = set(unused.actions)
    used = [a for a in catalog.all_actions() if not is_unused(a, dead, unused.services)]
    for index, (original, refined) in enumerate(refinement.pairs):
        if refined is None or original.get("Effect") != "Allow":
            continue
        mutated = mutate(data, catalog, refined)
        violations = checker.check_statement(index, original, mutated)
        assert all(v.kind in ("unsound", "incomplete") for v in violations), violations
        strings = set(catalog.all_actions()) | set(unused.actions.values())
        strings |= {f"{s}:Zz" for s in unused.services}
        used_lower = {a.lower() for a in used}
        for violation in violations:  # every witness is a real violation
            w = violation.witness
            if violation.kind == "unsound":
                assert statement_allows(mutated, w)
                assert not statement_allows(original, w) or is_unused(w, dead, unused.services)
            else:
                assert w in used_lower and statement_allows(original, w)
                assert not statement_allows(mutated, w)
        if oracle_violation(original, mutated, strings, used, dead, unused.services):
            assert violations  # every fault the oracle sees is rejected


@given(cases(), st.data())
def test_claims_remembered_true_change_no_verdict(case, data):
    """The ground claims Z3 rewrote to true are not sent again in the same process: a Checker
    that finds them remembered gives the verdicts of one that starts with nothing proven, and
    of one that records every obligation (which never skips one)."""
    catalog, document, finding = case
    unused = parse_finding(finding, catalog)
    refinement = Refiner(unused, catalog).refine_policy(load_policy(copy.deepcopy(document)))
    pairs = [(original, mutate(data, catalog, refined) if refined is not None
              and original.get("Effect") == "Allow" else refined)
             for original, refined in refinement.pairs]

    def verdicts(record=False):
        checker = Checker(catalog, unused.actions, unused.services, record=record)
        return [checker.check_statement(index, original, refined)
                for index, (original, refined) in enumerate(pairs)]

    saved = prove._TRUE_CLAIMS
    try:
        prove._TRUE_CLAIMS = set()
        fresh = verdicts()
        remembered = verdicts()
        recorded = verdicts(record=True)
    finally:
        prove._TRUE_CLAIMS = saved
    assert remembered == fresh == recorded


def test_a_claim_remembered_true_is_not_sent_again(catalog, monkeypatch):
    """The worked example's obligations are all ground: proven once, a second Checker of the
    same statements proves them without a rewrite."""
    monkeypatch.setattr(prove, "_TRUE_CLAIMS", set())
    unused = parse_finding(json.loads((EXAMPLES / "unused.json").read_text()), catalog)
    policy = load_policy(json.loads((EXAMPLES / "policy.json").read_text()))
    pairs = Refiner(unused, catalog).refine_policy(policy).pairs
    checkers = [Checker(catalog, unused.actions, unused.services) for _ in range(2)]
    for checker in checkers:
        assert all(checker.check_statement(index, original, refined) == []
                   for index, (original, refined) in enumerate(pairs))
    assert checkers[0].queries > 0 and checkers[1].queries == 0


def test_a_claim_rewritten_false_is_not_remembered(catalog, monkeypatch):
    monkeypatch.setattr(prove, "_TRUE_CLAIMS", set())
    original = {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "*"}
    refined = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}
    for _ in range(2):  # the second Checker finds the same violation, not a remembered pass
        (violation,) = Checker(catalog, [], []).check_statement(0, original, refined)
        assert violation.kind == "incomplete"


def test_witness_of_a_widened_pattern_is_outside_every_original(catalog):
    original = {"Effect": "Allow", "Action": ["s3:GetObject*", "s3:GetBucketAcl"], "Resource": "*"}
    refined = {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "*"}
    checker = Checker(catalog, [], [])
    violations = checker.check_statement(0, original, refined)
    unsound = [v for v in violations if v.kind == "unsound"]
    assert unsound and not statement_allows(original, unsound[0].witness)
    assert statement_allows(refined, unsound[0].witness)


@pytest.mark.parametrize("refined_entry,containers,accepted", [
    ("s3:GetObject*", ["s3:Get*"], True),
    ("s3:getobject*", ["S3:GET*"], True),
    ("s3:GetObject*", ["s3:GetO*", "s3:List*"], True),
    ("s3:Get*", ["s3:GetObject*"], False),
    ("s3:Get*", ["s3:GetA*", "s3:GetB*", "s3:Get"], False),
    ("s3:GetObject*", ["s3:GetObject"], False),
    ("s3:GetObject*", ["s3:*Object*"], True),   # a glob container goes to the solver
    ("s3:Get*", ["s3:G?t*"], True),
])
def test_containment_of_prefix_patterns(catalog, refined_entry, containers, accepted):
    """w* inside v1* | v2* ... exactly when some vi starts w (the ground form of the proof);
    the same answer as the solver gives over all strings, and a real witness when not."""
    original = {"Effect": "Allow", "Action": containers, "Resource": "*"}
    refined = {"Effect": "Allow", "Action": [refined_entry] + containers[1:], "Resource": "*"}
    checker = Checker(catalog, [], [])
    unsound = [v for v in checker.check_statement(0, original, refined) if v.kind == "unsound"]
    assert (not unsound) == accepted
    for violation in unsound:
        assert statement_allows(refined, violation.witness)
        assert not statement_allows(original, violation.witness)


def test_a_remembered_claims_key_names_that_claim_only():
    """Two claims that differ (a pattern holding the separator of another key's list, no
    `within` against an empty one) never share the key the memory of true claims uses."""
    claims = [(["a:x"], None, ["a:y", "a:x"]), (["a:x"], None, ["a:y\na:x"]),
              (["a:x"], "", []), (["a:x"], None, []), (["a:x", "a:y"], None, []),
              (["a:x\na:y"], None, []), (["a:x"], "a:*", ["a:x"]), (["a:x"], "a:*\0", ["a:x"])]
    assert len({prove._claim_key(claim) for claim in claims}) == len(claims)


PREFIX_PATTERNS = st.lists(st.from_regex(r"\*|[ab]{1,2}[*?]?(:[ab:]{0,3}[*?]?[ab]{0,2})?",
                                         fullmatch=True), max_size=8)


@settings(max_examples=300)
@given(PREFIX_PATTERNS, st.from_regex(r"[ab]{0,3}(:[ab:]{0,4})?", fullmatch=True),
       st.none() | st.integers(0, 7))
@hypothesis.example(["a:b*", "a*", "*"], "x", 0)
def test_patterns_that_could_contain_a_string_are_those_whose_literal_prefix_starts_it(
        texts, string, pick):
    """The index's lookup (only the prefix lengths of the string's service are probed) gives
    every pattern whose literal prefix starts the string, longest prefix first, and no other."""
    prefix_of = {}
    for text in texts:
        try:
            prefix_of[text] = prove.literal_prefix(prove.parse(text))
        except InputError:  # not an action pattern: the index is never given one
            continue
    if prefix_of and pick is not None:  # a string that some pattern's prefix starts
        string = list(prefix_of.values())[pick % len(prefix_of)] + string
    index = prove._Index(list(prefix_of))
    expected = sorted((text for text, prefix in prefix_of.items() if string.startswith(prefix)),
                      key=lambda text: -len(prefix_of[text]))
    assert index.could_contain(string) == expected
