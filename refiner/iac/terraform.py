"""Terraform: `.tf` (HCL), `.tf.json`, and plans from `terraform show -json`.

Policies are `policy` of `aws_iam_policy`, `aws_iam_role_policy`, `aws_iam_user_policy` and
`aws_iam_group_policy` (written with `jsonencode({...})` or as a JSON heredoc), and the
`statement` blocks of `data "aws_iam_policy_document"` (id: the Terraform address,
`aws_iam_policy.name` or `data.aws_iam_policy_document.name`). A data source's statement reads
as an IAM statement: sid, effect (Allow when absent), actions, not_actions, resources,
not_resources as Sid, Effect, Action, NotAction, Resource, NotResource; principals,
not_principals and condition blocks as lists of their attributes; the data source's version
(2012-10-17 when absent), policy_id and its source/override documents as top-level keys, so a
change to any of them is a change of the policy; `&{` is `${` (an IAM policy variable) where
the provider renders it so (RENDERED; jsonencode and heredocs keep it as text). A heredoc and
a .tf.json string are templates: their `$${` and `%%{` are read as the `${` and `%{` of the
document Terraform makes, and written back escaped (a heredoc that interpolates is read as
written, and refused if it escapes too; a data source's .tf.json string that interpolates is
an expression). Expressions are never evaluated: one that an
Action list uses makes the policy refused; elsewhere it is compared by its source text. In a
plan, `jsonencode` and variables are resolved: the policies are the JSON strings of
`planned_values` (and a data source's `json`)."""

from __future__ import annotations

import re

from ..errors import InputError
from ..jsontext import dumps, parse_json_text
from ..writeback import Node, locate
from . import dynamic, hcl
from .edit import Item, indentation, line_number
from .model import (
    IDENTITY,
    RESOURCE,
    TRUST,
    UNKNOWN,
    ActionValue,
    Located,
    StatementSpot,
    Structured,
    Template,
    TextDocument,
    action_refusal,
    finish,
    template_string,
    text_document_lines,
)

# The policy resources, and the size limit (refine.SIZE_LIMITS) that applies.
POLICY_RESOURCES = {"aws_iam_policy": "managed", "aws_iam_role_policy": "inline",
                    "aws_iam_user_policy": "user-inline", "aws_iam_group_policy": "group-inline"}
# Every attribute that holds a policy document: resource type -> [(attribute, document type,
# size kind, whether the resource is only this policy: then its id is the address, else
# address.attribute)].
DOCUMENT_ATTRIBUTES: dict[str, list[tuple[str, str, str, bool]]] = {
    **{kind: [("policy", IDENTITY, size, True)] for kind, size in POLICY_RESOURCES.items()},
    "aws_ssoadmin_permission_set_inline_policy": [("inline_policy", IDENTITY, "inline", True)],
    "aws_iam_role": [("assume_role_policy", TRUST, "managed", False)],
    **{kind: [(attribute, RESOURCE, "managed", alone)] for kind, attribute, alone in (
        ("aws_s3_bucket_policy", "policy", True), ("aws_s3_bucket", "policy", False),
        ("aws_s3_access_point", "policy", False),
        ("aws_s3control_access_point_policy", "policy", True),
        ("aws_sqs_queue_policy", "policy", True), ("aws_sqs_queue", "policy", False),
        ("aws_sns_topic_policy", "policy", True), ("aws_sns_topic", "policy", False),
        ("aws_kms_key", "policy", False), ("aws_kms_key_policy", "policy", True),
        ("aws_kms_replica_key", "policy", False),
        ("aws_ecr_repository_policy", "policy", True),
        ("aws_ecr_registry_policy", "policy", True),
        ("aws_secretsmanager_secret_policy", "policy", True),
        ("aws_secretsmanager_secret", "policy", False),
        ("aws_api_gateway_rest_api_policy", "policy", True),
        ("aws_api_gateway_rest_api", "policy", False),
        ("aws_efs_file_system_policy", "policy", True),
        ("aws_opensearch_domain_policy", "access_policies", True),
        ("aws_opensearch_domain", "access_policies", False),
        ("aws_elasticsearch_domain_policy", "access_policies", True),
        ("aws_elasticsearch_domain", "access_policies", False),
        ("aws_cloudwatch_log_resource_policy", "policy_document", True),
        ("aws_backup_vault_policy", "policy", True),
        ("aws_glacier_vault", "access_policy", False),
        ("aws_lambda_layer_version_permission", "policy", False),
    )},
}
# Where a policy resource names its holder (principal_hint).
HOLDER_ATTRIBUTES = ("role", "user", "group", "permission_set_arn")
DOCUMENT_DATA = "aws_iam_policy_document"
# A data source statement's attributes and blocks, and the IAM keys they stand for.
STATEMENT_KEYS = {"sid": "Sid", "effect": "Effect", "actions": "Action",
                  "not_actions": "NotAction", "resources": "Resource",
                  "not_resources": "NotResource", "principals": "Principal",
                  "not_principals": "NotPrincipal", "condition": "Condition"}
