"""recommend's tasks (read a finding; refine a document; check it for a principal) on a pool or Dask."""

from __future__ import annotations

import concurrent.futures
import contextlib
import faulthandler
import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable, Iterator

from .account import READ_HEAD, FindingPages, parse_pages, says_unused
from .catalog import Catalog, load_default, load_file
from .errors import InputError
from .finding import merge_findings, unused_as_json, unused_from_json
from .isolate import NoProof, run_isolated
from .jsontext import parse_json_text
from .patterns import parse
from .pipeline import refine_and_prove
from .policy import allowed_among, load_policy, pattern_count, patterns_of
from .prove import Checker, literal_prefix, remember_true_claims
from .refinement import SIZE_LIMITS, policy_size
from .render import review_diff
from .split import split_policy

WINDOW_PER_WORKER = 4  # batches in flight per worker: enough to keep it busy, few to redo
POOL_BATCH = 16  # tasks per pool submission at most: each costs the parent a future, a wakeup
POOL_BATCHES_PER_WORKER = 32  # and a pickle, but fewer tasks than this many batches per
# worker would leave one worker idle at the end while the other finishes its last batch
DASK_BATCH = 64  # tasks per Dask task: the scheduler's overhead is a few ms per task
WORKER_NICENESS = 5  # below the parent
PARENT_POLL_SECONDS = 0.5  # how soon a worker notices that its parent is gone

# --- the catalog, once per process -------------------------------------------------------------

_LOADED: dict[str | None, Catalog] = {}  # this process's catalog, by --catalog path


def catalog_for(path: str | None, fresh: bool = False) -> Catalog:
    """The catalog, loaded once per process (fresh: read again, as every run's parent does,
    so that forked workers share what this run read)."""
    if fresh or path not in _LOADED:
        _LOADED[path] = load_file(path) if path else load_default()
    return _LOADED[path]


