"""Name what a verdict is about: every action it concerns, in the catalog's spelling (no proof).

The kernel proves that an obligation fails and gives one witness string, lower-cased. A
reader wants the whole set (every used action a statement loses, every unused action it
admits) and real action names. Those are found here by glob matching against the catalog and
the finding, outside the kernel: naming never changes a verdict, it only says more about it.
"""

from __future__ import annotations

import dataclasses

from .catalog import Catalog, keys_starting_with
from .finding import Unused
from .patterns import glob, parse
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

