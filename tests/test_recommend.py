"""`refiner recommend` on a whole (synthetic) account, end to end through the CLI; every
recommended policy is checked by the brute-force oracle, not by the kernel."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from account_bundle import build
from account_check import check_principals
from oracle import allowed_by, is_unused

import refiner.recommend
from refiner.cli import main
from refiner.jsontext import loads

TIMESTAMPS = ("startedAt", "completedAt")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, catalog):
    folder = tmp_path_factory.mktemp("account")
    details, findings = build(folder, 50, catalog.all_actions(), users=3, unused_roles=2, paged=6)
    # A finding for a principal the export does not hold, and a role whose policy is broken.
    stranger = json.loads(next(findings.glob("role-00010-*.json")).read_text())
    stranger.update(id="stranger", resource="arn:aws:iam::111122223333:role/Nobody")
    (findings / "stranger.json").write_text(json.dumps(stranger))
    export = json.loads(details.read_text())
    broken = export["RoleDetailList"][11]["RolePolicyList"][0]
    broken["PolicyDocument"] = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:Get Object", "Resource": "*"}]}
    details.write_text(json.dumps(export))
    return folder, details, findings


def recommend(bundle, outdir: Path, *options) -> int:
    _, details, findings = bundle
    return main(["recommend", "--authorization-details", str(details), "--findings",
                 str(findings), "-o", str(outdir), *options])


@pytest.fixture(scope="module")
def first_run(bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert recommend(bundle, out, "--workers", "2") == 1  # Role00011's broken policy FAILED
    return out


EFFORT = ("seconds", "proofQueries")  # how much work it took: the workers' order changes it


def outputs(outdir: Path) -> dict:
    """Every recommendation and the summary rows, without the clock's fields and the effort."""
    found = {}
    for path in sorted((outdir / "recommendations").glob("*.json")):
        found[path.name] = {k: v for k, v in json.loads(path.read_text()).items()
                            if k not in TIMESTAMPS}
    summary = json.loads((outdir / "summary.json").read_text())
    found["summary"] = [{k: v for k, v in row.items() if k not in EFFORT}
                        for row in summary["findings"]]
    found["totals"] = {k: v for k, v in summary["totals"].items() if k not in EFFORT}
    return found


def test_every_recommendation_is_right_by_the_oracle(bundle, first_run, catalog):
    _, details, findings = bundle
    export = json.loads(details.read_text())
    documents = _documents(export)
    actions = catalog.all_actions()
    summary = json.loads((first_run / "summary.json").read_text())
    rows = {row["findingId"]: row for row in summary["findings"]}
    steps_checked = shared_checked = 0
    for path in findings.glob("*.json"):
        response = json.loads(path.read_text())
        row = rows[response["id"]]
        if response["id"] == "stranger":
            assert row["status"] == "UNKNOWN_PRINCIPAL"
            continue
        if response["findingType"] == "UnusedIAMRole":
            assert row["status"] == "DELETE_ROLE"
            continue
        if response["resource"].endswith("Role00011"):
            assert row["status"] == "FAILED" and "s3:Get Object" in row["error"]["message"]
            continue
        assert row["status"] == "SUCCEEDED", row
        recommendation = json.loads((first_run / "recommendations" / f"{response['id']}.json")
                                    .read_text())
        assert recommendation["status"] == "SUCCEEDED"
        assert recommendation["resourceArn"] == response["resource"]
        assert recommendation["principal"]["id"] and recommendation["updatedAt"]
        unused_actions, unused_services = _unused(findings, response["id"])
        for step in recommendation["recommendedSteps"]:
            detail = step["unusedPermissionsRecommendedStep"]
            if "sharedPolicy" in detail:  # judged once, against every holder, below
                shared_checked += 1
                continue
            original = documents[(response["resource"], detail["existingPolicyId"])]
            refined = loads(detail["recommendedPolicy"], "recommended") \
                if detail["recommendedAction"] == "CREATE_POLICY" else {"Statement": []}
            _check_with_oracle(original, refined, actions, unused_actions, unused_services)
            steps_checked += 1
    assert steps_checked > 40 and shared_checked > 0
    responses = [json.loads(p.read_text()) for p in findings.glob("*.json")]
    report = check_principals(export, _joined(responses), first_run, actions)
    assert len(report) == 53


