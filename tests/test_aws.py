"""Live AWS against real local servers: moto's IAM/STS server and a fake Access Analyzer built
from botocore's model, both on 127.0.0.1. fetch -> recommend -> compare -> apply -> rollback."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
from conftest import EXAMPLES

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from aws_fakes import FakeAccessAnalyzer  # noqa: E402

from refiner.cli import main  # noqa: E402

ACCOUNT = "123456789012"  # moto's account
ANALYZER = f"arn:aws:access-analyzer:us-east-1:{ACCOUNT}:analyzer/unused"
EXAMPLE = json.loads((EXAMPLES / "policy.json").read_text())
EXAMPLE_FINDING = json.loads((EXAMPLES / "finding.json").read_text())
# AWS's published answer for s3:Get* in the worked example (October 2024): seven entries.
AWS_2024_GET = ["s3:GetAccess*", "s3:GetAccountPublicAccessBlock", "s3:GetDataAccess",
                "s3:GetJobTagging", "s3:GetMulti*", "s3:GetObject*", "s3:GetStorage*"]
S3_READ = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"


@pytest.fixture(scope="module")
def iam_server():
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"  # AWS managed policies exist
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(iam_server, monkeypatch):
    """Clients on the local servers, and a fresh account: role App with the worked example
    inline, a customer managed policy and AWS's S3 read-only policy; user dev; role Old."""
    import requests

    requests.post(f"{iam_server}/moto-api/reset", timeout=10)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_IAM": iam_server,
                       "AWS_ENDPOINT_URL_STS": iam_server}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    iam = boto3.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action":
                        "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}]})
    for role in ("App", "Old"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName="App", PolicyName="app-inline",
                        PolicyDocument=json.dumps(EXAMPLE, indent=2))
    lambda_policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Lambda", "Effect": "Allow", "Action": "lambda:*Function*", "Resource": "*"}]}
    managed = iam.create_policy(PolicyName="AppLambda",
                                PolicyDocument=json.dumps(lambda_policy))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="App", PolicyArn=managed)
    iam.attach_role_policy(RoleName="App", PolicyArn=S3_READ)
    iam.create_user(UserName="dev")
    iam.put_user_policy(UserName="dev", PolicyName="dev-inline", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["iam:Get*", "iam:List*"], "Resource": "*"}]}))
    return iam, managed


def findings() -> dict[str, dict]:
    app = copy.deepcopy(EXAMPLE_FINDING)
    app.update(id="app", resource=f"arn:aws:iam::{ACCOUNT}:role/App", resourceOwnerAccount=ACCOUNT)
    dev = copy.deepcopy(app)
    dev.update(id="dev", resource=f"arn:aws:iam::{ACCOUNT}:user/dev", resourceType="AWS::IAM::User",
               findingDetails=[{"unusedPermissionDetails": {"serviceNamespace": "iam", "actions": [
                   {"action": "GetRole"}, {"action": "ListUsers"}]}}])
    old = copy.deepcopy(app)
    old.update(id="old", resource=f"arn:aws:iam::{ACCOUNT}:role/Old", findingType="UnusedIAMRole",
               findingDetails=[{"unusedIamRoleDetails": {"lastAccessed": "2024-01-01T00:00:00Z"}}])
    archived = copy.deepcopy(dev)
    archived.update(id="archived", status="ARCHIVED")
    return {f["id"]: f for f in (app, dev, old, archived)}


def aws_recommendations() -> dict[str, dict]:
    """What AWS answers for App's inline policy: its published 2024 answer (which today's
    catalog shows to lose two used actions), and a detach of the S3 policy."""
    published = copy.deepcopy(EXAMPLE)
    published["Statement"][0]["Action"] = ["lambda:Invoke*"]
    published["Statement"][1]["Action"] = AWS_2024_GET + ["s3:List*"]
    step = {"existingPolicyId": "app-inline", "recommendedAction": "CREATE_POLICY",
            "recommendedPolicy": json.dumps(published)}
    when = {"startedAt": "2026-11-25T10:00:00Z", "completedAt": "2026-11-25T10:00:05Z"}
    return {"app": {"resourceArn": f"arn:aws:iam::{ACCOUNT}:role/App",
                    "recommendationType": "UnusedPermissionRecommendation", "status": "SUCCEEDED",
                    **when, "recommendedSteps": [{"unusedPermissionsRecommendedStep": step}]},
            "dev": {"resourceArn": f"arn:aws:iam::{ACCOUNT}:user/dev",
                    "recommendationType": "UnusedPermissionRecommendation", "status": "FAILED",
                    **when, "error": {"code": "SERVICE_ERROR", "message": "try again"}}}


