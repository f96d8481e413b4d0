"""Benchmark: refine and prove every AWS managed policy of the shared corpus with seeded findings.

Run by hand (not part of the test suite):

    .venv/bin/python bench/corpus.py                      # all scenarios, whole corpus
    .venv/bin/python bench/corpus.py --rates 0.3 --peer   # 30% unused, with policy_sentry beside
    .venv/bin/python bench/corpus.py --only ReadOnlyAccess --repeat 5
    .venv/bin/python bench/corpus.py --profile            # cProfile of the whole run, top 25

Scenarios: 5%, 30% and 90% of each policy's allowed catalog actions unused, and "services":
one whole service (among those the policy allows) unused plus 30% of the rest.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import pstats
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from corpus import allowed_actions, generate_finding, policies  # noqa: E402
from oracle import allowed_by, entries  # noqa: E402

import refiner.refinement as refine_stage  # noqa: E402
from refiner.catalog import load_default  # noqa: E402
from refiner.finding import parse_finding  # noqa: E402
from refiner.policy import load_policy  # noqa: E402
from refiner.prove import Checker  # noqa: E402
from refiner.render import as_json  # noqa: E402

SEED = 20261124
STAGES = ("parse", "trie", "refine", "proof", "render")


class TrieClock:
    """Times the trie inside refinement by wrapping the function the refine stage calls."""

    def __init__(self):
        self.seconds = 0.0
        self._inner = refine_stage.shortest_safe_prefixes
        refine_stage.shortest_safe_prefixes = self

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def run_one(document, finding, catalog, clock: TrieClock, timeout_ms: int) -> dict:
    """Parse, refine (trie timed apart), prove every statement, render; seconds per stage."""
    times = {}
    started = time.perf_counter()
    policy = load_policy(json.loads(json.dumps(document)))
    unused = parse_finding(finding, catalog)
    times["parse"] = time.perf_counter() - started

    clock.seconds = 0.0
    started = time.perf_counter()
    refinement = refine_stage.Refiner(unused, catalog).refine_policy(policy)
    times["trie"] = clock.seconds
    times["refine"] = time.perf_counter() - started - clock.seconds

    started = time.perf_counter()
    checker = Checker(catalog, unused.actions, unused.services, timeout_ms)
    violations = [v for i, (o, r) in enumerate(refinement.pairs)
                  for v in checker.check_statement(i, o, r)]
    times["proof"] = time.perf_counter() - started

    started = time.perf_counter()
    as_json(refinement.document)
    times["render"] = time.perf_counter() - started
    before = sum(len(entries(s.get("Action", s.get("NotAction", [])))) for s, _ in refinement.pairs)
    after = sum(len(entries(r.get("Action", r.get("NotAction", []))))
                for _, r in refinement.pairs if r is not None)
    return {"times": times, "patterns": before, "refined": after, "violations": violations,
            "queries": checker.queries}


def peer_one(document, finding, catalog, all_lower: set[str], checker_timeout: int) -> dict:
    """policy_sentry's pipeline on the same input: expand each Allow+Action statement over the
    catalog, drop the unused actions, minimize; then judge its output with refiner's checker."""
    from policy_sentry.writing.minimize import minimize_statement_actions

    unused = parse_finding(finding, catalog)
    started = time.perf_counter()
    outputs = []
    statements = document["Statement"] if isinstance(document["Statement"], list) \
        else [document["Statement"]]
    for statement in statements:
        if statement.get("Effect") != "Allow" or "Action" not in statement:
            outputs.append((statement, statement))
            continue
        desired = [a.lower() for a in allowed_by(statement, catalog.all_actions())
                   if not unused.is_unused(a)]
        minimized = minimize_statement_actions(desired, all_lower) if desired else []
        outputs.append((statement, dict(statement, Action=minimized) if minimized else None))
    seconds = time.perf_counter() - started
    checker = Checker(catalog, unused.actions, unused.services, checker_timeout)
    kinds = {v.kind for i, (o, r) in enumerate(outputs) for v in checker.check_statement(i, o, r)}
    size = sum(len(r["Action"]) for _, r in outputs if r is not None and "Action" in r)
    return {"seconds": seconds, "patterns": size, "kinds": kinds}


