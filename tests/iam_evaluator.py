"""An independent brute-force IAM evaluator for one concrete request (shares no code with refiner).

It reads IAM's documentation directly: a policy allows a request when some Allow statement
matches and no Deny does; a statement matches when its action, resource, principal and every
condition match. Where the documentation leaves ARN wildcards at a colon open, `arn_colons`
picks a reading: "cross" (a wildcard matches any characters) or "segment" (wildcards stay in
their colon-separated segment, but a `*` ending the pattern). The request model claims to be
right under both, so the tests evaluate both.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from decimal import Decimal, InvalidOperation

SET_OPERATORS = ("ForAllValues:", "ForAnyValue:")


def as_list(value):
    return value if isinstance(value, list) else [value]


def wildcard_regex(pattern: str, *, ignore_case: bool, colons: str = "cross",
                   variables: dict | None = None) -> re.Pattern | None:
    """A glob (`*`, `?`) as a Python regex; ${key} replaced by the request's value (None when
    the key is missing: no match)."""
    out = []
    position = 0
    pieces = re.split(r"(\$\{[^}]*\})", pattern)
    for number, piece in enumerate(pieces):
        if piece.startswith("${") and piece.endswith("}"):
            name = piece[2:-1]
            if name in ("*", "?", "$"):
                out.append(re.escape(name))
                continue
            value = (variables or {}).get(name.lower())
            if not isinstance(value, str):
                return None
            out.append(re.escape(value))
            continue
        for index, char in enumerate(piece):
            last = number == len(pieces) - 1 and index == len(piece) - 1
            if char == "*":
                out.append(".*" if colons == "cross" or last else "[^:]*")
            elif char == "?":
                out.append("." if colons == "cross" else "[^:]")
            else:
                out.append(re.escape(char))
        position += len(piece)
    flags = re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL
    return re.compile("".join(out), flags)


def glob_match(pattern: str, text: str, **options) -> bool:
    regex = wildcard_regex(pattern, **options)
    return regex is not None and regex.fullmatch(text) is not None


def principal_matches(entry_kind: str, entry: str, request_principal) -> bool:
    """request_principal: (kind, identity) of the caller, e.g. ("AWS", a session ARN)."""
    kind, identity = request_principal
    if entry_kind == "*" or (entry_kind == "AWS" and entry == "*"):
        return True
    if kind != entry_kind:
        return False
    if kind != "AWS":
        return identity == entry
    caller = re.match(r"arn:([^:]+):(iam|sts)::(\d{12}):(.*)", identity)
    if re.fullmatch(r"\d{12}", entry):
        return bool(caller) and caller.group(3) == entry
    root = re.fullmatch(r"arn:([^:]+):iam::(\d{12}):root", entry)
    if root:
        return bool(caller) and caller.group(1) == root.group(1) and caller.group(3) == root.group(2)
    role = re.fullmatch(r"arn:([^:]+):iam::(\d{12}):role/(.*/)?([^/]+)", entry)
    if role and caller and caller.group(2) == "sts":
        session = re.fullmatch(r"assumed-role/([^/]+)/.*", caller.group(4), re.DOTALL)
        if session and caller.group(1) == role.group(1) and caller.group(3) == role.group(2) \
                and session.group(1) == role.group(4):
            return True
    return identity == entry


def _number(text):
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return None


def _moment(text):
    text = str(text)
    if text.isdigit():
        return Decimal(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return Decimal(str(moment.timestamp()))


def value_matches(operator: str, policy_value: str, value, arn_colons: str, context) -> bool:
    """One request value against one policy value, for the positive form of an operator."""
    if operator in ("StringEquals", "StringNotEquals"):
        regex = wildcard_regex(policy_value.replace("*", "${*}").replace("?", "${?}"),
                               ignore_case=False, variables=context)
        return regex is not None and regex.fullmatch(value) is not None
    if operator in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        regex = wildcard_regex(policy_value.replace("*", "${*}").replace("?", "${?}"),
                               ignore_case=True, variables=context)
        return regex is not None and regex.fullmatch(value) is not None
    if operator in ("StringLike", "StringNotLike"):
        return glob_match(policy_value, value, ignore_case=False, variables=context)
    if operator.startswith("Arn"):
        return glob_match(policy_value, value, ignore_case=False, colons=arn_colons,
                          variables=context)
    if operator.startswith("Numeric") or operator.startswith("Date"):
        read = _number if operator.startswith("Numeric") else _moment
        mine, theirs = read(value), read(policy_value)
        relation = operator.removeprefix("Numeric").removeprefix("Date")
        return {"Equals": mine == theirs, "NotEquals": mine == theirs,
                "LessThan": mine < theirs, "LessThanEquals": mine <= theirs,
                "GreaterThan": mine > theirs, "GreaterThanEquals": mine >= theirs}[relation]
    if operator == "Bool":
        return str(value).lower() == policy_value.lower()
    if operator in ("IpAddress", "NotIpAddress"):
        try:
            return ipaddress.ip_address(value) in ipaddress.ip_network(policy_value, strict=False)
        except ValueError:
            return False
    raise ValueError(operator)


NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals",
           "ArnNotLike", "NumericNotEquals", "DateNotEquals", "NotIpAddress"}


def condition_holds(operator: str, key: str, policy_values, context: dict,
                    arn_colons: str) -> bool:
    """IAM's evaluation of one condition operator on one key of the request context."""
    values = [str(v).lower() if isinstance(v, bool) else str(v) for v in as_list(policy_values)]
    present = key.lower() in context and context[key.lower()] is not None
    held = context.get(key.lower())
    if operator == "Null":
        return (not present) == (values[0].lower() == "true")
    quantifier = next((q for q in SET_OPERATORS if operator.startswith(q)), None)
    base = operator[len(quantifier):] if quantifier else operator
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    negated = base in NEGATED

    def one(value) -> bool:
        any_match = any(value_matches(base, v, value, arn_colons, context) for v in values)
        return not any_match if negated else any_match

    if quantifier == "ForAllValues:":
        return not present or all(one(v) for v in as_list(held))
    if quantifier == "ForAnyValue:":
        return present and any(one(v) for v in as_list(held))
    if not present:
        return negated or if_exists
    return one(held)


