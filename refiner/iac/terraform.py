"""Terraform: `.tf` (HCL), `.tf.json`, and plans from `terraform show -json`.

Policies are `policy` of `aws_iam_policy`, `aws_iam_role_policy`, `aws_iam_user_policy` and
`aws_iam_group_policy` (written with `jsonencode({...})` or as a JSON heredoc), and the
`statement` blocks of `data "aws_iam_policy_document"` (id: the Terraform address,
`aws_iam_policy.name` or `data.aws_iam_policy_document.name`). A data source's statement reads
as an IAM statement: sid, effect (Allow when absent), actions, not_actions, resources,
not_resources as Sid, Effect, Action, NotAction, Resource, NotResource; principals,
not_principals and condition blocks as lists of their attributes; the data source's version
(2012-10-17 when absent), policy_id and its source/override documents as top-level keys, so a
change to any of them is a change of the policy. Expressions are never evaluated: one that an
Action list uses makes the policy refused; elsewhere it is compared by its source text. In a
plan, `jsonencode` and variables are resolved: the policies are the JSON strings of
`planned_values` (and a data source's `json`)."""

from __future__ import annotations

import re

from ..errors import InputError
from ..jsontext import dumps, parse_json_text
from ..writeback import Node, locate
from . import hcl
from .edit import Item, indentation, line_number
from .model import (
    ActionValue,
    Located,
    StatementSpot,
    Structured,
    Template,
    TextDocument,
    action_refusal,
    finish,
    text_document_lines,
)

# The policy resources, and the size limit (refine.SIZE_LIMITS) that applies.
POLICY_RESOURCES = {"aws_iam_policy": "managed", "aws_iam_role_policy": "inline",
                    "aws_iam_user_policy": "user-inline", "aws_iam_group_policy": "group-inline"}
DOCUMENT_DATA = "aws_iam_policy_document"
# A data source statement's attributes and blocks, and the IAM keys they stand for.
STATEMENT_KEYS = {"sid": "Sid", "effect": "Effect", "actions": "Action",
                  "not_actions": "NotAction", "resources": "Resource",
                  "not_resources": "NotResource", "principals": "Principal",
                  "not_principals": "NotPrincipal", "condition": "Condition"}
DOCUMENT_KEYS = {"version": "Version", "policy_id": "Id"}
_INTERPOLATION = re.compile(r"(?<!\$)\$\{|(?<!%)%\{")


# --- .tf ------------------------------------------------------------------------------------

def read_hcl(path: str, text: str) -> Template:
    root = hcl.parse(text, path)
    policies = []
    context = "\n".join(text[block.start:block.end] for block in root.blocks
                        if block.type in ("variable", "locals"))
    for block in root.blocks:
        if block.type == "resource" and len(block.labels) == 2 and \
                block.labels[0] in POLICY_RESOURCES:
            address = ".".join(block.labels)
            attribute = block.attribute("policy")
            if attribute is not None:
                policies.append(_resource_policy(path, text, address,
                                                 POLICY_RESOURCES[block.labels[0]], attribute))
        elif block.type == "data" and len(block.labels) == 2 and block.labels[0] == DOCUMENT_DATA:
            policies.append(_data_document(path, text, f"data.{'.'.join(block.labels)}", block))
    return Template(path, "terraform", text, policies, context=context)


def _resource_policy(path: str, text: str, address: str, kind: str,
                     attribute: hcl.Attribute) -> Located:
    value = attribute.value
    line = line_number(text, value.start)
    located = Located(address, line, kind, hcl.to_json(value))
    if value.kind == "heredoc":
        start, end = value.token.content
        writer = TextDocument(start, end)
        located.writer, located.document_text = writer, writer.decode(text)
        if "%{" in located.document_text.replace("%%{", ""):
            return located.refuse(line, "the heredoc uses a template directive (%{...})")
        try:
            located.document = parse_json_text(located.document_text, address)
        except InputError as error:
            return located.refuse(line, f"the heredoc is not JSON ({error})")
        refusal = _text_action_refusal(located.document, text, writer)
        if refusal is not None:
            return located.refuse(*refusal)
        located.statement_lines = text_document_lines(text, writer)
        return finish(located, f"{path}: {address}")
    if value.kind == "call" and value.token.text == "jsonencode" and \
            value.items[0].kind == "object":
        return _jsonencode(path, text, located, value.items[0])
    return located.refuse(line, f"policy is `{_source(text, value)}`, not a document written "
                          "here (refine it where it is written)")


