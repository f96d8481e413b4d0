"""Counterexample requests built from a statement and checked on one concrete request, before any solver."""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from .patterns import example
from .patterns import glob as action_glob
from .prove import _Index
from .requests import (
    _ACCOUNT,
    _CALLER_ARN,
    _ESCAPES,
    _ROLE_NAME,
    _VARIABLE,
    ANONYMOUS,
    ARN_CALLER,
    ARN_OPERATORS,
    MULTIVALUED_KEYS,
    ORDERED,
    OTHER_CALLER,
    OVER,
    PRINCIPAL_KINDS,
    STATEMENT_KEYS,
    STRING_OPERATORS,
    UNDER,
    _as_text,
    _date,
    _family,
    _flip,
    _negated,
    _number,
    _printable,
    _render_number,
    _split_operator,
    condition_entries,
    entries,
    glob_pieces,
    principal_entries,
    string_operator,
    typed_family,
)

# Three values: True and False where the request model decides an atom exactly on this
# request, None where it brackets it (proofs/requests.md): a None anywhere that matters means
# the request proves nothing. Kleene's connectives keep that sound: True or False comes out
# only when it holds for every value the bracketed atoms may take.
Maybe = bool | None
CANDIDATES = 8  # concrete requests tried per statement (a search aid: failing finds nothing)
SPELLINGS = 16  # catalog actions tried per pattern for one its document does not name yet
EXAMPLE = "example"  # what a wildcard or an unconstrained value stands for in a witness
EXAMPLE_ACCOUNT = "123456789012"
# Actions tried for a NotAction statement (one per common service; any action would do).
EVERYDAY_ACTIONS = ["s3:GetObject", "ec2:DescribeInstances", "iam:ListRoles",
                    "sts:GetCallerIdentity", "lambda:InvokeFunction", "dynamodb:GetItem",
                    "sqs:SendMessage", "kms:Decrypt"]


def _and(values) -> Maybe:
    return _kleene(values, False)


def _or(values) -> Maybe:
    return _kleene(values, True)


def _kleene(values, dominant: bool) -> Maybe:
    """Kleene's or (dominant True) or and (dominant False): the dominant value if one is
    there, else in doubt if one is, else the other value."""
    result: Maybe = not dominant
    for value in values:
        if value is dominant:
            return dominant
        if value is None:
            result = None
    return result


def _not(value: Maybe) -> Maybe:
    return None if value is None else not value


def _bounded(build) -> Maybe:
    """An atom from its lower and upper bound on this request: exact when they agree."""
    lower, upper = build(UNDER), build(OVER)
    return lower if lower == upper else None


@dataclass(frozen=True)
class Who:
    """A request's principal, with the request model's fields (requests.Caller)."""

    kind: int = ANONYMOUS
    partition: str = ""
    sts: bool = False
    account: str = ""
    name: str = ""

    def describe(self):
        if self.kind == ARN_CALLER:
            service = "sts" if self.sts else "iam"
            return {"AWS": f"arn:{self.partition}:{service}::{self.account}:{self.name}"}
        names = {number: kind for kind, number in PRINCIPAL_KINDS.items()}
        if self.kind == OTHER_CALLER or self.kind in names:
            return {names.get(self.kind, "AWS"): self.name}
        return "*"


@dataclass
class Concrete:
    """One request: its action as spelled, resource, principal and context (a key, lower
    case, to its value: a string, a list for a set-valued key; a key absent is missing)."""

    action: str
    resource: str = ""
    principal: Who = field(default_factory=Who)
    context: dict = field(default_factory=dict)


