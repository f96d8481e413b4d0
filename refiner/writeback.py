"""Write a refinement back into the text the policy was read from, changing only what changed.

The reader keeps the file's text and where the policy document sits in it (an object in the
file, or a JSON string inside an AWS CLI wrapper, possibly URL-encoded). The writer replaces
the changed Action/NotAction values and cuts removed statements out, reusing the text around
them: indentation, key order, line endings, number spellings and every untouched statement
stay byte for byte. The edited text is then read again and that is what gets proven."""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from dataclasses import dataclass
from json.decoder import scanstring

_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


@dataclass
class Node:
    """Where a JSON value sits in a text: [start, end), and its members by key or position."""

    start: int
    end: int
    members: dict[str, Node] | list[Node] | None = None


@functools.lru_cache(maxsize=256)
def locate(text: str, at: int = 0) -> Node:
    """The spans of the JSON value starting at `at` (the text is valid JSON: json has read it).
    Kept for the last texts (callers only read it): one refinement looks at its input's spans
    several times, and a run refines the same documents for many principals."""
    node, _ = _value(text, _SPACE.match(text, at).end())
    return node


def _value(text: str, at: int) -> tuple[Node, int]:
    char = text[at]
    if char == "{":
        members: dict[str, Node] = {}
        start = at
        at = _SPACE.match(text, at + 1).end()
        while text[at] != "}":
            key, at = scanstring(text, at + 1)
            at = _SPACE.match(text, at).end() + 1  # past the colon
            members[key], at = _value(text, _SPACE.match(text, at).end())
            at = _SPACE.match(text, at).end()
            if text[at] == ",":
                at = _SPACE.match(text, at + 1).end()
        return Node(start, at + 1, members), at + 1
    if char == "[":
        items: list[Node] = []
        start = at
        at = _SPACE.match(text, at + 1).end()
        while text[at] != "]":
            item, at = _value(text, at)
            items.append(item)
            at = _SPACE.match(text, at).end()
            if text[at] == ",":
                at = _SPACE.match(text, at + 1).end()
        return Node(start, at + 1, items), at + 1
    if char == '"':
        _, end = scanstring(text, at + 1)
        return Node(at, end), end
    for word in ("true", "false", "null"):
        if text.startswith(word, at):
            return Node(at, at + len(word)), at + len(word)
    end = _NUMBER.match(text, at).end()
    return Node(at, end), end


@dataclass
class Source:
    """The text a policy was read from and where its document is: `path` leads from the top
    value to it through object keys; `encoding` is None for a document written as a JSON
    object, "json" for one held in a JSON string, "url" for a URL-encoded string."""

    text: str
    path: tuple[str, ...] = ()
    encoding: str | None = None
    bom: bool = False

    def document_text(self) -> str:
        node = self._node()
        if self.encoding is None:
            return self.text[node.start:node.end]
        held = json.loads(self.text[node.start:node.end])
        return urllib.parse.unquote(held) if self.encoding == "url" else held

    def with_document(self, document_text: str) -> str:
        """The whole text with the document replaced, re-encoded the way it was held: the
        text itself when the document did not change; a URL-encoded one keeps the characters
        the original left unencoded."""
        if document_text == self.document_text():
            return self.text
        node = self._node()
        if self.encoding is None:
            replacement = document_text
        else:
            if self.encoding == "url":
                held_before = json.loads(self.text[node.start:node.end])
                plain = "".join(sorted({c for c in held_before if c != "%" and not c.isalnum()}))
                held = urllib.parse.quote(document_text, safe=plain)
            else:
                held = document_text
            replacement = json.dumps(held, ensure_ascii=False)
        return self.text[:node.start] + replacement + self.text[node.end:]

    def _node(self) -> Node:
        node = locate(self.text)
        for key in self.path:
            node = node.members[key]
        return node


def edit_document(text: str, pairs: list[tuple[dict, dict | None]]) -> str | None:
    """The document text with each changed statement's Action/NotAction value rewritten and
    removed statements cut out; None when no statement is left (the policy is to be detached).

    pairs: each original statement with its refined form, in document order (the same object
    when unchanged, None when removed), as the refiner returns them."""
    if all(refined is original for original, refined in pairs):
        return text
    document = locate(text)
    statement_node = document.members["Statement"]
    newline = "\r\n" if "\r\n" in text else "\n"
    if not isinstance(statement_node.members, list):  # one statement written as an object
        (original, refined), = pairs
        if refined is None:
            return None
        new = _edit_statement(text, statement_node, original, refined, newline)
        return text[:statement_node.start] + new + text[statement_node.end:]
    elements = statement_node.members
    kept = [(number, node, original, refined)
            for number, (node, (original, refined)) in enumerate(zip(elements, pairs, strict=True))
            if refined is not None]
    if not kept:
        return None
    pieces = [text[statement_node.start:elements[0].start]]  # "[" and what follows it
    for order, (number, node, original, refined) in enumerate(kept):
        pieces.append(_edit_statement(text, node, original, refined, newline))
        if order + 1 < len(kept):  # the separator that followed this element
            pieces.append(text[node.end:elements[number + 1].start])
    pieces.append(text[elements[-1].end:statement_node.end])  # what precedes "]", and "]"
    return text[:statement_node.start] + "".join(pieces) + text[statement_node.end:]


def _edit_statement(text: str, node: Node, original: dict, refined: dict, newline: str) -> str:
    own = text[node.start:node.end]
    if refined is original:
        return own
    key = "Action" if "Action" in original else "NotAction"
    value = node.members[key]
    new_value = _render_value(text, node, value, refined[key], newline)
    return own[:value.start - node.start] + new_value + own[value.end - node.start:]


def _render_value(text: str, statement: Node, value: Node, entries: str | list[str],
                  newline: str) -> str:
    """The new Action value in the old one's layout; entries kept from it keep their text."""
    old_items = value.members if isinstance(value.members, list) else [value]
    written = {json.loads(text[item.start:item.end]): text[item.start:item.end]
               for item in old_items}
    if isinstance(entries, str):
        return written.get(entries, json.dumps(entries))
    literals = [written.get(entry, json.dumps(entry)) for entry in entries]
    if isinstance(value.members, list) and value.members:
        items = value.members
        head = text[value.start + 1:items[0].start]
        tail = text[items[-1].end:value.end - 1]
        if len(items) > 1:
            separator = text[items[0].end:items[1].start]
        else:
            separator = "," + head if "\n" in head else ", "
        return "[" + head + separator.join(literals) + tail + "]"
    # A single string becomes a list: one entry a line, one level deeper than the key's line,
    # when the statement spans lines; on one line when it does not.
    own = text[statement.start:statement.end]
    if "\n" not in own:
        return "[" + (", " if ", " in own else ",").join(literals) + "]"
    key_indent, statement_indent = _indentation(text, value.start), _indentation(text, statement.start)
    unit = key_indent[len(statement_indent):] if key_indent.startswith(statement_indent) else ""
    inner = newline + key_indent + (unit or "  ")
    return "[" + inner + ("," + inner).join(literals) + newline + key_indent + "]"


def _indentation(text: str, at: int) -> str:
    line_start = text.rfind("\n", 0, at) + 1
    return _SPACE.match(text, line_start).group()[: at - line_start]