DOCUMENT_KEYS = {"version": "Version", "policy_id": "Id"}
# The statement values in which aws_iam_policy_document renders `&{` as `${` (key, and the
# attribute of its blocks, or None for the value itself); never in actions, sid, a condition's
# test or variable, policy_id or the source and override documents.
RENDERED = {"Resource": None, "NotResource": None, "Principal": "identifiers",
            "NotPrincipal": "identifiers", "Condition": "values"}
META_ARGUMENTS = ("for_each", "count", "provider", "depends_on", "lifecycle")
_INTERPOLATION = re.compile(r"(?<!\$)\$\{|(?<!%)%\{")
# References an expression makes: var.x, local.x, data.T.N, module.M, each, count, a resource
# T.N (its attributes), and files read by file()/templatefile().
_REFERENCE = re.compile(
    r"(?<![\w.\-\"])(?:(var|local|module)\.([A-Za-z_][\w-]*)|(data)\.([A-Za-z_][\w-]*)\."
    r"([A-Za-z_][\w-]*)|(each|count|path|terraform)\b|([a-z][a-z0-9]*_[a-z0-9_]+)\.([A-Za-z_][\w-]*))")
_FILE_CALL = re.compile(r"\b(?:file|templatefile|filebase64)\(\s*\"([^\"]*)\"")
_DOCUMENT_REFERENCE = re.compile(r"\bdata\.aws_iam_policy_document\.([A-Za-z_][\w-]*)"
                                 r"(?:\[[^\]]*\])?\.(?:json|minified_json)\b")


# --- .tf ------------------------------------------------------------------------------------

def read_hcl(path: str, text: str) -> Template:
    root = hcl.parse(text, path)
    context = "\n".join(text[block.start:block.end] for block in root.blocks
                        if block.type in ("variable", "locals"))
    template = Template(path, "terraform", text, [], context=context)
    inputs = Inputs.of_hcl(text, root)
    kinds = DocumentKinds()
    locals_ = {a.name: a.value for block in root.blocks if block.type == "locals"
               for a in block.attributes}
    for block in root.blocks:
        address = ".".join(block.labels)
        if block.type == "module" and block.labels:
            kinds.consumed_by_module(text[block.start:block.end])
        if block.type == "data" and len(block.labels) == 2 and block.labels[0] == DOCUMENT_DATA:
            located = _data_document(path, text, f"data.{address}", block, locals_)
            template.policies.append(inputs.complete(located, _meta(block), f"data.{address}"))
            kinds.data_sources[block.labels[1]] = located
            continue
        if block.type != "resource" or len(block.labels) != 2:
            continue
        type_name = block.labels[0]
        for name, document_type, size_kind, alone in DOCUMENT_ATTRIBUTES.get(type_name, []):
            attribute = block.attribute(name)
            if attribute is None:
                continue
            located = _resource_policy(path, text, address if alone else f"{address}.{name}",
                                       size_kind, attribute)
            located.document_type = document_type
            located.principal_hint = address if type_name == "aws_iam_role" else \
                _holder(text, block)
            kinds.consumed(text[attribute.value.start:attribute.value.end], document_type,
                           located.principal_hint)
            template.policies.append(inputs.complete(located, _meta(block), address))
        if type_name == "aws_iam_role":
            template.policies += [inputs.complete(located, _meta(block), address) for located in
                                  _inline_policies(path, text, address, block, template)]
    kinds.settle()
    template.definitions = inputs.definitions
    return template