def _joined(responses: list[dict]) -> list[dict]:
    """Pages of one finding as one response."""
    whole: dict[str, dict] = {}
    for response in responses:
        held = whole.setdefault(response["id"], {**response, "findingDetails": []})
        held["findingDetails"] = held["findingDetails"] + response["findingDetails"]
    return list(whole.values())


def test_group_policies_are_consolidated_never_rewritten_per_member(first_run):
    summary = json.loads((first_run / "summary.json").read_text())
    users = [row for row in summary["findings"] if ":user/" in (row.get("resourceArn") or "")]
    assert users
    shared = {entry["name"]: entry for entry in summary["sharedPolicies"]}
    for row in users:
        groups = [p for p in row["policies"] if p["kind"] == "group"]
        assert groups and all("patterns" not in p and p["sharedPolicy"] in shared for p in groups)
        assert all(p["ref"]["kind"] == "group-inline" and ":group/" in p["ref"]["owner"]
                   for p in groups)
        recommendation = json.loads((first_run / "recommendations" / f"{row['findingId']}.json")
                                    .read_text())
        for step in recommendation["recommendedSteps"]:
            detail = step["unusedPermissionsRecommendedStep"]
            if detail["policyRef"]["kind"] == "group-inline":
                assert "recommendedPolicy" not in detail and detail["sharedPolicy"] in shared


def test_pages_split_across_files_equal_the_whole_finding(bundle, first_run, tmp_path):
    _, details, findings = bundle
    whole = tmp_path / "findings"
    whole.mkdir()
    for path in findings.glob("*.json"):
        response = json.loads(path.read_text())
        target = whole / f"{response['id']}.json"
        if target.exists():  # the second page of a split finding: join it to the first
            joined = json.loads(target.read_text())
            joined["findingDetails"] += response["findingDetails"]
            joined.pop("nextToken", None)
            response = joined
        response.pop("nextToken", None)
        target.write_text(json.dumps(response))
    assert len(list(whole.glob("*.json"))) < len(list(findings.glob("*.json")))
    out = tmp_path / "out"
    assert main(["recommend", "--authorization-details", str(details), "--findings", str(whole),
                 "-o", str(out)]) == 1
    assert outputs(out) == outputs(first_run)


def test_report_page_in_a_real_browser(first_run):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    page = first_run / "report.html"
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                             "--dump-dom", page.resolve().as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    shown = {name: int(value) for name, value in
             re.findall(r'data-total="([^"]+)">(\d+)<', result.stdout)}
    totals = json.loads((first_run / "summary.json").read_text())["totals"]
    assert shown["findings"] == totals["findings"] == 54
    assert shown["succeeded"] == totals["SUCCEEDED"]
    assert shown["failed"] == totals["FAILED"] == 1
    assert shown["delete role"] == totals["DELETE_ROLE"] == 2
    # The page counts a policy shared by several principals once: a managed policy by its ARN,
    # an inline one by its principal and name (the first row that has it).
    distinct: dict = {}
    for row in json.loads((first_run / "summary.json").read_text())["findings"]:
        for policy in row.get("policies", []):
            if "patterns" in policy:
                key = policy["policyId"] if policy["kind"] == "managed" else \
                    (row["principal"], policy["policyId"])
                distinct.setdefault(key, policy)
    assert shown["policies changed"] == sum(p["changed"] for p in distinct.values()) > 0
    # Rows measure only each principal's own documents (shared ones are in sharedPolicies,
    # refined once), so the summary's totals count each policy once too.
    assert shown["policies changed"] == totals["policiesChanged"]
    assert shown["characters after"] == sum(p["characters"][1] for p in distinct.values())
    # One row per finding, and each shared policy once in its own table.
    assert result.stdout.count("<details>") == totals["findings"] + totals["sharedPolicies"]
    shared = result.stdout[result.stdout.index('id="shared"'):]
    assert shared.count("<details>") == totals["sharedPolicies"] > 0


