"""Policies found in a template, with the way back to where each is written.

A reader (cloudformation.py, terraform.py) returns a Template: the file's text, one Located
per policy document in it, and what the reader did not model (Template.unknowns). A Located
says what the document is (document_type: an identity policy, a role's trust policy, a
resource's policy) and, where the reader knows it, whose it is (principal_hint); what its
expressions read (inputs: names of Template.definitions, or outside the file); the document
as a JSON value (intrinsic functions and Terraform expressions as objects, so that no policy
value can be mistaken for them), the JSON text refine reads, why it cannot be refined (if so,
naming the line), the lines of its statements and entries (for reports), and a writer:

- TextDocument: the document is JSON text in the template (a CloudFormation JSON template, a
  heredoc, a JSON string): refine's own byte-minimal writer edits that text, and it is put
  back where it was, encoded the way it was held.
- Structured: the document is written in the template's syntax (YAML, HCL, a Terraform JSON
  data source): only the Action/NotAction values of changed statements are rewritten, in
  their own layout, and removed statements are cut out."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field

from ..policy import PolicyInput, load_policy, parse_json_text
from ..writeback import locate
from .edit import (
    HCL_LIST,
    JSON_LIST,
    YAML_BLOCK,
    YAML_FLOW,
    Edit,
    Item,
    apply_edits,
    line_end,
    line_number,
    remove_lines,
    rewrite_list,
)

SYNTAXES = {"yaml-block": YAML_BLOCK, "yaml-flow": YAML_FLOW, "hcl": HCL_LIST, "json": JSON_LIST}
ACTION_KEYS = ("Action", "NotAction")


def template_string(text: str) -> str:
    """The string a Terraform template without interpolation makes: its `$${` and `%%{` are
    `${` and `%{`."""
    return text.replace("$${", "${").replace("%%{", "%{")


@dataclass
class TextDocument:
    """A document held as JSON text at [start, end) of the template. encoding: "text" (the
    span is the JSON text itself), "json-string" / "json-string-ascii" (a JSON string holding
    it), "yaml-single" / "yaml-double" (a one-line quoted YAML scalar), "yaml-block" (a literal
    block scalar: its content lines, indented by `indent`). template: the text is a Terraform
    template without interpolation (a heredoc, a string of .tf.json), whose `$${` and `%%{`
    are `${` and `%{` in the document it makes (an IAM policy variable, `${aws:username}`)."""

    start: int
    end: int
    encoding: str = "text"
    indent: str = ""
    newline: str = "\n"
    template: bool = False

    def decode(self, text: str) -> str:
        held = self._decoded(text[self.start:self.end])
        return template_string(held) if self.template else held

    def _decoded(self, held: str) -> str:
        if self.encoding == "text":
            return held
        if self.encoding.startswith("json-string") or self.encoding == "yaml-double":
            return json.loads(held)
        if self.encoding == "yaml-single":
            return held[1:-1].replace("''", "'")
        lines = held.split(self.newline)
        return "\n".join(line[len(self.indent):] for line in lines)

    def encode(self, document: str) -> str:
        if self.template:
            document = document.replace("${", "$${").replace("%{", "%%{")
        if self.encoding == "text":
            return document
        if self.encoding.startswith("json-string") or self.encoding == "yaml-double":
            return json.dumps(document, ensure_ascii=self.encoding == "json-string-ascii")
        if self.encoding == "yaml-single":
            return "'" + document.replace("'", "''") + "'"
        return self.newline.join(self.indent + line if line else line
                                 for line in document.split("\n"))

    def faithful(self, text: str) -> bool:
        """Whether writing the document back unchanged gives the template's text back."""
        try:
            return self.encode(self.decode(text)) == text[self.start:self.end]
        except ValueError:
            return False

    def line_of(self, text: str, offset: int) -> int:
        """The template line of a position in the decoded document."""
        base = line_number(text, self.start)
        if self.encoding in ("text", "yaml-block"):
            return base + self.decode(text).count("\n", 0, offset)
        return base