def _meta(block: hcl.Block) -> set[str]:
    return {name for name in ("count", "for_each") if block.attribute(name) is not None}


def _inline_policies(path: str, text: str, address: str, block: hcl.Block,
                     template: Template) -> list[Located]:
    """A role's inline_policy blocks (id address.inline_policy[NAME], or [N] when the name is
    not a literal); an empty block (which removes the role's inline policies) holds none."""
    found = []
    blocks = [child for child in block.blocks if child.type == "inline_policy"]
    names = [child.attribute("name") for child in blocks]
    literal = [n.value.value if n is not None and n.value.kind == "string" else None
               for n in names]
    unique = len(set(literal)) == len(literal) and None not in literal
    for number, child in enumerate(blocks):
        attribute = child.attribute("policy")
        if attribute is None:
            continue
        key = literal[number] if unique else number
        located = _resource_policy(path, text, f"{address}.inline_policy[{key}]", "inline",
                                   attribute)
        located.principal_hint = address
        found.append(located)
    for child in block.blocks:
        if child.type == "dynamic" and child.labels[:1] == ["inline_policy"]:
            template.unknowns.append((line_number(text, child.start), f"{address}: a dynamic "
                                      "inline_policy block: refiner does not expand it"))
    return found


def _holder(text: str, block: hcl.Block) -> str | None:
    """The role, user, group or permission set a policy resource names: a literal name, or
    the address of the resource it references."""
    for name in HOLDER_ATTRIBUTES:
        attribute = block.attribute(name)
        if attribute is None:
            continue
        if attribute.value.kind == "string":
            return attribute.value.value
        match = re.fullmatch(r"([a-z][a-z0-9_]*\.[A-Za-z_][\w-]*)\.\w+",
                             text[attribute.value.start:attribute.value.end].strip())
        return match.group(1) if match else None
    return None


class DocumentKinds:
    """What a data source's document is decided by what uses it: the attribute whose value
    holds its .json (a role's assume_role_policy: trust; a bucket's policy: resource; an
    aws_iam_policy: identity), through source/override documents too. One used by a module
    is of unknown kind. One used nowhere in the file is an identity policy when no statement
    names a Principal (trust and resource policies must), else trust when every action is
    an sts:AssumeRole* one, else resource."""

    def __init__(self):
        self.data_sources: dict[str, Located] = {}
        self.uses: dict[str, list[tuple[str, str | None]]] = {}

    def consumed(self, source: str, document_type: str, hint: str | None) -> None:
        for match in _DOCUMENT_REFERENCE.finditer(source):
            self.uses.setdefault(match.group(1), []).append((document_type, hint))

    def consumed_by_module(self, source: str) -> None:
        self.consumed(source, UNKNOWN, None)

    def settle(self) -> None:
        for _ in range(len(self.data_sources) + 1):  # source documents of source documents
            for name, located in self.data_sources.items():
                uses = self.uses.get(name)
                if uses:
                    located.document_type = _one_kind({kind for kind, _ in uses})
                    hints = {hint for _, hint in uses}
                    located.principal_hint = hints.pop() if len(hints) == 1 else None
                else:
                    located.document_type = kind_by_content(located.document)
                for key in ("source_policy_documents", "override_policy_documents",
                            "source_json", "override_json"):
                    value = located.document.get(key) if isinstance(located.document,
                                                                     dict) else None
                    if value is not None:
                        self.consumed(dumps(value), located.document_type,
                                      located.principal_hint)


def _one_kind(kinds: set[str]) -> str:
    if len(kinds) == 1:
        return next(iter(kinds))
    non_identity = kinds - {IDENTITY}
    return next(iter(non_identity)) if len(non_identity) == 1 else UNKNOWN


def kind_by_content(document: object) -> str:
    """A document's kind when nothing says what uses it: see DocumentKinds."""
    statements = document.get("Statement") if isinstance(document, dict) else None
    listed = statements if isinstance(statements, list) else [statements]
    listed = [s for s in listed if isinstance(s, dict)]
    if not any("Principal" in s or "NotPrincipal" in s for s in listed):
        return IDENTITY
    actions = [a for s in listed for a in (s.get("Action") if isinstance(s.get("Action"), list)
                                           else [s.get("Action")])]
    if actions and all(isinstance(a, str) and a.lower().startswith(
            ("sts:assumerole", "sts:tagsession", "sts:setsourceidentity", "sts:setcontext"))
            for a in actions):
        return TRUST
    return RESOURCE