def test_a_run_killed_midway_finishes_the_same(bundle, first_run, tmp_path):
    _, details, findings = bundle
    out = tmp_path / "out"
    command = [sys.executable, "-m", "refiner.cli", "recommend", "--authorization-details",
               str(details), "--findings", str(findings), "-o", str(out), "--workers", "1"]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if _lines(out / "results.jsonl") >= 5:
            os.killpg(process.pid, signal.SIGKILL)  # the workers too
            break
        time.sleep(0.01)
    process.wait(timeout=60)
    done = _lines(out / "results.jsonl")
    assert 0 < done < 51, "the run was not interrupted midway"
    assert not (out / "summary.json").exists()
    assert recommend(bundle, out) == 1
    assert outputs(out) == outputs(first_run)
    assert not list(out.rglob(".*.json.*"))  # no temporary file left behind


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def test_a_dying_worker_fails_only_its_finding(bundle, tmp_path, monkeypatch):
    import refiner.tasks

    real = refiner.tasks.refine_task

    def dies_on_one_policy(task, *args, **kwargs):
        if task["name"] == "Role00020-inline":  # as a solver abort would
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(task, *args, **kwargs)

    # Workers are forked from this process, so they run the patched function.
    monkeypatch.setattr(refiner.tasks, "refine_task", dies_on_one_policy)
    out = tmp_path / "out"
    assert recommend(bundle, out, "--workers", "2") == 1
    rows = json.loads((out / "summary.json").read_text())["findings"]
    dead = [r for r in rows if r["status"] == "FAILED" and r["resourceArn"].endswith("Role00020")]
    assert len(dead) == 1 and dead[0]["error"]["code"] == "SolverCrashed"
    assert sum(r["status"] == "SUCCEEDED" for r in rows) == 49  # 50 but the broken Role00011


def test_findings_read_by_pool_workers_give_the_same_results(bundle, first_run, tmp_path,
                                                            monkeypatch):
    """An account this small has its findings read in the parent; read by the workers (as a
    large account's are), the outputs are the same."""
    monkeypatch.setattr(refiner.recommend, "READ_IN_WORKERS", 1)
    out = tmp_path / "out"
    assert recommend(bundle, out, "--workers", "2") == 1
    assert outputs(out) == outputs(first_run)


def test_a_keep_rule_that_keeps_nothing_changes_nothing(bundle, first_run, tmp_path,
                                                       monkeypatch):
    """With keep rules a finding read by a worker is taken through the rules (without, its
    unused set is made as the worker sent it): one that matches no principal, the same."""
    monkeypatch.setattr(refiner.recommend, "READ_IN_WORKERS", 1)
    out = tmp_path / "out"
    assert recommend(bundle, out, "--workers", "2", "--keep-principal",
                     "arn:aws:iam::*:role/nobody-has-this-name") == 1
    assert outputs(out) == outputs(first_run)


def test_a_worker_dying_as_it_reads_a_finding_costs_nothing(bundle, first_run, tmp_path,
                                                            monkeypatch):
    """The finding a dying worker was reading is read again by the parent."""
    import refiner.tasks

    real, parent = refiner.tasks.read_task, os.getpid()

    def dies_in_a_worker(task, *args, **kwargs):
        if "-00007-" in task["key"] and os.getpid() != parent:
            (tmp_path / "died").touch()
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(task, *args, **kwargs)

    monkeypatch.setattr(refiner.tasks, "read_task", dies_in_a_worker)
    monkeypatch.setattr(refiner.recommend, "READ_IN_WORKERS", 1)
    out = tmp_path / "out"
    assert recommend(bundle, out, "--workers", "2") == 1
    assert (tmp_path / "died").exists()
    assert outputs(out) == outputs(first_run)


