"""Read an unused-permissions finding (list form or Access Analyzer GetFindingV2) into one shape."""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import Catalog, keys_starting_with
from .errors import InputError
from .patterns import parse


@dataclass
class Unused:
    """What the finding says is unused: named actions and wholly unused services."""

    actions: dict[str, str] = field(default_factory=dict)  # lower full name -> display name
    services: set[str] = field(default_factory=set)  # lower-case service prefixes
    resource_arn: str | None = None
    _sorted: list[str] | None = field(default=None, repr=False)

    def names_with_prefix(self, prefix: str) -> list[str]:
        """Unused action names whose lower-cased form starts with prefix (lower case)."""
        if self._sorted is None or len(self._sorted) != len(self.actions):
            self._sorted = sorted(self.actions)
        return [self.actions[key] for key in keys_starting_with(self._sorted, prefix)]

    def is_unused(self, full_name: str) -> bool:
        lower = full_name.lower()
        return lower in self.actions or lower.split(":", 1)[0] in self.services


def parse_finding(raw: object, catalog: Catalog) -> Unused:
    """Accept `[{"serviceNamespace", "actions": [...]}]` or a GetFindingV2 response."""
    if isinstance(raw, list):
        entries, arn = raw, None
    elif isinstance(raw, dict) and isinstance(raw.get("findingDetails"), list):
        entries = []
        for detail in raw["findingDetails"]:
            if not isinstance(detail, dict):
                raise InputError("finding: findingDetails entries must be objects")
            if "unusedPermissionDetails" in detail:
                entries.append(detail["unusedPermissionDetails"])
        arn = raw.get("resource") if isinstance(raw.get("resource"), str) else None
    else:
        raise InputError(
            "finding: expected a list of {serviceNamespace, actions} or a GetFindingV2 response "
            "with findingDetails[].unusedPermissionDetails"
        )
    unused = Unused(resource_arn=arn)
    for entry in entries:
        _add_entry(unused, entry, catalog)
    return unused


def _add_entry(unused: Unused, entry: object, catalog: Catalog) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("serviceNamespace"), str):
        raise InputError("finding: every entry needs a string serviceNamespace")
    service = entry["serviceNamespace"].strip().lower()
    if not _is_literal(f"{service}:x"):
        raise InputError(f"finding: invalid serviceNamespace {entry['serviceNamespace']!r}")
    actions = entry.get("actions") or []
    if not isinstance(actions, list):
        raise InputError(f"finding: actions of {service} must be a list")
    if not actions:
        unused.services.add(service)
        return
    for item in actions:
        name = item.get("action") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"finding: an action of {service} is not a non-empty string")
        name = name.strip()
        if ":" in name:
            prefix, name = name.split(":", 1)
            if prefix.lower() != service:
                raise InputError(f"finding: action {prefix}:{name} listed under service {service}")
        if not _is_literal(f"{service}:{name}"):
            raise InputError(f"finding: invalid action name {name!r} under service {service}")
        full = f"{service}:{name}"
        unused.actions[full.lower()] = catalog.canonical(full) or full


def _is_literal(full_name: str) -> bool:
    """A well-formed action name: a pattern without wildcards."""
    try:
        return not parse(full_name).has_wildcard
    except InputError:
        return False