class Inputs:
    """What each document's expressions read (var., local., data., module., each, count,
    other resources, files), closed over what locals and data sources read, and the
    definitions of those names as written in the file."""

    def __init__(self):
        self.definitions: dict[str, str] = {}
        self.reads: dict[str, set[str]] = {}

    @classmethod
    def of_hcl(cls, text: str, root: hcl.Block) -> Inputs:
        inputs = cls()
        for block in root.blocks:
            source = text[block.start:block.end]
            if block.type == "locals":
                for attribute in block.attributes:
                    inputs.define(f"local.{attribute.name}", text[attribute.start:attribute.end])
            elif block.type == "variable" and block.labels:
                inputs.define(f"var.{block.labels[0]}", source)
            elif block.type in ("data", "module") and block.labels:
                inputs.define(f"{block.type}.{'.'.join(block.labels)}", source)
            elif block.type == "resource" and len(block.labels) == 2:
                address = ".".join(block.labels)
                documents = {name for name, *_ in DOCUMENT_ATTRIBUTES.get(block.labels[0], [])}
                kept = [text[a.start:a.end] for a in block.attributes
                        if a.name not in documents] + \
                    [text[b.start:b.end] for b in block.blocks if b.type != "inline_policy"]
                inputs.define(address, "\n".join(kept))
                for name in ("count", "for_each"):
                    attribute = block.attribute(name)
                    if attribute is not None:
                        inputs.define(f"{address}.{name}", text[attribute.start:attribute.end])
        return inputs

    @classmethod
    def of_tf_json(cls, value: dict) -> Inputs:
        inputs = cls()
        for section, prefix in (("variable", "var"), ("locals", "local"), ("module", "module")):
            for entry in value.get(section) if isinstance(value.get(section), list) \
                    else [value.get(section)]:
                for name, definition in (entry.items() if isinstance(entry, dict) else ()):
                    if name != "//":
                        inputs.define(f"{prefix}.{name}", dumps(definition, sort_keys=True))
        for section in ("resource", "data"):
            for type_name, name, body in _tf_json_bodies(value.get(section)):
                address = f"{'data.' if section == 'data' else ''}{type_name}.{name}"
                documents = {n for n, *_ in DOCUMENT_ATTRIBUTES.get(type_name, [])} | \
                    {"inline_policy"}
                inputs.define(address, dumps({k: v for k, v in body.items()
                                              if k not in documents}, sort_keys=True))
                for meta in ("count", "for_each"):
                    if meta in body:
                        inputs.define(f"{address}.{meta}", dumps(body[meta]))
        return inputs

    def define(self, name: str, source: str) -> None:
        self.definitions[name] = source
        self.reads[name] = references(source)

    def complete(self, located: Located, meta: set[str], address: str) -> Located:
        """located's inputs; meta: the meta-arguments (count, for_each) its block has."""
        read = set()
        stack = [located.document]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if set(node) == {"terraform"} and isinstance(node["terraform"], str):
                    read |= references(node["terraform"])
                else:
                    stack += list(node.values())
            elif isinstance(node, list):
                stack += node
            elif isinstance(node, str) and _INTERPOLATION.search(node):
                read |= references(node)
        read |= {f"{address}.{name}" for name in meta}
        read = {f"{address}.for_each" if name == "each" else f"{address}.count"
                if name == "count" else name for name in read}
        located.inputs = self.closed((read | located.inputs) - {address, f"data.{address}"})
        return located

    def closed(self, names: set[str]) -> set[str]:
        result, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name not in result and self.meaningful(name):
                result.add(name)
                todo += self.reads.get(name, ())
        return result

    def meaningful(self, name: str) -> bool:
        """Whether a name read is an input: not another block's each/count, nor a dynamic
        block's iterator (which reads like a resource's attribute)."""
        return name.startswith(("var.", "local.", "module.", "data.", "file:", "aws_")) or \
            name in self.definitions


