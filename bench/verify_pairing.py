"""Time `refiner verify` on policies with many statements: pairing must stay near-linear.

Run by hand, not by the test suite:

    .venv/bin/python bench/verify_pairing.py                 # N = 50, 500, 1000
    .venv/bin/python bench/verify_pairing.py --sizes 50 500 --repeat 3

For each N it builds an original policy of N Allow statements (statement k: one wildcard
`service:Verb*` of its own, Resource "*"), a seeded finding (30% of the allowed catalog actions
unused), and refine's own output, then times `refiner verify ORIGINAL REFINED` end to end
(a fresh process, start-up included) in three shapes: distinct Sids; distinct Sids with the
refined statements shuffled (pairing by Sid); no Sids at all (one group of identical
structure, paired in order)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from refiner.catalog import load_default
from refiner.cli import main
from refiner.patterns import glob

VERBS = ("Get", "List", "Describe", "Put", "Create", "Delete", "Update", "Tag")
SEED = 20261125
RATE = 0.3


def statements(catalog, count: int) -> list[tuple[str, list[str]]]:
    """count distinct (pattern, actions it matches) pairs, each matching at least 3 actions."""
    found = []
    for verb in VERBS:
        for service in sorted(catalog.services):
            pattern = f"{service}:{verb}*"
            actions = [a for a in catalog.actions_of(service) if glob(pattern).matches(a)]
            if len(actions) >= 3:
                found.append((pattern, actions))
                if len(found) == count:
                    return found
    raise SystemExit(f"the catalog offers only {len(found)} patterns of this kind")


def write_inputs(folder: Path, catalog, count: int, shape: str) -> tuple[Path, Path, Path]:
    chooser = random.Random(SEED + count)
    picked = statements(catalog, count)
    body = []
    for number, (pattern, _) in enumerate(picked):
        statement = {"Effect": "Allow", "Action": [pattern], "Resource": "*"}
        body.append({"Sid": f"S{number}", **statement} if shape != "no-sids" else statement)
    unused: dict[str, list[str]] = {}
    for _, actions in picked:
        for action in actions:
            if chooser.random() < RATE:
                service, name = action.split(":", 1)
                unused.setdefault(service, []).append(name)
    original = folder / f"original-{shape}-{count}.json"
    finding = folder / f"finding-{shape}-{count}.json"
    refined = folder / f"refined-{shape}-{count}.json"
    original.write_text(json.dumps({"Version": "2012-10-17", "Statement": body}, indent=2))
    finding.write_text(json.dumps([{"serviceNamespace": s, "actions": sorted(set(names))}
                                   for s, names in sorted(unused.items())]))
    with contextlib.redirect_stderr(io.StringIO()):  # the size-limit warning is expected
        code = main(["refine", str(original), "--unused", str(finding), "-o", str(refined)])
    if code != 0:
        raise SystemExit(f"refine failed ({code}) on {original}")
    if shape == "sids-shuffled":
        document = json.loads(refined.read_text())
        chooser.shuffle(document["Statement"])
        refined.write_text(json.dumps(document, indent=2))
    return original, refined, finding


def time_verify(original: Path, refined: Path, finding: Path) -> tuple[float, int, str]:
    command = [sys.executable, "-m", "refiner.cli", "verify", str(original), str(refined),
               "--unused", str(finding)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    last = (done.stdout.strip().splitlines() or done.stderr.strip().splitlines() or [""])[-1]
    return elapsed, done.returncode, last


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500, 1000])
    parser.add_argument("--shapes", nargs="+", default=["sids", "sids-shuffled", "no-sids"],
                        choices=["sids", "sids-shuffled", "no-sids"])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    catalog = load_default()
    print(f"catalog {catalog.version}; median of {args.repeat} run(s) of `refiner verify`")
    print(f"{'shape':<14} {'N':>5} {'seconds':>8}  exit  last line")
    with tempfile.TemporaryDirectory() as folder:
        for count in args.sizes:
            for shape in args.shapes:
                files = write_inputs(Path(folder), catalog, count, shape)
                runs = [time_verify(*files) for _ in range(args.repeat)]
                seconds = statistics.median(elapsed for elapsed, _, _ in runs)
                _, code, last = runs[-1]
                print(f"{shape:<14} {count:>5} {seconds:>8.2f}  {code:>4}  {last}", flush=True)


if __name__ == "__main__":
    main_bench()
