"""The request model: IAM statements as Z3 formulas over one request, and the search for a widening."""

from __future__ import annotations

import bisect
import datetime
import functools
import ipaddress
import json
import re
from dataclasses import dataclass, field
from fractions import Fraction

import z3

from .jsontext import JsonNumber, dumps
from .patterns import example, parse
from .prove import DEFAULT_TIMEOUT_MS, literal_prefix, same_json

# Where IAM's meaning is not pinned down exactly (an ARN wildcard at a colon, a policy
# variable, an operator not modelled) an atom is bracketed: a Boolean of its own, true when its
# lower bound is and true only when its upper bound is (proofs/requests.md). `unsat` then
# proves containment whatever the exact meaning; a `sat` model is a counterexample only if it
# holds for every value of the bracketed atoms.
OVER, UNDER = "over", "under"

_STRINGS = z3.ReSort(z3.StringSort())
_ALL = z3.Full(_STRINGS)
_CHAR = z3.AllChar(_STRINGS)
_NOT_COLON = z3.Intersect(_CHAR, z3.Complement(z3.Re(":")))
_PRINTABLE = z3.Star(z3.Range(" ", "~"))
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}  # ${*} ${?} ${$}: the literal character
_ACCOUNT = re.compile(r"^\d{12}$")
_CALLER_ARN = re.compile(r"^arn:([^:]+):(iam|sts)::(\d{12}):(.*)$", re.DOTALL)
_ROLE_NAME = re.compile(r"^role/(?:.*/)?([^/]+)$", re.DOTALL)
# Who makes a request: an IAM or STS principal (by its ARN's fields), another AWS principal
# text, a service, a federated identity, a canonical user, or anyone else (anonymous).
ANONYMOUS, ARN_CALLER, OTHER_CALLER = 0, 1, 2
PRINCIPAL_KINDS = {"Service": 3, "Federated": 4, "CanonicalUser": 5}

STRING_OPERATORS = {  # name -> (negated, ignore case, glob)
    "StringEquals": (False, False, False), "StringNotEquals": (True, False, False),
    "StringEqualsIgnoreCase": (False, True, False), "StringNotEqualsIgnoreCase": (True, True, False),
    "StringLike": (False, False, True), "StringNotLike": (True, False, True),
}
ARN_OPERATORS = {"ArnEquals": False, "ArnLike": False, "ArnNotEquals": True, "ArnNotLike": True}
ORDERED = {"Equals": (False, "=="), "NotEquals": (True, "=="), "LessThan": (False, "<"),
           "LessThanEquals": (False, "<="), "GreaterThan": (False, ">"),
           "GreaterThanEquals": (False, ">=")}
SAMPLED_ACTIONS = 8  # sample actions tried before the symbolic search for a counterexample
STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal",
                  "NotPrincipal", "Condition"}
# Keys AWS documents as multivalued: a single-valued operator on them is not modelled.
MULTIVALUED_KEYS = {"aws:tagkeys", "aws:calledvia", "aws:principalservicenameslist",
                    "aws:principalorgpaths", "aws:sourcevpcarn"}


def _flip(mode: str) -> str:
    return UNDER if mode == OVER else OVER


def _unknown(mode: str) -> z3.BoolRef:
    """An atom the model does not decide: the bound asked for."""
    return z3.BoolVal(mode == OVER)


def entries(value) -> list:
    return value if isinstance(value, list) else [value]


