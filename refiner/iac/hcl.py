"""The part of HCL (Terraform's language) that holds IAM policies, read with every position.

Blocks (`resource "aws_iam_policy" "p" { ... }`), attributes (`policy = ...`) and the literal
values of expressions (objects, tuples, strings without interpolation, numbers, booleans,
null) are read with their spans in the text, so a writer can edit them in place. Anything
else an expression may be (a reference such as `var.actions`, a function call, an
interpolated string `"${...}"`, a for expression) is kept as its source text, unresolved:
refiner never evaluates Terraform."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InputError
from ..jsontext import JsonNumber
from .edit import line_number

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_HEREDOC = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_-]*)[ \t]*\r?\n")
_PUNCTUATION = ("...", "==", "!=", "<=", ">=", "=>", "&&", "||")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
OPENING, CLOSING = "([{", ")]}"


@dataclass(frozen=True)
class Token:
    kind: str  # ident, number, string, heredoc, newline, comment, punct
    text: str
    start: int
    end: int
    value: str | None = None  # a string's or heredoc's literal value (None: interpolated)
    content: tuple[int, int] | None = None  # a heredoc's content span


class HclError(InputError):
    pass


def tokenize(text: str, name: str = "HCL") -> list[Token]:
    tokens: list[Token] = []
    at, size = 0, len(text)
    while at < size:
        char = text[at]
        if char in " \t\ufeff":
            at += 1
        elif char == "\n" or text.startswith("\r\n", at):
            end = at + (1 if char == "\n" else 2)
            tokens.append(Token("newline", text[at:end], at, end))
            at = end
        elif char == "#" or text.startswith("//", at):
            end = _end_of_line(text, at)
            tokens.append(Token("comment", text[at:end], at, end))
            at = end
        elif text.startswith("/*", at):
            end = text.find("*/", at + 2)
            if end < 0:
                raise HclError(f"{name}: line {line_number(text, at)}: a comment is not closed")
            tokens.append(Token("comment", text[at:end + 2], at, end + 2))
            at = end + 2
        elif char == '"':
            end, value = _string(text, at, name)
            tokens.append(Token("string", text[at:end], at, end, value))
            at = end
        elif (heredoc := _HEREDOC.match(text, at)) is not None:
            tokens.append(_heredoc(text, at, heredoc, name))
            at = tokens[-1].end
        elif (ident := _IDENT.match(text, at)) is not None:
            tokens.append(Token("ident", ident.group(), at, ident.end()))
            at = ident.end()
        elif (number := _NUMBER.match(text, at)) is not None:
            tokens.append(Token("number", number.group(), at, number.end()))
            at = number.end()
        else:
            length = next((len(p) for p in _PUNCTUATION if text.startswith(p, at)), 1)
            tokens.append(Token("punct", text[at:at + length], at, at + length))
            at += length
    return tokens


def _end_of_line(text: str, at: int) -> int:
    end = text.find("\n", at)
    end = len(text) if end < 0 else end
    return end - 1 if text[end - 1:end] == "\r" else end


def _string(text: str, at: int, name: str) -> tuple[int, str | None]:
    """The end of the quoted template starting at `at`, and its value (None when it holds an
    interpolation or a directive)."""
    parts: list[str] = []
    interpolated = False
    position = at + 1
    while True:
        if position >= len(text) or text[position] == "\n":
            raise HclError(f"{name}: line {line_number(text, at)}: a string is not closed")
        char = text[position]
        if char == '"':
            return position + 1, None if interpolated else "".join(parts)
        if char == "\\":
            code = text[position + 1:position + 2]
            if code in _ESCAPES:
                parts.append(_ESCAPES[code])
                position += 2
            elif code in ("u", "U"):
                digits = 4 if code == "u" else 8
                hexadecimal = text[position + 2:position + 2 + digits]
                if not re.fullmatch(r"[0-9A-Fa-f]+", hexadecimal) or len(hexadecimal) != digits:
                    raise HclError(f"{name}: line {line_number(text, at)}: a bad \\{code} escape")
                parts.append(chr(int(hexadecimal, 16)))
                position += 2 + digits
            else:
                raise HclError(f"{name}: line {line_number(text, at)}: an unknown escape \\{code}")
        elif text.startswith(("$${", "%%{"), position):
            parts.append(text[position + 1:position + 3])
            position += 3
        elif text.startswith(("${", "%{"), position):
            interpolated = True
            position = _skip_braces(text, position + 2, name)
        else:
            parts.append(char)
            position += 1


def _skip_braces(text: str, at: int, name: str) -> int:
    """The position after the `}` that closes an interpolation whose body starts at `at`."""
    depth = 1
    while at < len(text):
        char = text[at]
        if char == '"':
            at, _ = _string(text, at, name)
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return at + 1
        at += 1
    raise HclError(f"{name}: an interpolation is not closed")


def _heredoc(text: str, at: int, opener: re.Match, name: str) -> Token:
    marker = opener.group(2)
    content_start = position = opener.end()
    while position < len(text):
        end = text.find("\n", position)
        end = len(text) if end < 0 else end
        if text[position:end].strip() == marker:
            closing = position + text[position:end].index(marker) + len(marker)
            content = text[content_start:position]
            return Token("heredoc", text[at:closing], at, closing, _template_value(content),
                         (content_start, position))
        position = end + 1
    raise HclError(f"{name}: line {line_number(text, at)}: heredoc {marker} is not closed")


def _template_value(content: str) -> str | None:
    """A heredoc's literal text, or None when it interpolates (escapes $${ and %%{ unescaped)."""
    if re.search(r"(?<![$%])[$%]\{", content.replace("$${", "").replace("%%{", "")):
        return None
    return content.replace("$${", "${").replace("%%{", "%{")


