"""Recommend proven refinements for every principal of an account: one response per finding."""

from __future__ import annotations

import concurrent.futures
import faulthandler
import functools
import hashlib
import json
import multiprocessing
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, keep
from .account import Account, FindingPages, finding_file_name, finding_pages
from .catalog import Catalog, load_default, load_file
from .errors import InputError
from .finding import Unused, merge_findings
from .isolate import NoProof, run_isolated
from .jsontext import dumps, parse_json_text
from .output import progress, write_file
from .pipeline import refine_and_prove
from .policy import allowed_among, load_policy, pattern_count
from .prove import DEFAULT_TIMEOUT_MS
from .refinement import SIZE_LIMITS, policy_size
from .render import review_diff, timestamp
from .report import write_report
from .split import split_policy

RECOMMENDATIONS, STATE = "recommendations", "state"
WINDOW_PER_WORKER = 4  # tasks in flight per worker: enough to keep it busy, few to redo


@dataclass
class Job:
    """What one run of `refiner recommend` is asked to do."""

    authorization_details: list[str]
    findings: list[str]
    outdir: str
    workers: int | None = None
    scheduler: str | None = None
    catalog: str | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    progress: bool = True
    keep: keep.KeepRules | None = None  # what to keep whatever the findings say


def recommend(job: Job) -> dict:
    """Read the account and its findings, refine and prove every principal's policies against
    its finding (in parallel), write OUTDIR/recommendations/<id>.json, summary.json and
    report.html; return the summary's totals. Findings already done with the same inputs are
    not done again, so an interrupted run is finished by running it again."""
    out = Path(job.outdir)
    _refuse_overlap(out, job.findings + job.authorization_details)
    account = Account.read(job.authorization_details)
    pages = finding_pages(job.findings)
    catalog = catalog_for(job.catalog, fresh=True)  # loaded before the workers fork
    for folder in (out, out / RECOMMENDATIONS, out / STATE):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"cannot create {folder}: {error.strerror}") from None
    rows: list[dict] = []
    tasks: list[dict] = []
    digest = catalog_digest(catalog)
    facts = keep.account_facts(job.keep, job.authorization_details)  # tags, version dates
    for finding_id in sorted(pages):
        routed = route(finding_id, pages[finding_id], account, job, catalog, digest, facts)
        if "task" not in routed:
            rows.append(routed)
        elif (done := _done_before(out, routed["task"])) is not None:
            rows.append(done)
        else:
            tasks.append(routed["task"])
    # What this run does not produce must not linger from an earlier one: recommendations of
    # findings now skipped or gone, and the temporary files of a run that was killed.
    _keep_only(out, {finding_file_name(t["findingId"]) for t in tasks}
               | {finding_file_name(r["findingId"]) for r in rows if "principal" in r})
    with progress(job.progress, len(tasks), "refining and proving") as advance:
        for result in execute(tasks, job, catalog):
            _write_result(out, result)
            rows.append(result["row"])
            advance()
    rows.sort(key=lambda row: row["findingId"])
    summary = {"refiner": __version__, "catalog": catalog.version, "totals": totals(rows),
               "findings": rows}
    write_file(str(out / "summary.json"), dumps(summary, indent=2) + "\n")
    write_report(out / "report.html", summary, _diffs(out, rows))
    return summary["totals"]


# --- routing: what each finding asks for ---------------------------------------------------------

def route(finding_id: str, pages: FindingPages, account: Account, job: Job,
          catalog: Catalog, digest: str, facts: keep.AccountFacts | None = None) -> dict:
    """A summary row for a finding that needs no policy work, else {"task": ...}."""
    head = pages.head
    arn = head.get("resource") if isinstance(head.get("resource"), str) else None
    row = {"findingId": finding_id, "resourceArn": arn, "findingType": head.get("findingType")}
    if head.get("status", "ACTIVE") != "ACTIVE":
        return {**row, "status": "SKIPPED", "reason": f"status {head.get('status')}"}
    if head.get("findingType") == "UnusedIAMRole":
        return {**row, "status": "DELETE_ROLE", "reason": "the role is unused: delete it"}
    if head.get("findingType") not in (None, "UnusedPermission"):
        return {**row, "status": "SKIPPED", "reason": f"finding type {head.get('findingType')}"}
    principal = account.principals.get(arn)
    if principal is None:
        return {**row, "status": "UNKNOWN_PRINCIPAL",
                "reason": "no such principal in the authorization details"}
    kept = keep.for_principal(job.keep, facts, principal.arn, head,
                              [p.policy_id for p in principal.policies])
    if "status" in kept:  # a keep rule keeps the whole principal: it is never refined
        return {**row, **kept}
    task = {"findingId": finding_id, "resourceArn": arn, "pages": pages.texts,
            "principal": {"arn": principal.arn, "kind": principal.kind, "name": principal.name,
                          "missing": principal.missing},
            "policies": [p.as_task() for p in principal.policies],
            "catalog": job.catalog, "catalogVersion": catalog.version, "catalogDigest": digest,
            "timeoutMs": job.timeout_ms, "refiner": __version__, **kept}
    task["digest"] = hashlib.sha256(json.dumps(task, sort_keys=True).encode()).hexdigest()
    return {"task": task}