class Evaluation:
    """Statements judged on one concrete request, atom by atom as requests.Encoder encodes
    them (the same bounds), in three values."""

    def __init__(self, request: Concrete, multivalued: set[str]):
        self.request = request
        self.multivalued = multivalued

    # --- policies -----------------------------------------------------------------------------

    def allows(self, statements: list[dict]) -> Maybe:
        return _and([_or([self.matches(s) for s in statements if s["Effect"] == "Allow"]),
                     _not(self.denies(statements))])

    def denies(self, statements: list[dict]) -> Maybe:
        return _or([self.matches(s) for s in statements if s["Effect"] != "Allow"])

    def matches(self, statement: dict) -> Maybe:
        """Its Action, Resource, Principal and every condition match (Encoder.matches)."""
        if set(statement) - STATEMENT_KEYS:
            return None
        checks = [lambda: self.action(statement),
                  lambda: self.element(statement, "Resource", self.resource_atom),
                  lambda: self.element(statement, "Principal", self.principal_atom)]
        checks += [lambda e=e: self.condition(*e) for e in condition_entries(statement)]
        result: Maybe = True
        for check in checks:  # the cheap action first; False settles it
            value = check()
            if value is False:
                return False
            if value is None:
                result = None
        return result

    def action(self, statement: dict) -> bool:
        key = "Action" if "Action" in statement else "NotAction"
        member = any(action_glob(text).matches(self.request.action)
                     for text in entries(statement[key]))
        return member if key == "Action" else not member

    def element(self, statement: dict, name: str, atom) -> Maybe:
        if name in statement:
            return _or([atom(value) for value in _values(statement[name], name)])
        if "Not" + name in statement:
            if name == "Principal":
                return None
            return _not(_or([atom(value) for value in _values(statement["Not" + name], name)]))
        return True

    def resource_atom(self, text) -> Maybe:
        if not isinstance(text, str):
            return None
        return _bounded(lambda mode: self.glob_matches(text, mode, self.request.resource,
                                                       arn=True, ignore_case=False))

    def principal_atom(self, entry: tuple) -> Maybe:
        kind, value = entry
        if kind == "*" or (kind == "AWS" and value == "*"):
            return True
        if (kind != "AWS" and kind not in PRINCIPAL_KINDS) or not isinstance(value, str) \
                or not _printable(value) or "*" in value or "?" in value or "${" in value:
            return None
        who = self.request.principal
        if kind != "AWS":
            return who.kind == PRINCIPAL_KINDS[kind] and who.name == value
        if _ACCOUNT.match(value):
            return who.kind == ARN_CALLER and who.account == value
        arn = _CALLER_ARN.match(value)
        if arn is None:
            return who.kind == OTHER_CALLER and who.name == value
        partition, service, account, name = arn.groups()
        if not (who.kind == ARN_CALLER and who.partition == partition and who.account == account):
            return False
        if service == "iam" and name == "root":
            return True
        if who.sts == (service == "sts") and who.name == name:
            return True
        role = _ROLE_NAME.match(name) if service == "iam" else None
        return bool(role) and who.sts and who.name.startswith(f"assumed-role/{role.group(1)}/")

    # --- globs --------------------------------------------------------------------------------

    def glob_matches(self, text: str, mode: str, value: str, arn: bool, ignore_case: bool,
                     wildcards: bool = True) -> bool:
        """Whether value is in the bound (mode) of the pattern's language (Encoder.glob)."""
        if not _printable(text):
            return mode == OVER
        pieces = []
        position = 0
        for found in _VARIABLE.finditer(text):
            pieces.append(("glob", text[position:found.start()], False))
            name = found.group(1)
            if name in _ESCAPES:
                pieces.append(("literal", _ESCAPES[name], False))
            else:
                known = self.variable(name)
                if known is not None:
                    pieces.append(("literal", known, False))
                elif mode == UNDER:
                    return False
                else:
                    pieces.append(("any", "", False))
            position = found.end()
        pieces.append(("glob", text[position:], True))
        return _regex(tuple(pieces), mode, arn, ignore_case, wildcards).fullmatch(value) \
            is not None

    def variable(self, name: str) -> str | None:
        """A policy variable's value in this request (None: missing, or not modelled)."""
        key = name.lower()
        if "," in key or "'" in key:
            return None
        value = self.request.context.get(key)
        return value if isinstance(value, str) and _printable(value) else None

    # --- conditions ---------------------------------------------------------------------------

    def condition(self, operator: str, key: str, value) -> Maybe:
        return _bounded(lambda mode: self._condition(operator, key, value, mode))

    def _condition(self, operator: str, key: str, value, mode: str) -> bool:
        quantifier, base, if_exists = _split_operator(operator)
        name = key.lower()
        values = [_as_text(v) for v in entries(value)]
        unknown = mode == OVER
        if base is None or any(v is None for v in values) or not values or "${" in name:
            return unknown
        held = self.request.context.get(name)
        present = held is not None
        if base == "Null":
            if quantifier or if_exists or len(values) != 1 or values[0].lower() not in (
                    "true", "false"):
                return unknown
            return not present if values[0].lower() == "true" else present
        if quantifier and base not in STRING_OPERATORS and base not in ARN_OPERATORS:
            return unknown
        reader = self._reader(base, values, mode)
        if reader is None:  # an operator or a value the model does not read
            return unknown
        if quantifier:
            held = [] if held is None else held
            each = [reader(item) for item in held] if isinstance(held, list) else [None]
            if any(m is None for m in each):
                return unknown
            return any(each) if quantifier == "ForAnyValue" else all(each)
        if name in self.multivalued or isinstance(held, list):
            return unknown
        if not present:  # missing: negated operators and ...IfExists hold, others do not
            return _negated(base) or if_exists
        matched = reader(held)  # the operator's own negation is in the reader
        return unknown if matched is None else matched

    def _reader(self, base: str, values: list[str], mode: str):
        """base as a test on one value of the key (Encoder._single): None when the operator
        or its values are not modelled; the test gives None for a value that does not read
        as the operator's type."""
        if string_operator(base) is not None:
            negated, ignore_case, wildcards, arn = string_operator(base)
            inner = _flip(mode) if negated else mode

            def strings(held) -> bool | None:
                if not isinstance(held, str):
                    return None
                found = any(self.glob_matches(v, inner, held, arn, ignore_case, wildcards)
                            for v in values)
                return not found if negated else found
            return strings
        if typed_family(base, values) is None:
            return None
        family, suffix = typed_family(base, values)
        if family == "Bool":
            return lambda held: None if held not in ("true", "false") else \
                any(held == v.lower() for v in values)
        if family == "IpAddress":
            try:
                networks = [ipaddress.ip_network(v, strict=False) for v in values]
            except ValueError:
                return None

            def addresses(held) -> bool | None:
                try:
                    address = ipaddress.ip_address(held)
                except ValueError:
                    return None
                inside = any(address.version == n.version and address in n for n in networks)
                return not inside if suffix == "NotEquals" else inside
            return addresses
        parse_value = _number if family == "Numeric" else _date
        numbers = [parse_value(v) for v in values]
        if any(n is None for n in numbers):
            return None
        negated, relation = ORDERED[suffix]
        compare = {"==": lambda a, b: a == b, "<": lambda a, b: a < b,
                   "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
                   ">=": lambda a, b: a >= b}[relation]

        def ordered(held) -> bool | None:
            number = parse_value(held) if isinstance(held, str) else None
            if number is None:
                return None
            found = any(compare(number, n) for n in numbers)
            return not found if negated else found
        return ordered


