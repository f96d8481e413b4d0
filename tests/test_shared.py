"""Shared policies (issue 16): a document is refined against what every principal it reaches
leaves unused, and each principal is checked, independently of the refiner (the regex oracle
over the union of its documents), to lose nothing it uses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from account_check import check_principals
from hypothesis import given
from hypothesis import strategies as st

from refiner.cli import main
from refiner.sharing import Scope, _reachable, _reachable_actions

ACCOUNT = "111122223333"


def arn(kind: str, name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:{kind}/{name}"


def allow(*actions: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}


def managed(name: str, document: dict, attachments: int, boundaries: int = 0) -> dict:
    return {"PolicyName": name, "PolicyId": f"ANPA{name.upper()}", "Arn": arn("policy", name),
            "Path": "/", "DefaultVersionId": "v1", "AttachmentCount": attachments,
            "PermissionsBoundaryUsageCount": boundaries, "IsAttachable": True,
            "PolicyVersionList": [{"Document": document, "VersionId": "v1",
                                   "IsDefaultVersion": True,
                                   "CreateDate": "2025-01-01T00:00:00Z"}]}


def role(name: str, attached: list[str], inline: dict | None = None,
         boundary: str | None = None) -> dict:
    detail = {"RoleName": name, "RoleId": f"AROA{name.upper()}", "Arn": arn("role", name),
              "Path": "/", "CreateDate": "2024-01-01T00:00:00Z", "Tags": [{"Key": "team",
                                                                             "Value": "a"}],
              "RolePolicyList": [{"PolicyName": f"{name}-own", "PolicyDocument": inline}]
              if inline else [],
              "AttachedManagedPolicies": [{"PolicyName": p, "PolicyArn": arn("policy", p)}
                                          for p in attached]}
    if boundary:
        detail["PermissionsBoundary"] = {"PermissionsBoundaryType": "Policy",
                                         "PermissionsBoundaryArn": arn("policy", boundary)}
    return detail


def user(name: str, groups: list[str]) -> dict:
    return {"UserName": name, "UserId": f"AIDA{name.upper()}", "Arn": arn("user", name),
            "Path": "/", "GroupList": groups, "UserPolicyList": [],
            "AttachedManagedPolicies": []}


def group(name: str, policy_name: str, document: dict) -> dict:
    return {"GroupName": name, "GroupId": f"AGPA{name.upper()}", "Arn": arn("group", name),
            "Path": "/", "GroupPolicyList": [{"PolicyName": policy_name,
                                              "PolicyDocument": document}],
            "AttachedManagedPolicies": []}


def finding(finding_id: str, principal: str, unused: dict[str, list[str] | None],
            kind: str = "role") -> dict:
    """unused: service -> actions (None: the whole service)."""
    return {"id": finding_id, "resource": arn(kind, principal),
            "resourceType": f"AWS::IAM::{kind.title()}", "resourceOwnerAccount": ACCOUNT,
            "status": "ACTIVE", "findingType": "UnusedPermission",
            "analyzedAt": "2026-11-30T00:00:00Z", "updatedAt": "2026-11-30T00:00:00Z",
            "findingDetails": [{"unusedPermissionDetails": {
                "serviceNamespace": service,
                **({"actions": [{"action": a} for a in actions]} if actions else {})}}
                for service, actions in unused.items()]}


SHARED3 = allow("s3:Get*", "s3:List*", "cloudwatch:*")
SHARED4 = allow("sqs:*")
BOUNDARY = allow("s3:*", "ec2:*", "cloudwatch:*", "sqs:*", "lambda:*", "iam:List*")
OPS = allow("ec2:Describe*", "ec2:StartInstances", "ec2:StopInstances")
DEV_OPS = allow("sqs:SendMessage", "sqs:ReceiveMessage")


def shared_account() -> tuple[dict, list[dict]]:
    """A customer managed policy on three roles with different findings; another on those and
    a fourth role without a finding; a boundary that is also another role's attached policy;
    a group policy with two members; two groups with same-named inline policies."""
    export = {
        "RoleDetailList": [
            role("R1", ["Shared3", "Shared4"], inline=allow("dynamodb:Get*", "dynamodb:Query")),
            role("R2", ["Shared3", "Shared4"], boundary="Boundary"),
            role("R3", ["Shared3", "Shared4"]),
            role("R4", ["Shared4"]),
            role("R5", ["Boundary"])],
        "UserDetailList": [user("U1", ["ops"]), user("U2", ["ops"]), user("U3", ["dev"])],
        "GroupDetailList": [group("ops", "ops-policy", OPS), group("dev", "ops-policy", DEV_OPS)],
        "Policies": [managed("Shared3", SHARED3, 3), managed("Shared4", SHARED4, 4),
                     managed("Boundary", BOUNDARY, 1, boundaries=1)]}
    findings = [
        finding("f-r1", "R1", {"s3": ["GetObject", "GetBucketAcl"],
                               "cloudwatch": ["PutMetricData"], "dynamodb": ["Query"],
                               "sqs": ["SendMessage"]}),
        finding("f-r2", "R2", {"s3": ["GetObject", "PutObject"], "cloudwatch": None,
                               "sqs": ["SendMessage"]}),
        finding("f-r3", "R3", {"s3": ["GetObject", "GetBucketAcl", "ListBucket"],
                               "sqs": ["SendMessage"]}),
        finding("f-r5", "R5", {"s3": ["PutObject"], "lambda": None}),
        finding("f-u1", "U1", {"ec2": ["StopInstances", "DescribeRegions"]}, "user"),
        finding("f-u2", "U2", {"ec2": ["StopInstances"]}, "user"),
        finding("f-u3", "U3", {"sqs": ["ReceiveMessage"]}, "user")]
    return export, findings


def write_inputs(folder: Path, export: dict, findings: list[dict]) -> tuple[Path, Path]:
    details = folder / "details.json"
    details.write_text(json.dumps(export))
    found = folder / "findings"
    found.mkdir(exist_ok=True)
    for response in findings:
        (found / f"{response['id']}.json").write_text(json.dumps(response))
    return details, found


def run(details: Path, findings: Path, out: Path, *options) -> int:
    return main(["recommend", "--authorization-details", str(details), "--findings",
                 str(findings), "-o", str(out), "--workers", "1", *map(str, options)])


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared")
    export, findings = shared_account()
    details, found = write_inputs(folder, export, findings)
    return folder, export, findings, details, found


@pytest.fixture(scope="module")
def consolidated(account):
    folder, _, _, details, found = account
    out = folder / "out"
    assert run(details, found, out) == 0
    return out


def shared_by_name(out: Path) -> dict[str, dict]:
    """Shared records by the policy's name and owner (two groups' ops-policy are two)."""
    found = {}
    for path in (out / "shared").glob("*.json"):
        record = json.loads(path.read_text())
        ref = record["ref"]
        found[ref.get("arn") or f"{ref['owner']}:{ref['name']}"] = {**record, "file": path.stem}
    return found


def test_a_policy_on_three_roles_loses_only_what_all_three_leave_unused(consolidated):
    shared = shared_by_name(consolidated)
    record = shared[arn("policy", "Shared3")]
    assert record["status"] == "CHANGED" and record["removed"] == ["s3:GetObject"]
    assert {r["arn"] for r in record["reach"]} == {arn("role", n) for n in ("R1", "R2", "R3")}
    assert all(r["id"].startswith("AROA") and r["via"] == "attached" for r in record["reach"])
    assert record["findings"] == ["f-r1", "f-r2", "f-r3"]
    kept = record["keptBecauseUsed"]
    assert kept["s3:GetBucketAcl"] == [arn("role", "R2")]  # R1 and R3 leave it unused
    assert kept["cloudwatch:PutMetricData"] == [arn("role", "R3")]
    assert record["principalChecks"] == 3 and record["updatedAt"] and record["versionId"] == "v1"
    refined = json.loads(record["refined"])
    assert "\"s3:GetObject\"" not in json.dumps(refined) and "cloudwatch:*" in json.dumps(refined)
    # Each role's recommendation points at the one consolidated document.
    for name in ("R1", "R2", "R3"):
        steps = recommendation(consolidated, f"f-{name.lower()}")["recommendedSteps"]
        pointers = [s["unusedPermissionsRecommendedStep"] for s in steps
                    if s["unusedPermissionsRecommendedStep"].get("sharedPolicy") == record["file"]]
        assert len(pointers) == 1 and "recommendedPolicy" not in pointers[0]


def test_a_holder_without_a_finding_keeps_the_policy_as_it_is(consolidated):
    record = shared_by_name(consolidated)[arn("policy", "Shared4")]
    assert record["status"] == "UNCHANGED" and record["refined"] is None
    assert arn("role", "R4") in record["reason"] and "no unused-access finding" in record["reason"]


def test_a_group_policy_is_refined_for_both_members_and_same_names_stay_apart(consolidated):
    shared = shared_by_name(consolidated)
    ops = shared[f"{arn('group', 'ops')}:ops-policy"]
    dev = shared[f"{arn('group', 'dev')}:ops-policy"]
    assert ops["file"] != dev["file"] and ops["ref"]["kind"] == "group-inline"
    assert ops["removed"] == ["ec2:StopInstances"]  # DescribeRegions: U2 uses it
    assert ops["keptBecauseUsed"] == {"ec2:DescribeRegions": [arn("user", "U2")]}
    assert {r["via"] for r in ops["reach"]} == {f"group:{arn('group', 'ops')}"}
    assert dev["removed"] == ["sqs:ReceiveMessage"]  # one member, still the group's policy
    assert json.loads(dev["refined"]) == allow("sqs:SendMessage")


def test_a_boundary_is_shared_with_the_role_it_is_attached_to(consolidated):
    record = shared_by_name(consolidated)[arn("policy", "Boundary")]
    assert {(r["arn"], r["via"]) for r in record["reach"]} == {
        (arn("role", "R2"), "boundary"), (arn("role", "R5"), "attached")}
    # R5 leaves lambda unused, R2's boundary lets lambda through: only s3:PutObject goes.
    assert record["removed"] == ["s3:PutObject"]


def test_every_principal_keeps_what_it_uses_by_the_oracle(account, consolidated, catalog):
    _, export, findings, _, _ = account
    report = check_principals(export, findings, consolidated, catalog.all_actions())
    assert report[arn("role", "R4")]["removed"] == 0  # no finding: nothing taken
    assert report[arn("role", "R1")]["removed"] > 0
    summary = json.loads((consolidated / "summary.json").read_text())
    assert summary["shared"] == "consolidate"
    assert summary["totals"]["sharedPolicies"] == 5 and \
        summary["totals"]["sharedPoliciesChanged"] == 4


def test_the_contract_fields(consolidated):
    state = json.loads((consolidated / "state" / "f-r2.json").read_text())
    assert state["principal"] == {"arn": arn("role", "R2"), "id": "AROAR2", "account": ACCOUNT,
                                  "partition": "aws", "kind": "role", "name": "R2"}
    assert state["updatedAt"] == state["analyzedAt"] == "2026-11-30T00:00:00Z"
    vias = {p["via"] for p in state["policies"]}
    assert vias == {"attached", "boundary"}
    boundary = next(p for p in state["policies"] if p["via"] == "boundary")
    # with the unique id apply checks (PolicyId; one re-created under the ARN has another)
    assert boundary["ref"] == {"kind": "managed", "arn": arn("policy", "Boundary"),
                               "id": "ANPABOUNDARY"}
    assert boundary["versionId"] == "v1" and boundary["awsManaged"] is False
    # A shared document's reach and text are held once, in its shared record.
    record = json.loads((consolidated / "shared" / f"{boundary['sharedPolicy']}.json").read_text())
    assert len(record["reach"]) == 2 and "reach" not in boundary and "text" not in boundary
    own = json.loads((consolidated / "state" / "f-r1.json").read_text())["policies"]
    (inline,) = [p for p in own if p["via"] == "inline"]
    assert inline["reach"] == [{"arn": arn("role", "R1"), "id": "AROAR1", "via": "inline"}]
    assert inline["ref"] == {"kind": "role-inline", "owner": arn("role", "R1"), "name": "R1-own",
                             "ownerId": "AROAR1"}
    assert inline["text"]


def test_copy_gives_each_holder_its_own_policy_within_the_attachment_quota(account, catalog):
    folder, export, findings, details, found = account
    out = folder / "copy"
    assert run(details, found, out, "--shared", "copy") == 0
    record = shared_by_name(out)
    assert record[arn("policy", "Shared3")]["status"] == "COPIED"  # never rewritten
    assert record[arn("policy", "Shared3")]["refined"] is None
    assert record[f"{arn('group', 'ops')}:ops-policy"]["status"] == "CHANGED"  # groups: shared
    copies = {}
    for name in ("R1", "R2", "R3"):
        steps = [s["unusedPermissionsRecommendedStep"]
                 for s in recommendation(out, f"f-{name.lower()}")["recommendedSteps"]]
        (copy,) = [s for s in steps if (s.get("copyOf") or {}).get("arn") ==
                   arn("policy", "Shared3")]
        copies[name] = json.loads(copy["recommendedPolicy"])
    assert len({json.dumps(c, sort_keys=True) for c in copies.values()}) == 3
    check_principals(export, findings, out, catalog.all_actions(), copy_mode=True)
    # R1 has two managed policies attached: with a quota of two, no place for a copy.
    tight = folder / "copy-tight"
    assert run(details, found, tight, "--shared", "copy", "--attachment-quota", "2") == 0
    row = next(r for r in json.loads((tight / "summary.json").read_text())["findings"]
               if r["findingId"] == "f-r1")
    # (Shared3 and Shared4: R4 has no finding, but R1's copy is R1's alone)
    assert row["attachments"] == {"attached": 2, "copies": 2, "quota": 2, "fits": False,
                                  "withheld": 2}
    assert not any(s["unusedPermissionsRecommendedStep"].get("copyOf")
                   for s in recommendation(tight, "f-r1")["recommendedSteps"])


def test_report_only_reports(account):
    folder, _, _, details, found = account
    out = folder / "report"
    assert run(details, found, out, "--shared", "report") == 0
    record = shared_by_name(out)[arn("policy", "Shared3")]
    assert record["status"] == "REPORT" and record["refined"] is None and record["proposed"]
    assert record["removed"] == ["s3:GetObject"]
    for name in ("R1", "R2", "R3"):
        assert not any("sharedPolicy" in s["unusedPermissionsRecommendedStep"]
                       for s in recommendation(out, f"f-{name.lower()}")["recommendedSteps"])


def test_a_policy_attached_beyond_the_export_is_left_as_it_is(tmp_path):
    export, findings = shared_account()
    export["Policies"][0]["AttachmentCount"] = 7  # the export was made with --filter
    details, found = write_inputs(tmp_path, export, findings)
    assert run(details, found, tmp_path / "out") == 0
    record = shared_by_name(tmp_path / "out")[arn("policy", "Shared3")]
    assert record["status"] == "UNCHANGED" and "3 of its 7 attachments" in record["reason"]


def recommendation(out: Path, finding_id: str) -> dict:
    return json.loads((out / "recommendations" / f"{finding_id}.json").read_text())


# --- issue 17's recommend part ------------------------------------------------------------------

def test_findings_of_an_unreadable_account_are_refused(tmp_path, capsys):
    export, findings = shared_account()
    findings[0]["accountUnreadable"] = True
    details, found = write_inputs(tmp_path, export, findings)
    assert run(details, found, tmp_path / "out") == 1
    rows = {r["findingId"]: r for r in
            json.loads((tmp_path / "out" / "summary.json").read_text())["findings"]}
    assert rows["f-r1"]["status"] == "REFUSED"
    assert rows["f-r1"]["error"]["code"] == "AccountUnreadable"
    assert not (tmp_path / "out" / "recommendations" / "f-r1.json").exists()
    # R1 counts as using everything: Shared3 is kept whole for R2 and R3 too.
    assert shared_by_name(tmp_path / "out")[arn("policy", "Shared3")]["status"] == "UNCHANGED"


def test_ids_differing_only_in_colon_and_slash_get_their_own_files(tmp_path):
    export, findings = shared_account()
    findings[0]["id"], findings[1]["id"] = "finding:1", "finding/1"
    details, found = write_inputs(tmp_path, export, [])
    for number, response in enumerate(findings[:2]):
        (found / f"{number}.json").write_text(json.dumps(response))
    out = tmp_path / "out"
    assert run(details, found, out) == 0
    names = sorted(p.name for p in (out / "recommendations").iterdir())
    assert len(names) == 2 and len(set(names)) == 2
    assert {json.loads((out / "recommendations" / n).read_text())["findingId"]
            for n in names} == {"finding:1", "finding/1"}


def test_only_files_recommend_wrote_are_ever_removed(tmp_path, capsys):
    export, findings = shared_account()
    details, found = write_inputs(tmp_path, export, findings)
    out = tmp_path / "out"
    out.mkdir()
    (out / "recommendations").mkdir()
    foreign = [out / "recommendations" / "notes.json", out / "recommendations" / ".keep",
               out / "README.json"]
    for path in foreign:
        path.write_text("mine")
    assert run(details, found, out) == 0
    (found / "f-u3.json").unlink()  # a finding no longer given: its files go
    assert run(details, found, out) == 0
    assert not (out / "recommendations" / "f-u3.json").exists()
    assert all(path.read_text() == "mine" for path in foreign)


def test_a_half_written_outdir_is_one_line(account, tmp_path, capsys):
    _, _, _, details, found = account
    out = tmp_path / "out"
    assert run(details, found, out) == 0
    (out / "summary.json").unlink()  # as a run killed before its end leaves it
    capsys.readouterr()
    assert main(["aws", "apply", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "half-written" in error[0] and "run recommend again" in error[0]


def test_workers_end_with_a_killed_parent(tmp_path, catalog):
    from account_bundle import build

    details, findings = build(tmp_path, 120, catalog.all_actions())
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "refiner.cli", "recommend", "--authorization-details",
         str(details), "--findings", str(findings), "-o", str(out), "--workers", "2"],
        stderr=subprocess.DEVNULL, start_new_session=True)
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(workers) < 2:
        workers = _children(process.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the pool never started"
    os.kill(process.pid, signal.SIGKILL)  # the parent alone, as the OOM killer would
    process.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # never leave them behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers outlived their parent"


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found |= {int(child) for child in children}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- the rule as a property, over generated accounts --------------------------------------------

SMALL_CATALOG = {"svc": ["GetObject", "GetBucket", "PutObject", "ListAll", "DeleteThing"],
                 "db": ["Query", "Scan", "PutItem", "GetItem"], "mq": ["Send", "Receive", "Purge"]}
SMALL_ACTIONS = [f"{service}:{name}" for service, names in SMALL_CATALOG.items()
                 for name in names]
PATTERNS = ["svc:Get*", "svc:*", "db:*", "db:Get*", "mq:Send", "mq:*", "*", "s*:Put*",
            "db:?can", "svc:PutObject", "db:Query"]


def _generated_account(draw) -> tuple[dict, list[dict]]:
    from hypothesis import strategies as st

    def document() -> dict:
        statements = []
        for _ in range(draw(st.integers(1, 2))):
            if draw(st.integers(0, 5)) == 0:
                statements.append({"Effect": "Allow", "NotAction": ["svc:Delete*"],
                                   "Resource": "*"})
            else:
                statements.append({"Effect": draw(st.sampled_from(["Allow"] * 4 + ["Deny"])),
                                   "Action": draw(st.lists(st.sampled_from(PATTERNS), min_size=1,
                                                           max_size=3, unique=True)),
                                   "Resource": "*"})
        return {"Version": "2012-10-17", "Statement": statements}

    roles = [f"R{n}" for n in range(draw(st.integers(1, 4)))]
    users = [f"U{n}" for n in range(draw(st.integers(0, 3)))]
    groups = [f"G{n}" for n in range(draw(st.integers(0, 2)))]
    policies = [f"P{n}" for n in range(draw(st.integers(1, 3)))]
    holders = [("role", r) for r in roles] + [("user", u) for u in users] + \
        [("group", g) for g in groups]
    attached = {p: draw(st.lists(st.sampled_from(holders), max_size=len(holders), unique=True))
                for p in policies}
    boundaries = {r: draw(st.sampled_from([None, *policies])) for r in roles}
    counts = {p: len(attached[p]) for p in policies}
    bounds = {p: sum(b == p for b in boundaries.values()) for p in policies}
    export = {"Policies": [managed(p, document(), counts[p], bounds[p]) for p in policies],
              "GroupDetailList": [], "RoleDetailList": [], "UserDetailList": []}
    for g in groups:
        detail = group(g, "shared-name", document())
        detail["AttachedManagedPolicies"] = [{"PolicyArn": arn("policy", p)} for p in policies
                                             if ("group", g) in attached[p]]
        export["GroupDetailList"].append(detail)
    for r in roles:
        detail = role(r, [p for p in policies if ("role", r) in attached[p]],
                      inline=document() if draw(st.booleans()) else None,
                      boundary=boundaries[r])
        export["RoleDetailList"].append(detail)
    for u in users:
        detail = user(u, draw(st.lists(st.sampled_from(groups), unique=True)) if groups else [])
        detail["AttachedManagedPolicies"] = [{"PolicyArn": arn("policy", p)} for p in policies
                                             if ("user", u) in attached[p]]
        export["UserDetailList"].append(detail)
    findings = []
    for kind, name in [("role", r) for r in roles] + [("user", u) for u in users]:
        choice = draw(st.sampled_from(["none", "permission", "permission", "permission",
                                       "unused-role"]))
        if choice == "none" or (choice == "unused-role" and kind == "user"):
            continue
        if choice == "unused-role":
            findings.append({**finding(f"f-{name}", name, {"svc": None}, kind),
                             "findingType": "UnusedIAMRole", "findingDetails": [
                                 {"unusedIamRoleDetails": {}}]})
            continue
        unused: dict[str, list[str] | None] = {}
        for service, actions in SMALL_CATALOG.items():
            picked = draw(st.lists(st.sampled_from(actions), unique=True, max_size=len(actions)))
            if draw(st.integers(0, 6)) == 0:
                unused[service] = None
            elif picked:
                unused[service] = picked
        if unused:
            findings.append(finding(f"f-{name}", name, unused, kind))
    return export, findings


def test_no_principal_loses_what_it_uses_in_any_account(tmp_path_factory):
    """Random sharing (attachments, groups, boundaries) and random findings (none, unused
    actions and services, unused roles): every principal keeps, across all its documents,
    every action it uses; no document keeps what all its holders leave unused."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp("generated")
    catalog = folder / "catalog.json"
    catalog.write_text(json.dumps(SMALL_CATALOG))
    runs = iter(range(10_000))

    @settings(max_examples=25, deadline=None)
    @given(st.data(), st.sampled_from(["consolidate", "copy"]))
    def check(data, mode):
        export, findings = _generated_account(data.draw)
        where = folder / str(next(runs))
        where.mkdir()
        details, found = write_inputs(where, export, findings)
        code = run(details, found, where / "out", "--catalog", catalog, "--shared", mode)
        assert code == 0
        check_principals(export, findings, where / "out", SMALL_ACTIONS,
                         copy_mode=mode == "copy")

    check()