def _source(text: str, value: hcl.Value) -> str:
    source = " ".join(text[value.start:value.end].split())
    return source if len(source) <= 80 else source[:77] + "..."


def _jsonencode(path: str, text: str, located: Located, document: hcl.Value) -> Located:
    located.document = hcl.to_json(document)
    located.document_text = dumps(located.document, indent=2) + "\n"
    statement = document.get("Statement")
    if statement is None:
        return finish(located, f"{path}: {located.id}")
    if statement.kind == "tuple":
        objects, container = statement.items, "list"
    elif statement.kind == "object":
        objects, container = [statement], "single"
    else:
        return located.refuse(line_number(text, statement.start),
                              f"Statement is `{_source(text, statement)}`, not written here")
    spots = []
    for number, item in enumerate(objects):
        line = line_number(text, item.start)
        if item.kind != "object":
            return located.refuse(line, f"a statement is `{_source(text, item)}`")
        comma = statement.commas[number] if container == "list" else None
        spot = StatementSpot(item.start, item.end, line, None, Item(item.start, item.end, comma))
        for key in ("Action", "NotAction"):
            value = item.get(key)
            if value is None:
                continue
            refusal = _hcl_action_refusal(text, key, value)
            if refusal is not None:
                return located.refuse(*refusal)
            key_token = next(token for name, token, _ in item.members if name == key)
            spot.action = _hcl_action(text, key, value, key_token,
                                      multiline="\n" in text[item.start:item.end])
            spot.entry_lines = _entry_lines(text, value)
        spots.append(spot)
    located.writer = Structured(spots, container, "hcl",
                                statement.start + 1 if container == "list" else None)
    located.statement_lines = [(spot.line, spot.entry_lines) for spot in spots]
    return finish(located, f"{path}: {located.id}")


def _hcl_action_refusal(text: str, key: str, value: hcl.Value):
    entries = value.items if value.kind == "tuple" else [value]
    for entry in entries:
        if entry.kind != "string":
            if entry.kind in ("unresolved", "call"):
                reason = f"{key} uses the Terraform expression `{_source(text, entry)}`; " \
                    "refiner does not resolve it"
            else:
                reason = f"{key} holds `{_source(text, entry)}`, not a string"
            return line_number(text, entry.start), reason
    return None


def _hcl_action(text: str, key: str, value: hcl.Value, key_token: hcl.Token,
                multiline: bool) -> ActionValue:
    if value.kind == "tuple":
        items = [Item(v.start, v.end, comma) for v, comma in zip(value.items, value.commas,
                                                                 strict=True)]
        return ActionValue(key, value.start, value.end, "hcl", items,
                           [v.value for v in value.items], value.start + 1)
    action = ActionValue(key, value.start, value.end, "hcl", None, [value.value])
    if multiline:
        action.list_start = value.start
        action.list_indent = indentation(text, key_token.start)
    return action


def _entry_lines(text: str, value: hcl.Value) -> dict[str, int]:
    entries = value.items if value.kind == "tuple" else [value]
    return {v.value: line_number(text, v.start) for v in entries if v.kind == "string"}


def _text_action_refusal(document: object, text: str, writer: TextDocument):
    """(line, reason) when an action list of a JSON document held in Terraform text uses an
    interpolation."""
    if not isinstance(document, dict):
        return None
    statements = document.get("Statement")
    listed = statements if isinstance(statements, list) else [statements]
    lines = text_document_lines(text, writer) if isinstance(statements, list | dict) else []
    for number, statement in enumerate(listed):
        if not isinstance(statement, dict):
            continue
        for key in ("Action", "NotAction"):
            if key in statement:
                reason = action_refusal(statement[key], key)
                if reason is not None:
                    line = lines[number][0] if number < len(lines) else line_number(
                        text, writer.start)
                    return line, reason
    return None