def test_dask_local_cluster_gives_the_same_results(bundle, first_run, tmp_path, monkeypatch):
    """On Dask the client reads the findings (however many: sending their texts to the
    cluster cost more than reading them), the workers refine and prove."""
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(refiner.recommend, "READ_IN_WORKERS", 1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        out = tmp_path / "out"
        assert recommend(bundle, out, "--scheduler", cluster.scheduler_address) == 1
    assert outputs(out) == outputs(first_run)


@pytest.mark.parametrize("read_in_workers", [1, refiner.recommend.READ_IN_WORKERS])
def test_bad_inputs_are_one_line(bundle, tmp_path, capsys, monkeypatch, read_in_workers):
    monkeypatch.setattr(refiner.recommend, "READ_IN_WORKERS", read_in_workers)
    _, details, findings = bundle
    (tmp_path / "f.json").write_text('{"not": "a finding"}')
    code = main(["recommend", "--authorization-details", str(details), "--findings",
                 str(tmp_path / "f.json"), "-o", str(tmp_path / "out")])
    assert code == 2 and "GetFindingV2" in capsys.readouterr().err
    code = main(["recommend", "--authorization-details", str(findings / "stranger.json"),
                 "--findings", str(findings), "-o", str(tmp_path / "out")])
    assert code == 2 and "get-account-authorization-details" in capsys.readouterr().err


# --- helpers ----------------------------------------------------------------------------------

def _documents(export: dict) -> dict:
    """(principal ARN, existingPolicyId) -> document; group policies keyed "group:..."."""
    managed = {p["Arn"]: next(v["Document"] for v in p["PolicyVersionList"] if v["IsDefaultVersion"])
               for p in export["Policies"]}
    groups = {g["GroupName"]: g for g in export["GroupDetailList"]}
    documents = {}
    for kind, key in (("Role", "RoleDetailList"), ("User", "UserDetailList")):
        for detail in export[key]:
            for inline in detail[f"{kind}PolicyList"]:
                documents[(detail["Arn"], inline["PolicyName"])] = inline["PolicyDocument"]
            for attached in detail["AttachedManagedPolicies"]:
                documents[(detail["Arn"], attached["PolicyArn"])] = managed[attached["PolicyArn"]]
            for group in detail.get("GroupList", []):
                for inline in groups[group]["GroupPolicyList"]:
                    documents[(detail["Arn"], "group:" + inline["PolicyName"])] = \
                        inline["PolicyDocument"]
    return documents


def _unused(findings: Path, finding_id: str) -> tuple[set[str], set[str]]:
    actions, services = set(), set()
    for path in findings.glob("*.json"):
        response = json.loads(path.read_text())
        if response["id"] != finding_id:
            continue
        for detail in response["findingDetails"]:
            entry = detail["unusedPermissionDetails"]
            if "actions" not in entry:
                services.add(entry["serviceNamespace"].lower())
            actions |= {f"{entry['serviceNamespace']}:{a['action']}".lower()
                        for a in entry.get("actions", [])}
    return actions, services


def _statements(document: dict) -> list[dict]:
    statement = document["Statement"]
    return statement if isinstance(statement, list) else [statement]


def _check_with_oracle(original: dict, refined: dict, actions, unused_actions, unused_services):
    """Statement by statement (refined statements are the original ones in order, some
    removed): nothing outside the original, no unused action, every used action kept."""
    remaining = list(_statements(refined))
    for statement in _statements(original):
        key = "Action" if "Action" in statement else "NotAction"
        rest = {k: v for k, v in statement.items() if k != key}
        if remaining and {k: v for k, v in remaining[0].items() if k != key} == rest:
            new = remaining.pop(0)
        else:
            new = None
        before, after = allowed_by(statement, actions), allowed_by(new, actions)
        assert after <= before
        if statement.get("Effect") == "Allow":
            assert not any(is_unused(a, unused_actions, unused_services) for a in after)
            used = {a for a in before if not is_unused(a, unused_actions, unused_services)}
            assert used <= after
    assert not remaining


def test_a_managed_policy_refined_over_the_limit_gets_a_proven_split(tmp_path, catalog):
    from corpus import generate_finding

    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ec2:*", "s3:*", "iam:*"], "Resource": "*"}]}
    arn = "arn:aws:iam::111122223333:policy/Broad"
    export = {"RoleDetailList": [{"RoleName": "App", "Arn": "arn:aws:iam::111122223333:role/App",
                                  "RolePolicyList": [],
                                  "AttachedManagedPolicies": [{"PolicyArn": arn}]}],
              "Policies": [{"Arn": arn, "PolicyVersionList": [  # as moto writes it: no name
                  {"Document": document, "IsDefaultVersion": True, "VersionId": "v1"}]}]}
    allowed = [a for a in catalog.all_actions()
               if a.lower().startswith(("ec2:", "s3:", "iam:"))]
    details = tmp_path / "details.json"
    details.write_text(json.dumps(export))
    finding = {"id": "broad", "resource": "arn:aws:iam::111122223333:role/App",
               "findingType": "UnusedPermission", "status": "ACTIVE",
               "findingDetails": [{"unusedPermissionDetails": {
                   "serviceNamespace": e["serviceNamespace"],
                   "actions": [{"action": a} for a in e["actions"]]}}
                   for e in generate_finding(allowed, 0.2, 3)]}
    (tmp_path / "finding.json").write_text(json.dumps(finding))
    out = tmp_path / "out"
    assert main(["recommend", "--authorization-details", str(details), "--findings",
                 str(tmp_path / "finding.json"), "-o", str(out)]) == 0
    row = json.loads((out / "summary.json").read_text())["findings"][0]
    (entry,) = row["policies"]
    assert entry["overLimit"] == 6_144 and entry["characters"][1] > 6_144
    split = entry["split"]
    assert split["fits"] and split["proven"] and split["fitsAttachmentQuota"]
    parts = [json.loads(text) for text in split["parts"]]
    step = json.loads((out / "recommendations" / "broad.json").read_text())["recommendedSteps"][0]
    refined = json.loads(step["unusedPermissionsRecommendedStep"]["recommendedPolicy"])
    actions = catalog.all_actions()
    assert set().union(*(allowed_by(s, actions) for p in parts for s in p["Statement"])) == \
        set().union(*(allowed_by(s, actions) for s in refined["Statement"]))


# --- found by review: each a regression test ---------------------------------------------------

def small_account(folder: Path, policy: dict, attached: list | None = None,
                  catalog_names: dict | None = None) -> tuple[Path, Path]:
    export = {"RoleDetailList": [{"RoleName": "R", "Arn": "arn:aws:iam::111122223333:role/R",
                                  "RolePolicyList": [{"PolicyName": "r-inline",
                                                      "PolicyDocument": policy}],
                                  "AttachedManagedPolicies": attached or []}]}
    (folder / "details.json").write_text(json.dumps(export))
    findings = folder / "findings"
    findings.mkdir(exist_ok=True)
    (findings / "f.json").write_text(json.dumps({
        "id": "f", "resource": "arn:aws:iam::111122223333:role/R", "status": "ACTIVE",
        "findingType": "UnusedPermission", "findingDetails": [{"unusedPermissionDetails": {
            "serviceNamespace": "s3", "actions": [{"action": "GetObject"}]}}]}))
    return folder / "details.json", findings


S3_GET = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]}


