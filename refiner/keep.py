"""Keep rules, from flags and refiner.toml: opt-out Sids, never-remove actions, kept principals, grace.

Kept means used. subtract() takes the kept actions out of a finding, so the kernel proves the
refinement against the finding minus them (a kept action must still be allowed, exactly as a
used one); statements a keep-sid rule keeps are left as they are, and checker() holds them to
that: each must be read back unchanged and is proven against nothing unused. A principal a
rule keeps uses everything (nothing is removable from it). Every kept item is reported as
{"action" | "statement" | "principal": ..., "reason": ...}.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .catalog import Catalog
from .errors import InputError
from .finding import Unused
from .jsontext import dumps
from .patterns import glob, parse
from .policy import allowed_among, decoded_document, load_policy, parse_json_text
from .prove import Checker, Violation, same_json

CONFIG_NAME = "refiner.toml"
# refiner.toml's [keep] keys and the flags they stand for.
CONFIG_KEYS = {"sids": "--keep-sid", "actions": "--keep-action", "principals": "--keep-principal",
               "tags": "--keep-tag", "grace_days": "--grace-days"}
_SID = re.compile(r"[A-Za-z0-9*?]+")  # IAM's Sid alphabet, and the two wildcards
_ARN = re.compile(r"[A-Za-z0-9_+=,.@/:*?-]+")  # IAM names, paths and ARNs, and the wildcards
_TAG = re.compile(r"[\w .:/=+\-@]*")  # IAM's tag alphabet
MAX_ARN_PATTERN = 2048


@dataclass(frozen=True)
class KeepRules:
    """The keep rules of one run. Patterns are globs (`*` any run, `?` one character) matched
    ignoring case: Sids and action names as IAM matches actions, principal ARNs because IAM
    names are unique ignoring case. Tags are KEY=VALUE, matched exactly. grace_days: actions a
    managed policy gained less than this many days before the finding's analysis are kept,
    and principals younger than that are skipped. Bad rules raise InputError (one line)."""

    sids: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    principals: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # "KEY=VALUE"
    grace_days: int | None = None

    def __post_init__(self):
        for name in ("sids", "actions", "principals", "tags"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise InputError(f"{CONFIG_KEYS[name]}: expected a list of strings")
            object.__setattr__(self, name, tuple(value))
        for sid in self.sids:
            _check_pattern(sid, "--keep-sid", _SID, "a Sid's letters and digits, * and ?")
        for action in self.actions:
            _check_pattern(action, "--keep-action", None, "")
            try:
                parse(action)
            except InputError as error:
                raise InputError(f"--keep-action {action!r}: {error}") from None
        for arn in self.principals:
            _check_pattern(arn, "--keep-principal", _ARN,
                           "the letters, digits and _+=,.@/:- of IAM ARNs, * and ?")
        for tag in self.tags:
            _tag(tag)
        grace = self.grace_days
        if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
            raise InputError(f"--grace-days must be a whole number of days, not {grace!r}")
        if grace is not None and grace < 0:
            raise InputError(f"--grace-days must not be negative (got {grace})")

    def __bool__(self) -> bool:
        return bool(self.sids or self.actions or self.principals or self.tags
                    or self.grace_days)

    # --- JSON, for work that crosses processes ---------------------------------------------

    def as_json(self) -> dict:
        return {"sids": list(self.sids), "actions": list(self.actions),
                "principals": list(self.principals), "tags": list(self.tags),
                "grace_days": self.grace_days}

    @classmethod
    def from_json(cls, value: Mapping) -> KeepRules:
        return cls(**{key: value[key] for key in CONFIG_KEYS if value.get(key) is not None})

    @classmethod
    def from_mapping(cls, value: Mapping, where: str) -> KeepRules:
        """Rules from a table with refiner.toml's [keep] keys, held to its checks."""
        return cls(**_checked_table(value, where))

    # --- statements ----------------------------------------------------------------------------

    def statement_rule(self, statement: dict) -> str | None:
        """The keep-sid pattern that keeps this statement, or None."""
        sid = statement.get("Sid")
        if not isinstance(sid, str):
            return None
        return next((pattern for pattern in self.sids if _matches(sid, pattern)), None)

    def keeps_statement(self, statement: dict) -> bool:
        return self.statement_rule(statement) is not None

    # --- principals ----------------------------------------------------------------------------

    def principal_reason(self, arn: str | None, tags: Mapping[str, str] | None = None,
                         created: str | None = None, analyzed_at: str | None = None) -> str | None:
        """Why the principal is kept whole (never refined), or None. tags and created come
        from the account export; created is compared with the finding's analysis."""
        if arn:
            pattern = next((p for p in self.principals if _matches(arn, p)), None)
            if pattern is not None:
                return f"keep-principal {pattern}"
        for tag in self.tags:
            key, value = _tag(tag)
            if tags is not None and tags.get(key) == value:
                return f"keep-tag {tag}"
        if self.grace_days and created is not None:
            age = _moment(analyzed_at, "the finding's analyzedAt") - _moment(created, f"{arn} CreateDate")
            if age < timedelta(days=self.grace_days):
                return (f"grace-days {self.grace_days}: created {created}, "
                        f"{_before_analysis(age)}")
        return None

    # --- the finding minus what is kept --------------------------------------------------------

    def subtract(self, unused: Unused, catalog: Catalog,
                 recent: Mapping[str, str] | None = None) -> Unused:
        """The finding minus every action these rules keep (keep-action patterns; recent:
        {action: reason} of the grace rule, see recent_grants), or nothing unused when the
        finding's principal is kept. Returns a new Unused that carries the rules (for the
        statements they keep) and the kept items; a service the finding calls wholly unused
        in which an action is kept becomes its other catalog actions, by name."""
        kept = list(unused.kept)
        reason = self.principal_reason(unused.resource_arn)
        if reason is not None:
            kept.append({"principal": unused.resource_arn, "reason": reason})
            return dataclasses.replace(unused, actions={}, services=set(), unknown=[],
                                       kept=kept, keep=self, _sorted=None)
        matchers = [(pattern, glob(pattern)) for pattern in self.actions]
        services = set(unused.services)
        for service in sorted(unused.services):  # a pattern that keeps a whole service
            pattern = next((p for p, m in matchers if m.covers_prefix(service + ":")), None)
            if pattern is not None:
                services.discard(service)
                kept.append({"action": f"{service}:*", "reason": f"keep-action {pattern}"})
        reasons: dict[str, str] = {}  # lower name -> why it is kept
        names = {name.lower(): name for name in _unused_names(unused, catalog)
                 if name.split(":", 1)[0].lower() not in set(unused.services) - services}
        for key, name in names.items():
            pattern = next((p for p, matcher in matchers if matcher.matches(name)), None)
            # Only a catalog action can be kept: refinement keeps what the catalog knows, so a
            # name it does not know stays unused (and is named as unknown) rather than being
            # reported kept and then lost.
            if pattern is not None and not _in_catalog(name, catalog):
                continue
            if pattern is not None:
                reasons[key] = f"keep-action {pattern}"
            elif recent and key in recent:
                reasons[key] = recent[key]
        actions = {key: name for key, name in unused.actions.items() if key in names
                   and key not in reasons}
        for service in sorted(services):
            in_service = catalog.actions_of(service)
            if any(name.lower() in reasons for name in in_service):
                services.discard(service)
                actions.update((name.lower(), name) for name in in_service
                               if name.lower() not in reasons)
        kept += [{"action": names[key], "reason": why} for key, why in sorted(reasons.items())]
        unknown = [name for name in unused.unknown if name.lower() not in reasons and (
            name.split(":", 1)[0].lower() in services or name.lower() in actions)]
        return dataclasses.replace(unused, actions=actions, services=services, unknown=unknown,
                                   kept=kept, keep=self, _sorted=None)

    def recent_grants(self, unused: Unused, catalog: Catalog,
                      versions: Mapping[str, list[dict]]) -> dict[str, str]:
        """{lower action: reason} for every unused action that a managed policy's current
        version grants and that no version created grace_days or more before the finding's
        analysis granted: it is new, and its unused time is too short to tell. versions:
        policy ARN -> the export's PolicyVersionList entries (Document, CreateDate,
        IsDefaultVersion, VersionId). Dates that are missing or unreadable are refused."""
        if not self.grace_days or not versions:
            return {}
        analyzed = _moment(unused.analyzed_at, "the finding's analyzedAt (needed by --grace-days)")
        cutoff = analyzed - timedelta(days=self.grace_days)
        names = _unused_names(unused, catalog)
        recent: dict[str, str] = {}
        for arn, history in sorted(versions.items()):
            dated = sorted(((_moment(v.get("CreateDate"), f"{arn} version "
                                     f"{v.get('VersionId')} CreateDate"), v) for v in history),
                           key=lambda pair: pair[0])
            current = [v for _, v in dated if v.get("IsDefaultVersion")]
            if not current:
                continue
            grants = [(moment, version, _granted(version, arn, names)) for moment, version in dated]
            before = set().union(*(granted for moment, _, granted in grants if moment <= cutoff))
            new = _granted(current[0], arn, names) - before
            for name in sorted(new, key=str.lower):
                moment, first, _ = next(g for g in grants if g[0] > cutoff and name in g[2])
                recent.setdefault(name.lower(), (
                    f"grace-days {self.grace_days}: granted by {arn} since version "
                    f"{first.get('VersionId')}, created {_before_analysis(analyzed - moment)}"))
        return recent