def references(source: str) -> set[str]:
    """The names a Terraform expression (or a block's source) reads."""
    found = set()
    for match in _REFERENCE.finditer(source):
        kind, name, _, data_type, data_name, special, resource_type, resource_name = \
            match.groups()
        if kind:
            found.add(f"{kind}.{name}")
        elif data_type:
            found.add(f"data.{data_type}.{data_name}")
        elif special in ("each", "count"):
            found.add(special)
        elif resource_type:
            found.add(f"{resource_type}.{resource_name}")
    for match in _FILE_CALL.finditer(source):
        found.add("file:" + re.sub(r"\$\{path\.(?:module|root|cwd)\}/", "", match.group(1)))
    return found


def _resource_policy(path: str, text: str, address: str, kind: str,
                     attribute: hcl.Attribute) -> Located:
    value = attribute.value
    line = line_number(text, value.start)
    located = Located(address, line, kind, hcl.to_json(value))
    if value.kind == "heredoc":
        start, end = value.token.content
        raw = text[start:end]
        if "%{" in raw.replace("%%{", ""):
            return located.refuse(line, "the heredoc uses a template directive (%{...})")
        if value.value is None and ("$${" in raw or "%%{" in raw):
            return located.refuse(line, "the heredoc both interpolates and escapes `${` (or "
                                  "`%{`); refiner does not render it")
        writer = TextDocument(start, end, template=value.value is not None)
        located.writer, located.document_text = writer, writer.decode(text)
        try:
            located.document = parse_json_text(located.document_text, address)
        except InputError as error:
            return located.refuse(line, f"the heredoc is not JSON ({error})")
        if value.value is None:  # Terraform interpolates it: its ${...} are its own
            interpolated = _interpolated(located.document)
            if interpolated is None:
                located.document = {"terraform": value.token.text}
                return located.refuse(line, "a key of the heredoc's document interpolates: "
                                      "refiner does not resolve it")
            located.document = interpolated
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


def _interpolated(value: object) -> object:
    """A document of a heredoc that interpolates, as Terraform makes it: a string with a
    template sequence (`${...}`, `%{...}`) is an expression ({"terraform": its text}), not the
    policy variable the same text is in a document Terraform does not interpolate (a heredoc
    or jsonencode's `$${local.x}`); None when an object's key interpolates (the key is not
    known)."""
    if isinstance(value, str):
        return {"terraform": value} if _INTERPOLATION.search(value) else value
    if isinstance(value, list):
        items = [_interpolated(item) for item in value]
        return None if any(item is None for item in items) else items
    if isinstance(value, dict):
        if any(_INTERPOLATION.search(key) for key in value):
            return None
        members = {key: _interpolated(item) for key, item in value.items()}
        return None if any(item is None for item in members.values()) else members
    return value


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


def _data_document(path: str, text: str, address: str, block: hcl.Block,
                   locals_: dict[str, hcl.Value] | None = None) -> Located:
    line = line_number(text, block.start)
    located = Located(address, line, "managed")
    document: dict = {}
    for attribute in block.attributes:
        if attribute.name in META_ARGUMENTS:
            continue
        document[DOCUMENT_KEYS.get(attribute.name, attribute.name)] = hcl.to_json(attribute.value)
    document.setdefault("Version", "2012-10-17")
    statements, spots, refusal = [], [], None
    made = []  # statements a dynamic block makes: read, not written by refine
    for child in block.blocks:
        if child.type == "dynamic":
            expanded = _dynamic(text, child, locals_ or {}, located)
            if expanded is None:
                document.setdefault("dynamic", []).append(text[child.start:child.end])
            elif child.labels[:1] == ["statement"]:
                made += [_expanded_statement(one) for one in expanded]
            else:
                for one in expanded:
                    document.setdefault(one.type, []).append(_expanded_json(one))
            continue
        if child.type != "statement":
            document.setdefault(child.type, []).append(_block_json(child))
            continue
        statement, spot, problem = _data_statement(text, child, locals_ or {}, located)
        statements.append(statement)
        spots.append(spot)
        refusal = refusal or problem
    written = statements + made
    # Version 2008-10-17: the provider renders nothing (it refuses `&{`, see _unrendered).
    expressions = document.get("Version") != "2008-10-17"
    document["Statement"] = [_rendered(statement, expressions) for statement in written]
    refusal = refusal or _unrendered(document, written, line)
    if made:
        located.read_only = "statements made by a dynamic block (refine the literal they " \
            "come from)"
    return _structured_document(located, document, spots, refusal,
                                lambda: Structured(spots, "blocks"), f"{path}: {address}")


