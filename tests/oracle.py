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


def union_matcher(patterns: list[str]):
    """One compiled regex for a list of patterns (fast membership over a whole catalog)."""
    body = "|".join(_regex(p).pattern for p in patterns) or "(?!)"
    compiled = re.compile(f"(?:{body})", re.IGNORECASE | re.DOTALL)
    return lambda action: compiled.fullmatch(action) is not None


def allowed_by(statement: dict | None, actions: list[str]) -> set[str]:
    """The actions one Allow statement admits (Resource and Condition aside), in bulk."""
    if statement is None or statement.get("Effect") != "Allow":
        return set()
    if "Action" in statement:
        match = union_matcher(entries(statement["Action"]))
        return {a for a in actions if match(a)}
    match = union_matcher(entries(statement["NotAction"]))
    return {a for a in actions if not match(a)}