def _granted(version: dict, arn: str, names: list[str]) -> set[str]:
    """The names a policy version's Allow statements grant."""
    label = f"{arn} version {version.get('VersionId')}"
    document = version.get("Document")
    if isinstance(document, str):
        text = decoded_document(document)
    elif isinstance(document, dict):
        text = dumps(document)
    else:
        raise InputError(f"{label}: the export holds no policy document")
    policy = load_policy(parse_json_text(text, label), label, text)
    return set().union(*(allowed_among(statement, names) for statement in policy.statements))


def _in_catalog(name: str, catalog: Catalog) -> bool:
    return catalog.canonical(name) is not None


def _unused_names(unused: Unused, catalog: Catalog) -> list[str]:
    """The finding's names, then the catalog actions of its wholly unused services."""
    return list(unused.actions.values()) + [name for service in sorted(unused.services)
                                            for name in catalog.actions_of(service)]


# --- recommend: principals and policy versions from the account export ----------------------------

def needs_versions(rules: KeepRules | None) -> bool:
    """A grace rule reads every version of the managed policies (their dates), not only the
    default one: the account graph is read with them (AccountGraph.read(versions=True))."""
    return bool(rules and rules.grace_days)


def tag_map(tags: object, where: str) -> dict[str, str]:
    """An export's Tags list ([{"Key": ..., "Value": ...}]) as {key: value}."""
    if not isinstance(tags, list | tuple) or not all(isinstance(t, dict) for t in tags):
        raise InputError(f"authorization details ({where}): Tags must be a list of objects")
    return {str(t.get("Key")): str(t.get("Value")) for t in tags}


