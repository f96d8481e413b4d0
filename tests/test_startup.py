"""Start-up: a refine or verify process loads only what it needs (Lark, verify's modules and
templates' readers stay unloaded for a plain policy). Times are measured by bench/startup.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import EXAMPLES

PROBE = """
import json, sys
from refiner.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded(tmp_path, *argv) -> tuple[int, set[str]]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    report = json.loads(done.stdout.splitlines()[-1])
    return report["code"], set(report["modules"])


def test_refine_and_verify_load_the_grammar_parser_only_to_build_its_cache(tmp_path):
    policy, finding = str(EXAMPLES / "policy.json"), str(EXAMPLES / "finding.json")
    out = str(tmp_path / "refined.json")
    code, first = loaded(tmp_path, "refine", policy, "--unused", finding, "-o", out)
    assert code == 0 and "lark" in first  # the first run reads the grammar's terminals
    code, modules = loaded(tmp_path, "refine", policy, "--unused", finding, "-o",
                           str(tmp_path / "again.json"))
    assert code == 0 and "lark" not in modules
    assert "refiner.verification" not in modules and "refiner.smt" not in modules
    code, modules = loaded(tmp_path, "verify", policy, out, "--unused", finding)
    assert code == 0 and "lark" not in modules


def test_a_pattern_outside_the_terminals_still_gets_the_parsers_error(tmp_path):
    policy = tmp_path / "bad.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:Get Object", "Resource": "*"}]}))
    code, modules = loaded(tmp_path, "refine", str(policy), "--unused",
                           str(EXAMPLES / "finding.json"))
    assert code == 2 and "lark" in modules
