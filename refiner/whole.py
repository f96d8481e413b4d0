"""No new access over whole requests: changed statements judged by parts, else by a request query."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from .catalog import load_default
from .jsontext import dumps
from .patterns import parse
from .prove import DEFAULT_TIMEOUT_MS, Violation, literal_prefix
from .requests import (
    STATEMENT_KEYS,
    covers_by_solver,
    covers_by_text,
    entries,
    find_lost_denial,
    find_widening,
)
from .verification import shape_key
from .witness import lost_denial_witness, widening_witness

ACTION_KEYS = ("Action", "NotAction")
# Up to this many unions, each is tried by its text first; beyond, by its patterns' prefixes.
FEW_UNIONS = 16

# (index, before, after-with-before's-other-keys) -> the action kernel's verdicts on the pair
ActionCheck = Callable[[int, dict, dict], list[Violation]]


@dataclass
class Changes:
    """What of a pairing the action kernel cannot judge alone: pairs (BASE, HEAD position)
    whose keys other than the action list differ, HEAD statements added, BASE ones dropped."""

    pairs: list[tuple[int, int]]
    added: list[int]
    dropped: list[int]

    def __bool__(self) -> bool:
        return bool(self.pairs or self.added or self.dropped)


def no_new_requests(base: list[dict], head: list[dict], changes: Changes,
                    actions_contained: ActionCheck,
                    timeout_ms: int = DEFAULT_TIMEOUT_MS, tally=None) -> list[Violation]:
    """Every request HEAD allows, BASE allows, given that the pairs outside changes were
    proven by the action kernel (their other keys equal). A changed pair is covered when its
    actions are contained (the kernel, on the action lists) and so are its other keys (the
    request model, without actions): HEAD's statement then matches no request its BASE one
    does not (Deny: the other way round). What is left (uncovered pairs, added and dropped
    statements) is one query, confined to the requests some of it could make a widening:
    those an uncovered HEAD Allow or BASE Deny matches (proofs/requests.md, decomposition).
    Cheap steps first: pairs covered by their text need no solver; a counterexample built
    from a statement and checked on the concrete request (witness.py) needs none either; the
    solver decides the other pairs and searches only when no such request was found.
    tally: its queries attribute counts the solver queries."""
    judged = {pair: _covered_by_text(*pair, base, head, actions_contained)
              for pair in changes.pairs}
    # HEAD Allow statements covered by BASE's Allow statements of one shape together: their
    # partner (a BASE statement) matters only if it is a Deny, which stays judged by its pair.
    open_heads = [*changes.added, *(j for (_, j), covered in judged.items() if not covered)]
    unions = ShapeUnions(base) if open_heads else None
    by_union = {j for j in open_heads if unions.covers(head[j], actions_contained)}
    # Where the kernel saw a HEAD statement reach past BASE's of its shape, a widening is
    # looked for first (a search aid: the request is checked on both documents).
    reaching = {j: unions.reaching(head[j], actions_contained) for j in open_heads
                if j not in by_union}
    spent = [0]

    def focus(settle: bool) -> tuple[list[int], list[int]]:
        """The focus statements; settle: with the pairs the text left open decided by the
        solver (else all of them counted in, an over-approximation for the witness search)."""
        uncovered_head = [j for j in changes.added if j not in by_union]
        uncovered_base = list(changes.dropped)
        for (i, j), covered in judged.items():
            if covered is None and j in by_union:
                covered = False  # two Allow statements: HEAD's is covered, BASE's is no focus
            if covered is None and settle:
                before, after = (base[i], head[j]) if base[i]["Effect"] == "Allow" \
                    else (head[j], base[i])
                spent[0] += 1
                covered = judged[i, j] = covers_by_solver(before, after, timeout_ms)
            if not covered:
                if j not in by_union:
                    uncovered_head.append(j)
                uncovered_base.append(i)
        return (sorted(j for j in set(uncovered_head) if head[j]["Effect"] == "Allow"),
                sorted(i for i in set(uncovered_base) if base[i]["Effect"] != "Allow"))

    maybe_head, maybe_base = focus(settle=False)
    catalog = spelling_catalog() if maybe_head or maybe_base else None  # only to spell a witness
    found_request = widening_witness(base, head, maybe_head, catalog, reaching)
    if found_request is not None:
        request, at = found_request
        found = [_unsound(head, at, "admits a request the original does not", request)]
    elif maybe_head or maybe_base:
        focus_head, focus_base = focus(settle=True)
        outcome = find_widening(base, head, focus_head, focus_base, timeout_ms)
        spent[0] += outcome.queries
        found = _verdict(outcome, head, focus_head, "admits a request the original does not",
                         catalog)
    else:
        found = []
    # A Deny denies what the principal's other policies allow too: HEAD must deny what BASE
    # denied whatever this document allows (per principal, proofs/requests.md).
    lost = "no longer denies a request the original denied"
    request = lost_denial_witness(base, head, maybe_base, catalog)
    if request is not None:
        found += [_unsound(head, -1, lost, request)]
    elif maybe_base:
        outcome = find_lost_denial(base, head, focus(settle=True)[1], timeout_ms)
        spent[0] += outcome.queries
        found += _verdict(outcome, head, [], lost, catalog)
    if tally is not None:
        tally.queries += spent[0]
    return found


def _unsound(head: list[dict], at: int, what: str, request: dict) -> Violation:
    return Violation("unsound", at, _sid(head[at]) if at >= 0 else None, what, dumps(request),
                     request=request)


def _verdict(outcome, head: list[dict], focus_head: list[int], what: str,
             catalog=None) -> list[Violation]:
    if outcome.proven:
        return []
    if outcome.request is not None:
        request = dict(outcome.request)
        spelled = catalog.canonical(request["action"]) if catalog is not None else None
        request["action"] = spelled or request["action"]
        at = outcome.head_statement if outcome.head_statement is not None else -1
        return [_unsound(head, at, what, request)]
    at = next((u.statement for u in outcome.unmodelled if u.side == "HEAD"),
              focus_head[0] if focus_head else -1)
    return [Violation("unknown", at, _sid(head[at]) if at >= 0 else None,
                      f"cannot tell whether it {what}: "
                      + "; ".join(outcome.reasons))]


def _covered_by_text(i: int, j: int, base: list[dict], head: list[dict],
                     actions_contained: ActionCheck) -> bool | None:
    """Whether the pair is covered: True or False when that is clear without the request
    model's solver, None when only it can tell."""
    before, after = base[i], head[j]
    key = _action_key(before)
    if before["Effect"] != after["Effect"] or key != _action_key(after):
        return False
    if actions_contained(i, before, {**before, key: after[key]}):
        return False
    outer, inner = (before, after) if before["Effect"] == "Allow" else (after, before)
    return True if covers_by_text(outer, inner) else None