@dataclass
class ActionValue:
    """A statement's Action/NotAction value written in the template's syntax: its span, its
    entries (items; None for a single string), and what writing a new list there needs."""

    key: str
    start: int
    end: int
    syntax: str  # yaml-block, yaml-flow, hcl, json (for a single string: the syntax a list gets)
    items: list[Item] | None = None
    values: list[str] = field(default_factory=list)
    opening: int | None = None  # just after "[" of a bracketed list
    quote: str = '"'  # YAML: "" plain when safe, "'" or '"'
    # A single string that becomes a list: where the new list starts, and its indentation
    # (YAML block: the dash's; HCL: the key line's); flow: written on one line.
    list_start: int | None = None
    list_indent: str = ""
    flow: bool = False


@dataclass
class StatementSpot:
    start: int
    end: int
    line: int
    action: ActionValue | None
    item: Item | None = None  # as an entry of the Statement list
    entry_lines: dict[str, int] = field(default_factory=dict)


@dataclass
class Structured:
    """A document in the template's syntax. container: "list" (the statements are entries of
    a list in `syntax`), "single" (one statement object) or "blocks" (HCL statement blocks)."""

    statements: list[StatementSpot]
    container: str
    syntax: str = "json"
    opening: int | None = None


# What a document is: who or what it reaches decides how it may be refined and judged.
IDENTITY, TRUST, RESOURCE, UNKNOWN = "identity", "trust", "resource", "unknown"
DOCUMENT_TYPES = (IDENTITY, TRUST, RESOURCE, UNKNOWN)


@dataclass
class Located:
    id: str
    line: int
    kind: str  # "managed" or "inline": AWS's size limit that applies
    document: object = None  # the document as a JSON value (None: not read)
    document_text: str | None = None  # the JSON text refine reads
    writer: TextDocument | Structured | None = None
    refusal: str | None = None  # why it cannot be refined or judged
    refusal_line: int | None = None  # the line it is about
    statement_lines: list[tuple[int, dict[str, int]]] = field(default_factory=list)
    # identity (grants a principal access), trust (who may assume a role), resource (who may
    # use a resource), unknown (a SAM policy template the translator's data does not define).
    document_type: str = IDENTITY
    # Whose document it is, when the reader sees it cheaply: the role/user/group/function
    # (logical id, Terraform address, or a literal name) it is written in or names.
    principal_hint: str | None = None
    # Why refine cannot write this document back although it was read and can be judged (a
    # SAM policy template, an AWS managed policy, statements made by a dynamic block).
    read_only: str | None = None
    # An AWS managed policy named by ARN (SAM Policies, ...): document is the snapshot's.
    managed_arn: str | None = None
    # What the document's expressions read: "Parameters.X", "Mappings.X", "Conditions.X",
    # "Resources.X" (Ref/GetAtt), "ImportValue", "resolve:..." (dynamic references);
    # Terraform "var.x", "local.x", "data.T.N", "module.M", "each", "count", "file:PATH".
    # Names of Template.definitions that read other names are closed over.
    inputs: set[str] = field(default_factory=set)
    # Parts of this document the reader does not model, (line, why): a dynamic block whose
    # for_each is not a literal, ... A gate may judge the rest only while these are unchanged.
    unknowns: list[tuple[int, str]] = field(default_factory=list)

    def refuse(self, line: int, reason: str) -> Located:
        if self.refusal is None:
            self.refusal, self.refusal_line = reason, line
        return self

    @property
    def not_refinable(self) -> str | None:
        """Why refine cannot write this document (refused, or read but not writable)."""
        return self.refusal if self.refusal is not None else self.read_only

    @property
    def type_description(self) -> str:
        return {IDENTITY: "an identity policy", TRUST: "a trust policy (who may assume the "
                "role)", RESOURCE: "a resource policy", UNKNOWN: "a policy of unknown kind"}[
            self.document_type]

    def policy_input(self, label: str) -> PolicyInput:
        return load_policy(parse_json_text(self.document_text, label), label, self.document_text)

    def line_of(self, statement: int | None, pattern: str | None = None) -> int:
        """The line of an entry of a statement (or of the statement, or of the policy)."""
        if statement is None or not 0 <= statement < len(self.statement_lines):
            return self.line
        line, entries = self.statement_lines[statement]
        return entries.get(pattern, line) if pattern is not None else line


