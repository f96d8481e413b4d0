"""Findings read by the workers (or a few in the parent) are taken in finding id order as
one reader took them: which error wins, which findings keep rules read, what an exception
that is not about the input says, and the modes of files already in the output folder are
as they were when the parent read every finding in turn (a reviewer's cases against the
first version of this change, each of which it failed)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from account_bundle import build

import refiner.recommend
from refiner.cli import main


@pytest.fixture(autouse=True, params=["in the parent", "by the workers"])
def reader(request, monkeypatch):
    """Each case with the findings read in the parent (a few) and by the workers (many)."""
    if request.param == "by the workers":
        monkeypatch.setattr(refiner.recommend, "READ_IN_WORKERS", 1)


@pytest.fixture
def account(tmp_path, catalog):
    details, findings = build(tmp_path / "account", 3, catalog.all_actions())
    return details, findings


def run(details, findings, out, *options) -> int:
    return main(["recommend", "--authorization-details", str(details), "--findings",
                 str(findings), "-o", str(out), "--workers", "2", *options])


def test_a_later_findings_keep_rule_crash_does_not_hide_an_earlier_findings_bad_page(
        account, tmp_path, capsys, monkeypatch):
    """The first finding in id order whose page the strict reader refuses stops the run
    (exit 2), whatever a later finding's keep rules raise (--grace-days beyond timedelta's
    range: an OverflowError, kept for that finding's turn, which never comes)."""
    monkeypatch.delenv("REFINER_DEBUG", raising=False)
    details, findings = account
    first = sorted(findings.glob("*.json"))[0]  # role-00000-5: first in id order
    first.write_text(first.read_text().replace('"status": "ACTIVE"',
                                               '"status": "ACTIVE", "status": "ACTIVE"'))
    code = run(details, findings, tmp_path / "out", "--grace-days", "1000000000")
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"findings {first} repeats the key 'status'" in err


def test_a_second_active_finding_of_a_principal_is_not_read_against_keep_rules(
        account, tmp_path, capsys, monkeypatch):
    """Two active findings for one principal fail both (exit 1): the second is not read
    against keep rules, whose grace rule would overflow on its analyzedAt (a day after
    0001-01-01 in UTC, the year 1 in its own offset)."""
    monkeypatch.delenv("REFINER_DEBUG", raising=False)
    details, findings = account
    export = json.loads(details.read_text())
    export["RoleDetailList"][1]["CreateDate"] = "0001-01-01T00:00:00+23:59"
    details.write_text(json.dumps(export))
    finding = json.loads(next(findings.glob("role-00001-*.json")).read_text())
    finding.update(id="zzz-duplicate", analyzedAt="0001-01-01T23:00:00-23:59")
    (findings / "zzz.json").write_text(json.dumps(finding))
    out = tmp_path / "out"
    code = run(details, findings, out, "--grace-days", "1")
    err = capsys.readouterr().err
    assert code == 1, err
    rows = {row["findingId"]: row for row in
            json.loads((out / "summary.json").read_text())["findings"]}
    assert rows["zzz-duplicate"]["status"] == "FAILED"
    assert "two active findings for one principal" in rows["zzz-duplicate"]["error"]["message"]


def test_a_finding_nested_a_thousand_deep_is_refused_in_one_line(account, tmp_path, capsys,
                                                                 monkeypatch):
    """A page nested some 1,000 levels deep is bad input, in one line (exit 2): its id is
    read by orjson (which reads 1,024 levels; json.loads raised RecursionError here, an
    internal error), and the strict reader refuses it."""
    monkeypatch.delenv("REFINER_DEBUG", raising=False)
    details, findings = account
    page = sorted(findings.glob("*.json"))[0]
    text = json.dumps(json.loads(page.read_text()))
    page.write_text(text[:-1] + ', "extra": ' + "[" * 1005 + "]" * 1005 + "}")
    code = run(details, findings, tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2 and "nested" in err and len(err.strip().splitlines()) == 1, err


def test_a_file_in_the_folder_the_manifest_does_not_list_keeps_its_mode(account, tmp_path):
    """A file already in the output folder that recommend did not write keeps its mode when
    recommend replaces it (only files not there get a new file's mode unlooked-up)."""
    details, findings = account
    out = tmp_path / "out"
    for folder in ("recommendations", "state"):
        (out / folder).mkdir(parents=True)
        (out / folder / "role-00001-30.json").write_text("{}\n")
        os.chmod(out / folder / "role-00001-30.json", 0o600)
    run(details, findings, out)
    for folder in ("recommendations", "state"):
        path = out / folder / "role-00001-30.json"
        assert path.read_text() != "{}\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_running_out_of_memory_reading_a_finding_is_reported_as_before(account, tmp_path,
                                                                       capsys, monkeypatch):
    """A finding too large to read (MemoryError, simulated in the strict reader's _compact)
    reaches the CLI as itself ("out of memory on this input"), not as bad input: an
    exception read in the parent is kept whole for its finding's turn."""
    import refiner.account

    real = refiner.account._compact

    def compact(value):
        if value.get("id") == "role-00001-30":
            raise MemoryError
        return real(value)

    monkeypatch.setattr(refiner.account, "_compact", compact)
    details, findings = account
    code = run(details, findings, tmp_path / "out")
    err = capsys.readouterr().err
    assert (code, err.strip()) == (2, "refiner: out of memory on this input")
