"""Which policies of a template a finding may refine: those that reach its principal, each
against the intersection of the findings of every principal it reaches.

reach(policy) is every role and user that holds it (inline, attached, through a group) in the
template (iac.holders). A finding that names its principal (GetFindingV2: `resource`) refines
only the policies that reach that principal (matched by name, logical id or Terraform
address); a policy that also reaches principals without a finding is left as it is, with a
warning (no finding: the principal may use everything), and one that reaches several
principals with findings is refined against what all of them leave unused. A finding in the
list form names no principal: the policies --policy names, or every policy, are refined with
it, with a warning when they reach several principals. --policy names a policy, or a role or
user (all the policies it holds); several accumulate."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..catalog import Catalog
from ..errors import InputError
from ..finding import Unused, merge_findings
from ..sniff import FINDING_SHAPES, read_json_as
from .holders import Holdings, Principal, read_holdings

_PRINCIPAL_ARN = re.compile(r"arn:[^:]+:iam::[^:]*:(role|user)/(?:.*/)?([^/]+)")


@dataclass
class Selection:
    """What to refine: policy id -> the finding to refine it against; and the warnings."""

    findings: dict[str, Unused] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Finding:
    unused: Unused
    principal: Principal | None  # None: a list-form finding, naming no principal
    label: str


def read_labelled(paths: list[str]) -> list[tuple[str, object]]:
    return [(f"finding {path}", read_json_as(path, "finding", f"finding {path}",
                                             "an unused-permissions finding", FINDING_SHAPES)[1])
            for path in paths]


def findings_by_principal(labelled: list[tuple[str, object]], holdings: Holdings,
                          catalog: Catalog, allow_inactive: bool = False) -> list[Finding]:
    """The findings of --unused files: GetFindingV2 pages grouped by finding id and matched
    to the template's principal they name; list-form files united into one."""
    pages: dict[str, list[tuple[str, object]]] = {}
    listed: list[tuple[str, object]] = []
    for label, raw in labelled:
        if isinstance(raw, dict) and isinstance(raw.get("findingDetails"), list):
            pages.setdefault(str(raw.get("id", raw.get("resource"))), []).append((label, raw))
        else:
            listed.append((label, raw))
    if listed and pages:
        raise InputError("a finding in the list form names no principal: give either findings "
                         "that name their principal (GetFindingV2) or one list-form finding")
    if listed:
        return [Finding(merge_findings(listed, catalog, allow_inactive), None,
                        listed[0][0])]
    found = []
    for group in pages.values():
        unused = merge_findings(group, catalog, allow_inactive)
        principal = principal_of(unused, holdings) if unused.resource_arn else None
        if unused.resource_arn and principal is None:
            known = ", ".join(sorted(p.label for p in holdings.principals.values()
                                     if p.defined and p.kind != "group")) or "none"
            raise InputError(f"{group[0][0]}: the finding is for {unused.resource_arn}, and no "
                             f"role or user of the template is (it has: {known})")
        found.append(Finding(unused, principal, group[0][0]))
    keys = [f.principal.key for f in found if f.principal is not None]
    if len(keys) != len(set(keys)):
        raise InputError("two findings name the same principal: give one finding per principal")
    return found


def principal_of(unused: Unused, holdings: Holdings) -> Principal | None:
    match = _PRINCIPAL_ARN.fullmatch(unused.resource_arn or "")
    if match is None:
        return None
    kind, name = match[1], match[2]
    return next((p for p in holdings.principals.values() if p.kind == kind and p.defined and
                 any(n.lower() == name.lower() for n in p.names)), None)


def reach(holdings: Holdings, policy_id: str) -> list[Principal]:
    """The roles and users of the template a policy reaches (directly or through a group)."""
    return [p for p in holdings.principals.values() if p.kind != "group" and any(
        h.policy_id == policy_id for h in holdings.effective(p))]


def intersection(findings: list[Unused]) -> Unused:
    """What every one of the findings leaves unused."""
    first, *rest = findings
    services = set(first.services)
    for other in rest:
        services &= other.services
    names = {key: display for f in findings for key, display in f.actions.items()}
    return Unused({key: display for key, display in names.items()
                   if all(f.is_unused(key) for f in findings)
                   and key.split(":", 1)[0] not in services},
                  services, None, None, None,
                  sorted({name for f in findings for name in f.unknown}))


def select_policies(template, paths: list[str], policy_ids: list[str] | None,
                    catalog: Catalog, allow_inactive: bool = False) -> Selection:
    """The Selection for `refine TEMPLATE --unused PATH... [--policy ID...]`."""
    findings = findings_by_principal(read_labelled(paths), read_holdings(template), catalog,
                                     allow_inactive)
    return select(template, findings, policy_ids)


def select(template, findings: list[Finding], policy_ids: list[str] | None) -> Selection:
    """Which policies of the template to refine, each with its finding."""
    holdings = read_holdings(template)
    identity = [p.id for p in template.policies
                if (getattr(p, "document_type", None) or "identity") == "identity"]
    chosen = _chosen(template, holdings, policy_ids) if policy_ids else None
    result = Selection()
    anonymous = next((f for f in findings if f.principal is None), None)
    if anonymous is not None:
        ids = chosen if chosen is not None else identity
        holders = {p.label for policy_id in ids for p in reach(holdings, policy_id)}
        if len(holders) > 1:
            result.warnings.append(
                f"the finding names no principal, and the policies it refines reach "
                f"{len(holders)} principals ({', '.join(sorted(holders))}): each loses what "
                "the finding calls unused (give each principal's own finding to refine "
                "only what all of them leave unused)")
        result.findings = {policy_id: anonymous.unused for policy_id in ids
                           if policy_id in identity}
        return result
    by_key = {f.principal.key: f.unused for f in findings}
    candidates = chosen if chosen is not None else identity
    for policy_id in candidates:
        if policy_id not in identity:
            continue
        holders = reach(holdings, policy_id)
        reached = [p for p in holders if p.key in by_key]
        if not reached:
            if chosen is not None:
                result.warnings.append(f"{policy_id}: it reaches no principal a finding names: "
                                       "left as it is")
            continue
        without = [p.label for p in holders if p.key not in by_key]
        if without:
            result.warnings.append(
                f"{policy_id}: shared with {', '.join(without)}, whose finding is not given "
                "(no finding: it may use everything): left as it is")
            continue
        result.findings[policy_id] = intersection([by_key[p.key] for p in reached])
    return result


def _chosen(template, holdings: Holdings, policy_ids: list[str]) -> list[str]:
    """--policy values: policy ids, or roles/users (all the policies each holds)."""
    known = {p.id for p in template.policies}
    chosen: list[str] = []
    for wanted in policy_ids:
        if wanted in known:
            chosen.append(wanted)
            continue
        principal = next((p for p in holdings.principals.values() if p.defined and
                          p.kind != "group" and (wanted == p.label or wanted in p.names)), None)
        if principal is None:
            raise InputError(f"{template.path} has no policy, role or user {wanted} (its "
                             f"policies: {', '.join(p.id for p in template.policies) or 'none'})")
        chosen += [h.policy_id for h in holdings.effective(principal)
                   if h.policy_id is not None and h.policy_id in known]
    return list(dict.fromkeys(chosen))