# --- the work of one finding (in a worker process: JSON in, JSON out) ---------------------------

_LOADED: dict[str | None, Catalog] = {}  # this process's catalog, by --catalog path


def catalog_for(path: str | None, fresh: bool = False) -> Catalog:
    """The catalog, loaded once per process (fresh: read again, as every run's parent does,
    so that forked workers share what this run read)."""
    if fresh or path not in _LOADED:
        _LOADED[path] = load_file(path) if path else load_default()
    return _LOADED[path]


def catalog_digest(catalog: Catalog) -> str:
    """What the catalog holds, not where it came from: a file edited in place is another
    catalog, and findings refined with the old one are done again."""
    return hashlib.sha256(json.dumps(catalog.services, sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def _shipped_catalog(services_json: str, version: str) -> Catalog:
    return Catalog(json.loads(services_json), version)


def recommend_one(task: dict, shipped: str | None = None) -> dict:
    """The recommendation for one finding: a step for every policy of the principal that the
    refinement changes, each proven. Any failure makes this finding FAILED, never the run."""
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    row = {"findingId": task["findingId"], "resourceArn": task["resourceArn"],
           "findingType": "UnusedPermission", "principal": task["principal"]["arn"],
           "policies": [], "proofQueries": 0}
    if task["principal"]["missing"]:
        row["missing"] = task["principal"]["missing"]
    steps: list[dict] = []
    diffs: list[dict] = []
    try:
        # A Dask worker gets the catalog itself (its files may not be where the client's are).
        catalog = _shipped_catalog(shipped, task["catalogVersion"]) if shipped \
            else catalog_for(task["catalog"])
        if task["principal"]["missing"]:  # a partial answer would look like a whole one
            raise InputError("the authorization details lack what is attached to this "
                             f"principal ({', '.join(task['principal']['missing'])}): export "
                             "them without --filter")
        labelled = [(f"finding {task['findingId']} page {number}",
                     parse_json_text(text, f"finding {task['findingId']}"))
                    for number, text in enumerate(task["pages"], 1)]
        unused = keep.for_worker(task.get("keep"), merge_findings(labelled, catalog), catalog)
        row["kept"] = list(unused.kept)
        attached = sum(ref["kind"] == "managed" for ref in task["policies"])
        for ref in task["policies"]:
            entry, step, diff = _one_policy(ref, unused, catalog, task["timeoutMs"], attached,
                                            task["principal"]["kind"])
            row["policies"].append(entry)
            row["proofQueries"] += entry.pop("proofQueries", 0)
            row["kept"] += entry.pop("kept", [])
            if step is not None:
                steps.append({"unusedPermissionsRecommendedStep": step})
                diffs.append(diff)
        status, error = "SUCCEEDED", None
    except InputError as failure:
        status, error = "FAILED", {"code": "InvalidInput", "message": str(failure)}
    except ProofFailed as failure:
        status, error = "FAILED", {"code": "ProofFailed", "message": str(failure)}
    except Exception as failure:  # a bug: this finding fails closed, the run goes on
        status, error = "FAILED", {"code": "InternalError",
                                   "message": f"{type(failure).__name__}: {failure}"}
    response = {"resourceArn": task["resourceArn"],
                "recommendationType": "UnusedPermissionRecommendation", "status": status,
                "startedAt": timestamp(started),
                "completedAt": timestamp(datetime.now(timezone.utc))}
    if error:
        response["error"] = error
        steps, diffs = [], []
    response["recommendedSteps"] = steps
    if row.get("kept"):
        response["kept"] = row["kept"]  # a note: what keep rules kept, and why
    row.update(status=status, seconds=round(time.perf_counter() - clock, 3))
    if error:
        row["error"] = error
    return {"task": task, "recommendation": response, "row": row, "diffs": diffs}


class ProofFailed(Exception):
    pass


def _one_policy(ref: dict, unused: Unused, catalog: Catalog, timeout_ms: int, attached: int,
                owner: str = "role"):
    """(summary entry, recommended step or None, diff or None) for one policy."""
    label = f"policy {ref['name']}"
    entry: dict = {"policyId": ref["policyId"], "kind": ref["kind"]}
    if ref["kind"] == "group":  # shared with the group's other members: report, never rewrite
        entry["grantsUnused"] = _unused_granted(ref["text"], label, unused, catalog)
        return entry, None, None
    policy = load_policy(parse_json_text(ref["text"], label), label, ref["text"])
    run = refine_and_prove(policy, unused, catalog, timeout_ms)
    if run.violations:
        raise ProofFailed(f"{label}: " + "; ".join(v.describe() for v in run.violations[:3]))
    entry["kept"] = [{**item, "policyId": ref["policyId"]} for item in run.kept
                     if "statement" in item]
    before = policy.statements
    after = run.refined.statements if run.refined else []
    limit = SIZE_LIMITS["managed" if ref["kind"] == "managed" else
                        "inline" if owner == "role" else f"{owner}-inline"]
    entry.update(patterns=[pattern_count(before), pattern_count(after)],
                 characters=[policy_size(policy.document), run.refinement.size if after else 0],
                 changed=run.changed, proofQueries=run.queries)
    if not run.changed:
        return entry, None, None
    step: dict = {"existingPolicyId": ref["policyId"]}
    if ref.get("updatedAt"):
        step["policyUpdatedAt"] = ref["updatedAt"]
    if run.detach:
        step["recommendedAction"] = "DETACH_POLICY"
    else:
        step["recommendedAction"] = "CREATE_POLICY"
        step["recommendedPolicy"] = run.document_text
        if run.refinement.size > limit:
            entry["overLimit"] = limit
            if ref["kind"] == "managed":
                entry["split"] = split_policy(run.refined.document, limit, catalog, timeout_ms,
                                              other_attached=attached - 1)
    return entry, step, {"policyId": ref["policyId"], "diff": review_diff(run, ref["name"])}


def _unused_granted(text: str, label: str, unused: Unused, catalog: Catalog) -> list[str]:
    """Unused actions (catalog actions of wholly unused services too) that a group policy's
    Allow statements grant: a report for the group's owner, not a proof."""
    policy = load_policy(parse_json_text(text, label), label, text)
    names = list(unused.actions.values()) + [a for s in sorted(unused.services)
                                             for a in catalog.actions_of(s)]
    granted = set().union(*(allowed_among(statement, names) for statement in policy.statements))
    return sorted(granted, key=str.lower)


# --- running the tasks ------------------------------------------------------------------------------

def execute(tasks: list[dict], job: Job, catalog: Catalog) -> Iterator[dict]:
    """Results of recommend_one for every task, as they finish, on a process pool (or a Dask
    cluster with job.scheduler). A worker that dies (a solver abort kills its process) breaks
    a process pool: the tasks that were in flight are redone one by one in a child each, so
    only the one that kills its child fails, and the rest go on in a new pool."""
    if not tasks:
        return
    if job.scheduler:
        yield from _on_dask(tasks, job.scheduler, catalog)
        return
    workers = job.workers or multiprocessing.cpu_count()
    # Forked workers share the catalog the parent loaded; elsewhere each loads it once.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pending = list(reversed(tasks))
    while pending:
        suspects: list[dict] = []
        context = multiprocessing.get_context(method)
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                    initializer=faulthandler.disable) as pool:
            yield from _windowed(pool, pending, workers * WINDOW_PER_WORKER, suspects)
        for task in suspects:
            yield _isolated(task)


def _windowed(pool, pending: list[dict], window: int, suspects: list[dict]) -> Iterator[dict]:
    """Run tasks from pending (popped from its end) with at most `window` in flight, yielding
    results. When the pool breaks, the tasks in flight go to suspects and the rest stay in
    pending."""
    in_flight: dict[concurrent.futures.Future, dict] = {}
    broken = concurrent.futures.process.BrokenProcessPool
    while pending or in_flight:
        while pending and len(in_flight) < window:
            task = pending.pop()
            try:
                in_flight[pool.submit(recommend_one, task)] = task
            except broken:
                pending.append(task)
                suspects.extend(in_flight.values())
                return
        done, _ = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in done:
            task = in_flight.pop(future)
            try:
                result = future.result()
            except broken:
                suspects.append(task)
                suspects.extend(in_flight.values())
                return
            yield result


def _isolated(task: dict) -> dict:
    try:
        return run_isolated(recommend_one, task, deadline=None)
    except NoProof as failure:
        return _failed(task, "SolverCrashed", str(failure))


def _on_dask(tasks: list[dict], address: str, catalog: Catalog) -> Iterator[dict]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise InputError("--scheduler needs Dask: pip install 'iam-refiner[dask]'") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"cannot reach the Dask scheduler {address}: {error}") from None
    with client:
        # The catalog goes to every worker once, as JSON text.
        shipped = client.scatter(json.dumps(catalog.services), broadcast=True)
        futures = {client.submit(recommend_one, task, shipped, pure=False): task
                   for task in tasks}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as failure:  # the worker died (KilledWorker) or was lost
                yield _failed(futures[future], "WorkerLost", f"{type(failure).__name__}: {failure}")


