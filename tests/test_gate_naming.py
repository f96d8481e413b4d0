"""The no-new-access gate's verdicts name actions as the catalog spells them, and every witness
still separates HEAD from BASE (checked here with the oracle's regular expressions, no refiner
matching): a real catalog action when one exists, else a concrete service:name string."""

from __future__ import annotations

import json

import pytest
from corpus import policies
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import allowed_by, matches, statement_allows

from refiner.catalog import load_default
from refiner.cli import main
from refiner.gate import gate
from refiner.policy import load_policy
from refiner.prove import Checker


def run_gate(tmp_path, capsys, base: dict, head: dict) -> tuple[int, dict]:
    paths = []
    for name, document in (("base", base), ("head", head)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document, indent=2))
        paths.append(str(path))
    code = main(["verify", *paths, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def document(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_iam_read_only_to_full_access_names_catalog_actions(tmp_path, capsys, catalog):
    """AWS's IAMReadOnlyAccess -> IAMFullAccess: the kernel's lower-case name and its `iam:`
    witness for iam:* become catalog actions, and iam:* lists every action it adds."""
    base, head = policies()["IAMReadOnlyAccess"], policies()["IAMFullAccess"]
    code, report = run_gate(tmp_path, capsys, base, head)
    assert code == 1
    verdicts = {v["pattern"]: v for v in report["verdicts"]}
    named = verdicts["organizations:DescribeAccount"]
    assert named["witness"] == "organizations:DescribeAccount"
    assert named["actions"] == ["organizations:DescribeAccount"]
    wildcard = verdicts["iam:*"]
    every = catalog.all_actions()
    expected = sorted(allowed_by(head["Statement"][0], every)
                      - allowed_by(base["Statement"][0], every), key=str.lower)
    assert {"iam:CreateRole", "iam:PassRole"} <= set(expected)
    assert wildcard["actions"] == [a for a in expected if matches("iam:*", a)]
    assert wildcard["witness"] in wildcard["actions"]
    assert catalog.canonical(wildcard["witness"]) == wildcard["witness"] != "iam:"


@pytest.mark.parametrize("service", ["AWSLambda", "AWSXray", "AmazonCloudWatchEvidently"])
def test_read_only_to_full_access_witnesses_are_actions_head_admits_and_base_does_not(
        tmp_path, capsys, catalog, service):
    """AWS's <service>ReadOnlyAccess -> <service>FullAccess: each verdict's action (the
    kernel's witness and list, or the request model's request) is in the catalog's spelling
    and admitted by HEAD's Allow statements, not by BASE's; where the catalog has no action
    left (Evidently), a service:name string, never a bare `evidently:`."""
    base = policies()[f"{service}ReadOnlyAccess"]
    head = policies()[f"{service}FullAccess"]
    code, report = run_gate(tmp_path, capsys, base, head)
    assert code == 1 and report["verdicts"]
    for verdict in report["verdicts"]:
        named = [verdict["request"]["action"]] if "request" in verdict else \
            [verdict["witness"], *verdict["actions"]]
        for action in named:
            service_name, _, name = action.partition(":")
            assert service_name and name, verdict
            assert catalog.canonical(action) in (None, action), verdict
            assert any(statement_allows(s, action) for s in head["Statement"]), verdict
            assert not any(statement_allows(s, action) for s in base["Statement"]), verdict
        if "request" not in verdict:
            assert verdict["witness"] in verdict["actions"] or not verdict["actions"]


def test_a_narrowed_deny_names_what_it_no_longer_denies(tmp_path, capsys, catalog):
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    narrowed = {**deny, "Action": ["s3:Get*", "s3:List*"]}
    code, report = run_gate(tmp_path, capsys, document(deny), document(narrowed))
    [verdict] = report["verdicts"]
    assert code == 1 and "no longer denies" in verdict["message"]
    assert matches("s3:*", verdict["witness"]) and not any(
        matches(p, verdict["witness"]) for p in narrowed["Action"])
    assert catalog.canonical(verdict["witness"]) == verdict["witness"]
    assert "s3:PutObject" in verdict["actions"] and "s3:GetObject" not in verdict["actions"]


def test_a_pattern_the_catalog_has_no_action_for_keeps_a_concrete_witness(tmp_path, capsys):
    base = document({"Effect": "Allow", "Action": "iam:Get*", "Resource": "*"})
    for pattern in ("iam:Zq*", "notaservice:*"):
        head = document({"Effect": "Allow", "Action": ["iam:Get*", pattern], "Resource": "*"})
        code, report = run_gate(tmp_path, capsys, base, head)
        [verdict] = report["verdicts"]
        service, _, name = verdict["witness"].partition(":")
        assert code == 1 and verdict["actions"] == [] and name, verdict
        assert matches(pattern, verdict["witness"]) and not matches("iam:Get*", verdict["witness"])


# --- the guarantee, on generated statements ----------------------------------------------------

CATALOG = load_default()
PATTERNS = ["s3:GetObject", "s3:Get*", "s3:*", "s3:?etObject", "s3:Put*", "iam:*", "iam:Get*",
            "iam:List*", "iam:PassRole", "iam:Zq*", "ec2:Describe*", "notaservice:*",
            "organizations:DescribeAccount", "*"]
action_lists = st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True)


@st.composite
def one_shape_pairs(draw):
    """BASE and HEAD whose statements all have one shape (the same Effect and Resource, Sids
    aside): Allow with one to three BASE statements (their union), or one NotAction or Deny
    statement on each side."""
    kind = draw(st.sampled_from(["Allow", "Allow", "NotAction", "Deny"]))
    key = "NotAction" if kind == "NotAction" else "Action"
    effect = "Deny" if kind == "Deny" else "Allow"
    sizes = (draw(st.integers(1, 3)) if kind == "Allow" else 1, 1)
    sides = []
    for size in sizes:
        sides.append([{**({"Sid": draw(st.sampled_from(["A", "B"]))} if draw(st.booleans())
                          else {}), "Effect": effect, key: draw(action_lists), "Resource": "*"}
                      for _ in range(size)])
    return sides


def admits(statement: dict, action: str) -> bool:
    return statement_allows({**statement, "Effect": "Allow"}, action)


@settings(max_examples=150, deadline=None)
@given(one_shape_pairs())
def test_a_named_witness_still_separates_head_from_base(pair):
    """Every action a kernel verdict of the gate names (its witness and its list) is one HEAD
    admits and BASE does not (for a Deny: BASE denies and HEAD does not), in the catalog's
    spelling when the catalog has it; a witness is never a bare `service:`."""
    base, head = pair
    found = gate(load_policy(document(*base)), load_policy(document(*head)), Checker([], [], []))
    for violation, _ in found:
        if violation.kind != "unsound" or violation.request is not None:
            continue
        named = [violation.witness, *violation.actions]
        for action in named:
            if head[0]["Effect"] == "Deny":
                assert admits(base[0], action) and not admits(head[0], action), (violation, action)
            else:
                assert admits(head[violation.statement], action), (violation, action)
                assert not any(admits(s, action) for s in base), (violation, action)
            assert CATALOG.canonical(action) in (None, action)
        assert not violation.witness.endswith(":")
