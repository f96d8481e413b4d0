"""The proof gate: Z3 string constraints decide whether a refined statement may replace the original.

This is the trusted kernel. It imports only the parsed pattern form; it never asks the trie or
the refiner what they meant. Every string is lower-cased first (IAM matches actions
case-insensitively), a pattern becomes a regular expression (`*` = any run of characters,
`?` = one character, literals as written), and each obligation asks Z3 for a string that
breaks it: `unsat` proves the obligation, `sat` gives a witness, and anything else rejects.

Reductions (each sound, argued in proofs/README.md): a pattern only matches strings that
start with its literal prefix, so actions, unused names and candidate containers that cannot
share that prefix are left out of an obligation; a refined pattern equal to an original one
(ignoring case) has the same language, so it needs no containment query.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import z3

from .patterns import Pattern, parse

DEFAULT_TIMEOUT_MS = 10_000
STRUCTURE_KEYS_CHANGED = "structure"


@dataclass(frozen=True)
class Violation:
    """Why a refined statement is rejected. kind: unsound, incomplete, structure or unknown."""

    kind: str
    statement: int
    sid: str | None
    message: str
    witness: str | None = None
    pattern: str | None = None  # the entry of the refined (or original) statement concerned

    def describe(self) -> str:
        where = f"statement {self.statement}" + (f" ({self.sid})" if self.sid else "")
        found = f": {self.witness}" if self.witness is not None else ""
        return f"{self.kind}: {where}: {self.message}{found}"


def literal_prefix(pattern: Pattern) -> str:
    """The lower-cased characters before the first wildcard (kernel's own reading of tokens)."""
    head = itertools.takewhile(lambda token: token not in ("*", "?"), pattern.tokens)
    return "".join(head).lower()


def _prefix_compatible(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


class Checker:
    """Discharges the proof obligations of refined statements for one finding and catalog."""

    def __init__(
        self,
        catalog_actions: Iterable[str],
        unused_actions: Iterable[str],
        unused_services: Iterable[str],
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        record: bool = False,
    ):
        self.unused_services = sorted({s.lower() for s in unused_services})
        self.unused = sorted({a.lower() for a in unused_actions})
        unused = set(self.unused)
        dead_services = set(self.unused_services)
        self.used = sorted(
            {
                action.lower()
                for action in catalog_actions
                if action.lower() not in unused
                and action.lower().split(":", 1)[0] not in dead_services
            }
        )
        self.timeout_ms = timeout_ms
        self.queries = 0
        self._solver = z3.Solver()
        self._solver.set("timeout", timeout_ms)
        self._action = z3.String("action")
        self._regex_cache: dict[str, z3.ReRef] = {}
        # With record=True every discharged obligation is kept as a formula that must be
        # unsatisfiable, so it can be exported as SMT-LIB and re-checked by another solver.
        self.record = record
        self.obligations: list[tuple[str, z3.BoolRef]] = []
        self._statement = 0

    # --- statements -------------------------------------------------------------------------

    def check_statement(self, index: int, original: dict, refined: dict | None) -> list[Violation]:
        """All violations of replacing original by refined (None: the statement was removed)."""
        sid = original.get("Sid") if isinstance(original.get("Sid"), str) else None
        key = "Action" if "Action" in original else "NotAction"
        self._statement = index

        def violation(kind, message, witness=None, pattern=None):
            return Violation(kind, index, sid, message, witness, pattern)

        if refined is not None:
            changed = sorted(k for k in set(original) | set(refined) if k != key
                             and original.get(k, _ABSENT) != refined.get(k, _ABSENT))
            if changed or key not in refined:
                what = ", ".join(changed) if changed else f"{key} replaced by the other form"
                return [violation(STRUCTURE_KEYS_CHANGED, f"changes {what}")]
        if original.get("Effect") != "Allow":
            if refined is None or refined[key] != original[key]:
                return [violation(STRUCTURE_KEYS_CHANGED, "a Deny statement was changed")]
            return []
        before = _entries(original[key])
        after = _entries(refined[key]) if refined is not None else []
        if key == "Action":
            findings = self._check_action(before, after)
        else:
            findings = self._check_not_action(before, after)
        return [violation(*finding) for finding in findings]

    def check_least(self, index: int, original: dict, refined: dict | None) -> list[Violation]:
        """Warnings (kind not-least) for new Action entries that admit no used action, only
        used actions other entries admit too (could be dropped), or one used action (could be
        narrowed to it). Entries kept from the original are never questioned."""
        if refined is None or original.get("Effect") != "Allow" or "Action" not in refined:
            return []
        sid = original.get("Sid") if isinstance(original.get("Sid"), str) else None
        after = _entries(refined["Action"])
        before = {text.lower() for text in _entries(original.get("Action", []))}
        warnings = []
        for position, text in enumerate(after):
            if text.lower() in before:
                continue
            admitted = self._members(self._with_prefix(self.used, literal_prefix(parse(text))), text)
            others = _Index(after[:position] + after[position + 1:])
            if not admitted:
                message = f"{text} admits no used action and could be dropped"
            elif self._uncovered(admitted, None, others) is None:
                message = f"{text} could be dropped: other entries admit every used action it does"
            elif parse(text).has_wildcard and len(admitted) == 1:
                message = f"{text} admits one used action and could be narrowed to it"
            else:
                continue
            witness = admitted[0] if admitted else None
            warnings.append(Violation("not-least", index, sid, message, witness, text))
        return warnings

    def _members(self, actions: list[str], text: str) -> list[str]:
        """The actions that Z3's rewriter shows to be matched by the pattern."""
        regex = self._regex(text)
        return [a for a in actions if z3.is_true(z3.simplify(z3.InRe(z3.StringVal(a), regex)))]

    def _check_action(self, before: list[str], after: list[str]):
        """Allow+Action: refined ⊆ original, refined ∩ unused = ∅, used ∩ original ⊆ refined."""
        originals, refined = _Index(before), _Index(after)
        new = [text for text in after if text.lower() not in originals.lower]
        names = [text.lower() for text in new if not parse(text).has_wildcard]
        found = self._uncovered(names, None, originals)  # all new names in one batch
        named = next((t for t in new if found and t.lower() == found[1]), None)
        yield from _report(found, "unsound", f"{named} admits an action the original does not", named)
        for text in new:
            if parse(text).has_wildcard:
                found = self._outside(text, originals)
                yield from _report(found, "unsound", f"{text} admits an action the original does not",
                                   text)
        for text in after:
            found = self._meets_unused(text)
            yield from _report(found, "unsound", f"{text} admits an unused action", text)
        for text in before:
            if text.lower() not in refined.lower:
                candidates = self._with_prefix(self.used, literal_prefix(parse(text)))
                found = self._uncovered(candidates, text, refined)
                yield from _report(found, "incomplete", f"loses a used action that {text} allowed")

    def _check_not_action(self, before: list[str], after: list[str]):
        """Allow+NotAction: original exclusions stay excluded, unused actions become excluded,
        and nothing used that the original allowed gets excluded."""
        originals, refined = _Index(before), _Index(after)
        for text in before:
            if text.lower() not in refined.lower:
                found = self._outside(text, refined)
                yield from _report(found, "unsound", f"no longer excludes what {text} excluded")
        found = self._uncovered(self.unused, None, refined)
        yield from _report(found, "unsound", "does not exclude an unused action")
        for service in self.unused_services:
            found = self._outside(f"{service}:*", refined)
            yield from _report(found, "unsound", f"does not exclude unused service {service}")
        for text in after:
            if text.lower() not in originals.lower:
                candidates = self._with_prefix(self.used, literal_prefix(parse(text)))
                found = self._uncovered(candidates, text, originals)
                yield from _report(found, "incomplete", f"{text} excludes a used action it allowed",
                                   text)

    # --- obligations ------------------------------------------------------------------------
    # Each returns None when proven, ("found", witness) or ("unknown", why) otherwise.

    def _outside(self, text: str, union: _Index):
        """Is some string matched by text outside every pattern of union?"""
        if not parse(text).has_wildcard:
            return self._uncovered([text.lower()], None, union)
        candidates = union.could_contain(literal_prefix(parse(text)))
        for container in candidates:  # one container usually suffices and is cheap to prove
            if self._find([self._regex(text)], [self._regex(container)]) is None:
                return None
        return self._find([self._regex(text)], [self._regex(u) for u in candidates])

    def _meets_unused(self, text: str):
        """Does text match an unused action or anything of a wholly unused service?"""
        prefix = literal_prefix(parse(text))
        names = self._with_prefix(self.unused, prefix)
        found = self._uncovered(names, text, _Index([])) if names else None
        if found is not None:
            return found
        for service in self.unused_services:
            if _prefix_compatible(prefix, service + ":"):
                found = self._find([self._regex(text), self._regex(f"{service}:*")], [])
                if found is not None:
                    return found
        return None

    def _uncovered(self, actions: list[str], within: str | None, cover: _Index):
        """Is one of the (lower-case) actions matched by `within` (if given) but by no pattern
        of cover? These are ground facts, which Z3's rewriter decides without search.

        Each action is first paired with the cover patterns of the longest literal prefix that
        starts it, all in one rewrite; if that does not reduce to true, each action is redone
        against every cover pattern that could match it, so the pairing never hides a covered
        action, and one the rewriter cannot settle goes to the solver."""
        batches: dict[str, list[str]] = {}
        for action in actions:
            batches.setdefault(cover.longest_prefix_of(action), []).append(action)
        if self._ground_all(
            [(batch, within, cover.by_prefix.get(owner, [])) for owner, batch in batches.items()]
        ):
            return None
        for action in actions:
            if self._ground_all([([action], within, cover.could_contain(action))]):
                continue
            found = self._find(
                [z3.Re(z3.StringVal(action))] + ([self._regex(within)] if within else []),
                [self._regex(t) for t in cover.could_contain(action)],
            )
            if found is not None:
                return found
        return None

    def _ground_all(self, claims: list[tuple[list[str], str | None, list[str]]]) -> bool:
        """True when Z3 rewrites every claim (actions, within, cover) — each action inside
        `within` (when given) is in some cover pattern — to true. One call for all claims:
        the rewriter's fixed cost per call outweighs a single membership."""
        self.queries += 1
        facts = []
        for actions, within, cover in claims:
            for action in actions:
                word = z3.StringVal(action)
                covered = z3.Or([z3.InRe(word, self._regex(t)) for t in cover]) if cover else False
                facts.append(
                    z3.Implies(z3.InRe(word, self._regex(within)), covered) if within else covered
                )
        if not facts:
            return True
        claim = z3.And(facts)
        proven = z3.is_true(z3.simplify(claim))
        if proven and self.record:
            self.obligations.append((f"statement{self._statement}-ground", z3.Not(claim)))
        return proven

    def _find(self, inside: list, outside: list):
        """A string in every regex of inside and in none of outside, searched by the solver."""
        self.queries += 1
        # One membership in an intersection with a complement: Z3 decides the emptiness of a
        # single regex much faster than a conjunction of memberships (measured: 2 ms vs 74 ms).
        parts = list(inside)
        if outside:
            parts.append(z3.Complement(_union(outside)))
        language = parts[0] if len(parts) == 1 else z3.Intersect(*parts)
        solver = self._solver
        solver.push()
        try:
            membership = z3.InRe(self._action, language)
            solver.add(membership)
            verdict = solver.check()
            if verdict == z3.unsat:
                if self.record:
                    self.obligations.append((f"statement{self._statement}-query", membership))
                return None
            if verdict == z3.sat:
                return ("found", self._readable_witness())
            return ("unknown", f"solver gave no answer ({solver.reason_unknown()})")
        finally:
            solver.pop()

    def _readable_witness(self) -> str:
        """The model's string, preferring one of printable ASCII so a person can read it (the
        preference only picks among counterexamples; it never decides a verdict)."""
        model = self._solver.model()
        self._solver.push()
        self._solver.add(z3.InRe(self._action, z3.Star(z3.Range(" ", "~"))))
        if self._solver.check() == z3.sat:
            model = self._solver.model()
        self._solver.pop()
        return _decode(model.eval(self._action).as_string())

    # --- encoding ---------------------------------------------------------------------------

    def _regex(self, text: str) -> z3.ReRef:
        key = text.lower()
        if key not in self._regex_cache:
            parts = []
            for token in parse(text).tokens:
                if token == "*":
                    parts.append(z3.Star(z3.AllChar(z3.ReSort(z3.StringSort()))))
                elif token == "?":
                    parts.append(z3.AllChar(z3.ReSort(z3.StringSort())))
                else:
                    parts.append(z3.Re(z3.StringVal(token.lower())))
            self._regex_cache[key] = parts[0] if len(parts) == 1 else z3.Concat(*parts)
        return self._regex_cache[key]

    @staticmethod
    def _with_prefix(sorted_words: list[str], prefix: str) -> list[str]:
        start = bisect.bisect_left(sorted_words, prefix)
        end = bisect.bisect_left(sorted_words, prefix + "\U0010ffff")
        return sorted_words[start:end]


_ABSENT = object()


def _decode(z3_string: str) -> str:
    """Z3 prints non-printable characters as \\u{hex}."""
    return re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda m: chr(int(m.group(1), 16)), z3_string)


def _report(found, kind: str, message: str, pattern: str | None = None):
    """Turn a query result into at most one (kind, message, witness, pattern) finding."""
    if found is None:
        return
    status, detail = found
    if status == "found":
        yield kind, message, detail, pattern
    else:
        yield "unknown", f"{message}? {detail}", None, pattern


class _Index:
    """Patterns of one statement side, looked up by literal prefix."""

    def __init__(self, texts: list[str]):
        self.lower = {text.lower() for text in texts}
        self.by_prefix: dict[str, list[str]] = {}
        for text in texts:
            self.by_prefix.setdefault(literal_prefix(parse(text)), []).append(text)

    def longest_prefix_of(self, string: str) -> str:
        for cut in range(len(string), -1, -1):
            if string[:cut] in self.by_prefix:
                return string[:cut]
        return ""

    def could_contain(self, string: str) -> list[str]:
        """Patterns whose literal prefix starts string, longest prefix first: only they can
        match string or contain a pattern whose literal prefix is string."""
        return [
            text
            for cut in range(len(string), -1, -1)
            for text in self.by_prefix.get(string[:cut], ())
        ]


def _entries(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _union(regexes: list) -> z3.ReRef:
    return regexes[0] if len(regexes) == 1 else z3.Union(*regexes)