def _failed(task: dict, code: str, message: str) -> dict:
    now = timestamp(datetime.now(timezone.utc))
    error = {"code": code, "message": message}
    return {"task": task, "diffs": [],
            "recommendation": {"resourceArn": task["resourceArn"],
                               "recommendationType": "UnusedPermissionRecommendation",
                               "status": "FAILED", "startedAt": now, "completedAt": now,
                               "error": error, "recommendedSteps": []},
            "row": {"findingId": task["findingId"], "resourceArn": task["resourceArn"],
                    "findingType": "UnusedPermission", "principal": task["principal"]["arn"],
                    "policies": [], "status": "FAILED", "error": error}}


# --- output ----------------------------------------------------------------------------------------

def _write_result(out: Path, result: dict) -> None:
    """The recommendation first, then the state that says it is done: a run killed between the
    two redoes that finding, never skips it."""
    name = finding_file_name(result["task"]["findingId"])
    write_file(str(out / RECOMMENDATIONS / name), dumps(result["recommendation"], indent=2) + "\n")
    task = result["task"]
    # What `refiner aws apply` needs to act safely: the principal and every policy as it was
    # read, to refuse a recommendation whose policy changed since.
    state = {"digest": task["digest"], "row": result["row"], "diffs": result["diffs"],
             "principal": task["principal"], "policies": task["policies"]}
    write_file(str(out / STATE / name), dumps(state) + "\n")