# --- structure ------------------------------------------------------------------------------

@dataclass
class Value:
    """A literal value with its span; kind object, tuple, string, number, bool, null,
    heredoc or unresolved (then `value` is its source text)."""

    kind: str
    start: int
    end: int
    value: object = None
    members: list[tuple[str, Token, Value]] = field(default_factory=list)  # objects
    items: list[Value] = field(default_factory=list)  # tuples
    commas: list[int | None] = field(default_factory=list)  # after each member/item
    token: Token | None = None  # the string or heredoc token

    def get(self, key: str) -> Value | None:
        return next((value for name, _, value in self.members if name == key), None)


@dataclass
class Attribute:
    name: str
    start: int
    value: Value
    end: int


@dataclass
class Block:
    type: str
    labels: list[str]
    start: int
    end: int
    attributes: list[Attribute] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    def attribute(self, name: str) -> Attribute | None:
        return next((a for a in self.attributes if a.name == name), None)


def parse(text: str, name: str = "HCL") -> Block:
    """The file as a block of type "" holding its top-level attributes and blocks."""
    reader = _Reader(tokenize(text, name), text, name)
    root = Block("", [], 0, len(text))
    reader.body(root, closing=False)
    return root


class _Reader:
    def __init__(self, tokens: list[Token], text: str, name: str):
        self.tokens = [t for t in tokens if t.kind != "comment"]
        self.text, self.name = text, name
        self.at = 0

    def error(self, message: str, token: Token | None = None) -> HclError:
        where = token.start if token is not None else len(self.text)
        return HclError(f"{self.name}: line {line_number(self.text, where)}: {message}")

    def peek(self) -> Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def skip_newlines(self) -> None:
        while self.peek() is not None and self.peek().kind == "newline":
            self.at += 1

    def body(self, block: Block, closing: bool) -> None:
        while True:
            self.skip_newlines()
            token = self.peek()
            if token is None:
                if closing:
                    raise self.error("a block is not closed")
                return
            if token.text == "}" and closing:
                block.end = token.end
                self.at += 1
                return
            if token.kind != "ident":
                raise self.error(f"expected an attribute or a block, found {token.text!r}", token)
            self.at += 1
            following = self.peek()
            if following is not None and following.text == "=":
                self.at += 1
                end = self.extent(stop=("}",), newline=True)
                value = self.value(self.at, end)
                block.attributes.append(Attribute(token.text, token.start, value, value.end))
                self.at = end
            else:
                labels = []
                while self.peek() is not None and self.peek().kind in ("string", "ident"):
                    label = self.peek()
                    labels.append(label.value if label.kind == "string" else label.text)
                    self.at += 1
                opening = self.peek()
                if opening is None or opening.text != "{":
                    raise self.error(f"expected {{ after {token.text}", opening)
                self.at += 1
                child = Block(token.text, labels, token.start, opening.end)
                self.body(child, closing=True)
                block.blocks.append(child)

    def extent(self, stop: tuple[str, ...], newline: bool, start: int | None = None) -> int:
        """The index of the first token, from start, that ends an expression: a stop text or
        (when newline) a newline at bracket depth 0, or an unmatched closing bracket."""
        at = self.at if start is None else start
        depth = 0
        while at < len(self.tokens):
            token = self.tokens[at]
            if depth == 0 and (token.text in stop or (newline and token.kind == "newline")):
                return at
            if token.kind == "punct" and token.text in OPENING:
                depth += 1
            elif token.kind == "punct" and token.text in CLOSING:
                if depth == 0:
                    return at
                depth -= 1
            at += 1
        return at

    def value(self, start: int, end: int) -> Value:
        """The value of tokens[start:end]: a literal when they are exactly one, else unresolved."""
        significant = [i for i in range(start, end) if self.tokens[i].kind != "newline"]
        if not significant:
            raise self.error("an expression is missing", self.tokens[start] if start <
                             len(self.tokens) else None)
        first, last = significant[0], significant[-1]
        literal = self.literal(first, last + 1)
        if literal is not None:
            return literal
        source_start, source_end = self.tokens[first].start, self.tokens[last].end
        return Value("unresolved", source_start, source_end, self.text[source_start:source_end])

    def literal(self, first: int, end: int) -> Value | None:
        token = self.tokens[first]
        if end - first == 1:
            if token.kind == "string":
                kind = "string" if token.value is not None else "unresolved"
                return Value(kind, token.start, token.end,
                             token.value if token.value is not None else token.text, token=token)
            if token.kind == "heredoc":
                return Value("heredoc", token.start, token.end, token.value, token=token)
            if token.kind == "number":
                return Value("number", token.start, token.end, JsonNumber(token.text))
            if token.kind == "ident" and token.text in ("true", "false"):
                return Value("bool", token.start, token.end, token.text == "true")
            if token.kind == "ident" and token.text == "null":
                return Value("null", token.start, token.end, None)
            return None
        if end - first == 2 and token.text == "-" and self.tokens[first + 1].kind == "number":
            number = self.tokens[first + 1]
            return Value("number", token.start, number.end, JsonNumber("-" + number.text))
        if token.text in ("{", "[") and self._closes(first, end - 1):
            return self.object(first, end - 1) if token.text == "{" else self.tuple(first, end - 1)
        if token.kind == "ident" and self.tokens[first + 1].text == "(" and end - first > 3 \
                and self._closes(first + 1, end - 1):
            # A function call with one argument (jsonencode({...})): the argument is read.
            if self.extent(stop=(",",), newline=False, start=first + 2) != end - 1:
                return None
            source = self.text[token.start:self.tokens[end - 1].end]
            return Value("call", token.start, self.tokens[end - 1].end, source,
                         items=[self.value(first + 2, end - 1)], token=token)
        return None

    def _closes(self, opening: int, closing: int) -> bool:
        """Whether the bracket at closing is the one that closes the bracket at opening."""
        return self.extent(stop=(), newline=False, start=opening + 1) == closing

    def object(self, opening: int, closing: int) -> Value | None:
        value = Value("object", self.tokens[opening].start, self.tokens[closing].end)
        at = opening + 1
        while True:
            while at < closing and self.tokens[at].kind == "newline":
                at += 1
            if at >= closing:
                return value
            key = self.tokens[at]
            if key.kind == "ident":
                name = key.text
            elif key.kind == "string" and key.value is not None:
                name = key.value
            else:
                return None  # a computed key: the object cannot be read literally
            if at + 1 >= closing or self.tokens[at + 1].text not in ("=", ":"):
                return None
            end = self.extent(stop=(",",), newline=True, start=at + 2)
            if end > closing:
                return None
            if any(name == existing for existing, _, _ in value.members):
                raise self.error(f"the key {name!r} is repeated in one object", key)
            value.members.append((name, key, self.value(at + 2, end)))
            comma = None
            if end < closing and self.tokens[end].text == ",":
                comma, end = self.tokens[end].end, end + 1
            value.commas.append(comma)
            at = end

    def tuple(self, opening: int, closing: int) -> Value | None:
        value = Value("tuple", self.tokens[opening].start, self.tokens[closing].end)
        at = opening + 1
        while True:
            while at < closing and self.tokens[at].kind == "newline":
                at += 1
            if at >= closing:
                return value
            if self.tokens[at].kind == "ident" and self.tokens[at].text == "for":
                return None  # a for expression
            end = self.extent(stop=(",",), newline=False, start=at)
            if end > closing:
                return None
            value.items.append(self.value(at, end))
            comma = None
            if end < closing and self.tokens[end].text == ",":
                comma, end = self.tokens[end].end, end + 1
            value.commas.append(comma)
            at = end


def to_json(value: Value) -> object:
    """The JSON value of a literal; an unresolved expression becomes {"terraform": source},
    which no policy value can be confused with."""
    if value.kind == "object":
        return {name: to_json(member) for name, _, member in value.members}
    if value.kind == "tuple":
        return [to_json(item) for item in value.items]
    if value.kind in ("unresolved", "call") or (value.kind == "heredoc" and value.value is None):
        return {"terraform": value.value if value.kind != "heredoc" else value.token.text}
    return value.value


def unresolved_in(value: Value) -> Value | None:
    """The first unresolved part of a value, if any."""
    if value.kind in ("unresolved", "call") or (value.kind == "heredoc" and value.value is None):
        return value
    for child in [member for _, _, member in value.members] + value.items:
        found = unresolved_in(child)
        if found is not None:
            return found
    return None
