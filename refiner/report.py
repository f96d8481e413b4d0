"""The account report a security lead reads: totals first, then one row per principal with its diffs."""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path

from .keep import describe
from .output import write_file

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1b1f24; }
h1 { font-size: 1.4em; } table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } .SUCCEEDED { color: #1a7f37; } .FAILED { color: #cf222e; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: .6em; overflow-x: auto; }
.add { color: #1a7f37; } .del { color: #cf222e; }
"""


def write_report(path: Path, summary: dict, rows: Iterable[tuple[dict, list[dict]]]) -> None:
    """A self-contained HTML page (no scripts: every principal's diffs open with <details>)."""
    totals = summary["totals"]
    cells = [
        ("findings", totals["findings"]),
        ("succeeded", totals.get("SUCCEEDED", 0)),
        ("failed", totals.get("FAILED", 0)),
        ("delete role", totals.get("DELETE_ROLE", 0)),
        ("unknown principal", totals.get("UNKNOWN_PRINCIPAL", 0)),
        ("skipped", totals.get("SKIPPED", 0)),
        ("kept by keep rules", totals.get("KEPT", 0)),
        ("policies changed", totals["policiesChanged"]),
        ("patterns before", totals["patterns"][0]),
        ("patterns after", totals["patterns"][1]),
        ("characters before", totals["characters"][0]),
        ("characters after", totals["characters"][1]),
        ("over the size limit", totals["overLimit"]),
    ]
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>refiner: account recommendations</title>", f"<style>{STYLE}</style>",
             "</head><body><h1>refiner: account recommendations</h1>",
             f"<p>refiner {_e(summary['refiner'])}, catalog {_e(summary['catalog'])}. Every "
             "recommended policy was proven sound and complete before it was written.</p>",
             "<table id='totals'><tbody>"]
    parts += [f"<tr><th>{_e(name)}</th><td class='num' data-total='{_e(name)}'>{value}</td></tr>"
              for name, value in cells]
    parts.append("</tbody></table><table id='principals'><thead><tr><th>principal</th>"
                 "<th>status</th><th>policies changed</th><th>patterns</th><th>characters</th>"
                 "<th>kept</th></tr></thead><tbody>")
    for row, diffs in rows:
        parts.append(_row(row, diffs))
    parts.append("</tbody></table></body></html>\n")
    write_file(str(path), "".join(parts))


def _row(row: dict, diffs: list[dict]) -> str:
    policies = [p for p in row.get("policies", []) if "patterns" in p]
    changed = sum(bool(p.get("changed")) for p in policies)
    patterns = f"{sum(p['patterns'][0] for p in policies)} → {sum(p['patterns'][1] for p in policies)}"
    characters = (f"{sum(p['characters'][0] for p in policies)} → "
                  f"{sum(p['characters'][1] for p in policies)}")
    who = row.get("principal") or row.get("resourceArn") or row["findingId"]
    detail = row.get("error", {}).get("message") or row.get("reason") or ""
    body = "".join(f"<p>{_e(d['policyId'])}</p><pre>{_diff(d['diff'])}</pre>" for d in diffs)
    groups = "".join(f"<p>group policy {_e(p['policyId'])} grants unused: "
                     f"{_e(', '.join(p['grantsUnused']))}</p>"
                     for p in row.get("policies", []) if p.get("grantsUnused"))
    summary = f"<details><summary>{_e(who)}</summary>{body}{groups}<p>{_e(detail)}</p></details>"
    return (f"<tr><td>{summary}</td><td class='{_e(row['status'])}'>{_e(row['status'])}</td>"
            f"<td class='num'>{changed}</td><td class='num'>{patterns}</td>"
            f"<td class='num'>{characters}</td><td class='kept'>{_kept(row)}</td></tr>")


def _kept(row: dict) -> str:
    """What keep rules kept for this principal, each with its reason."""
    return "<br>".join(_e(describe(item)) for item in row.get("kept", []))


def _diff(text: str) -> str:
    lines = []
    for line in text.splitlines():
        kind = "add" if line.startswith("+") and not line.startswith("+++") else \
            "del" if line.startswith("-") and not line.startswith("---") else ""
        lines.append(f"<span class='{kind}'>{_e(line)}</span>" if kind else _e(line))
    return "\n".join(lines)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
