"""Verify a refinement made elsewhere: pair its statements with the original's and prove each pair."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from . import jsontext, keep
from .catalog import Catalog
from .finding import Unused
from .lint import Lint
from .naming import Namer
from .patterns import parse
from .policy import PolicyInput
from .prove import Checker, Violation, literal_prefix, same_json
from .smt import cvc5_result, to_smtlib

ACTION_KEYS = ("Action", "NotAction")
REJECTING = ("unsound", "incomplete", "structure")
# A group of statements of one structure whose quick pairing does not verify is searched
# exhaustively up to this many (original, refined) cells, each cell one (memoized) proof.
EXHAUSTIVE_CELLS = 400
# Leftover statements are matched by similarity up to this many cells; beyond, in order.
# Each cell looks at no more than SIMILARITY_SAMPLE refined entries: enough to tell.
SIMILARITY_CELLS = 10_000
SIMILARITY_SAMPLE = 8
ADDED_STATEMENT_PENALTY = 1_000
# The lint stops this long before the run's deadline, so that the report still gets out.
LINT_RESERVE_SECONDS = 0.5

Prove = Callable[[int, dict, "dict | None"], list[Violation]]


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


@dataclass
class Pairing:
    """Every original statement, in order, with the refined statement that replaces it (None:
    it was dropped), and the positions of refined statements that replace none (additions)."""

    pairs: list[tuple[int, dict, dict | None]]
    added: list[int]


def structure_key(statement: dict) -> str:
    """Everything of a statement but its action list (Sid, Effect, Resource, Condition and any
    other key), as canonical JSON, and which action key it uses: a refinement changes nothing
    else, so only statements with equal structure keys can be a valid pair. The canonical
    text keeps false and 0, 1 and 1.0 apart, as IAM does."""
    rest = {key: value for key, value in statement.items() if key not in ACTION_KEYS}
    return jsontext.dumps([rest, [key for key in ACTION_KEYS if key in statement]], sort_keys=True)


def shape_key(statement: dict) -> str:
    """structure_key without the Sid: IAM never evaluates a Sid, so statements of one shape
    match the same requests for the same action."""
    return structure_key({key: value for key, value in statement.items() if key != "Sid"})


def pair_statements(original: list[dict], refined: list[dict], prove: Prove | None = None) -> Pairing:
    """Pair refined statements with the original ones they replace; originals may have been
    dropped. Statements are grouped by structure key (so Sids pair statements in any order)
    and paired in order within a group, each refined statement with the next original whose
    patterns' literal prefixes could hold its own. When that pairing of a small group does not
    verify (prove: check_statement), the order-preserving pairing with the most verified pairs
    and drops is taken instead. Refined statements left over are paired with left-over originals
    by similarity, so that the verdict says what changed, or else are additions."""
    partner: dict[int, int] = {}  # original position -> refined position
    originals_by_key = _group(original)
    for key, refined_group in _group(refined).items():
        if key in originals_by_key:
            partner.update(_pair_group(originals_by_key[key], refined_group, original, refined,
                                       prove))
    taken = set(partner.values())
    partner.update(_pair_by_similarity([i for i in range(len(original)) if i not in partner],
                                       [j for j in range(len(refined)) if j not in taken],
                                       original, refined))
    taken = set(partner.values())
    return Pairing(
        [(i, statement, refined[partner[i]] if i in partner else None)
         for i, statement in enumerate(original)],
        [j for j in range(len(refined)) if j not in taken],
    )


def _group(statements: list[dict]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for position, statement in enumerate(statements):
        groups.setdefault(structure_key(statement), []).append(position)
    return groups


def _pair_group(olds: list[int], news: list[int], original: list[dict], refined: list[dict],
                prove: Prove | None) -> dict[int, int]:
    index = _PatternIndex([original[i] for i in olds])
    quick = _quick_pairs(index, olds, news, refined)
    if prove is None or len(olds) * len(news) > EXHAUSTIVE_CELLS:
        return quick

    @functools.cache
    def pair_verifies(i: int, j: int) -> bool:
        before, after = original[olds[i]], refined[news[j]]
        # An implausible pair cannot verify (see _plausible): no proof is needed to know it.
        return _plausible(before, index.anchors[i], after) and _verifies(
            prove(olds[i], before, after))

    @functools.cache
    def drop_verifies(i: int) -> bool:
        return _verifies(prove(olds[i], original[olds[i]], None))

    position = {j: b for b, j in enumerate(news)}
    chosen = {a: position[quick[i]] for a, i in enumerate(olds) if i in quick}
    quick_score = (sum(pair_verifies(a, b) for a, b in chosen.items())
                   + sum(drop_verifies(a) for a in range(len(olds)) if a not in chosen)
                   - (len(news) - len(chosen)))
    if quick_score == len(olds):  # every original replaced or dropped as proven, none added
        return quick
    score, best = _align(len(olds), len(news), pair_verifies, drop_verifies, -1)
    return {olds[a]: news[b] for a, b in best} if score > quick_score else quick


def _verifies(verdicts: list[Violation]) -> bool:
    return not any(v.kind in REJECTING or v.kind == "unknown" for v in verdicts)


def _quick_pairs(index: _PatternIndex, olds: list[int], news: list[int],
                 refined: list[dict]) -> dict[int, int]:
    """Each refined statement with the first original not yet passed that it could replace
    (_plausible; originals passed over are dropped): near-linear through the index of the
    originals' patterns."""
    pairs: dict[int, int] = {}
    start = 0
    for j in news:
        found = index.first_plausible(refined[j], start)
        if found is not None:
            pairs[olds[found]] = j
            start = found + 1
    return pairs


