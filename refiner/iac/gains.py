"""What each principal gains from BASE to HEAD: documents, groups, boundaries, trust (the gate).

A principal gains access when HEAD gives it a document (an inline policy, an attachment, a
group membership) that admits something the union of its BASE documents did not, loses a
Deny statement it was under, loses or widens its permissions boundary. Each Allow statement
of a document it did not hold is proven by the kernel (prove.Checker) to admit nothing that
BASE's Allow statements of the same structure (or BASE's unconditional statements on every
resource) did not; each BASE Deny must be kept by HEAD's Deny statements of its structure.
A trust policy that changes, a document or group that is not known, something not modelled
(holders.Other) that changes, are `unknown` with their line, never accepted. Documents held
in both (the same template policy, the same ARN) are the per-document gate's to judge."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ..gate import named
from ..prove import Checker, Violation, same_json
from ..verification import shape_key
from .holders import Held, Holdings, Principal, canonical

EVERYWHERE = ("*", ["*"])
# How an expression shows in what holders write (CloudFormation, Terraform).
EXPRESSIONS = ('"Ref"', '"Fn::', '"Condition"', "${", "var.", "local.", "each.", "count.",
               "data.", "module.")
# Fn::Sub's ${...}, and the names whose values hold neither `$` nor `{`: a pseudo parameter
# (AWS::AccountId, AWS::Region, ...; AWS::NoValue is none). Any other name may hold `${`: a
# parameter (whatever a deployer or the template's Default gives), a resource's Ref or
# attribute (a custom resource's is whatever its code returns, a nested stack's output or an
# SSM parameter's Value any string).
SUB_NAME = re.compile(r"\$\{([^}]*)\}")
PLAIN_VALUE = re.compile(r"AWS::(?:AccountId|Region|Partition|URLSuffix|StackName|StackId|"
                         r"NoValue)")


@dataclass
class Finding:
    principal: str  # its label ("" for something not about one principal)
    violation: Violation
    line: int  # in HEAD
    path: str = ""  # the HEAD file of the line ("": the one judged)


def judge(base: Holdings, head: Holdings, checker: Checker, allow_new: bool = False,
          context_changed: bool = False,
          held_context: bool | None = None) -> tuple[list[Finding], list[str], int]:
    """(findings, notes, principals judged) of HEAD's holdings against BASE's.
    context_changed: what expressions read changed (parameters, variables, ...);
    held_context (default: the same): whether that makes unknown whatever holds an
    expression (holders write what an expression reads into what they compare, so one file
    needs not; the files of a module judged together do)."""
    if held_context is None:
        held_context = context_changed
    findings: list[Finding] = []
    notes: list[str] = []
    for key, other in head.others.items():
        before = base.others.get(key)
        if before is None or before.raw != other.raw or held_context and any(
                marker in other.raw for marker in EXPRESSIONS):
            findings.append(Finding("", _unknown(
                f"{other.key}: {other.what}: it changed, and the gate cannot tell what it "
                "grants"), other.line, other.path))
    for key, other in base.others.items():
        if key not in head.others and other.may_deny:
            findings.append(Finding("", _unknown(
                f"{other.key}: {other.what} was removed: the gate cannot tell what it denied "
                "or bounded"), 1, other.path))
    for principal in head.principals.values():
        findings += _same_names(principal)
    gone = [p for k, p in base.principals.items() if k not in head.principals and p.defined]
    judged = 0
    for key, principal in head.principals.items():
        before = base.principals.get(key)
        if before is None and principal.defined:
            before = _renamed(base, head, principal, gone, checker)
            if before is None:
                found = _new_principal(head, principal, allow_new)
                if found is None:
                    notes.append(f"{principal.label}: a new {principal.kind}"
                                 + (" (--allow-new-policies)" if allow_new else ""))
                findings += [found] if found is not None else []
                continue
            gone.remove(before)
            notes.append(f"{principal.label}: paired with {before.label} by content")
        judged += 1
        findings += _principal(base, head, before, principal, checker, held_context,
                               context_changed)
    return findings, notes, judged


def _same_names(principal: Principal) -> list[Finding]:
    """Two inline policies of one principal with one name: IAM keeps one per name (the last
    Put*Policy replaces the other, a Deny guardrail too), so what it holds is not known."""
    found, first = [], {}
    for held in principal.documents:
        if held.name is None:
            continue
        earlier = first.setdefault(held.name, held)
        if earlier is held:
            continue
        found.append(Finding(principal.label, _unknown(
            f"{principal.label} holds two inline policies named {held.name} ({earlier.ref} at "
            f"{earlier.path}:{earlier.line} and {held.ref} at {held.path}:{held.line}): IAM "
            "keeps only one of them, which depends on deployment order"), held.line, held.path))
    return found


def _unknown(message: str) -> Violation:
    return Violation("unknown", -1, None, message)


def _new_principal(head: Holdings, principal: Principal, allow_new: bool) -> Finding | None:
    held = head.effective(principal)
    grants = [h for h in held if not h.known or any(
        s.get("Effect") != "Deny" for s in _statements(h.document))]
    if not grants or allow_new:
        return None
    return Finding(principal.label, Violation(
        "structure", -1, None, f"a new {principal.kind} {principal.label} that holds "
        f"{len(grants)} policies, a new grant (--allow-new-policies accepts it)"),
        principal.line, principal.path)


def _renamed(base: Holdings, head: Holdings, principal: Principal, gone: list[Principal],
             checker: Checker) -> Principal | None:
    """A BASE principal gone from HEAD that this one replaces (a renamed logical id): the
    same kind, trust and other properties, and nothing gained against it."""
    for candidate in gone:
        if candidate.kind != principal.kind or candidate.rest != principal.rest or \
                _ref(candidate.trust) != _ref(principal.trust) or \
                _ref(candidate.boundary) != _ref(principal.boundary):
            continue
        if not _principal(base, head, candidate, principal, checker, False):
            return candidate
    return None


def _ref(held: Held | None) -> str | None:
    return None if held is None else canonical(held.document) if held.known else held.ref


def _principal(base: Holdings, head: Holdings, before: Principal | None, after: Principal,
               checker: Checker, context_changed: bool, reads_changed: bool = False) \
        -> list[Finding]:
    """What the principal gains. context_changed: whatever holds an expression is unknown;
    reads_changed: what expressions read changed, so a document's text with an expression is
    never taken to mean what the same text meant in BASE."""
    label = after.label
    found: list[Finding] = []

    def add(violation: Violation, line: int, path: str = after.path) -> None:
        found.append(Finding(label, violation, line, path))

    if before is None:  # named by an attachment only, in HEAD only: it held nothing here
        before = Principal(after.key, after.kind, after.label, after.line, defined=False)
    if after.defined and before.defined and after.rest != before.rest:
        add(_unknown(f"{label}'s own properties changed (a name, path or tags can match what "
                     "other policies grant)"), after.line)
    # A trust policy present on both sides is a template document of its own, judged by whole
    # requests (who may assume the role) where the gate compares documents; one that appears or
    # disappears, or reads a context that changed, cannot be judged here.
    if (after.trust is None) != (before.trust is None) or context_changed and after.trust is not None:
        where = after.trust if after.trust is not None else after
        add(_unknown(f"{label}'s trust policy appeared, disappeared or reads values that "
                     "changed: who may assume it cannot be judged"), where.line, where.path)
    held_before = base.effective(before)
    held_after = head.effective(after)
    refs_before = {h.ref for h in held_before}
    known_before = [h for h in held_before if h.known]
    allows = [s for h in known_before if not _reads_changed(h, reads_changed)
              for s in _comparable(h.document) if s.get("Effect") == "Allow"]
    for held in held_after:
        if held.ref in refs_before and held.policy_id is not None:
            continue  # the same template policy: the per-document gate judges its change
        same = next((h for h in held_before if h.ref == held.ref), None)
        if not held.known:
            if same is None or same.known or context_changed:
                add(_unknown(f"{label} holds {held.ref}: {held.reason}"), held.line, held.path)
            continue
        if _reads_changed(held, reads_changed):
            add(_unknown(f"{label} holds {held.ref}, whose text reads values that changed "
                         "(parameters, mappings, conditions, variables): the same text may "
                         "grant something else"), held.line, held.path)
            continue
        if same is not None and same.known and same_json(same.document, held.document):
            continue
        if any(same_json(h.document, held.document) for h in known_before):
            continue
        found += [Finding(label, v, held.line, held.path) for v in
                  _gained(checker, label, held, allows)]
    found += _denies_kept(checker, label, held_before, held_after, after, reads_changed)
    found += _boundary(checker, label, before.boundary, after.boundary, after, context_changed,
                       reads_changed)
    return found


def _reads_changed(held: Held, reads_changed: bool) -> bool:
    """The document holds an expression (or a policy variable) and what expressions read
    changed (reads_changed): its text, equal on both sides, may mean another thing (a
    Version from a mapping, say), so no comparison of its text is trusted."""
    return reads_changed and held.known and \
        any(marker in canonical(held.document) for marker in EXPRESSIONS)


def _statements(document: object) -> list[dict]:
    statements = document.get("Statement") if isinstance(document, dict) else None
    listed = statements if isinstance(statements, list) else [statements] \
        if statements is not None else []
    return [s for s in listed if isinstance(s, dict)]


def _literal_variables(statement: dict, document: object) -> bool:
    """The statement's policy variables (${...}) are literal text, or may be: its document's
    Version is not 2012-10-17 (IAM fills variables in only then) and, once its template's
    expressions are resolved, it may hold `${`. Written the same, it matches other requests
    than a statement of a 2012-10-17 document, so it is compared with none of another
    document's statements: it covers nothing, and what it grants or denies is not judged
    here (unknown)."""
    return not (isinstance(document, dict) and document.get("Version") == "2012-10-17") and \
        _may_hold_variable(statement)


def _may_hold_variable(value: object) -> bool:
    """Whether the value, as deployed, may hold `${` (a policy variable's syntax). Modelled:
    the strings Fn::Sub and Fn::Join make (see _deployed_string), Fn::If's two values.
    Anything else may: a parameter's value, another stack's export, Fn::FindInMap, a
    Terraform expression (the last two can build `${` from what the template writes), a
    dynamic reference ({{resolve:ssm:...}}: CloudFormation puts in the parameter's value)."""
    if isinstance(value, list):
        return any(_may_hold_variable(item) for item in value)
    function = _function(value)
    if function == "Fn::If":
        argument = value[function]
        return not (isinstance(argument, list) and len(argument) == 3) or \
            _may_hold_variable(argument[1:])
    if function == "Condition":  # the name of a condition
        return not isinstance(value[function], str)
    if isinstance(value, dict) and function is None:
        return any(_may_hold_variable(key) or _may_hold_variable(item)
                   for key, item in value.items())
    if not isinstance(value, (str, dict)):
        return False  # a number, a boolean, null
    rendered = _deployed_string(value)
    # `{{` may open a dynamic reference ({{resolve:ssm:...}}), any string once deployed.
    return rendered is None or "${" in rendered or "{{" in rendered


def _function(value: object) -> str | None:
    """The CloudFormation function (or "terraform": an expression) a value is, if one."""
    if isinstance(value, dict) and len(value) == 1:
        name = next(iter(value))
        if name in ("Ref", "Condition", "terraform") or name.startswith("Fn::"):
            return name
    return None


def _deployed_string(value: object) -> str | None:
    """The string a value makes as deployed, a value of PLAIN_VALUE as "" (it holds neither
    `$` nor `{`, so what is written on either side of it meets); None: not modelled, or it
    may hold `$` or `{`."""
    if isinstance(value, str):
        return value
    function = _function(value)
    argument = value[function] if function is not None else None
    if function == "Ref" and isinstance(argument, str) and PLAIN_VALUE.fullmatch(argument):
        return ""
    if function == "Fn::Sub":
        return _sub_string(argument)
    if function == "Fn::Join":
        return _join_string(argument)
    return None


def _sub_string(argument: object) -> str | None:
    """The text Fn::Sub makes: ${Name} of its variable map is that value, else a value of
    PLAIN_VALUE; ${!Name} is `${Name}` as written."""
    if isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], dict):
        text, names = argument
    else:
        text, names = argument, {}
    if not isinstance(text, str):
        return None
    rendered, end = "", 0
    for match in SUB_NAME.finditer(text):
        name = match.group(1)
        if name.startswith("!"):
            part = "${" + name[1:] + "}"
        elif name in names:
            part = _deployed_string(names[name])
        else:
            part = "" if PLAIN_VALUE.fullmatch(name) else None
        if part is None:
            return None
        rendered, end = rendered + text[end:match.start()] + part, match.end()
    return rendered + text[end:]


