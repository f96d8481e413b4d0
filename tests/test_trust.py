"""Trust at the edges: no input lost, no wrong input accepted silently, nothing rewritten that
did not change. One test per hole found by users and by an adversarial tester."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
import urllib.parse

import pytest
from conftest import EXAMPLES

from refiner.cli import main
from refiner.policy import load_policy

POLICY_TEXT = (EXAMPLES / "policy.json").read_text()
FINDING_V2 = json.loads((EXAMPLES / "finding.json").read_text())
LIST_FINDING = str(EXAMPLES / "unused.json")
NOTHING_UNUSED = [{"serviceNamespace": "ec2", "actions": ["RunInstances"]}]


def write(path, value) -> str:
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def refine(*args) -> int:
    return main(["refine", *map(str, args)])


def error_line(capsys, code: int, expected: int = 2) -> str:
    captured = capsys.readouterr()
    assert code == expected, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refiner: ") and "Traceback" not in captured.err
    return lines[0]


# --- no data loss -----------------------------------------------------------------------------

def test_in_place_refuses_other_formats_and_keeps_the_oldest_original(tmp_path, capsys):
    role = tmp_path / "role.json"
    role.write_text(POLICY_TEXT)
    assert refine(role, "--unused", LIST_FINDING, "--in-place") == 0
    assert "original is kept as" in capsys.readouterr().err
    first = role.read_text()
    assert (tmp_path / "role.json.bak").read_text() == POLICY_TEXT
    for form in ("diff", "aws"):  # once left role.json empty and the original lost
        line = error_line(capsys, refine(role, "--unused", LIST_FINDING, "--in-place",
                                         "--format", form))
        assert "--in-place" in line
        assert role.read_text() == first
    # A second in-place run with more unused actions: a new backup, the first one kept.
    more = write(tmp_path / "more.json", [{"serviceNamespace": "s3", "actions": ["ListBucket"]}])
    assert refine(role, "--unused", more, "--in-place") == 0
    assert (tmp_path / "role.json.bak").read_text() == POLICY_TEXT
    assert (tmp_path / "role.json.bak.1").read_text() == first
    capsys.readouterr()


def test_in_place_keeps_wrapper_mode_and_line_endings(tmp_path, capsys):
    document = json.loads(POLICY_TEXT)
    wrapper = {"RoleName": "ExampleRole", "PolicyName": "Inline",
               "PolicyDocument": urllib.parse.quote(json.dumps(document))}
    role = tmp_path / "role.json"
    role.write_bytes(json.dumps(wrapper, indent=4).replace("\n", "\r\n").encode())
    os.chmod(role, 0o640)
    assert refine(role, "--unused", LIST_FINDING, "--in-place") == 0
    written = role.read_bytes().decode()
    assert stat.S_IMODE(role.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "role.json.bak").stat().st_mode) == 0o640
    assert written.count("\r\n") == written.count("\n")  # every line ending still CRLF
    reread = json.loads(written)
    assert list(reread) == ["RoleName", "PolicyName", "PolicyDocument"]
    assert load_policy(reread).document["Statement"][0]["Action"] == ["lambda:Invoke*"]
    capsys.readouterr()


def test_output_file_takes_the_input_mode(tmp_path, capsys):
    policy = tmp_path / "p.json"
    policy.write_text(POLICY_TEXT)
    os.chmod(policy, 0o644)
    out = tmp_path / "out.json"
    assert refine(policy, "--unused", LIST_FINDING, "-o", out) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    capsys.readouterr()


def test_nothing_is_written_when_nothing_changes(tmp_path, capsys):
    policy = tmp_path / "p.json"
    policy.write_text(POLICY_TEXT)
    before = policy.stat().st_mtime_ns
    unused = write(tmp_path / "f.json", NOTHING_UNUSED)
    assert refine(policy, "--unused", unused, "--in-place") == 0
    assert "nothing to change" in capsys.readouterr().err
    assert policy.stat().st_mtime_ns == before and not (tmp_path / "p.json.bak").exists()
    assert refine(policy, "--unused", unused) == 0
    assert capsys.readouterr().out == POLICY_TEXT  # byte for byte


@pytest.mark.parametrize("target", ["missing/dir/x.json", "."])
def test_unwritable_output_is_bad_usage(tmp_path, capsys, target):
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    line = error_line(capsys, refine(policy, "--unused", LIST_FINDING, "-o", tmp_path / target))
    assert "cannot write" in line


def test_detach_writes_nothing_in_place(tmp_path, capsys):
    wrapper = {"RoleName": "ExampleRole", "PolicyName": "Inline", "PolicyDocument": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:GetFunction", "Resource": "*"}]}}
    role = tmp_path / "role.json"
    role.write_text(json.dumps(wrapper))
    before = role.read_text()
    assert refine(role, "--unused", LIST_FINDING, "--in-place") == 4
    assert "detach" in capsys.readouterr().err
    assert role.read_text() == before and not (tmp_path / "role.json.bak").exists()
    assert refine(role, "--unused", LIST_FINDING) == 4
    assert capsys.readouterr().out == ""  # never a policy with "Statement": []


# --- wrong input is refused, with one line that says what it is --------------------------------

def finding_with(**changes) -> dict:
    finding = copy.deepcopy(FINDING_V2)
    finding.update(changes)
    return finding


@pytest.mark.parametrize("finding,needle", [
    (finding_with(findingType="UnusedIAMRole"), "UnusedIAMRole finding, not UnusedPermission"),
    (finding_with(findingType="ExternalAccess"), "ExternalAccess finding"),
    (finding_with(status="ARCHIVED"), "status is ARCHIVED"),
    (finding_with(nextToken="page2"), "give every page"),
    ([{"serviceNamespace": "s3", "actions": {}}], "must be a list"),
    ([{"serviceNamespace": "s3", "actions": 0}], "must be a list"),
    ([{"serviceNamespace": "s3", "actions": False}], "must be a list"),
    ([{"serviceNamespace": "s3", "actions": ""}], "must be a list"),
    ([{"serviceNamespace": "s3", "actions": None}], "must be a list"),
    ('[{"serviceNamespace": "s3", "actions": ["GetObject"], "actions": []}]', "repeats the key"),
    (json.loads(POLICY_TEXT), "looks like an IAM policy, not an unused-permissions finding"),
    ("Resources:\n  Role:\n    Type: AWS::IAM::Role\n", "CloudFormation template in YAML"),
])
def test_wrong_findings_are_refused(tmp_path, capsys, finding, needle):
    path = write(tmp_path / "finding.json", finding)
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    assert needle in error_line(capsys, refine(policy, "--unused", path))


def test_inactive_finding_is_used_when_asked(tmp_path, capsys):
    path = write(tmp_path / "finding.json", finding_with(status="RESOLVED"))
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    assert refine(policy, "--unused", path, "--allow-inactive-finding") == 0
    capsys.readouterr()


def test_pages_of_one_finding_are_merged(tmp_path, capsys):
    details = FINDING_V2["findingDetails"]
    first = finding_with(findingDetails=details[:1], nextToken="t1")
    second = finding_with(findingDetails=details[1:])
    paths = [write(tmp_path / "page1.json", first), write(tmp_path / "page2.json", second)]
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    assert refine(policy, "--unused", paths[0], "--unused", paths[1]) == 0
    merged = capsys.readouterr().out
    assert refine(policy, "--unused", str(EXAMPLES / "finding.json")) == 0
    assert merged == capsys.readouterr().out  # same as the finding in one piece
    other = write(tmp_path / "other.json", finding_with(id="another-finding"))
    assert "different findings" in error_line(capsys, refine(policy, "--unused", paths[1],
                                                             "--unused", other))
    assert "repeat a page" in error_line(capsys, refine(policy, "--unused", paths[1],
                                                        "--unused", paths[1]))


def test_finding_of_another_principal_is_refused(tmp_path, capsys):
    wrapper = {"RoleName": "SomeOtherRole", "PolicyName": "Inline",
               "PolicyDocument": json.loads(POLICY_TEXT)}
    role = write(tmp_path / "role.json", wrapper)
    line = error_line(capsys, refine(role, "--unused", str(EXAMPLES / "finding.json")))
    assert "role/ExampleRole" in line and "SomeOtherRole" in line
    wrapper["RoleName"] = "examplerole"  # IAM role names are unique without regard to case
    role = write(tmp_path / "role.json", wrapper)
    assert refine(role, "--unused", str(EXAMPLES / "finding.json")) == 0
    capsys.readouterr()


def test_names_the_catalog_lacks_are_named_and_still_unused(tmp_path, capsys):
    policy = write(tmp_path / "p.json", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetFutureThing", "newsvc:Do"],
         "Resource": "*"}]})
    finding = write(tmp_path / "f.json", [{"serviceNamespace": "s3", "actions": ["GetFutureThing"]},
                                          {"serviceNamespace": "newsvc"}])
    assert refine(policy, "--unused", finding) == 0
    captured = capsys.readouterr()
    assert "newsvc:*" in captured.err and "s3:GetFutureThing" in captured.err
    assert json.loads(captured.out)["Statement"][0]["Action"] == ["s3:GetObject"]


@pytest.mark.parametrize("policy,needle", [
    ('{"Version": "2012-10-17", "Statement": [{"Sid": "A", "Sid": "B", "Effect": "Allow", '
     '"Action": "s3:GetObject", "Resource": "*"}]}', "repeats the key 'Sid'"),
    ({"Statement": [{"Effect": "Allow", "NotAction": [], "Resource": "*"}]}, "empty list"),
    ({"Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}, "empty list"),
    ({"Version": "2012-10-17", "Statement": []}, "Statement is empty"),
    (FINDING_V2, "looks like an Access Analyzer finding, not an IAM policy"),
    ([{"serviceNamespace": "s3", "actions": []}], "looks like an unused-permissions finding"),
    ({"AWSTemplateFormatVersion": "2010-09-09", "Resources": {}}, "CloudFormation template"),
    ({"format_version": "1.2", "terraform_version": "1.9.0", "planned_values": {}},
     "Terraform plan"),
    ('resource "aws_iam_policy" "p" {\n  policy = jsonencode({})\n}\n', "Terraform HCL"),
    ("Version: '2012-10-17'\nStatement:\n  - Effect: Allow\n", "looks like YAML"),
])
def test_wrong_policies_are_refused(tmp_path, capsys, policy, needle):
    path = write(tmp_path / "p.json", policy)
    assert needle in error_line(capsys, refine(path, "--unused", LIST_FINDING))


def test_catalog_names_outside_the_action_alphabet_are_refused(tmp_path, capsys):
    catalog = write(tmp_path / "catalog.json", {"svc": ["Get", "G\U00030000"]})
    policy = write(tmp_path / "p.json", {"Statement": [
        {"Effect": "Allow", "Action": "svc:*", "Resource": "*"}]})
    finding = write(tmp_path / "f.json", [{"serviceNamespace": "svc", "actions": ["Get"]}])
    line = error_line(capsys, refine(policy, "--unused", finding, "--catalog", catalog))
    assert "is not an IAM action name" in line
    refined = write(tmp_path / "r.json", {"Statement": [
        {"Effect": "Allow", "Action": "svc:??*", "Resource": "*"}]})
    line = error_line(capsys, main(["verify", policy, refined, "--unused", finding,
                                    "--catalog", catalog]))
    assert "is not an IAM action name" in line


# --- minimal diffs ------------------------------------------------------------------------------

def test_untouched_values_come_out_as_written(tmp_path, capsys):
    text = ('{"Version": "2012-10-17", "Statement": [\n'
            '  {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*",\n'
            '   "Condition": {"NumericLessThan": {"s3:max-keys": 1e999}, '
            '"Bool": {"aws:SecureTransport": true}, "NumericEquals": {"x": 1.0}}}\n]}\n')
    policy = write(tmp_path / "p.json", text)
    finding = write(tmp_path / "f.json", [{"serviceNamespace": "s3", "actions": ["GetObject"]}])
    assert refine(policy, "--unused", finding) == 0
    out = capsys.readouterr().out
    assert '"s3:max-keys": 1e999}' in out and '{"x": 1.0}' in out and "Infinity" not in out
    after_action = text.index('"Resource"')
    assert out[out.index('"Resource"'):] == text[after_action:]  # only the Action value changed
    assert out.startswith(text[:text.index('"s3:Get*"')])


def test_diff_touches_only_changed_action_lines(tmp_path, capsys):
    document = json.loads(POLICY_TEXT)
    policy = write(tmp_path / "p.json", json.dumps(document, indent=4))
    assert refine(policy, "--unused", LIST_FINDING, "--format", "diff") == 0
    diff = capsys.readouterr().out
    changed = [line for line in diff.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed and all('"lambda:' in line or '"s3:Get' in line for line in changed)
    unused = write(tmp_path / "f.json", NOTHING_UNUSED)
    assert refine(policy, "--unused", unused, "--format", "diff") == 0
    assert capsys.readouterr().out == ""


def test_exit_code_says_whether_the_policy_changed(tmp_path, capsys):
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    assert refine(policy, "--unused", LIST_FINDING, "--exit-code") == 1
    unused = write(tmp_path / "f.json", NOTHING_UNUSED)
    assert refine(policy, "--unused", unused, "--exit-code") == 0
    capsys.readouterr()


def test_fail_over_limit_writes_nothing(tmp_path, capsys):
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    out = tmp_path / "out.json"
    code = refine(policy, "--unused", LIST_FINDING, "--max-size", "50", "--fail-over-limit",
                  "-o", out)
    assert code == 5 and not out.exists()
    assert "over the size limit" in capsys.readouterr().err


# --- exit codes for the environment ------------------------------------------------------------

def test_timeout_and_deadline_must_be_finite(tmp_path, capsys):
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    for option in ("--timeout", "--deadline"):
        for value in ("inf", "0", "nan"):
            line = error_line(capsys, refine(policy, "--unused", LIST_FINDING, option, value))
            assert option in line


def test_closed_standard_output_ends_quietly(tmp_path):
    # A reader that is gone before refiner writes (`refiner refine ... | head -1` on a large
    # result): refiner takes far longer to start than `true` takes to exit.
    document = {"Version": "2012-10-17", "Statement": [
        {"Sid": f"S{number}", "Effect": "Allow", "Action": "s3:Get*", "Resource": f"arn:{number}"}
        for number in range(300)]}
    policy = write(tmp_path / "p.json", json.dumps(document, indent=2))
    finding = write(tmp_path / "f.json", [{"serviceNamespace": "s3", "actions": ["GetObject"]}])
    command = (f"{sys.executable} -m refiner.cli refine {policy} --unused {finding} | true;"
               " echo \" ${PIPESTATUS[0]}\"")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert result.stdout == " 141\n", result
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr


# --- found by review: each a regression test -------------------------------------------------

def test_a_written_statement_that_was_not_proven_is_caught(monkeypatch, catalog):
    import refiner.pipeline
    from refiner.finding import parse_finding

    real = refiner.pipeline.edit_document

    def adds_a_statement(text, pairs):  # a writer bug that slips in an extra grant
        edited = real(text, pairs)
        return edited.replace('"Statement": [', '"Statement": [{"Effect": "Allow", '
                              '"Action": "*", "Resource": "*"}, ', 1)

    monkeypatch.setattr(refiner.pipeline, "edit_document", adds_a_statement)
    policy = load_policy(json.loads(POLICY_TEXT), "p", POLICY_TEXT)
    unused = parse_finding(json.loads((EXAMPLES / "unused.json").read_text()), catalog)
    run = refiner.pipeline.refine_and_prove(policy, unused, catalog, 20_000)
    assert any(v.kind == "structure" for v in run.violations)


def test_documents_held_in_strings_are_not_re_encoded(tmp_path, capsys):
    held = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject",'
            '"Resource":"arn:aws:s3:::b\\/a\\u0026b\\/*"}]}')
    wrapper = tmp_path / "wrap.json"
    wrapper.write_text('{"RoleName": "R", "PolicyName": "p", "PolicyDocument": '
                       + json.dumps(held) + "}\n")
    before = wrapper.read_text()
    nothing = write(tmp_path / "none.json", NOTHING_UNUSED)
    assert refine(wrapper, "--unused", nothing, "--exit-code") == 0
    assert capsys.readouterr().out == before
    assert refine(wrapper, "--unused", nothing, "--in-place") == 0
    assert wrapper.read_text() == before and not (tmp_path / "wrap.json.bak").exists()
    # URL-encoded, with "*" and ":" left as they were: a change keeps them unencoded elsewhere.
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"}]}
    encoded = urllib.parse.quote(json.dumps(document), safe="*:/")
    role = write(tmp_path / "role.json", {"RoleName": "R", "PolicyName": "p",
                                          "PolicyDocument": encoded})
    finding = write(tmp_path / "f.json", [{"serviceNamespace": "s3", "actions": ["GetObject"]}])
    assert refine(role, "--unused", finding) == 0
    written = json.loads(capsys.readouterr().out)["PolicyDocument"]
    assert "arn:aws:s3:::b/*" in written and "%2A" not in written


def test_inputs_of_other_kinds_and_places(tmp_path, capsys):
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    # a FIFO is read once (it used to hang, read again for its byte-order mark)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    command = f"cat {policy} > {fifo} & {sys.executable} -m refiner.cli refine {fifo} --unused {LIST_FINDING}"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and '"lambda:Invoke*"' in result.stdout
    # --in-place through a symbolic link refines the file and keeps the link
    real = tmp_path / "real.json"
    real.write_text(POLICY_TEXT)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert refine(link, "--unused", LIST_FINDING, "--in-place") == 0
    assert link.is_symlink() and '"lambda:Invoke*"' in real.read_text()
    # "-o -" is standard output
    assert refine(policy, "--unused", LIST_FINDING, "-o", "-") == 0
    assert '"lambda:Invoke*"' in capsys.readouterr().out and not (tmp_path / "-").exists()
    # sizes and kinds that cannot be
    assert "--max-size" in error_line(capsys, refine(policy, "--unused", LIST_FINDING,
                                                     "--max-size", "0"))
    empty = write(tmp_path / "catalog.json", {})
    assert "empty" in error_line(capsys, refine(policy, "--unused", LIST_FINDING,
                                                "--catalog", empty))


def test_closed_standard_output_is_one_line(tmp_path):
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    result = subprocess.run(["bash", "-c", f"{sys.executable} -m refiner.cli refine {policy} "
                             f"--unused {LIST_FINDING} >&-"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "standard output is closed" in result.stderr


def test_a_wildcard_of_a_service_the_catalog_lacks_is_named(tmp_path, capsys):
    policy = write(tmp_path / "p.json", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "bedrockx:Get*"], "Resource": "*"}]})
    finding = write(tmp_path / "f.json", [{"serviceNamespace": "bedrockx", "actions": ["GetFoo"]}])
    assert refine(policy, "--unused", finding) == 0
    captured = capsys.readouterr()
    assert "bedrockx:Get*" in captured.err and "dropped, not narrowed" in captured.err


def test_user_inline_policies_have_their_own_size_limit(tmp_path, capsys):
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:Get*", "ec2:Describe*"], "Resource": "*"}]}
    user = write(tmp_path / "user.json", {"UserName": "dev", "PolicyName": "p",
                                          "PolicyDocument": document})
    finding = write(tmp_path / "f.json", [{"serviceNamespace": "s3", "actions": ["GetObject"]},
                                          {"serviceNamespace": "ec2",
                                           "actions": ["DescribeInstances"]}])
    assert refine(user, "--unused", finding, "--fail-over-limit") == 5
    assert "2048" in capsys.readouterr().err.replace(",", "")


def test_a_recommendation_for_several_policies_is_not_one_policy(tmp_path, capsys):
    step = {"unusedPermissionsRecommendedStep": {"recommendedAction": "CREATE_POLICY",
                                                 "recommendedPolicy": POLICY_TEXT}}
    several = write(tmp_path / "r.json", {"recommendedSteps": [step, step]})
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    line = error_line(capsys, main(["verify", policy, several, "--unused", LIST_FINDING]))
    assert "2 steps" in line


def test_a_finding_newer_than_the_catalog_is_said(tmp_path, capsys):
    policy = write(tmp_path / "p.json", POLICY_TEXT)
    finding = write(tmp_path / "f.json", finding_with(analyzedAt="2099-01-01T00:00:00Z"))
    assert refine(policy, "--unused", finding) == 0
    assert "analyzed on 2099-01-01, after catalog" in capsys.readouterr().err
    assert refine(policy, "--unused", str(EXAMPLES / "finding.json")) == 0  # analyzed in 2024
    assert "analyzed on" not in capsys.readouterr().err
