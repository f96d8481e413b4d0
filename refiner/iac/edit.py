"""Targeted text edits: replace spans of a template's text, and rewrite a list in its own layout.

Writers never re-dump a template: they compute (start, end, replacement) edits at spans a
reader located, and everything outside those spans stays byte for byte. A list is rewritten
in one of two ways. One entry a line (YAML block sequences, most HCL lists): each kept entry
keeps its whole line (indentation, quotes, trailing comment), a removed entry's line goes,
lines between entries (comments, blank lines) stay, and a new entry gets a line laid out like
the first entry's. Otherwise (entries sharing lines): the entries are joined again with the
separator the list used between its first two, which is only done when the list holds no
comment to lose."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str


def apply_edits(text: str, edits: list[Edit], start: int = 0, end: int | None = None) -> str:
    """text[start:end] with the edits (which must lie inside it and not overlap) made."""
    end = len(text) if end is None else end
    pieces, at = [], start
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        if edit.start < at or edit.end > end:
            raise ValueError(f"overlapping or outlying edit at {edit.start}")
        pieces += [text[at:edit.start], edit.text]
        at = edit.end
    pieces.append(text[at:end])
    return "".join(pieces)


def line_start(text: str, at: int) -> int:
    return text.rfind("\n", 0, at) + 1


def line_end(text: str, at: int) -> int:
    """The position just after the newline that ends the line holding `at` (or the text end)."""
    found = text.find("\n", at)
    return len(text) if found < 0 else found + 1


def line_number(text: str, at: int) -> int:
    """The 1-based line of position `at`."""
    return text.count("\n", 0, at) + 1


def newline_of(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def indentation(text: str, at: int) -> str:
    start = line_start(text, at)
    return re.match(r"[ \t]*", text[start:at]).group()


@dataclass(frozen=True)
class Item:
    """One entry of a list in the text: its span, and the end of the comma after it (if any)."""

    start: int
    end: int
    comma_end: int | None = None

    @property
    def last(self) -> int:
        return self.comma_end if self.comma_end is not None else self.end


@dataclass(frozen=True)
class Syntax:
    """How a kind of list is written. prefix: what may precede an entry on its line (a YAML
    block entry's dash); commas: entries are separated by commas; trailing_comma: one may
    follow the last entry; comment: a comment, for lists whose layout must keep them."""

    prefix: str = r"[ \t]*"
    commas: bool = True
    trailing_comma: bool = True
    comment: str | None = None
    lines: bool = True  # one entry a line may be edited line by line (not for JSON)


YAML_BLOCK = Syntax(prefix=r"[ \t]*-[ \t]+", commas=False, comment=r"#")
YAML_FLOW = Syntax(comment=r"#")
HCL_LIST = Syntax(comment=r"#|//|/\*")
JSON_LIST = Syntax(trailing_comma=False, lines=False)


def one_per_line(text: str, items: list[Item], syntax: Syntax) -> bool:
    """Whether each entry starts its own line and ends it (a comment may follow)."""
    if not syntax.lines or not items:
        return False
    before, after = re.compile(syntax.prefix + r"\Z"), _line_rest(syntax)
    previous_end = -1
    for item in items:
        start = line_start(text, item.start)
        if start <= previous_end or not before.match(text, start, item.start):
            return False
        if not after.match(text[item.last:line_end(text, item.last)]):
            return False
        previous_end = item.last
    return True


def _line_rest(syntax: Syntax) -> re.Pattern:
    comment = f"(?:(?:{syntax.comment}).*)?" if syntax.comment else ""
    return re.compile(r"[ \t]*" + comment + r"\r?\n?\Z")


# An operation on a list, in order: ("keep", index, new text or None), ("drop", index, None),
# ("add", None, literal).
Operation = tuple[str, "int | None", "str | None"]


def rewrite_list(text: str, items: list[Item], operations: list[Operation], syntax: Syntax,
                 opening: int | None = None, what: str = "list") -> Edit:
    """One edit that rewrites the region of a list's entries as the operations say."""
    if not items:
        raise InputError(f"an empty {what} cannot be rewritten")
    if one_per_line(text, items, syntax):
        return _rewrite_lines(text, items, operations, syntax)
    region_start, region_end = items[0].start, items[-1].end
    if syntax.comment and re.search(syntax.comment, _outside_items(text, items)):
        raise InputError(f"a {what} laid out with several entries a line and comments among "
                         "them cannot be rewritten without losing a comment")
    if len(items) > 1:
        separator = text[items[0].end:items[1].start]
    elif opening is not None and "\n" in text[opening:items[0].start]:
        separator = "," + text[opening:items[0].start]
    else:
        separator = ", " if syntax.commas else " "
    pieces = []
    for kind, index, new in operations:
        if kind == "keep":
            pieces.append(new if new is not None else text[items[index].start:items[index].end])
        elif kind == "add":
            pieces.append(new)
    return Edit(region_start, region_end, separator.join(pieces))


def _outside_items(text: str, items: list[Item]) -> str:
    return "".join(text[a.end:b.start] for a, b in zip(items, items[1:], strict=False))


def _rewrite_lines(text: str, items: list[Item], operations: list[Operation],
                   syntax: Syntax) -> Edit:
    first = items[0]
    indent = text[line_start(text, first.start):first.start]
    newline = "\r\n" if text[:line_end(text, first.last)].endswith("\r\n") else "\n"
    last_had_comma = items[-1].comma_end is not None

    def unit(index: int, new: str | None) -> tuple[str, int, bool]:
        """The entry's lines, with its text replaced by new; and where its text ends there."""
        item = items[index]
        start = line_start(text, item.start)
        body = text[item.start:item.end] if new is None else new
        own = text[start:item.start] + body + text[item.end:line_end(text, item.last)]
        if not own.endswith("\n"):
            own += newline
        return own, item.start - start + len(body), item.comma_end is not None

    def gap(index: int) -> str:  # comment and blank lines before the entry
        if index == 0:
            return ""
        return text[line_end(text, items[index - 1].last):line_start(text, items[index].start)]

    units: list[list] = []  # [text, end of the entry's text in it, has a comma]
    pieces: list = []
    for kind, index, new in operations:
        if kind in ("keep", "drop"):
            pieces.append(gap(index))
        if kind == "keep":
            line, entry_end, comma = unit(index, new)
            units.append([line, entry_end, comma])
            pieces.append(units[-1])
        elif kind == "add":
            units.append([indent + new + newline, len(indent) + len(new), False])
            pieces.append(units[-1])
    if syntax.commas:
        for number, entry in enumerate(units):
            last = number == len(units) - 1
            if not entry[2] and (not last or last_had_comma):
                entry[0] = entry[0][:entry[1]] + "," + entry[0][entry[1]:]
    region_start = line_start(text, first.start)
    region_end = line_end(text, items[-1].last)
    written = "".join(piece if isinstance(piece, str) else piece[0] for piece in pieces)
    if not text[region_start:region_end].endswith("\n") and written.endswith(newline):
        written = written[: -len(newline)]  # the list's last line had no newline of its own
    return Edit(region_start, region_end, written)


def remove_lines(text: str, start: int, end: int) -> Edit:
    """Cut [start, end) out; whole lines when nothing else shares them (a comment may end the
    last one)."""
    first, last = line_start(text, start), line_end(text, end)
    if not text[first:start].strip() and _line_rest(Syntax(comment=r"#|//|/\*")).match(
            text[end:last]):
        return Edit(first, last, "")
    return Edit(start, end, "")
