"""Benchmark: the gate on whole requests over every AWS managed policy of the corpus.

Run by hand (not part of the test suite):

    .venv/bin/python bench/requests.py                  # whole corpus, two worker processes
    .venv/bin/python bench/requests.py --workers 1 --only ReadOnlyAccess AdministratorAccess

For each policy: BASE against a narrowed HEAD (every Allow statement's Resource `*` narrowed to
one bucket and a Condition added; Deny statements as they were), which must be accepted; then the
narrowed one as BASE against the original as HEAD (a widening), which must be rejected with a
counterexample request. A policy without an Allow statement has no widening to find. Reports
median and p95 seconds per policy (both directions) and the wall-clock total.

    .venv/bin/python bench/requests.py --pairs --times pairs.tsv

With --pairs, pairs of different managed policies instead: each <service>ReadOnlyAccess
against its <service>FullAccess both ways, and ReadOnlyAccess, SecurityAudit, PowerUserAccess
and AdministratorAccess as BASE of every policy whose name says ReadOnly; the verdict of each
(accepted, rejected or unknown) and its seconds, so that two versions can be compared pair by
pair (--times writes them).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from refiner.gate import gate  # noqa: E402
from refiner.managed import snapshot  # noqa: E402
from refiner.policy import load_policy  # noqa: E402
from refiner.prove import Checker  # noqa: E402

BUCKET = ["arn:aws:s3:::bench-bucket", "arn:aws:s3:::bench-bucket/*"]
ADDED = ("StringEquals", "aws:PrincipalTag/team", "bench")


def narrowed(document: dict) -> dict:
    """Every Allow statement's Resource `*` narrowed to one bucket (other resources as they
    were), with one more condition; Denies unchanged."""
    result = copy.deepcopy(document)
    statements = result["Statement"] if isinstance(result["Statement"], list) \
        else [result["Statement"]]
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        if statement.get("Resource") in ("*", ["*"]):
            statement["Resource"] = BUCKET
        operator, key, value = ADDED
        statement.setdefault("Condition", {}).setdefault(operator, {})[key] = value
    result["Statement"] = statements
    return result


def judge(name: str, document: dict) -> dict:
    """Both directions for one policy: seconds, and whether each came out as it must."""
    original = load_policy(copy.deepcopy(document), name)
    narrow = load_policy(narrowed(document), name)
    started, cpu = time.perf_counter(), time.process_time()
    checker = Checker([], [], [])
    accept = gate(original, narrow, checker)
    middle = time.perf_counter()
    allows = any(s.get("Effect") == "Allow" for s in original.statements)
    reject = gate(narrow, original, checker) if allows else []
    ended = time.perf_counter()
    cpu = time.process_time() - cpu
    witnessed = [v for v, _ in reject if v.kind == "unsound" and v.request is not None]
    return {"name": name, "accept_seconds": middle - started, "reject_seconds": ended - middle,
            "cpu_seconds": cpu, "queries": checker.queries,
            "accepted": not accept, "accept_verdicts": [v.describe() for v, _ in accept][:2],
            "rejected": bool(witnessed) if allows else None,
            "reject_verdicts": [v.describe() for v, _ in reject][:2],
            "witness": witnessed[0].request if witnessed else None}


def _judge(item):
    return judge(*item)


def cross_pairs(corpus: dict) -> list[tuple[str, str]]:
    """(BASE, HEAD) names of different policies (see the module's docstring)."""
    pairs = []
    for name in sorted(corpus):
        full = name.replace("ReadOnlyAccess", "FullAccess")
        if name.endswith("ReadOnlyAccess") and full in corpus:
            pairs += [(name, full), (full, name)]
    wide = [n for n in ("ReadOnlyAccess", "SecurityAudit", "PowerUserAccess",
                        "AdministratorAccess") if n in corpus]
    pairs += [(base, name) for base in wide for name in sorted(corpus)
              if "ReadOnly" in name and name != base]
    return pairs


def judge_pair(item) -> dict:
    """One pair through the gate (a 2 s solver timeout per query): its verdict and seconds."""
    (base_name, base), (head_name, head) = item
    started = time.perf_counter()
    found = gate(load_policy(copy.deepcopy(base), base_name),
                 load_policy(copy.deepcopy(head), head_name), Checker([], [], [], 2_000))
    kinds = {v.kind for v, _ in found}
    verdict = "rejected" if kinds & {"unsound", "incomplete", "structure"} else \
        "unknown" if kinds else "accepted"
    return {"name": f"{base_name} -> {head_name}", "verdict": verdict,
            "seconds": time.perf_counter() - started}


def main_pairs(corpus: dict, workers: int, times: str | None) -> int:
    items = [((b, corpus[b]["document"]), (h, corpus[h]["document"]))
             for b, h in cross_pairs(corpus)]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(judge_pair, items, chunksize=4))
    total = time.perf_counter() - started
    seconds = sorted(r["seconds"] for r in results)
    counts = {v: sum(r["verdict"] == v for r in results) for v in
              ("accepted", "rejected", "unknown")}
    print(f"pairs: {len(results)} (workers: {workers}): {counts}")
    print(f"per pair: median {statistics.median(seconds):.3f} s, "
          f"p95 {seconds[int(0.95 * (len(seconds) - 1))]:.3f} s, max {seconds[-1]:.3f} s")
    print(f"total wall clock: {total:.1f} s")
    for r in sorted(results, key=lambda r: -r["seconds"])[:5]:
        print(f"slow: {r['name']}: {r['verdict']} in {r['seconds']:.2f} s")
    if times:
        Path(times).write_text("".join(f"{r['name']}\t{r['verdict']}\t{r['seconds']:.3f}\n"
                                       for r in results))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="policy names")
    parser.add_argument("--times", help="write each policy's seconds (accept, reject, CPU) "
                        "and solver queries to this file, tab-separated (--pairs: each "
                        "pair's verdict and seconds)")
    parser.add_argument("--pairs", action="store_true",
                        help="pairs of different policies (see the docstring)")
    args = parser.parse_args()
    corpus = snapshot()
    if args.pairs:
        return main_pairs(corpus, args.workers, args.times)
    names = args.only or sorted(corpus)
    items = [(name, corpus[name]["document"]) for name in names]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(_judge, items, chunksize=8))
    total = time.perf_counter() - started
    per_policy = sorted(r["accept_seconds"] + r["reject_seconds"] for r in results)
    p95 = per_policy[min(len(per_policy) - 1, int(0.95 * len(per_policy)))]
    not_accepted = [r for r in results if not r["accepted"]]
    not_rejected = [r for r in results if r["rejected"] is False]
    print(f"policies: {len(results)} (workers: {args.workers})")
    print(f"narrowed HEAD accepted: {len(results) - len(not_accepted)}; "
          f"widened HEAD rejected with a request: "
          f"{sum(r['rejected'] is True for r in results)} "
          f"(no Allow statement, nothing to widen: "
          f"{sum(r['rejected'] is None for r in results)})")
    print(f"per policy, both directions: median {statistics.median(per_policy):.3f} s, "
          f"p95 {p95:.3f} s, max {per_policy[-1]:.3f} s")
    cpu = sorted(r["cpu_seconds"] for r in results)
    print(f"per policy CPU, both directions: median {statistics.median(cpu):.3f} s, "
          f"p95 {cpu[min(len(cpu) - 1, int(0.95 * len(cpu)))]:.3f} s, max {cpu[-1]:.3f} s, "
          f"sum {sum(cpu):.1f} s")
    print(f"solver queries (action kernel and request model): "
          f"{sum(r['queries'] for r in results)}, in "
          f"{sum(r['queries'] > 0 for r in results)} policies")
    print(f"total wall clock: {total:.1f} s")
    if args.times:
        Path(args.times).write_text("".join(
            f"{r['name']}\t{r['accept_seconds']:.3f}\t{r['reject_seconds']:.3f}\t"
            f"{r['cpu_seconds']:.3f}\t{r['queries']}\n"
            for r in sorted(results, key=lambda r: r["name"])))
    slowest = max(results, key=lambda r: r["accept_seconds"] + r["reject_seconds"])
    print(f"slowest: {slowest['name']} ({slowest['accept_seconds']:.2f} s + "
          f"{slowest['reject_seconds']:.2f} s)")
    example = next((r for r in results if r["witness"]), None)
    if example:
        print(f"a witness ({example['name']}): {example['witness']}")
    for r in not_accepted[:10]:
        print(f"NOT ACCEPTED {r['name']}: {r['accept_verdicts']}")
    for r in not_rejected[:10]:
        print(f"NOT REJECTED {r['name']}: {r['reject_verdicts']}")
    return 1 if not_accepted or not_rejected else 0


if __name__ == "__main__":
    sys.exit(main())