def catalog_digest(catalog: Catalog) -> str:
    """What the catalog holds, not where it came from: a file edited in place is another
    catalog, and work done with the old one is done again."""
    return hashlib.sha256(json.dumps(catalog.services, sort_keys=True).encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def _shipped_catalog(services_json: str, version: str) -> Catalog:
    return Catalog(json.loads(services_json), version)


# --- one task (in a worker process) ----------------------------------------------------------------

class ProofFailed(Exception):
    pass


def run_task(task: dict, shipped: str | None = None) -> dict:
    """The result of one task; any failure makes it FAILED, never the run."""
    clock = time.perf_counter()
    try:
        # A Dask worker gets the catalog itself (its files may not be where the client's are).
        catalog = _shipped_catalog(shipped, task["catalogVersion"]) if shipped \
            else catalog_for(task["catalog"])
        operation = {"read": read_task, "refine": refine_task, "check": check_task}[task["op"]]
        result = operation(task, catalog)
        result.update(key=task["key"], status="SUCCEEDED")
    except InputError as failure:
        result = failed(task, "InvalidInput", str(failure))
    except ProofFailed as failure:
        result = failed(task, "ProofFailed", str(failure))
    except Exception as failure:  # a bug: this task fails closed, the run goes on
        result = failed(task, "InternalError", f"{type(failure).__name__}: {failure}")
    result["seconds"] = round(time.perf_counter() - clock, 3)
    if "entry" in result:
        result["entry"]["seconds"] = result["seconds"]
    return result


def refine_task(task: dict, catalog: Catalog) -> dict:
    """Refine and prove one document against one unused set."""
    label = f"policy {task['name']}"
    policy = load_policy(parse_json_text(task["text"], label), label, task["text"])
    run = refine_and_prove(policy, unused_from_json(task["unused"]), catalog, task["timeoutMs"])
    if run.violations:
        raise ProofFailed(f"{label}: " + "; ".join(v.describe() for v in run.violations[:3]))
    before = policy.statements
    after = run.refined.statements if run.refined else []
    entry: dict = {"patterns": [pattern_count(before), pattern_count(after)],
                   "characters": [policy_size(policy.document),
                                  run.refinement.size if after else 0],
                   "changed": run.changed, "proofQueries": run.queries}
    result = {"changed": run.changed, "detach": run.detach, "entry": entry,
              "kept": [i for i, (_, new) in enumerate(run.refinement.pairs) if new is not None],
              "document": None, "diff": None}
    if not run.changed:
        return result
    result["diff"] = review_diff(run, task["name"])
    if run.detach:
        return result
    result["document"] = run.document_text
    limit = SIZE_LIMITS[task["sizeKind"]]
    if run.refinement.size > limit:
        entry["overLimit"] = limit
        if task["managed"]:
            entry["split"] = split_policy(run.refined.document, limit, catalog,
                                          task["timeoutMs"], other_attached=task["otherAttached"])
    return result


def check_task(task: dict, catalog: Catalog) -> dict:
    """The kernel's check, for one principal a consolidated document reaches, that the new
    document keeps every action the principal uses that the old one allowed (statement by
    statement, so the union of the principal's documents keeps them too). That the new one
    admits nothing the old did not was proven for the document itself, whoever holds it."""
    label = f"policy {task['name']}"
    original = load_policy(parse_json_text(task["original"], label), label, task["original"])
    refined = load_policy(parse_json_text(task["refined"], label), label, task["refined"]) \
        if task["refined"] is not None else None
    unused = task["unused"]
    checker = Checker(catalog, unused["actions"], unused["services"], task["timeoutMs"])
    written = iter(refined.statements if refined else [])
    kept = set(task["kept"])
    problems = []
    for index, statement in enumerate(original.statements):
        new = next(written, None) if index in kept else None
        problems += [v for v in checker.check_statement(index, statement, new)
                     if v.kind != "unsound"]  # unsound: proven for the document, or unused here
    if problems:
        raise ProofFailed(f"{label}: " + "; ".join(v.describe() for v in problems[:3]))
    return {"proofQueries": checker.queries}


def read_task(task: dict, catalog: Catalog) -> dict:
    """Read one finding's pages strictly (a page that does not read fails the task, and the
    run) and, for an active unused-permissions finding, what it leaves unused (or why that
    cannot be read: the finding fails, not the run). A process of the pool, or recommend's
    own, reads the files the pages are in."""
    head, pages = parse_pages(FindingPages(task["sources"]).texts())
    result: dict = {"head": {key: head[key] for key in READ_HEAD if key in head}}
    if says_unused(head):
        labelled = [(f"finding {task['key']} page {number}", page)
                    for number, page in enumerate(pages, 1)]
        try:
            result["unused"] = unused_as_json(merge_findings(labelled, catalog))
        except InputError as error:
            result["unusedError"] = str(error)
    return result


def failed(task: dict, code: str, message: str) -> dict:
    return {"key": task["key"], "status": "FAILED", "error": {"code": code, "message": message}}


_GRANTED: dict[tuple[int, str], frozenset] = {}


def granted_actions(text: str, catalog: Catalog) -> frozenset:
    """Catalog actions some Allow statement of the document admits (Resource and Condition
    aside), by the refiner's matcher: for reports, not proofs."""
    key = (id(catalog), hashlib.sha256(text.encode()).hexdigest())
    if key not in _GRANTED:
        policy = load_policy(parse_json_text(text, "policy"), "policy", text)
        granted: set[str] = set()
        for statement in policy.statements:
            if "Action" in statement:
                names = {n for p in patterns_of(statement)
                         for n in catalog.with_prefix(literal_prefix(parse(p)))}
            else:
                names = set(catalog.all_actions())
            granted |= allowed_among(statement, names)
        _GRANTED[key] = frozenset(granted)
    return _GRANTED[key]


# --- running them ------------------------------------------------------------------------------------

def execute(tasks: Iterable[dict], count: int, workers: int | None, scheduler: str | None,
            catalog: Catalog, batch_scale: int = 1) -> Iterator[dict]:
    """Results of run_task for every task, as they finish, on a process pool (or a Dask
    cluster with scheduler); batch_scale: on a pool, that many times more tasks to a
    submission (for tasks that take less time than a submission costs). A worker that dies (a solver abort
    kills its process) breaks a process pool: the tasks that were in flight are redone one by
    one in a child each, so only the one that kills its child fails, and the rest go on in a
    new pool."""
    if not count:
        return
    if scheduler:
        yield from _on_dask(tasks, scheduler, catalog)
        return
    workers = min(workers or multiprocessing.cpu_count(), count)
    batch = max(1, min(POOL_BATCH * batch_scale, count // (workers * POOL_BATCHES_PER_WORKER)))
    # Forked workers share the catalog the parent loaded; elsewhere each loads it once.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pending = iter(tasks)
    while True:
        suspects: list[dict] = []
        context = multiprocessing.get_context(method)
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                    initializer=_worker_start,
                                                    initargs=(os.getpid(),)) as pool:
            pool.submit(os.getpid)  # fork the workers now, before the tasks' planning grows us
            yield from _windowed(pool, pending, workers * WINDOW_PER_WORKER, batch, suspects)
        if not suspects:
            return
        for task in suspects:
            yield _isolated(task)


def _worker_start(parent: int) -> None:
    """A worker ends with its parent, even one killed with SIGKILL (it cannot tell us)."""
    faulthandler.disable()  # a crash is reported by the parent in one line, not as a dump
    # The parent feeds the workers and writes what they return: when the workers take every
    # core from it, they wait for it (two workers on two cores were slower than one).
    os.nice(WORKER_NICENESS)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="refiner-parent-watch").start()


def _windowed(pool, pending: Iterator[dict], window: int, batch: int,
              suspects: list[dict]) -> Iterator[dict]:
    """Run tasks from pending, `batch` to a submission (run_batch), with at most `window`
    submissions in flight, yielding results. When the pool breaks, the tasks in flight go to
    suspects; the rest stay in pending."""
    in_flight: dict[concurrent.futures.Future, list[dict]] = {}
    broken = concurrent.futures.process.BrokenProcessPool
    exhausted = False
    while True:
        while len(in_flight) < window and not exhausted:
            tasks = list(itertools.islice(pending, batch))
            if not tasks:
                exhausted = True
                break
            try:
                in_flight[pool.submit(run_batch, tasks)] = tasks
            except broken:
                suspects.extend(tasks)
                suspects.extend(task for sent in in_flight.values() for task in sent)
                return
        if not in_flight:
            return
        done, _ = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in done:
            tasks = in_flight.pop(future)
            try:
                results = future.result()
            except broken:
                suspects.extend(tasks)
                suspects.extend(task for sent in in_flight.values() for task in sent)
                return
            yield from results


def _isolated(task: dict) -> dict:
    try:
        return run_isolated(run_task, task, deadline=None)
    except NoProof as failure:
        return failed(task, "SolverCrashed", str(failure))


def run_batch(tasks: list[dict], shipped: str | None = None) -> list[dict]:
    """run_task for each task of a batch (one pool submission or Dask task: the cost of each
    is paid once for many small tasks), in a worker that proves many documents: what the
    kernel rewrote to true for one is not sent to Z3 again for the next."""
    remember_true_claims()
    return [run_task(task, shipped) for task in tasks]


_CLUSTERS: dict[tuple[str, int], tuple] = {}  # (address, id(catalog)) -> (client, shipped)


@contextlib.contextmanager
def cluster(address: str | None, catalog: Catalog) -> Iterator[None]:
    """One Dask client, and the catalog sent to the workers once, for every execute within
    (an organization's accounts run one after another); nothing without an address."""
    if address is None:
        yield
        return
    with _dask_client(address, catalog) as held:
        _CLUSTERS[(address, id(catalog))] = held
        try:
            yield
        finally:
            del _CLUSTERS[(address, id(catalog))]


@contextlib.contextmanager
def _dask_client(address: str, catalog: Catalog) -> Iterator[tuple]:
    """(client, the catalog scattered to every worker)."""
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--scheduler needs Dask: pip install 'iam-refiner[dask]'") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"cannot reach the Dask scheduler {address}: {error}") from None
    with client:
        # The catalog goes to every worker once, as JSON text.
        yield client, client.scatter(json.dumps(catalog.services), broadcast=True)


def _on_dask(tasks: Iterable[dict], address: str, catalog: Catalog) -> Iterator[dict]:
    held = _CLUSTERS.get((address, id(catalog)))
    if held is None:
        with _dask_client(address, catalog) as (client, shipped):
            yield from _run_on(client, shipped, tasks)
    else:
        yield from _run_on(*held, tasks)


def _run_on(client, shipped, tasks: Iterable[dict]) -> Iterator[dict]:
    """Tasks in batches, a bounded window of them in flight, results streamed back as each
    batch finishes. A worker lost mid-run costs only its batches (Dask runs them again
    elsewhere, or they fail)."""
    from distributed import as_completed

    window = WINDOW_PER_WORKER * max(1, len(client.scheduler_info().get("workers", {})))
    source = iter(tasks)
    running = as_completed()
    held: dict = {}

    def submit() -> bool:
        batch = list(itertools.islice(source, DASK_BATCH))
        if not batch:
            return False
        future = client.submit(run_batch, batch, shipped, pure=False)
        held[future.key] = batch
        running.add(future)
        return True

    for _ in range(window):
        if not submit():
            break
    for future in running:
        batch = held.pop(future.key)
        try:
            yield from future.result()
        except Exception as failure:  # the worker died (KilledWorker) or was lost
            for task in batch:
                yield failed(task, "WorkerLost", f"{type(failure).__name__}: {failure}")
        submit()
