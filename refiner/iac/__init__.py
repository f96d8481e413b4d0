"""Policies where they live: CloudFormation and Terraform files, read, refined and written back.

template_kind(path) tells a template from a policy file; read_template(path) finds every
identity-policy document in it (model.Template); refine_template refines each of them with
pipeline.refine_within_size (refine, write into the document's JSON text, read back, prove),
writes only the changed Action/NotAction lists (and cuts removed statements) back into the
template's text at the spans the reader located, then reads the whole written template again
and checks that every policy in it is exactly the proven document (or, untouched, exactly
the one read). Nothing is written unless all of that holds."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from ..catalog import Catalog
from ..errors import InputError
from ..finding import Unused
from ..jsontext import MAX_INPUT_BYTES, parse_json_text, read_bytes, read_text
from ..pipeline import Run, refine_within_size
from ..prove import Violation, same_json
from ..refinement import DEFAULT_STRATEGY
from ..sniff import kind_of, template_kind, value_kind
from .edit import apply_edits
from .model import IDENTITY, KINDS, Located, Template, TextDocument, edits_for, text_document_lines

__all__ = ["KINDS", "Located", "Template", "TemplateRun", "Outcome", "template_kind", "kind_of",
           "read_template", "parse_template", "template_from_text", "template_from_bytes",
           "looks_like_infrastructure", "read_policy_file",
           "refine_template", "not_refined"]


# What marks a file as infrastructure code that may hold IAM: a file with one of these that
# cannot be read is unknown, never skipped.
_INFRASTRUCTURE = re.compile(
    rb"AWS::[A-Za-z0-9]+::|AWSTemplateFormatVersion|\bResources\b|PolicyDocument|"
    rb"\baws_[a-z0-9_]+|\bresource\s+\"|\"resource\"|\bStatement\b|planned_values|"
    rb"Fn::|!Ref\b|!Sub\b|!GetAtt\b")


def looks_like_infrastructure(path: str, data: bytes) -> bool:
    """Whether a file that cannot be read may hold IAM (by its name and what it says)."""
    name = path.lower()
    return name.endswith((".tf", ".tf.json", ".tfvars", ".tftpl")) or (
        name.endswith((".json", ".yaml", ".yml", ".template", ".tmpl", ".cfn"))
        and _INFRASTRUCTURE.search(data[:1_000_000]) is not None)


def template_from_bytes(path: str, data: bytes) -> Template | None:
    """A file at some version, as the gate reads it: a template, a policy file as a template
    of one policy, None when it is neither; and when it looks like infrastructure code that
    may hold IAM but cannot be read (over the size limit, not UTF-8, JSON or YAML with an
    error, a shape refiner does not know), a Template of kind "unreadable" with no policy
    and one unknown naming why and where. Never an exception for what the file holds."""
    def unreadable(line: int, why: str) -> Template:
        return Template(path, "unreadable", "", [], unknowns=[(line, why)])

    if len(data) > MAX_INPUT_BYTES:
        return unreadable(1, f"larger than {MAX_INPUT_BYTES // 2**20} MiB: refiner does not "
                          "read it") if looks_like_infrastructure(path, data[:1_000_000]) \
            else None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if not looks_like_infrastructure(path, data):
            return None
        return unreadable(data.count(b"\n", 0, error.start) + 1, "not UTF-8 text "
                          f"(byte {error.start}): refiner cannot read it")
    try:
        found = template_from_text(path, text)
    except InputError as error:
        if not looks_like_infrastructure(path, data):
            raise
        line = re.search(r"\bline (\d+)", str(error))
        return unreadable(int(line.group(1)) if line else 1, str(error))
    if found is None and text.strip() and looks_like_infrastructure(path, data):
        problem = _json_problem(path, text)
        return unreadable(problem[0], problem[1]) if problem else None
    return found


def _json_problem(path: str, text: str) -> tuple[int, str] | None:
    """(line, why) when a text meant as JSON does not parse as JSON (a trailing comma, a
    repeated key, ...)."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        parse_json_text(text, path)
    except InputError as error:
        line = re.search(r"\bline (\d+)", str(error))
        return (int(line.group(1)) if line else 1), str(error)
    return None


def template_from_text(path: str, text: str) -> Template | None:
    """A template, or a policy file as a template of one policy, read from text; None when
    the text is neither (the gate skips such files)."""
    kind = kind_of(path, text)
    if kind is not None:
        return parse_template(path, text, kind)
    try:
        value = parse_json_text(text, path)
    except InputError:
        return None
    if value_kind(value) != "an IAM policy":
        return None
    from ..policy import load_policy

    return _policy_template(path, load_policy(value, f"policy {path}", text))


def read_template(path: str, kind: str | None = None) -> Template:
    kind = kind or template_kind(path)
    if kind is None:
        return read_policy_file(path)
    if kind in ("terraform", "terraform-json") and not read_bytes(path, "template").strip():
        return Template(path, kind, "", [])  # an empty Terraform file declares nothing
    text = read_text(path, "template")
    with open(path, "rb") as handle:
        bom = handle.read(3) == codecs.BOM_UTF8
    template = parse_template(path, text, kind)
    template.bom = bom
    return template


