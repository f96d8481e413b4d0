"""CloudFormation templates, JSON and YAML: every identity-policy document, where cfn-lint looks.

`AWS::IAM::Role|User|Group` `Properties.Policies[].PolicyDocument` (id `Logical.Policies[N]`),
`PolicyDocument` of `AWS::IAM::ManagedPolicy`, `Policy`, `RolePolicy`, `UserPolicy`,
`GroupPolicy`, and `AWS::SSO::PermissionSet` `InlinePolicy` (id: the logical id); a document
may be written as a JSON string. YAML is read with ruamel.yaml's composer, which keeps every
node's position and its tag: short forms (`!Sub`, `!Ref`, `!GetAtt`, `!If`, ...) read as the
long forms they stand for (`{"Fn::Sub": ...}`), and are never resolved."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputError
from ..jsontext import JsonNumber, dumps, parse_json_text
from ..writeback import Node, locate
from .edit import Item, indentation, line_end, line_number
from .model import (
    ACTION_KEYS,
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
# Who a policy resource names as its holder (principal_hint), by property.
HOLDER_KEYS = ("RoleName", "UserName", "GroupName", "Roles", "Users", "Groups")
# Trust policies: who may assume the role.
TRUST_DOCUMENTS = {"AWS::IAM::Role": "AssumeRolePolicyDocument",
                   "AWS::Serverless::Function": "AssumeRolePolicyDocument",
                   "AWS::Serverless::StateMachine": "AssumeRolePolicyDocument"}
# Resource policies: who may use the resource. A resource that is only its policy is named by
# its logical id; a property of a larger resource by Logical.Property.
RESOURCE_DOCUMENTS = {
    "AWS::S3::BucketPolicy": ("PolicyDocument", True),
    "AWS::S3::AccessPoint": ("Policy", False),
    "AWS::S3Express::BucketPolicy": ("PolicyDocument", True),
    "AWS::SQS::QueuePolicy": ("PolicyDocument", True),
    "AWS::SQS::QueueInlinePolicy": ("PolicyDocument", True),
    "AWS::SNS::TopicPolicy": ("PolicyDocument", True),
    "AWS::SNS::TopicInlinePolicy": ("PolicyDocument", True),
    "AWS::KMS::Key": ("KeyPolicy", False),
    "AWS::KMS::ReplicaKey": ("KeyPolicy", False),
    "AWS::ApiGateway::RestApi": ("Policy", False),
    "AWS::ECR::Repository": ("RepositoryPolicyText", False),
    "AWS::ECR::RegistryPolicy": ("PolicyText", True),
    "AWS::SecretsManager::ResourcePolicy": ("ResourcePolicy", True),
    "AWS::EFS::FileSystem": ("FileSystemPolicy", False),
    "AWS::OpenSearchService::Domain": ("AccessPolicies", False),
    "AWS::Elasticsearch::Domain": ("AccessPolicies", False),
    "AWS::Logs::ResourcePolicy": ("PolicyDocument", True),
    "AWS::Backup::BackupVault": ("AccessPolicy", False),
}
SAM_FUNCTIONS = ("AWS::Serverless::Function", "AWS::Serverless::StateMachine")
# Transforms refiner reads the result of (SAM's resources, language extensions' Fn::ForEach
# named as unknown); any other is a macro that may rewrite the template.
KNOWN_TRANSFORMS = ("AWS::Serverless-2016-10-31", "AWS::LanguageExtensions")


@dataclass
class Spot:
    """Where a document is under a resource's Properties (path of keys and indices), what
    it is, and: a refusal (the entry is no document), or a value-only document (a SAM
    policy template expanded, an AWS managed policy by name or ARN) that has no writer."""

    id: str
    path: tuple
    size_kind: str
    document_type: str = IDENTITY
    hint: str | None = None
    refusal: str | None = None
    value: object = None  # a value-only document
    read_only: str | None = None
    managed_arn: str | None = None


def document_spots(logical: str, kind: str, properties: dict) -> list[Spot]:
    """Every policy document a resource of this Type holds, read from its Properties as a
    JSON value (intrinsic functions as long-form objects)."""
    spots: list[Spot] = []
    if kind in INLINE_LISTS and "Policies" in properties:
        spots += _inline_list(logical, properties["Policies"], INLINE_LISTS[kind])
    if kind in DOCUMENTS and DOCUMENTS[kind][0] in properties:
        key, size_kind = DOCUMENTS[kind]
        spots.append(Spot(logical, (key,), size_kind, hint=_holder(properties)))
    if kind in TRUST_DOCUMENTS and TRUST_DOCUMENTS[kind] in properties:
        key = TRUST_DOCUMENTS[kind]
        spots.append(Spot(f"{logical}.{key}", (key,), "managed", TRUST, logical))
    if kind in RESOURCE_DOCUMENTS and RESOURCE_DOCUMENTS[kind][0] in properties:
        key, alone = RESOURCE_DOCUMENTS[kind]
        spots.append(Spot(logical if alone else f"{logical}.{key}", (key,), "managed", RESOURCE))
    if kind in SAM_FUNCTIONS and "Policies" in properties:
        spots += _sam_policies(logical, properties["Policies"])
    return spots


def _inline_list(logical: str, entries: object, size_kind: str) -> list[Spot]:
    if not isinstance(entries, list) or _is_intrinsic_value(entries):
        return [Spot(f"{logical}.Policies", ("Policies",), size_kind, hint=logical,
                     refusal=f"Policies is {_what(entries)}")]
    # Inline policies are named: an entry is identified by its PolicyName, so that adding or
    # removing one does not renumber the others (the index when the name is not a literal).
    names = [entry.get("PolicyName") if isinstance(entry, dict) else None for entry in entries]
    literal = [name if isinstance(name, str) and name else None for name in names]
    named = len({n for n in literal if n is not None}) == sum(n is not None for n in literal)
    ids = [f"{logical}.Policies[{name if named and name is not None else number}]"
           for number, name in enumerate(literal)]
    if len(set(ids)) != len(ids):  # a name that reads as another entry's index
        ids = [f"{logical}.Policies[{number}]" for number in range(len(entries))]
    spots = []
    for number, (entry, policy_id) in enumerate(zip(entries, ids, strict=True)):
        if not isinstance(entry, dict) or _is_intrinsic_value(entry) or \
                "PolicyDocument" not in entry:
            spots.append(Spot(policy_id, ("Policies", number), size_kind, hint=logical,
                              refusal=f"the entry is {_what(entry)}, not a policy"))
        else:
            spots.append(Spot(policy_id, ("Policies", number, "PolicyDocument"), size_kind,
                              hint=logical))
    return spots


def _sam_policies(logical: str, policies: object) -> list[Spot]:
    """SAM Policies: a managed policy (name or ARN), a policy document, a policy template
    ({Name: {parameters}}), or a list of those; each becomes an inline policy (or an
    attachment) of the function's generated role, id Logical.Policies[N]."""
    from ..managed import document_for_arn, is_aws_managed
    from . import sam

    single = not isinstance(policies, list) or _is_intrinsic_value(policies)
    entries = [policies] if single else policies
    spots = []
    for number, entry in enumerate(entries):
        path = ("Policies",) if single else ("Policies", number)
        policy_id = f"{logical}.Policies[{number}]"
        spot = Spot(policy_id, path, "inline", hint=logical)
        if isinstance(entry, str):
            arn = entry if entry.startswith("arn:") else f"arn:aws:iam::aws:policy/{entry}"
            spot.managed_arn = arn
            spot.read_only = f"the AWS managed policy {entry} (AWS's to change: attach a " \
                "refined copy instead)" if is_aws_managed(arn) else \
                f"the managed policy {entry} (refine it where it is defined)"
            document = document_for_arn(arn)
            if document is None:
                spot.document_type = UNKNOWN if not is_aws_managed(arn) else IDENTITY
                spot.refusal = f"the managed policy {entry} is not in refiner's snapshot of " \
                    "AWS managed policies" if is_aws_managed(arn) else \
                    f"the managed policy {entry} is not defined in this template"
            spot.value = document
        elif isinstance(entry, dict) and sam.is_policy_template(entry) and \
                not _is_intrinsic_value(entry):
            (name, values), = entry.items()
            document, why = sam.expand(name, values)
            spot.value = document
            spot.read_only = f"the SAM policy template {name} (write its statements out to " \
                "refine them)"
            if document is None:
                spot.document_type, spot.refusal = UNKNOWN, why
        elif not isinstance(entry, dict):
            spot.document_type = UNKNOWN
            spot.refusal = f"the entry is {_what(entry)}, not a policy"
        spots.append(spot)
    return spots