def for_principal(rules: KeepRules | None, arn: str, tags: object, created: object,
                  finding: Mapping, versions: Mapping[str, list[dict]]) -> dict:
    """recommend's routing: the summary row's status KEPT, its reason and kept items when the
    principal is kept whole (never refined), or an error when the grace rule cannot tell (a
    date missing); else {"keep": ...}, the JSON for_worker reads ({} without rules). tags
    and created: the principal's Tags and CreateDate in the export; versions: the
    PolicyVersionList of each managed policy it holds."""
    if not rules:
        return {}
    try:
        if rules.grace_days and not isinstance(created, str):
            raise InputError(f"{arn} CreateDate is missing: the grace rule needs it")
        reason = rules.principal_reason(arn, tag_map(tags, arn) if rules.tags else None,
                                        created if isinstance(created, str) else None,
                                        finding.get("analyzedAt"))
    except InputError as error:
        return {"status": "FAILED", "error": {"code": "InvalidInput", "message": str(error)}}
    if reason is not None:
        return {"status": "KEPT", "reason": f"kept: {reason}",
                "kept": [{"principal": arn, "reason": reason}]}
    return {"keep": {"rules": rules.as_json(),
                     "versions": dict(versions) if rules.grace_days else {}}}


def for_worker(task_keep: Mapping | None, unused: Unused, catalog: Catalog) -> Unused:
    """The finding minus what the task's rules keep (see for_principal)."""
    if not task_keep:
        return unused
    rules = KeepRules.from_json(task_keep["rules"])
    return rules.subtract(unused, catalog, rules.recent_grants(unused, catalog,
                                                                task_keep["versions"]))