CALLS: set[str] = set()  # every AWS operation the tests below make, as "prefix:Operation"


@pytest.fixture(autouse=True)
def record_calls(monkeypatch):
    import botocore.client

    original = botocore.client.BaseClient._make_api_call

    def recording(self, name, params):
        prefix = {"accessanalyzer": "access-analyzer"}.get(self.meta.service_model.service_name,
                                                           self.meta.service_model.service_name)
        CALLS.add(f"{prefix}:{name}")
        return original(self, name, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)


@pytest.fixture
def analyzer(aws, monkeypatch):
    fake = FakeAccessAnalyzer([{"arn": ANALYZER, "name": "unused", "type": "ACCOUNT_UNUSED_ACCESS",
                                "createdAt": "2024-01-01T00:00:00Z", "status": "ACTIVE"}],
                              findings(), aws_recommendations(), page_size=1, throttle_every=7)
    with fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ACCESSANALYZER", fake.endpoint)
        yield fake


def iam_state(iam) -> dict:
    """Every policy document of the account as it stands: roles' and users' inline and
    attached policies, and every version of each customer managed policy."""
    state = {}
    for role in ("App", "Old"):
        state[f"role {role} inline"] = {
            name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]}
        state[f"role {role} attached"] = sorted(
            p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"])
    state["user dev inline"] = {
        name: iam.get_user_policy(UserName="dev", PolicyName=name)["PolicyDocument"]
        for name in iam.list_user_policies(UserName="dev")["PolicyNames"]}
    for policy in iam.list_policies(Scope="Local")["Policies"]:
        versions = iam.list_policy_versions(PolicyArn=policy["Arn"])["Versions"]
        state[policy["Arn"]] = sorted(
            (v["IsDefaultVersion"], json.dumps(iam.get_policy_version(
                PolicyArn=policy["Arn"], VersionId=v["VersionId"])["PolicyVersion"]["Document"],
                sort_keys=True)) for v in versions)
    return state


def run(*args) -> int:
    return main([str(a) for a in args])


def test_fetch_recommend_apply_rollback(aws, analyzer, tmp_path, capsys):
    iam, managed = aws
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    assert run("aws", "fetch", "-o", bundle) == 0
    assert analyzer.throttled > 0  # throttled requests were retried, not fatal
    fetched = {p.stem for p in (bundle / "findings").glob("*.json")}
    assert fetched == {"app", "dev", "old"}  # the archived one is not listed
    app = json.loads((bundle / "findings" / "app.json").read_text())
    assert app["findingDetails"] == findings()["app"]["findingDetails"]  # every page joined
    assert "nextToken" not in app and app["resource"].endswith("role/App")
    # A second fetch takes nothing again that has not changed.
    requests = len(analyzer.requests)
    assert run("aws", "fetch", "-o", bundle) == 0
    assert not any("/findingv2/" in r for r in analyzer.requests[requests:])
    capsys.readouterr()

    assert run("recommend", "--bundle", bundle, "-o", out, "--workers", "1") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["SUCCEEDED"] == 2 and summary["totals"]["DELETE_ROLE"] == 1
    steps = json.loads((out / "recommendations" / "app.json").read_text())["recommendedSteps"]
    changed = {s["unusedPermissionsRecommendedStep"]["existingPolicyId"] for s in steps}
    assert changed == {"app-inline", managed, S3_READ}

    before = iam_state(iam)
    assert run("aws", "apply", out) == 0  # a dry run: the plan only
    plan = capsys.readouterr().out
    assert "PutRolePolicy" in plan and "CreatePolicyVersion" in plan and "CreatePolicy" in plan
    assert iam_state(iam) == before

    assert run("aws", "apply", out, "--yes") == 0
    after = iam_state(iam)
    inline = after["role App inline"]["app-inline"]
    assert inline["Statement"][0]["Action"] == ["lambda:Invoke*"]
    assert S3_READ not in after["role App attached"]  # AWS's policy replaced by a refined copy
    replacement = [a for a in after["role App attached"] if a.endswith("AmazonS3ReadOnlyAccess-refined")]
    assert len(replacement) == 1
    assert len(after[managed]) == 2  # a new default version of the customer managed policy
    assert after["user dev inline"]["dev-inline"] != before["user dev inline"]["dev-inline"]
    capsys.readouterr()

    assert run("aws", "rollback", out / "journal.jsonl") == 0
    assert iam_state(iam) == before  # document for document
    assert run("aws", "rollback", out / "journal.jsonl") == 0  # safe to run again
    assert iam_state(iam) == before


def test_compare_catches_what_awss_answer_loses(aws, analyzer, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    assert run("aws", "fetch", "-o", bundle) == 0
    capsys.readouterr()
    code = run("aws", "compare", bundle, "--format", "json", "--poll-seconds", "0.01")
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["accepted"]
    (inline,) = [s for s in report["steps"] if s["policyId"] == "app-inline"]
    assert not inline["accepted"]
    assert {v["verdict"] for v in inline["verdicts"]} == {"incomplete"}
    assert inline["usedActionsLost"] == ["s3:GetBucketAbac", "s3:GetBucketMetadataTableConfiguration"]
    assert inline["refinerPatterns"] == inline["awsPatterns"] + 2
    (failed,) = [s for s in report["steps"] if s["findingId"] == "dev"]
    assert failed["verdicts"][0]["verdict"] == "unknown"  # AWS gave no answer: not accepted
    assert any(r.startswith("GET /recommendation/") for r in analyzer.requests)


def test_stale_policies_and_the_version_limit_are_refused(aws, analyzer, tmp_path, capsys):
    iam, managed = aws
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    assert run("aws", "fetch", "-o", bundle) == 0
    assert run("recommend", "--bundle", bundle, "-o", out, "--workers", "1") == 0
    # Someone edits the inline policy after the recommendation was made ...
    iam.put_role_policy(RoleName="App", PolicyName="app-inline", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                 "Resource": "*"}]}))
    # ... and the customer managed policy already has IAM's five versions.
    document = iam.get_policy_version(PolicyArn=managed, VersionId="v1")["PolicyVersion"]["Document"]
    for _ in range(4):
        iam.create_policy_version(PolicyArn=managed, PolicyDocument=json.dumps(document),
                                  SetAsDefault=False)
    capsys.readouterr()
    assert run("aws", "apply", out, "--yes", "--only", f"arn:aws:iam::{ACCOUNT}:role/App") == 1
    err = capsys.readouterr().err
    assert "app-inline: the policy changed since" in err
    assert "5 versions" in err and "--prune-oldest" in err
    stale = iam.get_role_policy(RoleName="App", PolicyName="app-inline")["PolicyDocument"]
    assert stale["Statement"][0]["Action"] == "s3:GetObject"  # left as the user made it
    before = iam_state(iam)
    assert run("aws", "apply", out, "--yes", "--prune-oldest", "--journal", tmp_path / "j.jsonl",
               "--only", managed) == 0
    versions = iam.list_policy_versions(PolicyArn=managed)["Versions"]
    assert len(versions) == 5 and iam_state(iam) != before
    journal = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert journal[0]["op"] == "delete_policy_version" and "document" in journal[0]
    assert run("aws", "rollback", tmp_path / "j.jsonl") == 0
    assert iam_state(iam) == before


