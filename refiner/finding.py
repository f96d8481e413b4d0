"""Read an unused-permissions finding (list form or Access Analyzer GetFindingV2) into one shape."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

from .catalog import Catalog, keys_starting_with
from .errors import CLI_TERMS, InputError, Terms
from .patterns import is_action_name
from .sniff import FINDING_SHAPES, read_json_as, value_kind, wrong_shape


@dataclass
class Unused:
    """What the finding says is unused: named actions and wholly unused services."""

    actions: dict[str, str] = field(default_factory=dict)  # lower full name -> display name
    services: set[str] = field(default_factory=set)  # lower-case service prefixes
    resource_arn: str | None = None
    finding_id: str | None = None
    analyzed_at: str | None = None  # when Access Analyzer looked (ISO 8601), if it says
    unknown: list[str] = field(default_factory=list)  # names the catalog lacks (still unused)
    # Set by keep.KeepRules.subtract: the rules this finding was read with (the statements
    # they keep stay as they are) and what they took out of it, each with its reason.
    keep: object = None
    kept: list[dict] = field(default_factory=list)
    _sorted: list[str] | None = field(default=None, repr=False)

    def names_with_prefix(self, prefix: str) -> list[str]:
        """Unused action names whose lower-cased form starts with prefix (lower case)."""
        if self._sorted is None or len(self._sorted) != len(self.actions):
            self._sorted = sorted(self.actions)
        return [self.actions[key] for key in keys_starting_with(self._sorted, prefix)]

    def is_unused(self, full_name: str) -> bool:
        lower = full_name.lower()
        return lower in self.actions or lower.split(":", 1)[0] in self.services


def unused_as_json(unused: Unused) -> dict:
    """A finding as read, to cross processes: the display names sorted (an action's key is
    its display name's lower case), the services sorted."""
    return {"actions": sorted(set(unused.actions.values())), "services": sorted(unused.services),
            "unknown": list(unused.unknown), "resourceArn": unused.resource_arn,
            "findingId": unused.finding_id, "analyzedAt": unused.analyzed_at}


def unused_from_json(value: dict) -> Unused:
    """An Unused from unused_as_json's form (or UnusedSet.as_json's: actions and services
    only). Names are interned: an account's findings name the same actions over and over."""
    unused = Unused(resource_arn=value.get("resourceArn"), finding_id=value.get("findingId"),
                    analyzed_at=value.get("analyzedAt"), unknown=list(value.get("unknown", ())))
    unused.actions = {name.lower(): sys.intern(name) for name in value["actions"]}
    unused.services = {sys.intern(service) for service in value["services"]}
    return unused


def read_findings(paths: list[str], catalog: Catalog, allow_inactive: bool = False,
                  terms: Terms = CLI_TERMS) -> Unused:
    """One finding from one or more files (list forms are united; GetFindingV2 pages of one
    finding are merged, and every page must be there)."""
    labelled = [(f"finding {path}", read_json_as(path, "finding", f"finding {path}",
                                                 "an unused-permissions finding",
                                                 FINDING_SHAPES)[1]) for path in paths]
    return merge_findings(labelled, catalog, allow_inactive, terms)


def parse_finding(raw: object, catalog: Catalog, allow_inactive: bool = False) -> Unused:
    """Accept `[{"serviceNamespace", "actions": [...]}]` or a GetFindingV2 response."""
    return merge_findings([("finding", raw)], catalog, allow_inactive)


def merge_findings(labelled: list[tuple[str, object]], catalog: Catalog,
                   allow_inactive: bool = False, terms: Terms = CLI_TERMS) -> Unused:
    """One finding from labelled values (list forms united, GetFindingV2 pages merged); terms:
    how messages name the caller's options."""
    entries: list[tuple[str, object]] = []
    responses: list[tuple[str, dict]] = []
    for label, raw in labelled:
        if isinstance(raw, list):
            entries += [(label, entry) for entry in raw]
        elif isinstance(raw, dict) and isinstance(raw.get("findingDetails"), list):
            _check_response(label, raw, allow_inactive, terms)
            responses.append((label, raw))
        else:
            raise InputError(wrong_shape(label, value_kind(raw), "an unused-permissions finding",
                                         FINDING_SHAPES))
    unused = Unused()
    if responses:
        _check_pages(responses, terms)
        first = responses[0][1]
        unused.resource_arn = first.get("resource") if isinstance(first.get("resource"), str) \
            else None
        unused.finding_id = first.get("id") if isinstance(first.get("id"), str) else None
        unused.analyzed_at = first.get("analyzedAt") if isinstance(first.get("analyzedAt"), str) \
            else None
        for label, raw in responses:
            for detail in raw["findingDetails"]:
                if not isinstance(detail, dict):
                    raise InputError(f"{label}: findingDetails entries must be objects")
                if "unusedPermissionDetails" in detail:
                    entries.append((label, detail["unusedPermissionDetails"]))
    unknown_actions: set[str] = set()  # lower-case names the catalog lacks
    for label, entry in entries:
        _add_entry(unused, entry, catalog, label, unknown_actions)
    unused.unknown = _unknown_names(unused, catalog, unknown_actions)
    return unused


def _check_response(label: str, raw: dict, allow_inactive: bool, terms: Terms) -> None:
    """Only an active UnusedPermission finding says which permissions are unused."""
    kind = raw.get("findingType")
    if kind is None:
        kinds = {key for detail in raw["findingDetails"] if isinstance(detail, dict)
                 for key in detail}
        if kinds and "unusedPermissionDetails" not in kinds:
            kind = "/".join(sorted(kinds))
    if kind is not None and kind != "UnusedPermission":
        raise InputError(f"{label} is a {kind} finding, not UnusedPermission: refiner refines "
                         "unused permissions only")
    status = raw.get("status", "ACTIVE")
    if status != "ACTIVE" and not allow_inactive:
        raise InputError(f"{label}: the finding's status is {status}, not ACTIVE (it may be "
                         f"stale; {terms.allow_inactive} uses it anyway)")


def _check_pages(responses: list[tuple[str, dict]], terms: Terms) -> None:
    """Responses must be the pages of one finding, all of them: every page but the last
    carries a distinct nextToken."""
    ids = sorted({str(raw.get("id")) for _, raw in responses})
    if len(ids) > 1:
        raise InputError(f"{terms.pages} hold different findings ({', '.join(ids)}): "
                         "give the pages of one finding")
    tokens = [raw.get("nextToken") for _, raw in responses]
    with_token = [token for token in tokens if token is not None]
    last_pages = len(tokens) - len(with_token)
    if last_pages == 1 and len(set(map(str, with_token))) == len(with_token):
        return
    if last_pages == 0:
        label = next(label for label, raw in responses if raw.get("nextToken") is not None)
        raise InputError(f"{label} is one page of finding {ids[0]} (it has a nextToken): give "
                         f"every page, {terms.another_page}")
    raise InputError(f"{terms.pages} repeat a page of finding {ids[0]}")


def _unknown_names(unused: Unused, catalog: Catalog, unknown_actions: set[str]) -> list[str]:
    """Services and actions of the finding that the catalog does not know (it may be older)."""
    services = [f"{service}:*" for service in sorted(unused.services)
                if service not in catalog.services]
    actions = [unused.actions[key] for key in sorted(unknown_actions)]
    return services + actions


def _add_entry(unused: Unused, entry: object, catalog: Catalog, label: str,
               unknown_actions: set[str]) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("serviceNamespace"), str):
        raise InputError(f"{label}: every entry needs a string serviceNamespace")
    service = entry["serviceNamespace"].strip().lower()
    if not is_action_name(f"{service}:x"):
        raise InputError(f"{label}: invalid serviceNamespace {entry['serviceNamespace']!r}")
    # Only a missing list or an empty one means the whole service is unused: any other value
    # ({}, 0, false, "") is a malformed finding, never a reason to remove a service.
    actions = entry.get("actions", [])
    if not isinstance(actions, list):
        raise InputError(f"{label}: actions of {service} must be a list (missing or [] means "
                         "the whole service is unused)")
    if not actions:
        unused.services.add(service)
        return
    for item in actions:
        name = item.get("action") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{label}: an action of {service} is not a non-empty string")
        name = name.strip()
        if ":" in name:
            prefix, name = name.split(":", 1)
            if prefix.lower() != service:
                raise InputError(f"{label}: action {prefix}:{name} listed under service {service}")
        full = f"{service}:{name}"
        canonical = catalog.canonical(full)
        if canonical is None:  # (a catalog name is well formed: the catalog is held to it)
            if not is_action_name(full):
                raise InputError(f"{label}: invalid action name {name!r} under service "
                                 f"{service}")
            unknown_actions.add(full.lower())
        unused.actions[full.lower()] = canonical or full


def check_principal(unused: Unused, principal: tuple[str, str] | None, label: str) -> None:
    """The finding must be about the principal whose policy this is, when both say so."""
    if unused.resource_arn is None or principal is None:
        return
    kind, name = principal
    match = re.fullmatch(r"arn:[^:]+:iam::[^:]*:(role|user|group)/(?:.*/)?([^/]+)",
                         unused.resource_arn)
    if match and (match[1], match[2].lower()) == (kind, name.lower()):
        return
    raise InputError(f"the finding is for {unused.resource_arn}, but {label} is a policy of "
                     f"{kind} {name}")
