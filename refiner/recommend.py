"""Recommend proven refinements for every principal of an account: one response per finding."""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import orjson

from . import __version__, keep
from .account import FindingPages, finding_file_name, finding_pages
from .catalog import Catalog
from .errors import InputError
from .finding import unused_from_json
from .jsontext import dumps, dumps_in_bulk
from .outdir import OutputFolder
from .output import progress
from .principals import MANAGED, VIA_ATTACHED, AccountGraph, Document, Principal, account_groups
from .prove import DEFAULT_TIMEOUT_MS
from .render import timestamp
from .report import row_html, write_report
from .sharing import DEFAULT_SHARED, Decision, UnusedSet, decide, document_scope, size_kind, task_key
from .split import DEFAULT_ATTACHMENT_QUOTA
from .tasks import catalog_digest, catalog_for, cluster, execute, failed, granted_actions, read_task

RECOMMENDATIONS, STATE, SHARED = "recommendations", "state", "shared"
READ_IN_WORKERS = 64  # findings: fewer are read in this process (a pool costs more)
READ_BATCH_SCALE = 8  # times more findings to a submission than refine tasks (each read
# takes a fraction of a millisecond)
KEPT_ARNS = 10  # principals named per action kept because they use it (the rest are counted)


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
    shared: str = DEFAULT_SHARED
    attachment_quota: int = DEFAULT_ATTACHMENT_QUOTA
    keep: keep.KeepRules | None = None  # what to keep whatever the findings say


def recommend(job: Job) -> dict:
    """Read the account graph and the findings; refine and prove each distinct (document,
    unused actions it can reach) once, in parallel; write OUTDIR/recommendations/<finding>.json,
    OUTDIR/state/<finding>.json, OUTDIR/shared/<policy>.json for documents several principals
    hold, summary.json and report.html; return the summary's totals. Work done before with
    the same inputs is kept (OUTDIR/results.jsonl, by content key), so a killed run is finished by
    running it again."""
    out = OutputFolder(job.outdir, job.findings + job.authorization_details)
    groups, accounts = account_groups(job.authorization_details)
    pages = finding_pages(job.findings)
    catalog = catalog_for(job.catalog, fresh=True)  # loaded before the workers fork
    out.begin((RECOMMENDATIONS, STATE, SHARED))
    digest = catalog_digest(catalog)
    count = Totals()
    statuses: list[str | None] = []  # of every shared document
    worked: list[str] = []  # ids of the UnusedPermission findings read
    quiet: dict[str, dict] = {}  # finding id -> its row, for findings that needed no work
    # An organization one account at a time: an account's graph and unused sets are read,
    # planned, its tasks run and its recommendations written, then let go before the next's.
    with cluster(job.scheduler, catalog), _RowSpool(out.path) as spool:  # one Dask client
        for paths, group_pages in _findings_by_group(groups, pages):
            graph = AccountGraph.read(paths, versions=keep.needs_versions(job.keep),
                                      accounts=accounts)
            planner = Planner(graph, catalog, job, digest)
            statuses += _recommend_account(out, job, catalog, planner, group_pages, count, spool)
            worked += planner.worked()
            quiet.update((row["findingId"], row) for row in planner.rows)
            del graph, planner
        # The summary and the report are written from what is on disk, a row at a time.
        head = {"refiner": __version__, "catalog": catalog.version, "shared": job.shared,
                "totals": count.as_json(statuses), "sharedPolicies": _SharedSection(out)}
        # the summary's rows, one line each, spooled to disk as the report's pass reads them
        with tempfile.TemporaryFile("w+", encoding="utf-8", newline="", dir=out.path) as lines:
            write_report(out.path / "report.html", head, _rows(spool, worked, quiet, lines))
            lines.seek(0)
            out.write_chunks("summary.json", _summary(head, lines))
    out.finish()
    return head["totals"]


def _findings_by_group(groups: list[tuple[list[str], set[str] | None]],
                       pages: dict[str, FindingPages]) \
        -> Iterator[tuple[list[str], dict[str, FindingPages]]]:
    """Each group of exports with the findings of its accounts (a finding of an account no
    export holds goes with the first: its principal is in none)."""
    group_of = {account: number for number, (_, accounts) in enumerate(groups)
                for account in accounts or ()}
    assigned: list[dict[str, FindingPages]] = [{} for _ in groups]
    for finding_id, found in pages.items():
        assigned[group_of.get(found.account, 0)][finding_id] = found
    pages.clear()
    for number, (paths, _) in enumerate(groups):
        mine, assigned[number] = assigned[number], {}  # each account's let go when done
        yield paths, mine


