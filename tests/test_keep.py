"""Keep rules: what is kept is never removed, and the kernel proves it (kept means used)."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import is_unused, matches, statement_allows
from strategies import cases, patterns

import refiner
from refiner.cli import main
from refiner.keep import KeepRules

with contextlib.suppress(pytest.skip.Exception):  # moto's IAM and the fake Access Analyzer
    from test_aws import analyzer, aws, iam_server  # noqa: F401

ACCOUNT = "111122223333"
CATALOG = {"s3": ["GetObject", "PutObject", "DeleteObject", "ListBucket", "GetBucketAcl"],
           "iam": ["PassRole", "GetRole", "CreateRole", "DeleteRole"],
           "ec2": ["RunInstances", "DescribeInstances", "TerminateInstances"]}
# The NOREPO statement is written with odd spacing: it must come out byte for byte.
POLICY = """{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "NOREPOBreakGlass",   "Effect": "Allow",
       "Action": [ "s3:*",  "iam:*" ], "Resource": "*"},
    {"Sid": "Work", "Effect": "Allow", "Action": ["s3:Get*", "iam:PassRole", "iam:GetRole"],
     "Resource": "*"}
  ]
}
"""
NOREPO = POLICY[POLICY.index('{"Sid": "NOREPO'):POLICY.index('"*"},') + 4]
FINDING = [{"serviceNamespace": "s3", "actions": ["GetBucketAcl", "DeleteObject"]},
           {"serviceNamespace": "iam", "actions": ["PassRole", "CreateRole"]}]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "policy.json").write_text(POLICY)
    (tmp_path / "finding.json").write_text(json.dumps(FINDING))
    (tmp_path / "catalog.json").write_text(json.dumps(CATALOG))
    return tmp_path


def refine(files: Path, *options: str, out: str = "out.json") -> int:
    return main(["refine", str(files / "policy.json"), "--unused", str(files / "finding.json"),
                 "--catalog", str(files / "catalog.json"), "-o", str(files / out), *options])


def actions_of(text: str, sid: str) -> list[str]:
    statement = next(s for s in json.loads(text)["Statement"] if s.get("Sid") == sid)
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


# --- refine and verify ---------------------------------------------------------------------------

def test_norepo_statement_is_left_byte_for_byte_and_the_others_are_refined(files):
    assert refine(files) == 0
    plain = (files / "out.json").read_text()
    assert NOREPO not in plain  # without the rule, the break-glass statement is narrowed
    assert refine(files, "--keep-sid", "NOREPO*", out="kept.json") == 0
    kept = (files / "kept.json").read_text()
    assert NOREPO in kept
    assert kept.replace(NOREPO, "") != POLICY.replace(NOREPO, "")  # Work was still refined
    assert "s3:GetBucketAcl" not in actions_of(kept, "Work")


def test_pass_role_is_kept_though_the_finding_lists_it(files, capsys):
    assert refine(files) == 0
    assert "iam:PassRole" not in actions_of((files / "out.json").read_text(), "Work")
    assert refine(files, "--keep-action", "IAM:pass*", "--stats") == 0
    assert "iam:PassRole" in actions_of((files / "out.json").read_text(), "Work")
    assert "refiner: kept: iam:PassRole: keep-action IAM:pass*" in capsys.readouterr().err


def test_aws_format_notes_every_kept_item(files, capsys):
    assert refine(files, "--keep-sid", "NOREPO*", "--keep-action", "iam:PassRole",
                  "--format", "aws") == 0
    response = json.loads((files / "out.json").read_text())
    assert response["kept"] == [
        {"action": "iam:PassRole", "reason": "keep-action iam:PassRole"},
        {"statement": 0, "sid": "NOREPOBreakGlass", "reason": "keep-sid NOREPO*"}]


def test_verify_checks_a_refinement_made_with_the_same_rules(files, capsys):
    rules = ["--keep-sid", "NOREPO*", "--keep-action", "iam:PassRole"]
    assert refine(files, *rules, out="kept.json") == 0
    assert refine(files, out="plain.json") == 0

    def verify(refined: str, *options: str) -> int:
        return main(["verify", str(files / "policy.json"), str(files / refined), "--unused",
                     str(files / "finding.json"), "--catalog", str(files / "catalog.json"),
                     *options])

    assert verify("kept.json", *rules) == 0
    assert verify("kept.json") == 1  # what the rules kept is unused without them
    capsys.readouterr()
    assert verify("plain.json", *rules) == 1  # the rules' refinement is not the plain one
    report = capsys.readouterr().out
    assert "keep-sid NOREPO* keeps this statement" in report
    assert "incomplete" in report and "iam:passrole" in report.lower()


def test_a_kept_principal_uses_everything(files):
    finding = {"id": "f1", "resource": f"arn:aws:iam::{ACCOUNT}:role/ops/BreakGlass",
               "findingType": "UnusedPermission", "status": "ACTIVE",
               "findingDetails": [{"unusedPermissionDetails": entry} for entry in FINDING]}
    (files / "finding.json").write_text(json.dumps(finding))
    assert refine(files, "--keep-principal", "arn:aws:iam::*:role/*break-glass*") == 0
    assert (files / "out.json").read_text() != POLICY
    assert refine(files, "--keep-principal", "arn:aws:iam::*:role/*breakglass*") == 0
    assert (files / "out.json").read_text() == POLICY


def test_a_config_file_gives_what_the_flags_give(files, monkeypatch):
    rules = ["--keep-sid", "NOREPO*", "--keep-action", "iam:PassRole", "--format", "aws"]
    assert refine(files, *rules, out="flags.json") == 0
    (files / "refiner.toml").write_text(
        '[keep]\nsids = ["NOREPO*"]\nactions = ["iam:PassRole"]\n')
    monkeypatch.chdir(files)  # refiner.toml in the working folder is read without --config
    assert refine(files, "--format", "aws", out="config.json") == 0
    (files / "elsewhere.toml").write_text((files / "refiner.toml").read_text())
    (files / "refiner.toml").unlink()
    assert refine(files, "--format", "aws", "--config", "elsewhere.toml", out="explicit.json") == 0

    def without_clock(name: str) -> dict:
        value = json.loads((files / name).read_text())
        return {k: v for k, v in value.items() if k not in ("startedAt", "completedAt")}

    assert without_clock("flags.json") == without_clock("config.json") == \
        without_clock("explicit.json")
    assert without_clock("flags.json")["kept"]


def test_templates_keep_norepo_statements(files):
    template = {"Resources": {"App": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
        "PolicyDocument": json.loads(POLICY)}}}}
    (files / "template.json").write_text(json.dumps(template, indent=1) + "\n")
    assert main(["refine", str(files / "template.json"), "--unused", str(files / "finding.json"),
                 "--catalog", str(files / "catalog.json"), "-o", str(files / "out.json"),
                 "--keep-sid", "NOREPO*"]) == 0
    written = json.loads((files / "out.json").read_text())
    document = written["Resources"]["App"]["Properties"]["PolicyDocument"]
    assert document["Statement"][0] == json.loads(POLICY)["Statement"][0]
    assert document["Statement"][1] != json.loads(POLICY)["Statement"][1]

    def verify(*options: str) -> int:
        return main(["verify", str(files / "template.json"), str(files / "out.json"),
                     "--unused", str(files / "finding.json"), "--catalog",
                     str(files / "catalog.json"), *options])

    assert verify("--keep-sid", "NOREPO*") == 0
    assert verify() == 1


# --- bad rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("option", "message"), [
    ("--keep-sid=", "--keep-sid: empty pattern"),
    ("--keep-sid=NO REPO", "outside IAM's alphabet"),
    ("--keep-action=", "--keep-action: empty pattern"),
    ("--keep-action=iam:Pass Role", "invalid action pattern"),
    ("--keep-principal=arn:aws:iam::1:role/[ab]", "outside IAM's alphabet"),
])
def test_bad_rules_are_refused_with_one_line(files, capsys, option, message):
    assert refine(files, option) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (files / "out.json").exists()


@pytest.mark.parametrize(("config", "message"), [
    ('[keep]\nsid = ["NOREPO*"]\n', "unknown key keep.sid"),
    ('keep_sids = ["NOREPO*"]\n', "unknown key 'keep_sids'"),
    ('[keep]\nsids = "NOREPO*"\n', "keep.sids must be a list of strings"),
    ('[keep]\ngrace_days = -1\n', "--grace-days must not be negative"),
    ('[keep]\ngrace_days = 1.5\n', "keep.grace_days must be a whole number of days"),
    ('[keep\n', "is not TOML"),
])
def test_bad_config_files_are_refused_with_one_line(files, capsys, config, message):
    (files / "bad.toml").write_text(config)
    assert refine(files, "--config", str(files / "bad.toml")) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_missing_config_file_is_refused(files, capsys):
    assert refine(files, "--config", str(files / "absent.toml")) == 2
    assert "cannot read the config" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "message"), [
    ("--grace-days=-3", "--grace-days must not be negative (got -3)"),
    ("--keep-tag=breakglass", "--keep-tag 'breakglass': expected KEY=VALUE"),
    ("--keep-tag==true", "--keep-tag '=true': empty key"),
    ("--keep-tag=team=a|b", "--keep-tag 'team=a|b': outside IAM's tag alphabet"),
])
def test_bad_recommend_rules_are_refused_before_anything_is_read(tmp_path, capsys, option,
                                                                 message):
    assert main(["recommend", "--authorization-details", str(tmp_path / "a.json"), "--findings",
                 str(tmp_path / "f"), "-o", str(tmp_path / "out"), option]) == 2
    assert capsys.readouterr().err.startswith(f"refiner: {message}")
    assert not (tmp_path / "out").exists()


def test_refine_says_it_keeps_nothing_for_tags_and_grace_days(files, capsys):
    (files / "keep.toml").write_text('[keep]\ntags = ["purpose=break-glass"]\ngrace_days = 14\n')
    assert refine(files, "--config", str(files / "keep.toml"), out="config.json") == 0
    assert "tags and grace_days apply to recommend" in capsys.readouterr().err
    assert refine(files) == 0
    assert (files / "config.json").read_text() == (files / "out.json").read_text()


# --- the Python API -----------------------------------------------------------------------------

def test_the_api_takes_the_same_rules_with_the_same_checks():
    policy = json.loads(POLICY)
    result = refiner.refine(policy, FINDING, CATALOG,
                            keep={"sids": ["NOREPO*"], "actions": ["iam:PassRole"]})
    assert result.policy["Statement"][0] == policy["Statement"][0]
    assert "iam:PassRole" in result.policy["Statement"][1]["Action"]
    assert {"action": "iam:PassRole", "reason": "keep-action iam:PassRole"} in result.kept
    rules = refiner.KeepRules(sids=["NOREPO*"], actions=["iam:PassRole"])
    assert refiner.verify(policy, result.policy, FINDING, CATALOG, keep=rules).accepted
    assert not refiner.verify(policy, result.policy, FINDING, CATALOG).accepted
    with pytest.raises(refiner.InputError, match="unknown key keep.sid"):
        refiner.refine(policy, FINDING, CATALOG, keep={"sid": ["NOREPO*"]})
    with pytest.raises(refiner.InputError, match="empty pattern"):
        refiner.KeepRules(actions=[" "])
    with pytest.raises(refiner.InputError, match="must not be negative"):
        refiner.KeepRules(grace_days=-1)


@given(cases(), st.data())
def test_kept_actions_and_statements_are_never_lost(case, data):
    """Whatever the finding says: every catalog action a keep-action pattern matches stays
    allowed by each statement that allowed it (a finding name the catalog does not know stays
    unused: refinement keeps only what the catalog knows), every statement whose Sid a keep-sid
    pattern matches stays as it was, and nothing else unused is admitted."""
    catalog, document, finding = case
    kept_patterns = data.draw(st.lists(patterns(catalog), max_size=2))
    sids = data.draw(st.lists(st.sampled_from(["S1*", "S?", "*"]), max_size=1))
    rules = KeepRules(sids=sids, actions=kept_patterns)
    result = refiner.refine(document, finding, catalog, keep=rules)
    names = catalog.all_actions() + [f"{e['serviceNamespace']}:{a}" for e in finding
                                     for a in e.get("actions", [])]
    known = {name.lower() for name in catalog.all_actions()}
    kept = {name.lower() for name in names
            if name.lower() in known and any(matches(p, name) for p in kept_patterns)}
    dead = {f"{e['serviceNamespace']}:{a}".lower() for e in finding for a in e.get("actions", [])}
    services = {e["serviceNamespace"] for e in finding if not e.get("actions")}
    for original, refined in result.run.refinement.pairs:
        if rules.keeps_statement(original) or original.get("Effect") != "Allow":
            assert refined == original
            continue
        for name in names:
            if name.lower() in kept and statement_allows(original, name):
                assert statement_allows(refined, name), (name, refined)
            if statement_allows(refined, name) and name.lower() not in kept:
                assert not is_unused(name, dead, services), (name, refined)
    if result.policy is not None:  # and verify with the same rules accepts it
        assert refiner.verify(document, result.policy, finding, catalog, keep=rules).accepted


# --- recommend: principals kept whole, grace days ------------------------------------------------

ANALYZED = datetime(2026, 11, 20, tzinfo=timezone.utc)


def _when(days_before: float) -> str:
    return (ANALYZED - timedelta(days=days_before)).isoformat().replace("+00:00", "Z")


def _role(name: str, created_days_before: float, tags=(), inline=None, attached=()) -> dict:
    return {"RoleName": name, "Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}",
            "RoleId": f"AROA{name.upper()}", "Path": "/", "CreateDate": _when(created_days_before),
            "Tags": [{"Key": k, "Value": v} for k, v in tags],
            "RolePolicyList": [{"PolicyName": "inline", "PolicyDocument": inline}] if inline else [],
            "AttachedManagedPolicies": [{"PolicyName": a.rsplit("/", 1)[-1], "PolicyArn": a}
                                        for a in attached]}


def _document(*actions: str) -> dict:
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}


def _finding(role: str, unused: dict) -> dict:
    return {"id": f"finding-{role}", "resource": f"arn:aws:iam::{ACCOUNT}:role/{role}",
            "resourceType": "AWS::IAM::Role", "findingType": "UnusedPermission",
            "status": "ACTIVE", "analyzedAt": _when(0),
            "findingDetails": [{"unusedPermissionDetails": {
                "serviceNamespace": service, "actions": [{"action": a} for a in actions]}}
                for service, actions in unused.items()]}


DATA = f"arn:aws:iam::{ACCOUNT}:policy/app-data"


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    """Three roles: a break-glass role with Action "*" (tagged), an app role whose managed
    policy's newest version (5 days before the analysis) added s3:PutObject, and a role
    created 10 days before the analysis."""
    folder = tmp_path_factory.mktemp("account")
    export = {
        "RoleDetailList": [
            _role("ops-break-glass", 400, tags=[("purpose", "break-glass")],
                  inline=_document("*")),
            _role("app", 300, attached=[DATA]),
            _role("newcomer", 10, inline=_document("ec2:*")),
        ],
        "UserDetailList": [], "GroupDetailList": [],
        "Policies": [{"PolicyName": "app-data", "Arn": DATA, "DefaultVersionId": "v2",
                      "PolicyVersionList": [
                          # The API (and moto) give documents URL-encoded.
                          {"VersionId": "v1", "IsDefaultVersion": False, "CreateDate": _when(90),
                           "Document": quote(json.dumps(_document("s3:GetObject",
                                                                  "s3:DeleteObject")))},
                          {"VersionId": "v2", "IsDefaultVersion": True, "CreateDate": _when(5),
                           "Document": _document("s3:GetObject", "s3:DeleteObject",
                                                 "s3:PutObject")}]}],
    }
    (folder / "auth.json").write_text(json.dumps(export))
    findings = folder / "findings"
    findings.mkdir()
    for finding in (_finding("ops-break-glass", {"s3": [], "iam": [], "ec2": ["RunInstances"]}),
                    _finding("app", {"s3": ["PutObject", "DeleteObject"]}),
                    _finding("newcomer", {"ec2": ["TerminateInstances"]})):
        (findings / f"{finding['id']}.json").write_text(json.dumps(finding))
    (folder / "catalog.json").write_text(json.dumps(CATALOG))
    return folder


def recommend(account: Path, out: Path, *options: str) -> dict:
    code = main(["recommend", "--authorization-details", str(account / "auth.json"),
                 "--findings", str(account / "findings"), "--catalog",
                 str(account / "catalog.json"), "-o", str(out), "--workers", "1", *options])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    return {row["resourceArn"].rsplit("/", 1)[-1]: row for row in summary["findings"]}


def recommended_policy(out: Path, role: str) -> dict | None:
    response = json.loads((out / "recommendations" / f"finding-{role}.json").read_text())
    steps = response["recommendedSteps"]
    return json.loads(steps[0]["unusedPermissionsRecommendedStep"]["recommendedPolicy"]) \
        if steps else None


def test_without_rules_the_break_glass_role_is_refined(account, tmp_path):
    rows = recommend(account, tmp_path / "out")
    assert rows["ops-break-glass"]["status"] == "SUCCEEDED"
    assert recommended_policy(tmp_path / "out", "ops-break-glass")["Statement"][0]["Action"] != "*"


@pytest.mark.parametrize("rule", [
    ["--keep-principal", "arn:aws:iam::*:role/*-break-glass"],
    ["--keep-tag", "purpose=break-glass"],
])
def test_a_break_glass_role_is_kept_by_pattern_and_by_tag(account, tmp_path, rule):
    out = tmp_path / "out"
    rows = recommend(account, out, *rule)
    row = rows["ops-break-glass"]
    assert row["status"] == "KEPT"
    reason = ("keep-principal " if rule[0] == "--keep-principal" else "keep-tag ") + rule[1]
    assert row["kept"] == [{"principal": row["resourceArn"], "reason": reason}]
    assert not (out / "recommendations" / "finding-ops-break-glass.json").exists()
    assert rows["app"]["status"] == "SUCCEEDED"  # the others are refined as before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["KEPT"] == 1
    page = (out / "report.html").read_text()
    assert "<span>kept</span>" in page  # the column, and its cell with the reason
    assert f"<span class='kept'>{row['resourceArn']}: {reason}</span>" in page


def test_grace_days_keep_an_action_a_recent_version_added(account, tmp_path):
    rows = recommend(account, tmp_path / "fourteen", "--grace-days", "14")
    app = rows["app"]
    assert app["status"] == "SUCCEEDED"
    (kept,) = app["kept"]
    assert kept["action"] == "s3:PutObject"
    assert kept["reason"].startswith(f"grace-days 14: granted by {DATA} since version v2, "
                                     "created 5.0 days before the analysis")
    policy = recommended_policy(tmp_path / "fourteen", "app")
    assert policy["Statement"][0]["Action"] == ["s3:GetObject", "s3:PutObject"]
    response = json.loads((tmp_path / "fourteen" / "recommendations" / "finding-app.json")
                          .read_text())
    assert response["kept"] == [kept]  # the recommendation carries it as a note
    assert "grace-days 14" in (tmp_path / "fourteen" / "report.html").read_text()

    rows = recommend(account, tmp_path / "three", "--grace-days", "3")
    assert rows["app"]["kept"] == []
    policy = recommended_policy(tmp_path / "three", "app")
    assert policy["Statement"][0]["Action"] == ["s3:GetObject"]


def test_grace_days_skip_a_young_principal(account, tmp_path):
    rows = recommend(account, tmp_path / "fourteen", "--grace-days", "14")
    assert rows["newcomer"]["status"] == "KEPT"
    assert "grace-days 14: created" in rows["newcomer"]["kept"][0]["reason"]
    rows = recommend(account, tmp_path / "three", "--grace-days", "3")
    assert rows["newcomer"]["status"] == "SUCCEEDED"


def test_recommend_reads_the_same_rules_from_a_config_file(account, tmp_path):
    flags = recommend(account, tmp_path / "flags", "--grace-days", "14", "--keep-tag",
                      "purpose=break-glass")
    config = tmp_path / "keep.toml"
    config.write_text('[keep]\ngrace_days = 14\ntags = ["purpose=break-glass"]\n')
    from_config = recommend(account, tmp_path / "config", "--config", str(config))

    def comparable(rows: dict) -> dict:
        return {role: {k: v for k, v in row.items() if k != "seconds"}
                for role, row in rows.items()}

    assert comparable(flags) == comparable(from_config)
    assert flags["ops-break-glass"]["status"] == "KEPT" and flags["app"]["kept"]


@pytest.mark.parametrize(("missing", "role", "message"), [
    ("version", "app", "v1 CreateDate is missing"),
    ("principal", "newcomer", "newcomer CreateDate is missing"),
    ("analysis", "app", "analyzedAt is missing"),
])
def test_grace_days_fail_a_finding_whose_dates_are_missing(account, tmp_path, missing, role,
                                                           message):
    export = json.loads((account / "auth.json").read_text())
    if missing == "version":
        del export["Policies"][0]["PolicyVersionList"][0]["CreateDate"]
    elif missing == "principal":
        del export["RoleDetailList"][2]["CreateDate"]
    broken = tmp_path / "account"
    (broken / "findings").mkdir(parents=True)
    (broken / "auth.json").write_text(json.dumps(export))
    (broken / "catalog.json").write_text((account / "catalog.json").read_text())
    for path in (account / "findings").iterdir():
        finding = json.loads(path.read_text())
        if missing == "analysis":
            del finding["analyzedAt"]
        (broken / "findings" / path.name).write_text(json.dumps(finding))
    code = main(["recommend", "--authorization-details", str(broken / "auth.json"),
                 "--findings", str(broken / "findings"), "--catalog",
                 str(broken / "catalog.json"), "-o", str(tmp_path / "out"), "--workers", "1",
                 "--grace-days", "14"])
    assert code == 1  # that finding FAILED, named: a date is never guessed
    rows = {r["resourceArn"].rsplit("/", 1)[-1]: r
            for r in json.loads((tmp_path / "out" / "summary.json").read_text())["findings"]}
    assert rows[role]["status"] == "FAILED"
    assert message in rows[role]["error"]["message"]


def test_a_pattern_that_covers_a_service_keeps_it_whole_even_one_the_catalog_lacks():
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["newsvc:*", "s3:*"], "Resource": "*"}]}
    finding = [{"serviceNamespace": "newsvc"}, {"serviceNamespace": "s3"}]
    assert refiner.refine(policy, finding, CATALOG).detach  # without a rule nothing is left
    result = refiner.refine(policy, finding, CATALOG, keep={"actions": ["NewSvc:*"]})
    assert result.policy["Statement"][0]["Action"] == ["newsvc:*"]
    assert result.kept == [{"action": "newsvc:*", "reason": "keep-action NewSvc:*"}]
    everything = refiner.refine(policy, finding, CATALOG, keep={"actions": ["*"]})
    assert not everything.changed
    assert [item["action"] for item in everything.kept] == ["newsvc:*", "s3:*"]


def test_a_re_run_with_other_rules_redoes_what_they_change(account, tmp_path):
    out = tmp_path / "out"
    recommend(account, out, "--grace-days", "3")
    assert (out / "recommendations" / "finding-ops-break-glass.json").exists()
    rows = recommend(account, out, "--grace-days", "14", "--keep-tag", "purpose=break-glass")
    assert rows["ops-break-glass"]["status"] == "KEPT"
    assert not (out / "recommendations" / "finding-ops-break-glass.json").exists()
    assert rows["app"]["kept"][0]["action"] == "s3:PutObject"  # done again, not reused
    assert recommended_policy(out, "app")["Statement"][0]["Action"] == ["s3:GetObject",
                                                                      "s3:PutObject"]


# --- the live-AWS loop: fetch's bundle from moto's IAM and the fake Access Analyzer -----------

SHARED = f"arn:aws:iam::{ACCOUNT}:policy/team-data"


@pytest.fixture(scope="module")
def shared_account(tmp_path_factory):
    """Two roles that hold one managed policy; neither uses s3:PutObject nor s3:DeleteObject,
    and the reader (tagged keep=yes) has its own inline policy too."""
    folder = tmp_path_factory.mktemp("shared")
    export = {
        "RoleDetailList": [
            _role("writer", 300, attached=[SHARED]),
            _role("reader", 300, tags=[("keep", "yes")], attached=[SHARED],
                  inline=_document("s3:ListBucket", "s3:GetBucketAcl")),
        ],
        "UserDetailList": [], "GroupDetailList": [],
        "Policies": [{"PolicyName": "team-data", "Arn": SHARED, "DefaultVersionId": "v1",
                      "PolicyVersionList": [
                          {"VersionId": "v1", "IsDefaultVersion": True, "CreateDate": _when(90),
                           "Document": _document("s3:GetObject", "s3:PutObject",
                                                 "s3:DeleteObject")}]}],
    }
    (folder / "auth.json").write_text(json.dumps(export))
    findings = folder / "findings"
    findings.mkdir()
    for finding in (_finding("writer", {"s3": ["PutObject", "DeleteObject"]}),
                    _finding("reader", {"s3": ["PutObject", "DeleteObject", "GetBucketAcl"]})):
        (findings / f"{finding['id']}.json").write_text(json.dumps(finding))
    (folder / "catalog.json").write_text(json.dumps(CATALOG))
    return folder


def shared_record(out: Path) -> dict:
    (record,) = (out / "shared").glob("team-data~*.json")
    return json.loads(record.read_text())


def test_a_kept_action_stays_in_a_shared_policy(shared_account, tmp_path):
    recommend(shared_account, tmp_path / "plain")
    plain = shared_record(tmp_path / "plain")
    assert plain["status"] == "CHANGED"
    assert plain["removed"] == ["s3:DeleteObject", "s3:PutObject"]
    recommend(shared_account, tmp_path / "kept", "--keep-action", "s3:putobject")
    kept = shared_record(tmp_path / "kept")
    assert kept["status"] == "CHANGED"
    assert kept["removed"] == ["s3:DeleteObject"]  # used by every holder, as kept means
    assert "s3:PutObject" in json.loads(kept["refined"])["Statement"][0]["Action"]


def test_a_kept_holder_keeps_the_whole_shared_policy(shared_account, tmp_path):
    out = tmp_path / "out"
    rows = recommend(shared_account, out, "--keep-tag", "keep=yes")
    assert rows["reader"]["status"] == "KEPT"
    assert rows["reader"]["kept"] == [{"principal": f"arn:aws:iam::{ACCOUNT}:role/reader",
                                       "reason": "keep-tag keep=yes"}]
    record = shared_record(out)
    # The reader uses everything: nothing it holds goes, though the writer leaves two unused.
    assert record["status"] == "UNCHANGED" and record["removed"] == []
    assert rows["writer"]["status"] == "SUCCEEDED"
    assert recommended_policy(out, "writer") is None
    assert not (out / "recommendations" / "finding-reader.json").exists()


def test_the_aws_loop_keeps_tagged_and_young_principals(request, tmp_path):
    pytest.importorskip("moto.server")
    from test_aws import ACCOUNT as MOTO_ACCOUNT

    iam, _ = request.getfixturevalue("aws")
    request.getfixturevalue("analyzer")
    iam.tag_role(RoleName="App", Tags=[{"Key": "purpose", "Value": "break-glass"}])
    assert main(["aws", "fetch", "-o", str(tmp_path / "bundle")]) == 0

    def rows(*options: str) -> dict:
        out = tmp_path / "out"
        main(["recommend", "--bundle", str(tmp_path / "bundle"), "-o", str(out), "--workers",
              "1", *options])
        return {row["findingId"]: row
                for row in json.loads((out / "summary.json").read_text())["findings"]}

    assert rows()["app"]["status"] == "SUCCEEDED"
    app = rows("--keep-tag", "purpose=break-glass")["app"]
    assert (app["status"], app["kept"]) == ("KEPT", [
        {"principal": f"arn:aws:iam::{MOTO_ACCOUNT}:role/App", "reason": "keep-tag purpose=break-glass"}])
    # moto creates every principal now, after the findings' analysis (2024): all are young.
    young = rows("--grace-days", "14")
    assert young["app"]["status"] == young["dev"]["status"] == "KEPT"
    assert young["dev"]["kept"][0]["reason"].startswith("grace-days 14: created ")