def _holder(properties: dict) -> str | None:
    """The one role, user or group a policy resource names, when it names exactly one."""
    holders = []
    for key in HOLDER_KEYS:
        value = properties.get(key)
        for holder in value if isinstance(value, list) else [value] if value else []:
            if isinstance(holder, str):
                holders.append(holder)
            elif isinstance(holder, dict) and isinstance(holder.get("Ref"), str):
                if not holder["Ref"].startswith("AWS::"):  # AWS::NoValue: none
                    holders.append(holder["Ref"])
            else:
                return None
    return holders[0] if len(holders) == 1 else None


def template_unknowns(value: dict, line_of) -> list[tuple[int, str]]:
    """What in a template refiner does not model, each (line, why); line_of(path) gives the
    line of a path of keys from the template's top."""
    found = []
    transform = value.get("Transform")
    for name in transform if isinstance(transform, list) else [transform] if transform else []:
        if not isinstance(name, str) or name not in KNOWN_TRANSFORMS:
            shown = name if isinstance(name, str) else _what(name)
            found.append((line_of(("Transform",)), f"the Transform {shown} is a macro: "
                          "refiner does not run it"))
    resources = value.get("Resources")
    if not isinstance(resources, dict):
        return found
    for logical, resource in resources.items():
        if logical.startswith("Fn::ForEach"):
            found.append((line_of(("Resources", logical)), f"{logical}: Fn::ForEach "
                          "(AWS::LanguageExtensions): refiner does not expand it"))
            continue
        if not isinstance(resource, dict):
            continue
        kind = resource.get("Type")
        if not isinstance(kind, str):
            found.append((line_of(("Resources", logical)), f"{logical}: its Type is "
                          f"{_type_what(kind)}, not a resource type refiner reads"))
            continue
        if kind.startswith("Rain::") or kind.endswith("::MODULE"):
            found.append((line_of(("Resources", logical)), f"{logical}: the module {kind}: "
                          "refiner does not expand modules"))
        properties = resource.get("Properties")
        if isinstance(properties, dict) and _is_intrinsic_value(properties):
            found.append((line_of(("Resources", logical, "Properties")), f"{logical}: "
                          f"Properties is {_what(properties)}: refiner does not choose a branch"))
    return found