def _recommend_account(out: OutputFolder, job: Job, catalog: Catalog, planner: Planner,
                       pages: dict[str, FindingPages], count: Totals,
                       spool: _RowSpool) -> list[str | None]:
    """Plan, run and write one account (or every account of the graph); the statuses of its
    shared documents."""
    shared: dict[str, dict] = {}

    def write_finding(arn: str) -> None:
        row, recommendation, state = planner.finding_output(out, arn, shared)
        name = finding_file_name(row["findingId"])
        _keep_times(recommendation, out.read(f"{RECOMMENDATIONS}/{name}"))
        out.write((f"{RECOMMENDATIONS}/{name}", json_text(recommendation, indent=2)),
                  (f"{STATE}/{name}", json_text(state)))
        spool.add(row, state["diffs"])
        count.add(row)

    def settle() -> None:
        """While the workers run: the record of each shared document whose fate is known
        without per-principal checks, then each finding whose work is all done (tasks finish
        roughly in the order they were sent, so only the head of the queue is looked at)."""
        resolved = planner.resolved_shared(out)
        if resolved:
            _write_shared(out, planner, shared, resolved)
        while planner.waiting:
            ready = planner.ready_to_write(out, planner.waiting[0], shared)
            if ready is False:
                break
            arn = planner.waiting.popleft()
            if ready:
                write_finding(arn)  # else: it waits for checks, and is written at the end

    findings = len(pages)
    planner.read(pages)
    run_tasks(out, job, catalog, planner.tasks(), findings, "refining and proving", settle)
    rest = {key: outcome for key, outcome in planner.shared_outcomes(out).items()
            if key not in shared}
    checks = planner.check_tasks(out, rest)
    run_tasks(out, job, catalog, (planner.check_task(*made) for made in checks.values()),
              len(checks), "checking each principal")
    _write_shared(out, planner, shared, rest)
    for row in planner.rows:
        count.add(row)
    for arn in planner.unwritten():
        write_finding(arn)
    return [outcome.get("status") for outcome in shared.values()]


def run_tasks(out: OutputFolder, job: Job, catalog: Catalog, tasks: Iterator[dict], count: int,
              what: str, settle: Callable[[], None] | None = None) -> None:
    """Run the tasks not done before (their result is on disk), as they come, and write each
    result as it completes (then settle: the parent's own work, done while workers run)."""
    def todo() -> Iterator[dict]:
        for task in tasks:
            if out.result(task["key"]) is None:
                yield task
            else:
                out.use(task["key"])

    with progress(job.progress, count, what) as advance:
        for result in execute(todo(), count, job.workers, job.scheduler, catalog):
            out.add_result(result)
            advance()
            if settle is not None:
                settle()


# --- planning: who uses what, and which distinct tasks that makes ------------------------------