def _done_before(out: Path, task: dict) -> dict | None:
    """The summary row of a finding a previous run finished with the same inputs."""
    name = finding_file_name(task["findingId"])
    try:
        state = json.loads((out / STATE / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if state.get("digest") != task["digest"] or not (out / RECOMMENDATIONS / name).is_file():
        return None
    if state["row"].get("status") == "FAILED":  # a failure is tried again, never kept
        return None
    return state["row"]


def _keep_only(out: Path, names: set[str]) -> None:
    for folder in (out / RECOMMENDATIONS, out / STATE):
        for path in folder.iterdir():
            if path.name not in names and (path.suffix == ".json" or path.name.startswith(".")):
                path.unlink()


def _refuse_overlap(out: Path, inputs: list[str]) -> None:
    """OUTDIR must not hold an input, nor lie inside one (a re-run would read its own output)."""
    target = out.resolve()
    for path in inputs:
        source = Path(path).resolve()
        if source == target or target in source.parents or source in target.parents:
            raise InputError(f"-o {out} overlaps the input {path}: give another folder")


def _diffs(out: Path, rows: list[dict]) -> Iterable[tuple[dict, list[dict]]]:
    """Each row with its policies' diffs, read back one finding at a time (never all held)."""
    for row in rows:
        diffs: list[dict] = []
        if row.get("status") in ("SUCCEEDED",):
            try:
                state = json.loads((out / STATE / finding_file_name(row["findingId"])).read_text())
                diffs = state.get("diffs", [])
            except (OSError, ValueError):
                diffs = []
        yield row, diffs


def totals(rows: list[dict]) -> dict:
    count: dict = {"findings": len(rows)}
    for row in rows:
        count[row["status"]] = count.get(row["status"], 0) + 1
    policies = [p for row in rows for p in row.get("policies", []) if "patterns" in p]
    count["policiesChanged"] = sum(bool(p.get("changed")) for p in policies)
    count["patterns"] = [sum(p["patterns"][0] for p in policies),
                         sum(p["patterns"][1] for p in policies)]
    count["characters"] = [sum(p["characters"][0] for p in policies),
                           sum(p["characters"][1] for p in policies)]
    count["overLimit"] = sum("overLimit" in p for p in policies)
    count["proofQueries"] = sum(row.get("proofQueries", 0) for row in rows)
    return count