def _values(value, name: str) -> list:
    return entries(value) if name == "Resource" else principal_entries(value)


@functools.lru_cache(maxsize=20_000)
def _regex(pieces: tuple, mode: str, arn: bool, ignore_case: bool,
           wildcards: bool) -> re.Pattern:
    """A bound of a glob as a Python regex (Encoder._literal_glob, piece by piece)."""
    out = []
    for kind, text, final in pieces:
        if kind == "any":
            out.append(".*")
            continue
        if kind == "literal":
            out.append(_literal(text, ignore_case))
            continue
        for piece, value in glob_pieces(text, mode, arn, wildcards, final):
            if piece == "literal":
                out.append(_literal(value, ignore_case))
            else:
                char = "[^:]" if value else "."
                out.append(char + "*" if piece == "*" else char)
    return re.compile("".join(out), re.DOTALL)


def _literal(text: str, ignore_case: bool) -> str:
    if not ignore_case:
        return re.escape(text)
    return "".join(f"[{re.escape(c.lower())}{re.escape(c.upper())}]"
                   if c.lower() != c.upper() else re.escape(c) for c in text)


# --- searches --------------------------------------------------------------------------------


def widening_witness(base: list[dict], head: list[dict], focus_head: list[int],
                     catalog=None, first: dict[int, list[str]] | None = None
                     ) -> tuple[dict, int] | None:
    """A request HEAD allows and BASE denies, each certain (whatever the bracketed atoms
    are), built from one of the HEAD Allow statements focus_head: (the request as printed,
    that statement) or None (none found: proves nothing). first: per HEAD statement, the
    action patterns to build from first (those the kernel found to reach past BASE)."""
    if not focus_head:
        return None
    multivalued = multivalued_keys(base + head)
    avoid = [s for s in base if s["Effect"] == "Allow"]
    for j in focus_head:
        for request in candidates(head[j], avoid, catalog, head, (first or {}).get(j, ())):
            evaluation = Evaluation(request, multivalued)
            if evaluation.matches(head[j]) is True and evaluation.allows(head) is True \
                    and evaluation.allows(base) is False:
                return describe(request, base + head, catalog), j
    return None


