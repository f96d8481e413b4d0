"""Verify a refinement made elsewhere: pair its statements with the original's and prove each pair."""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import Catalog
from .finding import Unused
from .patterns import parse
from .policy import PolicyInput
from .prove import Checker, Violation, literal_prefix
from .smt import cvc5_result, to_smtlib

STRUCTURE_KEYS = ("Effect", "Resource", "NotResource", "Principal", "NotPrincipal", "Condition")
ADDED_STATEMENT_PENALTY = 1_000
REJECTING = ("unsound", "incomplete", "structure")


@dataclass
class Report:
    verdicts: list[Violation] = field(default_factory=list)
    obligations: list[tuple[str, str]] = field(default_factory=list)  # (label, SMT-LIB)
    queries: int = 0

    def exit_code(self, strict: bool) -> int:
        """1 rejected, 3 undecided (never 0 on a timeout), 0 accepted."""
        kinds = {v.kind for v in self.verdicts}
        if kinds & set(REJECTING) or (strict and "not-least" in kinds):
            return 1
        if kinds & {"unknown", "solver-disagreement"}:
            return 3
        return 0


def pair_statements(original: list[dict], refined: list[dict]):
    """Align refined statements with the original ones, in order, allowing original statements
    to be dropped. Pairs are chosen to maximize similarity (same action key, equal Effect,
    Resource, Condition..., equal Sid, overlapping patterns), so Sids help but are not needed.
    Returns [(original index, original, refined or None)] and the refined statements left
    over (additions)."""
    n, m = len(original), len(refined)
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    move = [[""] * (m + 1) for _ in range(n + 1)]
    for j in range(1, m + 1):
        best[0][j], move[0][j] = best[0][j - 1] - ADDED_STATEMENT_PENALTY, "add"
    for i in range(1, n + 1):
        best[i][0], move[i][0] = best[i - 1][0], "drop"
        for j in range(1, m + 1):
            options = [
                (best[i - 1][j - 1] + _similarity(original[i - 1], refined[j - 1]), "pair"),
                (best[i - 1][j], "drop"),
                (best[i][j - 1] - ADDED_STATEMENT_PENALTY, "add"),
            ]
            best[i][j], move[i][j] = max(options, key=lambda option: option[0])
    pairs, added = [], []
    i, j = n, m
    while i > 0 or j > 0:
        step = move[i][j]
        if step == "pair":
            pairs.append((i - 1, original[i - 1], refined[j - 1]))
            i, j = i - 1, j - 1
        elif step == "drop":
            pairs.append((i - 1, original[i - 1], None))
            i -= 1
        else:
            added.append(refined[j - 1])
            j -= 1
    return pairs[::-1], added[::-1]


def _similarity(original: dict, refined: dict) -> float:
    score = 1.0
    if ("Action" in original) == ("Action" in refined):
        score += 4
    score += 2 * sum(original.get(k) == refined.get(k) for k in STRUCTURE_KEYS)
    if original.get("Sid") and original.get("Sid") == refined.get("Sid"):
        score += 3
    before = {literal_prefix(parse(p)) for p in _entries(original)}
    after = [literal_prefix(parse(p)) for p in _entries(refined)]
    if after:  # share of refined patterns that some original pattern's prefix could hold
        inside = sum(any(a[:cut] in before for cut in range(len(a) + 1)) for a in after)
        score += 4 * inside / len(after)
    return score


def _entries(statement: dict) -> list[str]:
    value = statement.get("Action", statement.get("NotAction", []))
    return [value] if isinstance(value, str) else list(value)


def verify(
    original: PolicyInput,
    refined: PolicyInput,
    unused: Unused,
    catalog: Catalog,
    timeout_ms: int,
    solver: str = "z3",
    export: bool = False,
) -> Report:
    """All verdicts on replacing original by refined; with export or a second solver, the
    obligations Z3 discharged are kept as SMT-LIB (and re-discharged by cvc5)."""
    record = export or solver in ("cvc5", "both")
    checker = Checker(catalog, unused.actions, unused.services, timeout_ms, record)
    report = Report()
    pairs, added = pair_statements(original.statements, refined.statements)
    for statement in added:
        sid = statement.get("Sid") if isinstance(statement.get("Sid"), str) else None
        index = refined.statements.index(statement)
        report.verdicts.append(Violation("structure", index, sid, "adds a statement"))
    for index, before, after in pairs:
        report.verdicts += checker.check_statement(index, before, after)
        report.verdicts += checker.check_least(index, before, after)
    report.queries = checker.queries
    report.obligations = [(label, to_smtlib(label, formula)) for label, formula in checker.obligations]
    if solver in ("cvc5", "both"):
        for label, text in report.obligations:
            answer = cvc5_result(text, timeout_ms)
            if answer != "unsat":
                report.verdicts.append(Violation(
                    "solver-disagreement" if answer == "sat" else "unknown", -1, None,
                    f"z3 proved obligation {label} but cvc5 answers {answer}"))
    return report