def _data_document(path: str, text: str, address: str, block: hcl.Block) -> Located:
    line = line_number(text, block.start)
    located = Located(address, line, "managed")
    document: dict = {}
    for attribute in block.attributes:
        if attribute.name in ("for_each", "count", "provider", "depends_on"):
            continue
        document[DOCUMENT_KEYS.get(attribute.name, attribute.name)] = hcl.to_json(attribute.value)
    document.setdefault("Version", "2012-10-17")
    statements, spots, refusal = [], [], None
    for child in block.blocks:
        if child.type == "dynamic":
            refusal = refusal or (line_number(text, child.start),
                                  "a dynamic block: refiner does not expand it")
            document.setdefault("dynamic", []).append(text[child.start:child.end])
            continue
        if child.type != "statement":
            document.setdefault(child.type, []).append(_block_json(child))
            continue
        statement, spot, problem = _data_statement(text, child)
        statements.append(statement)
        spots.append(spot)
        refusal = refusal or problem
    document["Statement"] = statements
    return _structured_document(located, document, spots, refusal,
                                lambda: Structured(spots, "blocks"), f"{path}: {address}")


def _data_statement(text: str, block: hcl.Block):
    statement: dict = {}
    spot = StatementSpot(block.start, block.end, line_number(text, block.start), None)
    problem = None
    for attribute in block.attributes:
        key = STATEMENT_KEYS.get(attribute.name, attribute.name)
        statement[key] = hcl.to_json(attribute.value)
        if key in ("Action", "NotAction"):
            value = attribute.value
            found = _hcl_action_refusal(text, key, value) if value.kind == "tuple" else (
                line_number(text, value.start),
                f"{attribute.name} is `{_source(text, value)}`; refiner does not resolve it")
            if found is not None:
                problem = problem or found
                continue
            items = [Item(v.start, v.end, comma) for v, comma in zip(value.items, value.commas,
                                                                     strict=True)]
            spot.action = ActionValue(key, value.start, value.end, "hcl", items,
                                      [v.value for v in value.items], value.start + 1)
            spot.entry_lines = _entry_lines(text, value)
    for child in block.blocks:
        key = STATEMENT_KEYS.get(child.type, child.type)
        statement.setdefault(key, []).append(_block_json(child))
    statement.setdefault("Effect", "Allow")
    return statement, spot, problem


def _block_json(block: hcl.Block) -> dict:
    result: dict = {name: hcl.to_json(a.value) for a in block.attributes for name in [a.name]}
    for child in block.blocks:
        result.setdefault(child.type, []).append(_block_json(child))
    return result


# --- .tf.json -------------------------------------------------------------------------------

def read_tf_json(path: str, text: str, value: dict) -> Template:
    root = locate(text)
    policies = []
    for kind_name, mode in (("resource", "resource"), ("data", "data")):
        for type_name, name, body, node in _tf_json_blocks(value.get(kind_name),
                                                           root.members.get(kind_name)):
            if mode == "resource" and type_name in POLICY_RESOURCES and "policy" in body:
                policies.append(_tf_json_policy(path, text, f"{type_name}.{name}",
                                                POLICY_RESOURCES[type_name], body["policy"],
                                                node.members["policy"]))
            elif mode == "data" and type_name == DOCUMENT_DATA:
                policies.append(_tf_json_data(path, text, f"data.{type_name}.{name}", body, node))
    context = dumps({k: value.get(k) for k in ("variable", "locals")}, sort_keys=True)
    return Template(path, "terraform-json", text, policies, context=context)