def lost_denial_witness(base: list[dict], head: list[dict], focus_base: list[int],
                        catalog=None) -> dict | None:
    """A request one of the BASE Deny statements focus_base denies and HEAD does not deny,
    each certain: the request as printed, or None (none found: proves nothing)."""
    if not focus_base:
        return None
    multivalued = multivalued_keys(base + head)
    avoid = [s for s in head if s["Effect"] != "Allow"]
    for i in focus_base:
        for request in candidates(base[i], avoid, catalog, base):
            evaluation = Evaluation(request, multivalued)
            if evaluation.denies(base) is True and evaluation.denies(head) is False:
                return describe(request, base + head, catalog)
    return None


# --- candidates -------------------------------------------------------------------------------


def multivalued_keys(statements: list[dict]) -> set[str]:
    """Keys a single-valued operator is not modelled on: AWS's multivalued ones and those used
    with a set operator (requests._size_sets, over every statement: more is safer)."""
    found = set(MULTIVALUED_KEYS)
    for statement in statements:
        for operator, key, _ in condition_entries(statement):
            if isinstance(operator, str) and operator.startswith(("ForAllValues:",
                                                                   "ForAnyValue:")):
                found.add(key.lower())
    return found


def candidates(statement: dict, avoid: list[dict], catalog=None,
               document: list[dict] = (), first=()) -> list[Concrete]:
    """A few concrete requests the statement is likely to match (actions the statements of
    avoid do not name first, from the patterns first before the statement's own; for a
    resource `*`, also the resources its document's Deny statements leave out with
    NotResource): each is checked before use, so a poor guess costs only time."""
    if "Action" in statement:
        actions = _actions([*first, *entries(statement["Action"])], avoid, catalog)
    else:  # NotAction: some everyday actions its list leaves out
        excluded = _Named([{"Action": statement["NotAction"]}])
        actions = _actions([a for a in EVERYDAY_ACTIONS if not excluded(a)], avoid, None)
    context: dict = {}
    for operator, key, value in condition_entries(statement):
        _satisfy(context, operator, key, value)
    resources = _resources(statement, actions[0] if actions else "", context, document)
    callers = _callers(statement)
    found = []
    for resource in resources:
        for action in actions:
            for caller in callers:
                found.append(Concrete(action, resource, caller, dict(context)))
    return found[:CANDIDATES]


def _actions(patterns: list, avoid: list[dict], catalog) -> list[str]:
    """Up to three actions the patterns match, spelled as the catalog does; first those no
    statement of avoid names (looked for among the first patterns only, and for each among its
    first spellings: a search aid)."""
    named = _Named(avoid)
    fresh, others = [], []
    for text in patterns[:16]:
        for action in _spellings(text, catalog) if isinstance(text, str) else ():
            if action in fresh or action in others:
                continue
            if not named(action):
                fresh.append(action)
                break
            others.append(action)
        if len(fresh) == 3:
            break
    return (fresh + others)[:3]


def _spellings(text: str, catalog) -> list[str]:
    """Actions the pattern matches, best first: for `*` everyday ones, else the catalog's first
    few, then one made from the pattern (patterns.example: `ec2:*` gives `ec2:Example`), each
    checked like any candidate."""
    if text == "*":
        return EVERYDAY_ACTIONS
    named = catalog.matching(text)[:SPELLINGS] if catalog is not None else ()
    return [*named, example(text)]


class _Named:
    """Whether some Action pattern of the statements matches an action (only the patterns
    whose literal prefix starts it are matched)."""

    def __init__(self, statements: list[dict]):
        self.patterns = _Index([t for s in statements if "Action" in s
                                for t in entries(s["Action"]) if isinstance(t, str)])

    def __call__(self, action: str) -> bool:
        return any(action_glob(text).matches(action)
                   for text in self.patterns.could_contain(action.lower()))


def _resources(statement: dict, action: str, context: dict, document) -> list[str]:
    service = action.partition(":")[0].lower() or EXAMPLE
    generic = f"arn:aws:{service}:us-east-1:{EXAMPLE_ACCOUNT}:{EXAMPLE}"
    written = [t for t in entries(statement.get("Resource", "*")) if isinstance(t, str)]
    found = [_instance(text, context) for text in written[:3] if text != "*"]
    if "*" in written:
        spared = [t for s in document if s["Effect"] != "Allow"
                  for t in entries(s.get("NotResource", [])) if isinstance(t, str)]
        found += [generic] + [r for r in (_instance(t, dict(context)) for t in spared)
                              if r is not None and r.split(":")[2:3] == [service]][:2]
    return [r for r in dict.fromkeys(found) if r is not None] or [generic]


