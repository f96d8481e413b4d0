"""JSON as users wrote it: strict reading (no duplicate keys, numbers kept as written) and writing."""

from __future__ import annotations

import json

from .errors import InputError


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