def _tf_json_blocks(value, node: Node | None):
    """(type, name, body, body node) of `resource`/`data` in either JSON form (an object of
    types, or a list of them)."""
    if value is None or node is None:
        return
    pairs = list(zip(value, node.members, strict=True)) if isinstance(value, list) \
        else [(value, node)]
    for types, types_node in pairs:
        if not isinstance(types, dict):
            continue
        for type_name, names in types.items():
            if not isinstance(names, dict):
                continue
            for name, body in names.items():
                body_node = types_node.members[type_name].members[name]
                bodies = list(zip(body, body_node.members, strict=True)) if isinstance(body, list) \
                    else [(body, body_node)]
                for one, one_node in bodies:
                    if isinstance(one, dict):
                        yield type_name, name, one, one_node


def _tf_json_policy(path: str, text: str, address: str, kind: str, value: object,
                    node: Node) -> Located:
    line = line_number(text, node.start)
    located = Located(address, line, kind, value)
    if not isinstance(value, str):
        return located.refuse(line, "policy is not a string")
    if _INTERPOLATION.search(value):
        return located.refuse(line, f"policy is a Terraform expression ({_short(value)}); "
                              "refiner does not resolve it (verify the plan instead)")
    writer = TextDocument(node.start, node.end, "json-string")
    if not writer.faithful(text):
        writer.encoding = "json-string-ascii"
        if not writer.faithful(text):
            writer.encoding = "json-string"
    located.writer, located.document_text = writer, value
    try:
        located.document = parse_json_text(value, address)
    except InputError as error:
        return located.refuse(line, f"policy is not JSON ({error})")
    located.statement_lines = text_document_lines(text, writer)
    return finish(located, f"{path}: {address}")


