"""The not-least lint of `verify`, outside the kernel: what it flags, --max-size, its deadline."""

from __future__ import annotations

import copy
import json
import time

from corpus import allowed_actions, generate_finding, policies
from hypothesis import given
from oracle import matches
from strategies import cases

from refiner.catalog import Catalog
from refiner.cli import main
from refiner.finding import parse_finding
from refiner.lint import SKIPPED, Lint
from refiner.patterns import WORD_START
from refiner.policy import load_policy
from refiner.prove import Checker
from refiner.refinement import Refiner

CATALOG = Catalog({"s3": ["GetObject", "GetObjectAcl", "GetObjectTagging", "GetBucketAcl",
                          "GetBucketPolicy", "ListBucket", "PutObject"]}, "test")
UNUSED = parse_finding([{"serviceNamespace": "s3", "actions": ["GetBucketAcl", "PutObject"]}],
                       CATALOG)
ORIGINAL = {"Sid": "Read", "Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}


def lint(refined_actions, original=ORIGINAL, **options) -> list[tuple[str | None, str]]:
    refined = {**original, "Action": refined_actions}
    warnings = Lint(CATALOG, UNUSED, **options).check(0, original, refined)
    assert all(w.kind == "not-least" and w.sid == "Read" for w in warnings)
    return [(w.pattern, w.message) for w in warnings]


def test_the_lint_is_not_in_the_kernel():
    assert not hasattr(Checker, "check_least")


def test_an_entry_that_admits_no_used_action_could_be_dropped():
    assert lint(["s3:GetObject*", "s3:GetBucketPolicy", "s3:GetBucketX*", "s3:List*"]) == [
        ("s3:GetBucketX*", "s3:GetBucketX* admits no used action and could be dropped")]


def test_an_entry_other_entries_cover_could_be_dropped():
    assert lint(["s3:GetObject*", "s3:GetObjectAcl", "s3:GetBucketPolicy", "s3:List*"]) == [
        ("s3:GetObjectAcl",
         "s3:GetObjectAcl could be dropped: other entries admit every used action it does")]


def test_a_wildcard_that_admits_one_used_action_could_be_narrowed_to_it():
    assert lint(["s3:GetObject*", "s3:GetBucket*", "s3:List*"]) == [
        ("s3:GetBucket*", "s3:GetBucket* admits one used action and could be narrowed to it")]


def test_a_prefix_cut_inside_a_word_could_be_narrowed_to_the_word():
    assert lint(["s3:GetObj*", "s3:GetBucketPolicy", "s3:List*"]) == [
        ("s3:GetObj*", "s3:GetObj* cuts a word short and could be narrowed to s3:GetObject*")]


def test_entries_kept_from_the_original_are_never_questioned():
    original = {**ORIGINAL, "Action": ["s3:GetObj*", "s3:GetBucket*", "s3:List*"]}
    assert lint(["s3:GetObj*", "s3:GetBucket*", "s3:List*"], original) == []


def test_with_max_size_coarsening_is_allowed_but_dropping_is_still_asked():
    assert lint(["s3:GetObj*", "s3:GetBucket*", "s3:List*"], coarse=True) == []
    assert lint(["s3:GetObject*", "s3:GetObjectAcl", "s3:GetBucketP*", "s3:GetBucketX*",
                 "s3:List*"], coarse=True) == [
        ("s3:GetObjectAcl",
         "s3:GetObjectAcl could be dropped: other entries admit every used action it does"),
        ("s3:GetBucketX*", "s3:GetBucketX* admits no used action and could be dropped")]


def test_past_its_deadline_the_lint_says_it_was_skipped_once():
    refined = {**ORIGINAL, "Action": ["s3:GetObj*", "s3:GetBucket*", "s3:List*"]}
    pairs = [(0, ORIGINAL, ORIGINAL), (1, ORIGINAL, refined), (2, ORIGINAL, refined)]
    warnings = Lint(CATALOG, UNUSED, deadline=time.monotonic() - 1).check_all(pairs)
    assert [(w.kind, w.statement, w.message) for w in warnings] == [("not-least", 1, SKIPPED)]
    assert len(Lint(CATALOG, UNUSED, deadline=time.monotonic() + 60).check_all(pairs)) == 4


def test_verify_reports_a_skipped_lint_as_a_warning(tmp_path, capsys, monkeypatch):
    from conftest import EXAMPLES

    policy, finding = str(EXAMPLES / "policy.json"), str(EXAMPLES / "finding.json")
    refined = tmp_path / "refined.json"
    assert main(["refine", policy, "--unused", finding, "-o", str(refined)]) == 0
    document = json.loads(refined.read_text())
    document["Statement"][1]["Action"].append("s3:GetObjectAcl")  # one not-least entry
    refined.write_text(json.dumps(document, indent=2))
    monkeypatch.setattr("refiner.verification.LINT_RESERVE_SECONDS", 10**6)  # the lint has no time
    command = ["verify", policy, str(refined), "--unused", finding, "--format", "json"]
    assert main(command) == 0
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    assert [(v["verdict"], v["message"]) for v in verdicts] == [("not-least", SKIPPED)]
    assert main([*command, "--strict"]) == 1  # --strict cannot accept what was not linted
    capsys.readouterr()


def test_the_lint_is_cheap_on_many_mid_wildcards(catalog):
    """`ec2:*` narrowed to 150 entries `ec2:*Word*`: the Z3-based lint ran for over 600 s."""
    actions = catalog.actions_of("ec2")
    words: dict[str, int] = {}
    for action in actions:
        for word in WORD_START.split(action.split(":", 1)[1]):
            words[word] = words.get(word, 0) + 1
    common = sorted((w for w in words if len(w) > 2), key=lambda w: (-words[w], w))[:150]
    refined_actions = [f"ec2:*{word}*" for word in common]
    dead = [a.split(":", 1)[1] for a in actions
            if not any(matches(p, a) for p in refined_actions)][:1]
    unused = parse_finding([{"serviceNamespace": "ec2", "actions": dead}], catalog)
    original = {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}
    refined = {**original, "Action": refined_actions}
    started = time.perf_counter()
    warnings = Lint(catalog, unused).check(0, original, refined)
    elapsed = time.perf_counter() - started
    assert elapsed < 20, f"the lint took {elapsed:.1f} s"
    used = [a for a in actions if a.split(":", 1)[1] not in dead]
    assert warnings
    for warning in warnings:  # each warning agrees with the brute-force reading of IAM matching
        admitted = [a for a in used if matches(warning.pattern, a)]
        others = [p for p in refined_actions if p != warning.pattern]
        if "admits no used action" in warning.message:
            assert admitted == []
        elif "other entries admit" in warning.message:
            assert admitted and all(any(matches(p, a) for p in others) for a in admitted)
        else:
            assert len(admitted) == 1, warning.message


@given(cases())
def test_the_lint_finds_nothing_to_narrow_in_refiners_output(case):
    """The lint and the refiner agree on what least general means."""
    catalog, document, finding = case
    unused = parse_finding(finding, catalog)
    refinement = Refiner(unused, catalog).refine_policy(load_policy(copy.deepcopy(document)))
    checker = Lint(catalog, unused)
    for index, (original, refined) in enumerate(refinement.pairs):
        assert checker.check(index, original, refined) == []


def test_refines_max_size_output_passes_verify_strict_with_max_size(tmp_path, capsys, catalog):
    """--max-size takes coarser safe prefixes on purpose: verify --max-size does not flag them."""
    document = policies()["ReadOnlyAccess"]
    finding = generate_finding(allowed_actions(document, catalog.all_actions()), 0.3, 20261124)
    original, unused = tmp_path / "policy.json", tmp_path / "finding.json"
    original.write_text(json.dumps(document, indent=2))
    unused.write_text(json.dumps(finding))
    refined = tmp_path / "refined.json"
    assert main(["refine", str(original), "--unused", str(unused), "--max-size", "100000",
                 "-o", str(refined)]) == 0
    command = ["verify", str(original), str(refined), "--unused", str(unused), "--strict",
               "--format", "json"]
    assert main([*command, "--max-size", "100000"]) == 0
    assert json.loads(capsys.readouterr().out)["verdicts"] == []
    assert main(command) == 1  # without it, the intended coarsening is flagged
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    assert verdicts and {v["verdict"] for v in verdicts} == {"not-least"}
