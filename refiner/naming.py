"""Name what a verdict is about: every action it concerns, in the catalog's spelling (no proof).

The kernel proves that an obligation fails and gives one witness string, lower-cased. A
reader wants the whole set (every used action a statement loses, every unused action it
admits) and real action names. Those are found here by glob matching against the catalog and
the finding, outside the kernel: naming never changes a verdict, it only says more about it.
"""

from __future__ import annotations

import dataclasses
import re

from .catalog import Catalog, keys_starting_with
from .finding import Unused
from .patterns import example, glob, parse
from .prove import Violation, _entries, _Index, literal_prefix

# A verdict's rule: which actions it is about are those matched by its pattern among the
# universe, minus those some entry of the other side matches.
RULES = {
    "admits-new": ("catalog", "original"),  # Action: a refined entry reaches past the original
    "admits-unused": ("unused", None),  # Action: a refined entry admits an unused action
    "loses-used": ("used", "refined"),  # Action: an original entry's used action is lost
    "stops-excluding": ("catalog", "refined"),  # NotAction: an exclusion no longer excludes
    "unused-not-excluded": ("unused", "refined"),  # NotAction: an unused name not excluded
    "excludes-used": ("used", "original"),  # NotAction: a new exclusion takes a used action
}


def spelled(verdict: Violation, catalog: Catalog) -> Violation:
    """The verdict with its witness in the catalog's spelling, when it is a catalog action."""
    if verdict.witness is None:
        return verdict
    return dataclasses.replace(verdict, witness=catalog.canonical(verdict.witness) or verdict.witness)

# Only a proven failure is named: an unknown verdict (no answer in time) claims no action.
NAMED = ("unsound", "incomplete")
# Without a finding (the no-new-access gate) every action a verdict is about is a catalog one.
NO_FINDING = Unused()
# What a pattern's wildcards are written as in a witness when the catalog has no action for it.
FILLS = ("Example", "X", "Zq", "Q0")
_ACTION_LIKE = re.compile(r"[^:*?]+:[^*?]+")  # service:name, no wildcard, neither part empty


class Namer:
    """Fills in Violation.actions (sorted, catalog spelling) and makes the witness a real
    action of that set when the solver's string is not one."""

    def __init__(self, catalog: Catalog, unused: Unused):
        self.catalog = catalog
        self.unused = unused

    def name_all(self, verdicts: list[Violation], pairs) -> list[Violation]:
        """verdicts, each named from the (index, original, refined) pair of its statement."""
        by_index = {index: (original, refined) for index, original, refined in pairs}
        return [self.name(v, *by_index[v.statement])
                if v.kind in NAMED and v.rule in RULES and v.statement in by_index
                else spelled(v, self.catalog) for v in verdicts]

    def name(self, verdict: Violation, original: dict, refined: dict | None) -> Violation:
        universe, other_side = RULES[verdict.rule]
        key = "Action" if "Action" in original else "NotAction"
        sides = {"original": _entries(original.get(key, [])),
                 "refined": _entries(refined.get(key, [])) if refined is not None else []}
        others = _Index(sides[other_side]) if other_side else _Index([])
        actions = [action for action in self._universe(universe, verdict.pattern)
                   if not any(glob(text).matches(action) for text in others.could_contain(
                       action.lower()))]
        if not actions:
            return spelled(verdict, self.catalog)
        witness = self.catalog.canonical(verdict.witness or "") or verdict.witness
        if witness not in actions:
            witness = actions[0]  # the solver's string is no action of the set (`ec2:`)
        return dataclasses.replace(verdict, witness=witness, actions=tuple(actions))

    def _universe(self, universe: str, pattern: str | None) -> list[str]:
        """The actions of a universe that pattern matches (all of them without a pattern),
        sorted, in the catalog's spelling (unused names the catalog lacks as the finding
        spells them)."""
        prefix = literal_prefix(parse(pattern)) if pattern else ""
        matcher = glob(pattern) if pattern else None
        found: dict[str, str] = {}
        if universe in ("catalog", "used"):
            for lower in keys_starting_with(self.catalog.sorted_lower(), prefix):
                if universe == "used" and self.unused.is_unused(lower):
                    continue
                found[lower] = self.catalog.canonical(lower)
        else:
            for name in self.unused.names_with_prefix(prefix):
                found[name.lower()] = self.catalog.canonical(name) or name
            for service in sorted(self.unused.services):
                if (service + ":").startswith(prefix[:len(service) + 1]):
                    for action in self.catalog.actions_of(service):
                        found[action.lower()] = action
        return sorted((name for lower, name in found.items()
                       if matcher is None or matcher.matches(lower)), key=str.lower)


def named_verdicts(verdicts: list[Violation], original: dict, refined: dict,
                   catalog: Catalog | None) -> list[Violation]:
    """The gate's verdicts (no finding) on the two statements the kernel compared, named: the
    catalog actions each is about, and a witness that refined's action list admits and
    original's does not, checked here by the pattern matcher (never taken on trust): a catalog
    action when there is one, else a string the pattern matches, service:name (the kernel's
    witness, or the pattern with its wildcards written as a word), else the kernel's witness."""
    separates = _Separates(original, refined)
    return [_named(v, original, refined, catalog, separates) for v in verdicts]


def _named(verdict: Violation, original: dict, refined: dict, catalog: Catalog | None,
           separates: _Separates) -> Violation:
    if verdict.kind not in NAMED or verdict.witness is None:
        return verdict
    actions: tuple[str, ...] = ()
    witness = verdict.witness
    if catalog is not None:
        if verdict.rule in RULES:
            named = Namer(catalog, NO_FINDING).name(verdict, original, refined)
            actions = tuple(action for action in named.actions if separates(action))
            witness = named.witness or witness
        witness = catalog.canonical(witness) or witness
    if witness not in actions:
        found = [*actions, *(c for c in _concrete(verdict) if _ACTION_LIKE.fullmatch(c))]
        witness = next((c for c in found if separates(c)), verdict.witness)
    return dataclasses.replace(verdict, witness=witness, actions=actions)


def _concrete(verdict: Violation) -> list[str]:
    """Strings to try as the witness when the catalog names none: the verdict's pattern as
    written with each wildcard written as a word (patterns.example), then the kernel's
    witness."""
    found = [example(verdict.pattern, fill) for fill in FILLS] if verdict.pattern else []
    return [*found, verdict.witness or ""]


class _Separates:
    """Whether an action is admitted by refined's action list and not by original's (Action:
    some entry matches it; NotAction: none does), by the pattern matcher."""

    def __init__(self, original: dict, refined: dict):
        self.sides = [(key, _Index(_entries(statement[key])))
                      for statement in (refined, original)
                      for key in ("Action", "NotAction") if key in statement]

    def _admits(self, side: int, action: str) -> bool:
        key, index = self.sides[side]
        matched = any(glob(text).matches(action) for text in index.could_contain(action.lower()))
        return matched if key == "Action" else not matched

    def __call__(self, action: str) -> bool:
        return len(self.sides) == 2 and self._admits(0, action) and not self._admits(1, action)
