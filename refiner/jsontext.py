"""JSON as users wrote it: strict reading (no duplicate keys, numbers kept as written) and writing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

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
    result = dict(pairs)
    if len(result) != len(pairs):  # some key came twice: name the first repeated one
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
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


def dumps_in_bulk(value: object, indent: int | None = None, sort_keys: bool = False) -> str:
    """dumps's text, for writers of thousands of files (recommend): orjson writes the same
    text (tests/test_jsontext.py holds them equal) some ten times faster when indented, but
    importing it costs a command's start-up some 10 ms. What it refuses (an integer beyond 64
    bits, a lone surrogate, a key that is not a string) goes to dumps, to the same answer."""
    import orjson

    if indent in (None, 2):
        # orjson's own types (dataclasses, dates) are not JSON values here: refused, as by
        # dumps. A float may be spelled otherwise (1e-05, 0.00001), with the same value: the
        # only floats written are run times, seconds to three places, spelled alike.
        option = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | \
            (orjson.OPT_INDENT_2 if indent else 0) | (orjson.OPT_SORT_KEYS if sort_keys else 0)
        try:
            return orjson.dumps(value, default=_fragment, option=option).decode("utf-8")
        except orjson.JSONEncodeError:
            pass
    return dumps(value, indent, sort_keys)


def _fragment(value: object) -> object:
    import orjson

    if isinstance(value, JsonNumber):
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


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


# --- one large object, member by member ------------------------------------------------------

_SCALARS = frozenset(("string", "boolean", "null"))


def stream_members(path: str, what: str, arrays: frozenset[str]) -> Iterator[tuple[str, object]]:
    """The members of a JSON object file, read as they come (a file of any size is never held
    whole): (key, item) for each item of a member named in `arrays`, which must be an array of
    objects; (key, value) for every other member. As strict as `loads` (a repeated key, a
    document nested too deeply or not one JSON object is one InputError line), except that a
    number with an exponent is kept as its value's text (`1e5` reads as `1E+5`)."""
    import ijson  # here: its import costs every other command's start-up 30 ms

    label = f"{what} {path}"
    try:
        handle = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as error:
        raise InputError(f"cannot read {label}: {error.strerror}") from None
    try:
        start = handle.read(3)
        if start != b"\xef\xbb\xbf":  # a byte-order mark is not JSON: read past it
            handle = _Prefixed(start, handle)
        events = ijson.basic_parse(handle, use_float=False)
        yield from _members(events, label, arrays)
    except DuplicateKey as error:
        raise InputError(f"{label} repeats the key {error.key!r} in one object "
                         "(IAM rejects that; JSON readers silently keep one)") from None
    except _TooDeep:
        raise InputError(f"{label} is nested deeper than {MAX_NESTING} levels") from None
    except _Truncated:
        raise InputError(f"{label} is not valid JSON: it ends inside a value") from None
    except ijson.JSONError as error:
        raise InputError(f"{label} is not valid JSON: {str(error).strip()[:200]}") from None
    except OSError as error:
        raise InputError(f"cannot read {label}: {error.strerror}") from None
    finally:
        if path != "-":
            handle.close()


def _members(events, label: str, arrays: frozenset[str]) -> Iterator[tuple[str, object]]:
    first = next(events, None)
    if first is None:
        raise InputError(f"{label} is empty")
    if first[0] != "start_map":
        raise InputError(f"{label}: expected a JSON object")
    seen: set[str] = set()
    for event, key in events:
        if event == "end_map":
            break
        if key in seen:
            raise DuplicateKey(key)
        seen.add(key)
        event, value = next(events)
        if key not in arrays:
            yield key, _value(event, value, events, 2)
        elif event != "start_array":
            raise InputError(f"{label}: {key} must be a list of objects")
        else:
            for event, value in events:
                if event == "end_array":
                    break
                if event != "start_map":
                    raise InputError(f"{label}: {key} must be a list of objects")
                yield key, _value(event, value, events, 3)
    if next(events, None) is not None:  # anything after the object
        raise InputError(f"{label} is not valid JSON: more than one value")


def _value(event: str, value: object, events, depth: int) -> object:
    """One value from the parser's events, built as `loads` builds it."""
    if event in _SCALARS:
        return value
    if event == "number":
        return JsonNumber(str(value))
    if depth > MAX_NESTING:
        raise _TooDeep
    if event == "start_map":
        result: dict = {}
        for event, key in events:
            if event == "end_map":
                return result
            if key in result:
                raise DuplicateKey(key)
            event, value = next(events)
            result[key] = _value(event, value, events, depth + 1)
    items: list = []
    for event, value in events:
        if event == "end_array":
            return items
        items.append(_value(event, value, events, depth + 1))
    raise _Truncated


class _TooDeep(ValueError):
    pass


class _Truncated(ValueError):
    pass


class _Prefixed:
    """A binary file with the bytes already read from it put back in front."""

    def __init__(self, prefix: bytes, handle):
        self.prefix, self.handle = prefix, handle

    def read(self, size: int = -1) -> bytes:
        if not self.prefix or size == 0:  # ijson reads 0 bytes to learn the file's type
            return self.handle.read(size)
        head, self.prefix = self.prefix, b""
        return head + self.handle.read(max(size - len(head), 0) if size >= 0 else -1)

    def close(self) -> None:
        self.handle.close()