def test_a_result_cut_short_by_a_kill_is_done_again(account, consolidated, tmp_path):
    import shutil

    _, _, _, details, found = account
    out = tmp_path / "out"
    shutil.copytree(consolidated, out)
    lines = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
    torn = b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2]  # as a kill mid-write leaves
    (out / "results.jsonl").write_bytes(torn)
    (out / "summary.json").unlink()
    assert run(details, found, out) == 0
    assert (out / "results.jsonl").read_bytes().count(b"\n") == len(lines)
    assert json.loads((out / "summary.json").read_text())["totals"] == \
        json.loads((consolidated / "summary.json").read_text())["totals"]


def test_a_results_file_recommend_did_not_write_is_refused(account, tmp_path, capsys):
    _, _, _, details, found = account
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text("mine\n")
    assert run(details, found, out) == 2
    assert "not written by `refiner recommend`" in capsys.readouterr().err
    assert (out / "results.jsonl").read_text() == "mine\n"


def test_the_account_graph_from_the_python_api(account):
    import refiner

    _, _, _, details, _ = account
    graph = refiner.account_graph(details)
    r2 = graph.principals[arn("role", "R2")]
    assert (r2.id, r2.account, r2.partition, r2.boundary) == (
        "AROAR2", ACCOUNT, "aws", arn("policy", "Boundary"))
    assert r2.tags == [{"Key": "team", "Value": "a"}] and r2.create_date
    ops = [d for d in graph.documents.values() if d.name == "ops-policy"]
    assert len(ops) == 2 and {d.owner for d in ops} == {arn("group", "ops"), arn("group", "dev")}
    (team,) = [d for d in ops if d.owner == arn("group", "ops")]
    assert sorted(r["arn"] for r in graph.reach(team.key)) == [arn("user", "U1"),
                                                               arn("user", "U2")]
    assert graph.groups[arn("group", "ops")].members == [arn("user", "U1"), arn("user", "U2")]