def parse_template(path: str, text: str, kind: str) -> Template:
    from . import cloudformation, terraform

    if kind == "cloudformation-yaml":
        return cloudformation.read_yaml(path, text)
    if kind == "terraform":
        return terraform.read_hcl(path, text)
    value = parse_json_text(text, path)
    if not isinstance(value, dict):
        raise InputError(f"{path} is not {KINDS[kind]}")
    if kind == "cloudformation-json":
        return cloudformation.read_json(path, text, value)
    if kind == "terraform-json":
        return terraform.read_tf_json(path, text, value)
    if kind == "terraform-plan":
        return terraform.read_plan(path, text, value)
    raise InputError(f"{path}: unknown template kind {kind}")


def read_policy_file(path: str) -> Template:
    """A policy file (any shape refine reads) as a template of one policy, id "policy"."""
    from ..policy import read_policy

    return _policy_template(path, read_policy(path, f"policy {path}"))


def _policy_template(path: str, policy) -> Template:
    from ..writeback import locate

    source = policy.source
    located = Located("policy", 1, policy.kind, policy.document, source.document_text())
    if source.encoding is None:
        node = locate(source.text)
        for key in source.path:
            node = node.members[key]
        writer = TextDocument(node.start, node.end)
        located.line = source.text.count("\n", 0, node.start) + 1
        located.statement_lines = text_document_lines(source.text, writer)
    return Template(path, "policy", source.text, [located], source.bom)


def not_refined(located: Located) -> tuple[int, str] | None:
    """(line, why) when refine leaves a policy as it is: not an identity policy (an unused-
    access finding is about what a principal's identity policies grant), refused, or read
    but not writable. None when it is refined."""
    if located.document_type != IDENTITY:
        return located.line, f"left as it is: {located.type_description} (an unused-access " \
            "finding is about identity policies)"
    if located.not_refinable is not None:
        return located.refusal_line or located.line, f"not refined: {located.not_refinable}"
    return None


@dataclass
class Outcome:
    """What became of one policy: refined, unchanged, refused (see Located.refusal and
    read_only), left (a trust, resource or unknown policy: an identity finding says nothing
    about it), detach (no statement is left) or failed (its proof failed)."""

    policy: Located
    status: str
    run: Run | None = None


@dataclass
class TemplateRun:
    template: Template
    text: str  # the template with every proven refinement written (the input when none)
    outcomes: list[Outcome] = field(default_factory=list)
    violations: list[tuple[str, Violation]] = field(default_factory=list)  # (policy id, ...)

    @property
    def changed(self) -> bool:
        return self.text != self.template.text


def refine_template(template: Template, unused: Unused | None, catalog: Catalog,
                    timeout_ms: int, max_size: int | None = None,
                    strategy: str = DEFAULT_STRATEGY, only: str | None = None,
                    findings: dict[str, Unused] | None = None) -> TemplateRun:
    """Refine every policy of the template (or only the one with id `only`) against one
    finding, or (findings) each policy it names against its own (iac.reach); see the
    module's docstring. A failed proof of any policy writes nothing."""
    result = TemplateRun(template, template.text)
    edits = []
    for located in template.policies:
        if only is not None and located.id != only:
            continue
        if located.document_type != IDENTITY:
            result.outcomes.append(Outcome(located, "left"))
            continue
        if findings is not None and located.id not in findings:
            continue
        own = findings[located.id] if findings is not None else unused
        if located.not_refinable is not None:
            result.outcomes.append(Outcome(located, "refused"))
            continue
        policy = located.policy_input(f"{template.path}: {located.id}")
        policy.kind = located.kind
        run = refine_within_size(policy, own, catalog, timeout_ms, max_size, strategy)
        if run.violations:
            result.violations += [(located.id, violation) for violation in run.violations]
            result.outcomes.append(Outcome(located, "failed", run))
        elif run.detach:
            result.outcomes.append(Outcome(located, "detach", run))
        elif run.changed:
            edits += edits_for(template.text, located, run)
            result.outcomes.append(Outcome(located, "refined", run))
        else:
            result.outcomes.append(Outcome(located, "unchanged", run))
    if result.violations or not edits:
        return result
    text = apply_edits(template.text, edits)
    result.violations = written_differently(template, text, result.outcomes)
    if not result.violations:
        result.text = text
    return result


def _text_value(located: Located) -> object:
    """The document as refine reads its text (the reader's value may differ: a Terraform
    heredoc that interpolates holds its `${...}` as expressions there)."""
    if located.document_text is None:
        return located.document
    try:
        return located.policy_input(located.id).document
    except InputError:
        return located.document


def written_differently(template: Template, text: str,
                        outcomes: list[Outcome]) -> list[tuple[str, Violation]]:
    """Read the written template again: every refined policy must read back as the proven
    document, and every other policy as it was read (the proof is about what is written)."""
    try:
        again = parse_template(template.path, text, template.kind)
    except InputError as error:
        return [("", Violation("structure", None, None,
                               f"the written template does not read back ({error})"))]
    if [p.id for p in again.policies] != [p.id for p in template.policies]:
        return [("", Violation("structure", None, None,
                               "the written template holds other policies than it did"))]
    refined = {o.policy.id: o.run.refined.document for o in outcomes if o.status == "refined"}
    problems = []
    for before, after in zip(template.policies, again.policies, strict=True):
        expected = refined.get(before.id, before.document)
        # A refined policy is proven on its text (what refine reads): the text read back.
        got = _text_value(after) if before.id in refined else after.document
        if not same_json(got, expected) or (
                before.id in refined and after.refusal is not None):
            problems.append((before.id, Violation(
                "structure", None, None, "the written template reads back as another policy "
                "than the proven one")))
    return problems
