"""`refiner verify`, the CI gate: the rejection matrix, pairing, formats, SMT-LIB export, cvc5."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import z3
from conftest import EXAMPLES

from refiner.cli import main
from refiner.smt import cvc5_result
from refiner.verify import pair_statements

POLICY = str(EXAMPLES / "policy.json")
FINDING = str(EXAMPLES / "finding.json")
PROOFS = Path(__file__).resolve().parents[1] / "proofs"


@pytest.fixture(scope="module")
def refined_document(tmp_path_factory):
    out = tmp_path_factory.mktemp("refined") / "refined.json"
    assert main(["refine", POLICY, "--unused", FINDING, "-o", str(out)]) == 0
    return json.loads(out.read_text())


def run_verify(tmp_path, capsys, document, *extra):
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(document, indent=2))
    code = main(["verify", POLICY, str(path), "--unused", FINDING, "--format", "json", *extra])
    report = json.loads(capsys.readouterr().out)
    return code, report["verdicts"]


def edited(document, index, edit):
    document = copy.deepcopy(document)
    edit(document["Statement"][index])
    return document


def swap(old, new):
    def edit(statement):
        statement["Action"] = [new if a == old else a for a in statement["Action"]]
    return edit


def test_accepts_refiners_own_output(tmp_path, capsys, refined_document):
    code, verdicts = run_verify(tmp_path, capsys, refined_document)
    assert code == 0 and verdicts == []


# The rejection matrix of the issue: (name, edit, exit code, verdict kinds expected).
MATRIX = [
    ("keeps an unused action", (0, lambda s: s["Action"].append("lambda:AddPermission")),
     1, {"unsound"}),
    ("widens GetObject* to Get*", (1, swap("s3:GetObject*", "s3:Get*")), 1, {"unsound"}),
    ("drops a used action", (1, lambda s: s["Action"].remove("s3:GetObject*")), 1, {"incomplete"}),
    ("changes a Resource", (1, lambda s: s.update(Resource="arn:aws:s3:::b/*")), 1, {"structure"}),
    ("differs only in letter case", (1, swap("s3:GetObject*", "S3:GETOBJECT*")), 0, set()),
]


@pytest.mark.parametrize("name,edit,code,kinds", MATRIX, ids=[m[0] for m in MATRIX])
def test_rejection_matrix(tmp_path, capsys, refined_document, name, edit, code, kinds):
    index, change = edit
    got_code, verdicts = run_verify(tmp_path, capsys, edited(refined_document, index, change))
    assert got_code == code
    assert {v["verdict"] for v in verdicts if v["verdict"] != "not-least"} == kinds
    for verdict in verdicts:
        if verdict["verdict"] in ("unsound", "incomplete"):
            assert verdict["witness"] and verdict["statement"] == index


def test_rejects_a_question_mark_turned_into_a_star(tmp_path, capsys):
    original = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObjec?", "s3:List*"], "Resource": "*"}]}
    candidate = copy.deepcopy(original)
    candidate["Statement"][0]["Action"] = ["s3:GetObjec*", "s3:List*"]
    (tmp_path / "o.json").write_text(json.dumps(original))
    (tmp_path / "r.json").write_text(json.dumps(candidate))
    (tmp_path / "f.json").write_text(json.dumps([{"serviceNamespace": "s3",
                                                  "actions": ["ListBucket"]}]))
    code = main(["verify", str(tmp_path / "o.json"), str(tmp_path / "r.json"), "--unused",
                 str(tmp_path / "f.json"), "--format", "json"])
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    assert code == 1
    kinds = {v["verdict"] for v in verdicts}
    assert "unsound" in kinds
    witnesses = [v["witness"] for v in verdicts if v["pattern"] == "s3:GetObjec*"]
    assert witnesses and len(witnesses[0]) != len("s3:getobject")


def test_adding_a_statement_is_rejected(tmp_path, capsys, refined_document):
    document = copy.deepcopy(refined_document)
    document["Statement"].append({"Effect": "Allow", "Action": "s3:List*", "Resource": "*"})
    code, verdicts = run_verify(tmp_path, capsys, document)
    assert code == 1 and [v["verdict"] for v in verdicts] == ["structure"]


def test_not_least_warns_and_rejects_only_when_strict(tmp_path, capsys, refined_document):
    document = edited(refined_document, 1, lambda s: s["Action"].append("s3:GetObjectAcl"))
    code, verdicts = run_verify(tmp_path, capsys, document)
    assert code == 0 and [v["verdict"] for v in verdicts] == ["not-least"]
    assert verdicts[0]["pattern"] == "s3:GetObjectAcl"
    code, _ = run_verify(tmp_path, capsys, document, "--strict")
    assert code == 1


def test_pairing_does_not_need_sids():
    original = [{"Effect": "Allow", "Action": ["lambda:AddPermission"], "Resource": "*"},
                {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "*"},
                {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": "arn:aws:s3:::b"}]
    refined = [{"Effect": "Allow", "Action": ["s3:GetObject*"], "Resource": "arn:aws:s3:::b"}]
    pairs, added = pair_statements(original, refined)
    assert added == [] and [r is None for _, _, r in pairs] == [True, True, False]


def test_accepts_refiners_aws_format_as_refined(tmp_path, capsys):
    out = tmp_path / "aws.json"
    assert main(["refine", POLICY, "--unused", FINDING, "--format", "aws", "-o", str(out)]) == 0
    assert main(["verify", POLICY, str(out), "--unused", FINDING]) == 0
    assert "accepted" in capsys.readouterr().out


def test_undecided_obligation_fails_closed(tmp_path, capsys, refined_document, monkeypatch):
    """Neither the rewriter nor the solver settles anything: the gate must not accept."""
    monkeypatch.setattr(z3, "simplify", lambda expression, *a, **k: expression)
    monkeypatch.setattr(z3.Solver, "check", lambda self, *a: z3.unknown)
    code, verdicts = run_verify(tmp_path, capsys, refined_document)
    assert code == 3 and any(v["verdict"] == "unknown" for v in verdicts)


def test_solver_disagreement_is_an_error(tmp_path, capsys, refined_document, monkeypatch):
    monkeypatch.setattr("refiner.verify.cvc5_result", lambda text, timeout: "sat")
    code, verdicts = run_verify(tmp_path, capsys, refined_document, "--solver", "cvc5")
    assert code == 3 and verdicts[-1]["verdict"] == "solver-disagreement"


def test_sarif_points_at_the_pattern_line(tmp_path, capsys, refined_document):
    document = edited(refined_document, 1, swap("s3:GetObject*", "s3:Get*"))
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(document, indent=2))
    code = main(["verify", POLICY, str(path), "--unused", FINDING, "--format", "sarif"])
    sarif = json.loads(capsys.readouterr().out)
    assert code == 1 and sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    rule_ids = {rule["id"] for rule in run["tool"]["driver"]["rules"]}
    errors = [r for r in run["results"] if r["level"] == "error"]
    assert errors and all(r["ruleId"] in rule_ids for r in run["results"])
    line = errors[0]["locations"][0]["physicalLocation"]["region"]["startLine"]
    assert '"s3:Get*"' in path.read_text().splitlines()[line - 1]


def test_text_report_and_bad_input(tmp_path, capsys):
    assert main(["verify", POLICY, POLICY, "--unused", FINDING]) == 1
    out = capsys.readouterr().out
    assert "unsound" in out and out.strip().splitlines()[-1].startswith("refiner verify: rejected")
    broken = tmp_path / "broken.json"
    broken.write_text("[")
    assert main(["verify", POLICY, str(broken), "--unused", FINDING]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def smt_answers(text: str) -> tuple[str, str]:
    solver = z3.Solver()
    solver.from_string(text)
    return str(solver.check()), cvc5_result(text, 20_000)


def test_emitted_obligations_are_unsat_for_both_solvers(tmp_path, capsys, refined_document):
    folder = tmp_path / "smt"
    code, _ = run_verify(tmp_path, capsys, refined_document, "--emit-smt", str(folder))
    files = sorted(folder.glob("*.smt2"))
    assert code == 0 and files
    for path in files:
        text = path.read_text()
        assert "(check-sat)" in text and "(set-logic QF_S)" in text
        assert smt_answers(text) == ("unsat", "unsat"), path.name


@pytest.mark.parametrize("folder,kinds", [
    ("worked-example", {"statement0-ground", "statement1-ground"}),
    ("wildcards", {"statement0-ground", "statement0-query", "statement1-ground"}),
])
def test_committed_obligations_recheck_with_both_solvers(folder, kinds):
    files = sorted((PROOFS / folder).glob("*.smt2"))
    assert kinds <= {path.stem.split("-", 1)[1] for path in files}
    for path in files:
        assert smt_answers(path.read_text()) == ("unsat", "unsat"), path.name


def test_an_unsound_obligation_is_sat_for_both_solvers():
    """The exported form is not vacuous: the same encoding of a false claim is sat."""
    text = ("(set-logic QF_S)\n(declare-fun action () String)\n"
            "(assert (str.in_re action (re.inter (re.++ (str.to_re \"s3:get\") (re.* re.allchar))"
            " (re.comp (re.++ (str.to_re \"s3:getobject\") (re.* re.allchar))))))\n(check-sat)\n")
    assert smt_answers(text) == ("sat", "sat")


def test_refined_from_stdin_gets_pattern_lines(capsys, monkeypatch, refined_document):
    import io
    import sys

    document = edited(refined_document, 1, swap("s3:GetObject*", "s3:Get*"))
    text = json.dumps(document, indent=2)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main(["verify", POLICY, "-", "--unused", FINDING, "--format", "json"]) == 1
    (unsound,) = [v for v in json.loads(capsys.readouterr().out)["verdicts"]
                  if v["verdict"] == "unsound"]
    assert '"s3:Get*"' in text.splitlines()[unsound["line"] - 1]
