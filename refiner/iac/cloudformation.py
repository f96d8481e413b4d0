"""CloudFormation templates, JSON and YAML: every identity-policy document, where cfn-lint looks.

`AWS::IAM::Role|User|Group` `Properties.Policies[].PolicyDocument` (id `Logical.Policies[N]`),
`PolicyDocument` of `AWS::IAM::ManagedPolicy`, `Policy`, `RolePolicy`, `UserPolicy`,
`GroupPolicy`, and `AWS::SSO::PermissionSet` `InlinePolicy` (id: the logical id); a document
may be written as a JSON string. YAML is read with ruamel.yaml's composer, which keeps every
node's position and its tag: short forms (`!Sub`, `!Ref`, `!GetAtt`, `!If`, ...) read as the
long forms they stand for (`{"Fn::Sub": ...}`), and are never resolved."""

from __future__ import annotations

import re

from ..errors import InputError
from ..jsontext import JsonNumber, dumps, parse_json_text
from ..writeback import Node, locate
from .edit import Item, indentation, line_end, line_number
from .model import (
    ACTION_KEYS,
    ActionValue,
    Located,
    StatementSpot,
    Structured,
    Template,
    TextDocument,
    action_refusal,
    describe_expression,
    finish,
    text_document_lines,
)

# Where inline policies are listed, and the size limit (refine.SIZE_LIMITS) that applies.
INLINE_LISTS = {"AWS::IAM::Role": "inline", "AWS::IAM::User": "user-inline",
                "AWS::IAM::Group": "group-inline"}
DOCUMENTS = {
    "AWS::IAM::ManagedPolicy": ("PolicyDocument", "managed"),
    "AWS::IAM::Policy": ("PolicyDocument", "inline"),
    "AWS::IAM::RolePolicy": ("PolicyDocument", "inline"),
    "AWS::IAM::UserPolicy": ("PolicyDocument", "user-inline"),
    "AWS::IAM::GroupPolicy": ("PolicyDocument", "group-inline"),
    "AWS::SSO::PermissionSet": ("InlinePolicy", "inline"),
}


# --- JSON -----------------------------------------------------------------------------------

CONTEXT_SECTIONS = ("Parameters", "Mappings", "Conditions", "Globals", "Transform", "Rules")


def read_json(path: str, text: str, value: dict) -> Template:
    root = locate(text)
    policies: list[Located] = []
    resources = value.get("Resources")
    if not isinstance(resources, dict):
        return Template(path, "cloudformation-json", text, [])
    context = dumps({k: value.get(k) for k in CONTEXT_SECTIONS}, sort_keys=True)
    resource_nodes = root.members["Resources"].members
    for logical, resource in resources.items():
        if not isinstance(resource, dict) or not isinstance(resource.get("Properties"), dict):
            continue
        kind = resource.get("Type")
        properties = resource["Properties"]
        nodes = resource_nodes[logical].members["Properties"].members
        if kind in INLINE_LISTS and "Policies" in properties:
            entries = properties["Policies"]
            if not isinstance(entries, list):
                policies.append(Located(f"{logical}.Policies", _line(text, nodes["Policies"]),
                                        INLINE_LISTS[kind], entries).refuse(
                    _line(text, nodes["Policies"]), f"Policies is {_what(entries)}"))
                continue
            for number, (entry, node) in enumerate(zip(entries, nodes["Policies"].members,
                                                       strict=True)):
                policy_id = f"{logical}.Policies[{number}]"
                if not isinstance(entry, dict) or "PolicyDocument" not in entry:
                    policies.append(Located(policy_id, _line(text, node), INLINE_LISTS[kind],
                                            entry).refuse(
                        _line(text, node), f"the entry is {_what(entry)}, not a policy"))
                    continue
                policies.append(_json_document(path, text, policy_id, INLINE_LISTS[kind],
                                               entry["PolicyDocument"],
                                               node.members["PolicyDocument"]))
        elif kind in DOCUMENTS and DOCUMENTS[kind][0] in properties:
            key, size_kind = DOCUMENTS[kind]
            policies.append(_json_document(path, text, logical, size_kind, properties[key],
                                           nodes[key]))
    return Template(path, "cloudformation-json", text, policies, context=context)