def _dynamic(text: str, block: hcl.Block, locals_: dict[str, hcl.Value],
             located: Located) -> list | None:
    """The blocks a dynamic block makes, or None (then the block is one of located's
    unknowns, and what its for_each and content read are inputs)."""
    try:
        return dynamic.expand(text, block, locals_)
    except dynamic.NotLiteral as why:
        kind = block.labels[0] if block.labels else "?"
        located.unknowns.append((line_number(text, block.start), f"the dynamic \"{kind}\" "
                                 f"block: {why}; refiner does not expand it"))
        located.inputs |= references(text[block.start:block.end])
        return None


def _expanded_statement(expanded) -> dict:
    statement = {STATEMENT_KEYS.get(k, k): v for k, v in expanded.attributes.items()}
    for child in expanded.blocks:
        statement.setdefault(STATEMENT_KEYS.get(child.type, child.type), []).append(
            _expanded_json(child))
    statement.setdefault("Effect", "Allow")
    return statement


def _expanded_json(expanded) -> dict:
    result = dict(expanded.attributes)
    for child in expanded.blocks:
        result.setdefault(child.type, []).append(_expanded_json(child))
    return result


def _data_statement(text: str, block: hcl.Block, locals_: dict[str, hcl.Value],
                    located: Located):
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
        if child.type == "dynamic":  # principals or condition blocks made by for_each
            expanded = _dynamic(text, child, locals_, located)
            if expanded is None:
                statement.setdefault("dynamic", []).append(text[child.start:child.end])
            for one in expanded or []:
                statement.setdefault(STATEMENT_KEYS.get(one.type, one.type), []).append(
                    _expanded_json(one))
            continue
        key = STATEMENT_KEYS.get(child.type, child.type)
        statement.setdefault(key, []).append(_block_json(child))
    statement.setdefault("Effect", "Allow")
    return statement, spot, problem


def _rendered(statement: object, expressions: bool = True) -> object:
    """A data source's statement as the provider renders it: in RENDERED's values `&{` is
    `${`, an IAM policy variable (written so that Terraform does not take it for its own
    interpolation). An expression ({"terraform": source}) there is compared by its source,
    as rendered (expressions: the document's version may be 2012-10-17): its value's `&{`
    too is `${` once deployed, so it is not the same expression in a jsonencode, where the
    value is kept as it is."""
    if not isinstance(statement, dict):
        return statement
    rendered = dict(statement)
    for key, inner in RENDERED.items():
        if key not in rendered:
            continue
        value = rendered[key]
        if inner is None:
            rendered[key] = _ampersands(value, expressions)
        elif isinstance(value, (dict, list)):  # a block, or a list of blocks
            blocks = [{**b, inner: _ampersands(b[inner], expressions)}
                      if isinstance(b, dict) and inner in b else b
                      for b in (value if isinstance(value, list) else [value])]
            rendered[key] = blocks if isinstance(value, list) else blocks[0]
    return rendered


def _ampersands(value: object, expressions: bool = True) -> object:
    if isinstance(value, str):
        return value.replace("&{", "${")
    if isinstance(value, list):
        return [_ampersands(item, expressions) for item in value]
    if expressions and isinstance(value, dict) and set(value) == {"terraform"}:
        return {"terraform": f'replace({value["terraform"]}, "&{{", "${{")'}
    return value


def _template_rendered(value: object) -> object:
    """A value of Terraform's JSON syntax, whose strings are templates, as Terraform makes it:
    `$${` and `%%{` are `${` and `%{`; a string that interpolates is an expression, kept as
    its source ({"terraform": source}, as .tf reads it): made, it could not be told from one
    whose `$${local.x}` is a policy variable's text."""
    if isinstance(value, str):
        return {"terraform": value} if _INTERPOLATION.search(value) else template_string(value)
    if isinstance(value, list):
        return [_template_rendered(item) for item in value]
    if isinstance(value, dict):
        return {key: _template_rendered(item) for key, item in value.items()}
    return value


