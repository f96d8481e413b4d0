"""The account report a security lead reads: totals first, then one row per principal with its diffs."""

from __future__ import annotations

import html
import itertools
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .keep import describe
from .output import write_chunks

# Every row is a grid of fixed columns (the principal and the reason share what is left), and
# an opened row's diffs span the whole width below it, scrolling sideways inside their own box:
# opening a row never pushes a column off the screen.
COLUMNS = "minmax(0, 3fr) 9em minmax(0, 2fr) 6em 8em 10em minmax(0, 2fr)"
STYLE = f"""
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1b1f24; }}
h1 {{ font-size: 1.4em; }}
#totals {{ border-collapse: collapse; margin: 1em 0; }}
#totals th, #totals td {{ border: 1px solid #d0d7de; padding: .3em .6em; text-align: left; }}
#totals th {{ background: #f6f8fa; }}
#principals {{ border: 1px solid #d0d7de; }}
.cells {{ display: grid; grid-template-columns: {COLUMNS}; }}
.cells > span {{ padding: .3em .6em; border-left: 1px solid #d0d7de; min-width: 0;
  overflow-wrap: anywhere; }}
.cells > span:first-child {{ border-left: none; }}
#principals .head {{ background: #f6f8fa; font-weight: 600; }}
#principals details {{ border-top: 1px solid #d0d7de; }}
#principals summary {{ list-style: none; cursor: pointer; }}
#principals summary::-webkit-details-marker {{ display: none; }}
#principals summary > span:first-child::before {{ content: "▸ "; }}
#principals details[open] > summary > span:first-child::before {{ content: "▾ "; }}
.open {{ padding: .3em .6em 1em; min-width: 0; }}
.SUCCEEDED {{ color: #1a7f37; }} .FAILED {{ color: #cf222e; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
pre {{ background: #f6f8fa; padding: .6em; overflow-x: auto; max-width: 100%;
  box-sizing: border-box; margin: .3em 0; }}
.add {{ color: #1a7f37; }} .del {{ color: #cf222e; }}
"""
HEADINGS = ("principal", "status", "reason", "policies changed", "patterns", "characters",
            "kept")