def _json_document(path: str, text: str, policy_id: str, kind: str, value: object,
                   node: Node) -> Located:
    line = _line(text, node)
    located = Located(policy_id, line, kind, value)
    if isinstance(value, str):
        writer = TextDocument(node.start, node.end, "json-string")
        if not writer.faithful(text):
            writer.encoding = "json-string-ascii"
            if not writer.faithful(text):
                writer.encoding = "json-string"  # its escapes are written anew
        try:
            located.document = parse_json_text(value, f"{policy_id} document")
        except InputError as error:
            return located.refuse(line, f"the document string is not JSON ({error})")
    elif isinstance(value, dict) and not _is_intrinsic(value):
        writer = TextDocument(node.start, node.end)
    else:
        return located.refuse(line, f"the document is {_what(value)}")
    located.writer = writer
    located.document_text = writer.decode(text)
    refusal = _json_action_refusal(located.document, writer, text)
    if refusal is not None:
        return located.refuse(*refusal)
    located.statement_lines = text_document_lines(text, writer)
    return finish(located, f"{path}: {policy_id}")


def _json_action_refusal(document: object, writer: TextDocument, text: str):
    """(line, reason) when a statement or an action list uses an intrinsic function."""
    if not isinstance(document, dict):
        return None
    statements = document.get("Statement")
    node = locate(writer.decode(text)).members
    if isinstance(statements, dict) and _is_intrinsic(statements):
        return writer.line_of(text, node["Statement"].start), \
            f"Statement is {describe_expression(statements)}"
    listed = statements if isinstance(statements, list) else [statements]
    statement_nodes = node["Statement"].members if isinstance(statements, list) else \
        [node.get("Statement")]
    for statement, statement_node in zip(listed, statement_nodes, strict=False):
        if isinstance(statement, dict) and _is_intrinsic(statement):
            return writer.line_of(text, statement_node.start), \
                f"a statement is {describe_expression(statement)}"
        if not isinstance(statement, dict):
            continue
        for key in ACTION_KEYS:
            if key in statement:
                reason = action_refusal(statement[key], key)
                if reason is not None:
                    value = statement_node.members[key]
                    entries = statement[key] if isinstance(statement[key], list) else None
                    if entries is not None:  # the entry itself
                        value = next(node for entry, node in zip(entries, value.members,
                                                                 strict=True)
                                     if action_refusal(entry, key) is not None)
                    return writer.line_of(text, value.start), reason
    return None


def _is_intrinsic(value: dict) -> bool:
    return len(value) == 1 and next(iter(value)) in ("Ref", "Condition") or \
        len(value) == 1 and next(iter(value)).startswith("Fn::")


def _what(value: object) -> str:
    if isinstance(value, dict) and value and (_is_intrinsic(value) or "terraform" in value):
        return describe_expression(value)
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "a value")


def _line(text: str, node: Node) -> int:
    return line_number(text, node.start)


# --- YAML -----------------------------------------------------------------------------------

def read_yaml(path: str, text: str) -> Template:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        root = YAML().compose(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"{path} is not valid YAML: {problem}{where}") from None
    _refuse_ambiguous_keys(path, root)
    reader = _Yaml(path, text, root)
    context = dumps({name: reader.json(_get(root, name), loose=True) if _get(root, name) else None
                     for name in CONTEXT_SECTIONS}, sort_keys=True)
    return Template(path, "cloudformation-yaml", text, reader.policies(), context=context)