def _short(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= 60 else value[:57] + "..."


def _tf_json_data(path: str, text: str, address: str, body: dict, node: Node) -> Located:
    line = line_number(text, node.start)
    located = Located(address, line, "managed")
    document = {DOCUMENT_KEYS.get(k, k): v for k, v in body.items()
                if k not in ("statement", "for_each", "count", "provider", "depends_on")}
    document.setdefault("Version", "2012-10-17")
    raw = body.get("statement", [])
    listed = raw if isinstance(raw, list) else [raw]
    statement_node = node.members.get("statement")
    nodes = [] if statement_node is None else (
        statement_node.members if isinstance(raw, list) else [statement_node])
    statements, spots, refusal = [], [], None
    for statement, statement_node in zip(listed, nodes, strict=True):
        statement_line = line_number(text, statement_node.start)
        if not isinstance(statement, dict):
            refusal = refusal or (statement_line, "a statement is not an object")
            statements.append(statement)
            continue
        converted = {STATEMENT_KEYS.get(k, k): v for k, v in statement.items()}
        converted.setdefault("Effect", "Allow")
        statements.append(converted)
        spot = StatementSpot(statement_node.start, statement_node.end, statement_line, None,
                             Item(statement_node.start, statement_node.end))
        for key in ("actions", "not_actions"):
            if key not in statement:
                continue
            value, value_node = statement[key], statement_node.members[key]
            iam_key = STATEMENT_KEYS[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                refusal = refusal or (line_number(text, value_node.start),
                                      f"{key} is not a list of strings")
                continue
            reason = action_refusal(value, iam_key)
            if reason is not None:
                refusal = refusal or (line_number(text, value_node.start), reason)
                continue
            items = [Item(n.start, n.end) for n in value_node.members]
            spot.action = ActionValue(iam_key, value_node.start, value_node.end, "json", items,
                                      list(value), value_node.start + 1)
            spot.entry_lines = {v: line_number(text, n.start)
                                for v, n in zip(value, value_node.members, strict=True)}
        spots.append(spot)
    document["Statement"] = statements
    return _structured_document(
        located, document, spots, refusal,
        lambda: Structured(spots, "list" if isinstance(raw, list) else "single", "json",
                           statement_node.start + 1 if isinstance(raw, list) and
                           statement_node is not None else None), f"{path}: {address}")


def _structured_document(located: Located, document: dict, spots: list, refusal, writer,
                         label: str) -> Located:
    """A document written in Terraform's own syntax, as read: refused with the first reason
    found, else with the writer that edits its Action lists in place."""
    located.document = document
    located.document_text = dumps(document, indent=2) + "\n"
    located.statement_lines = [(spot.line, spot.entry_lines) for spot in spots]
    if refusal is not None:
        return located.refuse(*refusal)
    located.writer = writer()
    return finish(located, label)


# --- plans ----------------------------------------------------------------------------------

def read_plan(path: str, text: str, value: dict) -> Template:
    root = locate(text)
    policies: dict[str, Located] = {}
    unknown = {change.get("address") for change in value.get("resource_changes") or []
               if isinstance(change, dict) and isinstance(change.get("change"), dict)
               and isinstance(change["change"].get("after_unknown"), dict)
               and change["change"]["after_unknown"].get("policy")}
    for section in ("planned_values", "prior_state"):
        module = value.get(section)
        module_node = root.members.get(section)
        if section == "prior_state" and isinstance(module, dict):
            module, module_node = module.get("values"), module_node.members.get("values")
        if not isinstance(module, dict):
            continue
        for resource, node in _plan_resources(module.get("root_module"),
                                              module_node.members.get("root_module")):
            address = resource.get("address")
            if not isinstance(address, str) or address in policies:
                continue
            if section == "prior_state" and resource.get("mode") != "data":
                continue  # what is deployed now is not what the plan makes
            values, values_node = resource.get("values"), node.members.get("values")
            if not isinstance(values, dict):
                continue
            kind = resource.get("type")
            if resource.get("mode") != "data" and kind in POLICY_RESOURCES and (
                    "policy" not in values or address in unknown):
                # Terraform leaves a value it learns only at apply out of planned_values.
                policies[address] = Located(address, line_number(text, node.start),
                                            POLICY_RESOURCES[kind], None).refuse(
                    line_number(text, node.start), "the policy is not known until apply")
                continue
            if resource.get("mode") == "data" and kind == DOCUMENT_DATA and "json" in values:
                policies[address] = _plan_document(path, text, address, "managed",
                                                   values["json"], values_node.members["json"])
            elif resource.get("mode") != "data" and kind in POLICY_RESOURCES and \
                    "policy" in values:
                policies[address] = _plan_document(path, text, address, POLICY_RESOURCES[kind],
                                                   values["policy"],
                                                   values_node.members["policy"])
    return Template(path, "terraform-plan", text, list(policies.values()))


def _plan_resources(module, node: Node | None):
    if not isinstance(module, dict) or node is None:
        return
    for resource, resource_node in zip(module.get("resources", []),
                                       node.members["resources"].members
                                       if "resources" in node.members else [], strict=False):
        if isinstance(resource, dict):
            yield resource, resource_node
    for child, child_node in zip(module.get("child_modules", []),
                                 node.members["child_modules"].members
                                 if "child_modules" in node.members else [], strict=False):
        yield from _plan_resources(child, child_node)


def _plan_document(path: str, text: str, address: str, kind: str, value: object,
                   node: Node) -> Located:
    line = line_number(text, node.start)
    located = Located(address, line, kind, value)
    if not isinstance(value, str):
        return located.refuse(line, "the policy is not known until apply")
    writer = TextDocument(node.start, node.end, "json-string")
    located.writer, located.document_text = writer, value
    try:
        located.document = parse_json_text(value, address)
    except InputError as error:
        return located.refuse(line, f"the policy is not JSON ({error})")
    statements = located.document.get("Statement") if isinstance(located.document, dict) else []
    located.statement_lines = [(line, {})] * (len(statements) if isinstance(statements, list)
                                              else 1)
    return finish(located, f"{path}: {address}")


def is_tf_json(value: object) -> bool:
    return isinstance(value, dict) and any(key in value for key in ("resource", "data")) \
        and not any(key in value for key in ("Statement", "Resources"))

