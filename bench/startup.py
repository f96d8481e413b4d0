"""Benchmark: refiner as a process, what every CI job, pre-commit hook or shell loop pays.

Run by hand (not part of the test suite):

    .venv/bin/python bench/startup.py --repeat 9          # the worked example: refine, verify
    .venv/bin/python bench/startup.py --peer              # and ReadOnlyAccess beside policy_sentry

The worked example (examples/policy.json with examples/finding.json): `refiner refine` and
`refiner verify ORIGINAL REFINED` (refine's own output), each run --repeat times as a fresh
process; printed: the median wall time with its range, and the median CPU time (user + system
of the process and its children), which a busy machine disturbs less than wall time. The
processes run with Python's bytecode cache allowed, as an installed copy has it (pip compiles
at install), even when PYTHONDONTWRITEBYTECODE is set here; --no-bytecode keeps it off, so
every module is compiled on every run.

--peer (needs the bench extra: .venv/bin/pip install -e '.[bench]') also times refine on
ReadOnlyAccess with a seeded 30% finding beside the unverified policy_sentry pipeline as a
process: it expands each Allow+Action statement over the catalog, drops the unused actions and
calls policy_sentry's minimize_statement_actions (bench/corpus.py's peer).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
EXAMPLES = ROOT / "examples"
# The installed `refiner` command (what users run: its entry point forks the proof child first).
_SCRIPT = Path(sys.executable).parent / "refiner"
REFINER = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "refiner"]

PEER = """
import json, sys
sys.path[:0] = [{root!r}, {tests!r}]
from oracle import allowed_by
from policy_sentry.writing.minimize import minimize_statement_actions
from refiner.catalog import load_default
from refiner.finding import parse_finding
catalog = load_default()
document = json.load(open(sys.argv[1]))
unused = parse_finding(json.load(open(sys.argv[2])), catalog)
actions = catalog.all_actions()
every = {{a.lower() for a in actions}}
for statement in document["Statement"]:
    if statement.get("Effect") == "Allow" and "Action" in statement:
        desired = [a.lower() for a in allowed_by(statement, actions) if not unused.is_unused(a)]
        statement["Action"] = minimize_statement_actions(desired, every)
json.dump(document, open(sys.argv[3], "w"), indent=2)
"""


ENVIRONMENT = dict(os.environ)


def timed(command: list[str], repeat: int, codes=(0,)) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (user + system, with children) of each run."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = os.times()
        started = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=ENVIRONMENT)
        walls.append(time.perf_counter() - started)
        after = os.times()
        cpus.append(after.children_user - before.children_user
                    + after.children_system - before.children_system)
        if done.returncode not in codes:
            sys.exit(f"{' '.join(command)}: exit {done.returncode}: {done.stderr.strip()}")
    return walls, cpus


def line(name: str, walls: list[float], cpus: list[float]) -> str:
    return (f"  {name:<34} wall {statistics.median(walls):.3f} s "
            f"({min(walls):.3f}-{max(walls):.3f}), CPU {statistics.median(cpus):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--peer", action="store_true",
                        help="also ReadOnlyAccess at 30%% unused beside policy_sentry")
    parser.add_argument("--policy", default="ReadOnlyAccess", help="the policy of --peer")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE as it is (compile on every run)")
    args = parser.parse_args()
    if not args.no_bytecode:
        ENVIRONMENT.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        policy, finding = str(EXAMPLES / "policy.json"), str(EXAMPLES / "finding.json")
        refined = str(folder / "refined.json")
        subprocess.run(REFINER + ["refine", policy, "--unused", finding, "-o", refined], check=True)
        # Warm the file cache, the bytecode and refiner's caches (catalog, grammar terminals).
        timed(REFINER + ["refine", policy, "--unused", finding, "-o", str(folder / "warm.json")], 1)
        bytecode = "off" if "PYTHONDONTWRITEBYTECODE" in ENVIRONMENT else "cached"
        print(f"worked example, {args.repeat} runs each as a process (median, min-max), "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, bytecode {bytecode}:")
        refine = timed(REFINER + ["refine", policy, "--unused", finding, "-o",
                                  str(folder / "out.json")], args.repeat)
        print(line("refiner refine", *refine))
        verify = timed(REFINER + ["verify", policy, refined, "--unused", finding], args.repeat)
        print(line("refiner verify", *verify))
        python = timed([sys.executable, "-c", "pass"], args.repeat)
        print(line("python -c pass (the floor)", *python))
        print(f"  load average after: {os.getloadavg()[0]:.2f}")
        if args.peer:
            peer(folder, args)


def peer(folder: Path, args) -> None:
    if importlib.util.find_spec("policy_sentry") is None:
        print("--peer: policy_sentry is not installed (.venv/bin/pip install -e '.[bench]')")
        return
    from corpus import allowed_actions, generate_finding, policies

    from refiner.catalog import load_default

    catalog = load_default()
    document = policies()[args.policy]
    finding = generate_finding(allowed_actions(document, catalog.all_actions()), 0.3, 20261124)
    (folder / "policy.json").write_text(json.dumps(document, indent=2))
    (folder / "finding.json").write_text(json.dumps(finding))
    (folder / "peer.py").write_text(PEER.format(root=str(ROOT), tests=str(ROOT / "tests")))
    ours = timed(REFINER + ["refine", str(folder / "policy.json"), "--unused",
                            str(folder / "finding.json"), "-o", str(folder / "ours.json")],
                 args.repeat)
    theirs = timed([sys.executable, str(folder / "peer.py"), str(folder / "policy.json"),
                    str(folder / "finding.json"), str(folder / "peer.json")], args.repeat)
    print(f"{args.policy}, 30% unused:")
    print(line("refiner refine (proven)", *ours))
    print(line("policy_sentry (no proof)", *theirs))
    print(f"  ratio refiner / policy_sentry (median wall): "
          f"{statistics.median(ours[0]) / statistics.median(theirs[0]):.2f}")


if __name__ == "__main__":
    main()