class _PatternIndex:
    """The original statements of one group, found by what their patterns let a refined
    pattern be: a name kept as it was, or anything under a wildcard's literal prefix."""

    def __init__(self, statements: list[dict]):
        self.statements = statements
        self.anchors = [_anchors(statement) for statement in statements]
        self.positions: dict[tuple[str, str], list[int]] = {}  # ascending
        for position, (prefixes, names) in enumerate(self.anchors):
            for prefix in prefixes:
                self.positions.setdefault(("*", prefix), []).append(position)
            for name in names:
                self.positions.setdefault(("=", name), []).append(position)

    def first_plausible(self, refined: dict, start: int) -> int | None:
        """The first position from start whose statement refined could replace (_plausible)."""
        entries = _entries(refined)
        if "Action" in refined and entries:  # only originals that could hold its first entry
            keys = [("=", entries[0].lower())] + [
                ("*", prefix) for prefix in _prefixes(literal_prefix(parse(entries[0])))]
            runs = [itertools.islice(run, bisect.bisect_left(run, start), None) for key in keys
                    if (run := self.positions.get(key))]
            candidates = (k for k, _ in itertools.groupby(heapq.merge(*runs)))  # lazily
        else:
            candidates = range(start, len(self.statements))
        return next((k for k in candidates if _plausible(self.statements[k], self.anchors[k],
                                                         refined)), None)


def _plausible(original: dict, anchors, refined: dict) -> bool:
    """Whether refined could replace original, by literal prefixes alone: every refined Action
    entry is an original name or lies under an original wildcard's literal prefix (NotAction:
    every original entry under a refined one). A pair that verifies passes it: pick a
    character no literal uses and put it right after the entry's literal prefix; only an
    original wildcard whose literal prefix is a prefix of the entry's can match that string."""
    if "Action" in refined:
        return all(_could_hold(anchors, text) for text in _entries(refined))
    refined_anchors = _anchors(refined)
    return all(_could_hold(refined_anchors, text) for text in _entries(original))


def _anchors(statement: dict) -> tuple[set[str], set[str]]:
    """The literal prefixes of a statement's wildcard entries and its names (lower case)."""
    prefixes, names = set(), set()
    for text in _entries(statement):
        pattern = parse(text)
        if pattern.has_wildcard:
            prefixes.add(literal_prefix(pattern))
        else:
            names.add(text.lower())
    return prefixes, names


def _could_hold(anchors: tuple[set[str], set[str]], text: str) -> bool:
    prefixes, names = anchors
    name, heads = _name_and_heads(text)
    return name in names or not prefixes.isdisjoint(heads)


@functools.lru_cache(maxsize=50_000)
def _name_and_heads(text: str) -> tuple[str, tuple[str, ...]]:
    """A pattern lower-cased, and every prefix of its literal prefix (asked once per pair of
    statements when pairing: computed once per pattern)."""
    return text.lower(), tuple(_prefixes(literal_prefix(parse(text))))


def _prefixes(text: str) -> list[str]:
    return [text[:cut] for cut in range(len(text) + 1)]


def _pair_by_similarity(olds: list[int], news: list[int], original: list[dict],
                        refined: list[dict]) -> dict[int, int]:
    """Left-over statements in order, each pair as similar as can be (same action key, equal
    keys, equal Sid, refined patterns under original ones): their verdicts then name what
    changed. Beyond SIMILARITY_CELLS cells they are simply taken in order."""
    if not olds or not news:
        return {}
    if len(olds) * len(news) > SIMILARITY_CELLS:
        return dict(zip(olds, news, strict=False))  # the shorter side runs out
    anchors = [_anchors(original[i]) for i in olds]

    def similarity(a: int, b: int) -> float:
        return _similarity(original[olds[a]], anchors[a], refined[news[b]])

    _, pairs = _align(len(olds), len(news), similarity, lambda a: 0,
                      -ADDED_STATEMENT_PENALTY)
    return {olds[a]: news[b] for a, b in pairs}


