"""Brute-force reference semantics for tests: IAM glob matching by regular expression.

Deliberately independent of refiner.patterns (the refiner's matcher) and refiner.prove
(the Z3 checker), so the property tests compare three separate readings of IAM matching."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=100_000)
def _regex(pattern: str) -> re.Pattern:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def matches(pattern: str, action: str) -> bool:
    return _regex(pattern).fullmatch(action) is not None


def entries(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def statement_allows(statement: dict | None, action: str) -> bool:
    """Whether one Allow statement admits action (Resource and Condition aside)."""
    if statement is None or statement.get("Effect") != "Allow":
        return False
    if "Action" in statement:
        return any(matches(p, action) for p in entries(statement["Action"]))
    return not any(matches(p, action) for p in entries(statement["NotAction"]))


def is_unused(action: str, unused_actions: set[str], unused_services: set[str]) -> bool:
    lower = action.lower()
    return lower in unused_actions or lower.split(":", 1)[0] in unused_services