def _type_what(kind: object) -> str:
    if isinstance(kind, dict) and len(kind) == 1:
        return f"{{{next(iter(kind))!r}: ...}}"
    return _what(kind)


# --- JSON -----------------------------------------------------------------------------------

CONTEXT_SECTIONS = ("Parameters", "Mappings", "Conditions", "Globals", "Transform", "Rules")


def read_json(path: str, text: str, value: dict) -> Template:
    root = locate(text)
    context = dumps({k: value.get(k) for k in CONTEXT_SECTIONS}, sort_keys=True)
    template = Template(path, "cloudformation-json", text, [], context=context)

    def node_at(node: Node, keys) -> Node:
        for key in keys:
            node = node.members[key]
        return node

    template.unknowns = template_unknowns(value, lambda keys: _line(text, node_at(root, keys)))
    resources = value.get("Resources")
    if not isinstance(resources, dict):
        return template
    inputs = Inputs(value)
    for logical, resource, properties in readable_resources(resources):
        properties_node = node_at(root, ("Resources", logical, "Properties"))
        for spot in document_spots(logical, resource["Type"], properties):
            node = node_at(properties_node, spot.path)
            line = _line(text, node)
            if spot.refusal is not None or spot.value is not None:
                located = value_only(spot, line, f"{path}: {spot.id}")
            else:
                located = _json_document(path, text, spot.id, spot.size_kind,
                                         node_value(properties, spot.path), node)
            template.policies.append(inputs.complete(located, spot, logical, resource))
    template.definitions = inputs.definitions
    return template


def readable_resources(resources: dict):
    """(logical id, resource, Properties) of each resource whose policies can be read: a
    Type that is a string and Properties that are a mapping (template_unknowns names the
    others)."""
    for logical, resource in resources.items():
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            continue
        properties = resource.get("Properties")
        if isinstance(properties, dict) and not _is_intrinsic(properties):
            yield logical, resource, properties


def node_value(value: object, path: tuple) -> object:
    for key in path:
        value = value[key]
    return value


def value_only(spot: Spot, line: int, label: str) -> Located:
    """A document read from a value alone (no writer): a SAM policy template expanded, an AWS
    managed policy from the snapshot; or an entry refused."""
    located = Located(spot.id, line, spot.size_kind, spot.value)
    if spot.refusal is not None:
        return located.refuse(line, spot.refusal)
    located.document_text = dumps(spot.value, indent=2) + "\n"
    return finish(located, label)