@dataclass
class Template:
    path: str
    kind: str  # a key of KINDS
    text: str
    policies: list[Located]
    bom: bool = False
    # What expressions in the policies can read besides the policies themselves, as written
    # (CloudFormation Parameters, Mappings, Conditions, ...; Terraform variables and locals).
    # The gate takes an expression at its word only while this is unchanged.
    context: str = ""
    # Constructs the reader does not model, (line, why): Properties chosen by Fn::If,
    # Fn::ForEach, a resource Condition, count/for_each, a Type that is not a string, a file
    # that cannot be read. Whatever they hold is not in `policies`.
    unknowns: list[tuple[int, str]] = field(default_factory=list)
    # Each input a document may read (see Located.inputs), as written in this file (canonical
    # JSON, or Terraform source): an input whose definition differs between two versions of
    # the file changes what the documents that read it say.
    definitions: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return KINDS[self.kind]

    def policy(self, policy_id: str) -> Located | None:
        return next((p for p in self.policies if p.id == policy_id), None)


KINDS = {
    "cloudformation-json": "a CloudFormation template",
    "cloudformation-yaml": "a CloudFormation template in YAML",
    "terraform": "Terraform HCL (.tf)",
    "terraform-json": "a Terraform JSON configuration (.tf.json)",
    "terraform-plan": "a Terraform plan (terraform show -json)",
    "policy": "an IAM policy",
    # A file that looks like infrastructure code holding IAM but cannot be read (not UTF-8,
    # over the size limit, JSON or YAML that does not parse as the deployer would read it):
    # no policies, one entry in unknowns naming why and where.
    "unreadable": "a file that looks like infrastructure code but cannot be read",
}


# --- reading helpers ------------------------------------------------------------------------

def finish(located: Located, label: str) -> Located:
    """Check that refine can read the document (a refusal names the line otherwise) and
    record where its statements and entries are, for a TextDocument."""
    if located.refusal is not None or located.document_text is None:
        return located
    try:
        located.policy_input(label)
    except Exception as error:  # an InputError: the document is not a policy refine reads
        message = str(error).removeprefix(label + ": ").removeprefix(label + " ")
        return located.refuse(located.line, message)
    return located


def text_document_lines(text: str, writer: TextDocument) -> list[tuple[int, dict[str, int]]]:
    """Lines of each statement of a JSON-text document and of its action entries."""
    document_text = writer.decode(text)
    node = locate(document_text)
    statements = node.members.get("Statement") if isinstance(node.members, dict) else None
    if statements is None:
        return []
    nodes = statements.members if isinstance(statements.members, list) else [statements]
    result = []
    for statement in nodes:
        entries: dict[str, int] = {}
        for key in ACTION_KEYS:
            value = statement.members.get(key) if isinstance(statement.members, dict) else None
            if value is None:
                continue
            for item in value.members if isinstance(value.members, list) else [value]:
                literal = document_text[item.start:item.end]
                if literal.startswith('"'):
                    entries.setdefault(json.loads(literal), writer.line_of(text, item.start))
        result.append((writer.line_of(text, statement.start), entries))
    return result


def action_refusal(value: object, key: str) -> str | None:
    """Why an Action/NotAction value read from a template cannot be refined, if it cannot."""
    entries = value if isinstance(value, list) else [value]
    for entry in entries:
        if isinstance(entry, dict):
            return f"{key} uses {describe_expression(entry)}; refiner does not resolve it"
        if isinstance(entry, str) and re.search(r"(?<!\$)\$\{|(?<!%)%\{", entry):
            return f"{key} uses an interpolation ({entry}); refiner does not resolve it"
    return None


def describe_expression(value: dict) -> str:
    if len(value) == 1:
        (key, inner), = value.items()
        if key == "terraform":
            return f"the Terraform expression `{inner}`"
        if key == "Ref" or key.startswith("Fn::") or key == "Condition":
            return f"{key} (an intrinsic function)"
    return "an object"


# --- writing --------------------------------------------------------------------------------

def edits_for(text: str, located: Located, run) -> list[Edit]:
    """The edits that write a proven refinement (a pipeline.Run) back into the template."""
    writer = located.writer
    if isinstance(writer, TextDocument):
        return [Edit(writer.start, writer.end, writer.encode(run.text))]
    return _structured_edits(text, writer, run.refinement.pairs)


