"""The "no new access" gate, and verify on templates: policies paired by id, statements as verify pairs them.

Without a finding, a change may narrow access but never widen it: every statement of HEAD
must admit nothing its BASE statement did not, over all strings. That is the kernel's
soundness obligation on its own: a Checker with no unused action and an empty catalog has
no completeness or unused-action obligation left, so check_statement proves exactly that
each refined (HEAD) pattern lies inside the original (BASE) ones (Allow + Action), or that
every original exclusion stays excluded (Allow + NotAction). A Deny statement must deny at
least what it denied: the same check with the two sides swapped. Statements are paired as
verify pairs them (structure keys: Sid, Effect, Resource, Condition, ... equal), so a changed
Resource or Condition is a structure change; an added Allow statement and a removed Deny are
rejected, an added Deny or a removed Allow statement is a narrowing. Policies are paired by
id (CloudFormation logical id, Terraform address); a policy added in HEAD is a new grant,
rejected unless allowed; one that cannot be read (an Action list built by an intrinsic
function) is accepted only when it is exactly as it was."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from dataclasses import dataclass, field

from .jsontext import dumps
from .policy import PolicyInput
from .prove import Checker, Violation, same_json
from .render import as_sarif
from .smt import cvc5_result, to_smtlib
from .verification import REJECTING, Report, document_changes, pair_statements, verify

NO_STATEMENT = {"Version": "2012-10-17", "Statement": []}


@dataclass
class Verdict:
    policy: str  # the policy's id ("policy" for a policy file)
    violation: Violation
    line: int  # in HEAD (a policy gone from HEAD: line 1)


@dataclass
class Comparison:
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was accepted without a proof
    queries: int = 0
    obligations: list[tuple[str, str]] = field(default_factory=list)
    policies: int = 0  # policies judged

    def exit_code(self, strict: bool = False) -> int:
        return Report([v.violation for v in self.verdicts]).exit_code(strict)


def compare_templates(base, head, unused=None, catalog=None, timeout_ms: int = 10_000,
                      allow_new_policies: bool = False, solver: str = "z3",
                      export: bool = False, deadline: float | None = None,
                      coarse: bool = False) -> Comparison:
    """Judge HEAD against BASE (iac.Template, a policy file being a template of one policy
    with id "policy"). Without unused: the no-new-access gate; with it (a finding.Unused and a
    catalog): verify's checks of a refinement, policy by policy."""
    result = Comparison()
    record = export or solver in ("cvc5", "both")
    gate_checker = Checker([], [], [], timeout_ms, record) if unused is None else None
    before = {policy.id: policy for policy in base.policies}
    context_changed = base.context != head.context
    for policy in head.policies:
        original = before.get(policy.id)
        if unused is None and original is not None and context_changed and (
                _has_expressions(policy) or _has_expressions(original)):
            result.verdicts.append(Verdict(policy.id, Violation(
                "unknown", None, None, f"{policy.id} uses expressions, and what they read "
                "(parameters, conditions, mappings, variables, locals) changed: the gate "
                "cannot tell what the policy admits"), policy.line))
            continue
        if original is None:
            if allow_new_policies:
                result.notes.append(f"{policy.id}: a new policy (--allow-new-policies)")
            else:
                result.verdicts.append(Verdict(policy.id, Violation(
                    "structure", None, None, "a new policy, a new grant (--allow-new-policies "
                    "accepts it)"), policy.line))
            continue
        if unused is None and same_json(original.document, policy.document):
            result.notes.append(f"{policy.id}: unchanged")
            continue
        refused = policy if policy.refusal is not None else original
        if refused.refusal is not None:
            where = f"line {refused.refusal_line}" + ("" if refused is policy else " of BASE")
            result.verdicts.append(Verdict(policy.id, Violation(
                "unknown", None, None, f"{policy.id} cannot be judged ({where}): "
                f"{refused.refusal}"), policy.refusal_line or policy.line))
            continue
        result.policies += 1
        old = original.policy_input(f"{base.path}: {original.id}")
        new = policy.policy_input(f"{head.path}: {policy.id}")
        if unused is None:
            pairs = gate(old, new, gate_checker)
        else:
            report = verify(old, new, unused, catalog, timeout_ms, solver, export, deadline,
                            coarse)
            result.queries += report.queries
            result.obligations += [(f"{_label(policy.id)}-{label}", text)
                                   for label, text in report.obligations]
            pairs = [(violation, None) for violation in report.verdicts]
        for violation, index in pairs:
            result.verdicts.append(Verdict(policy.id, violation, _line(policy, violation, index)))
    gone = [policy for policy in base.policies if policy.id not in
            {p.id for p in head.policies}]
    for policy in gone:
        if unused is None or policy.refusal is not None:
            result.notes.append(f"{policy.id}: removed")
            continue
        old = policy.policy_input(f"{base.path}: {policy.id}")
        report = verify(old, PolicyInput(dict(NO_STATEMENT), True), unused, catalog,
                        timeout_ms, solver, export, deadline, coarse)
        result.queries += report.queries
        result.verdicts += [Verdict(policy.id, v, 1) for v in report.verdicts]
    if gate_checker is not None:
        result.queries += gate_checker.queries
        result.obligations += [(_label(f"gate-{label}"), to_smtlib(label, formula))
                               for label, formula in gate_checker.obligations]
        if solver in ("cvc5", "both"):
            for label, text in result.obligations:
                answer = cvc5_result(text, timeout_ms)
                if answer != "unsat":
                    result.verdicts.append(Verdict("", Violation(
                        "solver-disagreement" if answer == "sat" else "unknown", None, None,
                        f"z3 proved obligation {label} but cvc5 answers {answer}"), 1))
    return result