class Planner:
    """The account graph with each principal's finding: what to refine once, for whom."""

    def __init__(self, graph: AccountGraph, catalog: Catalog, job: Job, digest: str):
        self.graph, self.catalog, self.job, self.digest = graph, catalog, job, digest
        self.unused_of: dict[str, UnusedSet] = {}  # principals with an active finding
        self._sets: dict[UnusedSet, UnusedSet] = {}  # one of each: findings repeat
        self.finding_of: dict[str, dict] = {}  # principal ARN -> the finding's head fields
        self.failed: dict[str, dict] = {}  # principal ARN -> error (its finding failed)
        self.decisions: dict[str, Decision] = {}  # document key -> decision
        self.task_of: dict[tuple[str, str], str] = {}  # (principal ARN | "", doc key) -> task
        self._refined: set[str] = set()  # keys of the refine tasks made
        self.rows: list[dict] = []  # findings that need no work
        self.shared_decided = False  # every shared document's decision is made
        self.order: list[str] = []  # principals to refine for, in the order they are taken
        self.waiting: deque[str] = deque()  # principals whose tasks are all sent, in order
        self.written: set[str] = set()  # principals whose recommendation is written
        self._unsettled: dict[str, str | None] | None = None  # shared key -> task, fate unknown
        self._checked_later: set[str] = set()  # shared keys whose checks come after all tasks
        # The grace rule's version dates (the graph holds every version when a rule needs them).
        self.versions = {document.arn: list(document.versions)
                         for document in graph.documents.values() if document.versions}
        self.kept_of: dict[str, list[dict]] = {}  # principal ARN -> what keep rules kept

    # findings, and the tasks they make

    def read(self, pages: dict[str, FindingPages]) -> None:
        """Read every finding: each strictly, with what it leaves unused, by a process of the
        pool (a few findings, or on Dask all, in this one); then take them in finding
        id order (which of two findings of one principal counts, and the order of `tasks`).
        An account's findings are read before any is taken: what may leave a shared document
        depends on all its holders."""
        held: dict[str, tuple] = {}
        for result in self._read_results(pages):
            held[result["key"]] = self._arrived(result, pages)
        pages.clear()
        order = [arn for finding_id in sorted(held)
                 if (arn := self._read(finding_id, *held.pop(finding_id))) is not None]
        # An organization's accounts one after another (each in finding order): each account's
        # recommendations are all written while later accounts' tasks run.
        order.sort(key=lambda arn: self.graph.principals[arn].account)
        self.order = order

    def _read_results(self, pages: dict[str, FindingPages]) -> Iterator[dict]:
        # On a Dask cluster the client reads them: sending each finding's text to a worker
        # and its unused set back took twice as long as reading it here (10,000 findings:
        # 4.5 s against 2.2 s). A process of the pool reads each file itself.
        in_workers = len(pages) >= READ_IN_WORKERS and not self.job.scheduler
        with progress(self.job.progress, len(pages), "reading findings") as advance:
            if in_workers:
                tasks = (self._read_task(finding_id, found) for finding_id, found in pages.items())
                results = execute(tasks, len(pages), self.job.workers, None, self.catalog,
                                  READ_BATCH_SCALE)
            else:
                results = (self._read_here(finding_id, found)
                           for finding_id, found in pages.items())
            for result in results:
                advance()
                yield result

    def _read_task(self, finding_id: str, found: FindingPages) -> dict:
        """The task that reads one finding, from the files its pages are in."""
        return {"op": "read", "key": finding_id, "sources": found.sources,
                "catalog": self.job.catalog, "catalogVersion": self.catalog.version}

    def _read_here(self, finding_id: str, found: FindingPages) -> dict:
        """read_task in this process, as a worker's result. An exception that is not about
        the input (a bug, memory) is kept whole, to be raised when the finding's turn comes,
        as reading the finding in its turn raised it."""
        try:
            result = read_task(self._read_task(finding_id, found), self.catalog)
        except InputError as error:
            return failed({"key": finding_id}, "InvalidInput", str(error))
        except Exception as error:  # noqa: BLE001 (raised in the finding's turn)
            return {"key": finding_id, "status": "FAILED", "exception": error}
        return {**result, "key": finding_id, "status": "SUCCEEDED"}

    def _arrived(self, result: dict, pages: dict[str, FindingPages]) -> tuple:
        """(head, what it leaves unused or None, error) of a finding as a worker read it,
        made compact as it arrives (an account's findings are all held until they are taken
        in order): the unused set with keep rules applied, one of each. The error of a page
        that does not read, and any exception, is raised when its finding's turn comes."""
        finding_id = result["key"]
        if result["status"] != "SUCCEEDED" and "exception" not in result and \
                result["error"]["code"] != "InvalidInput":
            # a worker lost or a bug, not the input: read here, as a worker would have
            result = self._read_here(finding_id, pages[finding_id])
        if result["status"] != "SUCCEEDED":
            return None, None, result.get("exception") or result["error"]["message"]
        head = {key: sys.intern(value) if isinstance(value, str) else value
                for key, value in result["head"].items()}
        principal = self.graph.principals.get(head.get("resource")) \
            if isinstance(head.get("resource"), str) else None
        if principal is None or ("unused" not in result and "unusedError" not in result):
            return head, None, None
        head["resource"] = principal.arn  # the graph's string: held once
        if not self.job.keep and "unused" in result:  # sorted by the worker, as UnusedSet's
            value = result["unused"]
            held = UnusedSet(tuple(map(sys.intern, value["actions"])),
                             tuple(map(sys.intern, value["services"])))
            return head, {"kept": {}, "unused": self._sets.setdefault(held, held),
                          "keptItems": []}, None
        return head, self._kept_reading(principal, head, result), None

    def _kept_reading(self, principal: Principal, head: dict, result: dict) -> dict:
        """What keep rules make of a finding: KEPT whole, an error (a rule cannot tell, or the
        finding's unused actions do not read), or its unused set less what they keep. Any
        other exception is kept for the finding's turn (where keep rules ran before)."""
        try:
            kept = self._keep(principal, head)
            if kept.get("status") == "KEPT":
                return {"kept": kept}
            if "error" in kept:  # a keep rule cannot tell (a date missing): never guessed
                raise InputError(kept["error"]["message"])
            if "unusedError" in result:
                raise InputError(result["unusedError"])
            # Kept means used: the finding minus what keep rules keep.
            unused = keep.for_worker(kept.get("keep"), unused_from_json(result["unused"]),
                                     self.catalog)
        except InputError as error:
            return {"kept": {}, "error": str(error)}
        except Exception as error:  # noqa: BLE001 (raised in the finding's turn)
            return {"exception": error}
        held = UnusedSet.of(unused)
        return {"kept": {}, "unused": self._sets.setdefault(held, held), "keptItems": unused.kept}

    def tasks(self) -> Iterator[dict]:
        """Refine tasks as they are made, once every finding is read: shared documents are
        decided and their tasks sent first, then each principal's own documents, account by
        account in finding order; a principal whose tasks are all sent is queued in
        `waiting`, for its recommendation to be written as soon as they are done."""
        refined_for = self.refined_for
        wanted = {key for arn in refined_for for key, _ in self.graph.principals[arn].documents}
        for key in sorted(wanted):
            document = self.graph.documents[key]
            if document.shared or document.reach_incomplete():
                yield from self._decided(key, refined_for)
        self.shared_decided = True
        for arn in self.order:
            if arn not in refined_for:
                continue
            for key, _ in self.graph.principals[arn].documents:
                if key not in self.decisions:
                    yield from self._decided(key, {arn})
            self.waiting.append(arn)

    def ready_to_write(self, out: OutputFolder, arn: str, shared: dict[str, dict]) \
            -> bool | None:
        """True: every task of the principal's documents has its result and every shared
        document it holds its record; False: not yet; None: it holds a shared document whose
        per-principal checks run after every refine task."""
        for key, _ in self.graph.principals[arn].documents:
            task = self.task_of.get((arn, key))
            if task is not None and not out.has_result(task):
                return False
            if self.decisions[key].mode == "own" or "status" in shared.get(key, {}):
                continue
            return None if key in self._checked_later else False
        return True

    def resolved_shared(self, out: OutputFolder) -> dict[str, dict]:
        """The outcomes of shared documents, not given before, known without per-principal
        checks: no task, or a refine result that failed or changed nothing."""
        resolved = {}
        if not self.shared_decided:
            return resolved
        if self._unsettled is None:
            self._unsettled = {key: self.task_of.get(("", key)) for key, decision in
                               self.decisions.items() if decision.mode != "own"}
        for key, task in list(self._unsettled.items()):
            result = None if task is None else out.result(task)
            if task is not None and result is None:
                continue
            del self._unsettled[key]
            if result is not None and result["status"] == "SUCCEEDED" and result["changed"]:
                self._checked_later.add(key)
            else:
                resolved[key] = {"decision": self.decisions[key], "result": result}
        return resolved

    def _read(self, finding_id: str, head: dict | None, reading: dict | None,
              error: str | BaseException | None) -> str | None:
        """Take one finding as _arrived made it: its row when it needs no work, else its
        principal's unused set; the principal's ARN when it is to be refined."""
        if isinstance(error, BaseException):
            raise error
        if error is not None:
            raise InputError(error)
        arn = head.get("resource") if isinstance(head.get("resource"), str) else None
        row = {"findingId": finding_id, "resourceArn": arn, "findingType": head.get("findingType")}
        principal = self.graph.principals.get(arn)
        if head.get("accountUnreadable") is True:
            self.rows.append({**row, "status": "REFUSED", "error": {
                "code": "AccountUnreadable", "message": "fetch could not read this account's "
                "IAM data: its old pages were removed; re-run fetch"}})
        elif head.get("status", "ACTIVE") != "ACTIVE":
            self.rows.append({**row, "status": "SKIPPED", "reason": f"status {head.get('status')}"})
        elif head.get("findingType") == "UnusedIAMRole":
            self.rows.append({**row, "status": "DELETE_ROLE",
                              "reason": "the role is unused: delete it"})
            if principal is not None and principal.arn not in self.finding_of:
                self._hold(principal, UnusedSet(everything=True), head, finding_id)
        elif head.get("findingType") not in (None, "UnusedPermission"):
            self.rows.append({**row, "status": "SKIPPED",
                              "reason": f"finding type {head.get('findingType')}"})
        elif principal is None:
            self.rows.append({**row, "status": "UNKNOWN_PRINCIPAL",
                              "reason": "no such principal in the authorization details"})
        elif arn in self.finding_of:  # which one holds? neither: the principal uses everything
            error = {"code": "InvalidInput", "message": "two active findings for one principal "
                     f"({self.finding_of[arn]['id']}, {finding_id})"}
            self.failed[arn] = error
            self.unused_of.pop(arn, None)
            self.rows.append({**row, "status": "FAILED", "error": error})
        elif "exception" in reading:
            raise reading["exception"]
        elif reading["kept"].get("status") == "KEPT":
            # kept whole: never refined, it uses everything
            self.rows.append({**row, **reading["kept"]})
        else:
            self._read_unused(principal, head, reading, finding_id)
            return arn if arn in self.unused_of else None
        return None

    def _keep(self, principal: Principal, head: dict) -> dict:
        """What keep rules say of this principal (see keep.for_principal)."""
        versions = {document.arn: self.versions[document.arn]
                    for document, _ in self.graph.documents_of(principal)
                    if document.arn in self.versions}
        return keep.for_principal(self.job.keep, principal.arn, principal.tags,
                                  principal.create_date, head, versions)

    def _hold(self, principal: Principal, unused: UnusedSet, head: dict, finding_id: str) -> None:
        self.unused_of[principal.arn] = unused
        self.finding_of[principal.arn] = _finding_head(finding_id, head)

    def _read_unused(self, principal: Principal, head: dict, reading: dict,
                     finding_id: str) -> None:
        self.finding_of[principal.arn] = _finding_head(finding_id, head)
        self.finding_of[principal.arn]["findingType"] = "UnusedPermission"
        if "error" in reading:  # this finding fails; its principal uses everything
            self.failed[principal.arn] = {"code": "InvalidInput", "message": reading["error"]}
            return
        if reading["keptItems"]:
            self.kept_of[principal.arn] = reading["keptItems"]
        if principal.missing:  # a partial answer would look like a whole one
            self.failed[principal.arn] = {
                "code": "InvalidInput", "message": "the authorization details lack what is "
                f"attached to this principal ({', '.join(principal.missing)}): export them "
                "without --filter"}
            return
        self.unused_of[principal.arn] = reading["unused"]

    @property
    def refined_for(self) -> set[str]:
        """Principals whose UnusedPermission finding is refined (read and not failed)."""
        return {arn for arn, head in self.finding_of.items()
                if head["findingType"] == "UnusedPermission" and arn in self.unused_of}

    # documents

    def _decided(self, key: str, refined_for: set[str]) -> Iterator[dict]:
        """Decide one document; yield the refine tasks it makes that are new."""
        document = self.graph.documents[key]
        self.decisions[key] = decision = decide(document, self.unused_of, refined_for,
                                                self.job.shared)
        if decision.mode in ("consolidated", "report"):
            self.task_of[("", key)], task = self._refine_task(document, decision.unused,
                                                              self._others(document))
            if task is not None:
                yield task
        elif decision.mode in ("own", "copy"):
            for entry in document.reach:
                arn = entry.arn
                if arn in refined_for and (decision.mode == "own" or entry.via == VIA_ATTACHED):
                    principal = self.graph.principals[arn]
                    self.task_of[(arn, key)], task = self._refine_task(
                        document, self.unused_of[arn], principal.attached - 1)
                    if task is not None:
                        yield task

    def _others(self, document: Document) -> int:
        """Managed policies attached besides this one, at most, over its holders (split)."""
        return max((self.graph.principals[r.arn].attached for r in document.reach),
                   default=1) - 1

    def _refine_task(self, document: Document, unused: UnusedSet,
                     other_attached: int) -> tuple[str, dict | None]:
        """The key of the task that refines document against unused, and the task itself when
        no earlier document asked for the same (content-keyed: done once, used by all)."""
        restricted = unused.restricted(document_scope(document.text), self.catalog)
        payload = {"op": "refine", "name": document.name, "textDigest": document.digest,
                   "sizeKind": size_kind(document), "managed": document.kind == MANAGED,
                   "unused": restricted.as_json(),
                   "otherAttached": max(other_attached, 0) if document.kind == MANAGED else 0,
                   "catalog": self.job.catalog, "catalogVersion": self.catalog.version,
                   "catalogDigest": self.digest, "timeoutMs": self.job.timeout_ms,
                   "refiner": __version__, **keep.statement_rules(self.job.keep)}
        key = task_key(payload)
        if key in self._refined:
            return key, None
        self._refined.add(key)
        return key, {**payload, "text": document.text, "key": key}

    # shared documents: the outcome, then each holder's check

    def shared_outcomes(self, out: OutputFolder) -> dict[str, dict]:
        """Document key -> its consolidated outcome (refined text or None, and why)."""
        outcomes = {}
        for key, decision in self.decisions.items():
            if decision.mode == "own":
                continue
            outcome = {"decision": decision, "result": None}
            task = self.task_of.get(("", key))
            if task is not None:
                outcome["result"] = out.result(task)
            outcomes[key] = outcome
        return outcomes

    def check_tasks(self, out: OutputFolder, shared: dict[str, dict]) \
            -> dict[str, tuple[Document, dict, str]]:
        """Per principal a shared document reaches, the kernel's check that the consolidated
        document keeps every action that principal uses (its own unused set, not the
        intersection): one task per distinct (original, refined, unused it can reach), by its
        key, as what makes it (the task itself is made again as it is sent: an organization's
        checks are not all held at once)."""
        tasks: dict[str, tuple[Document, dict, str]] = {}
        for outcome in shared.values():
            result = outcome["result"]
            if result is None or result["status"] != "SUCCEEDED" or not result["changed"]:
                continue
            document = outcome["decision"].document
            outcome["checks"] = {}
            for entry in document.reach:
                unused = self.unused_of.get(entry.arn, UnusedSet())
                if unused.everything:
                    continue
                check = self.check_task(document, result, entry.arn)["key"]
                tasks.setdefault(check, (document, result, entry.arn))
                outcome["checks"][entry.arn] = check
        return tasks

    def check_task(self, document: Document, result: dict, arn: str) -> dict:
        unused = self.unused_of.get(arn, UnusedSet())
        payload = {"op": "check", "original": document.text,
                   "refined": result["document"], "kept": result["kept"],
                   "unused": unused.restricted(document_scope(document.text),
                                               self.catalog).as_json(),
                   "catalog": self.job.catalog, "catalogVersion": self.catalog.version,
                   "catalogDigest": self.digest, "timeoutMs": self.job.timeout_ms,
                   "refiner": __version__, "name": document.name}
        return {**payload, "key": task_key(payload)}

    def finish_shared(self, out: OutputFolder, shared: dict[str, dict]) -> Iterator[tuple[str, dict]]:
        """The consolidated recommendation of each shared document (CONTRACT.md), named."""
        for outcome in shared.values():
            decision, result = outcome["decision"], outcome["result"]
            document = decision.document
            record = {"ref": document.ref, "name": document.name, "text": document.text,
                      "awsManaged": document.aws_managed, "mode": decision.mode,
                      "reach": document.reach_json(), "refined": None, "removed": [],
                      "keptBecauseUsed": {},
                      "findings": sorted(self.finding_of[r.arn]["id"] for r in document.reach
                                         if r.arn in self.finding_of),
                      "holdersWithFindings": decision.holders}
            if document.kind == MANAGED:
                record.update(updatedAt=document.updated_at, versionId=document.version_id)
            if decision.unused is not None:
                record["unused"] = decision.unused.as_json()
            status, reason = "UNCHANGED", decision.reason
            if decision.mode == "copy":
                status, reason = "COPIED", ("each principal it is attached to gets a copy "
                                            "refined for it alone (--shared copy)")
            elif result is not None and result["status"] != "SUCCEEDED":
                status, reason = "FAILED", result["error"]["message"]
            elif result is not None and result["changed"]:
                failed = [arn for arn, check in outcome.get("checks", {}).items()
                          if (out.result(check) or {}).get("status") != "SUCCEEDED"]
                if failed:
                    status = "FAILED"
                    reason = f"the per-principal check failed for {', '.join(failed[:3])}"
                else:
                    status = "REPORT" if decision.mode == "report" else "CHANGED"
                    record["proposed" if decision.mode == "report" else "refined"] = \
                        result["document"]
                    record["recommendedAction"] = "DETACH_POLICY" if result["detach"] \
                        else "CREATE_POLICY"
                    record["diff"] = result["diff"]
                    record["principalChecks"] = len(outcome.get("checks", {}))
                    record.update(self._what_changes(document, result))
            record["status"] = status
            if reason:
                record["reason"] = reason
            outcome["status"], outcome["name"] = status, shared_name(document)
            yield outcome["name"], record

    def _what_changes(self, document: Document, result: dict) -> dict:
        """Catalog actions removed, and those kept because a holder uses them although another
        holder with a finding does not."""
        before = granted_actions(document.text, self.catalog)
        after = granted_actions(result["document"], self.catalog) if result["document"] else set()
        kept: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        holders = [r.arn for r in document.reach]
        for action in sorted(after, key=str.lower):
            unused_by = [arn for arn in holders if _unused_by(self.unused_of.get(arn), action)]
            if not unused_by:
                continue
            users = [arn for arn in holders if arn not in unused_by]
            kept[action] = users[:KEPT_ARNS]
            if len(users) > KEPT_ARNS:
                counts[action] = len(users)
        found = {"removed": sorted(before - after, key=str.lower), "keptBecauseUsed": kept}
        if counts:
            found["keptBecauseUsedCount"] = counts
        return found

    # per finding

    def worked(self) -> list[str]:
        """The ids of the UnusedPermission findings read."""
        return [head["id"] for head in self.finding_of.values()
                if head["findingType"] == "UnusedPermission"]

    def unwritten(self) -> list[str]:
        """Principals of the UnusedPermission findings read whose recommendation is not yet
        written, in finding id order."""
        return [arn for arn, head in sorted(self.finding_of.items(), key=lambda i: i[1]["id"])
                if head["findingType"] == "UnusedPermission" and arn not in self.written]

    def finding_output(self, out: OutputFolder, arn: str, shared: dict[str, dict]) \
            -> tuple[dict, dict, dict]:
        """(summary row, recommendation, state) of the principal's UnusedPermission finding."""
        self.written.add(arn)
        principal, head = self.graph.principals[arn], self.finding_of[arn]
        started = datetime.now(timezone.utc)
        row = {"findingId": head["id"], "resourceArn": principal.arn,
               "findingType": "UnusedPermission", "principal": principal.arn, "policies": [],
               "proofQueries": 0, "seconds": 0.0}
        if principal.missing:
            row["missing"] = list(principal.missing)
        steps, diffs, policies = [], [], []
        error = self.failed.get(principal.arn)
        copies = 0
        if error is None:
            for document, via in self.graph.documents_of(principal):
                outcome = shared.get(document.key)
                policies.append(_policy_state(document, via, outcome and outcome["name"],
                                              (principal.arn, document.key) in self.task_of))
                entry, step, diff, failure = self._policy_output(out, principal, document, via,
                                                                 shared)
                row["policies"].append(entry)
                row["proofQueries"] += entry.pop("proofQueries", 0)
                row["seconds"] += entry.pop("seconds", 0.0)
                if failure is not None:
                    error = failure
                    break
                if step is not None:
                    copies += bool(step.get("copyOf")) and step["recommendedAction"] == \
                        "CREATE_POLICY"
                    steps.append({"unusedPermissionsRecommendedStep": step})
                if diff is not None:
                    diffs.append(diff)
        if copies and error is None:
            fits = principal.attached < self.job.attachment_quota
            row["attachments"] = {"attached": principal.attached, "copies": copies,
                                  "quota": self.job.attachment_quota, "fits": fits}
            if not fits:  # attach-then-detach needs one free place: keep the shared policy
                steps = [s for s in steps if not s["unusedPermissionsRecommendedStep"]
                         .get("copyOf")]
                row["attachments"]["withheld"] = copies
        status = "FAILED" if error else "SUCCEEDED"
        row["status"] = status
        row["kept"] = self.kept_of.get(principal.arn, []) + [
            {**item, "policyId": entry["policyId"]} for entry in row["policies"]
            for item in entry.pop("kept", [])]
        row["seconds"] = round(row["seconds"], 3)
        response = {"resourceArn": principal.arn,
                    "recommendationType": "UnusedPermissionRecommendation", "status": status,
                    "startedAt": timestamp(started),
                    "completedAt": timestamp(datetime.now(timezone.utc)),
                    "principal": principal.as_json(), "findingId": head["id"],
                    "updatedAt": head.get("updatedAt"), "analyzedAt": head.get("analyzedAt")}
        if error:
            row["error"] = response["error"] = error
            steps, diffs = [], []
        response["recommendedSteps"] = steps
        if row["kept"]:
            response["kept"] = row["kept"]  # a note: what keep rules kept, and why
        state = {"row": row, "diffs": diffs, "principal": principal.as_json(),
                 "finding": {k: head.get(k) for k in ("id", "updatedAt", "analyzedAt")},
                 "updatedAt": head.get("updatedAt"), "analyzedAt": head.get("analyzedAt"),
                 "policies": policies}
        return row, response, state

    def _policy_output(self, out: OutputFolder, principal: Principal, document: Document,
                       via: str, shared: dict[str, dict]):
        """(summary entry, step or None, diff or None, failure or None) for one document."""
        entry = {"ref": document.ref, "policyId": document.aws_id, "kind": _legacy_kind(document),
                 "via": via}
        decision = self.decisions[document.key]
        task = self.task_of.get((principal.arn, document.key))
        outcome = shared.get(document.key)
        if outcome is not None:
            entry["sharedPolicy"] = outcome["name"]
            entry["sharedStatus"] = outcome["status"]
        if task is None:  # shared: consolidated (or left) once for every holder
            if outcome is None:
                entry["unchanged"] = decision.reason or "kept for the principals it reaches"
                return entry, None, None, None
            step = None
            if outcome["status"] == "CHANGED":
                step = {"existingPolicyId": document.aws_id, "sharedPolicy": outcome["name"],
                        "policyRef": document.ref}
            return entry, step, None, None
        result = out.result(task)
        if result is None or result["status"] != "SUCCEEDED":
            failure = (result or {}).get("error") or {"code": "InternalError",
                                                      "message": "no result was written"}
            return entry, None, None, failure
        entry.update(result["entry"])
        if not result["changed"]:
            return entry, None, None, None
        step = {"existingPolicyId": document.aws_id, "policyRef": document.ref}
        if document.updated_at:
            step["policyUpdatedAt"] = document.updated_at
        if decision.mode == "copy":  # AWS's detach-and-attach, for this principal only
            step["copyOf"] = document.ref
        if result["detach"]:
            step["recommendedAction"] = "DETACH_POLICY"
        else:
            step["recommendedAction"] = "CREATE_POLICY"
            step["recommendedPolicy"] = result["document"]
        return entry, step, {"policyId": document.aws_id, "diff": result["diff"]}, None


