"""The part of HCL (Terraform's language) that holds IAM policies, read with every position.

The text is parsed by tree-sitter with the maintained HCL grammar (tree-sitter-hcl); this
module turns its syntax tree into blocks (`resource "aws_iam_policy" "p" { ... }`),
attributes (`policy = ...`) and the literal values of expressions (objects, tuples, strings
without interpolation, numbers, booleans, null, heredocs, one-argument calls such as
`jsonencode({...})`) with their spans in the text, so a writer can edit them in place.
Anything else an expression may be (a reference such as `var.actions`, an interpolated string
`"${...}"`, a for expression) is kept as its source text, unresolved: refiner never evaluates
Terraform. A text the grammar does not parse, or that breaks a rule of HCL the grammar does
not hold (newlines that end lines, a quoted string over lines, a repeated key), is refused.
Where the grammar is stricter than HCL it errs on the side of refusing: `1e5` (an exponent
without a fraction) does not parse, and `$$${x}` reads as an interpolation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import accumulate

import tree_sitter
import tree_sitter_hcl

from ..errors import InputError
from ..jsontext import JsonNumber
from .edit import line_number

_LANGUAGE = tree_sitter.Language(tree_sitter_hcl.language())
_ESCAPE = re.compile(r'\\(?:[nrt"\\]|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.?)|\$\$\{|%%\{', re.S)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
_TEMPLATE_PARTS = ("template_interpolation", "template_directive")
_NESTED = ("string_lit", "quoted_template", "heredoc_template") + _TEMPLATE_PARTS
OPENING, CLOSING = ("(", "[", "{"), (")", "]", "}")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")  # HCL's (the grammar's: hex too)
_LINE_END = re.compile(r"[ \t]*\r?\n")
_SEQUENCE = re.compile(r"(?<![$%])[$%]\{")  # once $${ and %%{ are taken out


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, heredoc
    text: str
    start: int
    end: int
    value: str | None = None  # a string's or heredoc's literal value (None: interpolated)
    content: tuple[int, int] | None = None  # a heredoc's content span


class HclError(InputError):
    pass


@dataclass
class Value:
    """A literal value with its span; kind object, tuple, string, number, bool, null,
    heredoc, call or unresolved (then `value` is its source text)."""

    kind: str
    start: int
    end: int
    value: object = None
    members: list[tuple[str, Token, Value]] = field(default_factory=list)  # objects
    items: list[Value] = field(default_factory=list)  # tuples, a call's argument
    commas: list[int | None] = field(default_factory=list)  # after each member/item
    token: Token | None = None  # the string or heredoc token, a call's name

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
    reader = _Reader(text, name)
    if (carriage := re.search(r"\r(?!\n)", text)) is not None:  # a blank to the grammar
        raise HclError(f"{name}: line {line_number(text, carriage.start())}: a carriage "
                       "return that does not end a line")
    tree = tree_sitter.Parser(_LANGUAGE).parse(reader.data)
    if tree.root_node.has_error:
        raise reader.error("not HCL that parses (a syntax error)", _first_error(tree.root_node))
    root = Block("", [], 0, len(text))
    body = next((c for c in tree.root_node.children if c.type == "body"), None)
    if body is not None:
        reader.body(root, body)
    return root


def _first_error(node: tree_sitter.Node) -> tree_sitter.Node:
    """The innermost ERROR or MISSING node on the path of first errors."""
    found = node
    while node is not None:
        if node.is_error or node.is_missing:
            found = node
        node = next((c for c in node.children if c.has_error or c.is_missing), None)
    return found


def _parts(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    return [child for child in node.children if child.type != "comment"]


class _Reader:
    def __init__(self, text: str, name: str):
        self.text, self.name = text, name
        self.data = text.encode("utf-8", "surrogatepass")
        # tree-sitter counts bytes; the text is indexed by characters.
        self.chars: list[int] | None = None
        if len(self.data) != len(text):
            self.chars = [0] * (len(self.data) + 1)
            ends = accumulate(len(c.encode("utf-8", "surrogatepass")) for c in text)
            for number, end in enumerate(ends, 1):
                self.chars[end] = number

    def at(self, byte: int) -> int:
        return byte if self.chars is None else self.chars[byte]

    def span(self, node: tree_sitter.Node) -> tuple[int, int]:
        return self.at(node.start_byte), self.at(node.end_byte)

    def source(self, node: tree_sitter.Node) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def error(self, message: str, node: tree_sitter.Node | None = None) -> HclError:
        where = self.at(node.start_byte) if node is not None else len(self.text)
        return HclError(f"{self.name}: line {line_number(self.text, where)}: {message}")

    def newline(self, start: int, end: int) -> bool:
        return b"\n" in self.data[start:end]

    def body(self, block: Block, body: tree_sitter.Node) -> None:
        previous = None
        for child in _parts(body):
            if previous is not None and not self.newline(previous.end_byte, child.start_byte):
                raise self.error("an argument or a block must start a new line", child)
            previous = child
            parts = _parts(child)
            if child.type == "attribute":
                self.one_logical_line(child)
                value = self.value(parts[2])
                block.attributes.append(Attribute(self.source(parts[0]), self.at(
                    child.start_byte), value, value.end))
            elif child.type == "block":
                inner = next((part for part in parts if part.type == "body"), None)
                self.block_lines(parts, _parts(inner) if inner is not None else [])
                labels = [self.label(label) for label in parts[1:]
                          if label.type in ("string_lit", "identifier")]
                start, end = self.span(child)
                nested = Block(self.source(parts[0]), labels, start, end)
                if inner is not None:
                    self.body(nested, inner)
                block.blocks.append(nested)
            else:
                raise self.error(f"expected an attribute or a block, found {child.type}", child)

    # The grammar takes newlines for blanks; HCL ends a line with them, which these hold.

    def block_lines(self, parts: list[tree_sitter.Node], items: list[tree_sitter.Node]) -> None:
        """A block's type, labels and { on one line; then one argument and } on that line
        too, or a body on lines of its own and } on a line of its own."""
        opening = next(n for n, part in enumerate(parts) if part.type == "block_start")
        for before, after in zip(parts[:opening], parts[1:opening + 1], strict=True):
            if self.newline(before.end_byte, after.start_byte):
                raise self.error("a block's type, labels and { must be on one line", after)
        start, end = parts[opening].end_byte, parts[-1].start_byte
        if not self.newline(start, items[0].start_byte if items else end):
            if len(items) > 1 or (items and (items[0].type != "attribute" or
                                             self.newline(items[0].end_byte, end))):
                raise self.error("a block on one line holds one argument and closes on that line", parts[0])
        elif items and not self.newline(items[-1].end_byte, end):
            raise self.error("a block's } must start its own line", parts[-1])

    def one_logical_line(self, node: tree_sitter.Node) -> None:
        """An attribute or an object's element on one line, but for what brackets, templates
        and heredocs hold."""
        if not self.newline(node.start_byte, node.end_byte):
            return
        previous, depth = node.start_byte, 0

        def walk(child: tree_sitter.Node) -> None:
            nonlocal previous, depth
            if depth == 0 and self.newline(previous, child.start_byte):
                raise self.error("a newline ends an expression outside brackets", child)
            if child.type == "object":
                for element in child.children:
                    if element.type == "object_elem":
                        self.one_logical_line(element)
            elif child.type in _NESTED:
                if child.type in ("string_lit", "quoted_template"):
                    self.string(child)  # which must close on its line
                depth += 1
                for grandchild in child.children:
                    walk(grandchild)
                depth -= 1
            elif child.child_count:
                for grandchild in child.children:
                    walk(grandchild)
            else:
                depth += (child.type in OPENING) - (child.type in CLOSING)
            previous = child.end_byte

        for child in node.children:
            walk(child)

    def value(self, expression: tree_sitter.Node) -> Value:
        """An expression's value: a literal when it is one, else unresolved."""
        parts = _parts(expression)
        literal = self.literal(parts[0]) if len(parts) == 1 else None
        if literal is not None:
            return literal
        start, end = self.at(parts[0].start_byte), self.at(parts[-1].end_byte)
        return Value("unresolved", start, end, self.text[start:end])

    def literal(self, node: tree_sitter.Node) -> Value | None:
        start, end = self.span(node)
        if node.type == "literal_value":
            literal = node.children[0]
            if literal.type == "string_lit":
                string = self.string(literal)
                token = Token("string", self.text[start:end], start, end, string)
                return Value("string", start, end, string, token=token)
            if literal.type == "numeric_lit":
                number = self.source(literal)
                return Value("number", start, end, JsonNumber(number)) if \
                    _NUMBER.fullmatch(number) else None
            if literal.type == "bool_lit":
                return Value("bool", start, end, self.source(literal) == "true")
            if literal.type == "null_lit":
                return Value("null", start, end, None)
            return None
        if node.type == "template_expr":
            template = node.children[0]
            if template.type == "heredoc_template":
                return self.heredoc(template)
            self.string(template)  # a quoted string must close on its line
            token = Token("string", self.text[start:end], start, end, None)
            return Value("unresolved", start, end, self.text[start:end], token=token)
        if node.type == "collection_value":
            collection = node.children[0]
            return self.object(collection) if collection.type == "object" else \
                self.tuple(collection)
        if node.type == "operation":
            parts = _parts(node.children[0])
            if node.children[0].type == "unary_operation" and parts[0].type == "-" and \
                    parts[1].type == "literal_value" and parts[1].children[0].type == \
                    "numeric_lit" and _NUMBER.fullmatch(self.source(parts[1])):
                return Value("number", start, end, JsonNumber("-" + self.source(parts[1])))
            return None
        if node.type == "function_call":
            # A function call with one argument (jsonencode({...})): the argument is read.
            parts = _parts(node)
            if len(parts) != 4 or parts[2].type != "function_arguments":
                return None
            arguments = _parts(parts[2])
            if len(arguments) == 2 and arguments[1].type == "ellipsis":  # f(list...)
                first, last = self.at(arguments[0].start_byte), self.at(arguments[1].end_byte)
                argument = Value("unresolved", first, last, self.text[first:last])
            elif len(arguments) == 1:
                argument = self.value(arguments[0])
            else:
                return None
            name = Token("ident", self.source(parts[0]), *self.span(parts[0]))
            return Value("call", start, end, self.text[start:end], items=[argument], token=name)
        return None

    def string(self, node: tree_sitter.Node) -> str | None:
        """A quoted string's value (None when it interpolates). Its raw text is read between
        the quotes: the grammar leaves the blanks at the ends of a literal part out of it."""
        start, end = self.span(node)
        literal, interpolated = start + 1, False
        for part in _parts(node):
            if part.type in _TEMPLATE_PARTS:
                self.one_line(node, literal, self.at(part.start_byte))
                literal, interpolated = self.at(part.end_byte), True
        self.one_line(node, literal, end - 1)
        return None if interpolated else _ESCAPE.sub(self.escape(node), self.text[start + 1:end - 1])

    def label(self, node: tree_sitter.Node) -> str:
        if node.type == "identifier":
            return self.source(node)
        # The grammar reads a label's "${" as text; HCL does not allow it there.
        if _SEQUENCE.search(self.source(node).replace("$${", "").replace("%%{", "")):
            raise self.error("a block label cannot hold a template sequence", node)
        return self.string(node)

    def one_line(self, node: tree_sitter.Node, start: int, end: int) -> None:
        if "\n" in self.text[start:end]:
            raise self.error("a string is not closed on its line", node)

    def escape(self, node: tree_sitter.Node):
        def unescaped(match: re.Match) -> str:
            escape = match.group()
            if escape in ("$${", "%%{"):
                return escape[1:]
            if escape[1:2] in _ESCAPES:
                return _ESCAPES[escape[1:2]]
            if escape[1:2] in ("u", "U") and int(escape[2:], 16) <= 0x10FFFF:
                return chr(int(escape[2:], 16))
            raise self.error(f"an unknown escape {escape}", node)
        return unescaped

    def heredoc(self, node: tree_sitter.Node) -> Value:
        parts = _parts(node)
        opener, closer = parts[1], parts[-1]
        start, end = self.span(node)
        line_end = _LINE_END.match(self.text, self.at(opener.end_byte))
        if line_end is None:
            raise self.error("a heredoc's marker must end its line", opener)
        content_start = line_end.end()
        content_end = self.text.rfind("\n", 0, self.at(closer.start_byte)) + 1
        content = self.text[content_start:content_end]
        literal = None if any(part.type in _TEMPLATE_PARTS for part in parts) else \
            content.replace("$${", "${").replace("%%{", "%{")
        token = Token("heredoc", self.text[start:end], start, end, literal,
                      (content_start, content_end))
        return Value("heredoc", start, end, literal, token=token)

    def object(self, node: tree_sitter.Node) -> Value | None:
        value = Value("object", *self.span(node))
        parts = _parts(node)
        previous = None
        for number, element in enumerate(parts):
            if element.type != "object_elem":
                continue
            if previous is not None and parts[number - 1].type != "," and \
                    not self.newline(previous.end_byte, element.start_byte):
                raise self.error("an object's element must start a new line", element)
            previous = element
            key, _, member = _parts(element)
            token = self.key(key)
            if token is None:
                return None  # a computed key: the object cannot be read literally
            name = token.value if token.kind == "string" else token.text
            if any(name == existing for existing, _, _ in value.members):
                raise self.error(f"the key {name!r} is repeated in one object", key)
            value.members.append((name, token, self.value(member)))
            comma = parts[number + 1]
            if comma.type == "," and self.newline(element.end_byte, comma.start_byte):
                raise self.error("a comma must end its element's line", comma)
            value.commas.append(self.at(comma.end_byte) if comma.type == "," else None)
        return value

    def key(self, expression: tree_sitter.Node) -> Token | None:
        """An object key written as a name or a literal string."""
        parts = _parts(expression)
        if len(parts) != 1:
            return None
        start, end = self.span(parts[0])
        if parts[0].type == "variable_expr" or (parts[0].type == "literal_value" and
                                               parts[0].children[0].type in ("bool_lit",
                                                                             "null_lit")):
            return Token("ident", self.text[start:end], start, end)
        if parts[0].type == "literal_value" and parts[0].children[0].type == "string_lit":
            return Token("string", self.text[start:end], start, end,
                         self.string(parts[0].children[0]))
        return None

    def tuple(self, node: tree_sitter.Node) -> Value:
        value = Value("tuple", *self.span(node))
        parts = _parts(node)
        for number, item in enumerate(parts):
            if item.type == "expression":
                value.items.append(self.value(item))
                comma = parts[number + 1]
                value.commas.append(self.at(comma.end_byte) if comma.type == "," else None)
        return value


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