# Pseudo parameters: the same for every document of one stack.
_SUB_NAME = re.compile(r"\$\{(?!!)([^}]*)\}")


class Inputs:
    """What each document's expressions read, closed over the Conditions that read other
    names, and the definitions of those names as written (canonical JSON)."""

    def __init__(self, value: dict):
        self.sections = {section: value.get(section) if isinstance(value.get(section), dict)
                         else {} for section in ("Parameters", "Mappings", "Conditions",
                                                 "Resources")}
        self.definitions: dict[str, str] = {}
        for section in ("Parameters", "Mappings", "Conditions"):
            for name, definition in self.sections[section].items():
                self.definitions[f"{section}.{name}"] = dumps(definition, sort_keys=True)
        for name, resource in self.sections["Resources"].items():
            self.definitions[f"Resources.{name}"] = dumps(_without_documents(name, resource),
                                                          sort_keys=True)
        for section in ("Globals", "Transform"):
            if value.get(section) is not None:
                self.definitions[section] = dumps(value[section], sort_keys=True)

    def complete(self, located: Located, spot: Spot, logical: str, resource: dict) -> Located:
        """The reader's facts about one document: type, holder, inputs."""
        located.document_type = spot.document_type
        located.principal_hint = spot.hint
        located.managed_arn = spot.managed_arn
        if spot.read_only is not None:
            located.read_only = spot.read_only
        read = self.references(located.document)
        condition = resource.get("Condition")
        if condition is not None:
            self.definitions[f"Resources.{logical}.Condition"] = dumps(condition)
            read.add(f"Resources.{logical}.Condition")
            if isinstance(condition, str):
                read.add(f"Conditions.{condition}")
        if resource.get("Type") in SAM_FUNCTIONS and "Globals" in self.definitions:
            read.add("Globals")
        located.inputs = self.closed(read)
        return located

    def closed(self, names: set[str]) -> set[str]:
        result, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name in result:
                continue
            result.add(name)
            section, _, key = name.partition(".")
            if section == "Conditions" and key in self.sections["Conditions"]:
                todo += self.references(self.sections["Conditions"][key])
        return result

    def named(self, name: str) -> str | None:
        if name.startswith("AWS::"):
            return None  # a pseudo parameter: the stack's own account, region, ...
        return f"Parameters.{name}" if name in self.sections["Parameters"] else \
            f"Resources.{name}"

    def references(self, value: object) -> set[str]:
        found: set[str] = set()
        stack = [value]
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack += node
            elif isinstance(node, str):
                if "{{resolve:" in node:
                    found.add("resolve:" + node[node.index("{{resolve:") + 10:].split("}}")[0])
            elif isinstance(node, dict):
                if len(node) == 1:
                    (key, inner), = node.items()
                    found |= self.intrinsic_reads(key, inner)
                stack += list(node.values())
        return found

    def intrinsic_reads(self, key: str, inner: object) -> set[str]:
        first = inner[0] if isinstance(inner, list) and inner else inner
        if key == "Ref" and isinstance(inner, str):
            return {n for n in [self.named(inner)] if n}
        if key == "Fn::GetAtt" and isinstance(first, str):
            return {n for n in [self.named(first.split(".")[0])] if n}
        if key == "Fn::FindInMap" and isinstance(first, str):
            return {f"Mappings.{first}"}
        if key in ("Fn::If", "Condition") and isinstance(first, str):
            return {f"Conditions.{first}"}
        if key == "Fn::ImportValue":
            return {"ImportValue"}  # another stack's export: it changes outside this file
        if key == "Fn::Sub" and isinstance(first, str):
            variables = inner[1] if isinstance(inner, list) and len(inner) > 1 and \
                isinstance(inner[1], dict) else {}
            names = {m.group(1).split(".")[0] for m in _SUB_NAME.finditer(first)}
            return {n for name in names - set(variables) for n in [self.named(name)] if n}
        return set()


def _without_documents(logical: str, resource: object) -> object:
    """A resource as the documents of other resources see it (its name, ARN, attributes): its
    definition without the documents it holds, which are judged as documents."""
    if not isinstance(resource, dict) or not isinstance(resource.get("Properties"), dict) or \
            not isinstance(resource.get("Type"), str):
        return resource
    documents = {spot.path[0] for spot in document_spots(logical, resource["Type"],
                                                          resource["Properties"])}
    return {**resource, "Properties": {k: v for k, v in resource["Properties"].items()
                                       if k not in documents}}


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


