"""Parse IAM action patterns with the Lark grammar and match them (the refiner's one glob matcher)."""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from .errors import InputError

# Longer patterns are refused: no real action is near this long, and Z3 effort grows with length.
MAX_PATTERN_LENGTH = 256

GRAMMAR_FILE = "action_pattern.lark"
# Where a CamelCase word of an action name starts: an upper-case letter after a lower-case
# letter or digit, the last capital of an acronym before a lower-case letter (CORSConfig ->
# CORS, Config), and after a separator. The trie cuts candidate prefixes there.
WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[-_.])(?=.)")
STAR = "*"
ONE = "?"


@dataclass(frozen=True)
class Pattern:
    """A parsed action pattern: the text as written and its token sequence over the whole
    string "service:action" (literal runs, "*" and "?"). Letter case is kept as written."""

    text: str
    service: tuple[str, ...]
    action: tuple[str, ...]
    tokens: tuple[str, ...] = field(repr=False)

    @cached_property
    def has_wildcard(self) -> bool:
        return any(t in (STAR, ONE) for t in self.tokens)

    @cached_property
    def literal_prefix(self) -> str:
        """The lower-cased characters before the first wildcard: every match starts with them."""
        prefix = []
        for token in self.tokens:
            if token in (STAR, ONE):
                break
            prefix.append(token)
        return "".join(prefix).lower()


