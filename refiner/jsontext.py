"""JSON as users wrote it: strict reading (no duplicate keys, numbers kept as written) and writing."""

from __future__ import annotations

import json
import sys

from .errors import InputError

# Refuse inputs beyond this size before parsing: no IAM policy or finding comes close.
MAX_INPUT_BYTES = 32 * 1024 * 1024
MAX_NESTING = 64


class JsonNumber:
    """A JSON number as written (`1e999`, `1.0`, `10`): compared and written by its text, so
    no value is rounded, overflows to Infinity, or equals a boolean."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(("JsonNumber", self.text))

    def __repr__(self) -> str:
        return f"JsonNumber({self.text})"


class DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _object(pairs: list[tuple[str, object]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


class NotJson(ValueError):
    pass


def _no_constant(name: str):
    raise NotJson(f"{name} is not a JSON value")


def loads(text: str, label: str) -> object:
    """Parse JSON text strictly; any failure is one InputError line naming label.

    IAM rejects a policy with a repeated key, while Python's json keeps the last one silently
    (which once changed a Sid): a repeated key is an error here. NaN and Infinity are not JSON."""
    try:
        return json.loads(text, object_pairs_hook=_object, parse_int=JsonNumber,
                          parse_float=JsonNumber, parse_constant=_no_constant)
    except DuplicateKey as error:
        raise InputError(f"{label} repeats the key {error.key!r} in one object "
                         "(IAM rejects that; JSON readers silently keep one)") from None
    except NotJson as error:
        raise InputError(f"{label} is not valid JSON: {error}") from None
    except json.JSONDecodeError as error:
        raise InputError(
            f"{label} is not valid JSON: {error.msg} (line {error.lineno} column {error.colno})"
        ) from None
    except RecursionError:
        raise InputError(f"{label} is nested too deeply") from None


def dumps(value: object, indent: int | None = None, sort_keys: bool = False) -> str:
    """JSON text of a value that may hold JsonNumbers (written as they were read). With indent
    None the text is compact (no whitespace outside strings), as AWS counts policy size."""
    try:  # C's encoder writes the same text, for values without numbers kept as written
        return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=indent,
                          sort_keys=sort_keys, separators=(",", ":") if indent is None else None)
    except TypeError:
        pass
    parts: list[str] = []
    _write(value, parts, indent, 0, sort_keys)
    return "".join(parts)


def _write(value: object, parts: list[str], indent: int | None, level: int, sort_keys: bool):
    if isinstance(value, JsonNumber):
        parts.append(value.text)
    elif isinstance(value, dict):
        items = sorted(value.items()) if sort_keys else list(value.items())
        if not items:
            parts.append("{}")
            return
        opening, between, closing, colon = _layout("{", "}", indent, level)
        parts.append(opening)
        for number, (key, item) in enumerate(items):
            if number:
                parts.append(between)
            parts.append(json.dumps(key, ensure_ascii=False) + colon)
            _write(item, parts, indent, level + 1, sort_keys)
        parts.append(closing)
    elif isinstance(value, list):
        if not value:
            parts.append("[]")
            return
        opening, between, closing, _ = _layout("[", "]", indent, level)
        parts.append(opening)
        for number, item in enumerate(value):
            if number:
                parts.append(between)
            _write(item, parts, indent, level + 1, sort_keys)
        parts.append(closing)
    else:
        parts.append(json.dumps(value, ensure_ascii=False, allow_nan=False))


def _layout(opening: str, closing: str, indent: int | None, level: int):
    if indent is None:
        return opening, ",", closing, ":"
    inner = "\n" + " " * (indent * (level + 1))
    return opening + inner, "," + inner, "\n" + " " * (indent * level) + closing, ": "


def read_json(path: str, what: str) -> object:
    """Parse a JSON file ("-" for standard input); any failure is one InputError line."""
    return parse_json_text(read_text(path, what), f"{what} {path}")


def read_text(path: str, what: str) -> str:
    """A file's text ("-" for standard input), bounded in size; failures are InputErrors."""
    return decode(read_bytes(path, what), path, what)


def read_bytes(path: str, what: str) -> bytes:
    """A file's bytes ("-" for standard input), read once, bounded in size."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as error:
        raise InputError(f"cannot read {what} {path}: {error.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{what} {path} is larger than {MAX_INPUT_BYTES // 2**20} MiB")
    return data


def decode(data: bytes, path: str, what: str) -> str:
    """UTF-8 text without its byte-order mark (read_bytes tells whether there was one)."""
    if not data.strip():
        raise InputError(f"{what} {path} is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{what} {path} is not UTF-8 text") from None


def parse_json_text(text: str, label: str) -> object:
    value = loads(text, label)
    if _depth(value) > MAX_NESTING:
        raise InputError(f"{label} is nested deeper than {MAX_NESTING} levels")
    return value


def _depth(value: object) -> int:
    depth, frontier = 0, [value]
    while frontier:
        depth += 1
        if depth > MAX_NESTING:
            return depth
        children: list = []
        for item in frontier:
            if isinstance(item, dict):
                children.extend(item.values())
            elif isinstance(item, list):
                children.extend(item)
        frontier = children
    return depth - 1