def write_report(path: Path, summary: dict, rows: Iterable[tuple[dict, str]]) -> None:
    """A self-contained HTML page (no scripts: every principal's diffs open with <details>)
    of each row with its row_html. A policy attached to several principals is counted once
    in the totals."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="", dir=path.parent) as body:
        counted = _DistinctPolicies()
        for row, html_row in rows:  # the rows go to disk as they come: the totals head the page
            counted.add(row)
            body.write(html_row)
        body.seek(0)
        write_chunks(str(path), itertools.chain(_head(summary, counted),
                                                iter(lambda: body.read(1 << 16), ""),
                                                _tail(summary)))


def _head(summary: dict, counted: _DistinctPolicies) -> list[str]:
    totals = summary["totals"]
    cells = [
        ("findings", totals["findings"]),
        ("succeeded", totals.get("SUCCEEDED", 0)),
        ("failed", totals.get("FAILED", 0)),
        ("delete role", totals.get("DELETE_ROLE", 0)),
        ("unknown principal", totals.get("UNKNOWN_PRINCIPAL", 0)),
        ("skipped", totals.get("SKIPPED", 0)),
        ("kept by keep rules", totals.get("KEPT", 0)),
        ("policies changed", counted.changed),
        ("patterns before", counted.patterns[0]),
        ("patterns after", counted.patterns[1]),
        ("characters before", counted.characters[0]),
        ("characters after", counted.characters[1]),
        ("over the size limit", totals["overLimit"]),
    ]
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width'>",
             "<title>refiner: account recommendations</title>", f"<style>{STYLE}</style>",
             "</head><body><h1>refiner: account recommendations</h1>",
             f"<p>refiner {_e(summary['refiner'])}, catalog {_e(summary['catalog'])}. Every "
             "recommended policy was proven sound and complete before it was written. A policy "
             "attached to several principals is counted once in the totals.</p>",
             "<table id='totals'><tbody>"]
    parts += [f"<tr><th>{_e(name)}</th><td class='num' data-total='{_e(name)}'>{value}</td></tr>"
              for name, value in cells]
    parts.append("</tbody></table><div id='principals'><div class='cells head'>"
                 + "".join(f"<span>{_e(name)}</span>" for name in HEADINGS) + "</div>")
    return parts


def _tail(summary: dict) -> list[str]:
    return ["</div>", _shared(summary.get("sharedPolicies", [])), "</body></html>\n"]


class _DistinctPolicies:
    """Totals over policies, each once: a managed policy by its ARN, an inline one by its
    principal and name (the first row that has it is the one counted)."""

    def __init__(self):
        self.seen: set[tuple[str, str]] = set()
        self.changed = 0
        self.patterns = [0, 0]
        self.characters = [0, 0]

    def add(self, row: dict) -> None:
        owner = row.get("principal") or row.get("resourceArn") or row["findingId"]
        for policy in _measured(row):
            key = ("", policy["policyId"]) if policy.get("kind") == "managed" \
                else (owner, policy["policyId"])
            if key in self.seen:
                continue
            self.seen.add(key)
            self.changed += bool(policy.get("changed"))
            for side in (0, 1):
                self.patterns[side] += policy["patterns"][side]
                self.characters[side] += policy["characters"][side]


def _measured(row: dict) -> list[dict]:
    return [p for p in row.get("policies", []) if "patterns" in p]


def row_html(row: dict, diffs: list[dict]) -> str:
    """A summary row's line of the page, with its policies' diffs."""
    policies = _measured(row)
    changed = sum(bool(p.get("changed")) for p in policies)
    if policies:  # a row with no policy measured has no sizes to show (never "0 → 0")
        patterns = f"{sum(p['patterns'][0] for p in policies)} → " \
            f"{sum(p['patterns'][1] for p in policies)}"
        characters = (f"{sum(p['characters'][0] for p in policies)} → "
                      f"{sum(p['characters'][1] for p in policies)}")
    else:
        patterns = characters = ""
    who = row.get("principal") or row.get("resourceArn") or row["findingId"]
    reason = row.get("error", {}).get("message") or row.get("reason") or ""
    opened = "".join(f"<p>{_e(d['policyId'])}</p><pre>{_diff(d['diff'])}</pre>" for d in diffs)
    opened += "".join(f"<p>group policy {_e(p['policyId'])} grants unused: "
                      f"{_e(', '.join(p['grantsUnused']))}</p>"
                      for p in row.get("policies", []) if p.get("grantsUnused"))
    opened += f"<p>finding {_e(row['findingId'])}" + (f": {_e(reason)}" if reason else "") + "</p>"
    status = _e(row["status"])
    return (f"<details><summary class='cells'><span>{_e(who)}</span>"
            f"<span class='{status}'>{status}</span><span class='reason'>{_e(reason)}</span>"
            f"<span class='num'>{changed if policies else ''}</span>"
            f"<span class='num'>{patterns}</span><span class='num'>{characters}</span>"
            f"<span class='kept'>{_kept(row)}</span></summary><div class='open'>{opened}</div></details>")


def _kept(row: dict) -> str:
    """What keep rules kept for this principal, each with its reason."""
    return "<br>".join(_e(describe(item)) for item in row.get("kept", []))


def _shared(policies: list[dict]) -> str:
    """Each policy several principals hold, once: who it reaches, what it loses, what it keeps
    because one of them uses it."""
    if not policies:
        return ""
    parts = ["<h2>Shared policies</h2><table id='shared'><thead><tr><th>policy</th>"
             "<th>status</th><th>principals</th><th>with findings</th><th>removed</th>"
             "<th>kept because used</th></tr></thead><tbody>"]
    for policy in policies:
        ref = policy["ref"]
        name = ref.get("arn") or f"{ref['kind']} {ref['name']} of {ref['owner']}"
        detail = f"<p>{_e(policy['reason'])}</p>" if policy.get("reason") else ""
        removed = ", ".join(policy["removed"])
        parts.append(f"<tr><td><details><summary>{_e(name)}</summary><p>removed: {_e(removed)}"
                     f"</p>{detail}</details></td><td>{_e(policy['status'])}</td>"
                     f"<td class='num'>{policy['reach']}</td>"
                     f"<td class='num'>{len(policy['holdersWithFindings'])}</td>"
                     f"<td class='num'>{len(policy['removed'])}</td>"
                     f"<td class='num'>{len(policy['keptBecauseUsed'])}</td></tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _diff(text: str) -> str:
    lines = []
    # Escaped whole, once (an account's diffs have hundreds of thousands of lines): escaping
    # leaves line breaks and a line's leading + or - as they are.
    for line in _e(text).splitlines():
        kind = "add" if line.startswith("+") and not line.startswith("+++") else \
            "del" if line.startswith("-") and not line.startswith("---") else ""
        lines.append(f"<span class='{kind}'>{line}</span>" if kind else line)
    return "\n".join(lines)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
