"""Who holds what in a template: principals, the documents they hold, groups and boundaries.

The model of /work/shared/notes/principals.md read from one template (or several Terraform
files of one module): each role, user and group (`Principal`) with the documents it holds
directly (inline policies, attached managed policies by ARN or by reference to a policy of
the template), its group memberships, its permissions boundary and, for a role, its trust
policy. A document is `Held`: its identity as written (`ref`), the line, and its JSON value,
or None with the reason it is not known (an expression, an ARN neither the template nor the
AWS managed snapshot defines, a group defined elsewhere, keys no IAM document has: statements
the gate would not see). AWS managed ARNs are resolved with refiner.managed in every
partition.

CloudFormation: AWS::IAM::Role/User/Group (Policies, ManagedPolicyArns, PermissionsBoundary,
AssumeRolePolicyDocument, Groups), AWS::IAM::Policy/ManagedPolicy (Roles/Users/Groups),
RolePolicy/UserPolicy/GroupPolicy, UserToGroupAddition. Terraform: aws_iam_role/user/group
(inline_policy, managed_policy_arns, permissions_boundary, assume_role_policy), the *_policy
resources, *_policy_attachment, aws_iam_policy_attachment, aws_iam_user_group_membership,
aws_iam_group_membership; policy_arn through aws_iam_policy and data aws_iam_policy.

What is not modelled but can grant access (resource and SAM policies, other AWS::IAM::* and
aws_iam_* types, nested stacks and modules, Fn::ForEach, macros, conditional or counted
resources; of any other resource, the properties at any depth whose names say they control
access or name a role: ACLs, public access blocks, auth types, sharing) is an `Other`: the gate
takes it only exactly as it was. Two inline policies of one principal with one name are
recorded with their name (`Held.name`): IAM keeps only one of them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..jsontext import dumps, parse_json_text
from ..managed import document_for_arn, is_aws_managed
from ..writeback import locate
from .edit import line_number

PRINCIPAL_TYPES = {"AWS::IAM::Role": "role", "AWS::IAM::User": "user", "AWS::IAM::Group": "group"}
TF_PRINCIPALS = {"aws_iam_role": "role", "aws_iam_user": "user", "aws_iam_group": "group"}
# CloudFormation types whose every property is modelled here (anything else IAM is an Other).
CFN_MODELLED = {*PRINCIPAL_TYPES, "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy",
                "AWS::IAM::RolePolicy", "AWS::IAM::UserPolicy", "AWS::IAM::GroupPolicy",
                "AWS::IAM::UserToGroupAddition"}
CFN_PRINCIPAL_KEYS = ("Policies", "ManagedPolicyArns", "PermissionsBoundary",
                      "AssumeRolePolicyDocument", "Groups")
TF_MODELLED = {*TF_PRINCIPALS, "aws_iam_policy", "aws_iam_role_policy", "aws_iam_user_policy",
               "aws_iam_group_policy", "aws_iam_role_policy_attachment",
               "aws_iam_user_policy_attachment", "aws_iam_group_policy_attachment",
               "aws_iam_policy_attachment", "aws_iam_user_group_membership",
               "aws_iam_group_membership"}
TF_POLICY_RESOURCES = ("aws_iam_policy", "aws_iam_role_policy", "aws_iam_user_policy",
                       "aws_iam_group_policy")
TF_PRINCIPAL_KEYS = ("inline_policy", "managed_policy_arns", "permissions_boundary",
                     "assume_role_policy")
# The keys of an IAM policy document.
DOCUMENT_KEYS = {"Version", "Id", "Statement"}
# Terraform attributes that name a principal: (attribute, kind, a list?).
TF_TARGETS = {"role": ("role", False), "user": ("user", False), "group": ("group", False),
              "roles": ("role", True), "users": ("user", True), "groups": ("group", True)}
# Resource types that hold a resource policy or otherwise change who may do what, by the
# look of their names; any resource with a policy-looking property counts too.
_GRANTING_TYPE = re.compile(r"(?i)^(AWS::(IAM|SSO|Serverless|Lambda::Permission|CloudFormation::"
                            r"Stack|Organizations|Cognito::IdentityPool)|aws_(iam|ssoadmin|"
                            r"lambda_permission|organizations|cognito_identity_pool)|.*(polic|"
                            r"permission|public_?access|_acl$|::.*Acl$|identity_?pool))")
# Property and attribute names (at any depth) that say who may do what, or which role a
# workload runs as (a function moved to an admin role gains its access), or that grant or
# block access outside IAM policies: ACLs, object ownership, public access blocks, sharing
# (launch permissions, user groups and ids), authorization switched off, Cognito identity
# pools' unauthenticated identities and login providers. A change to one is unknown.
_POLICY_KEY = re.compile(r"(?i:polic|permission|principal|trust|grant|role|instance_?profile|"
                         r"access|public|auth|login_?provider|user_?groups|user_?ids|ownership|"
                         r"sharing)|(?:(?<![A-Za-z])|(?<=[a-z0-9]))(?:[Aa]cls?|ACLS?)(?![a-z])")
# What, once removed, may have blocked access: removing it is unknown.
_RESTRICTING = re.compile(r"(?i)Deny|block_?public|public_?access_?block|restrict_?public|"
                          r"ignore_?public|ownership")
# Keys written in an expression's text (an HCL object, jsonencode, a JSON string).
_WRITTEN_KEY = re.compile(r"""\\?["']?([A-Za-z_][\w-]*)\\?["']?\s*(?:=(?!=)|:)""")
# An AWS managed policy ARN whose only expression is the partition.
_PARTITION_ARN = re.compile(r'^"?arn:(?:aws[a-z-]*|\$\{[^}]*partition[^}]*\}):iam::aws:'
                            r'policy/((?:[\w+=,.@-]+/)*[\w+=,.@-]+)"?$')


@dataclass
class Held:
    """A document a principal holds: ref is what is written (stable across BASE and HEAD)."""

    ref: str
    line: int
    document: object = None  # its JSON value; None when not known
    reason: str | None = None  # why it is not known
    policy_id: str | None = None  # the template policy (Located) it is, if one
    path: str = ""  # the file it is written in
    # An inline policy's name: IAM keeps one inline policy per principal and name
    # (Put{Role,User,Group}Policy replaces one of the same name).
    name: str | None = None

    def __post_init__(self) -> None:
        # Keys an IAM document does not have (a data source's source or override documents,
        # a dynamic block not expanded, a document that is an Fn::If) hold statements the
        # gate would not see: such a document is not known.
        if isinstance(self.document, dict) and self.reason is None and \
                not set(self.document) <= DOCUMENT_KEYS:
            self.reason = "the document holds what is not an IAM document's (" + ", ".join(
                sorted(set(self.document) - DOCUMENT_KEYS)) + "): its statements are not read"

    @property
    def known(self) -> bool:
        return isinstance(self.document, dict) and self.reason is None


@dataclass
class Principal:
    key: str  # kind:logical id / address, or kind:name:NAME for one defined elsewhere
    kind: str  # role, user or group
    label: str
    line: int
    names: set[str] = field(default_factory=set)
    documents: list[Held] = field(default_factory=list)
    boundary: Held | None = None
    trust: Held | None = None
    groups: list[tuple[str, int]] = field(default_factory=list)  # (group key, line)
    rest: str = ""  # everything else written about it (name, path, tags): canonical JSON
    defined: bool = True  # False: named by an attachment, defined elsewhere
    path: str = ""


@dataclass
class Other:
    """Something that can grant access and is not modelled: judged only as unchanged."""

    key: str
    line: int
    what: str
    raw: str
    path: str = ""

    @property
    def may_deny(self) -> bool:
        """Whether removing it may remove a Deny: its text holds one, or does not show what
        it holds (a module, a nested stack, a macro, Fn::ForEach, a data source)."""
        return bool(_RESTRICTING.search(self.raw)) or any(word in self.what for word in (
            "module", "macro", "ForEach", "data source", "Stack", "Application"))


@dataclass
class Holdings:
    principals: dict[str, Principal] = field(default_factory=dict)
    others: dict[str, Other] = field(default_factory=dict)
    # Template policy id -> the id it pairs by (a CloudFormation inline policy: its PolicyName).
    pairing: dict[str, str] = field(default_factory=dict)

    def unify(self) -> Holdings:
        """A principal named by its name (a literal) is the one defined with that name."""
        for key, placeholder in list(self.principals.items()):
            if placeholder.defined:
                continue
            name = placeholder.label
            target = next((p for p in self.principals.values() if p.defined and
                           p.kind == placeholder.kind and name in p.names), None)
            if target is None:
                continue
            target.documents += placeholder.documents
            target.groups += placeholder.groups
            if placeholder.boundary is not None and target.boundary is None:
                target.boundary = placeholder.boundary
            del self.principals[key]
            for principal in self.principals.values():
                principal.groups = [(target.key if g == key else g, line)
                                    for g, line in principal.groups]
        return self

    def merge(self, other: Holdings) -> Holdings:
        merged = Holdings(dict(self.principals), {**self.others, **other.others},
                          {**self.pairing, **other.pairing})
        for key, principal in other.principals.items():
            mine = merged.principals.get(key)
            if mine is None or not mine.defined:
                if mine is not None:
                    principal.documents = mine.documents + principal.documents
                    principal.groups = mine.groups + principal.groups
                merged.principals[key] = principal
            else:
                mine.documents = mine.documents + principal.documents
                mine.groups = mine.groups + principal.groups
        return merged

    def effective(self, principal: Principal) -> list[Held]:
        """What a principal holds: its own documents and those of its groups."""
        held = list(principal.documents)
        for group_key, line in principal.groups:
            group = self.principals.get(group_key)
            if group is None or not group.defined:
                held.append(Held(f"group {group_key}", line, None,
                                 f"the group {group_key.split(':')[-1]} is defined elsewhere: "
                                 "its policies are not known here"))
            if group is not None:
                held += [Held(f"{group.key} {h.ref}", h.line, h.document, h.reason, h.policy_id,
                              h.path) for h in group.documents]
        return held


def canonical(value: object) -> str:
    return dumps(value, sort_keys=True)


def read_holdings(template, policies: dict | None = None) -> Holdings:
    """The holdings of an iac.Template (a policy file holds no principal), each part with
    the template's path. policies: the policies (id -> Located) references may name, when
    they are not all in this template (the other files of a Terraform module)."""
    holdings = _read(template, {**(policies or {}), **{p.id: p for p in template.policies}})
    for principal in holdings.principals.values():
        for part in [principal, *principal.documents, principal.boundary, principal.trust]:
            if part is not None and not part.path:
                part.path = template.path
    for other in holdings.others.values():
        other.path = other.path or template.path
    # Two inline policies of one owner with one name: AWS keeps one; pair them by position.
    named = list(holdings.pairing.values())
    holdings.pairing = {k: v for k, v in holdings.pairing.items() if named.count(v) == 1}
    return holdings.unify()


def _read(template, policies: dict) -> Holdings:
    kind = template.kind
    if kind in ("cloudformation-json", "cloudformation-yaml"):
        value, lines = _cfn_tree(template.path, template.text, kind)
        return _CloudFormation(value, lines, policies).read()
    if kind == "terraform":
        return _Terraform(template.text, policies).read()
    if kind == "terraform-json":
        value = parse_json_text(template.text, template.path)
        return _TerraformJson(template.text, value, policies).read()
    if kind == "terraform-plan":
        return _plan(parse_json_text(template.text, template.path))
    return Holdings()


def _plan(value: dict) -> Holdings:
    """A plan's attachments and principals are not modelled one by one: each resource that
    can grant (but the policies the gate judges) is an Other, taken only as it was."""
    holdings = Holdings()
    stack = [value.get("planned_values", {}).get("root_module")] if isinstance(
        value.get("planned_values"), dict) else []
    while stack:
        module = stack.pop()
        if not isinstance(module, dict):
            continue
        stack += module.get("child_modules") or []
        for resource in module.get("resources") or []:
            if not isinstance(resource, dict) or not isinstance(resource.get("type"), str):
                continue
            kind = resource["type"]
            values = resource.get("values") if isinstance(resource.get("values"), dict) else {}
            if kind == "aws_iam_policy_document" or not (
                    _GRANTING_TYPE.search(kind) or _POLICY_KEY.search(canonical(values))):
                continue
            rest = {k: v for k, v in values.items() if k != "policy"} \
                if kind in TF_POLICY_RESOURCES else values
            address = str(resource.get("address"))
            holdings.others[address] = Other(address, 1, f"{kind} in a plan (the gate does "
                                             "not model its attachments)", canonical(rest))
    return holdings


# --- CloudFormation -------------------------------------------------------------------------

def _cfn_tree(path: str, text: str, kind: str):
    """The template as a JSON value, and line(path tuple) -> the line it is written on."""
    if kind == "cloudformation-json":
        value = parse_json_text(text, path)
        root = locate(text)

        def json_line(keys: tuple) -> int:
            node = root
            for key in keys:
                members = node.members
                if isinstance(members, dict) and key in members or \
                        isinstance(members, list) and isinstance(key, int) and key < len(members):
                    node = members[key]
                else:
                    break
            return line_number(text, node.start)

        return value, json_line
    from ruamel.yaml import YAML

    from .cloudformation import _kind, _Yaml

    node_root = YAML().compose(text)
    value = _Yaml(path, text, node_root).json(node_root, loose=True) if node_root is not None \
        else None

    def yaml_line(keys: tuple) -> int:
        node = node_root
        for key in keys:
            if _kind(node) == "map":
                pair = next(((k, v) for k, v in node.value if getattr(k, "value", None) == key),
                            None)
                if pair is None:
                    break
                node = pair[1] if key != keys[-1] else pair[0]
            elif _kind(node) == "seq" and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
            else:
                break
        return node.start_mark.line + 1 if node is not None else 1

    return value, yaml_line


def _intrinsic(value: object) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        name = next(iter(value))
        if name in ("Ref", "Condition") or name.startswith("Fn::"):
            return name
    return None


def _has_intrinsic(value: object, names: tuple[str, ...]) -> bool:
    if isinstance(value, dict):
        return any(k in names or k.startswith(names) or _has_intrinsic(v, names)
                   for k, v in value.items())
    if isinstance(value, list):
        return any(_has_intrinsic(v, names) for v in value)
    return False


class _CloudFormation:
    def __init__(self, value, lines, policies):
        self.value = value if isinstance(value, dict) else {}
        self.line = lines
        self.policies = policies
        self.holdings = Holdings()
        resources = self.value.get("Resources")
        self.resources = resources if isinstance(resources, dict) else {}
        # Names a principal is written with elsewhere: RoleName/UserName/GroupName, logical id.
        self.by_name: dict[tuple[str, str], str] = {}

    def read(self) -> Holdings:
        holdings = self.holdings
        transform = self.value.get("Transform")
        macros = [t for t in (transform if isinstance(transform, list) else [transform])
                  if t is not None and t not in ("AWS::Serverless-2016-10-31",
                                                 "AWS::LanguageExtensions")]
        if macros or _has_intrinsic(self.value.get("Resources"), ("Fn::Transform",)):
            # A macro rewrites the template before it is deployed: nothing here is certain.
            holdings.others["Transform"] = Other("Transform", self.line(("Transform",)),
                                                 "a macro (Transform) rewrites the template",
                                                 canonical(self.value))
        for logical, resource in self.resources.items():
            where = ("Resources", logical)
            if logical.startswith("Fn::ForEach"):
                holdings.others[logical] = Other(logical, self.line(where),
                                                 "Fn::ForEach makes resources refiner does not "
                                                 "expand", canonical(resource))
                continue
            if not isinstance(resource, dict):
                continue
            kind = resource.get("Type")
            properties = resource.get("Properties")
            if not isinstance(kind, str):
                if _GRANTING_TYPE.search(canonical(resource)):
                    holdings.others[logical] = Other(logical, self.line(where),
                                                     "a resource whose Type is not a string",
                                                     canonical(resource))
                continue
            if kind in PRINCIPAL_TYPES:
                name_key = {"role": "RoleName", "user": "UserName", "group": "GroupName"}[
                    PRINCIPAL_TYPES[kind]]
                principal = Principal(f"{PRINCIPAL_TYPES[kind]}:{logical}", PRINCIPAL_TYPES[kind],
                                      logical, self.line(where), {logical})
                if isinstance(properties, dict) and isinstance(properties.get(name_key), str):
                    principal.names.add(properties[name_key])
                holdings.principals[principal.key] = principal
                for name in principal.names:
                    self.by_name[(principal.kind, name)] = principal.key
            if kind in CFN_MODELLED and "Condition" in resource or \
                    kind in CFN_MODELLED and _intrinsic(properties) is not None:
                holdings.others[logical] = Other(
                    logical, self.line(where), "a resource that exists only under a Condition"
                    if "Condition" in resource else f"Properties is {_intrinsic(properties)}",
                    self.with_context(_without_documents(kind, resource)))
            elif kind not in CFN_MODELLED and (_GRANTING_TYPE.search(kind) or isinstance(
                    properties, dict) and _granting_values(properties)):
                read = frozenset(key for key in (properties or {}) if any(
                    i == f"{logical}.{key}" or i.startswith(f"{logical}.{key}[")
                    for i in self.policies) or _resource_document_key(
                        key, self.policies.get(logical))) \
                    if isinstance(properties, dict) else frozenset()
                holdings.others[logical] = Other(logical, self.line(where),
                                                 f"{kind} (not modelled by the gate)",
                                                 self.with_context(
                                                     _granting_part(kind, resource, read)))
        for logical, resource in self.resources.items():
            if isinstance(resource, dict) and isinstance(resource.get("Type"), str) and \
                    resource["Type"] in CFN_MODELLED:
                properties = resource.get("Properties")
                self.resource(logical, resource["Type"],
                              properties if isinstance(properties, dict) else {})
        return holdings

    def principal(self, kind: str, value: object, line: int) -> str | None:
        """The key of the principal a reference names; None for an expression."""
        if isinstance(value, dict) and set(value) == {"Ref"} and isinstance(value["Ref"], str):
            key = f"{kind}:{value['Ref']}"
            if key in self.holdings.principals:
                return key
            return None  # a parameter, or another kind of resource
        if isinstance(value, str):
            key = self.by_name.get((kind, value))
            if key is None:
                key = f"{kind}:name:{value}"
                self.holdings.principals.setdefault(
                    key, Principal(key, kind, value, line, {value}, defined=False))
            return key
        return None

    def document(self, ref: str, line: int, policy_id: str) -> Held:
        located = self.policies.get(policy_id)
        if located is None:
            return Held(ref, line, None, "the document is not read", policy_id)
        if not isinstance(located.document, dict):
            return Held(ref, line, None, located.refusal or "the document is not read",
                        policy_id)
        return Held(ref, line, located.document, None, policy_id)

    def arn(self, value: object, line: int) -> Held:
        """A managed policy named by ARN (a literal, a Ref to a policy of the template, or a
        Sub with the partition only)."""
        if isinstance(value, dict) and set(value) == {"Ref"}:
            target = self.resources.get(value["Ref"])
            if isinstance(target, dict) and target.get("Type") == "AWS::IAM::ManagedPolicy":
                return self.document(f"policy {value['Ref']}", line, value["Ref"])
        text = value.get("Fn::Sub") if isinstance(value, dict) and set(value) == {"Fn::Sub"} \
            else value
        if isinstance(text, str):
            text = text.replace("${AWS::Partition}", "aws")
            return managed_arn(text, line)
        return Held(self.inputs(value), line, None,
                    f"the policy ARN is {_intrinsic(value) or 'not a string'}: not resolved")

    def with_context(self, value: object) -> str:
        """Something not modelled as written, with the parameters, mappings and conditions
        it reads (not the resources it names: those are judged themselves)."""
        return self.inputs(value, resources=False)

    def inputs(self, value: object, resources: bool = True) -> str:
        """An expression as written, with what it reads (the parameters, mappings and
        conditions it names, and with resources the resources): so it is the same in BASE
        and HEAD only when all of that is."""
        text = canonical(value)
        names = set(re.findall(r'"Ref": ?"([^"]+)"', text)) | \
            set(re.findall(r"\$\{([^}!.]+)", text)) | \
            (set(re.findall(r'"Fn::GetAtt": ?\[?"([^".]+)', text)) if resources else set())
        parameters = self.value.get("Parameters") if isinstance(self.value.get("Parameters"),
                                                                dict) else {}
        read = {name: self.resources.get(name, parameters.get(name)) if resources
                else parameters[name] for name in sorted(names)
                if resources or name in parameters}
        # Mappings and conditions are read whole (a condition reads parameters in turn).
        for marker, section in (('"Fn::FindInMap"', "Mappings"), ('"Fn::If"', "Conditions"),
                                ('"Condition"', "Conditions")):
            if marker in text:
                read[section] = self.value.get(section)
                read["Parameters"] = parameters
        return text + (" reads " + canonical(read) if read else "")

    def entries(self, properties: dict, key: str, where: tuple) -> list[tuple[object, int]]:
        value = properties.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            return [(value, self.line((*where, key)))]
        return [(entry, self.line((*where, key, number))) for number, entry in enumerate(value)]

    def targets(self, properties: dict, logical: str, where: tuple) -> list[tuple[str | None, object, int]]:
        found = []
        for key, kind in (("Roles", "role"), ("Users", "user"), ("Groups", "group"),
                          ("RoleName", "role"), ("UserName", "user"), ("GroupName", "group")):
            for value, line in self.entries(properties, key, where):
                found.append((self.principal(kind, value, line), value, line))
        return found

    def resource(self, logical: str, kind: str, properties: dict) -> None:
        holdings = self.holdings
        where = ("Resources", logical, "Properties")
        line = self.line(("Resources", logical))
        if kind in PRINCIPAL_TYPES:
            principal = holdings.principals[f"{PRINCIPAL_TYPES[kind]}:{logical}"]
            principal.rest = self.with_context({k: v for k, v in properties.items()
                                                if k not in CFN_PRINCIPAL_KEYS})
            policies = properties.get("Policies")
            if isinstance(policies, list):
                for number, entry in enumerate(policies):
                    name = entry.get("PolicyName") if isinstance(entry, dict) else None
                    # Readers name an inline policy by its PolicyName or by its place.
                    policy_id = next((i for i in (f"{logical}.Policies[{name}]",
                                                  f"{logical}.Policies[{number}]")
                                      if i in self.policies), f"{logical}.Policies[{number}]")
                    ref = f"inline {name}" if isinstance(name, str) else \
                        f"inline {canonical(name)}"
                    holdings.pairing[policy_id] = f"{logical}.Policies[{ref}]"
                    held = self.document(ref, self.line((*where, "Policies", number)), policy_id)
                    held.name = name if isinstance(name, str) else None
                    principal.documents.append(held)
            elif policies is not None:
                principal.documents.append(Held(canonical(policies),
                                                self.line((*where, "Policies")), None,
                                                "Policies is not a list"))
            for value, value_line in self.entries(properties, "ManagedPolicyArns", where):
                principal.documents.append(self.arn(value, value_line))
            if "PermissionsBoundary" in properties:
                principal.boundary = self.arn(properties["PermissionsBoundary"],
                                              self.line((*where, "PermissionsBoundary")))
            if "AssumeRolePolicyDocument" in properties:
                principal.trust = Held(self.inputs(properties["AssumeRolePolicyDocument"]),
                                       self.line((*where, "AssumeRolePolicyDocument")),
                                       None, "a trust policy")
            for value, value_line in self.entries(properties, "Groups", where):
                self.member(principal, value, value_line)
            return
        if kind == "AWS::IAM::UserToGroupAddition":
            group = properties.get("GroupName")
            for value, value_line in self.entries(properties, "Users", where):
                user = self.principal("user", value, value_line)
                if user is None:
                    self.unresolved(logical, line, "Users", value)
                    continue
                self.member(holdings.principals[user], group, value_line)
            return
        held = self.document(f"policy {logical}", line, logical)
        name = properties.get("PolicyName") if kind != "AWS::IAM::ManagedPolicy" else None
        for key, value, value_line in self.targets(properties, logical, where):
            if key is None:
                self.unresolved(logical, value_line, "a principal", value)
                continue
            holdings.principals[key].documents.append(Held(
                held.ref, value_line, held.document, held.reason, held.policy_id,
                name=name if isinstance(name, str) else None))

    def member(self, user: Principal, group: object, line: int) -> None:
        key = self.principal("group", group, line)
        if key is None:
            user.documents.append(Held(f"group {self.inputs(group)}", line, None,
                                       f"the group is {_intrinsic(group) or 'not a name'}: "
                                       "not resolved"))
            return
        user.groups.append((key, line))

    def unresolved(self, logical: str, line: int, what: str, value: object) -> None:
        """An attachment to a principal an expression names: judged only as unchanged."""
        resource = self.resources.get(logical)
        self.holdings.others[f"{logical} {canonical(value)}"] = Other(
            logical, line, f"{what} named by {_intrinsic(value) or 'a value'} (not resolved)",
            self.with_context(_without_documents(resource.get("Type"), resource)))


# What of a SAM resource can grant: its role, policies, the permissions its events and
# authorizers add, connectors.
SAM_GRANTING = {"Policies", "Role", "RolePath", "PermissionsBoundary", "AssumeRolePolicyDocument",
                "Events", "Auth", "Connectors", "FunctionUrlConfig", "Permissions"}


# The property that holds a resource policy read as the resource's own document (its id is the
# logical id): that document is judged by whole requests where the gate compares documents.
_RESOURCE_DOCUMENT_KEY = re.compile(
    r"^(Policy|PolicyDocument|KeyPolicy|PolicyText|RepositoryPolicyText|ResourcePolicy|"
    r"AccessPolicies)$")


def _resource_document_key(key: str, located) -> bool:
    return located is not None and getattr(located, "document_type", None) == "resource" and \
        located.refusal is None and _RESOURCE_DOCUMENT_KEY.match(key) is not None


def _granting_part(kind: str, resource: dict, read: frozenset[str] = frozenset()) -> dict:
    """What of a resource not modelled can grant access: all of an IAM-like type; of a SAM
    resource the SAM_GRANTING properties; of any other type its policy-like properties (so
    that a code or memory change is not read as a change of who may do what)."""
    resource = _without_documents(kind, resource)
    properties = resource.get("Properties")
    if isinstance(properties, dict) and read:  # documents the reader reads: judged as such
        resource = {**resource, "Properties": {k: v for k, v in properties.items()
                                               if k not in read}}
        properties = resource["Properties"]
    if not isinstance(properties, dict) or kind == "AWS::Serverless::Connector" or (
            _GRANTING_TYPE.search(kind) and not kind.startswith("AWS::Serverless::")):
        return resource
    rest = {k: v for k, v in resource.items() if k != "Properties"}
    if kind.startswith("AWS::Serverless::"):
        return {**rest, "Properties": {k: v for k, v in properties.items()
                                       if k in SAM_GRANTING - read}}
    return {**rest, "Properties": _granting_values({k: v for k, v in properties.items()
                                                    if k not in read})}


def _granting_values(value: object, path: str = "") -> dict:
    """path -> value of each key that says who may do what (_POLICY_KEY), at any depth of
    objects, lists and JSON strings (a launch template's IamInstanceProfile, a Batch job's
    JobRoleArn, a schedule's Target.RoleArn)."""
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            value = parse_json_text(value, path or "a value")
        except Exception:  # an InputError: not JSON, a string like any other
            return {}
    found: dict = {}
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else str(key)
            if _POLICY_KEY.search(str(key)):
                found[where] = inner
            else:
                found.update(_granting_values(inner, where))
    elif isinstance(value, list):
        for number, inner in enumerate(value):
            found.update(_granting_values(inner, f"{path}[{number}]"))
    return found


def _without_documents(kind: object, resource: dict) -> dict:
    """A resource without the policy documents the gate judges itself (iac readers read
    them as policies): what is left is what an Other compares."""
    from .cloudformation import DOCUMENTS

    properties = resource.get("Properties")
    if not isinstance(properties, dict):
        return resource
    read = {"Policies"} if kind in PRINCIPAL_TYPES else \
        {DOCUMENTS[kind][0]} if kind in DOCUMENTS else set()
    return {**resource, "Properties": {k: v for k, v in properties.items() if k not in read}}


def managed_arn(text: str, line: int) -> Held:
    """A managed policy ARN as a Held: an AWS managed one resolved from the snapshot."""
    match = _PARTITION_ARN.match(text)
    if match is not None:
        arn = f"arn:aws:iam::aws:policy/{match.group(1)}"
        document = document_for_arn(arn)
        if document is not None:
            return Held(arn, line, document)
        return Held(arn, line, None, f"{arn} is not in the AWS managed policy snapshot")
    if is_aws_managed(text):
        return Held(text, line, None, f"{text} is not in the AWS managed policy snapshot")
    return Held(text, line, None, f"{text} is not defined in this template (its document is "
                "not known)")


# --- Terraform ------------------------------------------------------------------------------

_REFERENCE = re.compile(r"^(data\.)?([a-z0-9_]+)\.([A-Za-z0-9_-]+)(?:\[[^\]]*\])?\.([a-z_]+)$")


class _Terraform:
    """`.tf`: blocks read by refiner.iac.hcl; expressions are never evaluated."""

    def __init__(self, text: str, policies):
        from . import hcl

        self.hcl = hcl
        self.text = text
        self.root = hcl.parse(text)
        self.policies = policies
        self.holdings = Holdings()
        self.by_name: dict[tuple[str, str], str] = {}
        self.blocks: dict[str, object] = {}

    def line(self, offset: int) -> int:
        return line_number(self.text, offset)

    def source(self, value) -> str:
        return " ".join(self.text[value.start:value.end].split())

    def inputs(self, value) -> str:
        """An expression as written, with the blocks it names, the variables and the locals
        (as inputs() for CloudFormation)."""
        text = self.source(value)
        named = [self.text[b.start:b.end] for address, b in sorted(self.blocks.items())
                 if re.search(r"(?<![\w.])" + re.escape(address) + r"\b", text)]
        return self.with_context(text + (" names " + canonical(named) if named else ""))

    def read(self) -> Holdings:
        holdings = self.holdings
        for block in self.root.blocks:
            raw = self.text[block.start:block.end]
            if block.type == "module":
                holdings.others[f"module.{'.'.join(block.labels)}"] = Other(
                    f"module.{'.'.join(block.labels)}", self.line(block.start),
                    "a module (its inputs and resources are not read here)",
                    self.with_context(raw))
            if block.type not in ("resource", "data") or len(block.labels) != 2:
                continue
            type_name, name = block.labels
            address = f"{'data.' if block.type == 'data' else ''}{type_name}.{name}"
            self.blocks[address] = block
            if block.type == "data":
                if type_name != "aws_iam_policy_document":  # that one is a judged policy
                    holdings.others[address] = Other(address, self.line(block.start),
                                                     "a data source (read at plan time)",
                                                     self.with_context(raw))
                continue
            if type_name in TF_PRINCIPALS:
                principal = Principal(f"{TF_PRINCIPALS[type_name]}:{address}",
                                      TF_PRINCIPALS[type_name], address, self.line(block.start),
                                      {address})
                name_value = block.attribute("name")
                if name_value is not None and name_value.value.kind == "string":
                    principal.names.add(name_value.value.value)
                holdings.principals[principal.key] = principal
                for known in principal.names:
                    self.by_name[(principal.kind, known)] = principal.key
            counted = [a.name for a in block.attributes if a.name in ("count", "for_each")] + \
                [b.type for b in block.blocks if b.type == "dynamic"]
            if type_name in TF_MODELLED and counted:
                holdings.others[address] = Other(address, self.line(block.start),
                                                 f"a resource made with {counted[0]}",
                                                 self.without_policy(block))
            elif type_name not in TF_MODELLED and _GRANTING_TYPE.search(type_name):
                # A document the reader reads in it is judged as a policy; the rest here.
                read = any(i == address or i.startswith((address + ".", address + "["))
                           for i in self.policies)
                holdings.others[address] = Other(address, self.line(block.start),
                                                 f"{type_name} (not modelled by the gate)",
                                                 self.without_policy(block) if read
                                                 else self.with_context(raw))
            elif type_name not in TF_MODELLED and self.granting(block):
                # Only what can grant: a change to anything else is no change of access.
                holdings.others[address] = Other(address, self.line(block.start),
                                                 f"{type_name} (not modelled by the gate)",
                                                 self.with_context(canonical(
                                                     self.granting(block))))
        for address, block in self.blocks.items():
            if not address.startswith("data.") and block.labels[0] in TF_MODELLED:
                self.resource(address, block)
        return holdings

    def granting(self, block, prefix: str = "") -> dict:
        """path -> text of each attribute or nested block that says who may do what, at any
        depth (`target { role_arn }`); an attribute whose value writes such a key (an
        object, jsonencode, a JSON string) counts whole."""
        found = {}
        for attribute in block.attributes:
            written = _WRITTEN_KEY.findall(self.text[attribute.value.start:attribute.value.end])
            if _POLICY_KEY.search(attribute.name) or any(_POLICY_KEY.search(k) for k in written):
                found[prefix + attribute.name] = self.source(attribute.value)
        for number, inner in enumerate(block.blocks):
            where = f"{prefix}{inner.type} {number}"
            if _POLICY_KEY.search(inner.type):
                found[where] = self.text[inner.start:inner.end]
            else:
                found.update(self.granting(inner, where + "."))
        return found

    def principal(self, kind: str, value, line: int) -> str | None:
        if value.kind == "string":
            key = self.by_name.get((kind, value.value))
            if key is None:
                key = f"{kind}:name:{value.value}"
                self.holdings.principals.setdefault(
                    key, Principal(key, kind, value.value, line, {value.value}, defined=False))
            return key
        if value.kind == "unresolved":
            match = _REFERENCE.match(value.value.strip())
            if match and not match.group(1) and TF_PRINCIPALS.get(match.group(2)) == kind and \
                    match.group(4) in ("name", "id", "arn", "unique_id") and \
                    "[" not in value.value:
                key = f"{kind}:{match.group(2)}.{match.group(3)}"
                # Defined in another file of the module: the module's holdings merge them.
                self.holdings.principals.setdefault(
                    key, Principal(key, kind, key.split(":", 1)[1], line, defined=False))
                return key
        return None

    def document_of(self, value, line: int, ref: str) -> Held:
        """A policy document given as an attribute's value: jsonencode, a heredoc, a string,
        or a data aws_iam_policy_document's json."""
        if value.kind == "call" and value.token.text == "jsonencode" and value.items and \
                self.hcl.unresolved_in(value.items[0]) is None:
            return Held(ref, line, self.hcl.to_json(value.items[0]))
        if value.kind in ("heredoc", "string") and value.value is not None:
            try:
                return Held(ref, line, parse_json_text(value.value, ref))
            except Exception:  # an InputError: not JSON
                return Held(ref, line, None, "the document is not JSON")
        if value.kind == "unresolved":
            match = _REFERENCE.match(value.value.strip())
            if match and match.group(1) and match.group(2) == "aws_iam_policy_document" and \
                    match.group(4) == "json":
                policy_id = f"data.aws_iam_policy_document.{match.group(3)}"
                return self.located(ref, line, policy_id)
        return Held(f"{ref} {self.inputs(value)}", line, None,
                    f"the document is `{self.source(value)}`: not resolved")

    def located(self, ref: str, line: int, policy_id: str) -> Held:
        located = self.policies.get(policy_id)
        block = self.blocks.get(policy_id)
        policy = block.attribute("policy") if block is not None else None
        if policy is not None and policy.value.kind == "unresolved" and \
                policy.value.value.strip().startswith("data.aws_iam_policy_document."):
            held = self.document_of(policy.value, line, ref)  # the data source's document
            held.ref, held.policy_id = ref, policy_id
            return held
        if located is None or not isinstance(located.document, dict):
            reason = located.refusal if located is not None and located.refusal else \
                f"{policy_id} is not read"
            return Held(ref, line, None, reason, policy_id)
        reason = located.refusal if located.refusal and not isinstance(
            located.document.get("Statement"), list) else None
        return Held(ref, line, located.document, reason, policy_id)

    def arn(self, value, line: int) -> Held:
        if value.kind == "string":
            return managed_arn(value.value, line)
        if value.kind == "unresolved":
            source = value.value.strip()
            if _PARTITION_ARN.match(source):
                return managed_arn(source, line)
            match = _REFERENCE.match(source)
            if match and not match.group(1) and match.group(2) == "aws_iam_policy" and \
                    match.group(4) in ("arn", "id"):
                policy_id = f"aws_iam_policy.{match.group(3)}"
                return self.located(f"policy {policy_id}", line, policy_id)
            if match and match.group(1) and match.group(2) == "aws_iam_policy" and \
                    match.group(4) == "arn":
                data = self.blocks.get(f"data.aws_iam_policy.{match.group(3)}")
                arn = data.attribute("arn") if data is not None else None
                if arn is not None and arn.value.kind in ("string", "unresolved"):
                    return self.arn(arn.value, line)
        return Held(self.inputs(value), line, None,
                    f"the policy ARN is `{self.source(value)}`: not resolved")

    def resource(self, address: str, block) -> None:
        holdings = self.holdings
        type_name = block.labels[0]
        line = self.line(block.start)
        if type_name in TF_PRINCIPALS:
            principal = holdings.principals[f"{TF_PRINCIPALS[type_name]}:{address}"]
            principal.rest = self.with_context(canonical(
                {a.name: self.source(a.value) for a in block.attributes
                 if a.name not in TF_PRINCIPAL_KEYS} |
                {f"{b.type} {n}": self.text[b.start:b.end] for n, b in enumerate(block.blocks)
                 if b.type != "inline_policy"}))
            for inline in (b for b in block.blocks if b.type == "inline_policy"):
                name = inline.attribute("name")
                policy = inline.attribute("policy")
                ref = f"inline_policy {self.source(name.value) if name else ''}"
                inline_line = self.line(inline.start)
                held = self.document_of(policy.value, inline_line, ref) if policy is not None \
                    else Held(ref, inline_line, {"Version": "2012-10-17", "Statement": []})
                held.name = self.literal(name)
                principal.documents.append(held)
            arns = block.attribute("managed_policy_arns")
            if arns is not None:
                for value in arns.value.items if arns.value.kind == "tuple" else [arns.value]:
                    principal.documents.append(self.arn(value, self.line(value.start)))
            boundary = block.attribute("permissions_boundary")
            if boundary is not None:
                principal.boundary = self.arn(boundary.value, self.line(boundary.start))
            trust = block.attribute("assume_role_policy")
            if trust is not None:
                principal.trust = Held(self.inputs(trust.value), self.line(trust.start),
                                       None, "a trust policy")
            return
        if type_name in ("aws_iam_role_policy", "aws_iam_user_policy", "aws_iam_group_policy"):
            policy = block.attribute("policy")
            held = self.located(f"policy {address}", line, address)
            if held.document is None and policy is not None:
                held = self.document_of(policy.value, line, f"policy {address}")
                held.policy_id = address
            held.name = self.literal(block.attribute("name"))
        elif type_name in ("aws_iam_role_policy_attachment", "aws_iam_user_policy_attachment",
                           "aws_iam_group_policy_attachment", "aws_iam_policy_attachment"):
            arn = block.attribute("policy_arn")
            held = self.arn(arn.value, line) if arn is not None else \
                Held(address, line, None, "no policy_arn")
        elif type_name == "aws_iam_user_group_membership":
            user_attribute = block.attribute("user")
            user = self.principal("user", user_attribute.value, line) \
                if user_attribute is not None else None
            groups = block.attribute("groups")
            if user is None or groups is None:
                self.unresolved(address, block, "a user")
                return
            for value in groups.value.items if groups.value.kind == "tuple" else [groups.value]:
                self.member(holdings.principals[user], value, self.line(value.start))
            return
        elif type_name == "aws_iam_group_membership":
            group = block.attribute("group")
            users = block.attribute("users")
            if group is None or users is None:
                self.unresolved(address, block, "a group")
                return
            for value in users.value.items if users.value.kind == "tuple" else [users.value]:
                user = self.principal("user", value, self.line(value.start))
                if user is None:
                    self.unresolved(address, block, "a user")
                    continue
                self.member(holdings.principals[user], group.value, self.line(value.start))
            return
        else:  # aws_iam_policy: held only through attachments
            return
        for attribute in block.attributes:
            if attribute.name not in TF_TARGETS:
                continue
            kind, listed = TF_TARGETS[attribute.name]
            values = attribute.value.items if listed and attribute.value.kind == "tuple" else \
                [attribute.value]
            for value in values:
                key = self.principal(kind, value, self.line(value.start))
                if key is None:
                    self.unresolved(address, block, f"a {kind}")
                    continue
                holdings.principals[key].documents.append(
                    Held(held.ref, self.line(value.start), held.document, held.reason,
                         held.policy_id, name=held.name))

    @staticmethod
    def literal(attribute) -> str | None:
        """An attribute's value when it is a literal string."""
        return attribute.value.value if attribute is not None and \
            attribute.value.kind == "string" else None

    def member(self, user: Principal, value, line: int) -> None:
        key = self.principal("group", value, line)
        if key is None:
            user.documents.append(Held(f"group {self.inputs(value)}", line, None,
                                       f"the group is `{self.source(value)}`: not resolved"))
            return
        user.groups.append((key, line))

    def unresolved(self, address: str, block, what: str) -> None:
        self.holdings.others[f"{address} {what}"] = Other(
            address, self.line(block.start), f"{what} named by an expression (not resolved)",
            self.without_policy(block))

    def without_policy(self, block) -> str:
        """A block as written but for the policy documents the gate judges itself."""
        return self.with_context(canonical(
            {"attributes": {a.name: self.source(a.value) for a in block.attributes
                            if a.name not in ("policy", "inline_policy")},
             "blocks": [self.text[b.start:b.end] for b in block.blocks]}))

    def with_context(self, text: str) -> str:
        """Text as written, with the variables and locals it reads."""
        read = [self.text[b.start:b.end] for b in self.root.blocks
                if b.type == "variable" and b.labels and
                re.search(r"(?<![\w.])var\." + re.escape(b.labels[0]) + r"\b", text)
                or b.type == "locals" and re.search(r"(?<![\w.])local\.", text)]
        return text + (" reads " + canonical(read) if read else "")


class _TerraformJson:
    """`.tf.json`: its IAM principals and attachments are not modelled one by one; every
    IAM-bearing resource is an Other (judged only as unchanged), its policies by the gate."""

    def __init__(self, text: str, value: dict, policies):
        self.text, self.value, self.policies = text, value, policies

    def read(self) -> Holdings:
        holdings = Holdings()
        for section in ("resource", "module"):
            blocks = self.value.get(section)
            for types in blocks if isinstance(blocks, list) else [blocks]:
                if not isinstance(types, dict):
                    continue
                for type_name, body in types.items():
                    if section == "module" or _GRANTING_TYPE.search(type_name) or \
                            _POLICY_KEY.search(canonical(body)):
                        # A policy resource's document is judged by the gate itself.
                        rest = body if type_name not in TF_POLICY_RESOURCES else {
                            name: {k: v for k, v in one.items() if k != "policy"}
                            if isinstance(one, dict) else one
                            for name, one in body.items()} if isinstance(body, dict) else body
                        key = f"{section}.{type_name}"
                        holdings.others[key] = Other(key, 1, f"{type_name} in .tf.json (the "
                                                     "gate does not model its attachments)",
                                                     canonical(rest))
        return holdings
