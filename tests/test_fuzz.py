"""Hostile input: whatever arrives, refiner ends in a proven result or a one-line error with a
documented exit code, in bounded time. (fuzz/fuzz_refiner.py drives the same with atheris.)"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refiner.cli import main
from refiner.errors import InputError
from refiner.patterns import parse

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                     children, max_size=4),
    max_leaves=20,
)
statement_like = st.fixed_dictionaries(
    {"Effect": st.sampled_from(["Allow", "Deny", "allow", 3])},
    optional={"Action": st.one_of(st.text(max_size=30), st.lists(st.one_of(
        st.text(alphabet="s3:GetObject*?é \\x00", max_size=30), st.integers()), max_size=4)),
        "NotAction": st.text(alphabet="iam:*", max_size=10), "Resource": json_values},
)


def run_cli(tmp_path, capsys, policy_bytes: bytes, finding_bytes: bytes) -> int:
    (tmp_path / "p.json").write_bytes(policy_bytes)
    (tmp_path / "f.json").write_bytes(finding_bytes)
    code = main(["refine", str(tmp_path / "p.json"), "--unused", str(tmp_path / "f.json"),
                 "--timeout", "5"])
    captured = capsys.readouterr()
    assert code in (0, 2, 3, 4), captured.err
    if code:
        assert captured.out == "" and len(captured.err.strip().splitlines()) >= 1
        assert "Traceback" not in captured.err
    return code


# capsys is read (and so emptied) after every run, so sharing it across examples is safe.
FINDING = json.dumps([{"serviceNamespace": "s3", "actions": ["GetObject"]}]).encode()
POLICY = json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:Get*",
                                    "Resource": "*"}]}).encode()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_random_bytes_as_policy_or_finding(tmp_path_factory, capsys, data):
    folder = tmp_path_factory.mktemp("bytes")
    run_cli(folder, capsys, data, FINDING)
    run_cli(folder, capsys, POLICY, data)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(json_values, json_values)
def test_random_json_shapes(tmp_path_factory, capsys, policy, finding):
    folder = tmp_path_factory.mktemp("json")
    run_cli(folder, capsys, json.dumps(policy).encode(), json.dumps(finding).encode())


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(statement_like, min_size=1, max_size=3))
def test_policy_like_documents(tmp_path_factory, capsys, statements):
    folder = tmp_path_factory.mktemp("statements")
    document = {"Version": "2012-10-17", "Statement": statements}
    run_cli(folder, capsys, json.dumps(document).encode(), FINDING)


@given(st.text(max_size=40))
def test_any_text_parses_or_is_an_input_error(text):
    try:
        pattern = parse(text)
    except InputError:
        return
    assert pattern.text == text


def test_deep_nesting_and_huge_files(tmp_path, capsys):
    assert run_cli(tmp_path, capsys, b"[" * 50_000 + b"]" * 50_000, FINDING) == 2
    assert run_cli(tmp_path, capsys, b'{"a":' * 100 + b"1" + b"}" * 100, FINDING) == 2
    huge = b'{"Statement": [], "Pad": "' + b"x" * (33 * 2**20) + b'"}'
    assert run_cli(tmp_path, capsys, huge, FINDING) == 2


def test_unicode_and_non_string_actions(tmp_path, capsys):
    for action in ["s3:Gét*", "s3:Get\u0000", "s3:Get\u202e*", 7, None, ["s3:*"], {"a": 1}]:
        document = {"Statement": [{"Effect": "Allow", "Action": [action], "Resource": "*"}]}
        assert run_cli(tmp_path, capsys, json.dumps(document).encode(), FINDING) == 2


@pytest.mark.parametrize("pattern", ["s3:*a*a*a*a*a*a*a*a*a*a*a*b", "s3:*G*e*t*O*b*j*e*c*t*",
                                     "*:*?*?*?*?*", "s3:" + "?" * 100])
def test_adversarial_patterns_end_quickly(tmp_path, capsys, pattern):
    document = {"Statement": [{"Effect": "Allow", "Action": [pattern, "s3:*"], "Resource": "*"}]}
    started = time.perf_counter()
    code = run_cli(tmp_path, capsys, json.dumps(document).encode(), FINDING)
    assert code in (0, 3) and time.perf_counter() - started < 60


def test_ten_thousand_statements(tmp_path, capsys):
    statements = [{"Sid": f"S{i}", "Effect": "Allow", "Action": ["s3:GetObject", "s3:List*"],
                   "Resource": f"arn:aws:s3:::bucket{i}/*"} for i in range(10_000)]
    document = {"Version": "2012-10-17", "Statement": statements}
    started = time.perf_counter()
    assert run_cli(tmp_path, capsys, json.dumps(document).encode(), FINDING) == 0
    assert time.perf_counter() - started < 120


# --- second round (the adversarial tester's cases) ----------------------------------------------

@pytest.mark.parametrize("actions", [{}, 0, False, "", None, {"GetObject": 1}])
def test_malformed_actions_never_erase_a_service(tmp_path, capsys, actions):
    finding = json.dumps([{"serviceNamespace": "s3", "actions": actions}]).encode()
    assert run_cli(tmp_path, capsys, POLICY, finding) == 2


def test_one_action_with_thousands_of_covers_is_proven_without_an_abort(tmp_path, capsys):
    # s3:Get* beside ~1,800 glob entries: every used s3:Get... action has all of them as
    # covers; one rewrite of them all made Z3 abort with SIGSEGV.
    entries = ["s3:Get*"] + [f"s3:*a?b*x{number}" for number in range(1_800)]
    document = {"Statement": [{"Effect": "Allow", "Action": entries, "Resource": "*"}]}
    assert run_cli(tmp_path, capsys, json.dumps(document).encode(), FINDING) == 0


def test_a_solver_that_dies_is_no_proof(tmp_path, capsys, monkeypatch):
    import os
    import signal

    import refiner.prove

    def crash(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGSEGV)

    # The proof runs in a forked child, so the patch applies there, and only there it dies.
    monkeypatch.setattr(refiner.prove.Checker, "check_statement", crash)
    (tmp_path / "p.json").write_bytes(POLICY)
    (tmp_path / "f.json").write_bytes(FINDING)
    code = main(["refine", str(tmp_path / "p.json"), "--unused", str(tmp_path / "f.json")])
    captured = capsys.readouterr()
    assert code == 3 and captured.out == ""
    assert "SIGSEGV" in captured.err and "nothing is proven" in captured.err


def test_the_deadline_bounds_the_whole_run(tmp_path, capsys):
    entries = ["s3:Get*"] + [f"s3:*a?b*x{number}" for number in range(1_800)]
    document = {"Statement": [{"Effect": "Allow", "Action": entries, "Resource": "*"}]}
    (tmp_path / "p.json").write_text(json.dumps(document))
    (tmp_path / "f.json").write_bytes(FINDING)
    started = time.perf_counter()
    code = main(["refine", str(tmp_path / "p.json"), "--unused", str(tmp_path / "f.json"),
                 "--deadline", "0.2"])
    captured = capsys.readouterr()
    assert code == 3 and "deadline" in captured.err and captured.out == ""
    assert time.perf_counter() - started < 30