def _is_intrinsic_value(value: object) -> bool:
    return isinstance(value, dict) and _is_intrinsic(value)


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
        reader = YAML()
        reader.version = (1, 1)  # as CloudFormation and the SAM and AWS CLIs (PyYAML) read it
        root = reader.compose(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InputError(f"{path} is not valid YAML: {problem}{where}") from None
    _refuse_ambiguous_keys(path, root)
    reader = _Yaml(path, text, root)
    context = dumps({name: reader.json(_get(root, name), loose=True) if _get(root, name) else None
                     for name in CONTEXT_SECTIONS}, sort_keys=True)
    template = Template(path, "cloudformation-yaml", text, [], context=context)
    reader.read(template)
    return template


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
        self.anchors: dict[int, tuple[str, int]] = {}  # id(node) -> its anchor, for messages
        if root is not None:
            self._count(root)
            self._anchors(root)
            self._share()
        self.offset = self._sequence_offset()

    def _count(self, node) -> None:
        self.uses[id(node)] = self.uses.get(id(node), 0) + 1
        if self.uses[id(node)] > 1:
            return
        for child in self._children(node):
            self._count(child)

    def _share(self) -> None:
        """Everything under a node the template reaches twice (an alias of a resource, of a
        Properties mapping, ...) is reached twice too: one edit there would change both."""
        stack, seen = [self.root], set()
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            for child in self._children(node):
                if self.uses.get(id(node), 0) > 1:
                    self.uses[id(child)] = max(self.uses.get(id(child), 0), 2)
                    self.anchors.setdefault(id(child), self.anchors.get(id(node)))
                stack.append(child)

    def alias(self, node) -> str:
        anchor = self.anchors.get(id(node))
        return f"shared through the YAML alias *{anchor[0]} (anchored at line {anchor[1]})" \
            if anchor else "a YAML alias of another one"

    @staticmethod
    def _children(node):
        if isinstance(node.value, list):
            for entry in node.value:
                yield from entry if isinstance(entry, tuple) else (entry,)

    def _anchors(self, root) -> None:
        stack, seen = [root], set()
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            anchor = getattr(node, "anchor", None)
            if anchor and self.uses.get(id(node), 0) > 1:
                self.anchors[id(node)] = (str(anchor), node.start_mark.line + 1)
            stack.extend(self._children(node))

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

    def node_at(self, node, keys):
        for key in keys:
            node = node.value[key] if isinstance(key, int) else _get(node, key)
        return node

    def read(self, template: Template) -> None:
        """The template's policies, unknowns and definitions."""
        if _kind(self.root) != "map":
            return
        value = self.json(self.root, loose=True)
        template.unknowns = template_unknowns(value, lambda keys: self.line(
            self.node_at(self.root, keys)))
        resources = value.get("Resources")
        if not isinstance(resources, dict) or _kind(_get(self.root, "Resources")) != "map":
            return
        inputs = Inputs(value)
        for logical, resource, properties in readable_resources(resources):
            properties_node = self.node_at(self.root, ("Resources", logical, "Properties"))
            for spot in document_spots(logical, resource["Type"], properties):
                node = self.node_at(properties_node, spot.path)
                if spot.refusal is not None or spot.value is not None:
                    located = value_only(spot, self.line(node), f"{self.path}: {spot.id}")
                else:
                    located = self.document(spot.id, spot.size_kind, node)
                template.policies.append(inputs.complete(located, spot, logical, resource))
        template.definitions = inputs.definitions

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
            where = re.match(r"line (\d+): ", str(error))
            return located.refuse(int(where.group(1)) if where else line, str(error))
        if self.uses.get(id(node), 0) > 1:  # read and judged; one edit would change both
            located.read_only = f"the document is {self.alias(node)}"
            located.document_text = dumps(located.document, indent=2) + "\n"
            return finish(located, f"{self.path}: {located.id}")
        if node.tag.startswith("!") or _is_intrinsic_value(located.document):
            return located.refuse(line, f"the document is {_what(located.document)}")
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
            return self.unwritable_string(located, node, "the document is a YAML string in a "
                                          "style refiner does not rewrite (use a mapping, "
                                          "quotes or |)")
        if not writer.faithful(text):
            return self.unwritable_string(located, node, "the document string's layout cannot "
                                          "be written back unchanged")
        located.writer = writer
        located.document_text = writer.decode(text)
        try:
            located.document = parse_json_text(located.document_text, located.id)
        except InputError as error:
            return located.refuse(located.line, f"the document string is not JSON ({error})")
        located.statement_lines = text_document_lines(text, writer)
        return finish(located, f"{self.path}: {located.id}")

    def unwritable_string(self, located: Located, node, why: str) -> Located:
        """A document string read as YAML reads it (folded, plain, ...), to be judged, but
        which refine cannot write back in its layout."""
        located.read_only = why
        located.document_text = _scalar_value(node)
        try:
            located.document = parse_json_text(located.document_text, located.id)
        except InputError as error:
            return located.refuse(located.line, f"the document string is not JSON ({error})")
        return finish(located, f"{self.path}: {located.id}")

    def structured(self, located: Located, node) -> Located:
        from ..jsontext import dumps

        located.document_text = dumps(located.document, indent=2) + "\n"
        statement = _get(node, "Statement")
        if statement is None:
            return finish(located, f"{self.path}: {located.id}")
        if _is_intrinsic_value(located.document.get("Statement")) or \
                self.uses.get(id(statement), 0) > 1:
            return located.refuse(self.line(statement), "Statement is " + (
                _what(located.document["Statement"]) if self.uses.get(id(statement), 0) <= 1
                else self.alias(statement)))
        if _kind(statement) == "seq":
            nodes, container = statement.value, "list"
        else:
            nodes, container = [statement], "single"
        spots = []
        for item in nodes:
            value = self.json(item, loose=True)
            if _kind(item) != "map" or _is_intrinsic_value(value) or \
                    self.uses.get(id(item), 0) > 1:
                return located.refuse(self.line(item), "a statement is " + (
                    self.alias(item) if self.uses.get(id(item), 0) > 1 else _what(value)
                    if _is_intrinsic_value(value) else self.what(item)))
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
        value = _scalar_value(node)
        if isinstance(value, Ambiguous):
            if not loose:
                raise InputError(f"line {self.line(node)}: {node.value!r} {value.why}: quote "
                                 "it, so that every reader reads a string")
            return node.value
        return value


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
# YAML 1.1 as PyYAML (the AWS and SAM CLIs, cfn-lint) resolves it: these booleans, and ints
# written in octal (0777), hexadecimal, binary, with underscores, or base 60 (1:20).
_BOOLEANS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}
_PYYAML_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|"
                           r"\.[0-9_]+(?:[eE][-+][0-9]+)?")


