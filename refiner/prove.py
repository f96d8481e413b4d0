"""The proof gate: Z3 string constraints decide whether a refined statement may replace the original.

This is the trusted kernel. It imports only the parsed pattern form; it never asks the trie or
the refiner what they meant. Every string is lower-cased first (IAM matches actions
case-insensitively), a pattern becomes a regular expression (`*` = any run of characters,
`?` = one character, literals as written), and each obligation asks Z3 for a string that
breaks it: `unsat` proves the obligation, `sat` gives a witness, and anything else rejects.

Reductions (each sound, argued in proofs/README.md): a pattern only matches strings that
start with its literal prefix, so actions, unused names and candidate containers that cannot
share that prefix are left out of an obligation; a refined pattern equal to an original one
(ignoring case) has the same language, so it needs no containment query. Obligations over a
finite set of known strings (catalog actions, unused names) are ground facts that Z3's
rewriter evaluates, with membership in `w` and `w*` written as `=` and `str.prefixof`;
containment of `w*` in prefix patterns `v*` is the ground fact that `w` is in one of them
(exact: `w` itself is in `w*`); the others go to the solver. A statement's obligations are
first proven all together; only if that fails is each one checked alone, to name the
violation and its witness. In a process that proves many documents, a ground claim (strings
only) Z3 rewrote to true is not sent again (remember_true_claims).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .patterns import Pattern, parse

z3 = None  # the solver's Python module, loaded by load_solver()

DEFAULT_TIMEOUT_MS = 10_000
# Ground facts (plus the patterns they name) per rewrite. Z3 5.4.1 was seen to abort on a
# chunk of 4,000 facts with as many patterns (PowerUserAccess); speed is flat from 250 up.
FACT_CHUNK = 1_000
_PLAIN = re.compile(r'[ !#-\[\]-~]*')  # printable ASCII but the quote and the backslash
COVER_CHUNK = 200  # cover patterns of one action in one rewrite, at most
QUERY_CHUNK = 16  # solver queries proven together (measured best on ReadOnlyAccess)
STRUCTURE_KEYS_CHANGED = "structure"
TRUE_CLAIMS_LIMIT = 200_000  # ground claims remembered true in one process


@dataclass(frozen=True)
class Violation:
    """Why a refined statement is rejected. kind: unsound, incomplete, structure or unknown.
    statement None: the verdict is about the whole policy. rule names the obligation broken;
    actions, filled in outside the kernel (refiner.naming), are every catalog or unused action
    it concerns, in the catalog's spelling."""

    kind: str
    statement: int | None
    sid: str | None
    message: str
    witness: str | None = None
    pattern: str | None = None  # the entry of the refined (or original) statement concerned
    rule: str | None = None
    actions: tuple[str, ...] = ()
    request: dict | None = None  # a whole request HEAD allows and BASE does not (requests.py)

    def describe(self) -> str:
        # A verdict about a whole policy or principal has no statement (None; -1 in the gate's).
        where = "" if self.statement is None or self.statement < 0 else \
            f"statement {self.statement}" + (f" ({self.sid})" if self.sid else "") + ": "
        if len(self.actions) > 1:
            found = f" ({len(self.actions)} actions): {', '.join(self.actions)}"
        elif self.actions or self.witness is not None:
            found = f": {self.actions[0] if self.actions else self.witness}"
        else:
            found = ""
        return f"{self.kind}: {where}{self.message}{found}"


@functools.lru_cache(maxsize=200_000)
def literal_prefix(pattern: Pattern) -> str:
    """The lower-cased characters before the first wildcard (kernel's own reading of tokens)."""
    head = itertools.takewhile(lambda token: token not in ("*", "?"), pattern.tokens)
    return "".join(head).lower()


def load_solver():
    """Z3, imported when the first Checker is made: a process that proves nothing (a parent
    whose proofs run in a child) never pays for it."""
    global z3
    if z3 is None:
        import z3 as solver

        z3 = solver
    return z3


# Ground claims Z3 rewrote to true in this process (_claim_key), once remember_true_claims()
# is called (a process that proves many documents: recommend's workers); None: not kept.
_TRUE_CLAIMS: set[tuple] | None = None