def _printable(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


def principal_entries(value) -> list[tuple]:
    """A Principal's entries as (kind, value): `*` as ("*", "*"), a value not an object as
    ("?", value) (not modelled)."""
    if value == "*":
        return [("*", "*")]
    if not isinstance(value, dict):
        return [("?", value)]
    return [(kind, entry) for kind, listed in value.items() for entry in entries(listed)]


@dataclass
class Unmodelled:
    """Why a statement's match was bracketed rather than exact (for an unknown verdict)."""

    side: str
    statement: int
    reason: str


class Request:
    """The variables of one request: action (lower case), resource, principal (a Caller)
    and, per condition key (lower case), whether it is present and its value by type."""

    def __init__(self):
        self.action = z3.String("action")
        self.resource = z3.String("resource")
        self.principal = Caller()
        self.keys: dict[str, dict[str, z3.ExprRef]] = {}
        self.multivalued: set[str] = set(MULTIVALUED_KEYS)
        self.slots: dict[str, int] = {}  # set-valued key -> values modelled (see proofs)
        self.used = {"resource": False, "principal": False}
        # Bracketed atoms: one Boolean per distinct atom (shared by BASE and HEAD, as the same
        # text means the same thing), bounded by the atom's lower and upper bound.
        self.fuzzy: dict[tuple, z3.BoolRef] = {}
        self.bounds: list[z3.BoolRef] = []
        self.rebuild: dict[tuple, object] = {}  # how each bracketed atom's bounds are built
        self.values: dict[str, str] | None = None  # policy variables' values, when checking
        self.variable_keys: set[str] = set()
        self.queries = 0  # solvers made over this request (each one query, with its checks)

    def variables(self) -> list[z3.ExprRef]:
        """What a request is: everything but the bracketed atoms."""
        who = self.principal
        return [self.action, self.resource, who.kind, who.partition, who.sts, who.account,
                who.name] + [v for made in self.keys.values() for v in made.values()]

    def key(self, name: str, kind: str) -> z3.ExprRef:
        made = self.keys.setdefault(name, {})
        if kind not in made:
            sort = {"string": z3.StringSort(), "number": z3.RealSort(), "date": z3.RealSort(),
                    "bool": z3.BoolSort(), "ip": z3.IntSort(), "ip6": z3.BoolSort(),
                    "present": z3.BoolSort(), "count": z3.IntSort()}[kind]
            made[kind] = z3.Const(f"{name}|{kind}", sort)
        return made[kind]

    def slot(self, name: str, number: int) -> z3.ExprRef:
        made = self.keys.setdefault(name, {})
        if f"slot{number}" not in made:
            made[f"slot{number}"] = z3.String(f"{name}|slot{number}")
        return made[f"slot{number}"]

    def domain(self) -> list[z3.BoolRef]:
        """What every real request satisfies: IP addresses in range, set sizes bounded."""
        facts = self.principal.domain() if self.used["principal"] else []
        for name, made in self.keys.items():
            if "ip" in made:
                facts.append(z3.And(made["ip"] >= 0, made["ip"] < z3.If(
                    self.key(name, "ip6"), z3.IntVal(2 ** 128), z3.IntVal(2 ** 32))))
            if name in self.slots:
                count = self.key(name, "count")
                facts.append(z3.And(count >= 0, count <= self.slots[name],
                                    z3.Implies(z3.Not(self.key(name, "present")), count == 0)))
        return facts


class Caller:
    """The principal of a request: arn:<partition>:<iam|sts>::<account>:<name> for an IAM or
    STS principal, else its kind and name."""

    def __init__(self):
        self.kind = z3.Int("principal|kind")
        self.partition = z3.String("principal|partition")
        self.sts = z3.Bool("principal|sts")
        self.account = z3.String("principal|account")
        self.name = z3.String("principal|name")

    def domain(self) -> list[z3.BoolRef]:
        digits = z3.Loop(z3.Range("0", "9"), 12, 12)
        return [self.kind >= ANONYMOUS, self.kind <= max(PRINCIPAL_KINDS.values()),
                z3.Implies(self.kind == ARN_CALLER, z3.And(
                    z3.InRe(self.partition, z3.Plus(_NOT_COLON)),
                    z3.InRe(self.account, digits))),
                z3.Implies(self.kind == OTHER_CALLER,
                           z3.Not(z3.PrefixOf(z3.StringVal("arn:"), self.name)))]

    def describe(self, text, model: z3.ModelRef):
        kind = model.eval(self.kind, True).as_long()
        if kind == ARN_CALLER:
            service = "sts" if z3.is_true(model.eval(self.sts, True)) else "iam"
            return {"AWS": f"arn:{text(self.partition)}:{service}::{text(self.account)}:"
                           f"{text(self.name)}"}
        names = {number: kind for kind, number in PRINCIPAL_KINDS.items()}
        if kind == OTHER_CALLER or kind in names:
            return {names.get(kind, "AWS"): text(self.name)}
        return "*"  # anonymous: only a "*" principal matches


class Encoder:
    """Statements as formulas over one Request; what was bracketed is noted in unmodelled."""

    def __init__(self, request: Request, action: str | None = None, worst: bool = False):
        self.request = request
        self.fixed_action = action  # the request's action when it is one known string
        # worst: each bracketed atom at the bound that makes a counterexample hardest (its
        # lower bound where a match helps one, its upper bound under a negation), so that any
        # model is a counterexample whatever the atoms really are.
        self.worst = worst
        self.positive = True
        self.unmodelled: list[Unmodelled] = []
        self._where = ("", -1)

    def at(self, side: str, index: int) -> Encoder:
        self._where = (side, index)
        return self

    def note(self, reason: str) -> None:
        side, index = self._where
        if not any(u.side == side and u.statement == index and u.reason == reason
                   for u in self.unmodelled):
            self.unmodelled.append(Unmodelled(side, index, reason))

    # --- the statement ----------------------------------------------------------------------

    def bracket(self, key: tuple, build) -> z3.BoolRef:
        """An atom, exact when its two bounds (build(UNDER), build(OVER)) are the same formula,
        else the Boolean that stands for it between them."""
        if self.worst:
            return build(UNDER if self.positive else OVER)
        lower, upper = build(UNDER), build(OVER)
        if z3.eq(lower, upper):
            return lower
        fuzzy = self.request.fuzzy
        if key not in fuzzy:
            fuzzy[key] = z3.Bool(f"bracketed|{len(fuzzy)}")
            self.request.bounds += [z3.Implies(lower, fuzzy[key]), z3.Implies(fuzzy[key], upper)]
            self.request.rebuild[key] = build
        return fuzzy[key]

    def matches(self, statement: dict, parts=("action", "resource", "principal",
                                              "condition")) -> z3.BoolRef:
        """The statement's Action, Resource, Principal and Condition all match the request.
        parts: which of them to take."""
        conjuncts = []
        unknown_keys = sorted(set(statement) - STATEMENT_KEYS)
        if unknown_keys:
            self.note(f"statement key {', '.join(unknown_keys)} is not modelled")
            conjuncts.append(self.bracket(("statement", dumps(statement, sort_keys=True)),
                                          _unknown))
        if "action" in parts:
            conjuncts.append(self.action(statement))
        if "resource" in parts:
            conjuncts.append(self.element(statement, "Resource", self.resource_atom))
        if "principal" in parts:
            conjuncts.append(self.element(statement, "Principal", self.principal_atom))
        if "condition" in parts:
            conjuncts += [self.condition_atom(operator, key, value)
                          for operator, key, value in condition_entries(statement)]
        return z3.And(conjuncts) if conjuncts else z3.BoolVal(True)

    def condition_atom(self, operator: str, key: str, value) -> z3.BoolRef:
        return self.bracket(("condition", operator, key.lower(), dumps(value)),
                            lambda mode: self.condition(operator, key, value, mode))

    def action(self, statement: dict) -> z3.BoolRef:
        key = "Action" if "Action" in statement else "NotAction"
        texts = tuple(entries(statement[key]))
        if self.fixed_action is None:
            member = z3.InRe(self.request.action, _action_union(texts))
        else:  # a ground fact: only patterns whose literal prefix starts it can match it
            known = self.fixed_action
            texts = tuple(t for t in texts if known.startswith(literal_prefix(parse(t))))
            member = z3.simplify(z3.InRe(z3.StringVal(known), _action_union(texts))) \
                if texts else z3.BoolVal(False)
        return member if key == "Action" else z3.Not(member)

    def element(self, statement: dict, name: str, atom) -> z3.BoolRef:
        """Resource or Principal (absent: any), NotResource or NotPrincipal (the complement)."""
        if name in statement:
            return z3.Or([self.bracket((name, dumps(value)), lambda mode, v=value: atom(v, mode))
                          for value in self._values(statement[name], name)])
        if "Not" + name in statement:
            if name == "Principal":
                self.note("NotPrincipal is not modelled (its account and role entries do not "
                          "match as in Principal)")
                return self.bracket(("NotPrincipal", dumps(statement["NotPrincipal"])),
                                    _unknown)
            self.positive = not self.positive
            try:
                return z3.Not(z3.Or([self.bracket((name, dumps(value)),
                                                  lambda mode, v=value: atom(v, mode))
                                     for value in self._values(statement["Not" + name], name)]))
            finally:
                self.positive = not self.positive
        return z3.BoolVal(True)

    def _values(self, value, name: str) -> list:
        if name == "Resource":
            self.request.used["resource"] = True
            return entries(value)
        self.request.used["principal"] = True
        return principal_entries(value)

    def resource_atom(self, text, mode: str) -> z3.BoolRef:
        if not isinstance(text, str):
            self.note(f"Resource entry {text!r} is not a string")
            return _unknown(mode)
        pattern = self.glob(text, mode, arn=True, ignore_case=False)
        return z3.BoolVal(False) if pattern is None else z3.InRe(self.request.resource, pattern)

    def principal_atom(self, entry: tuple, mode: str) -> z3.BoolRef:
        kind, value = entry
        if kind == "*" or (kind == "AWS" and value == "*"):
            return z3.BoolVal(True)
        if (kind != "AWS" and kind not in PRINCIPAL_KINDS) or not isinstance(value, str) \
                or not _printable(value) \
                or "*" in value or "?" in value or "${" in value:
            self.note(f"Principal {kind}: {value!r} is not modelled")
            return _unknown(mode)
        who = self.request.principal
        if kind != "AWS":
            return z3.And(who.kind == PRINCIPAL_KINDS[kind], who.name == z3.StringVal(value))
        if _ACCOUNT.match(value):  # the account: every IAM and STS principal in it
            return z3.And(who.kind == ARN_CALLER, who.account == z3.StringVal(value))
        arn = _CALLER_ARN.match(value)
        if arn is None:  # a unique ID or another text: itself
            return z3.And(who.kind == OTHER_CALLER, who.name == z3.StringVal(value))
        partition, service, account, name = arn.groups()
        same = [who.kind == ARN_CALLER, who.partition == z3.StringVal(partition),
                who.account == z3.StringVal(account)]
        if service == "iam" and name == "root":
            return z3.And(same)
        itself = z3.And(who.sts == (service == "sts"), who.name == z3.StringVal(name))
        role = _ROLE_NAME.match(name) if service == "iam" else None
        if role:  # the role and its sessions (whose ARN names the role without its path)
            session = z3.StringVal(f"assumed-role/{role.group(1)}/")
            return z3.And(*same, z3.Or(itself, z3.And(who.sts, z3.PrefixOf(session, who.name))))
        return z3.And(*same, itself)

    # --- globs --------------------------------------------------------------------------------

    def glob(self, text: str, mode: str, arn: bool, ignore_case: bool,
             wildcards: bool = True) -> z3.ReRef | None:
        """A pattern's language (None: empty). arn: wildcards of an ARN are bracketed between
        not crossing a colon (but a final `*`) and crossing it. Policy variables: `*` as the
        upper bound, nothing as the lower one."""
        if not _printable(text):
            self.note(f"{text!r} has characters beyond printable ASCII")
            return None if mode == UNDER else _ALL
        parts = []
        position = 0
        for found in _VARIABLE.finditer(text):
            parts += self._literal_glob(text[position:found.start()], mode, arn, ignore_case,
                                        wildcards, final=False)
            name = found.group(1)
            if name in _ESCAPES:
                parts.append(z3.Re(_ESCAPES[name]))
            else:
                variable = self._variable(name)
                if variable is not None:  # its value in the request being checked
                    parts.append(_literal(variable, ignore_case))
                elif mode == UNDER:  # unknown: any value (upper), none (lower)
                    return None
                else:
                    parts.append(_ALL)
            position = found.end()
        parts += self._literal_glob(text[position:], mode, arn, ignore_case, wildcards,
                                    final=True)
        if not parts:
            return z3.Re("")
        return parts[0] if len(parts) == 1 else z3.Concat(parts)

    def _variable(self, name: str) -> str | None:
        """A policy variable's value in the request being checked (None: not known). Its key
        becomes part of the request, so that a model gives it a value."""
        key = name.lower()
        if "," in key or "'" in key:  # ${key, 'default'}: not modelled
            return None
        self.request.key(key, "present")
        self.request.key(key, "string")
        self.request.variable_keys.add(key)
        values = self.request.values
        return None if values is None else values.get(key)

    def _literal_glob(self, text: str, mode: str, arn: bool, ignore_case: bool,
                      wildcards: bool, final: bool) -> list:
        parts = []
        for kind, value in glob_pieces(text, mode, arn, wildcards, final):
            if kind == "literal":
                parts.append(_literal(value, ignore_case))
            else:
                char = _NOT_COLON if value else _CHAR
                parts.append(z3.Star(char) if kind == "*" else char)
        return parts

    # --- conditions ---------------------------------------------------------------------------

    def condition(self, operator: str, key: str, value, mode: str) -> z3.BoolRef:
        """One operator on one key (its values OR-ed), missing keys as IAM evaluates them."""
        quantifier, base, if_exists = _split_operator(operator)
        name = key.lower()
        values = [_as_text(v) for v in entries(value)]
        if base is None or any(v is None for v in values) or not values or "${" in name:
            self.note(f"condition {operator} on {key} is not modelled")
            return _unknown(mode)
        if base == "Null":
            if quantifier or if_exists or len(values) != 1 or values[0].lower() not in (
                    "true", "false"):
                self.note(f"condition {operator} on {key} is not modelled")
                return _unknown(mode)
            present = self.request.key(name, "present")
            return z3.Not(present) if values[0].lower() == "true" else present
        negated = _negated(base)
        if quantifier:
            return self._set_condition(quantifier, base, name, values, mode, operator, key)
        if name in self.request.multivalued:
            self.note(f"condition {operator} on {key}: a single-valued operator on a "
                      "multivalued key is not modelled")
            return _unknown(mode)
        present = self.request.key(name, "present")
        matched = self._single(base, name, values, mode)
        if matched is None:
            self.note(f"condition {operator} on {key} is not modelled")
            return _unknown(mode)
        if negated:
            return z3.Or(z3.Not(present), matched)
        return z3.And(present, matched) if not if_exists else z3.Or(z3.Not(present), matched)

    def _single(self, base: str, name: str, values: list[str], mode: str,
                value: z3.ExprRef | None = None) -> z3.BoolRef | None:
        """base on the key's value (or the given value): any policy value matches, or for a
        negated operator none does."""
        if string_operator(base) is not None:
            negated, ignore_case, wildcards, arn = string_operator(base)
            value = self.request.key(name, "string") if value is None else value
            inner = _flip(mode) if negated else mode
            languages = [self.glob(v, inner, arn, ignore_case, wildcards) for v in values]
            languages = [lang for lang in languages if lang is not None]
            any_match = z3.Or([z3.InRe(value, lang) for lang in languages]) if languages \
                else z3.BoolVal(False)
            return z3.Not(any_match) if negated else any_match
        if typed_family(base, values) is None:
            return None
        family, suffix = typed_family(base, values)
        if family == "Bool":
            held = self.request.key(name, "bool")
            return z3.Or([held == (v.lower() == "true") for v in values])
        if family == "IpAddress":
            return self._ip(name, values, negated=suffix == "NotEquals")
        parse_value = _number if family == "Numeric" else _date
        numbers = [parse_value(v) for v in values]
        if any(n is None for n in numbers):
            return None
        held = self.request.key(name, "number" if family == "Numeric" else "date")
        negated, relation = ORDERED[suffix]
        compare = {"==": lambda a, b: a == b, "<": lambda a, b: a < b,
                   "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
                   ">=": lambda a, b: a >= b}[relation]
        any_match = z3.Or([compare(held, z3.RealVal(n)) for n in numbers])
        return z3.Not(any_match) if negated else any_match

    def _ip(self, name: str, values: list[str], negated: bool) -> z3.BoolRef | None:
        ranges = []
        for text in values:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                return None
            ranges.append((network.version == 6, int(network.network_address),
                           int(network.broadcast_address)))
        held, six = self.request.key(name, "ip"), self.request.key(name, "ip6")
        inside = z3.Or([z3.And(six == is6, held >= low, held <= high)
                        for is6, low, high in ranges])
        return z3.Not(inside) if negated else inside

    def _set_condition(self, quantifier: str, base: str, name: str, values: list[str],
                       mode: str, operator: str, key: str) -> z3.BoolRef:
        """ForAnyValue: some value of the key's set matches; ForAllValues: every value does
        (true when the key is missing or empty)."""
        if base not in STRING_OPERATORS and base not in ARN_OPERATORS:
            self.note(f"condition {operator} on {key} is not modelled")
            return _unknown(mode)
        slots = self.request.slots.get(name, 0)
        count = self.request.key(name, "count")
        self.request.key(name, "present")
        each = []
        for number in range(slots):
            matched = self._single(base, name, values, mode, self.request.slot(name, number))
            each.append((number, matched))
        if quantifier == "ForAnyValue":
            return z3.Or([z3.And(count > number, m) for number, m in each] or [False])
        return z3.And([z3.Implies(count > number, m) for number, m in each] or [True])


def string_operator(base: str) -> tuple[bool, bool, bool, bool] | None:
    """(negated, ignore case, wildcards, ARN) of a String or Arn operator; None for others."""
    if base in STRING_OPERATORS:
        negated, ignore_case, wildcards = STRING_OPERATORS[base]
        return negated, ignore_case, wildcards, False
    if base in ARN_OPERATORS:
        return ARN_OPERATORS[base], False, True, True
    return None


def typed_family(base: str, values: list[str]) -> tuple[str, str] | None:
    """(family, relation) of a Numeric, Date, Bool or IpAddress operator the model reads (Bool:
    only equality with true or false); None for others."""
    family, suffix = _family(base)
    if family is None or suffix not in ORDERED:
        return None
    if family == "Bool" and (suffix != "Equals"
                             or any(v.lower() not in ("true", "false") for v in values)):
        return None
    return family, suffix


def glob_pieces(text: str, mode: str, arn: bool, wildcards: bool,
                final: bool) -> list[tuple[str, object]]:
    """A glob's text (no policy variables) in order: ("literal", text), or ("*" or "?",
    bounded), bounded when the wildcard stays within a colon-separated segment (an ARN's
    lower bound, except a `*` that ends the pattern: final says this text ends it)."""
    pieces: list[tuple[str, object]] = []
    tokens = re.split(r"([*?])", text) if wildcards else [text]
    for at, token in enumerate(tokens):
        if not token:
            continue
        if token in ("*", "?") and wildcards:
            last = final and at == len(tokens) - 2 and tokens[-1] == ""
            pieces.append((token, arn and mode == UNDER and not (token == "*" and last)))
        else:
            pieces.append(("literal", token))
    return pieces


def condition_entries(statement: dict, encoder: Encoder | None = None) -> list[tuple]:
    """(operator, key, value) of a statement's Condition block; a block of another shape is
    one unmodelled entry."""
    block = statement.get("Condition")
    if block is None:
        return []
    if not isinstance(block, dict) or not all(isinstance(v, dict) for v in block.values()):
        return [("?", "Condition", block)]
    return [(operator, key, value) for operator, keys in block.items()
            for key, value in keys.items()]


def _split_operator(operator: str) -> tuple[str | None, str | None, bool]:
    quantifier = None
    for prefix in ("ForAllValues:", "ForAnyValue:"):
        if operator.startswith(prefix):
            quantifier, operator = prefix[:-1], operator[len(prefix):]
    if_exists = operator.endswith("IfExists")
    base = operator[:-len("IfExists")] if if_exists else operator
    known = base in STRING_OPERATORS or base in ARN_OPERATORS or base == "Null" or (
        _family(base)[0] is not None and _family(base)[1] in ORDERED)
    return quantifier, base if known else None, if_exists


def _family(base: str) -> tuple[str | None, str]:
    if base == "Bool":
        return "Bool", "Equals"
    if base == "IpAddress":
        return "IpAddress", "Equals"
    if base == "NotIpAddress":
        return "IpAddress", "NotEquals"
    for family in ("Numeric", "Date"):
        if base.startswith(family):
            return family, base[len(family):]
    return None, ""


def _negated(base: str) -> bool:
    if base in STRING_OPERATORS:
        return STRING_OPERATORS[base][0]
    if base in ARN_OPERATORS:
        return ARN_OPERATORS[base]
    family, suffix = _family(base)
    return suffix == "NotEquals"


def _as_text(value) -> str | None:
    """A condition value as IAM reads it: strings as written, booleans and numbers as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, JsonNumber):
        return value.text
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return value if isinstance(value, str) else None


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text.strip()) if re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", text) else None
    except (ValueError, ZeroDivisionError):
        return None


def _date(text: str) -> Fraction | None:
    """Seconds since the epoch of an ISO 8601 date or an epoch number (UTC when no zone)."""
    if re.fullmatch(r"\d+", text):
        return Fraction(int(text))
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return Fraction(delta.days * 86_400 + delta.seconds) + Fraction(delta.microseconds, 10 ** 6)


def _literal(text: str, ignore_case: bool) -> z3.ReRef:
    if not ignore_case:
        return z3.Re(text)
    chars = [z3.Union(z3.Re(c.lower()), z3.Re(c.upper())) if c.lower() != c.upper()
             else z3.Re(c) for c in text]
    return chars[0] if len(chars) == 1 else z3.Concat(chars)


@functools.lru_cache(maxsize=20_000)
def _action_regex(text: str) -> z3.ReRef:
    parts = []
    for token in parse(text).tokens:
        parts.append(z3.Star(_CHAR) if token == "*" else _CHAR if token == "?"
                     else z3.Re(token.lower()))
    return parts[0] if len(parts) == 1 else z3.Concat(parts)


@functools.lru_cache(maxsize=5_000)
def _action_union(texts: tuple[str, ...]) -> z3.ReRef:
    """Action patterns, lower-cased (IAM matches actions case-insensitively)."""
    regexes = [_action_regex(text) for text in dict.fromkeys(t.lower() for t in texts)]
    return regexes[0] if len(regexes) == 1 else z3.Union(regexes)


def _decode(z3_string: str) -> str:
    return re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda m: chr(int(m.group(1), 16)), z3_string)


# --- queries ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """A query's answer: proven, a counterexample request (and the HEAD statement that allows
    it), or unknown with why."""

    proven: bool = False
    request: dict | None = None
    head_statement: int | None = None
    reasons: list[str] = field(default_factory=list)
    unmodelled: list[Unmodelled] = field(default_factory=list)
    queries: int = 0  # solver queries it took


def action_overlap(a: dict, b: dict) -> bool:
    """Whether two statements may share an action, by literal prefixes (a pattern matches only
    strings that start with its literal prefix): False only when no prefix of one starts a
    prefix of the other."""
    if "NotAction" in a or "NotAction" in b:
        return True
    mine, theirs = _prefixes(tuple(entries(a["Action"]))), _prefixes(tuple(entries(b["Action"])))
    listed, ordered = theirs
    for prefix in mine[1]:
        if any(prefix[:cut] in listed for cut in range(len(prefix) + 1)):
            return True
        at = bisect.bisect_left(ordered, prefix)
        if at < len(ordered) and ordered[at].startswith(prefix):
            return True
    return False


@functools.lru_cache(maxsize=5_000)
def _prefixes(texts: tuple[str, ...]) -> tuple[frozenset, list[str]]:
    """The literal prefixes of patterns, as a set and sorted."""
    found = {literal_prefix(parse(text)) for text in texts}
    return frozenset(found), sorted(found)


def covers(before: dict, after: dict, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> bool:
    """Whether every (resource, principal, context) after's non-Action parts match, before's
    match too (for two Allow statements; swap them for Deny). Elements written the same on both
    sides are left out of what must be shown (X and C implies Y and C, given X implies Y).
    Decided on the text when covers_by_text can, else by the solver."""
    return covers_by_text(before, after) or covers_by_solver(before, after, timeout_ms)


def _left_to_show(before: dict, after: dict) -> tuple[list[str], list[tuple]]:
    """What covers must show: the elements (resource, principal) not written the same on both
    sides, and before's condition entries after does not have."""
    need = [name.lower() for name in ("Resource", "Principal")
            if not (same_json(before.get(name), after.get(name))
                    and same_json(before.get("Not" + name), after.get("Not" + name)))]
    kept = [entry for entry in condition_entries(before)
            if not any(same_json(entry, other) for other in condition_entries(after))]
    return need, kept