def run_small(details, findings, out, *options) -> int:
    return main(["recommend", "--authorization-details", str(details), "--findings",
                 str(findings), "-o", str(out), "--workers", "1", *map(str, options)])


def test_failures_are_tried_again_and_a_changed_catalog_redoes_the_work(tmp_path, monkeypatch):
    import refiner.tasks

    details, findings = small_account(tmp_path, S3_GET)
    out = tmp_path / "out"
    real = refiner.tasks.refine_task

    def dies(task, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(refiner.tasks, "refine_task", dies)
    assert run_small(details, findings, out) == 1
    monkeypatch.setattr(refiner.tasks, "refine_task", real)
    assert run_small(details, findings, out) == 0  # the failure was not kept as done
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"s3": ["GetObject", "GetObjectAcl"]}))
    assert run_small(details, findings, out, "--catalog", catalog) == 0
    first = (out / "recommendations" / "f.json").read_text()
    catalog.write_text(json.dumps({"s3": ["GetObject", "GetObjectAcl", "GetBucketAcl"]}))
    assert run_small(details, findings, out, "--catalog", catalog) == 0
    assert "GetBucketAcl" in (out / "recommendations" / "f.json").read_text() != first


def test_a_principal_whose_policies_the_export_lacks_fails(tmp_path):
    details, findings = small_account(tmp_path, S3_GET, attached=[
        {"PolicyName": "Gone", "PolicyArn": "arn:aws:iam::111122223333:policy/Gone"}])
    out = tmp_path / "out"
    assert run_small(details, findings, out) == 1
    row = json.loads((out / "summary.json").read_text())["findings"][0]
    assert row["status"] == "FAILED" and "policy/Gone" in row["error"]["message"]


