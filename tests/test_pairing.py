"""How `verify` pairs refined statements with original ones: by structure (Sids included), in
order within a structure, near-linearly, and to the assignment that verifies when one exists."""

from __future__ import annotations

import copy
import json
import time

import pytest
from conftest import EXAMPLES
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from oracle import matches
from strategies import catalogs, findings, patterns

from refiner.cli import main
from refiner.jsontext import loads
from refiner.verification import pair_statements, structure_key

POLICY = str(EXAMPLES / "policy.json")
FINDING = str(EXAMPLES / "finding.json")
GET_OBJECT_UNUSED = [{"serviceNamespace": "s3", "actions": ["GetObject"]}]


def allow(action, resource="*", **keys) -> dict:
    return {**keys, "Effect": "Allow", "Action": action, "Resource": resource}


def partners(pairing) -> list[int | None]:
    """For each original statement, the position of its refined partner (None: dropped)."""
    return [None if refined is None else refined["Action"] for _, _, refined in pairing.pairs]


def write(folder, name: str, value) -> str:
    path = folder / name
    path.write_text(json.dumps(value, indent=2))
    return str(path)


def refine_then_verify(folder, capsys, document, finding, *catalog) -> tuple[int, list[dict]]:
    """refine's own output (through the command line), then `verify` of it: exit code and
    verdicts; (None, []) when refine leaves no statement."""
    original = write(folder, "original.json", document)
    unused = write(folder, "finding.json", finding)
    refined = str(folder / "refined.json")
    code = main(["refine", original, "--unused", unused, *catalog, "-o", refined])
    capsys.readouterr()
    if code == 4:  # nothing is left: the policy is to be detached, there is nothing to verify
        return None, []
    assert code == 0
    code = main(["verify", original, refined, "--unused", unused, *catalog, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)["verdicts"]


def test_statements_reordered_with_their_sids_are_paired_by_sid(tmp_path, capsys):
    refined = tmp_path / "refined.json"
    assert main(["refine", POLICY, "--unused", FINDING, "-o", str(refined)]) == 0
    document = json.loads(refined.read_text())
    document["Statement"].reverse()
    refined.write_text(json.dumps(document, indent=2))
    assert main(["verify", POLICY, str(refined), "--unused", FINDING, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdicts"] == []
    original = json.loads((EXAMPLES / "policy.json").read_text())["Statement"]
    pairing = pair_statements(original, document["Statement"])
    assert [(o["Sid"], r["Sid"]) for _, o, r in pairing.pairs] == [
        ("LambdaAccess", "LambdaAccess"), ("S3ReadAccess", "S3ReadAccess")]


def test_a_changed_sid_is_paired_and_grants_nothing(tmp_path, capsys):
    document = json.loads((EXAMPLES / "policy.json").read_text())
    document["Statement"][1]["Sid"] = "Renamed"
    path = write(tmp_path, "refined.json", document)
    assert main(["verify", POLICY, path, "--unused", FINDING, "--format", "json"]) == 1
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    # Still paired with its original (its unused actions are named there); a Sid is no access.
    assert {v["statement"] for v in verdicts if v["verdict"] == "unsound"} == {0, 1}
    assert not [v for v in verdicts if v["verdict"] == "structure"]


def test_without_sids_pairing_keeps_the_order():
    original = [allow(["lambda:AddPermission"]), allow(["s3:Get*"]),
                allow(["s3:Get*"], "arn:aws:s3:::b")]
    refined = [allow(["s3:GetObject*"], "arn:aws:s3:::b")]
    pairing = pair_statements(original, refined)
    assert pairing.added == [] and partners(pairing) == [None, None, ["s3:GetObject*"]]
    # Identical structure: the first refined statement goes with the first original it fits.
    original = [allow(["s3:Get*"]), allow(["s3:Get*"]), allow(["s3:Get*"])]
    refined = [allow(["s3:GetObject*"]), allow(["s3:GetBucket*"])]
    assert partners(pair_statements(original, refined)) == [
        ["s3:GetObject*"], ["s3:GetBucket*"], None]


def test_structure_key_is_type_strict_and_ignores_only_the_action_list():
    def key(text):
        return structure_key(loads(text, "statement"))

    base = '{"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": %s}}'
    assert key(base % "false") != key(base % "0")
    assert key(base % "1") != key(base % "1.0")
    assert key(base % "1") == key(base.replace('"s3:*"', '["s3:Get*"]') % "1")
    assert key('{"Effect": "Allow", "Action": "s3:*"}') != key('{"Effect": "Allow", "NotAction": "s3:*"}')
    assert key('{"Sid": "A", "Effect": "Allow", "Action": "s3:*"}') != key(
        '{"Sid": "B", "Effect": "Allow", "Action": "s3:*"}')


def test_pairing_is_near_linear():
    """Thousands of statements of one structure (no Sid, the same Resource): the old pairing
    scored every (original, refined) cell and took minutes here."""
    count = 3_000
    original = [allow([f"svc{n}:Get*", f"svc{n}:List*"]) for n in range(count)]
    refined = [allow([f"svc{n}:GetThing", f"svc{n}:List*"]) for n in range(count) if n % 3]
    started = time.perf_counter()
    pairing = pair_statements(original, refined)
    elapsed = time.perf_counter() - started
    assert pairing.added == []
    assert [n for n, _, r in pairing.pairs if r is not None] == [n for n in range(count) if n % 3]
    assert all(r is None or r["Action"][1] == o["Action"][1] for _, o, r in pairing.pairs)
    assert elapsed < 10, f"pairing {count} statements took {elapsed:.1f} s"


@pytest.mark.parametrize("first,second", [("s3:GetObject*", "s3:GetObject"),
                                          ("s3:GetObject", "s3:GetObject*")])
def test_verify_accepts_refines_output_when_statements_tie(tmp_path, capsys, first, second):
    """Identical but for Action: refine drops the GetObject statement and narrows the other."""
    document = {"Version": "2012-10-17", "Statement": [allow(first), allow(second)]}
    code, verdicts = refine_then_verify(tmp_path, capsys, document, GET_OBJECT_UNUSED)
    assert code == 0 and verdicts == []


def test_when_the_quick_pairing_fails_the_verifying_one_is_found(tmp_path, capsys):
    """Each refined pattern lies under the first original's literal prefix, so the quick
    pairing takes it; only the search over proven cells finds that it replaces the second."""
    document = {"Version": "2012-10-17",
                "Statement": [allow("s3:GetObjec?"), allow("s3:GetObject*")]}
    code, verdicts = refine_then_verify(tmp_path, capsys, document, GET_OBJECT_UNUSED)
    assert code == 0 and verdicts == []
    refined = json.loads((tmp_path / "refined.json").read_text())["Statement"]
    assert [r is not None for _, _, r in pair_statements(document["Statement"], refined).pairs] \
        == [True, False]  # the quick pairing alone, which does not verify


def test_a_changed_resource_is_paired_even_without_sids(tmp_path, capsys):
    document = json.loads((EXAMPLES / "policy.json").read_text())
    for statement in document["Statement"]:
        del statement["Sid"]
    original = write(tmp_path, "original.json", document)
    changed = copy.deepcopy(document)
    changed["Statement"][1]["Resource"] = "arn:aws:s3:::b/*"
    changed["Statement"][0]["Action"] = ["lambda:Invoke*", "lambda:ListFunctions"]
    refined = write(tmp_path, "refined.json", changed)
    assert main(["verify", original, refined, "--unused", FINDING, "--format", "json"]) == 1
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    # The narrowed Resource is no verdict; the statement keeps its action obligations.
    assert [(v["statement"], v["message"]) for v in verdicts if v["verdict"] == "unsound"] == [
        (0, "lambda:ListFunctions admits an unused action"),
        (1, "s3:Get* admits an unused action")]


@st.composite
def tied_policies(draw):
    """Policies whose statements share everything but Action (no Sid, the same Resource and
    Condition), with action lists drawn from a small pool (repeated or overlapping), and a
    finding that makes some of them wholly unused: refine drops those, and an original that
    was dropped often could hold the refined statement beside it."""
    catalog = draw(catalogs())
    pool = draw(st.lists(st.lists(patterns(catalog), min_size=1, max_size=3), min_size=1,
                         max_size=4))
    shared = draw(st.sampled_from([{}, {"Condition": {"Bool": {"aws:SecureTransport": "true"}}}]))
    actions = draw(st.lists(st.sampled_from(pool), min_size=2, max_size=7))
    body = [{"Effect": "Allow", "Action": entries, "Resource": "*", **shared}
            for entries in actions]
    finding = draw(findings(catalog))
    dead = draw(st.lists(st.sampled_from(actions), max_size=2))
    for service in sorted(catalog.services):
        names = [name for name in catalog.services[service]
                 if any(matches(p, f"{service}:{name}") for entries in dead for p in entries)]
        if names:
            finding.append({"serviceNamespace": service, "actions": names})
    return catalog, {"Version": "2012-10-17", "Statement": body}, finding


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tied_policies())
def test_verify_accepts_refines_own_output_on_tied_statements(tmp_path_factory, capsys, case):
    catalog, document, finding = case
    folder = tmp_path_factory.mktemp("tied")
    catalog_file = write(folder, "catalog.json", catalog.services)
    code, verdicts = refine_then_verify(folder, capsys, document, finding,
                                        "--catalog", catalog_file)
    assume(code is not None)
    assert code == 0, verdicts
    assert not [v for v in verdicts if v["verdict"] != "not-least"]
