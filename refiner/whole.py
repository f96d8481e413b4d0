"""No new access over whole requests: changed statements judged by parts, else by a request query."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .jsontext import dumps
from .prove import DEFAULT_TIMEOUT_MS, Violation
from .requests import covers, find_lost_denial, find_widening

ACTION_KEYS = ("Action", "NotAction")

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
                    timeout_ms: int = DEFAULT_TIMEOUT_MS) -> list[Violation]:
    """Every request HEAD allows, BASE allows, given that the pairs outside changes were
    proven by the action kernel (their other keys equal). A changed pair is covered when its
    actions are contained (the kernel, on the action lists) and so are its other keys (the
    request model, without actions): HEAD's statement then matches no request its BASE one
    does not (Deny: the other way round). What is left (uncovered pairs, added and dropped
    statements) is one query, confined to the requests some of it could make a widening:
    those an uncovered HEAD Allow or BASE Deny matches (proofs/requests.md, decomposition)."""
    uncovered_head, uncovered_base = list(changes.added), list(changes.dropped)
    for i, j in changes.pairs:
        before, after = base[i], head[j]
        if not _covered(i, before, after, actions_contained, timeout_ms):
            uncovered_head.append(j)
            uncovered_base.append(i)
    focus_head = sorted(j for j in uncovered_head if head[j]["Effect"] == "Allow")
    focus_base = sorted(i for i in uncovered_base if base[i]["Effect"] != "Allow")
    found = _verdict(find_widening(base, head, focus_head, focus_base, timeout_ms), head,
                     focus_head, "admits a request the original does not")
    # A Deny denies what the principal's other policies allow too: HEAD must deny what BASE
    # denied whatever this document allows (per principal, proofs/requests.md).
    found += _verdict(find_lost_denial(base, head, focus_base, timeout_ms), head, [],
                      "no longer denies a request the original denied")
    return found


def _verdict(outcome, head: list[dict], focus_head: list[int], what: str) -> list[Violation]:
    if outcome.proven:
        return []
    if outcome.request is not None:
        at = outcome.head_statement if outcome.head_statement is not None else -1
        return [Violation("unsound", at, _sid(head[at]) if at >= 0 else None, what,
                          dumps(outcome.request), request=outcome.request)]
    at = next((u.statement for u in outcome.unmodelled if u.side == "HEAD"),
              focus_head[0] if focus_head else -1)
    return [Violation("unknown", at, _sid(head[at]) if at >= 0 else None,
                      f"cannot tell whether it {what}: "
                      + "; ".join(outcome.reasons))]


def _covered(index: int, before: dict, after: dict, actions_contained: ActionCheck,
             timeout_ms: int) -> bool:
    key = _action_key(before)
    if before["Effect"] != after["Effect"] or key != _action_key(after):
        return False
    if actions_contained(index, before, {**before, key: after[key]}):
        return False
    if before["Effect"] == "Allow":
        return covers(before, after, timeout_ms)
    return covers(after, before, timeout_ms)


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