def statement_rules(rules: KeepRules | None) -> dict:
    """A refine task's share of the rules: the keep-sid patterns ({} when there are none, so
    tasks made without them stay the same)."""
    return {"keep": {"sids": list(rules.sids)}} if rules and rules.sids else {}


def with_statement_rules(unused: Unused, value: Mapping | None) -> Unused:
    """unused carrying the keep-sid rules of statement_rules (the statements they keep are
    left as they are and proven unchanged)."""
    return dataclasses.replace(unused, keep=KeepRules(sids=value["sids"])) if value else unused


# --- the proof of kept statements ----------------------------------------------------------------

class KeepingChecker:
    """The kernel's Checker for the finding minus what is kept, except that a statement a
    keep-sid rule keeps must be read back unchanged, and is proven (as any unchanged
    statement) by a second kernel Checker against nothing unused."""

    def __init__(self, rules: KeepRules, catalog: Catalog, checker: Checker):
        self.rules = rules
        self.checker = checker
        self.kept_checker = Checker(catalog, [], [], checker.timeout_ms, checker.record)

    def check_statement(self, index: int, original: dict, refined: dict | None) -> list[Violation]:
        pattern = self.rules.statement_rule(original)
        if pattern is None:
            return self.checker.check_statement(index, original, refined)
        if refined is None or not same_json(original, refined):
            sid = original.get("Sid")
            return [Violation("structure", index, sid, f"keep-sid {pattern} keeps this "
                              "statement: it must be left as it is")]
        return self.kept_checker.check_statement(index, original, refined)

    @property
    def timeout_ms(self) -> int:
        return self.checker.timeout_ms

    @property
    def queries(self) -> int:
        return self.checker.queries + self.kept_checker.queries

    @property
    def obligations(self) -> list[tuple[str, str]]:
        return self.checker.obligations + self.kept_checker.obligations


def checker(unused: Unused, catalog: Catalog, timeout_ms: int, record: bool = False):
    """The kernel's Checker for this finding, holding kept statements unchanged when the
    finding was read with keep rules (Unused.keep)."""
    plain = Checker(catalog, unused.actions, unused.services, timeout_ms, record)
    rules = unused.keep
    return KeepingChecker(rules, catalog, plain) if rules is not None and rules.sids else plain


def kept_statements(unused: Unused, statements: list[dict]) -> list[dict]:
    """The kept-statement items of one policy's statements."""
    rules = unused.keep
    if rules is None or not rules.sids:
        return []
    return [{"statement": index, "sid": statement.get("Sid"),
             "reason": f"keep-sid {rules.statement_rule(statement)}"}
            for index, statement in enumerate(statements) if rules.keeps_statement(statement)]


