"""An organization bundle (several accounts' exports and one findings folder) through a Dask
cluster of separate processes on 127.0.0.1, against each account run alone; and the export
read as it streams, as strictly as the whole-file reader."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from account_bundle import build
from dask_processes import DaskProcesses

import refiner.outdir
import refiner.tasks
from refiner.cli import main
from refiner.errors import InputError
from refiner.jsontext import loads, stream_members
from refiner.principals import EXPORT_LISTS, PAGE_ACCOUNT, AccountGraph, account_groups

ACCOUNTS = ("210987654321", "310987654321", "410987654321")
TIMESTAMPS = ("startedAt", "completedAt")


@pytest.fixture(scope="module")
def organization(tmp_path_factory, catalog):
    """Three accounts of six roles: their exports, one findings folder for all."""
    folder = tmp_path_factory.mktemp("organization")
    findings = folder / "findings"
    findings.mkdir()
    details = []
    for number, account in enumerate(ACCOUNTS):
        export, found = build(folder / account, 6, catalog.all_actions(), seed=3 + number,
                              unused_roles=1, account=account)
        for path in found.glob("*.json"):
            path.rename(findings / path.name)
        details.append(export)
    return details, findings


def run(details: list[Path], findings: Path, out: Path, *options: str) -> int:
    return main(["recommend", "--authorization-details", *map(str, details), "--findings",
                 str(findings), "-o", str(out), *options])


def written(out: Path) -> dict[str, dict]:
    """Every recommendation and shared-policy record, without the clock's fields."""
    found = {}
    for folder in ("recommendations", "shared"):
        for path in sorted((out / folder).glob("*.json")):
            found[f"{folder}/{path.name}"] = {k: v for k, v in json.loads(path.read_text()).items()
                                              if k not in TIMESTAMPS}
    return found


@pytest.fixture(scope="module")
def alone(organization, tmp_path_factory) -> dict[str, dict]:
    """What each account run alone (its export, its findings) writes, all together."""
    details, findings = organization
    folder = tmp_path_factory.mktemp("alone")
    expected = {}
    for export in details:
        account = export.parent.name
        mine = folder / f"findings-{account}"
        mine.mkdir()
        for path in findings.glob("*.json"):
            if json.loads(path.read_text())["resource"].split(":")[4] == account:
                (mine / path.name).write_bytes(path.read_bytes())
        assert run([export], mine, folder / account, "--workers", "1") in (0, 1)
        expected.update(written(folder / account))
    return expected


def test_an_organization_is_planned_one_account_at_a_time(organization, alone, tmp_path,
                                                          monkeypatch):
    """Each account's graph is read, planned and written alone (memory flat with the number
    of accounts), and the recommendations are those of each account run alone."""
    details, findings = organization
    held = []
    real_read = AccountGraph.read.__func__

    def read(cls, paths, *args, **kwargs):
        graph = real_read(cls, paths, *args, **kwargs)
        held.append(sorted({principal.account for principal in graph.principals.values()}))
        return graph

    monkeypatch.setattr(AccountGraph, "read", classmethod(read))
    out = tmp_path / "organization"
    assert run(details, findings, out, "--workers", "1") in (0, 1)
    assert held == [[account] for account in ACCOUNTS]
    assert written(out) == alone
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(row["findingId"] for row in summary["findings"]) == \
        sorted(json.loads(path.read_text())["id"] for path in findings.glob("*.json"))