def test_the_same_export_twice_makes_one_step_per_policy(tmp_path):
    details, findings = small_account(tmp_path, S3_GET)
    out = tmp_path / "out"
    assert main(["recommend", "--authorization-details", str(details), str(details),
                 "--findings", str(findings), "-o", str(out), "--workers", "1"]) == 0
    steps = json.loads((out / "recommendations" / "f.json").read_text())["recommendedSteps"]
    assert len(steps) == 1


def test_stale_and_half_written_files_do_not_survive_a_run(tmp_path):
    details, findings = small_account(tmp_path, S3_GET)
    out = tmp_path / "out"
    assert run_small(details, findings, out) == 0
    (out / "state" / ".f.json.abc123").write_text("{")  # what kill -9 mid-write leaves
    finding = json.loads((findings / "f.json").read_text())
    (findings / "f.json").write_text(json.dumps({**finding, "status": "ARCHIVED"}))
    assert run_small(details, findings, out) == 0
    assert not list((out / "recommendations").iterdir()) and not list((out / "state").iterdir())


def test_json_lines_keep_line_separators_inside_strings(tmp_path):
    details, findings = small_account(tmp_path, S3_GET)
    response = json.loads((findings / "f.json").read_text())
    response["note"] = "a\u2028b"
    lines = tmp_path / "findings.jsonl"
    lines.write_text(json.dumps(response, ensure_ascii=False) + "\n")
    assert run_small(details, lines, tmp_path / "out") == 0


def test_outputs_that_overlap_inputs_and_unreachable_schedulers_are_refused(tmp_path, capsys):
    details, findings = small_account(tmp_path, S3_GET)
    assert run_small(details, findings, findings) == 2
    assert "overlaps the input" in capsys.readouterr().err
    assert run_small(details, findings, tmp_path / "out", "--scheduler", "bogus") == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


def test_what_a_not_action_policy_grants_is_every_action_but_those_it_excludes(catalog):
    from refiner.tasks import granted_actions

    text = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]})
    granted = granted_actions(text, catalog)
    assert "ec2:RunInstances" in granted and not any(a.lower().startswith("iam:") for a in granted)
    assert len(granted) == len(catalog) - len(catalog.actions_of("iam"))