def scenarios(rates: list[str]):
    for rate in rates:
        if rate == "services":
            yield "services", 0.3, 1
        else:
            yield f"{float(rate):.0%}", float(rate), 0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.05,0.3,0.9,services")
    parser.add_argument("--only", help="one policy by name")
    parser.add_argument("--limit", type=int, help="first N policies only")
    parser.add_argument("--repeat", type=int, default=1, help="runs per policy (the best counts)")
    parser.add_argument("--peer", action="store_true", help="run policy_sentry beside refiner")
    parser.add_argument("--profile", action="store_true", help="cProfile the run, print top 25")
    parser.add_argument("--timeout", type=int, default=10_000, help="per obligation, ms")
    args = parser.parse_args()

    catalog = load_default()
    print(f"catalog: {catalog.version}, {len(catalog)} actions")
    chosen = {args.only: policies()[args.only]} if args.only else policies()
    if args.peer and importlib.util.find_spec("policy_sentry") is None:
        sys.exit("--peer runs policy_sentry, which is not installed: "
                 ".venv/bin/pip install -e '.[bench]'")
    names = list(chosen)[: args.limit] if args.limit else list(chosen)
    allowed = {name: allowed_actions(chosen[name], catalog.all_actions()) for name in names}
    clock = TrieClock()
    profiler = cProfile.Profile() if args.profile else None
    all_lower = {a.lower() for a in catalog.all_actions()}

    header = (f"{'scenario':>9} {'policies':>8} {'patterns':>9} {'refined':>8} {'fail':>5} "
              f"{'total s':>8} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}  "
              + " ".join(f"{s:>7}" for s in STAGES) + "   (stage sums, s)")
    print(header)
    for label, rate, whole in scenarios(args.rates.split(",")):
        totals = dict.fromkeys(STAGES, 0.0)
        per_policy, failures, patterns, refined, slowest = [], [], 0, 0, []
        peer = {"seconds": 0.0, "patterns": 0, "unsound": 0, "incomplete": 0, "outside": 0}
        for name in names:
            finding = generate_finding(allowed[name], rate, SEED, whole_services=whole)
            best = None
            for _ in range(args.repeat):
                if profiler:
                    profiler.enable()
                result = run_one(chosen[name], finding, catalog, clock, args.timeout)
                if profiler:
                    profiler.disable()
                if best is None or sum(result["times"].values()) < sum(best["times"].values()):
                    best = result
            for stage in STAGES:
                totals[stage] += best["times"][stage]
            per_policy.append(sum(best["times"].values()))
            slowest.append((per_policy[-1], name, best["times"]["proof"]))
            patterns += best["patterns"]
            refined += best["refined"]
            if best["violations"]:
                failures.append((name, best["violations"][0].describe()))
            if args.peer:
                other = peer_one(chosen[name], finding, catalog, all_lower, args.timeout)
                peer["seconds"] += other["seconds"]
                peer["patterns"] += other["patterns"]
                peer["unsound"] += "unsound" in other["kinds"]
                peer["incomplete"] += "incomplete" in other["kinds"]
            if args.only:
                print(f"  {name}: " + ", ".join(f"{s} {best['times'][s] * 1000:.0f} ms"
                                                 for s in STAGES)
                      + f"; {best['queries']} proof queries")
        print(f"{label:>9} {len(names):>8} {patterns:>9} {refined:>8} {len(failures):>5} "
              f"{sum(per_policy):>8.2f} {percentile(per_policy, .5) * 1000:>7.1f} "
              f"{percentile(per_policy, .95) * 1000:>7.1f} {max(per_policy) * 1000:>7.0f}  "
              + " ".join(f"{totals[s]:>7.2f}" for s in STAGES))
        print(f"{'':>9} slowest: " + ", ".join(
            f"{name} {total * 1000:.0f} ms (proof {proof * 1000:.0f})"
            for total, name, proof in sorted(slowest, reverse=True)[:3]))
        for name, reason in failures[:5]:
            print(f"    FAILED {name}: {reason}")
        if args.peer:
            print(f"{'':>9} policy_sentry: {peer['seconds']:.2f} s (no proof), "
                  f"{peer['patterns']} patterns; judged by refiner's checker: "
                  f"{peer['unsound']} policies unsound, {peer['incomplete']} incomplete")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS): {peak:.0f} MiB")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