CRASH = """
import os, signal, sys
import botocore.client
calls = 0
original = botocore.client.BaseClient._make_api_call
def crash_on_second_change(self, name, params):
    global calls
    if name.startswith(("Put", "Create", "Attach", "Detach", "Delete")):
        calls += 1
        if calls == 2:  # the journal already says what is about to happen
            os.kill(os.getpid(), signal.SIGKILL)
    return original(self, name, params)
botocore.client.BaseClient._make_api_call = crash_on_second_change
from refiner.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_rollback_after_a_crash_mid_apply(aws, analyzer, tmp_path, capsys):
    iam, _ = aws
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    assert run("aws", "fetch", "-o", bundle) == 0
    assert run("recommend", "--bundle", bundle, "-o", out, "--workers", "1") == 0
    before = iam_state(iam)
    killed = subprocess.run([sys.executable, "-c", CRASH, "aws", "apply", str(out), "--yes"],
                            env=os.environ.copy(), capture_output=True, timeout=120)
    assert killed.returncode == -9
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert [e["state"] for e in journal] == ["intent", "done", "intent"]  # died before call 2
    assert iam_state(iam) != before  # the first change was made
    assert run("aws", "rollback", out / "journal.jsonl") == 0
    assert iam_state(iam) == before


def test_bad_bundle_and_outdir_are_one_line(tmp_path, capsys):
    assert run("aws", "compare", tmp_path) == 2
    assert "not a bundle" in capsys.readouterr().err
    assert run("aws", "apply", tmp_path) == 2
    assert "not an output folder" in capsys.readouterr().err
    assert run("recommend", "--bundle", tmp_path, "-o", tmp_path / "out") == 2
    assert "not a bundle" in capsys.readouterr().err


def test_organization_member_accounts_are_read_through_a_named_role(aws, analyzer, tmp_path,
                                                                     capsys):
    member = copy.deepcopy(analyzer.findings["dev"])
    member.update(id="member", resource="arn:aws:iam::111111111111:role/Worker",
                  resourceOwnerAccount="111111111111")
    analyzer.findings["member"] = member
    bundle = tmp_path / "bundle"
    assert run("aws", "fetch", "-o", bundle) == 2
    assert "could not read 111111111111" in capsys.readouterr().err
    assert run("aws", "fetch", "-o", bundle, "--assume-role-name", "RefinerRead") == 0
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["accountsRead"] == ["111111111111", ACCOUNT]
    assert (bundle / "authorization-details" / "111111111111-0001.json").is_file()
    assert "sts:AssumeRole" in CALLS


def test_zz_refiners_own_policy_allows_every_call_it_made_and_no_other(catalog, tmp_path, capsys):
    """examples/refiner-aws/policy.json is what refiner proves from `iam:*`, `sts:*` and
    `access-analyzer:*` with everything but refiner.aws.PERMISSIONS unused; every call the
    tests above made (fixtures' setup calls aside) is allowed by it, and nothing else is."""
    from oracle import allowed_by

    from refiner.aws import AUTHORIZED_BY, PERMISSIONS

    setup = {"iam:CreateRole", "iam:CreateUser", "iam:ListRolePolicies", "iam:ListUserPolicies",
             "iam:ListAttachedRolePolicies"}  # the tests' own IAM set-up and inspection
    made = {AUTHORIZED_BY.get(call, call) for call in CALLS} - setup
    assert len(made) >= 20, "run with the tests above"
    policy = json.loads((EXAMPLES / "refiner-aws" / "policy.json").read_text())
    actions = catalog.all_actions()
    allowed = {a.lower() for s in policy["Statement"] for a in allowed_by(s, actions)}
    permitted = {a.lower() for step in PERMISSIONS.values() for a in step}
    assert {call.lower() for call in made} <= permitted
    assert allowed == permitted  # no other catalog action
    finding = tmp_path / "unused.json"
    finding.write_text(json.dumps([
        {"serviceNamespace": service, "actions": [a.split(":")[1] for a in catalog.actions_of(service)
                                                  if a.lower() not in permitted]}
        for service in ("access-analyzer", "iam", "sts")]))
    assert run("refine", EXAMPLES / "refiner-aws" / "broad.json", "--unused", finding) == 0
    assert json.loads(capsys.readouterr().out) == policy  # proven on today's catalog