def test_two_findings_for_one_principal_fail_both_and_keep_its_policies(tmp_path):
    export, findings = shared_account()
    findings.append({**findings[0], "id": "f-r1-again"})
    details, found = write_inputs(tmp_path, export, findings)
    assert run(details, found, tmp_path / "out") == 1
    rows = {r["findingId"]: r for r in
            json.loads((tmp_path / "out" / "summary.json").read_text())["findings"]}
    assert rows["f-r1"]["status"] == rows["f-r1-again"]["status"] == "FAILED"
    assert len(rows) == len(findings)
    # R1 counts as using everything: Shared3 stays whole for every holder.
    assert shared_by_name(tmp_path / "out")[arn("policy", "Shared3")]["status"] == "UNCHANGED"


def test_the_per_principal_check_refuses_a_document_that_drops_what_one_holder_uses(catalog):
    """The kernel's check for one holder: a consolidated document that lost s3:GetBucketAcl,
    which this holder uses, fails; the same document for a holder that leaves it unused
    passes."""
    from refiner.tasks import catalog_for, run_task

    catalog_for(None)
    original = json.dumps(allow("s3:GetObject", "s3:GetBucketAcl"))
    refined = json.dumps(allow("s3:GetObject"))
    task = {"op": "check", "key": "k", "name": "Shared", "original": original,
            "refined": refined, "kept": [0], "catalog": None,
            "catalogVersion": catalog.version, "timeoutMs": 10_000,
            "unused": {"actions": ["s3:GetObject"], "services": []}}
    result = run_task(task)
    assert result["status"] == "FAILED" and "s3:GetBucketAcl" in result["error"]["message"]
    task["unused"] = {"actions": ["s3:GetBucketAcl"], "services": []}
    assert run_task(task)["status"] == "SUCCEEDED"