def describe(item: dict) -> str:
    """One line for a kept item."""
    if "action" in item:
        what = item["action"]
    elif "principal" in item:
        what = item["principal"]
    else:
        what = f"statement {item['statement']}" + (f" ({item['sid']})" if item.get("sid") else "")
        if item.get("policyId"):
            what = f"{item['policyId']} {what}"
    return f"{what}: {item['reason']}"


# --- reading the rules: flags and refiner.toml ---------------------------------------------------

def read_rules(config: str | None = None, sids: Iterable[str] = (), actions: Iterable[str] = (),
               principals: Iterable[str] = (), tags: Iterable[str] = (),
               grace_days: int | None = None) -> KeepRules:
    """The rules of refiner.toml's [keep] table (config, or refiner.toml in the working folder
    when it exists), with the flags' patterns added and --grace-days overriding."""
    found = _read_config(config)
    return KeepRules(sids=[*found.get("sids", []), *sids],
                     actions=[*found.get("actions", []), *actions],
                     principals=[*found.get("principals", []), *principals],
                     tags=[*found.get("tags", []), *tags],
                     grace_days=grace_days if grace_days is not None else found.get("grace_days"))


def _read_config(path: str | None) -> dict:
    if path is None:
        if not os.path.isfile(CONFIG_NAME):
            return {}
        path = CONFIG_NAME
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise InputError(f"cannot read the config {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"config {path} is not TOML: {error}") from None
    unknown = [key for key in data if key != "keep"]
    if unknown:
        raise InputError(f"config {path}: unknown key {unknown[0]!r} (refiner.toml holds a "
                         "[keep] table)")
    return _checked_table(data.get("keep", {}), f"config {path}")


def _checked_table(table: object, where: str) -> dict:
    """A [keep] table whose keys are known and whose values have their types."""
    if not isinstance(table, Mapping):
        raise InputError(f"{where}: keep must be a table")
    for key, value in table.items():
        if key not in CONFIG_KEYS:
            raise InputError(f"{where}: unknown key keep.{key} (known: {', '.join(CONFIG_KEYS)})")
        if key == "grace_days":
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{where}: keep.grace_days must be a whole number of days")
        elif not isinstance(value, (list, tuple)) or not all(isinstance(i, str) for i in value):
            raise InputError(f"{where}: keep.{key} must be a list of strings")
    return dict(table)


def _check_pattern(text: object, flag: str, alphabet: re.Pattern | None, described: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{flag}: empty pattern")
    if alphabet is not None and not alphabet.fullmatch(text):
        raise InputError(f"{flag} {text!r}: outside IAM's alphabet ({described})")
    if flag == "--keep-principal" and len(text) > MAX_ARN_PATTERN:
        raise InputError(f"{flag}: longer than {MAX_ARN_PATTERN} characters")


def _tag(text: object) -> tuple[str, str]:
    if not isinstance(text, str) or "=" not in text:
        raise InputError(f"--keep-tag {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    if not key:
        raise InputError(f"--keep-tag {text!r}: empty key")
    if len(key) > 128 or len(value) > 256 or not _TAG.fullmatch(key) or not _TAG.fullmatch(value):
        raise InputError(f"--keep-tag {text!r}: outside IAM's tag alphabet (letters, digits, "
                         "spaces and _.:/=+-@; keys up to 128, values up to 256 characters)")
    return key, value


def _matches(text: str, pattern: str) -> bool:
    # The alphabets checked above hold no "[": fnmatch's * and ? are IAM's.
    return fnmatch.fnmatchcase(text.lower(), pattern.lower())


def _moment(text: object, what: str) -> datetime:
    if not isinstance(text, str):
        raise InputError(f"{what} is missing: the grace rule needs it")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{what} is not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _before_analysis(age: timedelta) -> str:
    days = age.total_seconds() / 86_400
    return f"{days:.1f} days before the analysis" if days >= 0 else \
        f"{-days:.1f} days after the analysis"