@dataclass
class Ambiguous:
    """A scalar YAML readers read differently (so what deploys is not ours to say)."""

    why: str


def _scalar_value(node) -> object:
    """A scalar as CloudFormation reads it (YAML 1.1): numbers kept as written when JSON can
    write them, else as the integer YAML 1.1 makes of them; booleans (yes/no/on/off too) and
    null as such; everything else (dates included) as its text. A scalar that YAML 1.1
    readers disagree on (y, n, a float only some read as one) is Ambiguous."""
    tag, value = node.tag, node.value
    if tag.endswith(":bool"):
        if value.lower() not in _BOOLEANS or value not in (value.lower(), value.upper(),
                                                            value.capitalize()):
            return Ambiguous("is a boolean to some YAML 1.1 readers and a string to others")
        return _BOOLEANS[value.lower()]
    if tag.endswith(":null"):
        return None
    if tag.endswith(":int"):
        if _JSON_NUMBER.fullmatch(value):
            return JsonNumber(value)
        return JsonNumber(str(_yaml11_int(value)))
    if tag.endswith(":float"):
        if _JSON_NUMBER.fullmatch(value) and _PYYAML_FLOAT.fullmatch(value):
            return JsonNumber(value)
        return Ambiguous("is a number to some YAML readers and a string to others")
    if node.style == ">":  # ruamel.yaml's composer marks where a folded scalar folds with \a
        return value.replace("\a", "")
    return value


def _yaml11_int(text: str) -> int:
    """A YAML 1.1 integer's value (PyYAML's construct_yaml_int)."""
    text = text.replace("_", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    if text.startswith("0b"):
        return sign * int(text[2:], 2)
    if text.startswith("0x"):
        return sign * int(text[2:], 16)
    if ":" in text:
        total = 0
        for part in text.split(":"):
            total = total * 60 + int(part)
        return sign * total
    if text != "0" and text.startswith("0"):
        return sign * int(text, 8)
    return sign * int(text)
