"""Hypothesis strategies shared by the property tests: catalogs, patterns, policies, findings.

Action names are built from a small vocabulary of CamelCase words chosen to collide the way
real IAM names do (Fleet/Fleets, Job/Jobs/JobSummaries, acronyms), so string-prefix and
word-prefix readings of a wildcard differ often."""

from __future__ import annotations

from hypothesis import strategies as st

from refiner.catalog import Catalog

WORDS = ["Get", "List", "Describe", "Put", "Delete", "Object", "Objects", "Bucket", "Fleet",
         "Fleets", "Job", "Jobs", "Summaries", "Policy", "Status", "Acl", "CORS", "Tag", "Tagging",
         "Version", "V2", "Access", "Account", "By", "Id"]
SERVICES = ["svc", "store", "compute", "ids"]


@st.composite
def catalogs(draw) -> Catalog:
    services = draw(st.lists(st.sampled_from(SERVICES), min_size=1, max_size=3, unique=True))
    names = {}
    for service in services:
        actions = draw(st.lists(
            st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map("".join),
            min_size=1, max_size=25, unique_by=str.lower,
        ))
        names[service] = actions
    return Catalog(names, "generated")


def _wildcard_forms(action: str, draw) -> str:
    """A pattern that matches `action` (and usually more): a cut plus `*`, a mid `*`, or `?`."""
    service, name = action.split(":")
    kind = draw(st.sampled_from(["prefix", "prefix", "word", "mid", "one", "service", "exact"]))
    if kind == "exact":
        return action
    if kind == "service":
        return f"{service}:*"
    if kind == "one":
        at = draw(st.integers(0, len(name) - 1))
        return f"{service}:{name[:at]}?{name[at + 1:]}"
    if kind == "mid":
        start = draw(st.integers(0, len(name) - 1))
        end = draw(st.integers(start + 1, len(name)))
        return f"{service}:*{name[start:end]}*"
    cuts = [i for i, c in enumerate(name) if c.isupper() and i > 0] + [len(name)]
    cut = draw(st.sampled_from(cuts)) if kind == "word" else draw(st.integers(0, len(name)))
    return f"{service}:{name[:cut]}*"


@st.composite
def patterns(draw, catalog: Catalog) -> str:
    action = draw(st.sampled_from(sorted(catalog.all_actions())))
    text = _wildcard_forms(action, draw)
    return text.lower() if draw(st.integers(0, 9)) == 0 else text


@st.composite
def statements(draw, catalog: Catalog) -> dict:
    effect = draw(st.sampled_from(["Allow"] * 5 + ["Deny"]))
    key = draw(st.sampled_from(["Action"] * 5 + ["NotAction"]))
    entries = draw(st.lists(patterns(catalog), min_size=1, max_size=6))
    statement = {"Effect": effect, key: entries[0] if len(entries) == 1 else entries,
                 "Resource": "*"}
    if draw(st.booleans()):
        statement = {"Sid": f"S{draw(st.integers(0, 99))}", **statement}
    if draw(st.integers(0, 4)) == 0:
        statement["Condition"] = {"Bool": {"aws:SecureTransport": "true"}}
    return statement


@st.composite
def policies(draw, catalog: Catalog) -> dict:
    body = draw(st.lists(statements(catalog), min_size=1, max_size=4))
    return {"Version": "2012-10-17", "Statement": body}


@st.composite
def findings(draw, catalog: Catalog) -> list:
    """List-form findings: some actions unused (a few not in the catalog), maybe a whole service."""
    entries = []
    for service in sorted(catalog.services):
        if draw(st.integers(0, 7)) == 0:
            entries.append({"serviceNamespace": service, "actions": []})
            continue
        names = catalog.services[service]
        picked = draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True))
        if draw(st.integers(0, 5)) == 0:
            picked.append(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map("".join)))
        if picked:
            entries.append({"serviceNamespace": service, "actions": picked})
    return entries


@st.composite
def cases(draw):
    """(catalog, policy, finding) triples."""
    catalog = draw(catalogs())
    return catalog, draw(policies(catalog)), draw(findings(catalog))