def test_exports_are_grouped_by_account(tmp_path):
    """Pages of one account together (a page naming two accounts joins them); a page of AWS
    managed policies that names no account goes with every group."""
    policy = {"Arn": "arn:aws:iam::aws:policy/ReadOnlyAccess", "PolicyVersionList": [
        {"IsDefaultVersion": True, "Document": {"Version": "2012-10-17", "Statement": []}}]}

    def role(account: str) -> dict:
        return {"RoleName": "R", "Arn": f"arn:aws:iam::{account}:role/R"}

    a, b, c, d = ACCOUNTS + ("510987654321",)
    pages = {"a1": {"RoleDetailList": [role(a)]}, "anon": {"Policies": [policy]},
             "b1": {"RoleDetailList": [role(b)]}, "a2": {PAGE_ACCOUNT: a, "Policies": [policy]},
             "c1": {"RoleDetailList": [role(c)]},
             "d1": {"Policies": [{**policy, "Arn": f"arn:aws:iam::{d}:policy/P"}]},
             "cd": {"RoleDetailList": [role(c), role(d)]}}
    paths = []
    for name, page in pages.items():
        paths.append(str(tmp_path / f"{name}.json"))
        Path(paths[-1]).write_text(json.dumps(page))
    groups, accounts = account_groups(paths)
    named = [([Path(p).stem for p in group], found) for group, found in groups]
    assert named == [(["a1", "anon", "a2"], {a}), (["anon", "b1"], {b}),
                     (["anon", "c1", "d1", "cd"], {c, d})]
    assert accounts == {a, b, c, d}
    assert account_groups(paths[:1]) == ([(paths[:1], None)], None)
    assert account_groups([paths[0], paths[3]]) == ([([paths[0], paths[3]], None)], None)