def _unrendered(document: dict, written: list, line: int) -> tuple[int, str] | None:
    """Why the provider would not render a data source whose `&{` it renders: version
    2008-10-17 (it refuses `&{` then, so nothing is deployed)."""
    if document.get("Version") == "2008-10-17" and document["Statement"] != written:
        return (line, "`&{` in a data source of version 2008-10-17: the provider refuses to "
                "render it")
    return None


def _block_json(block: hcl.Block) -> dict:
    result: dict = {name: hcl.to_json(a.value) for a in block.attributes for name in [a.name]}
    for child in block.blocks:
        result.setdefault(child.type, []).append(_block_json(child))
    return result


# --- .tf.json -------------------------------------------------------------------------------

def read_tf_json(path: str, text: str, value: dict) -> Template:
    root = locate(text)
    context = dumps({k: value.get(k) for k in ("variable", "locals")}, sort_keys=True)
    template = Template(path, "terraform-json", text, [], context=context)
    inputs = Inputs.of_tf_json(value)
    kinds = DocumentKinds()
    for module in _tf_json_bodies(value.get("module"), named=False):
        kinds.consumed_by_module(dumps(module))
    for kind_name in ("data", "resource"):
        for type_name, name, body, node in _tf_json_blocks(value.get(kind_name),
                                                           root.members.get(kind_name)):
            address = f"{type_name}.{name}"
            meta = {key for key in ("count", "for_each") if key in body}
            if kind_name == "data":
                if type_name == DOCUMENT_DATA:
                    located = _tf_json_data(path, text, f"data.{address}", body, node)
                    template.policies.append(inputs.complete(located, meta, f"data.{address}"))
                    kinds.data_sources[name] = located
                continue
            for attribute, document_type, size_kind, alone in \
                    DOCUMENT_ATTRIBUTES.get(type_name, []):
                if attribute not in body:
                    continue
                located = _tf_json_policy(path, text, address if alone else
                                          f"{address}.{attribute}", size_kind, body[attribute],
                                          node.members[attribute])
                located.document_type = document_type
                holder = next((body[key] for key in HOLDER_ATTRIBUTES if key in body), None)
                located.principal_hint = address if type_name == "aws_iam_role" else \
                    _holder_of_text(holder)
                kinds.consumed(dumps(body[attribute]), document_type, located.principal_hint)
                template.policies.append(inputs.complete(located, meta, address))
            if type_name == "aws_iam_role" and "inline_policy" in body:
                raw = body["inline_policy"]
                entries = list(zip(raw, node.members["inline_policy"].members, strict=True)) \
                    if isinstance(raw, list) else [(raw, node.members["inline_policy"])]
                for number, (entry, entry_node) in enumerate(entries):
                    if not isinstance(entry, dict) or "policy" not in entry:
                        continue
                    key = entry.get("name") if isinstance(entry.get("name"), str) and \
                        "${" not in entry["name"] else number
                    located = _tf_json_policy(path, text, f"{address}.inline_policy[{key}]",
                                              "inline", entry["policy"],
                                              entry_node.members["policy"])
                    located.principal_hint = address
                    template.policies.append(inputs.complete(located, meta, address))
    kinds.settle()
    template.definitions = inputs.definitions
    return template


BLOCK_KEYS = ("principals", "not_principals", "condition")


def _uncommented(block: object) -> object:
    """A block's body in Terraform's JSON syntax without its "//" comment keys (a block
    written as a list of bodies: each of them)."""
    if isinstance(block, list):
        return [_uncommented(one) for one in block]
    if isinstance(block, dict):
        return {key: value for key, value in block.items() if key != "//"}
    return block