def _grammar_text() -> str:
    """grammar/ beside the package in a checkout; shipped as refiner.grammar in a wheel."""
    in_checkout = Path(__file__).resolve().parent.parent / "grammar" / GRAMMAR_FILE
    if in_checkout.is_file():
        return in_checkout.read_text(encoding="utf-8")
    from importlib import resources

    return resources.files("refiner.grammar").joinpath(GRAMMAR_FILE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _parser():
    """The LALR parser (Lark is imported only when a pattern needs it: start-up). cache=True:
    Lark keeps the built parser in a file keyed by the grammar."""
    from lark import Lark, Transformer

    class ToPattern(Transformer):
        """Turns a parse tree into token tuples, one method per grammar rule."""

        def part(self, children):
            return tuple(str(child) for child in children)

        def service(self, children):
            return children[0]

        def action(self, children):
            return children[0]

        def any_action(self, children):
            return ("*",), ()

        def start(self, children):
            if len(children) == 1:
                return children[0]
            return children[0], children[1]

    return Lark(_grammar_text(), parser="lalr", transformer=ToPattern(), cache=True)


TERMINALS = ("WORD", "STAR", "ONE", "ANY_ACTION")


@lru_cache(maxsize=1)
def _terminal_regexps() -> dict[str, str]:
    """The grammar's terminals as regular expressions, as Lark compiles them. They are kept in
    a file keyed by the grammar's text, so a process whose patterns all read by terminals
    never imports Lark (start-up); a missing or unreadable file is rebuilt from Lark."""
    text = _grammar_text()
    digest = f"{zlib.crc32(text.encode()):08x}{len(text):x}"
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    cached = Path(root) / "refiner" / f"grammar-terminals-{digest}.json"
    try:
        found = json.loads(cached.read_text(encoding="utf-8"))
        if isinstance(found, dict) and all(isinstance(found.get(k), str) for k in TERMINALS):
            return {name: found[name] for name in TERMINALS}
    except (OSError, ValueError):
        pass
    parser = _parser()
    found = {name: parser.get_terminal(name).pattern.to_regexp() for name in TERMINALS}
    try:  # best effort: a cache that cannot be written only costs the next run its speed
        cached.parent.mkdir(parents=True, exist_ok=True)
        temp = cached.with_name(f".{cached.name}.{os.getpid()}")
        temp.write_text(json.dumps(found), encoding="utf-8")
        os.replace(temp, cached)
    except OSError:
        pass
    return found


@lru_cache(maxsize=1)
def _action_name() -> re.Pattern:
    """service:Action in IAM's action alphabet: the grammar's WORD on both sides."""
    word = _terminal_regexps()["WORD"]
    return re.compile(f"(?:{word}):(?:{word})")


@lru_cache(maxsize=1)
def action_names_line() -> re.Pattern:
    """Lines of action names (without the service) in IAM's alphabet: a whole service's
    names checked in one match (catalog loading)."""
    word = _terminal_regexps()["WORD"]
    return re.compile(f"(?:{word})(?:\n(?:{word}))*")


def is_action_name(full_name: object) -> bool:
    """Whether full_name is a well-formed action name: "service:Action" without wildcards, in
    the grammar's alphabet (ASCII letters, digits, "_", ".", "-"). Catalog and finding names
    are held to it where they enter, so the kernel only ever encodes this alphabet."""
    return isinstance(full_name, str) and _action_name().fullmatch(full_name) is not None


def parse_by_grammar(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The Lark parse: (service tokens, action tokens). The reference reading of a pattern."""
    return _parser().parse(text)


@lru_cache(maxsize=1)
def _terminals() -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """The grammar's language as regular expressions built from its own terminals (the
    language is regular): a whole pattern, one part's tokens, and "*" alone."""
    terminals = _terminal_regexps()
    word, star, one = terminals["WORD"], terminals["STAR"], terminals["ONE"]
    token = f"{word}|{star}|{one}"
    any_action = terminals["ANY_ACTION"]
    whole = re.compile(f"(?:{token})+:(?:{token})+")
    return whole, re.compile(token), re.compile(any_action)


def _tokens_by_terminals(text: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The grammar's reading of text by its terminals alone, about 20x faster than the LALR
    parse (cold parsing was most of a refinement of a large policy). None when the text is
    not plainly in the language; the parser then decides and words the error. A property
    test holds both readings equal."""
    whole, token, any_action = _terminals()
    if any_action.fullmatch(text):
        return ("*",), ()
    if not whole.fullmatch(text):
        return None
    service, _, action = text.partition(":")
    return tuple(token.findall(service)), tuple(token.findall(action))


@lru_cache(maxsize=200_000)
def parse(text: str) -> Pattern:
    """Parse one action pattern; raise InputError with a one-line reason if it is not one."""
    if not isinstance(text, str):
        raise InputError(f"action pattern must be a string, got {type(text).__name__}")
    if len(text) > MAX_PATTERN_LENGTH:
        raise InputError(f"action pattern longer than {MAX_PATTERN_LENGTH} characters: {text[:40]!r}...")
    fast = _tokens_by_terminals(text)
    if fast is not None:
        service, action = fast
    else:
        from lark import UnexpectedInput

        try:
            service, action = parse_by_grammar(text)
        except UnexpectedInput:
            raise InputError(f"invalid action pattern {text!r}: expected '*' or "
                             "'service:action'") from None
    tokens = service + ((":",) + action if action else ())
    return Pattern(text=text, service=service, action=action, tokens=_merge_literals(tokens))


def _merge_literals(tokens: tuple[str, ...]) -> tuple[str, ...]:
    merged: list[str] = []
    for token in tokens:
        if merged and token not in (STAR, ONE) and merged[-1] not in (STAR, ONE):
            merged[-1] += token
        else:
            merged.append(token)
    return tuple(merged)


class Glob:
    """Matches a pattern against strings, case-insensitively.

    The pattern is split at its stars into fixed-length segments ("?" matches any one
    character); the first segment is anchored at the start, the last at the end, and each
    middle one is taken at its earliest occurrence, which is exact for star-separated globs
    and linear in the string, so adversarial patterns cannot make matching blow up."""

    def __init__(self, pattern: Pattern):
        atoms = _normalized_atoms(pattern.tokens)
        self.ends_with_star = bool(atoms) and atoms[-1] == STAR
        segments: list[str] = [""]
        for atom in atoms:
            if atom == STAR:
                segments.append("")
            else:
                segments[-1] += atom
        self.has_star = len(segments) > 1
        self._segments = [_Segment(segment) for segment in segments]

    def matches(self, string: str) -> bool:
        s = string.lower()
        first = self._segments[0]
        if not self.has_star:
            return len(s) == first.length and first.at(s, 0)
        last = self._segments[-1]
        end = len(s) - last.length
        if end < first.length or not first.at(s, 0) or not last.at(s, end):
            return False
        position = first.length
        for segment in self._segments[1:-1]:
            found = segment.find(s, position, end)
            if found < 0:
                return False
            position = found + segment.length
        return True

    def covers_prefix(self, prefix: str) -> bool:
        """Whether every string that starts with prefix matches (the glob `prefix*` is inside).

        With runs of wildcards normalized to "?...?*", a glob that does not end with a star
        cannot match both prefix+"x" and prefix+"y" for its last literal; one that does is
        closed under extension, so matching the prefix itself is enough."""
        return self.ends_with_star and self.matches(prefix)


class _Segment:
    """A star-free run of a glob: plain text, compared with string methods, or (with "?") a
    regular expression; compiling one for every segment made cold matching slow."""

    __slots__ = ("text", "length", "_regex")

    def __init__(self, text: str):
        self.text, self.length = text, len(text)
        self._regex = re.compile("".join("." if c == ONE else re.escape(c) for c in text),
                                 re.DOTALL) if ONE in text else None

    def at(self, s: str, position: int) -> bool:
        if self._regex is None:
            return s.startswith(self.text, position)
        return self._regex.match(s, position) is not None

    def find(self, s: str, start: int, end: int) -> int:
        """The earliest position in [start, end) where the segment lies wholly before end."""
        if self._regex is None:
            return s.find(self.text, start, end)
        found = self._regex.search(s, start, end)
        return -1 if found is None else found.start()


def _normalized_atoms(tokens: tuple[str, ...]) -> list[str]:
    """Characters and wildcards, each run of wildcards rewritten as its "?"s then one "*"
    (the same language: at least that many characters)."""
    atoms: list[str] = []
    run_ones, run_star = 0, False

    def flush():
        atoms.extend(ONE * run_ones)
        if run_star:
            atoms.append(STAR)

    for token in tokens:
        if token == STAR:
            run_star = True
        elif token == ONE:
            run_ones += 1
        else:
            flush()
            run_ones, run_star = 0, False
            atoms.extend(token.lower())
    flush()
    return atoms


@lru_cache(maxsize=200_000)
def glob(text: str) -> Glob:
    return Glob(parse(text))


def example(text: str, fill: str = "Example") -> str:
    """A string the pattern matches, made up (`ec2:*` gives `ec2:Example`, never `ec2:`):
    each `*` written as fill, each `?` as its first letter."""
    return text.replace("*", fill).replace("?", fill[0])


def intersects_prefix(pattern: Pattern, prefix: str) -> bool:
    """Whether some string starting with prefix matches: the prefix is matched exactly by the
    pattern's first k atoms for some k, and the remaining atoms can always be completed."""
    atoms = _normalized_atoms(pattern.tokens)
    return any(
        Glob(Pattern("", (), (), tuple(atoms[:cut]))).matches(prefix)
        for cut in range(len(atoms) + 1)
    )


def word_prefixes(full_name: str) -> list[str]:
    """The prefixes of "service:Action" that end at a word boundary: "", "service:", then one
    per word, ending with the whole name (GetBucketPolicy -> Get, GetBucket, GetBucketPolicy)."""
    service, _, action = full_name.partition(":")
    cuts = [0] + [m.start() for m in WORD_START.finditer(action)] + [len(action)]
    head = f"{service}:"
    return ["", head] + [head + action[:cut] for cut in sorted(set(cuts)) if cut > 0]
