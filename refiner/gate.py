"""The "no new access" gate, and verify on templates: policies paired by id, statements as verify pairs them.

Without a finding, a change may narrow access but never widen it: every statement of HEAD
must admit nothing its BASE statement did not, over all strings. That is the kernel's
soundness obligation on its own: a Checker with no unused action and an empty catalog has
no completeness or unused-action obligation left, so check_statement proves exactly that
each refined (HEAD) pattern lies inside the original (BASE) ones (Allow + Action), or that
every original exclusion stays excluded (Allow + NotAction). A Deny statement must deny at
least what it denied: the same check with the two sides swapped. Statements are paired as
verify pairs them; a pair whose keys but the action list and the Sid (IAM never evaluates
one) are equal is the kernel's, an Allow one also against BASE's Allow statements of its
shape together (whole.ShapeUnions); the rest is judged on whole requests (whole.py). The
kernel's verdicts are named as the catalog spells them (naming.named_verdicts). Policies are
paired by id (CloudFormation logical id, Terraform address); a policy added in HEAD is a new
grant, rejected unless allowed; one that cannot be read (an Action list built by an intrinsic
function) is accepted only when it is exactly as it was."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from dataclasses import dataclass, field

from .errors import InputError
from .jsontext import dumps
from .naming import named_verdicts
from .policy import PolicyInput, load_policy
from .prove import Checker, Violation, same_json
from .render import as_sarif
from .smt import cvc5_result, to_smtlib
from .verification import (
    REJECTING,
    VERSION_UNREAD,
    Report,
    document_changes,
    pair_statements,
    shape_key,
    variables_as_read,
    verify,
)

NO_STATEMENT = {"Version": "2012-10-17", "Statement": []}
# What the gate's verdict covers, and what it cannot see (printed with every verdict).
SCOPE = ("not judged: the values of deploy-time parameters and variables and of imports "
         "from other stacks or states, SCPs and RCPs, session policies, what is live in the "
         "account; trust and resource policies are judged by whole requests (Principal, Resource, "
         "Condition), what else a resource policy's resource says is compared as written")
# How an expression shows in a document read from a template (CloudFormation intrinsic
# functions, Terraform references and interpolations).
EXPRESSION_MARKERS = ('"Fn::', '{"Ref":', '{"Condition":', '{"terraform":', "${", "%{")


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
    policies: int = 0  # changed policies proven
    kinds: dict[str, int] = field(default_factory=dict)  # policies judged, by kind
    principals: int = 0  # principals judged (roles, users, groups)

    def exit_code(self, strict: bool = False) -> int:
        return Report([v.violation for v in self.verdicts]).exit_code(strict)


def compare_templates(base, head, unused=None, catalog=None, timeout_ms: int = 10_000,
                      allow_new_policies: bool = False, solver: str = "z3",
                      export: bool = False, deadline: float | None = None,
                      coarse: bool = False, principals: bool = True,
                      context_changed: bool | None = None,
                      elsewhere: tuple[list, list] = ([], []),
                      held_in_module: frozenset[str] = frozenset()) -> Comparison:
    """Judge HEAD against BASE (iac.Template, a policy file being a template of one policy
    with id "policy"). Without unused: the no-new-access gate, policy by policy and (with
    principals) principal by principal (iac.gains); with it (a finding.Unused and a
    catalog): verify's checks of a refinement, policy by policy. context_changed: whether
    what expressions read changed (default: the templates' own context). elsewhere: the
    policies gone from and added to other files of the same change (a policy moved between
    files pairs by content). held_in_module: ids of HEAD policies that principals hold, when
    the principals are judged elsewhere (the files of a Terraform module, together)."""
    from .iac.holders import Holdings, read_holdings

    result = Comparison()
    record = export or solver in ("cvc5", "both")
    gate_checker = Checker([], [], [], timeout_ms, record) if unused is None else None
    explicit_context = context_changed is not None
    if context_changed is None:
        context_changed = base.context != head.context
    holdings = (Holdings(), Holdings())
    if gate_checker is not None and principals:
        try:
            holdings = (read_holdings(base), read_holdings(head))
        except Exception as error:  # whatever fails, the gate fails closed
            principals = False
            result.verdicts.append(Verdict("", Violation(
                "unknown", -1, None, f"who holds what in {head.path} could not be read "
                f"({type(error).__name__}: {error}): the principals are not judged"), 1))
    held = held_in_module | {h.policy_id for p in holdings[1].principals.values()
                             for h in [*p.documents, p.boundary] if h is not None and h.policy_id}
    before = {holdings[0].pairing.get(p.id, p.id): p for p in base.policies}
    after_ids = {holdings[1].pairing.get(p.id, p.id) for p in head.policies}
    added = [p for p in head.policies if holdings[1].pairing.get(p.id, p.id) not in before]
    moved = _paired_by_content(added, [p for key, p in before.items() if key not in after_ids]
                               + list(elsewhere[0]))
    for policy in head.policies:
        original = before.get(holdings[1].pairing.get(policy.id, policy.id))
        kind = document_type(policy)
        result.kinds[kind] = result.kinds.get(kind, 0) + 1
        if original is None and policy.id in moved:
            result.notes.append(f"{policy.id}: paired by content with {moved[policy.id].id}")
            continue
        if unused is None and original is not None and original.document is not None and \
                same_json(original.document, policy.document) is False and \
                getattr(policy, "unknowns", None):
            result.verdicts += [Verdict(policy.id, Violation(
                "unknown", -1, None, f"{policy.id}: not modelled: {what}"), line)
                for line, what in _unknown_entries(policy.unknowns)]
        if unused is None and original is not None and _inputs_changed(
                base, head, original, policy, context_changed, explicit_context) and (
                _has_expressions(policy) or _has_expressions(original)):
            result.verdicts.append(Verdict(policy.id, Violation(
                "unknown", None, None, f"{policy.id} uses expressions, and what they read "
                "(parameters, conditions, mappings, variables, locals) changed: the gate "
                "cannot tell what the policy admits"), policy.line))
            continue
        if unused is None and kind != "identity" and original is None and allow_new_policies:
            result.notes.append(f"{policy.id}: a new {kind} policy (--allow-new-policies)")
            continue
        if unused is None and kind not in ("identity", "trust", "resource") and (
                original is None or not same_json(original.document, policy.document)):
            result.verdicts.append(Verdict(policy.id, Violation(
                "unknown", None, None, f"{policy.id}: a policy of a kind the gate does not know "
                f"({kind}) changed"), policy.line))
            continue
        if unused is None and kind != "identity" and original is None:
            # A new trust or resource policy admits whoever it names: a new grant.
            result.verdicts.append(Verdict(policy.id, Violation(
                "structure", None, None, f"a new {kind} policy, a new grant "
                "(--allow-new-policies accepts it)"), policy.line))
            continue
        # A changed trust or resource policy is judged like any other, by whole requests
        # (Principal, Resource and Condition: whole.py), in gate() below; a statement of one
        # that names no principal is malformed (IAM refuses it), so what it admits is unknown.
        if unused is None and kind != "identity" and original is not None:
            nameless = _without_principal(original, policy)
            if nameless:
                result.verdicts.append(Verdict(policy.id, Violation(
                    "unknown", None, None, f"{policy.id}: a {kind} policy statement without "
                    f"Principal or NotPrincipal ({nameless}): IAM refuses it, so what it admits "
                    "cannot be judged"), policy.line))
                continue
        if original is None:
            if allow_new_policies:
                result.notes.append(f"{policy.id}: a new policy (--allow-new-policies)")
            elif policy.id in held:
                result.notes.append(f"{policy.id}: a new policy, judged by who holds it")
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
            if unused is None:  # what can be read is still judged
                for violation, index in _readable_part(original, policy, gate_checker,
                                                       context_changed):
                    result.verdicts.append(Verdict(policy.id, violation,
                                                   _line(policy, violation, index)))
            continue
        result.policies += 1
        old = original.policy_input(f"{base.path}: {original.id}")
        new = policy.policy_input(f"{head.path}: {policy.id}")
        if unused is None:
            pairs = gate(_as_read(original, old), _as_read(policy, new), gate_checker)
        else:
            report = verify(old, new, unused, catalog, timeout_ms, solver, export, deadline,
                            coarse)
            result.queries += report.queries
            result.obligations += [(f"{_label(policy.id)}-{label}", text)
                                   for label, text in report.obligations]
            pairs = [(violation, None) for violation in report.verdicts]
        for violation, index in pairs:
            result.verdicts.append(Verdict(policy.id, violation, _line(policy, violation, index)))
    kept = [*moved.values()]
    gone = [policy for key, policy in before.items() if key not in after_ids
            and not any(policy is p for p in kept) and not (unused is None and any(
                p.refusal is None and same_json(p.document, policy.document)
                for p in [*added, *elsewhere[1]]))]
    for policy in gone:
        if unused is None:
            result.verdicts += _removed(policy)
            continue
        if policy.refusal is not None:
            result.notes.append(f"{policy.id}: removed")
            continue
        old = policy.policy_input(f"{base.path}: {policy.id}")
        report = verify(old, PolicyInput(dict(NO_STATEMENT), True), unused, catalog,
                        timeout_ms, solver, export, deadline, coarse)
        result.queries += report.queries
        result.verdicts += [Verdict(policy.id, v, 1) for v in report.verdicts]
    if gate_checker is not None and (base.text != head.text or context_changed):
        result.verdicts += [Verdict("", Violation("unknown", -1, None, f"{head.path}: {what}"),
                                    line) for line, what in reader_unknowns(head, base)]
    if gate_checker is not None and principals:
        from .iac.gains import judge

        # What attachments read is written into what they hold (holders: inputs), so only a
        # context judged for several files together (a module) makes them all unknown.
        findings, notes, result.principals = judge(*holdings, gate_checker, allow_new_policies,
                                                   context_changed, explicit_context)
        result.notes += notes
        result.verdicts += [Verdict(f.principal, f.violation, f.line) for f in findings]
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


def _as_read(located, text: PolicyInput) -> PolicyInput:
    """The document the gate judges: the reader's value where it differs from the text refine
    edits (a Terraform heredoc that interpolates: its `${...}` are expressions there, which
    its text, written back by refine, keeps as they are)."""
    document = getattr(located, "document", None)
    if not isinstance(document, dict) or same_json(document, text.document):
        return text
    return dataclasses.replace(text, document=document)


def _without_principal(original, policy) -> str:
    """Where a BASE or HEAD statement of a trust or resource policy names no principal."""
    for side, located in (("BASE", original), ("HEAD", policy)):
        document = located.document
        statements = document.get("Statement") if isinstance(document, dict) else None
        statements = [statements] if isinstance(statements, dict) else statements or []
        for index, statement in enumerate(statements):
            if isinstance(statement, dict) and statement.get("Effect") == "Allow" and \
                    "Principal" not in statement and "NotPrincipal" not in statement:
                return f"statement {index} of {side}"
    return ""


def reader_unknowns(template, base=None) -> list[tuple[int, str]]:
    """(line, what) of each construct the template reader says it does not model (iac
    readers that say so: Template.unknowns, Located.unknowns) and BASE did not have: their
    content is compared where the gate models who holds what (iac.holders), never taken at
    its word; an unreadable file is unknown whatever BASE was."""
    found = _unknown_entries(getattr(template, "unknowns", None))
    if base is None or template.kind == "unreadable":
        return found
    before = {what for _, what in _unknown_entries(getattr(base, "unknowns", None))}
    return [(line, what) for line, what in found if what not in before]


def _unknown_entries(entries) -> list[tuple[int, str]]:
    found = []
    for entry in entries or []:
        if isinstance(entry, tuple | list) and len(entry) >= 2:
            line, what = entry[0], entry[1]
        elif isinstance(entry, dict):
            line, what = entry.get("line"), entry.get("reason") or entry.get("what")
        else:
            line = getattr(entry, "line", None)
            what = next((getattr(entry, name) for name in ("reason", "what", "message")
                         if getattr(entry, name, None)), str(entry))
        found.append((line if isinstance(line, int) else 1, f"not modelled: {what}"))
    return found


def gone_and_added(base, head) -> tuple[list, list]:
    """The policies of BASE whose id HEAD lacks, and those HEAD adds (either may be None)."""
    before = {p.id: p for p in base.policies} if base is not None else {}
    after = {p.id: p for p in head.policies} if head is not None else {}
    return ([p for i, p in before.items() if i not in after],
            [p for i, p in after.items() if i not in before])


def document_type(policy) -> str:
    """identity, trust or resource (iac readers that tell them apart say so; else identity)."""
    return getattr(policy, "document_type", None) or "identity"


def _inputs_changed(base, head, original, policy, context_changed: bool,
                    explicit: bool) -> bool:
    """Whether what a policy's expressions read changed: per input when the reader says
    what each document reads (Located.inputs, Template.definitions), else (or when the
    context is judged for several files together) the whole context."""
    inputs = getattr(policy, "inputs", None)
    definitions = (getattr(base, "definitions", None), getattr(head, "definitions", None))
    if explicit or inputs is None or definitions[0] is None or definitions[1] is None:
        return context_changed
    read = set(inputs) | set(getattr(original, "inputs", None) or ())
    return any(definitions[0].get(name) != definitions[1].get(name) for name in read)


def _paired_by_content(added: list, gone: list) -> dict:
    """HEAD policy id -> the BASE policy (gone from HEAD) it is, by equal documents: a
    renamed logical id or a policy moved between files is not a new policy."""
    paired, free = {}, list(gone)
    for policy in added:
        match = next((old for old in free if old.refusal is None and policy.refusal is None
                      and document_type(old) == document_type(policy)
                      and same_json(old.document, policy.document)), None)
        if match is not None:
            paired[policy.id] = match
            free.remove(match)
    return paired


def _removed(policy) -> list[Verdict]:
    """A policy gone from HEAD: a narrowing, unless it held a Deny (a guardrail removed) or
    cannot be read (it may have)."""
    statements = policy.document.get("Statement") if isinstance(policy.document, dict) else None
    listed = statements if isinstance(statements, list) else [statements]
    if policy.refusal is not None and "Deny" in dumps(policy.document) or not isinstance(
            policy.document, dict):
        return [Verdict(policy.id, Violation(
            "unknown", -1, None, f"{policy.id} was removed and cannot be read: it may have "
            "held a Deny"), 1)]
    denies = [s for s in listed if isinstance(s, dict) and s.get("Effect") != "Allow"]
    if denies:
        return [Verdict(policy.id, Violation(
            "structure", -1, None, f"{policy.id} was removed with its Deny statement "
            "(a guardrail removed)"), 1)]
    return []


def _readable_part(original, policy, checker: Checker, context_changed: bool):
    """The gate over the statements of a refused policy that hold no expression, when its
    statements with expressions are as they were: a proven widening is still reported."""
    sides = []
    for located in (original, policy):
        document = located.document
        statements = document.get("Statement") if isinstance(document, dict) else None
        if not isinstance(statements, list) or not all(isinstance(s, dict) for s in statements):
            return []
        sides.append((document, statements))
    (old_document, old_statements), (new_document, new_statements) = sides
    plain_old = [s for s in old_statements if not _expression_in(s)]
    kept = [i for i, s in enumerate(new_statements) if not _expression_in(s)]
    try:
        old = load_policy({**old_document, "Statement": plain_old}, original.id)
        new = load_policy({**new_document, "Statement": [new_statements[i] for i in kept]},
                          policy.id)
    except InputError:
        return []
    found = []
    for violation, index in gate(old, new, checker):
        at = kept[index] if index is not None and index < len(kept) else None
        statement = kept[violation.statement] if 0 <= violation.statement < len(kept) else -1
        found.append((Violation(violation.kind, statement, violation.sid, violation.message,
                                violation.witness, violation.pattern), at))
    return found


def _expression_in(value: object) -> bool:
    text = dumps(value)
    return any(marker in text for marker in EXPRESSION_MARKERS)


def gate(base: PolicyInput, head: PolicyInput, checker: Checker) -> list[tuple[Violation, int | None]]:
    """Every way HEAD admits what BASE did not, each with the HEAD statement it is about.
    Pairs whose keys but the action list are equal are the action kernel's alone; changed,
    added and dropped statements go to the request model (whole.py)."""
    from .whole import ShapeUnions, changed_statements, no_new_requests  # loads the solver

    def prove(index: int, before: dict, after: dict | None) -> list[Violation]:
        return no_new_access(checker, index, before, after)

    read = [variables_as_read(policy) for policy in (base, head)]
    if None in read:
        return [(Violation("unknown", -1, None, VERSION_UNREAD), None)]
    base, head = read
    found: list[tuple[Violation, int | None]] = []
    if head.statements:
        found += [(v, None) for v in document_changes(base.document, head.document)]
    pairing = pair_statements(base.statements, head.statements, prove)
    positions = {id(statement): index for index, statement in enumerate(head.statements)}
    changes, kept = changed_statements(pairing.pairs, pairing.added, _same_structure, positions)
    unions = None
    for index, before, after in kept:
        at = positions[id(after)]
        compared = before
        violations = prove(index, before, after)
        if violations and before["Effect"] == "Allow":
            # BASE's Allow statements of this shape together may hold what its partner alone
            # does not (a statement split or merged): judged against their union.
            unions = unions or ShapeUnions(base.statements)
            compared = unions.of_shape(before) or before
            violations = prove(index, compared, after) if compared is not before else violations
        if violations and not same_json(before.get("Sid"), after.get("Sid")):
            # Judged on whole requests, as a pair whose Sids differ always was: the kernel
            # alone saying no is not final for it.
            changes.pairs.append((index, at))
            continue
        for violation in named(violations, compared, after):
            found.append((dataclasses.replace(violation, statement=at, sid=_sid(after)), at))
    for violation in no_new_requests(base.statements, head.statements, changes, prove,
                                     checker.timeout_ms, tally=checker):
        at = violation.statement if violation.statement >= 0 else None
        found.append((violation, at))
    return found


def _same_structure(before: dict, after: dict) -> bool:
    """Every key but the action list the same, Sid aside (IAM never evaluates a Sid)."""
    return shape_key(before) == shape_key(after)


def no_new_access(checker: Checker, index: int, before: dict, after: dict | None) -> list[Violation]:
    """What makes the after statement admit something the before statement did not (their
    Sids aside: IAM never evaluates one)."""
    if after is None:
        if before.get("Effect") == "Allow":
            return []  # a dropped Allow statement only narrows
        return [Violation("structure", index, _sid(before), "removes a Deny statement")]
    original, refined = kernel_pair(before, after)
    found = checker.check_statement(index, original, refined)
    if before.get("Effect") == "Deny" and after.get("Effect") == "Deny":
        return [v if v.kind != "unsound" else dataclasses.replace(
            v, message="the Deny statement no longer denies an action it denied")
            for v in found]
    return found


def named(violations: list[Violation], before: dict, after: dict) -> list[Violation]:
    """The kernel's verdicts on a BASE and a HEAD statement, named as the catalog spells
    them (naming.named_verdicts; the catalog is loaded only when there is a verdict)."""
    if not violations:
        return violations
    from .whole import spelling_catalog

    return named_verdicts(violations, *kernel_pair(before, after), spelling_catalog())


def kernel_pair(before: dict, after: dict) -> tuple[dict, dict]:
    """The two statements the action kernel compares for a BASE and a HEAD statement: HEAD's
    inside BASE's, or for two Denies BASE's (read as an Allow) inside HEAD's, since HEAD must
    deny at least what BASE denied. Both carry BASE's Sid, which IAM never evaluates."""
    without_sid = {key: value for key, value in after.items() if key != "Sid"}
    after = {**without_sid, "Sid": before["Sid"]} if "Sid" in before else without_sid
    if before.get("Effect") == "Deny" and after.get("Effect") == "Deny":
        return {**after, "Effect": "Allow"}, {**before, "Effect": "Allow"}
    return before, after


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
    return _expression_in(policy.document)


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


def as_text(comparison: Comparison, head_path: str, plain: bool, code: int,
            gate_mode: bool = False) -> str:
    lines = [f"{head_path}:{v.line}: {labelled(v, plain).describe()}" for v in comparison.verdicts]
    summary = {0: "accepted", 1: "rejected", 3: "not proven (see the unknown verdicts)"}[code]
    scope = ""
    if gate_mode:  # what the no-new-access gate judged, and what it cannot
        judged = ", ".join(f"{comparison.kinds.get(k, 0)} {k}"
                           for k in ("identity", "trust", "resource"))
        scope = f"; judged {judged} policies, {comparison.principals} principals; {SCOPE}"
    return "".join(line + "\n" for line in lines) + \
        f"refiner verify: {summary} ({comparison.queries} proof queries{scope})\n"


def as_json(comparison: Comparison, code: int, inputs: dict) -> str:
    from .render import as_json as dump

    return dump({
        "accepted": code == 0,
        "inputs": inputs,
        "verdicts": [
            {"verdict": v.violation.kind, "policy": v.policy, "statement": v.violation.statement,
             "sid": v.violation.sid, "message": v.violation.message,
             "witness": v.violation.witness, "actions": list(v.violation.actions),
             "pattern": v.violation.pattern, "line": v.line,
             **({"request": v.violation.request} if v.violation.request is not None else {})}
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