def _similarity(original: dict, anchors, refined: dict) -> float:
    score = 1.0
    if _action_key(original) == _action_key(refined):
        score += 4
    others = (set(original) | set(refined)) - {*ACTION_KEYS, "Sid"}
    score += 2 * sum(k in original and k in refined and same_json(original[k], refined[k])
                     for k in others)
    if original.get("Sid") and same_json(original.get("Sid"), refined.get("Sid")):
        score += 3
    after = _entries(refined)[:SIMILARITY_SAMPLE]
    if after:  # share of refined patterns that some original pattern could hold
        score += 4 * sum(_could_hold(anchors, text) for text in after) / len(after)
    return score


def _align(n: int, m: int, pair_score: Callable[[int, int], float],
           drop_score: Callable[[int], float], add_score: float):
    """The order-preserving assignment of n originals to m refined statements (each original
    paired with one refined statement or dropped, each refined statement paired or added)
    with the highest total score: (score, [(original, refined) positions])."""
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    move = [[""] * (m + 1) for _ in range(n + 1)]
    for j in range(1, m + 1):
        best[0][j], move[0][j] = best[0][j - 1] + add_score, "add"
    for i in range(1, n + 1):
        best[i][0], move[i][0] = best[i - 1][0] + drop_score(i - 1), "drop"
        for j in range(1, m + 1):
            best[i][j], move[i][j] = max(
                (best[i - 1][j - 1] + pair_score(i - 1, j - 1), "pair"),
                (best[i - 1][j] + drop_score(i - 1), "drop"),
                (best[i][j - 1] + add_score, "add"),
                key=lambda option: option[0])
    pairs = []
    i, j = n, m
    while i > 0 or j > 0:
        step = move[i][j]
        if step == "pair":
            pairs.append((i - 1, j - 1))
        i, j = (i - 1 if step != "add" else i), (j - 1 if step != "drop" else j)
    return best[n][m], pairs[::-1]


def document_changes(original: dict, refined: dict) -> list[Violation]:
    """Every top-level key of the document but Statement (Version, Id, ...) is structure:
    without Version, or with 2008-10-17, policy variables such as ${aws:username} are literal
    text, which changes what a statement allows."""
    changes = []
    for key in [*original, *(key for key in refined if key not in original)]:
        if key == "Statement":
            continue
        if key not in refined:
            what = f"drops {key}"
        elif key not in original:
            what = f"adds {key}"
        elif not same_json(original[key], refined[key]):
            what = f"changes {key}"
        else:
            continue
        changes.append(Violation("structure", None, None, f"the policy {what}"))
    return changes


VERSION_UNREAD = ("the policy's Version is an expression and a statement holds `${`: IAM "
                  "reads it as a policy variable in Version 2012-10-17 and as literal text "
                  "in any other, so what it admits cannot be judged")


def variables_as_read(policy: PolicyInput) -> PolicyInput | None:
    """The policy as the request model is to read it. In a document whose Version is not
    2012-10-17 IAM takes `${...}` for literal text: its policy variables and the escapes
    `${*}`, `${?}`, `${$}` alike (which the model would read as a variable or as the one
    character), so each `${` of a Resource, NotResource or Condition value is written `${$}{`,
    the escape of `$` followed by `{`: the same text, with its wildcards, as the model reads
    it. None: the Version is an expression (either reading) and a statement holds `${`."""
    document = policy.document
    version = document.get("Version")
    if version == "2012-10-17" or "${" not in jsontext.dumps(document.get("Statement")):
        return policy
    if version is not None and not isinstance(version, str):
        return None
    statements = [_literal_text(statement) for statement in policy.statements]
    return dataclasses.replace(policy, document={
        **document, "Statement": statements if policy.statements_as_list else statements[0]})


def _literal_text(statement: object) -> object:
    if not isinstance(statement, dict):
        return statement
    read = dict(statement)
    for key in ("Resource", "NotResource"):
        if key in read:
            read[key] = _escaped(read[key])
    block = read.get("Condition")
    if isinstance(block, dict):
        read["Condition"] = {operator: {key: _escaped(value) for key, value in keys.items()}
                             if isinstance(keys, dict) else keys
                             for operator, keys in block.items()}
    return read


def _escaped(value: object) -> object:
    if isinstance(value, str):
        return value.replace("${", "${$}{")
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    return value