def covers_by_text(before: dict, after: dict) -> bool:
    """A sufficient condition for covers, on the text alone (proofs/requests.md, covered by
    text): before keeps no condition after lacks, and each element left to show is before's
    `*` (or absent), or each of after's entries is one of before's or (Resource) lies under a
    before entry `prefix*` by its literal prefix. False: not shown this way."""
    if set(before) - STATEMENT_KEYS or set(after) - STATEMENT_KEYS:
        return False
    if "Condition" not in after and condition_entries(before):
        return False  # a condition after lacks (the common case, decided without comparing)
    need, kept = _left_to_show(before, after)
    if kept:
        return False
    return all(_element_inside(before, after, name.capitalize()) for name in need)


def _element_inside(before: dict, after: dict, name: str) -> bool:
    if "Not" + name in before or "Not" + name in after:
        return False
    if name not in before:
        return True  # before matches any
    if name == "Resource":
        outer, inner = entries(before[name]), entries(after.get(name, "*"))
        if "*" in outer:
            return True
        return all(any(same_json(e, b) or _under_prefix(e, b) for b in outer) for e in inner)
    outer = principal_entries(before[name])
    if ("*", "*") in outer or ("AWS", "*") in outer:
        return True
    if name not in after:
        return False
    return all(any(same_json(list(e), list(b)) for b in outer)
               for e in principal_entries(after[name]))