def _join_string(argument: object) -> str | None:
    if not (isinstance(argument, list) and len(argument) == 2 and
            isinstance(argument[0], str) and isinstance(argument[1], list)):
        return None
    parts = [_deployed_string(item) for item in argument[1]]
    return None if None in parts else argument[0].join(parts)


def _comparable(document: object) -> list[dict]:
    """The document's statements that may be compared with another document's."""
    return [s for s in _statements(document) if not _literal_variables(s, document)]


def _bare(statement: dict) -> dict:
    return {k: v for k, v in statement.items() if k != "Sid"}


def _everywhere(statement: dict) -> bool:
    """An Allow on every resource without a condition: it covers any statement's actions."""
    return set(statement) - {"Sid"} <= {"Effect", "Action", "NotAction", "Resource"} and \
        any(same_json(statement.get("Resource"), e) for e in EVERYWHERE)


def _entries(value: object) -> list | None:
    listed = value if isinstance(value, list) else [value]
    return listed if all(isinstance(v, str) for v in listed) else None


def _gained(checker: Checker, label: str, held: Held, allows: list[dict]) -> list[Violation]:
    """Each Allow statement of a document the principal did not hold, against its BASE
    Allow statements: what it admits beyond them."""
    found = []
    for index, statement in enumerate(_statements(held.document)):
        if statement.get("Effect") == "Deny":
            continue
        if _literal_variables(statement, held.document):
            found.append(Violation("unknown", index, None, f"{label} gains {held.ref}: a "
                                   "statement whose policy variables are literal text (its "
                                   "document's Version is not 2012-10-17), which the gate "
                                   "does not compare with other documents"))
            continue
        key = "Action" if "Action" in statement else "NotAction"
        if statement.get("Effect") != "Allow" or key not in statement or \
                _entries(statement[key]) is None:
            found.append(Violation("unknown", index, None, f"{label} gains {held.ref}: a "
                                   "statement the gate cannot read (an expression or no "
                                   "action list)"))
            continue
        bare = _bare(statement)
        if any(same_json(_bare(s), bare) for s in allows):
            continue
        shape = shape_key(bare)
        alike = [s for s in allows if shape_key(s) == shape or _everywhere(s)]
        if any(_entries(s.get("Action")) is not None and "*" in _entries(s.get("Action"))
               and _everywhere(s) for s in alike):
            continue
        if key == "Action":
            union = [a for s in alike if "Action" in s and _entries(s["Action"]) is not None
                     for a in _entries(s["Action"])]
            attempts = [{**bare, "Action": union}]  # empty: the kernel names each pattern
        else:
            attempts = [{**bare, "NotAction": s["NotAction"]} for s in alike
                        if "NotAction" in s and _entries(s["NotAction"]) is not None]
        problems = None
        for attempt in attempts:
            problems = checker.check_statement(index, attempt, bare)
            if not problems:
                break
        if problems == []:
            continue
        sid = statement.get("Sid") if isinstance(statement.get("Sid"), str) else None
        if problems:
            found += [dataclasses.replace(p, statement=index, sid=sid,
                                          message=f"{label} gains {held.ref}: {p.message}")
                      for p in named(problems, attempt, bare)]
        else:
            found.append(Violation("structure", index, sid, f"{label} gains {held.ref}: it "
                                   "admits what no policy it held admitted"))
    return found