def _instance(text: str, context: dict, wildcards: bool = True) -> str | None:
    """A string a glob matches under every reading (a wildcard as a word without `:`), its
    policy variables given values in context."""
    if not _printable(text):
        return None
    out = []
    position = 0
    for found in _VARIABLE.finditer(text):
        out.append(_plain(text[position:found.start()], wildcards))
        name = found.group(1)
        key = name.lower()
        if name in _ESCAPES:
            out.append(_ESCAPES[name])
        elif "," in key or "'" in key:
            return None
        else:
            value = context.setdefault(key, EXAMPLE)
            if not isinstance(value, str):
                return None
            out.append(value)
        position = found.end()
    out.append(_plain(text[position:], wildcards))
    return "".join(out)


def _plain(text: str, wildcards: bool) -> str:
    return text.replace("*", EXAMPLE).replace("?", "x") if wildcards else text


def _callers(statement: dict) -> list[Who]:
    default = Who(ARN_CALLER, "aws", False, EXAMPLE_ACCOUNT, f"user/{EXAMPLE}")
    if "Principal" not in statement:
        return [default]
    found = []
    for kind, value in principal_entries(statement["Principal"])[:3]:
        if kind == "*" or value == "*":
            found.append(Who())  # anyone: even an anonymous caller
        elif not isinstance(value, str):
            continue
        elif kind in PRINCIPAL_KINDS:
            found.append(Who(PRINCIPAL_KINDS[kind], name=value))
        elif _ACCOUNT.match(value):
            found.append(Who(ARN_CALLER, "aws", False, value, "root"))
        elif (arn := _CALLER_ARN.match(value)) is not None:
            partition, service, account, name = arn.groups()
            found.append(Who(ARN_CALLER, partition, service == "sts", account, name))
        elif not value.startswith("arn:"):
            found.append(Who(OTHER_CALLER, name=value))
    return found or [default]


def _satisfy(context: dict, operator, key, value) -> None:
    """Give the key a value that makes the condition hold, unless an earlier one gave it one
    (a missing key already satisfies a negated operator, `...IfExists` and ForAllValues)."""
    if not isinstance(operator, str) or not isinstance(key, str):
        return
    quantifier, base, if_exists = _split_operator(operator)
    name = key.lower()
    texts = [_as_text(v) for v in entries(value)]
    if base is None or not texts or texts[0] is None or name in context:
        return
    first = texts[0]
    if base == "Null":
        if first.lower() == "false":
            context[name] = EXAMPLE
        return
    if _negated(base) or if_exists or quantifier == "ForAllValues":
        return
    chosen = _satisfying(base, first, context)
    if chosen is not None:
        context[name] = [chosen] if quantifier else chosen


def _satisfying(base: str, text: str, context: dict) -> str | None:
    if base in STRING_OPERATORS or base in ARN_OPERATORS:
        wildcards = base in ARN_OPERATORS or STRING_OPERATORS[base][2]
        return _instance(text, context, wildcards)
    family, suffix = _family(base)
    if family == "Bool":
        return text.lower()
    if family == "IpAddress":
        try:
            return str(ipaddress.ip_network(text, strict=False).network_address)
        except ValueError:
            return None
    if family == "Numeric":
        try:
            number = Decimal(text.strip())
        except InvalidOperation:
            return None
        step = {"LessThan": -1, "GreaterThan": 1}.get(suffix, 0)
        return str(number + step)
    if family == "Date":
        seconds = _date(text)
        if seconds is None:
            return None
        step = {"LessThan": -1, "GreaterThan": 1}.get(suffix, 0)
        return _render_number(seconds + step, date=True) if step else text
    return None


def describe(request: Concrete, statements: list[dict], catalog=None) -> dict:
    """The request as a person reads it (requests._describe's shape): the catalog's spelling
    of the action, every condition key the statements of its action name (None: missing)."""
    evaluation = Evaluation(request, set())
    statements = [s for s in statements if evaluation.action(s)]
    action = request.action
    if catalog is not None:
        action = catalog.canonical(action) or action
    described: dict = {"action": action}
    if any("Resource" in s or "NotResource" in s for s in statements):
        described["resource"] = request.resource
    if any("Principal" in s or "NotPrincipal" in s for s in statements):
        described["principal"] = request.principal.describe()
    keys = {key.lower() for s in statements for _, key, _ in condition_entries(s)
            if isinstance(key, str)} | set(request.context)
    if keys:
        described["context"] = {key: request.context.get(key) for key in sorted(keys)}
    return described
