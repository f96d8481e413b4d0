"""Helpers for the template tests: fixtures, findings, and the check that a written template
differs from its input only inside the Action/NotAction lists that changed and the
statements that were removed."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from refiner.gate import compare_templates
from refiner.iac import TemplateRun, parse_template, template_from_text
from refiner.iac.edit import line_number
from refiner.iac.model import Structured, TextDocument
from refiner.writeback import locate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "iac"


def finding(tmp_path: Path, unused: dict[str, list[str]], name: str = "finding.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps([{"serviceNamespace": service, "actions": actions}
                                for service, actions in unused.items()]))
    return str(path)


def _lines(text: str, start: int, end: int) -> set[int]:
    return set(range(line_number(text, start), line_number(text, max(start, end - 1)) + 1))


def _value_lines(text: str, span: tuple[int, int]) -> set[int]:
    """The lines of an action value, and of its key when the value starts a line of its own
    (a YAML block list under `Action:`)."""
    lines = _lines(text, *span)
    if not text[text.rfind("\n", 0, span[0]) + 1:span[0]].strip(" -"):
        lines.add(min(lines) - 1)
    return lines


def _statement_spans(text: str, located):
    """(statement span, action value span) of each statement, in the template's text."""
    writer = located.writer
    if isinstance(writer, Structured):
        return [((s.start, s.end), (s.action.start, s.action.end) if s.action else None)
                for s in writer.statements]
    assert isinstance(writer, TextDocument)
    document = writer.decode(text)
    statements = locate(document).members["Statement"]
    nodes = statements.members if isinstance(statements.members, list) else [statements]
    if writer.encoding not in ("text", "yaml-block"):  # held on one line
        line_span = (writer.start, writer.end)
        return [(line_span, line_span) for _ in nodes]
    spans = []
    for node in nodes:
        value = node.members.get("Action") or node.members.get("NotAction")
        offset = writer.start if writer.encoding == "text" else None
        if offset is None:  # a YAML block: map document lines to template lines
            first = line_number(text, writer.start)
            spans.append(((first, first), (first, first)))
            continue
        spans.append(((offset + node.start, offset + node.end),
                      (offset + value.start, offset + value.end)))
    return spans


def changeable_lines(before: str, after: str, result: TemplateRun) -> tuple[set[int], set[int]]:
    """Lines of `before` a refinement may touch, and the lines of `after` they became: the
    changed action values (read from each template by its reader), the removed statements, and
    the last line of the statement kept before a removed one and the first line of the one kept
    after it (where a separator is cut)."""
    old, new = set(), set()
    again = parse_template(result.template.path, after, result.template.kind)
    for outcome in result.outcomes:
        if outcome.status != "refined":
            continue
        pairs = outcome.run.refinement.pairs
        written = iter(_statement_spans(after, again.policy(outcome.policy.id)))
        spans = []  # (statement span before, statement span after or None)
        for (statement, value), (original, refined) in zip(
                _statement_spans(before, outcome.policy), pairs, strict=True):
            if refined is None:
                old |= _lines(before, *statement)
                spans.append((statement, None))
                continue
            new_statement, new_value = next(written)
            spans.append((statement, new_statement))
            if refined is not original:
                old |= _value_lines(before, value)
                new |= _value_lines(after, new_value)
        for index, (_, now) in enumerate(spans):
            if now is not None:
                continue
            previous = next((s for s in reversed(spans[:index]) if s[1] is not None), None)
            following = next((s for s in spans[index + 1:] if s[1] is not None), None)
            if previous is not None:
                old.add(max(_lines(before, *previous[0])))
                new.add(max(_lines(after, *previous[1])))
            if following is not None:
                old.add(min(_lines(before, *following[0])))
                new.add(min(_lines(after, *following[1])))
    return old, new


def assert_only_action_lists_changed(before: str, after: str, result: TemplateRun) -> None:
    """Outside the lines a refinement may touch, the two texts are the same lines in the same
    order."""
    old, new = changeable_lines(before, after, result)
    kept_before = [line for number, line in enumerate(before.splitlines(keepends=True), 1)
                   if number not in old]
    kept_after = [line for number, line in enumerate(after.splitlines(keepends=True), 1)
                  if number not in new]
    assert kept_before == kept_after, "".join(difflib.unified_diff(kept_before, kept_after))


def gate_templates(base: str, head: str, path: str = "t.yaml",
                   allow_new_policies: bool = False) -> tuple[int, list[str]]:
    """The gate's exit code and violations for BASE and HEAD texts of one template file."""
    comparison = compare_templates(template_from_text(path, base), template_from_text(path, head),
                                   allow_new_policies=allow_new_policies)
    return comparison.exit_code(), [v.violation for v in comparison.verdicts]
