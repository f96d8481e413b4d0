"""The per-principal check of recommend's output, independent of the refiner: read the export
and the findings as they are, put each recommended document in place of its original for the
principals it is for, and judge with the regex oracle (tests/oracle.py) over the catalog:
for every principal, the union of its documents (identity policies, limited by its boundary)
keeps every action it uses and admits nothing new; and every document keeps no action that
every principal it reaches leaves unused."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from oracle import allowed_by

EVERYTHING = "everything"


@dataclass
class Holder:
    arn: str
    documents: list[tuple[str, str]] = field(default_factory=list)  # (document id, via)
    boundary: str | None = None


def read_export(export: dict) -> tuple[dict[str, dict], dict[str, Holder]]:
    """Document id -> document, and principal ARN -> its documents, straight from the export.
    Ids: the managed ARN, or "<kind>:<owner ARN>:<name>" for inline policies."""
    documents: dict[str, dict] = {}
    for policy in export.get("Policies", []):
        version = next(v for v in policy["PolicyVersionList"] if v["IsDefaultVersion"])
        documents[policy["Arn"]] = _document(version["Document"])
    groups = {}
    for group in export.get("GroupDetailList", []):
        ids = []
        for inline in group.get("GroupPolicyList", []):
            ident = f"group-inline:{group['Arn']}:{inline['PolicyName']}"
            documents[ident] = _document(inline["PolicyDocument"])
            ids.append((ident, f"group:{group['Arn']}"))
        ids += [(a["PolicyArn"], f"group:{group['Arn']}") for a in group.get("AttachedManagedPolicies", [])]
        groups[group["GroupName"]] = ids
    holders: dict[str, Holder] = {}
    for kind, key in (("role", "RoleDetailList"), ("user", "UserDetailList")):
        for detail in export.get(key, []):
            holder = holders.setdefault(detail["Arn"], Holder(detail["Arn"]))
            for inline in detail.get(f"{kind.title()}PolicyList", []):
                ident = f"{kind}-inline:{detail['Arn']}:{inline['PolicyName']}"
                documents[ident] = _document(inline["PolicyDocument"])
                holder.documents.append((ident, "inline"))
            holder.documents += [(a["PolicyArn"], "attached")
                                 for a in detail.get("AttachedManagedPolicies", [])]
            for group in detail.get("GroupList", []):
                holder.documents += groups[group]
            boundary = detail.get("PermissionsBoundary")
            if boundary:
                holder.boundary = boundary["PermissionsBoundaryArn"]
    return documents, holders


def read_unused(findings: list[dict]) -> dict[str, object]:
    """Principal ARN -> (unused actions, unused services), or EVERYTHING (UnusedIAMRole).
    Principals without an active finding are absent: they use everything."""
    unused: dict[str, object] = {}
    for finding in findings:
        if finding.get("status", "ACTIVE") != "ACTIVE":
            continue
        if finding["findingType"] == "UnusedIAMRole":
            unused[finding["resource"]] = EVERYTHING
            continue
        actions, services = unused.get(finding["resource"], (set(), set()))
        for detail in finding["findingDetails"]:
            entry = detail["unusedPermissionDetails"]
            service = entry["serviceNamespace"].lower()
            if not entry.get("actions"):
                services.add(service)
            actions |= {f"{service}:{a['action'] if isinstance(a, dict) else a}".lower()
                        for a in entry.get("actions", [])}
        unused[finding["resource"]] = (actions, services)
    return unused


def is_unused_by(unused, action: str) -> bool:
    if unused is None:
        return False
    if unused == EVERYTHING:
        return True
    actions, services = unused
    return action.lower() in actions or action.lower().split(":", 1)[0] in services


def recommended(outdir: Path, holders: dict[str, Holder], documents: dict[str, dict]) \
        -> dict[tuple[str, str], dict | None]:
    """(principal ARN, document id) -> the document that principal would hold after apply (None:
    detached); only entries that change."""
    state_of = {}
    for path in (outdir / "state").glob("*.json"):
        state = json.loads(path.read_text())
        state_of[state["principal"]["arn"]] = path.name
    shared = {p.stem: json.loads(p.read_text()) for p in (outdir / "shared").glob("*.json")}
    changes: dict[tuple[str, str], dict | None] = {}
    for arn, name in state_of.items():
        recommendation = json.loads((outdir / "recommendations" / name).read_text())
        for step in recommendation["recommendedSteps"]:
            detail = step["unusedPermissionsRecommendedStep"]
            ref = detail["policyRef"]
            ident = ref["arn"] if ref["kind"] == "managed" else \
                f"{ref['kind']}:{ref['owner']}:{ref['name']}"
            if "sharedPolicy" in detail:
                record = shared[detail["sharedPolicy"]]
                new = json.loads(record["refined"]) if record["recommendedAction"] == \
                    "CREATE_POLICY" else None
                for reach in record["reach"]:  # a consolidated document changes for everyone
                    changes[(reach["arn"], ident)] = new
            else:
                changes[(arn, ident)] = json.loads(detail["recommendedPolicy"]) \
                    if detail["recommendedAction"] == "CREATE_POLICY" else None
    return changes


def check_principals(export: dict, findings: list[dict], outdir: Path, actions: list[str],
                     copy_mode: bool = False) -> dict:
    """The per-principal check; returns a report {principal: {...}} and raises AssertionError
    naming the first principal and action that break it."""
    documents, holders = read_export(export)
    unused = read_unused(findings)
    changes = recommended(outdir, holders, documents)
    allowed = _Allowed(actions)
    report = {}
    for arn, holder in sorted(holders.items()):
        before_identity, after_identity = set(), set()
        before_boundary = after_boundary = None
        for ident, _ in holder.documents:
            old = documents[ident]
            new = changes.get((arn, ident), old)
            before_identity |= allowed(old)
            after_identity |= allowed(new)
        if holder.boundary:
            old = documents[holder.boundary]
            before_boundary = allowed(old)
            after_boundary = allowed(changes.get((arn, holder.boundary), old))
        before = before_identity & before_boundary if before_boundary is not None \
            else before_identity
        after = after_identity & after_boundary if after_boundary is not None else after_identity
        mine = unused.get(arn)
        used_before = {a for a in before if not is_unused_by(mine, a)}
        lost = used_before - after
        assert not lost, f"{arn} loses actions it uses: {sorted(lost)[:5]}"
        gained = after - before
        assert not gained, f"{arn} gains {sorted(gained)[:5]}"
        report[arn] = {"documents": len(holder.documents) + bool(holder.boundary),
                       "allowedBefore": len(before), "allowedAfter": len(after),
                       "usedKept": len(used_before), "removed": len(before - after)}
    # Every version of a document keeps nothing that all the principals holding that version
    # leave unused, when each of them has a finding (one without uses everything). The
    # original a --shared copy run leaves with some holders is not refined: skipped.
    held: dict[tuple[str, str], list[str]] = {}
    for arn, holder in holders.items():
        for ident, _ in holder.documents + ([(holder.boundary, "boundary")] if holder.boundary
                                            else []):
            version = changes.get((arn, ident), documents[ident])
            held.setdefault((ident, json.dumps(version, sort_keys=True)), []).append(arn)
    # A group without members still holds its policies (it may gain members): a holder
    # without a finding.
    members = {g for holder in holders.values() for ident, via in holder.documents
               if via.startswith("group:") for g in [via]}
    for group in export.get("GroupDetailList", []):
        if f"group:{group['Arn']}" not in members:
            for attached in group.get("AttachedManagedPolicies", []):
                for key, arns in held.items():
                    if key[0] == attached["PolicyArn"]:
                        arns.append(f"group:{group['Arn']}")
    failed = _failed_principals(outdir)
    for (ident, version), arns in held.items():
        original = version == json.dumps(documents[ident], sort_keys=True)
        if (original and copy_mode) or set(arns) & failed or any(a not in unused for a in arns) \
                or all(unused[a] == EVERYTHING for a in arns):
            continue
        leftover = {a for a in allowed(json.loads(version))
                    if all(is_unused_by(unused[arn], a) for arn in arns)}
        assert not leftover, f"{ident} keeps {sorted(leftover)[:5]}, unused by all of {arns}"
    return report


def _failed_principals(outdir: Path) -> set[str]:
    summary = json.loads((outdir / "summary.json").read_text())
    return {row["resourceArn"] for row in summary["findings"]
            if row["status"] in ("FAILED", "REFUSED")}


class _Allowed:
    """Catalog actions a document's Allow statements admit, by the oracle (memoized)."""

    def __init__(self, actions: list[str]):
        self.actions = actions
        self._memo: dict[str, frozenset] = {}

    def __call__(self, document: dict | None) -> frozenset:
        if document is None:
            return frozenset()
        key = json.dumps(document, sort_keys=True)
        if key not in self._memo:
            statements = document["Statement"]
            statements = statements if isinstance(statements, list) else [statements]
            self._memo[key] = frozenset().union(*(allowed_by(s, self.actions)
                                                 for s in statements))
        return self._memo[key]


def _document(value) -> dict:
    if isinstance(value, str):
        import urllib.parse

        return json.loads(urllib.parse.unquote(value))
    return value
