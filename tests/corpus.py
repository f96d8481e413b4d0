"""The AWS managed-policy corpus (refiner/data) and seeded unused-permissions findings made from it."""

from __future__ import annotations

import random
from functools import lru_cache

from oracle import allowed_by

from refiner.managed import snapshot


@lru_cache(maxsize=1)
def policies() -> dict[str, dict]:
    """name -> policy document, in corpus order: the AWS managed policies the package ships
    (refiner/data, the public corpus of 1,013 policies), so the tests need nothing beside the clone."""
    return {name: entry["document"] for name, entry in snapshot().items()}


def statements(document: dict) -> list[dict]:
    statement = document["Statement"]
    return statement if isinstance(statement, list) else [statement]


def allowed_actions(document: dict, catalog_actions: list[str]) -> list[str]:
    """Catalog actions some Allow statement of the document admits (oracle matching)."""
    allowed: set[str] = set()
    for statement in statements(document):
        allowed |= allowed_by(statement, catalog_actions)
    return [a for a in catalog_actions if a in allowed]


def generate_finding(allowed: list[str], rate: float, seed: int, whole_services: int = 0) -> list:
    """A list-form finding: `rate` of the allowed actions unused, plus `whole_services`
    services (among those allowed) reported wholly unused."""
    chooser = random.Random(seed)
    by_service: dict[str, list[str]] = {}
    for action in allowed:
        service, name = action.split(":", 1)
        by_service.setdefault(service, []).append(name)
    dead = set(chooser.sample(sorted(by_service), min(whole_services, len(by_service))))
    finding = [{"serviceNamespace": service, "actions": []} for service in sorted(dead)]
    for service in sorted(set(by_service) - dead):
        names = sorted(by_service[service])
        picked = [n for n in names if chooser.random() < rate]
        if picked:
            finding.append({"serviceNamespace": service, "actions": picked})
    return finding
