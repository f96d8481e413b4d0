"""recommend's report page: a fixed layout that keeps every column on screen at 1280 px with a
row open (measured in headless Chromium), diffs a reviewer can read, a reason column, each
policy counted once, no empty sizes shown as 0 → 0."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from conftest import EXAMPLES
from hypothesis import given
from hypothesis import strategies as st

import refiner
from refiner.cli import main
from refiner.render import review_diff
from refiner.report import HEADINGS, _diff, row_html, write_report

ROLE = "arn:aws:iam::111122223333:role/"
SHARED = "arn:aws:iam::aws:policy/Shared"
LONG_LINE = "+" + "        \"s3:" + "GetObjectVeryLong" * 60 + "*\","


def policy(policy_id, kind, before, after):
    return {"policyId": policy_id, "kind": kind, "patterns": [before, after],
            "characters": [before * 20, after * 20], "changed": before != after}


def rows():
    return [
        ({"findingId": "a", "resourceArn": ROLE + "App", "principal": ROLE + "App",
          "status": "SUCCEEDED", "policies": [policy("App-inline", "inline", 2, 5),
                                              policy(SHARED, "managed", 10, 4)]},
         [{"policyId": "App-inline", "diff": "--- a/x\n+++ b/x\n" + LONG_LINE + "\n"}]),
        ({"findingId": "a-old", "resourceArn": ROLE + "App", "status": "SKIPPED",
          "reason": "status ARCHIVED"}, []),
        ({"findingId": "b", "resourceArn": ROLE + "Web", "principal": ROLE + "Web",
          "status": "SUCCEEDED", "policies": [policy(SHARED, "managed", 10, 6)]}, []),
        ({"findingId": "c", "resourceArn": ROLE + "Old", "status": "DELETE_ROLE",
          "reason": "the role is unused: delete it"}, []),
        ({"findingId": "d", "resourceArn": ROLE + "Bad", "principal": ROLE + "Bad",
          "status": "FAILED", "error": {"code": "ProofFailed", "message": "no proof: s3:Get*"}},
         []),
    ]


@pytest.fixture
def page(tmp_path) -> Path:
    summary = {"refiner": "test", "catalog": "test catalog",
               "totals": {"findings": 5, "SUCCEEDED": 2, "SKIPPED": 1, "DELETE_ROLE": 1,
                          "FAILED": 1, "policiesChanged": 3, "patterns": [22, 15],
                          "characters": [440, 300], "overLimit": 0}}
    path = tmp_path / "report.html"
    write_report(path, summary, [(row, row_html(row, diffs)) for row, diffs in rows()])
    return path


def totals(text: str) -> dict[str, int]:
    return {name: int(value) for name, value in
            re.findall(r"data-total=['\"]([^'\"]+)['\"]>(\d+)<", text)}


def test_each_policy_counted_once_and_reasons_in_their_column(page):
    text = page.read_text()
    shown = totals(text)
    # App-inline and the shared managed policy (counted at its first row), not Web's copy.
    assert shown["policies changed"] == 2
    assert (shown["patterns before"], shown["patterns after"]) == (12, 9)
    reasons = re.findall(r"<span class='reason'>([^<]*)</span>", text)
    assert reasons == ["", "status ARCHIVED", "", "the role is unused: delete it",
                       "no proof: s3:Get*"]
    assert "0 → 0" not in text and text.count("<details>") == 5


MEASURE = """<script>
const open = document.querySelectorAll('#principals details')[0];
open.open = true;
const width = window.innerWidth;
const boxes = [...document.querySelectorAll('#principals .head > span, '
                                            + '#principals details[open] > summary > span, '
                                            + '#principals details[open] pre')]
  .map(e => { const r = e.getBoundingClientRect(); return [e.textContent.slice(0, 20), r.left, r.right]; });
const out = document.createElement('pre');
out.id = 'measured';
out.textContent = JSON.stringify({width, scroll: document.documentElement.scrollWidth, boxes});
document.body.appendChild(out);
</script>"""


def test_every_column_stays_on_screen_at_1280_px_with_a_row_open(page, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("needs chromium (Debian's chromium package; .ci/run installs it)")
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                             "--hide-scrollbars", "--window-size=1280,900", "--dump-dom",
                             probe.resolve().as_uri()],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="measured">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stdout[-2000:]
    measured = json.loads(found[1].replace("&quot;", '"').replace("&amp;", "&"))
    assert measured["width"] == 1280
    assert measured["scroll"] <= measured["width"]  # nothing wider than the window
    names = [name for name, _, _ in measured["boxes"]]
    assert len(measured["boxes"]) == 2 * len(HEADINGS) + 1, names  # headings, open row, diff
    for name, left, right in measured["boxes"]:
        assert 0 <= left < right <= measured["width"], (name, left, right)


def test_a_compact_or_url_encoded_document_gets_a_pretty_printed_diff(tmp_path):
    document = json.loads((EXAMPLES / "policy.json").read_text())
    finding = json.loads((EXAMPLES / "finding.json").read_text())
    compact = json.dumps(document, separators=(",", ":"))
    result = refiner.refine(compact, finding)
    diff = review_diff(result.run, "policy.json")
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+")]
    assert '"s3:GetObject*",' in added and '"lambda:Invoke*"' in added
    # A document written out by hand keeps its own diff, lines as they are in the file.
    result = refiner.refine(EXAMPLES / "policy.json", finding)
    assert review_diff(result.run, "policy.json") == result.diff("policy.json")
    # Through recommend: an export holding the document URL-encoded, as AWS's API returns it.
    details = tmp_path / "auth.json"
    details.write_text(json.dumps({"RoleDetailList": [{
        "RoleName": "ExampleRole", "RoleId": "R1", "Path": "/",
        "Arn": "arn:aws:iam::111122223333:role/ExampleRole",
        "RolePolicyList": [{"PolicyName": "Inline",
                            "PolicyDocument": urllib.parse.quote(compact)}],
        "AttachedManagedPolicies": []}], "UserDetailList": [], "GroupDetailList": [],
        "Policies": []}))
    out = tmp_path / "out"
    assert main(["recommend", "--authorization-details", str(details), "--findings",
                 str(EXAMPLES / "finding.json"), "-o", str(out), "--workers", "1"]) == 0
    report = (out / "report.html").read_text()
    assert "<span class='add'>+        &quot;s3:GetObject*&quot;,</span>" in report


@given(st.lists(st.tuples(st.sampled_from(["", "+", "-", "+++", "---", "<", "&", " "]),
                          st.text(max_size=12)), max_size=8),
       st.sampled_from(["\n", "\r\n", "\u2028", "\x85"]))
def test_a_diff_escaped_whole_is_the_diff_escaped_line_by_line(lines, end):
    """The page escapes each diff once, whole: the same text as escaping line by line."""
    text = end.join(start + rest for start, rest in lines)
    by_line = []
    for line in text.splitlines():
        kind = "add" if line.startswith("+") and not line.startswith("+++") else \
            "del" if line.startswith("-") and not line.startswith("---") else ""
        escaped = html.escape(line, quote=True)
        by_line.append(f"<span class='{kind}'>{escaped}</span>" if kind else escaped)
    assert _diff(text) == "\n".join(by_line)