def gate(base: PolicyInput, head: PolicyInput, checker: Checker) -> list[tuple[Violation, int | None]]:
    """Every way HEAD admits what BASE did not, each with the HEAD statement it is about."""
    def prove(index: int, before: dict, after: dict | None) -> list[Violation]:
        return no_new_access(checker, index, before, after)

    found: list[tuple[Violation, int | None]] = []
    if head.statements:
        found += [(v, None) for v in document_changes(base.document, head.document)]
    pairing = pair_statements(base.statements, head.statements, prove)
    for index in pairing.added:
        statement = head.statements[index]
        if statement.get("Effect") == "Deny":
            continue  # a new Deny grants nothing
        found.append((Violation("structure", index, _sid(statement),
                                "adds a statement (a new grant)"), index))
    positions = {id(statement): index for index, statement in enumerate(head.statements)}
    for index, before, after in pairing.pairs:
        at = positions.get(id(after)) if after is not None else None
        for violation in prove(index, before, after):
            statement = at if at is not None else violation.statement
            found.append((dataclasses.replace(violation, statement=statement), at))
    return found


def no_new_access(checker: Checker, index: int, before: dict, after: dict | None) -> list[Violation]:
    """What makes the after statement admit something the before statement did not."""
    if after is None:
        if before.get("Effect") == "Allow":
            return []  # a dropped Allow statement only narrows
        return [Violation("structure", index, _sid(before), "removes a Deny statement")]
    if before.get("Effect") == "Deny" and after.get("Effect") == "Deny":
        # HEAD must deny at least what BASE denied: BASE's Deny, read as an Allow, inside HEAD's.
        swapped = checker.check_statement(index, {**after, "Effect": "Allow"},
                                          {**before, "Effect": "Allow"})
        return [v if v.kind != "unsound" else dataclasses.replace(
            v, message="the Deny statement no longer denies an action it denied")
            for v in swapped]
    return checker.check_statement(index, before, after)


def _line(policy, violation: Violation, index: int | None) -> int:
    """The HEAD line of a verdict: its pattern in its statement, or the statement, or the
    policy."""
    if index is not None:
        return policy.line_of(index, violation.pattern)
    if violation.pattern is not None:
        ordered = sorted(range(len(policy.statement_lines)),
                         key=lambda i: i != violation.statement)
        for number in ordered:
            line = policy.statement_lines[number][1].get(violation.pattern)
            if line is not None:
                return line
    return policy.line_of(violation.statement)


def _sid(statement: dict) -> str | None:
    return statement.get("Sid") if isinstance(statement.get("Sid"), str) else None


def _has_expressions(policy) -> bool:
    """Whether a policy's document holds an expression (a CloudFormation intrinsic function,
    a Terraform interpolation or reference), or could not be read at all."""
    if policy.refusal is not None or policy.document is None:
        return True
    text = dumps(policy.document)
    return any(marker in text for marker in ('"Fn::', '{"Ref":', '{"Condition":', "${", "%{"))


def _label(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def rejected(comparison: Comparison) -> bool:
    return any(v.violation.kind in REJECTING for v in comparison.verdicts)


# --- reports --------------------------------------------------------------------------------

def repository_root(start: str | None = None) -> str:
    """The git top level of the working directory (or start), else the working directory."""
    try:
        found = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start or None,
                               capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return os.getcwd()
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() \
        else os.getcwd()


def labelled(verdict: Verdict, plain: bool) -> Violation:
    """The verdict's violation, its message naming the policy (not for a policy file)."""
    v = verdict.violation
    if plain or not verdict.policy or v.message.startswith(verdict.policy):
        return v
    return dataclasses.replace(v, message=f"{verdict.policy}: {v.message}")


def as_text(comparison: Comparison, head_path: str, plain: bool, code: int) -> str:
    lines = [f"{head_path}:{v.line}: {labelled(v, plain).describe()}" for v in comparison.verdicts]
    summary = {0: "accepted", 1: "rejected", 3: "not proven (see the unknown verdicts)"}[code]
    return "".join(line + "\n" for line in lines) + \
        f"refiner verify: {summary} ({comparison.queries} proof queries)\n"


def as_json(comparison: Comparison, code: int, inputs: dict) -> str:
    from .render import as_json as dump

    return dump({
        "accepted": code == 0,
        "inputs": inputs,
        "verdicts": [
            {"verdict": v.violation.kind, "policy": v.policy, "statement": v.violation.statement,
             "sid": v.violation.sid, "message": v.violation.message,
             "witness": v.violation.witness, "actions": list(v.violation.actions),
             "pattern": v.violation.pattern, "line": v.line}
            for v in comparison.verdicts],
        "notes": comparison.notes,
    })


def sarif_for(files: list[tuple[str, Comparison, bool]], version: str, root: str) -> str:
    """One SARIF log (one run) for the verdicts of several HEAD files: [(path, comparison,
    plain)], each result at its file and line, URIs relative to root."""
    merged = None
    for path, comparison, plain in files:
        violations = [labelled(v, plain) for v in comparison.verdicts]
        log = json.loads(as_sarif(violations, [v.line for v in comparison.verdicts], path,
                                  version, root))
        if merged is None:
            merged = log
        else:
            merged["runs"][0]["results"] += log["runs"][0]["results"]
    if merged is None:
        merged = json.loads(as_sarif([], [], ".", version, root))
    return json.dumps(merged, indent=2) + "\n"