def _holder_of_text(value: object) -> str | None:
    """A holder written in .tf.json: a literal name, or "${T.N.attr}" of a resource."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\$\{([a-z][a-z0-9_]*\.[A-Za-z_][\w-]*)\.\w+\}", value)
    return match.group(1) if match else None if "${" in value else value


def _tf_json_bodies(value, named: bool = True):
    """(type, name, body) of resource/data sections, or the bodies of module blocks
    (named=False), in either JSON form; "//" keys are comments."""
    for types in value if isinstance(value, list) else [value]:
        if not isinstance(types, dict):
            continue
        for type_name, names in types.items():
            if type_name == "//":
                continue
            if not named:
                yield names
                continue
            if not isinstance(names, dict):
                continue
            for name, body in names.items():
                for one in body if isinstance(body, list) else [body]:
                    if name != "//" and isinstance(one, dict):
                        yield type_name, name, one


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
            if not isinstance(names, dict) or type_name == "//":
                continue
            for name, body in names.items():
                if name == "//":  # a comment, in Terraform's JSON syntax
                    continue
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
    writer = TextDocument(node.start, node.end, "json-string", template=True)
    if not writer.faithful(text):
        writer.encoding = "json-string-ascii"
        if not writer.faithful(text):
            writer.encoding = "json-string"
    located.writer, located.document_text = writer, writer.decode(text)
    try:
        located.document = parse_json_text(located.document_text, address)
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
    body = _uncommented(body)
    if "dynamic" in body:
        located.unknowns.append((line_number(text, node.members["dynamic"].start),
                                 "a dynamic block: refiner does not expand it"))
        located.inputs |= references(dumps(body["dynamic"]))
    document = {DOCUMENT_KEYS.get(k, k): v for k, v in body.items()
                if k not in ("statement", *META_ARGUMENTS)}
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
        converted = {STATEMENT_KEYS.get(k, k): _uncommented(v) if k in BLOCK_KEYS else v
                     for k, v in statement.items() if k != "//"}
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
    expressions = document.get("Version") != "2008-10-17"
    document["Statement"] = [_rendered(_template_rendered(statement), expressions)
                             for statement in statements]
    refusal = refusal or _unrendered(document, statements, line)
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
    if refusal is None and not document.get("Statement") and located.unknowns:
        refusal = located.unknowns[0]  # every statement is made by a dynamic block
    if refusal is not None:
        return located.refuse(*refusal)
    located.writer = writer()
    return finish(located, label)


# --- plans ----------------------------------------------------------------------------------

def read_plan(path: str, text: str, value: dict) -> Template:
    root = locate(text)
    policies: dict[str, Located] = {}
    unknown = {change.get("address"): change["change"]["after_unknown"]
               for change in value.get("resource_changes") or []
               if isinstance(change, dict) and isinstance(change.get("change"), dict)
               and isinstance(change["change"].get("after_unknown"), dict)}
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
            if resource.get("mode") == "data":
                if kind == DOCUMENT_DATA and "json" in values:
                    located = _plan_document(path, text, address, "managed", values["json"],
                                             values_node.members["json"])
                    located.document_type = kind_by_content(located.document)
                    policies[address] = located
                continue
            later = unknown.get(address) or {}
            for attribute, document_type, size_kind, alone in DOCUMENT_ATTRIBUTES.get(kind, []):
                policy_id = address if alone else f"{address}.{attribute}"
                if values.get(attribute) in (None, "") or later.get(attribute):
                    if later.get(attribute) or (alone and document_type == IDENTITY):
                        # Terraform leaves a value it learns only at apply out of
                        # planned_values.
                        located = Located(policy_id, line_number(text, node.start), size_kind)
                        policies[policy_id] = located.refuse(
                            located.line, "the policy is not known until apply")
                        located.document_type = document_type
                    continue
                located = _plan_document(path, text, policy_id, size_kind, values[attribute],
                                         values_node.members[attribute])
                located.document_type = document_type
                policies[policy_id] = located
            if kind == "aws_iam_role" and isinstance(values.get("inline_policy"), list):
                for number, (entry, entry_node) in enumerate(zip(
                        values["inline_policy"], values_node.members["inline_policy"].members,
                        strict=True)):
                    if not isinstance(entry, dict) or not entry.get("policy"):
                        continue
                    key = entry.get("name") if isinstance(entry.get("name"), str) else number
                    policy_id = f"{address}.inline_policy[{key}]"
                    located = _plan_document(path, text, policy_id, "inline", entry["policy"],
                                             entry_node.members["policy"])
                    located.principal_hint = address
                    policies[policy_id] = located
            if later.get("inline_policy"):
                policies[f"{address}.inline_policy"] = Located(
                    f"{address}.inline_policy", line_number(text, node.start), "inline").refuse(
                    line_number(text, node.start), "the inline policies are not known until apply")
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

