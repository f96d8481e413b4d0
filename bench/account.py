"""Benchmark: `refiner recommend` on a synthetic account built from the corpus with a fixed seed.

Run by hand (not part of the test suite):

    .venv/bin/python bench/account.py                         # 2,000 roles: 1 and 2 workers, Dask
    .venv/bin/python bench/account.py --roles 200 --naive 20  # smaller, with the naive loop
    .venv/bin/python bench/account.py --roles 10000 --naive 0 --repeat 3
    .venv/bin/python bench/account.py --roles 5000 --varied --naive 0   # larger, varied policies
    .venv/bin/python bench/account.py --organization 100 --roles 500 --naive 0 --workers 0

The Dask run is a cluster of separate processes on 127.0.0.1 (`dask scheduler` and two
`dask worker`, as on several machines); --local-cluster uses Dask's LocalCluster instead.
--folder DIR builds the account there once and reuses it on later runs. --workers 0 runs no
process pool (the Dask cluster alone). An organization's run also reports the time per account:
accounts are done one after another, so each account's time is the gap between its last
recommendation and the previous account's (the median over accounts; the shared policies are
done first, before any account's own).

Each role has one inline policy and two or three attached AWS managed policies drawn from the
corpus (shared by many roles) and a GetFindingV2 (5%, 30% and whole-service unused mixes, a few
UnusedIAMRole). Reported: wall time, roles per second and peak memory of each run (the CLI in
its own process, measured with its children), and the naive loop: one `refiner refine` process
per policy of a sample of the roles with an UnusedPermission finding, scaled to all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from account_bundle import build  # noqa: E402
from dask_processes import DaskProcesses  # noqa: E402

from refiner.catalog import load_default  # noqa: E402

REFINER = [sys.executable, "-m", "refiner.cli"]
OLD_RUNS = "old-runs"  # earlier runs' output folders, left for the user to delete


def timed(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak resident memory (MiB) of the largest process of the command (itself
    or a worker: wait4 reports the largest of a process and its descendants) and CPU seconds."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def set_aside(out: Path) -> Path:
    """out, made free for a run: a folder an earlier run wrote there is moved into OLD_RUNS,
    never deleted by a benchmark. Deleted just before, its thousands of files would be timed:
    ext4 skips recently freed inodes when it makes a file (for up to minutes), and a run's
    file creation took three to six times as long (1.6 s against 5 to 10 s for 19,800 files)."""
    if out.exists():
        trash = out.parent / OLD_RUNS
        trash.mkdir(exist_ok=True)
        out.rename(trash / f"{out.name}-{time.time_ns()}")
    return out


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


def per_account(out: Path) -> str:
    """Per account, as accounts complete one after another: the gap between its last
    recommendation's completedAt and the previous account's (the first: since the first
    recommendation of all)."""
    first, last = None, {}
    for path in (out / "recommendations").glob("*.json"):
        response = json.loads(path.read_text())
        done = datetime.fromisoformat(response["completedAt"].replace("Z", "+00:00"))
        account = response["principal"]["account"]
        last[account] = max(last.get(account, done), done)
        first = done if first is None else min(first, done)
    ends = sorted(last.values())
    gaps = [(end - start).total_seconds() for start, end in zip([first, *ends[:-1]], ends, strict=True)]
    return (f"per account ({len(gaps)} accounts): median {statistics.median(gaps):.1f} s, "
            f"min {min(gaps):.1f}, max {max(gaps):.1f}")


def build_account(folder: Path, args, actions: list[str]) -> tuple[list[Path], Path]:
    """The exports (one per account) and the findings folder, built once per --folder."""
    marker = folder / "built.json"
    wanted = {"roles": args.roles, "varied": args.varied, "organization": args.organization}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return sorted(folder.glob("account-*/authorization-details.json")), folder / "findings"
    started = time.perf_counter()
    details = []
    accounts = [f"{100000000000 + n:012d}" for n in range(args.organization)] \
        if args.organization else [None]
    findings = folder / "findings"
    findings.mkdir(parents=True, exist_ok=True)
    for number, account in enumerate(accounts):
        where = folder / f"account-{number:03d}"
        extra = {"account": account} if account else {}
        export, found = build(where, args.roles, actions, seed=20261125 + number,
                              unused_roles=max(1, args.roles // 100), varied=args.varied, **extra)
        for path in found.glob("*.json"):
            path.rename(findings / path.name)
        details.append(export)
    marker.write_text(json.dumps(wanted))
    print(f"built in {time.perf_counter() - started:.1f} s")
    return details, findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", type=int, default=2_000, help="roles (per account)")
    parser.add_argument("--varied", action="store_true",
                        help="larger, more varied policies (inline up to 10,240 characters)")
    parser.add_argument("--organization", type=int, default=0, metavar="ACCOUNTS",
                        help="that many accounts of --roles roles each")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--naive", type=int, default=100, help="roles in the naive-loop sample")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--local-cluster", action="store_true",
                        help="Dask's LocalCluster instead of separate scheduler/worker processes")
    parser.add_argument("--folder", type=Path, help="build the account here once and reuse it")
    args = parser.parse_args()
    catalog = load_default()
    with tempfile.TemporaryDirectory() as temp:
        folder = args.folder or Path(temp)
        details, findings = build_account(folder, args, catalog.all_actions())
        principals = args.roles * max(args.organization, 1)
        print(f"account: {principals} roles in {len(details)} account(s), "
              f"{len(list(findings.glob('*.json')))} findings; the machine is shared: "
              f"load average {os.getloadavg()[0]:.1f} at the start")
        base = REFINER + ["recommend", "--authorization-details", *map(str, details),
                          "--findings", str(findings)]
        results: dict[str, list[tuple[float, float, float]]] = {}
        for _ in range(args.repeat):
            for workers in filter(None, args.workers):
                out = set_aside(folder / f"out-{workers}")
                results.setdefault(f"{workers} worker(s)", []).append(
                    timed(base + ["-o", str(out), "--workers", str(workers)]))
            if not args.no_dask:
                out = set_aside(folder / "out-dask")
                if args.local_cluster:
                    from distributed import LocalCluster

                    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                      dashboard_address=None) as cluster:
                        run = timed(base + ["-o", str(out), "--scheduler",
                                            cluster.scheduler_address])
                    results.setdefault("Dask LocalCluster (2 workers)", []).append(run)
                else:
                    with DaskProcesses(folder) as cluster:
                        seconds, peak, cpu = timed(base + ["-o", str(out), "--scheduler",
                                                           cluster.address])
                        cluster_peaks = cluster.peaks_mib()
                        print(f"Dask run: peak MiB of the client {peak:.0f}, the scheduler "
                              f"{cluster_peaks[0]:.0f}, the workers "
                              f"{', '.join(f'{p:.0f}' for p in cluster_peaks[1:])}")
                        peak = max(peak, *cluster_peaks)
                    results.setdefault("Dask, separate processes (2 workers)", []).append(
                        (seconds, peak, cpu))
        last = folder / (f"out-{args.workers[-1]}" if args.workers[-1] else "out-dask")
        resumed = timed(base + ["-o", str(last), "--workers", str(args.workers[-1] or 2)])
        summary = json.loads((last / "summary.json").read_text())
        print(f"totals: {json.dumps(summary['totals'])}")
        if args.organization:
            print(per_account(last))
        print("| run | seconds (median, min-max) | principals/s | largest process MiB | "
              "CPU s |\n|---|---|---|---|---|")
        for name, runs in results.items():
            seconds = [r[0] for r in runs]
            median = statistics.median(seconds)
            print(f"| {name} | {median:.1f} ({min(seconds):.1f}-{max(seconds):.1f}) | "
                  f"{principals / median:.0f} | {max(r[1] for r in runs):.0f} | "
                  f"{statistics.median(r[2] for r in runs):.1f} |")
        print(f"| re-run, all done before | {resumed[0]:.1f} | | {resumed[1]:.0f} | "
              f"{resumed[2]:.1f} |")
        if args.naive:
            naive = naive_loop(details[0], findings, args.naive, folder)
            if not naive["runs"]:
                sys.exit("naive loop: no `refiner refine` process ran (no UnusedPermission role)")
            for failure in naive["failures"]:
                print(f"naive loop: FAILED {failure}")
            # Scaled by the roles that need refining: the others cost recommend nothing either.
            scaled = naive["seconds"] / naive["roles"] * naive["permission_roles"]
            two = statistics.median(r[0] for r in results[f"{args.workers[-1] or 2} worker(s)"])
            print(f"naive loop: {naive['runs']} `refiner refine` processes for {naive['roles']} "
                  f"roles in {naive['seconds']:.1f} s ({naive['seconds'] / naive['runs']:.2f} s "
                  f"each, {len(naive['failures'])} failed); scaled to the "
                  f"{naive['permission_roles']} roles with an UnusedPermission finding "
                  f"{scaled:.0f} s; recommend with {args.workers[-1]} worker(s) ({two:.1f} s) is "
                  f"{scaled / two:.1f}x faster")
        if (folder / OLD_RUNS).exists():  # not deleted here: a benchmark run next would pay
            print(f"earlier runs' output is in {folder / OLD_RUNS}: delete it when done")


if __name__ == "__main__":
    main()
