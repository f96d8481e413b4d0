"""Refine a policy: drop unused actions, narrow wildcards through the trie, keep all else as is."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import jsontext
from .catalog import Catalog
from .errors import InputError
from .finding import Unused
from .patterns import glob, intersects_prefix, parse
from .policy import PolicyInput, action_key, patterns_of
from .trie import character_prefixes, shortest_safe_prefixes


@dataclass
class Refinement:
    """The refined document, and each original statement with its refined form (the same
    object when unchanged, None when removed), in the original order."""

    document: dict
    pairs: list[tuple[dict, dict | None]] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(refined is not original for original, refined in self.pairs)

    @property
    def size(self) -> int:
        """Characters as AWS counts them for its policy size limits (whitespace excluded)."""
        return policy_size(self.document)

    @property
    def detach(self) -> bool:
        """Nothing is left: the policy should be detached rather than replaced."""
        statements = self.document.get("Statement")
        return statements == [] or statements is None


# How a wildcard that covers unused actions is replaced (every one is proven by the kernel):
STRATEGIES = {
    "words": "the shortest safe prefixes at CamelCase word boundaries (s3:GetObject*)",
    "characters": "the shortest safe prefixes at any character (s3:GetO*)",
    "exact": "no new wildcard: the used actions listed by name (no future action is admitted)",
    "size": "the fewest characters that admit no unused action (today's --max-size form)",
}
DEFAULT_STRATEGY = "words"


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    return strategy


# AWS's limits on a policy's size, in characters without whitespace.
SIZE_LIMITS = {"managed": 6_144, "inline": 10_240, "user-inline": 2_048, "group-inline": 5_120}
# "inline" is a role's; a user's and a group's inline policies have limits of their own.


def policy_size(document: dict) -> int:
    return len(jsontext.dumps(document))


class Refiner:
    """Refines statements against one finding and one catalog."""

    def __init__(self, unused: Unused, catalog: Catalog, strategy: str = DEFAULT_STRATEGY):
        self.unused = unused
        self.catalog = catalog
        self.strategy = check_strategy(strategy)  # see STRATEGIES
        self._expansions: dict[str, list[str]] = {}  # a wildcard's replacement, once
        self._refined_lists: dict[tuple[str, ...], list[str]] = {}

    def refine_policy(self, policy: PolicyInput) -> Refinement:
        refined_statements = []
        pairs = []
        for statement in policy.statements:
            refined = self.refine_statement(statement)
            pairs.append((statement, refined))
            if refined is not None:
                refined_statements.append(refined)
        document = dict(policy.document)
        if policy.statements_as_list:
            document["Statement"] = refined_statements
        else:
            document["Statement"] = refined_statements[0] if refined_statements else []
        return Refinement(document, pairs)

    def refine_statement(self, statement: dict) -> dict | None:
        """The statement itself when nothing changes, a changed copy, or None when it goes."""
        if statement.get("Effect") != "Allow" or (
                self.unused.keep is not None and self.unused.keep.keeps_statement(statement)):
            return statement  # a Deny, or a statement a keep rule keeps
        key = action_key(statement)
        entries = patterns_of(statement)
        new_entries = (
            self._refine_actions(entries) if key == "Action" else self._extend_not_action(entries)
        )
        if new_entries == entries:
            return statement
        if not new_entries:
            return None
        refined = copy.deepcopy(statement)
        single = isinstance(statement[key], str) and len(new_entries) == 1
        refined[key] = new_entries[0] if single else new_entries
        return refined

    def _unused_in(self, text: str) -> tuple[list[str], bool]:
        """Unused names the pattern matches, and whether it reaches a wholly unused service."""
        pattern, matcher = parse(text), glob(text)
        prefix = pattern.literal_prefix
        names = [n for n in self.unused.names_with_prefix(prefix) if matcher.matches(n)]
        if ":" in prefix:
            reaches_service = prefix.split(":", 1)[0] in self.unused.services
        else:
            reaches_service = any(
                intersects_prefix(pattern, service + ":") for service in self.unused.services
            )
        return names, reaches_service

    def _refine_actions(self, entries: list[str]) -> list[str]:
        """Keep patterns that touch nothing unused, drop unused names, expand wildcards."""
        key = tuple(entries)  # statements often repeat an Action list with other resources
        if key not in self._refined_lists:
            self._refined_lists[key] = self._refine_action_list(entries)
        return list(self._refined_lists[key])

    def _refine_action_list(self, entries: list[str]) -> list[str]:
        slots: list[tuple[str, bool]] = []  # (text, is it new)
        for text in entries:
            unused_names, reaches_service = self._unused_in(text)
            if not unused_names and not reaches_service:
                slots.append((text, False))
            elif parse(text).has_wildcard:
                slots.extend((new, True) for new in self._expand(text, unused_names))
        result = _without_redundant(slots)
        new = {text for text, is_new in slots if is_new}
        return self._without_catalog_redundant(result, [t for t in result if t in new])

    def _without_catalog_redundant(self, entries: list[str], new: list[str]) -> list[str]:
        """Drop a new wildcard whose used catalog actions the other entries all admit already
        (kept names often do): the statement admits the same used actions without it."""
        index = _ByLiteralPrefix(entries)
        dropped: set[str] = set()

        def admitted_by_another(action: str, text: str) -> bool:
            return any(glob(other).matches(action) for other in index.starting(action.lower())
                       if other != text and other not in dropped)

        for text in new:
            if parse(text).has_wildcard and all(
                admitted_by_another(action, text) for action in self._used_matches(text)
            ):
                dropped.add(text)
        return [entry for entry in entries if entry not in dropped]

    def matched(self, text: str) -> tuple[list[str], list[str]]:
        """The used catalog actions and the unused names a pattern matches: the names of the
        trie that replaces it (refiner explain draws it)."""
        return list(self._used_matches(text)), self._unused_in(text)[0]

    def _used_matches(self, text: str) -> Iterator[str]:
        """Catalog actions the pattern matches that are not unused, lazily."""
        return (name for name in self.catalog.matching(text) if not self.unused.is_unused(name))

    def _expand(self, text: str, unused_names: list[str]) -> list[str]:
        if text not in self._expansions:
            self._expansions[text] = self._propose(text, unused_names)
        return self._expansions[text]

    def _propose(self, text: str, unused_names: list[str]) -> list[str]:
        used = list(self._used_matches(text))
        if self.strategy == "exact":
            return sorted(used, key=lambda name: (name.lower(), name))
        if self.strategy == "characters":
            return shortest_safe_prefixes(glob(text), used, unused_names, self.unused.services,
                                          False, character_prefixes)
        return shortest_safe_prefixes(glob(text), used, unused_names, self.unused.services,
                                      self.strategy == "size")

    def _extend_not_action(self, entries: list[str]) -> list[str]:
        """Allow+NotAction: exclude each unused action the statement still allows."""
        excluded = [glob(text) for text in entries]
        additions = []
        for service in sorted(self.unused.services):
            if not any(g.covers_prefix(service + ":") for g in excluded):
                additions.append(f"{service}:*")
        for name in sorted(self.unused.actions.values(), key=str.lower):
            service = name.split(":", 1)[0].lower()
            if service not in self.unused.services and not any(g.matches(name) for g in excluded):
                additions.append(name)
        return entries + additions


class _ByLiteralPrefix:
    """Entries indexed by literal prefix: a pattern can match a string (or cover `p*`) only if
    its literal prefix starts that string, so only those entries need a look."""

    def __init__(self, entries):
        self._entries: dict[str, list[str]] = {}
        for entry in entries:
            self._entries.setdefault(parse(entry).literal_prefix, []).append(entry)
        self._lengths = sorted({len(key) for key in self._entries})

    def starting(self, string: str) -> Iterator[str]:
        """Entries whose literal prefix starts string (lower case), lazily: callers stop at
        the first that matches."""
        return (entry for cut in self._lengths if cut <= len(string)
                for entry in self._entries.get(string[:cut], ()))


def _without_redundant(slots: list[tuple[str, bool]]) -> list[str]:
    """Drop new entries that another entry covers or repeats, so that no emitted pattern is
    covered by another; kept originals always stay, byte for byte, even when repeated."""
    kept = {text.lower() for text, is_new in slots if not is_new}
    index = _ByLiteralPrefix(dict.fromkeys(text for text, _ in slots))
    result: list[str] = []
    seen: set[str] = set()
    for text, is_new in slots:
        lower = text.lower()
        if is_new and (lower in seen or lower in kept or _covered(text, index)):
            continue
        seen.add(lower)
        result.append(text)
    return result


def _covered(text: str, index: _ByLiteralPrefix) -> bool:
    pattern = parse(text)
    prefix = pattern.literal_prefix
    whole_prefix = pattern.has_wildcard  # new entries are names or "prefix*"
    for other in index.starting(prefix):
        if other.lower() == text.lower():
            continue
        matcher = glob(other)
        if matcher.covers_prefix(prefix) if whole_prefix else matcher.matches(text):
            return True
    return False