def _refuse_ambiguous_keys(path: str, root) -> None:
    """A key twice in one mapping (YAML readers keep one; which one CloudFormation deploys is
    not ours to guess) or a merge key (<<, resolved only by `aws cloudformation package`)
    anywhere in the template: refused, or a policy could hide behind one."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if _kind(node) == "map":
            names = set()
            for key, value in node.value:
                name = _scalar(key)
                line = key.start_mark.line + 1
                if name == "<<":
                    raise InputError(f"{path}:{line}: a YAML merge key (<<): write the keys out "
                                     "(refiner reads a template as CloudFormation deploys it)")
                if name in names:
                    raise InputError(f"{path}:{line}: the key {name!r} twice in one mapping "
                                     "(CloudFormation refuses it; YAML readers keep one)")
                names.add(name)
                stack.append(value)
        elif _kind(node) == "seq":
            stack.extend(node.value)


class _Yaml:
    def __init__(self, path: str, text: str, root):
        self.path, self.text, self.root = path, text, root
        self.uses: dict[int, int] = {}  # id(node) -> how often the template reaches it
        if root is not None:
            self._count(root)
        self.offset = self._sequence_offset()

    def _count(self, node) -> None:
        self.uses[id(node)] = self.uses.get(id(node), 0) + 1
        if self.uses[id(node)] > 1:
            return
        for child in self._children(node):
            self._count(child)

    @staticmethod
    def _children(node):
        if isinstance(node.value, list):
            for entry in node.value:
                yield from entry if isinstance(entry, tuple) else (entry,)

    def _sequence_offset(self) -> int:
        """How far the template indents a block list's dashes below its key (2 by default)."""
        stack = [self.root] if self.root is not None else []
        while stack:
            node = stack.pop()
            if _kind(node) == "map":
                for key, value in node.value:
                    if _kind(value) == "seq" and not value.flow_style and \
                            value.start_mark.line > key.start_mark.line:
                        return value.start_mark.column - key.start_mark.column
                    stack.append(value)
            elif _kind(node) == "seq":
                stack.extend(node.value)
        return 2

    def line(self, node) -> int:
        return node.start_mark.line + 1

    def policies(self) -> list[Located]:
        if _kind(self.root) != "map":
            return []
        resources = _get(self.root, "Resources")
        if _kind(resources) != "map":
            return []
        found = []
        for key, resource in resources.value:
            properties = _get(resource, "Properties") if _kind(resource) == "map" else None
            kind = _scalar(_get(resource, "Type")) if _kind(resource) == "map" else None
            if _kind(properties) != "map":
                continue
            logical = key.value
            if kind in INLINE_LISTS and _get(properties, "Policies") is not None:
                entries = _get(properties, "Policies")
                if _kind(entries) != "seq" or entries.tag.startswith("!"):
                    found.append(Located(f"{logical}.Policies", self.line(entries),
                                         INLINE_LISTS[kind], self.json(entries, loose=True)).refuse(
                        self.line(entries), f"Policies is {self.what(entries)}"))
                    continue
                for number, entry in enumerate(entries.value):
                    policy_id = f"{logical}.Policies[{number}]"
                    document = _get(entry, "PolicyDocument") if _kind(entry) == "map" and \
                        not entry.tag.startswith("!") else None
                    if document is None:
                        found.append(Located(policy_id, self.line(entry), INLINE_LISTS[kind],
                                             self.json(entry, loose=True)).refuse(
                            self.line(entry), f"the entry is {self.what(entry)}, not a policy"))
                        continue
                    found.append(self.document(policy_id, INLINE_LISTS[kind], document))
            elif kind in DOCUMENTS and _get(properties, DOCUMENTS[kind][0]) is not None:
                name, size_kind = DOCUMENTS[kind]
                found.append(self.document(logical, size_kind, _get(properties, name)))
        return found

    def what(self, node) -> str:
        if node.tag.startswith("!"):
            return f"{_intrinsic_name(node.tag)} (an intrinsic function)"
        return {"map": "a mapping", "seq": "a list"}.get(_kind(node), "a string")

    # --- one document -----------------------------------------------------------------------

    def document(self, policy_id: str, kind: str, node) -> Located:
        line = self.line(node)
        located = Located(policy_id, line, kind)
        try:
            located.document = self.json(node)
        except InputError as error:
            located.document = self.json(node, loose=True)
            return located.refuse(line, str(error))
        if self.uses.get(id(node), 0) > 1:
            return located.refuse(line, "the document is a YAML alias of another one")
        if node.tag.startswith("!"):
            return located.refuse(line, f"the document is {self.what(node)}")
        if _kind(node) == "scalar" and isinstance(located.document, str):
            return self.string_document(located, node)
        if _kind(node) != "map":
            return located.refuse(line, f"the document is {self.what(node)}")
        return self.structured(located, node)

    def string_document(self, located: Located, node) -> Located:
        """A document written as a JSON string: one-line quoted, or a literal block."""
        text = self.text
        if node.style in ("'", '"'):
            writer = TextDocument(node.start_mark.index, node.end_mark.index,
                                  "yaml-single" if node.style == "'" else "yaml-double")
        elif node.style == "|":
            content = line_end(text, node.start_mark.index)
            lines = node.value.rstrip("\n").count("\n") + 1
            end = content
            for _ in range(lines):
                end = line_end(text, end)
            end -= len("\r\n") if text[:end].endswith("\r\n") else 1 if text[:end].endswith(
                "\n") else 0
            first = re.match(r"[ ]*", text[content:]).group()
            writer = TextDocument(content, end, "yaml-block", first,
                                  "\r\n" if "\r\n" in text[content:end + 2] else "\n")
        else:
            return located.refuse(located.line, "the document is a YAML string in a style "
                                  "refiner does not rewrite (use a mapping, quotes or |)")
        if not writer.faithful(text):
            return located.refuse(located.line, "the document string's layout cannot be "
                                  "written back unchanged")
        located.writer = writer
        located.document_text = writer.decode(text)
        try:
            located.document = parse_json_text(located.document_text, located.id)
        except InputError as error:
            return located.refuse(located.line, f"the document string is not JSON ({error})")
        located.statement_lines = text_document_lines(text, writer)
        return finish(located, f"{self.path}: {located.id}")

    def structured(self, located: Located, node) -> Located:
        from ..jsontext import dumps

        located.document_text = dumps(located.document, indent=2) + "\n"
        statement = _get(node, "Statement")
        if statement is None:
            return finish(located, f"{self.path}: {located.id}")
        if statement.tag.startswith("!") or self.uses.get(id(statement), 0) > 1:
            return located.refuse(self.line(statement), "Statement is "
                                  + (self.what(statement) if statement.tag.startswith("!")
                                     else "a YAML alias"))
        if _kind(statement) == "seq":
            nodes, container = statement.value, "list"
        else:
            nodes, container = [statement], "single"
        spots = []
        for item in nodes:
            if _kind(item) != "map" or item.tag.startswith("!") or self.uses.get(id(item), 0) > 1:
                return located.refuse(self.line(item), "a statement is " + (
                    self.what(item) if item.tag.startswith("!") or _kind(item) != "map"
                    else "a YAML alias"))
            spot = self.statement(item, statement, located)
            if spot is None:
                return located
            spots.append(spot)
        located.writer = Structured(spots, container,
                                    "yaml-flow" if statement.flow_style else "yaml-block",
                                    statement.start_mark.index + 1 if statement.flow_style else None)
        located.statement_lines = [(spot.line, spot.entry_lines) for spot in spots]
        return finish(located, f"{self.path}: {located.id}")

    def statement(self, item, sequence, located: Located) -> StatementSpot | None:
        end = self.last_end(item)
        spot = StatementSpot(item.start_mark.index, end, self.line(item), None,
                             Item(item.start_mark.index, end, self.comma_after(end))
                             if sequence.flow_style else Item(item.start_mark.index, end))
        for key, value in item.value:
            if key.value not in ACTION_KEYS:
                continue
            refusal = self.action_refusal(key.value, value)
            if refusal is not None:
                located.refuse(*refusal)
                return None
            spot.action = self.action(key, value, item)
            spot.entry_lines = {v: self.line(n) for v, n in zip(
                spot.action.values, value.value if _kind(value) == "seq" else [value],
                strict=True)}
        return spot

    def action_refusal(self, key: str, value):
        if self.uses.get(id(value), 0) > 1 or getattr(value, "anchor", None):
            return self.line(value), f"{key} is a YAML anchor or alias"
        entries = value.value if _kind(value) == "seq" and not value.tag.startswith("!") \
            else [value]
        for entry in entries:
            if entry.tag.startswith("!") or _kind(entry) != "scalar":
                reason = action_refusal(self.json(entry, loose=True), key) or \
                    f"{key} holds {self.what(entry)}"
                return self.line(entry), reason
            if self.uses.get(id(entry), 0) > 1 or getattr(entry, "anchor", None):
                return self.line(entry), f"{key} holds a YAML anchor or alias"
        return None

    def action(self, key, value, statement) -> ActionValue:
        text = self.text
        flow = bool(statement.flow_style)
        if _kind(value) == "seq":
            items = [Item(n.start_mark.index, n.end_mark.index,
                          self.comma_after(n.end_mark.index) if value.flow_style else None)
                     for n in value.value]
            styles = [n.style or "" for n in value.value]
            quote = next((s for s in styles if s), "") if styles else ""
            return ActionValue(key.value, value.start_mark.index, self.last_end(value),
                               "yaml-flow" if value.flow_style else "yaml-block", items,
                               [str(self.json(n)) for n in value.value],
                               value.start_mark.index + 1 if value.flow_style else None, quote)
        result = ActionValue(key.value, value.start_mark.index, value.end_mark.index,
                             "yaml-flow" if flow else "yaml-block", None,
                             [str(self.json(value))], quote=value.style or "", flow=flow)
        if not flow:
            if value.start_mark.line == key.start_mark.line:
                colon = text.index(":", key.end_mark.index)
                result.list_start = colon + 1
                result.list_indent = " " * (key.start_mark.column + self.offset)
            else:
                result.list_start = value.start_mark.index
                result.list_indent = indentation(text, value.start_mark.index)
        return result

    def comma_after(self, end: int) -> int | None:
        match = re.compile(r"[ \t\r\n]*,").match(self.text, end)
        return match.end() if match else None

    def last_end(self, node) -> int:
        """The end of a node's last character (block collections' marks run on to the next
        token)."""
        if _kind(node) == "scalar" or getattr(node, "flow_style", False):
            end = node.end_mark.index
        else:
            end = max(self.last_end(child) for child in self._children(node)) \
                if node.value else node.start_mark.index
        while end > node.start_mark.index and self.text[end - 1] in " \t\r\n":
            end -= 1
        return end

    # --- values -----------------------------------------------------------------------------

    def json(self, node, loose: bool = False) -> object:
        """The node as a JSON value: short-form tags as the long forms they stand for. Strict
        (loose=False): a repeated key or a merge key is an error."""
        tag = node.tag
        if tag.startswith("!") and not tag.startswith("!!"):
            inner = self.json(_untagged(node), loose)
            name = _intrinsic_name(tag)
            if name == "Fn::GetAtt" and isinstance(inner, str):
                inner = inner.split(".", 1)
            return {name: inner}
        kind = _kind(node)
        if kind == "map":
            result: dict = {}
            for key, value in node.value:
                name = key.value if _kind(key) == "scalar" else str(self.json(key, True))
                if not loose and (name in result or name == "<<"):
                    problem = "a merge key (<<)" if name == "<<" else f"the key {name!r} twice"
                    raise InputError(f"line {self.line(key)}: a mapping holds {problem}")
                result[name] = self.json(value, loose)
            return result
        if kind == "seq":
            return [self.json(child, loose) for child in node.value]
        return _scalar_value(node)