def verify(
    original: PolicyInput,
    refined: PolicyInput,
    unused: Unused,
    catalog: Catalog,
    timeout_ms: int,
    solver: str = "z3",
    export: bool = False,
    deadline: float | None = None,
    coarse: bool = False,
) -> Report:
    """All verdicts on replacing original by refined; with export or a second solver, the
    obligations Z3 discharged are kept as SMT-LIB (and re-discharged by cvc5). The not-least
    lint comes last and stops short of deadline (a monotonic time; the caller bounds the rest
    of the run); coarse: refine --max-size's coarser prefixes are not taken for narrowable."""
    report = Report()
    read = [variables_as_read(policy) for policy in (original, refined)]
    if None in read:
        report.verdicts.append(Violation("unknown", -1, None, VERSION_UNREAD))
        return report
    original, refined = read
    record = export or solver in ("cvc5", "both")
    checker = keep.checker(unused, catalog, timeout_ms, record)  # kept statements unchanged
    if refined.statements:  # a policy left with no statement allows nothing, whatever else
        report.verdicts += document_changes(original.document, refined.document)
    pairing = pair_statements(original.statements, refined.statements, checker.check_statement)
    tally = Tally()
    report.verdicts += _whole_statements(original.statements, refined.statements, pairing,
                                         checker, tally)
    report.queries = checker.queries + tally.queries
    report.obligations = [(label, to_smtlib(label, formula)) for label, formula in checker.obligations]
    if solver in ("cvc5", "both"):
        for label, text in report.obligations:
            answer = cvc5_result(text, timeout_ms)
            if answer != "unsat":
                report.verdicts.append(Violation(
                    "solver-disagreement" if answer == "sat" else "unknown", None, None,
                    f"z3 proved obligation {label} but cvc5 answers {answer}"))
    lint_deadline = None if deadline is None else deadline - LINT_RESERVE_SECONDS
    report.verdicts += Lint(catalog, unused, coarse, lint_deadline).check_all(pairing.pairs)
    report.verdicts = Namer(catalog, unused).name_all(report.verdicts, pairing.pairs)
    return report


def _whole_statements(original: list[dict], refined: list[dict], pairing: Pairing,
                      checker: Checker, tally) -> list[Violation]:
    """Pairs whose other keys are equal get the action obligations alone, as ever. The rest
    (other keys changed, statements added or dropped) get the action obligations that still
    apply (an Allow's action list against its original's, nothing unused in a new Allow,
    nothing used lost with a dropped one) and the request model's containment (whole.py)."""
    from .gate import no_new_access  # the gate's soundness-only check of two action lists
    from .whole import changed_statements, no_new_requests  # loads the solver

    positions = {id(statement): index for index, statement in enumerate(refined)}
    same = lambda a, b: structure_key(a) == structure_key(b)  # noqa: E731
    changes, kept = changed_statements(pairing.pairs, pairing.added, same, positions)
    verdicts = []
    for index, before, after in kept:
        verdicts += checker.check_statement(index, before, after)
    for i, j in changes.pairs:
        before, after = original[i], refined[j]
        key = _action_key(before)
        if before["Effect"] == after["Effect"] == "Allow" and key == _action_key(after):
            verdicts += checker.check_statement(i, before, {**before, key: after[key]})
            continue
        if before["Effect"] == "Allow":
            verdicts += checker.check_statement(i, before, None)
        if after["Effect"] == "Allow":
            verdicts += checker.check_statement(j, after, after)
    verdicts += [v for i in changes.dropped if original[i]["Effect"] == "Allow"
                 for v in checker.check_statement(i, original[i], None)]
    verdicts += [v for j in changes.added if refined[j]["Effect"] == "Allow"
                 for v in checker.check_statement(j, refined[j], refined[j])]
    sound_only = Checker([], [], [], checker.timeout_ms)
    verdicts += no_new_requests(original, refined, changes,
                                lambda i, b, a: no_new_access(sound_only, i, b, a),
                                checker.timeout_ms, tally=tally)
    tally.queries += sound_only.queries
    return verdicts


@dataclass
class Tally:
    """Proof queries made outside the run's checker (the request model, the sound-only
    kernel of changed statements)."""

    queries: int = 0


def _action_key(statement: dict) -> str | None:
    return next((key for key in ACTION_KEYS if key in statement), None)


def _entries(statement: dict) -> list[str]:
    value = statement.get("Action", statement.get("NotAction", []))
    return [value] if isinstance(value, str) else list(value)


def _sid(statement: dict) -> str | None:
    return statement.get("Sid") if isinstance(statement.get("Sid"), str) else None