def _under_prefix(inner, outer) -> bool:
    """Whether every string the resource pattern inner may match starts with outer's text
    before a final `*`, outer having no other wildcard nor variable: outer then matches it
    (a final `*` matches any run, across colons too)."""
    if not (isinstance(inner, str) and isinstance(outer, str) and _printable(inner)
            and _printable(outer) and outer.endswith("*")):
        return False
    stem = outer[:-1]
    if any(mark in stem for mark in ("*", "?", "$")):
        return False
    literal = re.split(r"[*?]|\$\{", inner, maxsplit=1)[0]
    return literal.startswith(stem)


def covers_by_solver(before: dict, after: dict, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> bool:
    """covers, by one solver query (no query when nothing is left to show)."""
    return solver_covers(before, after, timeout_ms) == "covered"


def solver_covers(before: dict, after: dict, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> str:
    """covers_by_solver's answer in three values: "covered" (proven), "not covered" (a
    request after matches and before does not exists) or "unknown" (the query timed out)."""
    need, kept = _left_to_show(before, after)
    if not need and not kept:
        return "covered"
    request = Request()
    encoder = Encoder(request)
    _size_sets(request, [before, after])
    antecedent = encoder.at("HEAD", 0).matches(after, ("resource", "principal", "condition"))
    encoder.at("BASE", 0)
    consequent = [encoder.matches(before, (part,)) for part in need]
    consequent += [encoder.condition_atom(o, k, v) for o, k, v in kept]
    solver = _solver(request, timeout_ms)
    solver.add(antecedent, z3.Not(z3.And(consequent)))
    answer = solver.check()
    return "covered" if answer == z3.unsat else "not covered" if answer == z3.sat else "unknown"


def _solver(request: Request, timeout_ms: int) -> z3.Solver:
    """A solver that knows what every request is (its domain) and every bracketed atom's
    bounds."""
    request.queries += 1
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(request.domain() + request.bounds)
    return solver


def _size_sets(request: Request, statements: list[dict]) -> None:
    """A set-valued key gets one value per set-operator atom on it, plus one: enough for a
    counterexample if there is one (proofs/requests.md, small sets)."""
    for statement in statements:
        for operator, key, _ in condition_entries(statement):
            if isinstance(operator, str) and operator.startswith(("ForAllValues:",
                                                                   "ForAnyValue:")):
                name = key.lower()
                request.slots[name] = request.slots.get(name, 1) + 1
                request.multivalued.add(name)


def find_widening(base: list[dict], head: list[dict], focus_head: list[int],
                  focus_base: list[int], timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Outcome:
    """Search a request that HEAD allows and BASE does not, among those matched by one of the
    HEAD Allow statements focus_head or BASE Deny statements focus_base (every other request
    is known to be no widening). Statements that share no action with the focus are left out:
    on those requests they match nothing."""
    focus = [head[j] for j in focus_head] + [base[i] for i in focus_base]
    head_in = [j for j, s in enumerate(head) if any(action_overlap(s, f) for f in focus)]
    base_in = [i for i, s in enumerate(base) if any(action_overlap(s, f) for f in focus)]

    def formula(match) -> tuple[z3.BoolRef, dict]:
        head_allow = {j: match("HEAD", j) for j in head_in if head[j]["Effect"] == "Allow"}
        head_deny = [z3.Not(match("HEAD", j)) for j in head_in if head[j]["Effect"] != "Allow"]
        base_allow = [z3.Not(match("BASE", i)) for i in base_in if base[i]["Effect"] == "Allow"]
        base_deny = {i: match("BASE", i) for i in base_in if base[i]["Effect"] != "Allow"}
        in_focus = [head_allow[j] for j in focus_head] + [base_deny[i] for i in focus_base]
        return z3.And(z3.Or(in_focus), z3.Or(list(head_allow.values()) or [False]),
                      z3.And(head_deny or [True]),
                      z3.Or(z3.And(base_allow or [True]),
                            z3.Or(list(base_deny.values()) or [False]))), head_allow

    if not focus:
        return Outcome(proven=True)
    return _search(base, head, [head[j] for j in head_in] + [base[i] for i in base_in],
                   formula, timeout_ms, _sample_actions(focus))


def find_lost_denial(base: list[dict], head: list[dict], focus_base: list[int],
                     timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Outcome:
    """Search a request one of the BASE Deny statements focus_base denies and no HEAD Deny
    statement does. A Deny also denies what other policies of the principal allow, so HEAD
    must deny at least what BASE denied, whatever this document allows."""
    focus = [base[i] for i in focus_base]
    head_in = [j for j, s in enumerate(head) if s["Effect"] != "Allow"
               and any(action_overlap(s, f) for f in focus)]

    def formula(match) -> tuple[z3.BoolRef, dict]:
        denied = z3.Or([match("BASE", i) for i in focus_base])
        kept = [match("HEAD", j) for j in head_in]
        return z3.And(denied, z3.Not(z3.Or(kept or [False]))), {}

    if not focus:
        return Outcome(proven=True)
    return _search(base, head, focus + [head[j] for j in head_in], formula, timeout_ms,
                   _sample_actions(focus))


def _sample_actions(statements: list[dict]) -> list[str]:
    """A few actions the statements' Action patterns match (patterns.example: `*` as a word,
    `?` as one letter): where a counterexample is first looked for (a search aid, never a
    proof)."""
    found = []
    for statement in statements:
        for text in entries(statement.get("Action", [])):
            sample = example(text).lower()
            if sample not in found and _printable(sample):
                found.append(sample)
    return found[:SAMPLED_ACTIONS]


def _search(base: list[dict], head: list[dict], used: list[dict], formula,
            timeout_ms: int, samples: list[str]) -> Outcome:
    """Solve formula(match) (match(side, index): that statement matches the request). A model
    is a counterexample IAM itself would agree with only if it holds whatever the bracketed
    atoms are within their bounds: that is asked next, with the request fixed to the model.
    Large action unions make a symbolic search slow where one action string is quick, so a
    few sample actions are tried first; only the symbolic query can prove there is none."""
    request = Request()
    _size_sets(request, used)
    outcome = _search_request(request, base, head, formula, timeout_ms, samples)
    outcome.queries = request.queries
    return outcome


def _search_request(request: Request, base: list[dict], head: list[dict], formula,
                    timeout_ms: int, samples: list[str]) -> Outcome:
    sides = {"HEAD": head, "BASE": base}

    def build(action: str | None = None, worst: bool = False) -> tuple[z3.BoolRef, dict, Encoder]:
        encoder = Encoder(request, action, worst)

        def match(side: str, index: int) -> z3.BoolRef:
            statement = sides[side][index]
            # A match helps a counterexample for a HEAD Allow and a BASE Deny.
            encoder.positive = (side == "HEAD") == (statement["Effect"] == "Allow")
            return encoder.at(side, index).matches(statement)

        return (*formula(match), encoder)

    doubtful = False  # a sample gave a model that the bracketed atoms leave in doubt
    for sample in samples:
        query, head_allow, _ = build(sample)
        solver = _solver(request, timeout_ms)
        solver.add(request.action == z3.StringVal(sample), query)
        if solver.check() == z3.sat:
            model = _counterexample(solver, request, query, timeout_ms)
            if model is not None:
                return _found(request, model, head_allow)
            doubtful = True
    if doubtful:
        found = _worst_case(request, build, samples, timeout_ms, symbolic=False)
        if found is not None:
            return _found(request, *found)
    query, head_allow, encoder = build()
    solver = _solver(request, timeout_ms)
    solver.add(query)
    verdict = solver.check()
    if verdict == z3.unsat:
        return Outcome(proven=True)
    if verdict != z3.sat:
        return Outcome(reasons=[f"solver gave no answer ({solver.reason_unknown()})"])
    model = _counterexample(solver, request, query, timeout_ms)
    if model is None and request.fuzzy:
        found = _worst_case(request, build, samples, timeout_ms)
        if found is not None:
            return _found(request, *found)
    if model is None:
        reasons = [f"{u.side} statement {u.statement}: {u.reason}" for u in encoder.unmodelled]
        return Outcome(reasons=reasons or ["the counterexample depends on an ARN wildcard at a "
                                           "colon or a policy variable"],
                       unmodelled=encoder.unmodelled)
    return _found(request, model, head_allow)


def _worst_case(request: Request, build, samples: list[str], timeout_ms: int,
                symbolic: bool = True):
    """A counterexample with every bracketed atom at its worst bound and every policy variable
    given one value ("a"): (model, HEAD Allow matches) or None. Any model of that query is a
    counterexample whatever the atoms are, for the request it names."""
    request.values = {key: "a" for key in request.variable_keys}
    pinned = [z3.And(request.key(key, "present"), request.key(key, "string") == z3.StringVal("a"))
              for key in request.variable_keys]
    try:
        for action in [*samples, None] if symbolic else samples:
            query, head_allow, _ = build(action, worst=True)
            solver = _solver(request, timeout_ms)
            solver.add(query, *pinned)
            if action is not None:
                solver.add(request.action == z3.StringVal(action))
            if solver.check() == z3.sat:
                return _readable_model(solver, request), head_allow
        return None
    finally:
        request.values = None


def _counterexample(solver: z3.Solver, request: Request, query: z3.BoolRef,
                    timeout_ms: int) -> z3.ModelRef | None:
    """The solver's (satisfied) model, if it is a counterexample whatever the bracketed atoms
    are: with the request fixed to the model, no value of theirs may falsify the query."""
    model = _readable_model(solver, request)
    if request.fuzzy:
        check = _solver(request, timeout_ms)
        check.add(z3.Not(query))
        check.add([v == model.eval(v, model_completion=True) for v in request.variables()])
        check.add(_settled(request, model))
        if check.check() != z3.unsat:
            return None
    return model


def _settled(request: Request, model: z3.ModelRef) -> list[z3.BoolRef]:
    """Bracketed atoms whose bounds agree on the model's request, once policy variables take
    the model's values (a present key's value): those are not in doubt for that request."""
    values = {}
    for name, made in request.keys.items():
        if "string" in made and z3.is_true(model.eval(made["present"], True)):
            text = _decode(model.eval(made["string"], True).as_string())
            if _printable(text):
                values[name] = text
    request.values = values
    try:
        settled = []
        for key, build in request.rebuild.items():
            lower = model.eval(build(UNDER), model_completion=True)
            upper = model.eval(build(OVER), model_completion=True)
            if z3.is_true(lower) == z3.is_true(upper) and (z3.is_true(lower)
                                                            or z3.is_false(lower)):
                settled.append(request.fuzzy[key] == lower)
        return settled
    finally:
        request.values = None


def _found(request: Request, model: z3.ModelRef, head_allow: dict) -> Outcome:
    allowing = next((j for j, m in head_allow.items()
                     if z3.is_true(model.eval(m, model_completion=True))), None)
    return Outcome(request=_describe(request, model), head_statement=allowing)


def _readable_model(solver: z3.Solver, request: Request) -> z3.ModelRef:
    """The solver's model, preferring printable strings (a preference among counterexamples;
    it never decides a verdict)."""
    who = request.principal
    strings = [request.action, request.resource, who.partition, who.account, who.name]
    strings += [made[k] for made in request.keys.values() for k in made
                if k == "string" or k.startswith("slot")]
    numbers = [made[k] for made in request.keys.values() for k in ("number", "date") if k in made]
    letters = z3.Plus(z3.Range("a", "z"))
    preferences = [[z3.InRe(s, _PRINTABLE) for s in strings] + [z3.IsInt(n) for n in numbers],
                   [z3.InRe(request.action, z3.Concat(letters, z3.Re(":"), letters))]]
    model = solver.model()
    solver.push()
    for preference in preferences:  # each on top of the one before, while one is found
        solver.add(preference)
        if solver.check() != z3.sat:
            break
        model = solver.model()
    solver.pop()
    return model


def _describe(request: Request, model: z3.ModelRef) -> dict:
    """The request a model names, as a person reads it."""
    def text(value) -> str:
        return _decode(model.eval(value, model_completion=True).as_string())

    described: dict = {"action": text(request.action)}
    if request.used["resource"]:
        described["resource"] = text(request.resource)
    if request.used["principal"]:
        described["principal"] = request.principal.describe(text, model)
    context = {}
    for name, made in sorted(request.keys.items()):
        if "present" in made and not z3.is_true(model.eval(made["present"], True)):
            context[name] = None  # missing from the request
            continue
        if name in request.slots:
            count = model.eval(made["count"], True).as_long()
            context[name] = [text(request.slot(name, n)) for n in range(count)]
        elif "string" in made:
            context[name] = text(made["string"])
        elif "number" in made or "date" in made:
            held = model.eval(made.get("number", made.get("date")), True)
            number = Fraction(held.numerator_as_long(), held.denominator_as_long())
            context[name] = _render_number(number, "date" in made)
        elif "bool" in made:
            context[name] = "true" if z3.is_true(model.eval(made["bool"], True)) else "false"
        elif "ip" in made:
            address = model.eval(made["ip"], True).as_long()
            six = z3.is_true(model.eval(made["ip6"], True))
            context[name] = str(ipaddress.IPv6Address(address) if six
                                else ipaddress.IPv4Address(address))
        else:  # present, and only its presence matters (Null)
            context[name] = ""
    if context:
        described["context"] = context
    return described


def _render_number(number: Fraction, date: bool) -> str:
    if date:
        moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + \
            datetime.timedelta(seconds=float(number))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if number.denominator != 1 \
            else moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(number.numerator) if number.denominator == 1 else str(float(number))
