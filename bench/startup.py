"""Benchmark: refiner as a process (what every CI or pre-commit call pays) beside the unverified
policy_sentry pipeline as a process, on ReadOnlyAccess with a seeded 30% finding.

Run by hand (needs the bench extra: .venv/bin/pip install -e '.[bench]'):

    .venv/bin/python bench/startup.py --repeat 7

Both processes read the policy and the finding from files, use the same embedded catalog and
write their result; the peer expands each Allow+Action statement over the catalog, drops the
unused actions and calls policy_sentry's minimize_statement_actions (bench/corpus.py's peer).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

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


def seconds(command: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="ReadOnlyAccess")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from corpus import allowed_actions, generate_finding, policies

    from refiner.catalog import load_default

    catalog = load_default()
    document = policies()[args.policy]
    finding = generate_finding(allowed_actions(document, catalog.all_actions()), 0.3, 20261124)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        (folder / "policy.json").write_text(json.dumps(document, indent=2))
        (folder / "finding.json").write_text(json.dumps(finding))
        (folder / "peer.py").write_text(PEER.format(root=str(ROOT), tests=str(ROOT / "tests")))
        ours = seconds([sys.executable, "-m", "refiner.cli", "refine", str(folder / "policy.json"),
                        "--unused", str(folder / "finding.json"), "-o", str(folder / "ours.json")],
                       args.repeat)
        peer = seconds([sys.executable, str(folder / "peer.py"), str(folder / "policy.json"),
                        str(folder / "finding.json"), str(folder / "peer.json")], args.repeat)
    ours_median, peer_median = statistics.median(ours), statistics.median(peer)
    print(f"{args.policy}, 30% unused, {args.repeat} runs each (median, min-max):")
    print(f"  refiner refine (proven):      {ours_median:.2f} s ({min(ours):.2f}-{max(ours):.2f})")
    print(f"  policy_sentry (no proof):     {peer_median:.2f} s ({min(peer):.2f}-{max(peer):.2f})")
    print(f"  ratio refiner / policy_sentry: {ours_median / peer_median:.2f}")


if __name__ == "__main__":
    main()