def remember_true_claims() -> None:
    """From now on, a ground claim Z3 rewrites to true is not sent to it again by any Checker
    of this process. `queries` then counts what was sent, which depends on what the process
    proved before."""
    global _TRUE_CLAIMS
    if _TRUE_CLAIMS is None:
        _TRUE_CLAIMS = set()


def _claim_key(claim: tuple[list[str], str | None, list[str]]) -> tuple:
    """A ground claim as a value equal for the same claim only: tuples keep every part apart
    whatever characters it holds, and None apart from "" (and hash far faster than text)."""
    actions, within, cover = claim
    return tuple(actions), within, tuple(cover)


@functools.lru_cache(maxsize=1)
def _action_variable():
    """The string variable of every query (one per process: making one costs as much as a
    small proof, and the solvers share Z3's one context)."""
    return z3.String("action")


def _prefix_compatible(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


class Checker:
    """Discharges the proof obligations of refined statements for one finding and catalog."""

    def __init__(
        self,
        catalog_actions: Iterable[str],  # or a Catalog, whose sorted lower-case list is reused
        unused_actions: Iterable[str],
        unused_services: Iterable[str],
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        record: bool = False,
    ):
        self.unused_services = sorted({s.lower() for s in unused_services})
        self.unused = sorted({a.lower() for a in unused_actions})
        self._unused_set = set(self.unused)
        self._dead_services = set(self.unused_services)
        # The catalog's lower-case names that start with a prefix. A Catalog answers from the
        # index of the prefix's service alone (made when first asked: start-up), the same run
        # of names its whole sorted list gives.
        if hasattr(catalog_actions, "lower_with_prefix"):
            self._catalog_with_prefix = catalog_actions.lower_with_prefix
        else:
            words = sorted({action.lower() for action in catalog_actions})
            self._catalog_with_prefix = functools.partial(self._with_prefix, words)
        self.timeout_ms = timeout_ms
        self.queries = 0
        load_solver()
        self._solver_made: z3.Solver | None = None  # made for the first solver query
        self._action = _action_variable()
        self._regex_cache: dict[str, str] = {}
        # With record=True every discharged obligation is kept as a formula that must be
        # unsatisfiable, so it can be exported as SMT-LIB and re-checked by another solver.
        self.record = record
        self.obligations: list[tuple[str, str]] = []  # (label, SMT-LIB assertions)
        self._statement = 0
        self._proven: dict[tuple, list[tuple]] = {}

    @property
    def _solver(self):
        """One solver per Checker, made when a query first needs it: most statements are
        proven by ground rewrites alone, and a solver costs as much as a small proof."""
        if self._solver_made is None:
            self._solver_made = z3.Solver()
            self._solver_made.set("timeout", self.timeout_ms)
        return self._solver_made

    # --- statements -------------------------------------------------------------------------

    def check_statement(self, index: int, original: dict, refined: dict | None) -> list[Violation]:
        """All violations of replacing original by refined (None: the statement was removed)."""
        sid = original.get("Sid") if isinstance(original.get("Sid"), str) else None
        key = "Action" if "Action" in original else "NotAction"
        self._statement = index

        def violation(kind, message, witness=None, pattern=None, rule=None):
            return Violation(kind, index, sid, message, witness, pattern, rule)

        if refined is not None:
            changed = sorted(k for k in set(original) | set(refined) if k != key
                             and not same_json(original.get(k, _ABSENT), refined.get(k, _ABSENT)))
            if changed or key not in refined:
                what = ", ".join(changed) if changed else f"{key} replaced by the other form"
                return [violation(STRUCTURE_KEYS_CHANGED, f"changes {what}")]
        if original.get("Effect") != "Allow":
            if refined is None or not same_json(refined[key], original[key]):
                return [violation(STRUCTURE_KEYS_CHANGED, "a Deny statement was changed")]
            return []
        before = _entries(original[key])
        after = _entries(refined[key]) if refined is not None else []
        # The obligations depend only on the two pattern lists: statements that repeat them
        # (same actions, other resources) are proven once.
        memo = (key, tuple(before), tuple(after))
        if memo not in self._proven:
            self._proven[memo] = self._prove(key, before, after)
        return [violation(*finding) for finding in self._proven[memo]]

    def _prove(self, key: str, before: list[str], after: list[str]) -> list[tuple]:
        """(kind, message, witness, pattern) for each violated obligation of one statement."""
        if key == "Action":
            obligations = self._action_obligations(before, after)
        else:
            obligations = self._not_action_obligations(before, after)
        # All obligations at once: one ground rewrite and one solver query. Only when that
        # does not prove everything is each obligation taken alone, for a precise witness.
        if all(o.queries is not None for o in obligations) and self._ground_all(
            [claim for o in obligations for claim in o.claims]
        ) and self._find_none([query for o in obligations for query in o.queries]):
            return []
        findings = []
        for obligation in obligations:
            found = obligation.precise()
            message, pattern = obligation.message, obligation.pattern
            if found is not None and obligation.name_from_witness is not None:
                pattern = next((t for t in obligation.name_from_witness
                                if t.lower() == found[1]), None)
                message = message.format(pattern)
            findings += _report(found, obligation.kind, message, pattern, obligation.rule)
        return findings

    def _action_obligations(self, before: list[str], after: list[str]) -> list[_Obligation]:
        """Allow+Action: refined ⊆ original, refined ∩ unused = ∅, used ∩ original ⊆ refined."""
        originals, refined = _Index(before), _Index(after)
        new = [text for text in after if text.lower() not in originals.lower]
        names = [text.lower() for text in new if not parse(text).has_wildcard]
        obligations = [self._covered_obligation(
            "unsound", "{} admits an action the original does not", names, None, originals,
            name_from_witness=new, rule="admits-new")]
        obligations += [
            self._inside_obligation("unsound", f"{text} admits an action the original does not",
                                    text, originals, "admits-new")
            for text in new if parse(text).has_wildcard
        ]
        obligations += [found for text in after
                        if (found := self._unused_obligation(text)) is not None]
        for text in before:
            if text.lower() not in refined.lower:
                candidates = self._used_with_prefix(literal_prefix(parse(text)))
                obligations.append(self._covered_obligation(
                    "incomplete", f"loses a used action that {text} allowed", candidates, text,
                    refined, text, rule="loses-used"))
        return obligations

    def _not_action_obligations(self, before: list[str], after: list[str]) -> list[_Obligation]:
        """Allow+NotAction: original exclusions stay excluded, unused actions become excluded,
        and nothing used that the original allowed gets excluded."""
        originals, refined = _Index(before), _Index(after)
        obligations = [
            self._inside_obligation("unsound", f"no longer excludes what {text} excluded", text,
                                    refined, "stops-excluding")
            for text in before if text.lower() not in refined.lower
        ]
        obligations.append(self._covered_obligation(
            "unsound", "does not exclude an unused action", self.unused, None, refined,
            rule="unused-not-excluded"))
        obligations += [
            self._inside_obligation("unsound", f"does not exclude unused service {service}",
                                    f"{service}:*", refined, "stops-excluding")
            for service in self.unused_services
        ]
        for text in after:
            if text.lower() not in originals.lower:
                candidates = self._used_with_prefix(literal_prefix(parse(text)))
                obligations.append(self._covered_obligation(
                    "incomplete", f"{text} excludes a used action it allowed", candidates, text,
                    originals, pattern=text, rule="excludes-used"))
        return obligations

    def _covered_obligation(self, kind, message, actions, within, cover, pattern=None,
                            name_from_witness=None, rule=None) -> _Obligation:
        """Every action (inside `within`, if given) is matched by some pattern of cover."""
        return _Obligation(kind, message, pattern, self._claims(actions, within, cover), [],
                           lambda: self._uncovered(actions, within, cover), name_from_witness,
                           rule)

    def _inside_obligation(self, kind, message, text, union: _Index, rule) -> _Obligation:
        """Every string text matches is matched by some pattern of union."""
        if not parse(text).has_wildcard:
            return self._covered_obligation(kind, message, [text.lower()], None, union, text,
                                            rule=rule)
        # A pattern with a wildcard has infinitely many strings: only a wildcard contains it.
        candidates = [c for c in union.could_contain(literal_prefix(parse(text)))
                      if parse(c).has_wildcard]
        shape, head = _shape(text)
        prefixes = [c for c in candidates if _shape(c)[0] == "prefix"]
        if shape == "prefix" and prefixes and (len(prefixes) == len(candidates)
                                               or self._ground_all([([head], None, prefixes)])):
            # w* lies inside the union of v1*, v2*, ... exactly when some vi is a prefix of w,
            # that is when the string w itself is in the union: a ground fact. Inside the
            # prefix patterns alone is inside the whole union, so the other candidates (globs,
            # whose union makes slow queries) are needed only when that fact fails.
            return _Obligation(kind, message, text, self._claims([head], None, _Index(prefixes)),
                               [], lambda: self._outside(text, union), rule=rule)
        quick = [([text], candidates)] if candidates else None
        return _Obligation(kind, message, text, [], quick,
                           lambda: self._outside(text, union), rule=rule)

    def _unused_obligation(self, text: str) -> _Obligation | None:
        """text matches no unused action and nothing of a wholly unused service; None when
        no unused name starts with its literal prefix and no unused service agrees with it
        (it has no claim and no query left: proven by the literal prefix alone)."""
        prefix = literal_prefix(parse(text))
        names = self._with_prefix(self.unused, prefix)
        services = [s for s in self.unused_services if _prefix_compatible(prefix, s + ":")]
        if not names and not services:
            return None
        return _Obligation("unsound", f"{text} admits an unused action", text,
                           self._claims(names, text, _NO_PATTERNS),
                           [([text, f"{service}:*"], []) for service in services],
                           lambda: self._meets_unused(text, names, services),
                           rule="admits-unused")

    # --- obligations ------------------------------------------------------------------------
    # Each returns None when proven, ("found", witness) or ("unknown", why) otherwise.

    def _outside(self, text: str, union: _Index):
        """Is some string matched by text outside every pattern of union?"""
        if not parse(text).has_wildcard:
            return self._uncovered([text.lower()], None, union)
        candidates = union.could_contain(literal_prefix(parse(text)))
        for container in candidates:  # one container usually suffices and is cheap to prove
            if parse(container).has_wildcard and self._find([text], [container]) is None:
                return None
        # Not proven: search for a witness outside every pattern that could match any string
        # of text (literal prefixes compatible), so the string reported is a real one.
        return self._find([text], union.compatible(literal_prefix(parse(text))))

    def _meets_unused(self, text: str, names: list[str], services: list[str]):
        """Does text match one of the unused names or reach one of the unused services (those
        its literal prefix allows)?"""
        found = self._uncovered(names, text, _NO_PATTERNS) if names else None
        for service in services:
            if found is not None:
                break
            found = self._find([text, f"{service}:*"], [])
        return found

    def _uncovered(self, actions: list[str], within: str | None, cover: _Index):
        """Is one of the (lower-case) actions matched by `within` (if given) but by no pattern
        of cover? These are ground facts, which Z3's rewriter decides without search.

        All actions go into one rewrite, each with every cover pattern that could match it; if
        that does not reduce to true, each action is redone alone to find the one that fails,
        and one the rewriter cannot settle goes to the solver."""
        if self._ground_all(self._claims(actions, within, cover)):
            return None
        for action in actions:
            candidates = cover.could_contain(action)
            if self._ground_all([([action], within, candidates)]):
                continue
            found = self._find([action] + ([within] if within else []), candidates,
                               literal=action)
            if found is not None:
                return found
        return None

    @staticmethod
    def _claims(actions: list[str], within: str | None, cover: _Index):
        """Ground claims that every action (inside `within`) is in a cover pattern, each action
        paired with the cover patterns whose literal prefix starts it (no other can match)."""
        return [([action], within, cover.could_contain(action)) for action in actions]

    def _find_none(self, queries: list[tuple[list[str], list[str]]]) -> bool:
        """True when the solver proves at once that no query has a string (each query: in every
        pattern of inside, in none of outside); the union of their languages is empty."""
        return all(self._find_union(queries[start:start + QUERY_CHUNK]) is None
                   for start in range(0, len(queries), QUERY_CHUNK))

    def _ground_all(self, claims: list[tuple[list[str], str | None, list[str]]]) -> bool:
        """True when Z3 rewrites every claim (actions, within, cover) — each action inside
        `within` (when given) is in some cover pattern — to true. Claims go to Z3 as SMT-LIB
        text in chunks: one parse and rewrite per chunk is far cheaper than one per claim, and
        bounded chunks keep Z3's recursion shallow. A claim is a ground fact about strings
        alone, so one Z3 rewrote to true before in this process is not sent again, once
        remember_true_claims() was called (unless every obligation is being recorded)."""
        remembered = self._remembered()
        if remembered is not None:
            claims = [claim for claim in claims if _claim_key(claim) not in remembered]
        chunk, size = [], 0
        for claim in claims:
            actions, within, cover = claim
            if len(cover) > COVER_CHUNK:
                # "inside within => in one of the covers" holds iff it holds for some part of
                # the covers; parts keep each rewrite small (one action with ~2,000 glob covers
                # in one rewrite made Z3 abort).
                for action in actions:
                    parts = [cover[at:at + COVER_CHUNK] for at in range(0, len(cover), COVER_CHUNK)]
                    if not any(self._ground_chunk([([action], within, part)]) for part in parts):
                        return False
                self._rewritten_true([claim])
                continue
            chunk.append(claim)
            size += len(claim[0]) + len(claim[2]) + 1
            if size >= FACT_CHUNK:
                if not self._ground_chunk(chunk):
                    return False
                self._rewritten_true(chunk)
                chunk, size = [], 0
        if not self._ground_chunk(chunk):
            return False
        self._rewritten_true(chunk)
        return True

    def _remembered(self) -> set[tuple] | None:
        """The process's true claims, when kept and this Checker does not record every
        obligation (a recorded run exports them all)."""
        return None if self.record else _TRUE_CLAIMS

    def _rewritten_true(self, claims) -> None:
        remembered = self._remembered()
        if remembered is None:
            return
        if len(remembered) + len(claims) > TRUE_CLAIMS_LIMIT:
            remembered.clear()
        remembered.update(_claim_key(claim) for claim in claims)

    def _ground_chunk(self, claims) -> bool:
        patterns = sorted({t for _, within, cover in claims for t in cover + [within]
                           if t and _shape(t)[0] == "glob"})
        names = {text: f"r{number}" for number, text in enumerate(patterns)}

        def member(word: str, text: str) -> str:
            return _membership_fact(word, text, names)

        facts = []
        for actions, within, cover in claims:
            for action in actions:
                word = _smt_string(action)
                covered = " ".join(member(word, t) for t in cover)
                covered = f"(or {covered} false)" if cover else "false"
                facts.append(f"(=> {member(word, within)} {covered})" if within else covered)
        if not facts:
            return True
        self.queries += 1
        claim = f"(and {' '.join(facts)} true)"
        definitions = self._define(patterns)
        try:
            proven = z3.is_true(z3.simplify(self._parse(definitions + f"(assert {claim})")[0]))
        except z3.Z3Exception:
            return False  # each action is then redone alone, and the solver has the last word
        if proven and self.record:
            self.obligations.append((f"statement{self._statement}-ground",
                                     f"{definitions}(assert (not {claim}))"))
        return proven

    def _find(self, inside: list[str], outside: list[str], literal: str | None = None):
        """Search for a string in every pattern of inside (whose first element is the string
        literal itself, when literal is given) and in none of outside; None when Z3 proves
        there is none, else ("found", witness) or ("unknown", why)."""
        if literal is not None:
            return self._find_union([(inside[1:], outside)], literal)
        return self._find_union([(inside, outside)])

    def _find_union(self, queries: list[tuple[list[str], list[str]]], literal: str | None = None):
        """Search for a string that satisfies one of the queries: in every pattern of its
        inside (and equal to literal, if given) and in none of its outside."""
        self.queries += 1
        patterns = sorted({t for inside, outside in queries for t in inside + outside})
        names = {text: f"r{number}" for number, text in enumerate(patterns)}
        languages = []
        for inside, outside in queries:
            # One membership in an intersection with a complement: Z3 decides the emptiness
            # of one regex much faster than a conjunction of memberships (2 ms vs 74 ms).
            parts = [names[t] for t in inside]
            if literal is not None:
                parts.insert(0, f"(str.to_re {_smt_string(literal)})")
            if outside:
                union = names[outside[0]] if len(outside) == 1 else \
                    f"(re.union {' '.join(names[t] for t in outside)})"
                parts.append(f"(re.comp {union})")
            languages.append(parts[0] if len(parts) == 1 else f"(re.inter {' '.join(parts)})")
        language = languages[0] if len(languages) == 1 else f"(re.union {' '.join(languages)})"
        definitions = self._define(patterns)
        assertion = f"(assert (str.in_re action {language}))"
        solver = self._solver
        solver.push()
        try:
            solver.add(self._parse(definitions + assertion))
            verdict = solver.check()
            if verdict == z3.unsat:
                if self.record:
                    self.obligations.append((
                        f"statement{self._statement}-query",
                        f"{definitions}(declare-fun action () String){assertion}",
                    ))
                return None
            if verdict == z3.sat:
                return ("found", self._readable_witness())
            return ("unknown", f"solver gave no answer ({solver.reason_unknown()})")
        except z3.Z3Exception as error:
            return ("unknown", f"solver error ({error})")
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

    def _define(self, patterns: list[str]) -> str:
        """SMT-LIB definitions r0, r1, ... of the patterns' regular languages, in order."""
        return "".join(f"(define-fun r{number} () RegLan {self._regex(text)})"
                       for number, text in enumerate(patterns))

    def _regex(self, text: str) -> str:
        """A pattern as an SMT-LIB regular expression over lower-cased strings."""
        key = text.lower()
        if key not in self._regex_cache:
            parts = []
            for token in parse(text).tokens:
                if token == "*":
                    parts.append("(re.* re.allchar)")
                elif token == "?":
                    parts.append("re.allchar")
                else:
                    parts.append(f"(str.to_re {_smt_string(token.lower())})")
            self._regex_cache[key] = parts[0] if len(parts) == 1 else f"(re.++ {' '.join(parts)})"
        return self._regex_cache[key]

    def _parse(self, text: str):
        return z3.parse_smt2_string(text, decls={"action": self._action})

    def _used_with_prefix(self, prefix: str) -> list[str]:
        """Used catalog actions (lower case) that start with prefix."""
        return [action for action in self._catalog_with_prefix(prefix)
                if action not in self._unused_set
                and action.split(":", 1)[0] not in self._dead_services]

    @staticmethod
    def _with_prefix(sorted_words: list[str], prefix: str) -> list[str]:
        """The run of sorted words that start with prefix (no end marker: any character may
        follow the prefix)."""
        start = end = bisect.bisect_left(sorted_words, prefix)
        while end < len(sorted_words) and sorted_words[end].startswith(prefix):
            end += 1
        return sorted_words[start:end]


_ABSENT = object()


def same_json(a: object, b: object) -> bool:
    """Equality of JSON values by type and value: Python's == has False == 0, True == 1 and
    1 == 1.0, which are different policies to IAM. Numbers of the same type compare by value
    (a reader that keeps their source text makes them compare by text)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _membership_fact(word: str, text: str, regex_names: dict[str, str]) -> str:
    """SMT-LIB for "the string literal word is matched by the pattern text" (see _shape)."""
    shape, literal = _shape(text)
    if shape == "equal":
        return f"(= {word} {_smt_string(literal)})"
    if shape == "prefix":
        return f"(str.prefixof {_smt_string(literal)} {word})"
    return f"(str.in_re {word} {regex_names[text]})"


@functools.lru_cache(maxsize=100_000)
def _shape(text: str) -> tuple[str, str]:
    """How a ground membership in the pattern is written: ("equal", w) for a pattern without
    wildcards (its language is {w}), ("prefix", w) for w followed by one final `*` (its
    language is the strings with prefix w), ("glob", "") for any other (a regex)."""
    tokens = parse(text).tokens
    if not any(token in ("*", "?") for token in tokens):
        return "equal", text.lower()
    if tokens[-1] == "*" and not any(token in ("*", "?") for token in tokens[:-1]):
        return "prefix", "".join(tokens[:-1]).lower()
    return "glob", ""


def _decode(z3_string: str) -> str:
    """Z3 prints non-printable characters as \\u{hex}."""
    return re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda m: chr(int(m.group(1), 16)), z3_string)


def _report(found, kind: str, message: str, pattern: str | None, rule: str | None):
    """Turn a query result into at most one (kind, message, witness, pattern, rule) finding."""
    if found is None:
        return
    status, detail = found
    if status == "found":
        yield kind, message, detail, pattern, rule
    else:
        yield "unknown", f"{message}? {detail}", None, pattern, rule


@dataclass
class _Obligation:
    """One proof obligation of a statement: its cheap form (ground claims and solver queries
    that are proven together with the statement's others; queries None when it has no cheap
    form) and the precise check that finds a witness when the cheap form fails."""

    kind: str
    message: str
    pattern: str | None
    claims: list
    queries: list | None
    precise: Callable[[], tuple | None]
    name_from_witness: list[str] | None = None
    rule: str | None = None


class _Index:
    """Patterns of one statement side, looked up by literal prefix."""

    def __init__(self, texts: list[str]):
        self.lower = {text.lower() for text in texts}
        self.by_prefix: dict[str, list[str]] = {}
        for text in texts:
            self.by_prefix.setdefault(literal_prefix(parse(text)), []).append(text)
        # Only the prefix lengths that occur are probed, and of those only the lengths of
        # prefixes that can start the string: a prefix holding a ":" starts a string only if
        # the string has the same text up to its first ":" (an action's service), so each
        # service's lengths are kept apart; a prefix without ":" may start any string.
        self._any_lengths: set[int] = set()
        self._service_lengths: dict[str, set[int]] = {}
        for key in self.by_prefix:
            colon = key.find(":")
            if colon < 0:
                self._any_lengths.add(len(key))
            else:
                self._service_lengths.setdefault(key[:colon + 1], set()).add(len(key))
        self._lengths_of: dict[str, list[int]] = {}  # service ("" for none) -> lengths, longest first

    def compatible(self, prefix: str) -> list[str]:
        """Patterns that can share a string with one whose literal prefix is prefix."""
        return [text for key, texts in self.by_prefix.items()
                if key.startswith(prefix) or prefix.startswith(key) for text in texts]

    def could_contain(self, string: str) -> list[str]:
        """Patterns whose literal prefix starts string, longest prefix first: only they can
        match string or contain a pattern whose literal prefix is string."""
        service = string[:string.find(":") + 1]  # "" when string has no ":"
        lengths = self._lengths_of.get(service)
        if lengths is None:
            lengths = self._lengths_of[service] = sorted(
                self._any_lengths | self._service_lengths.get(service, set()), reverse=True)
        return [
            text
            for cut in lengths if cut <= len(string)
            for text in self.by_prefix.get(string[:cut], ())
        ]


_NO_PATTERNS = _Index([])  # a cover that matches nothing (never changed)


def _entries(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _smt_string(value: str) -> str:
    """An SMT-LIB 2.6 string literal. Only printable ASCII is encoded (IAM's action alphabet is
    a subset, enforced where names enter): beyond it, Z3's and cvc5's string escapes and
    Python's strings disagree on length (\\u{...} stops at 2ffff), so anything else is refused
    rather than encoded; the backslash, which would start an escape, is written as \\u{5c}."""
    if _PLAIN.fullmatch(value):
        return f'"{value}"'
    if not all(" " <= c <= "~" for c in value):
        raise ValueError(f"the kernel encodes printable ASCII only, not {value!r}")
    return '"' + "".join('""' if c == '"' else "\\u{5c}" if c == "\\" else c for c in value) + '"'