def _denies_kept(checker: Checker, label: str, held_before: list[Held], held_after: list[Held],
                 where, reads_changed: bool = False) -> list[Finding]:
    """Every Deny the principal was under, still denied in HEAD (reads_changed: what
    expressions read changed, see _reads_changed)."""
    found = []
    refs_after = {h.ref for h in held_after}
    trusted_after = [h for h in held_after if h.known and not _reads_changed(h, reads_changed)]
    denies_after = [s for h in trusted_after for s in _comparable(h.document)
                    if s.get("Effect") == "Deny"]
    unchanged = [h.document for h in trusted_after]
    for held in held_before:
        if not held.known:
            if held.ref not in refs_after:
                found.append(Finding(label, _unknown(
                    f"{label} no longer holds {held.ref}, which the gate cannot read: it may "
                    "have held a Deny"), where.line, where.path))
            continue
        if held.ref in refs_after and held.policy_id is not None:
            continue  # the per-document gate judges a Deny removed from the same policy
        if _reads_changed(held, reads_changed) and any(
                d.get("Effect") != "Allow" for d in _statements(held.document)):
            found.append(Finding(label, _unknown(
                f"{label} held {held.ref}, a Deny whose text reads values that changed: "
                "whether HEAD still denies what it denied cannot be judged"),
                where.line, where.path))
            continue
        if any(same_json(held.document, document) for document in unchanged):
            continue  # a document held as it was (its Version too) denies what it denied
        for index, deny in enumerate(_statements(held.document)):
            if deny.get("Effect") == "Allow":
                continue
            if deny.get("Effect") != "Deny":  # an expression (Fn::If, a local): it may deny
                found.append(Finding(label, _unknown(
                    f"{label} no longer holds {held.ref} as it was, and its statement {index} "
                    "is, or has an Effect that is, an expression the gate does not read: it "
                    "may be a Deny"), where.line, where.path))
                continue
            if _literal_variables(deny, held.document):
                found.append(Finding(label, _unknown(
                    f"{label} no longer holds {held.ref} as it was, and one of its Deny "
                    "statements has policy variables read as literal text (its Version is not "
                    "2012-10-17), which the gate does not compare with other documents"),
                    where.line, where.path))
                continue
            if _kept(checker, index, deny, denies_after):
                continue
            sid = deny.get("Sid") if isinstance(deny.get("Sid"), str) else None
            found.append(Finding(label, Violation(
                "structure", index, sid, f"{label} is no longer under a Deny statement of "
                f"{held.ref} (a guardrail removed)"), where.line, where.path))
    return found