def statement_matches(statement: dict, request: dict, arn_colons: str) -> bool:
    context = {k.lower(): v for k, v in request.get("context", {}).items()}
    if "Action" in statement:
        if not any(glob_match(a, request["action"], ignore_case=True)
                   for a in as_list(statement["Action"])):
            return False
    elif any(glob_match(a, request["action"], ignore_case=True)
             for a in as_list(statement["NotAction"])):
        return False
    for name, negated in (("Resource", False), ("NotResource", True)):
        if name in statement:
            hit = any(glob_match(r, request["resource"], ignore_case=False, colons=arn_colons,
                                 variables=context) for r in as_list(statement[name]))
            if hit == negated:
                return False
    if "Principal" in statement:
        principal = statement["Principal"]
        entries = [("*", "*")] if principal == "*" else [
            (kind, entry) for kind, listed in principal.items() for entry in as_list(listed)]
        if not any(principal_matches(kind, entry, request["principal"])
                   for kind, entry in entries):
            return False
    for operator, keys in statement.get("Condition", {}).items():
        for key, values in keys.items():
            if not condition_holds(operator, key, values, context, arn_colons):
                return False
    return True


def allows(policy: list[dict], request: dict, arn_colons: str = "cross") -> bool:
    matched = [s["Effect"] for s in policy if statement_matches(s, request, arn_colons)]
    return "Allow" in matched and "Deny" not in matched


def denies(policy: list[dict], request: dict, arn_colons: str = "cross") -> bool:
    """Some Deny statement matches (it denies the request whatever else allows it)."""
    return any(s["Effect"] == "Deny" and statement_matches(s, request, arn_colons)
               for s in policy)