class ShapeUnions:
    """BASE's Allow statements with an Action list, grouped by shape (every key but Sid and
    the action list written the same: verification.shape_key), each group as one statement:
    their Action lists joined, the rest as they all write it. That statement matches exactly
    the requests one of the group matches (proofs/requests.md §2a, union). Statements with a
    key IAM does not define are left out (fail closed)."""

    def __init__(self, base: list[dict]):
        self.unions: dict[str, dict] = {}
        for statement in base:
            if _mergeable(statement):
                shape = shape_key(statement)
                union = self.unions.setdefault(shape, {**statement, "Action": []})
                union["Action"] = union["Action"] + entries(statement["Action"])
        # The literal prefix of each union's patterns -> those unions (a search aid).
        self.listed = list(self.unions.values())
        self.by_prefix: dict[str, set[int]] = {}
        for number, union in enumerate(self.listed):
            for text in union["Action"]:
                self.by_prefix.setdefault(literal_prefix(parse(text)), set()).add(number)

    def of_shape(self, statement: dict) -> dict | None:
        """The union of statement's shape (None: BASE has no such statement)."""
        return self.unions.get(shape_key(statement)) if _mergeable(statement) else None

    def covers(self, after: dict, actions_contained: ActionCheck) -> bool:
        """Whether the HEAD Allow statement after (Action) matches only requests one union
        matches: the rest of after lies inside the union's by its text (covers_by_text) and
        its action patterns inside the union's Action list (the action kernel). False: not
        shown this way (NotAction, a Deny, or the kernel says no)."""
        if not _mergeable(after):
            return False
        could = self.listed if len(self.listed) <= FEW_UNIONS else self._could(after)
        return any(covers_by_text(union, after) and not actions_contained(
            -1, union, {**union, "Action": after["Action"]}) for union in could)

    def reaching(self, after: dict, actions_contained: ActionCheck) -> list[str]:
        """The patterns of after that the kernel finds reaching past the union of its own
        shape ([] when BASE has none of its shape): where a widening may be."""
        union = self.of_shape(after)
        if union is None:
            return []
        return [v.pattern for v in actions_contained(-1, union, {**union, "Action": after[
            "Action"]}) if v.kind == "unsound" and v.pattern is not None]

    def _could(self, after: dict) -> list[dict]:
        """The unions whose Action lists could hold after's: for each pattern of after, one of
        theirs has a literal prefix that starts its literal prefix (a pattern only matches
        strings that start with its literal prefix, and after's pattern matches its literal
        prefix followed by a character no literal holds: proofs/README.md §3)."""
        could: set[int] | None = None
        for text in dict.fromkeys(entries(after["Action"])):
            prefix = literal_prefix(parse(text))
            holding = {number for cut in range(len(prefix) + 1)
                       for number in self.by_prefix.get(prefix[:cut], ())}
            could = holding if could is None else could & holding
            if not could:
                return []
        return [self.listed[number] for number in sorted(could or ())]


def _mergeable(statement: dict) -> bool:
    return statement.get("Effect") == "Allow" and "Action" in statement and \
        not set(statement) - STATEMENT_KEYS


@functools.lru_cache(maxsize=1)
def spelling_catalog():
    """The embedded action catalog, for a witness's action as AWS spells it (None when it
    cannot be read: the witness then keeps the policy's spelling)."""
    try:
        return load_default()
    except Exception:  # the spelling is cosmetic: a verdict never depends on it
        return None


def changed_statements(pairs, added: list[int], same: Callable[[dict, dict], bool],
                       positions: dict[int, int]) -> tuple[Changes, list]:
    """Split a pairing (verify's pairs [(index, before, after)]) into the pairs the action
    kernel judges alone (other keys the same) and the Changes left for the request model.
    positions: id of a HEAD statement -> its position in HEAD."""
    kept, changed, dropped = [], [], []
    for index, before, after in pairs:
        if after is None:
            dropped.append(index)
        elif same(before, after):
            kept.append((index, before, after))
        else:
            changed.append((index, positions[id(after)]))
    return Changes(changed, list(added), dropped), kept


def _action_key(statement: dict) -> str:
    return "Action" if "Action" in statement else "NotAction"


def _sid(statement: dict) -> str | None:
    return statement.get("Sid") if isinstance(statement.get("Sid"), str) else None