# --- what a document can reach of a finding -----------------------------------------------------

_SERVICES = ("a", "ab", "a-b", "b", "s3")
_NAMES = st.text(alphabet="aAbBgGeEtT", min_size=1, max_size=4)


@given(actions=st.sets(st.tuples(st.sampled_from(_SERVICES), _NAMES), max_size=30),
       prefixes=st.sets(st.one_of(
           st.tuples(st.sampled_from(_SERVICES), st.text(alphabet="abget", max_size=5))
           .map(lambda pair: f"{pair[0]}:{pair[1]}"),
           st.text(alphabet="abs3-", max_size=2)), max_size=5))
def test_the_actions_a_scope_reaches_are_found_by_range_as_name_by_name(actions, prefixes):
    """restricted finds a service's names by their range of the sorted tuple: the same names,
    in the same order, as asking of each name whether the scope reaches it."""
    names = tuple(sorted({f"{service}:{name}" for service, name in actions}))
    by_service: dict[str, list[str]] = {}
    for prefix in sorted(prefixes):
        if ":" in prefix:
            by_service.setdefault(prefix.split(":", 1)[0], []).append(prefix)
    scope = Scope(by_service, tuple(sorted(p for p in prefixes if ":" not in p)))
    one_by_one = tuple(a for a in names if _reachable(a.lower(), scope))
    assert _reachable_actions(names, scope) == one_by_one