def _structured_edits(text: str, document: Structured, pairs) -> list[Edit]:
    changed: dict[int, list[Edit]] = {}
    for index, (spot, (original, refined)) in enumerate(zip(document.statements, pairs,
                                                            strict=True)):
        if refined is not None and refined is not original:
            key = next(k for k in ACTION_KEYS if k in original)
            changed[index] = [_action_edit(text, spot.action, refined[key])]
    removed = [index for index, (_, refined) in enumerate(pairs) if refined is None]
    if not removed:
        return [edit for edits in changed.values() for edit in edits]
    if document.container == "blocks":
        return [edit for edits in changed.values() for edit in edits] + [
            remove_lines(text, document.statements[i].start, document.statements[i].end)
            for i in removed]
    operations = []
    for index, spot in enumerate(document.statements):
        if index in removed:
            operations.append(("drop", index, None))
        else:
            new = apply_edits(text, changed[index], spot.start, spot.end) \
                if index in changed else None
            operations.append(("keep", index, new))
    items = [spot.item for spot in document.statements]
    return [rewrite_list(text, items, operations, SYNTAXES[document.syntax], document.opening,
                         "Statement list")]


def _action_edit(text: str, value: ActionValue, entries: str | list[str]) -> Edit:
    """The edit that writes the new entries of one Action/NotAction value in its layout."""
    new = [entries] if isinstance(entries, str) else list(entries)
    written = dict(zip(value.values, [text[i.start:i.end] for i in value.items], strict=True)) \
        if value.items is not None else {value.values[0]: text[value.start:value.end]}

    def literal(entry: str) -> str:
        return written.get(entry) or render(entry, value.syntax, value.quote)

    if value.items is None:
        if isinstance(entries, str):
            return Edit(value.start, value.end, literal(entries))
        return _scalar_to_list(text, value, [literal(entry) for entry in new])
    operations = []
    matcher = difflib.SequenceMatcher(None, value.values, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            operations += [("keep", i, None) for i in range(i1, i2)]
            continue
        added = [literal(entry) for entry in new[j1:j2]]
        if i1 < i2 and added:
            # The first new entry takes the first replaced entry's place: its line, with the
            # indentation, comma and comment it had.
            operations.append(("keep", i1, added.pop(0)))
        elif i1 < i2:
            operations.append(("drop", i1, None))
        operations += [("add", None, entry) for entry in added]
        operations += [("drop", i, None) for i in range(i1 + 1, i2)]
    syntax = SYNTAXES[value.syntax]
    return rewrite_list(text, value.items, operations, syntax, value.opening,
                        f"{value.key} list")


def _scalar_to_list(text: str, value: ActionValue, literals: list[str]) -> Edit:
    newline = "\r\n" if "\r\n" in text else "\n"
    if value.syntax == "yaml-block" and not value.flow:
        lines = "".join(newline + value.list_indent + "- " + literal for literal in literals)
        start = value.list_start if value.list_start is not None else value.start
        if start == value.start:  # the value starts its own line: the list starts there
            return Edit(start, value.end, lines[len(newline) + len(value.list_indent):])
        # A comment after the string stays on the key's line, ahead of the new entries.
        rest = text[value.end:line_end(text, value.end)].rstrip("\r\n")
        if rest.strip().startswith("#"):
            return Edit(start, value.end + len(rest), rest + lines)
        return Edit(start, value.end, lines)
    if value.flow or value.list_start is None:
        return Edit(value.start, value.end, "[" + ", ".join(literals) + "]")
    inner = newline + value.list_indent + "  "
    return Edit(value.start, value.end,
                "[" + inner + ("," + inner).join(literals) + "," + newline + value.list_indent + "]")


_PLAIN_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.*?-]*")
_YAML_WORDS = re.compile(r"(?i)(true|false|null|yes|no|on|off|y|n|~|[-+]?[0-9][0-9_.eE+-]*)")


def render(entry: str, syntax: str, quote: str = '"') -> str:
    """A new entry written as a string literal of the syntax."""
    if not syntax.startswith("yaml"):
        return json.dumps(entry)
    plain_ok = _PLAIN_SAFE.fullmatch(entry) and not entry.endswith(":") \
        and not _YAML_WORDS.fullmatch(entry)
    if quote == "" and plain_ok:
        return entry
    if quote == '"':
        return json.dumps(entry)
    return "'" + entry.replace("'", "''") + "'"