def _kind(node) -> str | None:
    if node is None:
        return None
    name = type(node).__name__
    return {"MappingNode": "map", "SequenceNode": "seq", "ScalarNode": "scalar"}.get(name)


def _get(node, key: str):
    if _kind(node) != "map":
        return None
    return next((value for k, value in node.value if _kind(k) == "scalar" and k.value == key),
                None)


def _scalar(node) -> str | None:
    return node.value if _kind(node) == "scalar" else None


def _intrinsic_name(tag: str) -> str:
    name = tag[1:]
    return name if name in ("Ref", "Condition") else f"Fn::{name}"


def _untagged(node):
    """The node as if it had no tag (its value read by the YAML core schema)."""
    import copy

    plain = copy.copy(node)
    kind = _kind(node)
    plain.tag = {"map": "tag:yaml.org,2002:map", "seq": "tag:yaml.org,2002:seq"}.get(
        kind, "tag:yaml.org,2002:str")
    return plain


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def _scalar_value(node) -> object:
    """A scalar as CloudFormation reads it: numbers kept as written (when JSON can write them),
    booleans and null as such, everything else (dates included) as its text."""
    tag, value = node.tag, node.value
    if tag.endswith(":bool"):
        return value.lower() == "true"
    if tag.endswith(":null"):
        return None
    if (tag.endswith(":int") or tag.endswith(":float")) and _JSON_NUMBER.fullmatch(value):
        return JsonNumber(value)
    return value
