"""Benchmark: `refiner recommend` on a synthetic account built from the corpus with a fixed seed.

Run by hand (not part of the test suite):

    .venv/bin/python bench/account.py                         # 2,000 roles: 1 and 2 workers, Dask
    .venv/bin/python bench/account.py --roles 200 --naive 20  # smaller, with the naive loop

Each role has one inline policy and two or three attached AWS managed policies drawn from the
corpus (shared by many roles) and a GetFindingV2 (5%, 30% and whole-service unused mixes, a few
UnusedIAMRole). Reported: wall time, roles per second and peak memory of each run (the CLI in
its own process, measured with its children), and the naive loop: one `refiner refine` process
per policy of a sample of the roles with an UnusedPermission finding, scaled to all of them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from account_bundle import build  # noqa: E402

from refiner.catalog import load_default  # noqa: E402

REFINER = [sys.executable, "-m", "refiner.cli"]


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of the largest process of the command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return seconds, peak / 1024


def naive_loop(details: Path, findings: Path, sample: int, folder: Path) -> dict:
    """One `refiner refine` process per policy of the first `sample` roles with an
    UnusedPermission finding (each policy against its role's finding, found by the finding's
    `resource`, the role's ARN, as recommend finds it). Every process must succeed (exit 0,
    or 4 when a policy is left with nothing)."""
    export = json.loads(details.read_text())
    managed = {p["Arn"]: next(v["Document"] for v in p["PolicyVersionList"] if v["IsDefaultVersion"])
               for p in export["Policies"]}
    by_role: dict[str, Path] = {}
    for path in sorted(findings.glob("*.json")):
        response = json.loads(path.read_text())
        if response["findingType"] == "UnusedPermission":
            by_role[response["resource"]] = path
    roles = [role for role in export["RoleDetailList"] if role["Arn"] in by_role][:sample]
    runs, failures = 0, []
    started = time.perf_counter()
    for role in roles:
        documents = [p["PolicyDocument"] for p in role["RolePolicyList"]] + \
            [managed[a["PolicyArn"]] for a in role["AttachedManagedPolicies"]]
        for number, document in enumerate(documents):
            policy = folder / f"naive-{number}.json"
            policy.write_text(json.dumps(document))
            done = subprocess.run(REFINER + ["refine", str(policy), "--unused",
                                             str(by_role[role["Arn"]])],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            runs += 1
            if done.returncode not in (0, 4):
                failures.append(f"{role['RoleName']} policy {number}: exit {done.returncode}: "
                                f"{done.stderr.strip()[:200]}")
    return {"seconds": time.perf_counter() - started, "runs": runs, "roles": len(roles),
            "failures": failures, "permission_roles": len(by_role)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", type=int, default=2_000)
    parser.add_argument("--naive", type=int, default=100, help="roles in the naive-loop sample")
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    catalog = load_default()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        started = time.perf_counter()
        details, findings = build(folder, args.roles, catalog.all_actions(),
                                  unused_roles=max(1, args.roles // 100))
        print(f"account: {args.roles} roles, {len(list(findings.glob('*.json')))} findings, "
              f"built in {time.perf_counter() - started:.1f} s")
        base = REFINER + ["recommend", "--authorization-details", str(details), "--findings",
                          str(findings)]
        results = {}
        for workers in (1, 2):
            out = folder / f"out-{workers}"
            results[f"{workers} worker(s)"] = timed(base + ["-o", str(out), "--workers", str(workers)])
        if not args.no_dask:
            from distributed import LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                              dashboard_address=None) as cluster:
                out = folder / "out-dask"
                results["Dask LocalCluster (2 workers)"] = timed(
                    base + ["-o", str(out), "--scheduler", cluster.scheduler_address])
        resumed = timed(base + ["-o", str(folder / "out-2"), "--workers", "2"])
        totals = json.loads((folder / "out-2" / "summary.json").read_text())["totals"]
        print(f"totals: {json.dumps(totals)}")
        print("| run | seconds | roles/s | peak MiB |\n|---|---|---|---|")
        for name, (seconds, peak) in results.items():
            print(f"| {name} | {seconds:.1f} | {args.roles / seconds:.0f} | {peak:.0f} |")
        print(f"| re-run, all done before | {resumed[0]:.1f} | | |")
        if args.naive:
            naive = naive_loop(details, findings, args.naive, folder)
            if not naive["runs"]:
                sys.exit("naive loop: no `refiner refine` process ran (no UnusedPermission role)")
            for failure in naive["failures"]:
                print(f"naive loop: FAILED {failure}")
            # Scaled by the roles that need refining: the others cost recommend nothing either.
            scaled = naive["seconds"] / naive["roles"] * naive["permission_roles"]
            two = results["2 worker(s)"][0]
            print(f"naive loop: {naive['runs']} `refiner refine` processes for {naive['roles']} "
                  f"roles in {naive['seconds']:.1f} s ({naive['seconds'] / naive['runs']:.2f} s "
                  f"each, {len(naive['failures'])} failed); scaled to the "
                  f"{naive['permission_roles']} roles with an UnusedPermission finding "
                  f"{scaled:.0f} s; recommend with 2 workers ({two:.1f} s) is "
                  f"{scaled / two:.1f}x faster")

if __name__ == "__main__":
    main()
