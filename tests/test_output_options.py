"""refine's output options: --document-only (the bare document for put-role-policy and
create-policy-version), --quiet (no warnings), and the warning on a result many times larger."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from conftest import EXAMPLES

from refiner.cli import main

FINDING = str(EXAMPLES / "finding.json")
DOCUMENT = {"Version": "2012-10-17", "Statement": [
    {"Sid": "S3ReadAccess", "Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}]}


def role_policy(tmp_path, held):
    """`aws iam get-role-policy` output holding the document as given (object or string)."""
    path = tmp_path / "role-policy.json"
    path.write_text(json.dumps({"RoleName": "ExampleRole", "PolicyName": "Inline",
                                "PolicyDocument": held}, indent=4) + "\n")
    return path


@pytest.mark.parametrize("held", [
    DOCUMENT,
    json.dumps(DOCUMENT, separators=(",", ":")),
    urllib.parse.quote(json.dumps(DOCUMENT, separators=(",", ":"))),
], ids=["object", "compact string", "url-encoded"])
def test_document_only_writes_the_bare_refined_document(tmp_path, capsys, held):
    policy = role_policy(tmp_path, held)
    wrapped, bare = tmp_path / "wrapped.json", tmp_path / "bare.json"
    assert main(["refine", str(policy), "--unused", FINDING, "-o", str(wrapped)]) == 0
    assert main(["refine", str(policy), "--unused", FINDING, "--document-only", "-o", str(bare)]) == 0
    document = json.loads(bare.read_text())
    assert set(document) == {"Version", "Statement"}  # what put-role-policy takes, nothing else
    refined = json.loads(wrapped.read_text())["PolicyDocument"]
    if isinstance(held, str):
        refined = json.loads(urllib.parse.unquote(refined) if "%" in held else refined)
    assert document == refined
    assert "s3:GetObject*" in document["Statement"][0]["Action"]
    if isinstance(held, dict):  # a nested object comes back to the margin
        assert bare.read_text().splitlines()[-1] == "}"


def test_document_only_takes_no_other_shape(tmp_path, capsys):
    policy = role_policy(tmp_path, DOCUMENT)
    for extra in (["--format", "diff"], ["--format", "aws"], ["--in-place"]):
        assert main(["refine", str(policy), "--unused", FINDING, "--document-only", *extra]) == 2
        assert "--document-only" in capsys.readouterr().err


def test_quiet_silences_warnings_not_errors(tmp_path, capsys):
    finding = json.loads((EXAMPLES / "finding.json").read_text())
    finding["analyzedAt"] = "2099-01-01T00:00:00Z"  # after the catalog was taken
    late = tmp_path / "late-finding.json"
    late.write_text(json.dumps(finding))
    out = str(tmp_path / "out.json")
    assert main(["refine", str(EXAMPLES / "policy.json"), "--unused", str(late), "-o", out]) == 0
    assert "warning: the finding was analyzed on 2099-01-01" in capsys.readouterr().err
    assert main(["refine", str(EXAMPLES / "policy.json"), "--unused", str(late), "-o", out,
                 "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["refine", str(tmp_path / "missing.json"), "--unused", str(late), "-q"]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_a_result_over_three_times_its_input_is_named(tmp_path, capsys):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(DOCUMENT))
    assert main(["refine", str(policy), "--unused", FINDING, "-o", str(tmp_path / "a.json")]) == 0
    err = capsys.readouterr().err
    assert "10 Action/NotAction entries, 5.0x the 2 of the input" in err
    assert "--max-size" in err and "--strategy size or characters" in err
    # The worked example grows less (11 entries to 11): no warning.
    assert main(["refine", str(EXAMPLES / "policy.json"), "--unused", FINDING, "-o",
                 str(tmp_path / "b.json")]) == 0
    assert "entries" not in capsys.readouterr().err
