"""Terraform `dynamic` blocks expanded when their for_each is a literal written in the file.

`dynamic "statement" { for_each = [...]; content { actions = statement.value.actions } }`
makes one `statement` block per element. refiner evaluates no Terraform, so a dynamic block
is expanded only when its for_each is a literal (a tuple or an object, written in place or as
a local of the same file) and every attribute of its content is a literal or a reference to
the iterator's key or value (`statement.value.actions`, `s.value["sid"]`, `s.key`). Anything
else (a variable, a function call, a conditional, a nested dynamic block) is not expanded:
the caller names that block as unknown."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import hcl

_PATH_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[\s*\"([^\"]*)\"\s*\]|\[\s*([0-9]+)\s*\]")


@dataclass
class Expanded:
    """One block a dynamic block makes: its attributes and nested blocks as JSON values."""

    type: str
    attributes: dict[str, object] = field(default_factory=dict)
    blocks: list[Expanded] = field(default_factory=list)


class NotLiteral(Exception):
    """Why a dynamic block cannot be expanded."""


def expand(text: str, block: hcl.Block, locals_: dict[str, hcl.Value]) -> list[Expanded]:
    """The blocks a dynamic block makes; NotLiteral when it cannot be told from the file."""
    if not block.labels:
        raise NotLiteral("a dynamic block without a label")
    kind = block.labels[0]
    for_each = block.attribute("for_each")
    if for_each is None:
        raise NotLiteral("a dynamic block without for_each")
    iterator = kind
    named = block.attribute("iterator")
    if named is not None:
        if named.value.kind != "unresolved" or not re.fullmatch(r"[A-Za-z_][\w-]*",
                                                                 named.value.value):
            raise NotLiteral("its iterator is not a name")
        iterator = named.value.value
    elements = _elements(text, for_each.value, locals_)
    contents = [child for child in block.blocks if child.type == "content"]
    if len(contents) != 1 or block.blocks[1:] or any(
            a.name not in ("for_each", "iterator", "labels") for a in block.attributes):
        raise NotLiteral("it is not one content block")
    return [_content(kind, contents[0], iterator, key, value) for key, value in elements]


def _elements(text: str, value: hcl.Value, locals_: dict[str, hcl.Value]):
    source = text[value.start:value.end].strip()
    if value.kind == "unresolved" and re.fullmatch(r"local\.[A-Za-z_][\w-]*", source):
        value = locals_.get(source.split(".", 1)[1])
        if value is None:
            raise NotLiteral(f"for_each is `{source}`, not a local of this file")
    if value.kind not in ("tuple", "object") or hcl.unresolved_in(value) is not None:
        raise NotLiteral(f"for_each is `{' '.join(source.split())[:80]}`, not a literal")
    data = hcl.to_json(value)
    if isinstance(data, list):
        return list(enumerate(data))
    return list(data.items())


def _content(kind: str, content: hcl.Block, iterator: str, key, element) -> Expanded:
    made = Expanded(kind)
    for attribute in content.attributes:
        made.attributes[attribute.name] = _value(attribute.value, iterator, key, element)
    for child in content.blocks:
        if child.type == "dynamic":
            raise NotLiteral("a dynamic block inside its content")
        made.blocks.append(_content(child.type, child, iterator, key, element))
    return made


def _value(value: hcl.Value, iterator: str, key, element) -> object:
    if value.kind == "tuple":
        return [_value(item, iterator, key, element) for item in value.items]
    if value.kind == "object":
        return {name: _value(member, iterator, key, element)
                for name, _, member in value.members}
    if value.kind in ("unresolved", "call") or (value.kind == "heredoc" and value.value is None):
        return _reference(str(value.value), iterator, key, element)
    return hcl.to_json(value)


def _reference(source: str, iterator: str, key, element) -> object:
    source = source.strip()
    if source == f"{iterator}.key":
        return key
    prefix = f"{iterator}.value"
    if not source.startswith(prefix):
        raise NotLiteral(f"`{source[:80]}` is not the iterator's key or value")
    rest, found = source[len(prefix):], element
    while rest:
        step = _PATH_STEP.match(rest)
        if step is None:
            raise NotLiteral(f"`{source[:80]}` is not a path into the iterator's value")
        name = step.group(1) if step.group(1) is not None else step.group(2)
        if name is not None and isinstance(found, dict) and name in found:
            found = found[name]
        elif step.group(3) is not None and isinstance(found, list) and \
                int(step.group(3)) < len(found):
            found = found[int(step.group(3))]
        else:
            raise NotLiteral(f"`{source[:80]}` names nothing in an element of for_each")
        rest = rest[step.end():]
    return found