def _kept(checker: Checker, index: int, deny: dict, denies: list[dict]) -> bool:
    bare = _bare(deny)
    if any(same_json(_bare(d), bare) for d in denies):
        return True
    key = "Action" if "Action" in deny else "NotAction"
    if _entries(deny.get(key)) is None:
        return False
    shape = shape_key(bare)
    alike = [_bare(d) for d in denies if shape_key(d) == shape]
    if key == "Action":
        union = [a for d in alike if _entries(d.get("Action")) is not None
                 for a in _entries(d["Action"])]
        candidates = [{**bare, "Action": union}] if union else []
    else:
        candidates = alike
    # HEAD denies at least what BASE denied: BASE's Deny, read as an Allow, inside HEAD's.
    return any(not checker.check_statement(index, {**c, "Effect": "Allow"},
                                           {**bare, "Effect": "Allow"}) for c in candidates)


def _boundary(checker: Checker, label: str, before: Held | None, after: Held | None,
              principal: Principal, context_changed: bool,
              reads_changed: bool = False) -> list[Finding]:
    if before is None:
        return []  # no boundary before: any boundary only narrows
    if after is None:
        return [Finding(label, Violation("structure", -1, None, f"{label}'s permissions "
                                         f"boundary {before.ref} was removed (a widening)"),
                        principal.line, principal.path)]
    if before.ref == after.ref and (after.policy_id is not None or not context_changed and not (
            before.known and after.known)):
        return []  # the same template policy (the per-document gate judges it), or unchanged
    if not (before.known and after.known):
        return [Finding(label, _unknown(f"{label}'s permissions boundary changed to "
                                        f"{after.ref}: {after.reason or before.reason}"),
                        after.line, after.path)]
    if _reads_changed(before, reads_changed) or _reads_changed(after, reads_changed):
        return [Finding(label, _unknown(f"{label}'s permissions boundary {after.ref} reads "
                                        "values that changed: what it bounds cannot be judged"),
                        after.line, after.path)]
    if same_json(before.document, after.document):
        return []
    allows = [s for s in _comparable(before.document) if s.get("Effect") == "Allow"]
    found = [Finding(label, dataclasses.replace(
        v, message=v.message.replace(" gains ", "'s boundary widens to ", 1)),
        after.line, after.path) for v in _gained(checker, label, after, allows)]
    return found + [Finding(f.principal, Violation(
        f.violation.kind, f.violation.statement, f.violation.sid,
        f.violation.message + " (the boundary)"), after.line, after.path)
        for f in _denies_kept(checker, label, [before], [after], after)]