def _finding_head(finding_id: str, head: dict) -> dict:
    """What is kept of a finding's head for each principal (its type and times are mostly
    the same strings over an account: held once)."""
    return {"id": finding_id, **{key: sys.intern(value) if isinstance(value, str) else value
                                 for key in ("findingType", "updatedAt", "analyzedAt")
                                 for value in (head.get(key),)}}


def _write_shared(out: OutputFolder, planner: Planner, shared: dict[str, dict],
                  outcomes: dict[str, dict]) -> None:
    for name, record in planner.finish_shared(out, outcomes):
        out.write((f"{SHARED}/{name}.json", json_text(record, indent=2)))
    shared.update(outcomes)


def json_text(value: object, indent: int | None = None) -> str:
    return dumps_in_bulk(value, indent=indent) + "\n"


def shared_name(document: Document) -> str:
    """A file name for a shared document: its name and a digest of its identity."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in document.name)[:100]
    return f"{safe}~{document.key[:12]}"


def _unused_by(unused: UnusedSet | None, action: str) -> bool:
    return unused is not None and unused.leaves_unused(action)


def _legacy_kind(document: Document) -> str:
    return "managed" if document.kind == MANAGED else \
        "group" if document.kind == "group-inline" else "inline"


def _policy_state(document: Document, via: str, shared: str | None, stepped: bool) -> dict:
    """A policy as the contract names it, with what `refiner aws apply` reads today. A shared
    document's reach and text are in its record OUTDIR/shared/<shared>.json, once, not in the
    state of each of its (maybe thousands of) holders; its text is here too when this
    principal has a step of its own for it (a copy)."""
    state = {"ref": document.ref, "awsManaged": document.aws_managed, "via": via,
             "policyId": document.aws_id, "name": document.name, "kind": _legacy_kind(document)}
    if shared is None:
        state["reach"] = document.reach_json()
    else:
        state["sharedPolicy"] = shared
    if shared is None or stepped:
        state["text"] = document.text
    if document.kind == MANAGED:
        state.update(updatedAt=document.updated_at, versionId=document.version_id)
    return state


# --- summary and report from what is on disk ----------------------------------------------------

class _SharedSection:
    """The summary's sharedPolicies, read from OUTDIR/shared a record at a time each time it is
    iterated (an organization's shared documents, with their holders, are never all held)."""

    def __init__(self, out: OutputFolder):
        self.paths = sorted((out.path / SHARED).glob("*.json"))

    def __bool__(self) -> bool:
        return bool(self.paths)

    def __iter__(self) -> Iterator[dict]:
        for path in self.paths:
            record = orjson.loads(path.read_bytes())
            yield {"name": path.stem, "ref": record["ref"], "status": record["status"],
                   "mode": record["mode"], "reach": len(record["reach"]),
                   "holdersWithFindings": record["holdersWithFindings"],
                   "findings": record["findings"], "removed": record["removed"],
                   "keptBecauseUsed": sorted(record["keptBecauseUsed"], key=str.lower),
                   **({"reason": record["reason"]} if "reason" in record else {})}


def _keep_times(recommendation: dict, before: str | None) -> None:
    """A recommendation the same as the one written before but for its times keeps those
    times: nothing was done again, and the file is left as it is."""
    try:
        held = json.loads(before) if before else None
    except ValueError:
        return
    times = ("startedAt", "completedAt")
    if isinstance(held, dict) and all(isinstance(held.get(k), str) for k in times) and \
            {k: v for k, v in held.items() if k not in times} == \
            {k: v for k, v in recommendation.items() if k not in times}:
        recommendation.update({k: held[k] for k in times})


class _RowSpool:
    """Each written finding's summary line and report row, appended to one file as the
    finding is written (while the workers run), and read back in finding id order for the
    summary and the report: they are not made again from thousands of state files at the
    end, nor all held."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.at: dict[str, tuple[int, int, int]] = {}  # finding id -> start, line, row sizes
        self.end = 0

    def __enter__(self) -> _RowSpool:
        self.file = tempfile.TemporaryFile("w+b", dir=self.folder)  # noqa: SIM115
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def add(self, row: dict, diffs: list[dict]) -> None:
        line = dumps_in_bulk(row).encode("utf-8")
        html_row = row_html(row, diffs if row["status"] == "SUCCEEDED" else []).encode("utf-8")
        self.file.write(line + html_row)
        self.at[row["findingId"]] = (self.end, len(line), len(html_row))
        self.end += len(line) + len(html_row)

    def take(self, finding_id: str) -> tuple[dict, str, str]:
        """(row, summary line, report row) of a finding written, let go once taken."""
        start, line, html_row = self.at.pop(finding_id)
        self.file.seek(start)
        data = self.file.read(line + html_row)
        return orjson.loads(data[:line]), data[:line].decode("utf-8"), \
            data[line:].decode("utf-8")


def _rows(spool: _RowSpool, worked: list[str], quiet: dict[str, dict], lines: IO[str]) \
        -> Iterator[tuple[dict, str]]:
    """Every finding's summary row with its report row, in finding id order: rows of
    findings that needed no work from memory, the others from the spool. Each row's
    summary line is written to lines."""
    for finding_id in sorted(set(worked) | set(quiet)):
        row = quiet.get(finding_id)
        if row is None:
            row, line, html_row = spool.take(finding_id)
        else:
            line, html_row = dumps_in_bulk(row), row_html(row, [])
        lines.write(line + "\n")
        yield row, html_row


def _summary(head: dict, lines: Iterable[str]) -> Iterator[str]:
    """summary.json: the head (its sharedPolicies as the whole text's indented JSON would
    hold them, one at a time), then "findings" with one row a line."""
    text = dumps({**head, "sharedPolicies": [], "findings": []}, indent=2)
    cut = text.index('\n  "sharedPolicies": []')
    yield text[:cut] + '\n  "sharedPolicies": ['
    number = -1
    for number, entry in enumerate(head["sharedPolicies"]):
        yield ("," if number else "") + "\n" + textwrap.indent(dumps(entry, indent=2), "    ")
    yield ("\n  ]" if number >= 0 else "]") + ',\n  "findings": ['
    for number, line in enumerate(lines):
        yield ("," if number else "") + "\n    " + line.rstrip("\n")
    yield "\n  ]\n}\n"


class Totals:
    """The summary's totals, counted as the rows are made."""

    def __init__(self):
        self.count: dict = {"findings": 0}
        self.policies_changed = self.over_limit = self.proof_queries = 0
        self.patterns, self.characters = [0, 0], [0, 0]

    def add(self, row: dict) -> None:
        self.count["findings"] += 1
        self.count[row["status"]] = self.count.get(row["status"], 0) + 1
        self.proof_queries += row.get("proofQueries", 0)
        for policy in row.get("policies", []):
            if "patterns" not in policy:
                continue
            self.policies_changed += bool(policy.get("changed"))
            self.over_limit += "overLimit" in policy
            for total, pair in ((self.patterns, policy["patterns"]),
                                (self.characters, policy["characters"])):
                total[0] += pair[0]
                total[1] += pair[1]

    def as_json(self, statuses: list[str | None]) -> dict:
        """statuses: of every shared document."""
        return {**self.count, "policiesChanged": self.policies_changed,
                "patterns": self.patterns, "characters": self.characters,
                "overLimit": self.over_limit, "proofQueries": self.proof_queries,
                "sharedPolicies": len(statuses),
                "sharedPoliciesChanged": statuses.count("CHANGED"),
                "sharedPoliciesFailed": statuses.count("FAILED")}