def test_an_organization_through_a_dask_cluster_equals_its_accounts_one_by_one(
        organization, alone, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    details, findings = organization
    graph = AccountGraph.read([str(path) for path in details])
    aws_managed = {}
    for document in graph.documents.values():
        if document.aws_managed:
            aws_managed.setdefault(document.arn, set()).add(document.account)
            assert {r.arn.split(":")[4] for r in document.reach} == {document.account}
    # The accounts share AWS managed policies: each account's are its own documents.
    assert any(len(accounts) > 1 for accounts in aws_managed.values())

    # When the first result comes back, the worker then holding the most tasks is killed: the
    # run still finishes, the same (its tasks are run again on the other). One task a Dask
    # task, and every task sent at once, so that the first result leaves others in flight
    # (with a few in flight, two fast workers could finish them all before it is taken).
    from distributed import Client

    monkeypatch.setattr(refiner.tasks, "DASK_BATCH", 1)
    monkeypatch.setattr(refiner.tasks, "WINDOW_PER_WORKER", 100_000)
    real_add = refiner.outdir.OutputFolder.add_result
    held_when_killed = []
    with DaskProcesses(tmp_path) as cluster, Client(cluster.address, timeout="30s") as observer:
        pids = observer.run(os.getpid)  # worker address -> its process id
        by_pid = {process.pid: process for process in cluster.workers}
        killed = []

        def add_result(self, result):
            if not killed:
                address, held = max(observer.processing().items(), key=lambda i: len(i[1]))
                victim = by_pid[pids[address]]
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(timeout=30)
                killed.append(victim)
                held_when_killed.extend(held)
            real_add(self, result)

        monkeypatch.setattr(refiner.outdir.OutputFolder, "add_result", add_result)
        out = tmp_path / "organization"
        code = run(details, findings, out, "--scheduler", cluster.address)
    victim, = killed
    assert held_when_killed  # the killed worker held tasks: they were lost with it
    assert victim.returncode == -signal.SIGKILL
    assert code in (0, 1)
    assert written(out) == alone
    summary = json.loads((out / "summary.json").read_text())
    assert {row["resourceArn"].split(":")[4] for row in summary["findings"]} == set(ACCOUNTS)
    assert not [row for row in summary["findings"] if "WorkerLost" in json.dumps(row)]


def test_fetch_pages_name_their_account(tmp_path):
    """A page of AWS managed policies alone is its named account's; a page whose ARNs are of
    another account than it names is refused."""
    policy = {"Arn": "arn:aws:iam::aws:policy/ReadOnlyAccess", "AttachmentCount": 2,
              "PolicyVersionList": [{"IsDefaultVersion": True, "VersionId": "v1", "Document": {
                  "Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]}}]}

    def role(account: str, name: str) -> dict:
        return {"RoleName": name, "RoleId": name, "Arn": f"arn:aws:iam::{account}:role/{name}",
                "AttachedManagedPolicies": [{"PolicyArn": policy["Arn"]}]}

    pages = {"a1": {PAGE_ACCOUNT: ACCOUNTS[0], "RoleDetailList": [role(ACCOUNTS[0], "A")]},
             "a2": {PAGE_ACCOUNT: ACCOUNTS[0], "Policies": [policy]},
             "b1": {PAGE_ACCOUNT: ACCOUNTS[1], "RoleDetailList": [role(ACCOUNTS[1], "B")]},
             "b2": {"Policies": [policy]}}  # names no account: its counts are anyone's
    for name, page in pages.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(page))
    graph = AccountGraph.read([str(tmp_path / f"{name}.json") for name in pages])
    by_account = {d.account: d for d in graph.documents.values() if d.aws_managed}
    assert by_account[ACCOUNTS[0]].reach_incomplete() == "the export shows 1 of its 2 attachments"
    assert "names no account" in by_account[ACCOUNTS[1]].reach_incomplete()
    (tmp_path / "wrong.json").write_text(json.dumps(
        {PAGE_ACCOUNT: ACCOUNTS[2], "RoleDetailList": [role(ACCOUNTS[0], "C")]}))
    with pytest.raises(InputError, match="holds ARNs of account"):
        AccountGraph.read([str(tmp_path / "wrong.json")])


# --- the export, streamed ------------------------------------------------------------------------

def members(path: Path) -> list[tuple[str, object]]:
    return list(stream_members(str(path), "authorization details", EXPORT_LISTS))


def test_streamed_members_equal_the_strict_readers(organization, tmp_path):
    details, _ = organization
    text = details[0].read_text()
    whole = loads(text, "export")
    expected = [(key, item) for key, value in whole.items()
                for item in (value if key in EXPORT_LISTS else [value])]
    assert members(details[0]) == expected
    # Numbers as written, strings with escapes, and a byte-order mark.
    odd = {"RoleDetailList": [{"n": 10, "f": 1.50, "s": "\u2028 \\ \" é", "none": None,
                               "t": True, "nested": [[], {}, [1, [2]]]}], "Marker": "x"}
    path = tmp_path / "odd.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(odd, ensure_ascii=False).encode())
    assert members(path) == [(k, i) for k, v in loads(json.dumps(odd), "odd").items()
                             for i in (v if k in EXPORT_LISTS else [v])]


@pytest.mark.parametrize("text, message", [
    ('{"RoleDetailList": [{"Arn": "a", "Arn": "b"}]}', "repeats the key 'Arn'"),
    ('{"Policies": [], "Policies": []}', "repeats the key 'Policies'"),
    ('[{"RoleDetailList": []}]', "expected a JSON object"),
    ('{"RoleDetailList": {}}', "RoleDetailList must be a list of objects"),
    ('{"RoleDetailList": ["a"]}', "RoleDetailList must be a list of objects"),
    ('{"Marker": "x"} {}', "not valid JSON"),
    ('{"RoleDetailList": [{"a": [1', "not valid JSON"),
    ('{"RoleDetailList": [{"a": NaN}]}', "not valid JSON"),
    ('{"Policies": [' + '{"a": ' * 70 + '1' + '}' * 70 + ']}', "nested deeper than 64 levels"),
    ('', "not valid JSON"),
])
def test_a_malformed_export_is_one_line(tmp_path, text, message):
    path = tmp_path / "export.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        AccountGraph.read([str(path)])


def test_an_export_larger_than_any_single_input_is_read(tmp_path):
    """Past the 32 MiB bound on a whole-file read: an export is read item by item."""
    role = {"RoleName": "R", "RoleId": "I", "Arn": "arn:aws:iam::111122223333:role/R",
            "RolePolicyList": [], "AttachedManagedPolicies": [], "Tags": [{"Key": "k",
                                                                          "Value": "v" * 4000}]}
    path = tmp_path / "export.json"
    with open(path, "w") as handle:
        handle.write('{"RoleDetailList": [')
        for number in range(8_500):
            handle.write(("," if number else "") + json.dumps(
                {**role, "RoleName": f"R{number}", "Arn": f"{role['Arn']}{number}"}))
        handle.write("]}")
    assert path.stat().st_size > 32 * 2**20
    assert len(AccountGraph.read([str(path)]).principals) == 8_500
