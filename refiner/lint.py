"""The not-least lint of `verify`: new Action entries that could be dropped or narrowed (no proof)."""

from __future__ import annotations

import time

from .catalog import Catalog, keys_starting_with
from .finding import Unused
from .patterns import glob, parse, word_prefixes
from .prove import Violation, _Index, literal_prefix

KIND = "not-least"
SKIPPED = "lint skipped: deadline"


class _OutOfTime(Exception):
    pass


class Lint:
    """Warnings for new Action entries that admit no used action, only used actions other
    entries admit too (could be dropped), or one used action (could be narrowed to it), or
    that cut a word short. Entries kept from the original are never questioned.

    Membership of catalog actions is decided by the glob matcher: this is a lint, outside the
    kernel, so it needs no proof, only to be cheap. coarse: the refinement was allowed coarser
    safe prefixes (refine --max-size), so narrowing is not asked for, only dropping. deadline:
    a monotonic time; past it the lint stops with one SKIPPED warning instead of going on."""

    def __init__(self, catalog: Catalog, unused: Unused, coarse: bool = False,
                 deadline: float | None = None):
        self.catalog = catalog
        self.unused = unused
        self.coarse = coarse
        self.deadline = deadline

    def check_all(self, pairs) -> list[Violation]:
        """Warnings for every (index, original, refined or None) pair, in order."""
        warnings: list[Violation] = []
        for index, original, refined in pairs:
            try:
                warnings += self.check(index, original, refined)
            except _OutOfTime:
                warnings.append(Violation(KIND, index, _sid(original), SKIPPED))
                break
        return warnings

    def check(self, index: int, original: dict, refined: dict | None) -> list[Violation]:
        if refined is None or original.get("Effect") != "Allow" or "Action" not in refined:
            return []
        after = _entries(refined["Action"])
        before = {text.lower() for text in _entries(original.get("Action", []))}
        new = [text for text in dict.fromkeys(after) if text.lower() not in before]
        if not new:
            return []
        candidates = {text: self._used_with_prefix(literal_prefix(parse(text))) for text in new}
        table = self._membership(sorted({a for found in candidates.values() for a in found}),
                                 _Index(after))
        warnings = []
        for text in new:
            self._check_time()
            admitted = [a for a in candidates[text] if text in table[a]]
            if not admitted:
                message = f"{text} admits no used action and could be dropped"
            elif all(table[a] - {text} for a in admitted):
                message = f"{text} could be dropped: other entries admit every used action it does"
            elif self.coarse:
                continue  # a coarser prefix than needed is what --max-size allows
            elif parse(text).has_wildcard and len(admitted) == 1:
                message = f"{text} admits one used action and could be narrowed to it"
            elif narrower := self._next_word_boundary(text, admitted):
                message = f"{text} cuts a word short and could be narrowed to {narrower}*"
            else:
                continue
            witness = admitted[0] if admitted else None
            warnings.append(Violation(KIND, index, _sid(original), message, witness, text))
        return warnings

    def _membership(self, actions: list[str], entries: _Index) -> dict[str, set[str]]:
        """For each action, the entries that match it (only those whose literal prefix starts
        it can): one glob match per cell, each entry's matcher compiled once."""
        table = {}
        for action in actions:
            self._check_time()
            table[action] = {text for text in entries.could_contain(action)
                             if glob(text).matches(action)}
        return table

    def _next_word_boundary(self, text: str, admitted: list[str]) -> str | None:
        """For `w*` cut inside a word of every used action it admits (`s3:GetObj*`), the
        common longer prefix that ends at a word boundary (`s3:GetObject`), if there is one."""
        pattern = parse(text)
        if pattern.tokens[-1] != "*" or any(t in ("*", "?") for t in pattern.tokens[:-1]):
            return None
        head = literal_prefix(pattern)
        ends = set()
        for action in admitted:
            spelled = self.catalog.canonical(action) or action  # word boundaries need the case
            bounds = [b for b in word_prefixes(spelled) if len(b) >= len(head)]
            if bounds and bounds[0].lower() == head:
                return None  # the cut is at a word boundary of some action it admits
            ends.add(bounds[0] if bounds else None)
        return ends.pop() if len(ends) == 1 and None not in ends else None

    def _used_with_prefix(self, prefix: str) -> list[str]:
        """Used catalog actions (lower case) that start with prefix."""
        return [action for action in keys_starting_with(self.catalog.sorted_lower(), prefix)
                if not self.unused.is_unused(action)]

    def _check_time(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _OutOfTime


def _sid(statement: dict) -> str | None:
    return statement.get("Sid") if isinstance(statement.get("Sid"), str) else None


def _entries(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
