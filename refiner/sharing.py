"""What each document may lose: the intersection of the unused sets of every principal it reaches."""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
from dataclasses import dataclass, field

import orjson

from .catalog import Catalog
from .errors import InputError
from .finding import Unused, unused_from_json
from .jsontext import parse_json_text
from .patterns import parse
from .policy import load_policy, patterns_of
from .principals import MANAGED, VIA_ATTACHED, Document
from .prove import literal_prefix

SHARED_MODES = ("consolidate", "copy", "report")
DEFAULT_SHARED = "consolidate"


@dataclass(frozen=True, slots=True)
class UnusedSet:
    """A principal's unused actions (display names) and wholly unused services (lower case);
    everything=True: it uses nothing (UnusedIAMRole). Held for every principal of an account,
    so compactly: sorted tuples of the names (the catalog's own strings, shared by every set
    that names them), looked up by bisection; equal sets are equal values (a planner holds one
    of each)."""

    actions: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    everything: bool = False

    @classmethod
    def of(cls, unused: Unused) -> UnusedSet:
        return cls(tuple(sorted(set(unused.actions.values()))), tuple(sorted(unused.services)))

    def names(self, action: str) -> bool:
        """The action (a display name) is named by the finding."""
        index = bisect.bisect_left(self.actions, action)
        return index < len(self.actions) and self.actions[index] == action

    def leaves_unused(self, action: str) -> bool:
        """The action (a display name) is unused: named, of a wholly unused service, or
        everything is."""
        return self.everything or self.names(action) or \
            action.split(":", 1)[0].lower() in self.services

    def __and__(self, other: UnusedSet) -> UnusedSet:
        """Unused by both: an action named by one and named, or of a wholly unused service, by
        the other; services unused by both."""
        if self.everything:
            return other
        if other.everything:
            return self
        actions = {a for a in self.actions if other.leaves_unused(a)} | \
            {a for a in other.actions if self.leaves_unused(a)}
        return UnusedSet(tuple(sorted(actions)),
                         tuple(sorted(set(self.services) & set(other.services))))

    def restricted(self, scope: Scope | None, catalog: Catalog) -> UnusedSet:
        """Only what a document whose Allow patterns have the scope's literal prefixes can
        match (None: it may match anything). The kernel's obligations about other actions
        hold whatever the finding says of them, so the result of refining is the same."""
        if self.everything:
            services = tuple(sorted(s for s in catalog.services if _reachable(s + ":", scope)))
            return UnusedSet((), services)
        if scope is None:
            return self
        return UnusedSet(_reachable_actions(self.actions, scope),
                         tuple(s for s in self.services if _reachable(s + ":", scope)))

    def as_json(self) -> dict:
        return {"actions": sorted(self.actions, key=str.lower), "services": list(self.services)}

    def is_empty(self) -> bool:
        return not self.everything and not self.actions and not self.services

    def as_unused(self) -> Unused:
        return unused_from_json(self.as_json())


@dataclass(frozen=True)
class Scope:
    """The literal prefixes of a document's Allow Action patterns, by service: a pattern can
    match a name only if its literal prefix and the name's start agree (one is a prefix of
    the other). Prefixes without a colon may reach any service that starts with them."""

    by_service: dict  # service -> prefixes that hold a colon
    open_prefixes: tuple[str, ...]  # prefixes without a colon


def _reachable(name: str, scope: Scope | None) -> bool:
    """name: a lower-case action name, or a service name followed by a colon."""
    if scope is None:
        return True
    if any(name.startswith(p) for p in scope.open_prefixes):
        return True
    service = name.split(":", 1)[0]
    return any(name.startswith(p) or p.startswith(name)
               for p in scope.by_service.get(service, ()))


def _reachable_actions(actions: tuple[str, ...], scope: Scope) -> tuple[str, ...]:
    """The actions (sorted display names, services in lower case) that _reachable keeps, found
    by each of the scope's services' range of names rather than name by name: a principal's
    finding names hundreds of actions, and a document reaches a few services."""
    if scope.open_prefixes:  # "*", "s*": any service may be reached, name by name
        return tuple(a for a in actions if _reachable(a.lower(), scope))
    pieces = []
    for service, prefixes in scope.by_service.items():
        start = bisect.bisect_left(actions, service + ":")
        end = bisect.bisect_left(actions, service + ";", start)  # ";" follows ":"
        if start == end:
            continue
        names = actions[start:end]
        if service + ":" not in prefixes:  # "s3:*" reaches all of s3
            names = tuple(a for a in names if any(
                (lower := a.lower()).startswith(p) or p.startswith(lower) for p in prefixes))
        pieces.append((start, names))
    return tuple(name for _, names in sorted(pieces) for name in names)


@functools.lru_cache(maxsize=4096)
def document_scope(text: str) -> Scope | None:
    """The scope of a document's Allow Action patterns (None: a NotAction Allow, or a
    document that does not read, may match anything)."""
    try:
        policy = load_policy(parse_json_text(text, "policy"), "policy", text)
    except InputError:
        return None
    prefixes = set()
    for statement in policy.statements:
        if statement.get("Effect") != "Allow":
            continue
        if "Action" not in statement:
            return None
        prefixes |= {literal_prefix(parse(p)) for p in patterns_of(statement)}
    by_service: dict[str, list[str]] = {}
    for prefix in sorted(prefixes):
        if ":" in prefix:
            by_service.setdefault(prefix.split(":", 1)[0], []).append(prefix)
    return Scope(by_service, tuple(sorted(p for p in prefixes if ":" not in p)))


def size_kind(document: Document) -> str:
    """The key of refinement.SIZE_LIMITS for the document (a role's inline is "inline")."""
    return "inline" if document.kind == "role-inline" else document.kind


@dataclass(slots=True)
class Decision:
    """What recommend does with one document: refine it once against `unused` (shared,
    consolidated), per principal (own, copy), or leave it (why)."""

    document: Document | None  # None: OWN, the decision of every document one principal holds
    mode: str  # own | consolidated | copy | report | unchanged
    unused: UnusedSet | None = None  # consolidated: the intersection over the reach
    reason: str | None = None
    holders: list[str] = field(default_factory=list)  # reach principals with a finding


# Most documents are one principal's own: one decision for all of them (nothing of it differs).
OWN = Decision(None, "own")


def decide(document: Document, unused_of: dict[str, UnusedSet], refined_for: set[str],
           shared_mode: str) -> Decision:
    """unused_of: the unused set of every principal with an active finding (others use
    everything); refined_for: principals with an UnusedPermission finding to refine for."""
    if not document.shared and not document.reach_incomplete():
        return OWN
    holders = sorted({r.arn for r in document.reach if r.arn in unused_of})
    incomplete = document.reach_incomplete()
    if shared_mode == "copy" and document.kind == MANAGED and not incomplete:
        direct = [r.arn for r in document.reach if r.via == VIA_ATTACHED]
        if any(arn in refined_for for arn in direct):
            return Decision(document, "copy", holders=holders)
    if incomplete:
        return Decision(document, "unchanged", reason=incomplete + ": an unseen principal may "
                        "use what it grants", holders=holders)
    everyone = {r.arn for r in document.reach}
    without = sorted(everyone - set(unused_of))
    if without:
        return Decision(document, "unchanged", UnusedSet(), holders=holders,
                        reason=f"{len(without)} of the {len(everyone)} principals it reaches "
                        f"have no unused-access finding (they may use everything), e.g. "
                        f"{without[0]}")
    unused = UnusedSet(everything=True)
    for arn in everyone:
        unused = unused & unused_of[arn]
        if unused.is_empty():  # each holder uses what another leaves unused: nothing goes
            break
    if unused.everything:  # every holder is unused: their roles are to be deleted, not refined
        return Decision(document, "unchanged", UnusedSet(), holders=holders,
                        reason="every principal it reaches is unused (delete them)")
    return Decision(document, "report" if shared_mode == "report" else "consolidated", unused,
                    holders=holders)


def task_key(payload: dict) -> str:
    """A content key: the same inputs make the same key, in every run and every process."""
    try:  # orjson: some times faster for the thousands of tasks of an account
        text = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # a lone surrogate in a name, say
        text = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:32]
