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

    requests.post(f"{iam_server}/moto-api/reset", timeout=120)  # reloads AWS managed policies
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
                              findings(), aws_recommendations(), page_size=1)
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
    pytest.importorskip("refiner.principals", reason="recommend's contract fields (issue 16)")
    iam, managed = aws
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    analyzer.throttle_every = 7
    assert run("aws", "fetch", "-o", bundle) == 0
    assert analyzer.throttled > 0  # throttled requests were retried, not fatal
    analyzer.throttle_every = 0
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
    replacement = [a for a in after["role App attached"] if ":policy/AmazonS3ReadOnlyAccess-refined-" in a]
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
    assert "accountUnreadable" not in json.loads((bundle / "findings" / "member.json").read_text())
    # The member account cannot be read again: its old pages go, its findings are marked.
    assert run("aws", "fetch", "-o", bundle) == 2
    assert not list((bundle / "authorization-details").glob("111111111111-*.json"))
    assert json.loads((bundle / "findings" / "member.json").read_text())["accountUnreadable"]
    assert "accountUnreadable" not in json.loads((bundle / "findings" / "dev.json").read_text())


# --- apply and rollback on recommendations in the recommend/apply contract's shape ------------------
# (/work CONTRACT: principal {arn, id, account, partition, kind, name}; policies by ref; reach)

RW = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"}]}
READ = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}]}
WRITE = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]}
UPDATED = "2026-11-20T08:00:00Z"
SCENES = iter(range(1, 10_000))
MEMBER = "111111111111"


@pytest.fixture
def live(iam_server, monkeypatch):
    """The shared moto server, not reset (each scene's names are its own), and an empty fake
    Access Analyzer that scenes fill."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_IAM": iam_server,
                       "AWS_ENDPOINT_URL_STS": iam_server}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    fake = FakeAccessAnalyzer([{"arn": ANALYZER, "name": "unused", "type": "ACCOUNT_UNUSED_ACCESS",
                                "createdAt": "2024-01-01T00:00:00Z", "status": "ACTIVE"}], {}, {})
    with fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ACCESSANALYZER", fake.endpoint)
        yield fake


def member_iam():
    """moto's IAM in the member account, as --assume-role-name reaches it."""
    sts = boto3.client("sts")
    granted = sts.assume_role(RoleArn=f"arn:aws:iam::{MEMBER}:role/RefinerAdmin",
                              RoleSessionName="test")["Credentials"]
    return boto3.client("iam", aws_access_key_id=granted["AccessKeyId"],
                        aws_secret_access_key=granted["SecretAccessKey"],
                        aws_session_token=granted["SessionToken"])


class Scene:
    """A fresh corner of the account (names end in this scene's number), its findings in the
    fake analyzer, and recommend's output for it written in the contract's shape."""

    def __init__(self, fake: FakeAccessAnalyzer, folder, iam=None, account: str = ACCOUNT):
        self.n, self.fake, self.out = next(SCENES), fake, folder
        self.iam, self.account = iam or boto3.client("iam"), account
        for sub in ("state", "recommendations", "shared"):
            (folder / sub).mkdir(parents=True, exist_ok=True)

    def name(self, base: str) -> str:
        return f"{base}{self.n}"

    def role(self, base: str, boundary: str | None = None) -> dict:
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Service": "lambda.amazonaws.com"}}]})
        extra = {"PermissionsBoundary": boundary} if boundary else {}
        role = self.iam.create_role(RoleName=self.name(base), AssumeRolePolicyDocument=trust,
                                    **extra)["Role"]
        return {"arn": role["Arn"], "id": role["RoleId"], "account": self.account,
                "partition": "aws", "kind": "role", "name": role["RoleName"]}

    def user(self, base: str) -> dict:
        user = self.iam.create_user(UserName=self.name(base))["User"]
        return {"arn": user["Arn"], "id": user["UserId"], "account": self.account,
                "partition": "aws", "kind": "user", "name": user["UserName"]}

    def inline(self, owner: dict, base: str, document: dict) -> dict:
        """A principal's (or group's) inline policy, as the contract records it."""
        kind = owner["kind"]
        getattr(self.iam, f"put_{kind}_policy")(**{f"{kind.title()}Name": owner["name"]},
                                                PolicyName=base, PolicyDocument=json.dumps(document))
        via = "inline" if kind != "group" else f"group:{owner['arn']}"
        reach = [{"arn": owner["arn"], "id": owner["id"], "via": via}] if kind != "group" else \
            [{"arn": m["arn"], "id": m["id"], "via": via} for m in owner["members"]]
        return {"ref": {"kind": f"{kind}-inline", "owner": owner["arn"], "name": base,
                        "ownerId": owner["id"]},
                "text": json.dumps(document), "awsManaged": False, "reach": reach}

    def managed(self, base: str, document: dict) -> str:
        return self.iam.create_policy(PolicyName=self.name(base),
                                      PolicyDocument=json.dumps(document))["Policy"]["Arn"]

    def attach(self, principal: dict, arn: str) -> None:
        kind = principal["kind"]
        getattr(self.iam, f"attach_{kind}_policy")(**{f"{kind.title()}Name": principal["name"]},
                                                   PolicyArn=arn)

    def managed_entry(self, arn: str, reach: list[tuple[dict, str]]) -> dict:
        policy = self.iam.get_policy(PolicyArn=arn)["Policy"]
        text = json.dumps(self.iam.get_policy_version(
            PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]["Document"])
        return {"ref": {"kind": "managed", "arn": arn, "id": policy["PolicyId"]}, "text": text,
                "versionId": policy["DefaultVersionId"], "awsManaged": ":iam::aws:" in arn,
                "reach": [{"arn": p["arn"], "id": p["id"], "via": via} for p, via in reach]}

    def finding(self, principal: dict, unused: dict[str, list[str]]) -> str:
        """An active UnusedPermission finding (service: unused actions; [] = the whole service)."""
        finding_id = self.name(f"finding-{principal['name']}-")
        details = [{"unusedPermissionDetails": {"serviceNamespace": service, **(
            {"actions": [{"action": a} for a in actions]} if actions else {})}}
            for service, actions in unused.items()]
        self.fake.findings[finding_id] = {
            "id": finding_id, "resource": principal["arn"], "resourceType":
            "AWS::IAM::Role" if principal["kind"] == "role" else "AWS::IAM::User",
            "resourceOwnerAccount": principal["account"], "status": "ACTIVE",
            "findingType": "UnusedPermission", "createdAt": UPDATED, "updatedAt": UPDATED,
            "analyzedAt": UPDATED, "findingDetails": details}
        return finding_id

    def recommend(self, finding_id: str, principal: dict, policies: list[dict],
                  steps: list[dict]) -> None:
        """recommend's two files for one finding: the state and the recommendation."""
        from refiner.account import finding_file_name

        name = finding_file_name(finding_id)
        state = {"row": {"findingId": finding_id}, "principal": principal,
                 "finding": {"findingId": finding_id, "updatedAt": UPDATED, "analyzedAt": UPDATED},
                 "policies": policies}
        (self.out / "state" / name).write_text(json.dumps(state))
        (self.out / "recommendations" / name).write_text(json.dumps({
            "resourceArn": principal["arn"], "status": "SUCCEEDED",
            "recommendedSteps": steps}))

    def shared(self, name: str, entry: dict, refined: dict | None, findings: list[str]) -> dict:
        (self.out / "shared" / f"{name}.json").write_text(json.dumps({
            "status": "CHANGED" if refined else "UNCHANGED",
            **entry, "refined": json.dumps(refined) if refined else None,
            "removed": [], "keptBecauseUsed": {}, "findings": findings}))
        ref = entry["ref"]  # the step each holder's recommendation has, as recommend writes it
        return {"unusedPermissionsRecommendedStep": {
            "existingPolicyId": ref.get("arn") or ref["name"], "sharedPolicy": name,
            "policyRef": ref}}


def step(entry: dict, document: dict | None) -> dict:
    ref = entry["ref"]
    detail = {"existingPolicyId": ref.get("arn") or ref["name"],
              "recommendedAction": "CREATE_POLICY" if document else "DETACH_POLICY"}
    if document:
        detail["recommendedPolicy"] = json.dumps(document)
    return {"unusedPermissionsRecommendedStep": detail}


def snapshot(iam, principals: list[dict], policies: list[str]) -> dict:
    """What the scene's principals hold (inline documents, attachments) and every version of
    the scene's managed policies and of every policy attached to them."""
    state = {}
    for principal in principals:
        kind, key = principal["kind"], {f"{principal['kind'].title()}Name": principal["name"]}
        state[principal["arn"], "inline"] = {
            name: getattr(iam, f"get_{kind}_policy")(**key, PolicyName=name)["PolicyDocument"]
            for name in getattr(iam, f"list_{kind}_policies")(**key)["PolicyNames"]}
        attached = sorted(p["PolicyArn"] for p in getattr(
            iam, f"list_attached_{kind}_policies")(**key)["AttachedPolicies"])
        state[principal["arn"], "attached"] = attached
        policies = policies + [a for a in attached if ":iam::aws:" not in a]
    for arn in sorted(set(policies)):
        try:
            versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
        except iam.exceptions.NoSuchEntityException:
            state[arn] = None
            continue
        state[arn] = sorted((v["IsDefaultVersion"], json.dumps(iam.get_policy_version(
            PolicyArn=arn, VersionId=v["VersionId"])["PolicyVersion"]["Document"], sort_keys=True))
            for v in versions)
    return state


def s3_read_copy(scene: Scene) -> tuple[dict, str]:
    """A refinement of AWS's S3 read-only policy without s3-object-lambda, and the ARN its
    copy gets. Each scene has its own copy: the letters of its action names are upper or lower
    case by the bits of the scene's number (action names are case-insensitive, so the kernel
    proves each the same refinement)."""
    from refiner.aws.apply import copy_name

    iam = scene.iam
    version = iam.get_policy(PolicyArn=S3_READ)["Policy"]["DefaultVersionId"]
    original = iam.get_policy_version(PolicyArn=S3_READ, VersionId=version)["PolicyVersion"]["Document"]
    refined = copy.deepcopy(original)
    for statement in refined["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        kept = [a for a in actions if not a.startswith("s3-object-lambda")]
        bits = iter(range(10_000))
        statement["Action"] = [service + ":" + "".join(
            c.upper() if c.isalpha() and (int(scene.n or 0) >> next(bits)) & 1 else c.lower()
            for c in name) for service, name in (a.split(":", 1) for a in kept)]
    name = copy_name(S3_READ, json.dumps(refined))
    return refined, f"arn:aws:iam::{scene.account}:policy/{name}"


def journal_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def scene(live, tmp_path):
    """A role with an inline policy, its own customer managed policy, AWS's S3 read-only
    policy and a policy to detach; a second role with the same AWS policy and finding; a
    user. Each with a finding and recommend's output for it."""
    s = Scene(live, tmp_path / "out")
    app, peer = s.role("App"), s.role("Peer")
    own = s.managed("AppOwn", RW)
    extra = s.managed("AppExtra", WRITE)
    for principal in (app, peer):
        s.attach(principal, S3_READ)
    s.attach(app, own)
    s.attach(app, extra)
    inline = s.inline(app, "app-inline", RW)
    copy_document, s.copy_arn = s3_read_copy(s)
    policies = [inline, s.managed_entry(own, [(app, "attached")]),
                s.managed_entry(extra, [(app, "attached")]),
                s.managed_entry(S3_READ, [(app, "attached"), (peer, "attached")])]
    app_finding = s.finding(app, {"s3": ["PutObject"], "s3-object-lambda": []})
    s.recommend(app_finding, app, policies, [
        step(policies[0], READ), step(policies[1], READ), step(policies[2], None),
        step(policies[3], copy_document)])
    peer_policies = [s.managed_entry(S3_READ, [(app, "attached"), (peer, "attached")])]
    peer_finding = s.finding(peer, {"s3-object-lambda": []})
    s.recommend(peer_finding, peer, peer_policies, [step(peer_policies[0], copy_document)])
    s.app, s.peer, s.own, s.extra = app, peer, own, extra
    s.principals, s.policies = [app, peer], [own, extra, s.copy_arn]
    s.findings = {"app": app_finding, "peer": peer_finding}
    return s


def test_apply_checks_live_and_rollback_undoes_exactly(scene, capsys):
    iam, out = scene.iam, scene.out
    before = snapshot(iam, scene.principals, scene.policies)
    assert run("aws", "apply", out) == 0  # a dry run: every check, no change, no journal
    plan = capsys.readouterr().out
    assert "put-inline" in plan and "version" in plan and "detach" in plan and "copy" in plan
    assert snapshot(iam, scene.principals, scene.policies) == before
    assert not (out / "journal.jsonl").exists()

    assert run("aws", "apply", out, "--yes") == 0
    after = snapshot(iam, scene.principals, scene.policies)
    app, peer = scene.app["arn"], scene.peer["arn"]
    assert after[app, "inline"]["app-inline"] == READ
    assert S3_READ not in after[app, "attached"] and S3_READ not in after[peer, "attached"]
    copy_arn = scene.copy_arn  # one copy for the one distinct document, both attached
    assert after[copy_arn] and not before[copy_arn]
    assert copy_arn in after[app, "attached"] and copy_arn in after[peer, "attached"]
    assert scene.extra not in after[app, "attached"]
    assert [d for d, _ in after[scene.own]] == [False, True] and \
        json.loads(next(t for d, t in after[scene.own] if d)) == READ
    journal = journal_of(out / "journal.jsonl")
    from refiner.aws.journal import checksum

    assert all(e["sum"] == checksum(e) for e in journal)
    assert [e["seq"] for e in journal] == list(range(1, len(journal) + 1))
    assert len({e["run"] for e in journal}) == 1
    intents = [e for e in journal if e["state"] == "intent"]
    assert {e["op"] for e in intents} == {"put_inline", "create_policy_version", "detach",
                                          "create_policy", "attach"}
    inline = next(e for e in intents if e["op"] == "put_inline")
    assert inline["ref"] == {"kind": "role-inline", "owner": app, "name": "app-inline",
                             "ownerId": scene.app["id"]}
    assert inline["owner"]["id"] == scene.app["id"]
    created = next(e for e in intents if e["op"] == "create_policy")
    assert created["policyArn"] == copy_arn  # the ARN is on disk before the copy exists
    capsys.readouterr()

    assert run("aws", "apply", out, "--yes") == 0  # again: each change is there already
    assert capsys.readouterr().out.count("already as recommended: nothing to do") == 5
    assert snapshot(iam, scene.principals, scene.policies) == after
    assert run("aws", "rollback", out / "journal.jsonl") == 0
    assert snapshot(iam, scene.principals, scene.policies) == before
    assert run("aws", "rollback", out / "journal.jsonl") == 0  # nothing left: no call
    assert snapshot(iam, scene.principals, scene.policies) == before


def refusals(capsys) -> str:
    return capsys.readouterr().err


def test_a_recreated_role_and_another_account_are_refused(scene, capsys):
    iam, out = scene.iam, scene.out
    # App is deleted and re-created under the same name: a new RoleId.
    for arn in (S3_READ, scene.own, scene.extra):
        iam.detach_role_policy(RoleName=scene.app["name"], PolicyArn=arn)
    iam.delete_role_policy(RoleName=scene.app["name"], PolicyName="app-inline")
    iam.delete_role(RoleName=scene.app["name"])
    recreated = scene.role("App")
    iam.put_role_policy(RoleName=recreated["name"], PolicyName="app-inline",
                        PolicyDocument=json.dumps(RW))
    assert run("aws", "apply", out, "--yes", "--only", scene.app["arn"]) == 1
    err = refusals(capsys)
    assert err.count("was deleted and re-created since the recommendation") == 4
    assert iam.get_role_policy(RoleName=recreated["name"], PolicyName="app-inline")[
        "PolicyDocument"] == RW


def test_a_member_accounts_principal_is_changed_there_or_refused(live, tmp_path, capsys):
    own = Scene(live, tmp_path / "out")
    member = Scene(live, tmp_path / "out", member_iam(), MEMBER)
    member.n = own.n  # the same role name in both accounts
    mine, theirs = own.role("Worker"), member.role("Worker")
    assert mine["name"] == theirs["name"] and theirs["arn"].startswith(f"arn:aws:iam::{MEMBER}:")
    own.inline(mine, "work", RW)
    entry = member.inline(theirs, "work", RW)
    finding = member.finding(theirs, {"s3": ["PutObject"]})
    member.recommend(finding, theirs, [entry], [step(entry, READ)])
    assert run("aws", "apply", tmp_path / "out", "--yes") == 1
    assert f"account {MEMBER} is not the credentials' account ({ACCOUNT}): give " \
        "--assume-role-name" in refusals(capsys)
    assert run("aws", "apply", tmp_path / "out", "--yes", "--assume-role-name", "Admin") == 0
    assert member.iam.get_role_policy(RoleName=theirs["name"], PolicyName="work")[
        "PolicyDocument"] == READ
    assert own.iam.get_role_policy(RoleName=mine["name"], PolicyName="work")[
        "PolicyDocument"] == RW  # the caller's same-named role is untouched
    assert run("aws", "rollback", tmp_path / "out" / "journal.jsonl") == 0  # via the same role
    assert member.iam.get_role_policy(RoleName=theirs["name"], PolicyName="work")[
        "PolicyDocument"] == RW


def test_arns_of_every_partition(tmp_path):
    from refiner.aws.live import Refused, aws_managed, parse_arn
    from refiner.aws.plan import Change

    for partition in ("aws", "aws-cn", "aws-us-gov"):
        assert aws_managed(f"arn:{partition}:iam::aws:policy/ReadOnlyAccess")
        assert not aws_managed(f"arn:{partition}:iam::123456789012:policy/ReadOnlyAccess")
        assert parse_arn(f"arn:{partition}:iam::123456789012:role/a/b/R")["partition"] == partition
        principal = {"arn": f"arn:{partition}:iam::123456789012:role/R", "id": "AROA1",
                     "account": "123456789012", "partition": partition, "kind": "role",
                     "name": "R"}
        change = Change("k", [], principal, {"kind": "managed", "arn":
                        f"arn:{partition}:iam::aws:policy/ReadOnlyAccess"},
                        {"text": "{}", "reach": []}, "CREATE_POLICY", "{}")
        assert change.how == "copy"  # AWS's own policy: replaced by a copy, never edited
    with pytest.raises(Refused):
        parse_arn("arn:azure:iam::1:role/R")


def test_policies_are_named_by_owner_and_kind(live, tmp_path, capsys):
    s = Scene(live, tmp_path / "out")
    dev = s.user("dev")
    group = s.iam.create_group(GroupName=s.name("team"))["Group"]
    s.iam.add_user_to_group(GroupName=group["GroupName"], UserName=dev["name"])
    team = {"arn": group["Arn"], "id": group["GroupId"], "kind": "group",
            "name": group["GroupName"], "members": [dev]}
    mine = s.inline(dev, "same-name", RW)
    groups = s.inline(team, "same-name", RW)
    finding = s.finding(dev, {"s3": ["PutObject"]})
    s.recommend(finding, dev, [groups, mine], [step(mine, READ)])  # existingPolicyId: the name
    assert run("aws", "apply", s.out, "--yes") == 0
    assert s.iam.get_user_policy(UserName=dev["name"], PolicyName="same-name")[
        "PolicyDocument"] == READ
    assert s.iam.get_group_policy(GroupName=team["name"], PolicyName="same-name")[
        "PolicyDocument"] == RW  # the group's same-named policy is another policy
    (intent,) = [e for e in journal_of(s.out / "journal.jsonl") if e["state"] == "intent"]
    assert intent["ref"] == {"kind": "user-inline", "owner": dev["arn"], "name": "same-name",
                             "ownerId": dev["id"]}
    # A per-finding step on the group's policy is refused: only a consolidated one may change it.
    s.recommend(finding, dev, [groups], [{"unusedPermissionsRecommendedStep": {
        "ref": groups["ref"], "existingPolicyId": "same-name",
        "recommendedAction": "CREATE_POLICY", "recommendedPolicy": json.dumps(READ)}}])
    capsys.readouterr()
    assert run("aws", "apply", s.out, "--yes") == 1
    assert "a group's policy is changed only by a consolidated recommendation" in refusals(capsys)


def test_a_finding_updated_or_now_used_is_refused(scene, capsys):
    out, fake = scene.out, scene.fake
    only = ("--only", scene.app["arn"])
    fake.findings[scene.findings["app"]]["updatedAt"] = "2026-11-21T08:00:00Z"
    before = snapshot(scene.iam, scene.principals, scene.policies)
    assert run("aws", "apply", out, "--yes", *only) == 1
    err = refusals(capsys)
    assert err.count("was updated since the recommendation (2026-11-20T08:00:00Z -> "
                     "2026-11-21T08:00:00Z): re-run recommend") == 4
    # The same time, written as +00:00: not a change. PutObject is used now: refused.
    finding = fake.findings[scene.findings["app"]]
    finding["updatedAt"] = "2026-11-20T08:00:00+00:00"
    finding["findingDetails"] = [{"unusedPermissionDetails": {"serviceNamespace":
                                                              "s3-object-lambda"}}]
    assert run("aws", "apply", out, "--yes", *only) == 1
    err = refusals(capsys)
    assert "role-inline" not in err and err.count("uses s3:PutObject now, which this change "
                                                  "removes: re-run recommend") == 3
    finding["status"] = "RESOLVED"
    assert run("aws", "apply", out, "--yes", *only) == 1
    assert refusals(capsys).count("is RESOLVED now") == 3  # the copy was made just above
    assert snapshot(scene.iam, scene.principals, scene.policies)[scene.app["arn"], "inline"] == \
        before[scene.app["arn"], "inline"]
    # The policy text check stays.
    finding.update(status="ACTIVE", findingDetails=[{"unusedPermissionDetails": {
        "serviceNamespace": "s3", "actions": [{"action": "PutObject"}]}}, {
        "unusedPermissionDetails": {"serviceNamespace": "s3-object-lambda"}}])
    scene.iam.put_role_policy(RoleName=scene.app["name"], PolicyName="app-inline",
                              PolicyDocument=json.dumps(WRITE))
    assert run("aws", "apply", out, "--yes", *only) == 1
    assert "app-inline: the policy changed since the recommendation" in refusals(capsys)


def test_compare_judges_the_live_state_and_goes_on_past_an_unreadable_answer(aws, analyzer,
                                                                            tmp_path, capsys):
    import threading

    iam, managed = aws
    bundle = tmp_path / "bundle"
    assert run("aws", "fetch", "-o", bundle) == 0
    # Since fetch: the customer managed policy gained a version; dev's answer is unreadable.
    iam.create_policy_version(PolicyArn=managed, SetAsDefault=True, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]}))
    analyzer.recommendations["dev"]["status"] = "SUCCEEDED"
    analyzer.recommendations["dev"].pop("error")
    analyzer.denied.add("dev")
    analyzer.gather = threading.Barrier(2)  # both findings' answers asked for at once
    capsys.readouterr()
    code = run("aws", "compare", bundle, "--format", "json", "--poll-seconds", "0.01",
               "--concurrency", "2")
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    (dev,) = [s for s in report["steps"] if s["findingId"] == "dev"]
    assert dev["verdicts"][0]["verdict"] == "unknown"
    assert "could not be read" in dev["verdicts"][0]["message"]
    app = [s for s in report["steps"] if s["findingId"] == "app"]
    assert all(s["bundleStale"] == f"policy {managed} changed since fetch" for s in app)
    # AWS's answer has a step for the inline policy only; the S3 policy still grants unused
    # actions: incomplete, not accepted by silence.
    (s3,) = [s for s in app if s["policyId"] == S3_READ]
    assert s3["recommendedAction"] == "none" and not s3["accepted"]
    assert s3["verdicts"][0]["verdict"] == "incomplete"
    assert "AWS's answer has no step for policy AmazonS3ReadOnlyAccess" in \
        s3["verdicts"][0]["message"]
    # No steps at all for a finding whose policies grant unused actions: incomplete too.
    analyzer.gather = None
    analyzer.denied.clear()
    analyzer.recommendations["app"]["recommendedSteps"] = []
    assert run("aws", "compare", bundle, "--format", "json", "--poll-seconds", "0.01") == 1
    report = json.loads(capsys.readouterr().out)
    assert {s["verdicts"][0]["verdict"] for s in report["steps"] if s["findingId"] == "app"} == \
        {"incomplete"}


HOLD = """
import sys
from refiner.aws.journal import Journal
with Journal(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""

HOLD_FOLDER = """
import os, sys, tempfile
from refiner.aws.journal import Journal
with Journal(os.path.join(tempfile.mkdtemp(), "j.jsonl")) as journal:
    journal.lock_folder(sys.argv[1])
    print("held", flush=True)
    sys.stdin.read()
"""


def test_one_writer_per_journal(scene, capsys):
    journal = scene.out / "journal.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(journal)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        before = snapshot(scene.iam, scene.principals, scene.policies)
        assert run("aws", "apply", scene.out, "--yes") == 2
        assert "is in use by another refiner apply or rollback: refused" in refusals(capsys)
        assert run("aws", "rollback", journal) == 2
        assert snapshot(scene.iam, scene.principals, scene.policies) == before
    finally:
        holder.communicate("", timeout=30)
    # Another journal for the same output: refused as well, it would make the same changes.
    holder = subprocess.Popen([sys.executable, "-c", HOLD_FOLDER, str(scene.out)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert run("aws", "apply", scene.out, "--yes", "--journal", scene.out / "other.jsonl") == 2
        assert "is being applied by another refiner apply: refused" in refusals(capsys)
    finally:
        holder.communicate("", timeout=30)
    assert run("aws", "apply", scene.out, "--yes") == 0  # the locks died with their holders


def test_the_journal_is_synced_checksummed_and_a_torn_tail_reported(scene, monkeypatch, capsys):
    import stat

    synced = []
    real_fsync = os.fsync

    def recording(descriptor):
        synced.append("folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file")
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording)
    journal = scene.out / "journal.jsonl"
    assert run("aws", "apply", scene.out, "--yes", "--only", scene.peer["arn"]) == 0
    assert synced[0] == "folder" and synced.count("file") == len(journal_of(journal))
    # A crash cut the last line short: reported, kept as an entry, never taken for a call.
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"run": "x", "seq": 9, "state": "inte')
    before = snapshot(scene.iam, scene.principals, scene.policies)
    capsys.readouterr()
    assert run("aws", "apply", scene.out, "--yes", "--only", scene.app["arn"]) == 0
    assert f"journal line {len(whole.splitlines()) + 1} was cut short by a crash" in \
        refusals(capsys)
    entries = journal_of(journal)
    torn = next(e for e in entries if e["state"] == "torn")
    assert torn["text"] == '{"run": "x", "seq": 9, "state": "inte'
    assert torn["line"] == len(whole.splitlines()) + 1
    assert len({e["run"] for e in entries}) == 2  # two runs, each numbered from 1
    assert run("aws", "rollback", journal) == 0
    assert snapshot(scene.iam, scene.principals, scene.policies) != before  # peer too: undone
    # An entry changed in the middle: the journal is refused, nothing is undone blindly.
    lines = journal.read_text().splitlines()
    assert '"intent"' in lines[1]
    lines[1] = lines[1].replace('"intent"', '"done"')
    journal.write_text("\n".join(lines) + "\n")
    assert run("aws", "rollback", journal) == 2
    assert "line 2 is damaged" in refusals(capsys)


def test_rollback_skips_what_was_changed_since_and_goes_on(scene, capsys):
    iam, out = scene.iam, scene.out
    journal = out / "journal.jsonl"
    before = snapshot(iam, scene.principals, scene.policies)
    assert run("aws", "apply", out, "--yes") == 0
    app = scene.app["name"]
    # After apply: someone edits the inline policy, sets the old default version back, and
    # attaches the copy to a role of their own.
    edited = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}
    iam.put_role_policy(RoleName=app, PolicyName="app-inline", PolicyDocument=json.dumps(edited))
    iam.set_default_policy_version(PolicyArn=scene.own, VersionId="v1")
    iam.create_policy_version(PolicyArn=scene.own, PolicyDocument=json.dumps(WRITE),
                              SetAsDefault=True)
    copy_arn = scene.copy_arn
    other = scene.role("Other")
    scene.attach(other, copy_arn)
    capsys.readouterr()
    assert run("aws", "rollback", journal) == 1
    err = refusals(capsys)
    assert "inline policy app-inline was changed since apply: left as it is (--force" in err
    assert "default version is v3, not v2 (apply's)" in err
    assert f"{copy_arn} is attached to {other['name']}: not deleted" in err
    now = snapshot(iam, scene.principals, scene.policies)
    assert now[scene.app["arn"], "inline"]["app-inline"] == edited  # theirs, kept
    assert S3_READ in now[scene.app["arn"], "attached"]  # the other undos went on
    assert scene.extra in now[scene.app["arn"], "attached"]
    assert copy_arn not in now[scene.app["arn"], "attached"]
    assert run("aws", "rollback", journal) == 1  # again: the same three left, nothing else
    assert refusals(capsys).count("refiner: not undone:") == 3
    iam.detach_role_policy(RoleName=other["name"], PolicyArn=copy_arn)
    assert run("aws", "rollback", journal, "--force") == 0
    now = snapshot(iam, scene.principals, scene.policies)
    assert now[scene.app["arn"], "inline"] == before[scene.app["arn"], "inline"]
    assert now[copy_arn] is None


def test_copies_respect_the_quota_and_never_regrant(live, tmp_path, capsys):
    s = Scene(live, tmp_path / "out")
    full, gone = s.role("Full"), s.role("Gone")
    copy_document, copy_arn = s3_read_copy(s)
    for principal in (full, gone):
        s.attach(principal, S3_READ)
        entry = s.managed_entry(S3_READ, [(principal, "attached")])
        finding = s.finding(principal, {"s3-object-lambda": []})
        s.recommend(finding, principal, [entry], [step(entry, copy_document)])
    for number in range(9):  # Full has 10 attached: no room for the copy beside the original
        s.attach(full, s.managed(f"Filler{number}-", READ))
    s.iam.detach_role_policy(RoleName=gone["name"], PolicyArn=S3_READ)  # security took it away
    assert run("aws", "apply", s.out, "--yes") == 1
    err = refusals(capsys)
    assert "has 10 managed policies attached, the quota (10; --attachment-quota)" in err
    assert f"{S3_READ} is no longer attached to {gone['arn']}" in err
    assert snapshot(s.iam, [full, gone], [copy_arn])[copy_arn] is None  # no orphan copy
    assert not snapshot(s.iam, [gone], [])[gone["arn"], "attached"]  # nothing re-granted
    assert run("aws", "apply", s.out, "--yes", "--attachment-quota", "20") == 1
    assert copy_arn in snapshot(s.iam, [full], [])[full["arn"], "attached"]


def shared_scene(live, tmp_path):
    """A customer managed policy attached to roles A and B, the boundary of role C, and a
    group's inline policy with two members; each principal with a finding."""
    s = Scene(live, tmp_path / "out")
    shared = s.managed("Shared", RW)
    a, b, c = s.role("A"), s.role("B"), s.role("C", boundary=shared)
    for principal in (a, b):
        s.attach(principal, shared)
    u1, u2 = s.user("u"), s.user("v")
    group = s.iam.create_group(GroupName=s.name("team"))["Group"]
    for user in (u1, u2):
        s.iam.add_user_to_group(GroupName=group["GroupName"], UserName=user["name"])
    team = {"arn": group["Arn"], "id": group["GroupId"], "kind": "group",
            "name": group["GroupName"], "members": [u1, u2]}
    managed = s.managed_entry(shared, [(a, "attached"), (b, "attached"), (c, "boundary")])
    group_entry = s.inline(team, "team", RW)
    findings = {p["name"]: s.finding(p, {"s3": ["PutObject"]}) for p in (a, b, c, u1, u2)}
    pointer = s.shared("shared-policy", managed, READ, [findings[p["name"]] for p in (a, b, c)])
    for principal in (a, b, c):
        s.recommend(findings[principal["name"]], principal, [managed], [pointer])
    pointer = s.shared("team-policy", group_entry, READ, [findings[u["name"]] for u in (u1, u2)])
    for user in (u1, u2):
        s.recommend(findings[user["name"]], user, [group_entry], [pointer])
    s.shared_arn, s.group, s.principals = shared, team, [a, b, c, u1, u2]
    return s


def test_a_shared_policy_changes_only_while_it_reaches_the_same_principals(live, tmp_path,
                                                                             capsys):
    s = shared_scene(live, tmp_path)
    a, b, c, u1, u2 = s.principals
    before = snapshot(s.iam, s.principals, [s.shared_arn])
    assert run("aws", "apply", s.out) == 0
    plan = capsys.readouterr().out
    assert plan.count("shared shared-policy") == 1 and plan.count("shared team-policy") == 1
    # Since the recommendation: a new role holds the policy, C lost its boundary, and the
    # group has a third member.
    d = s.role("D")
    s.attach(d, s.shared_arn)
    s.iam.delete_role_permissions_boundary(RoleName=c["name"])
    w = s.user("w")
    s.iam.add_user_to_group(GroupName=s.group["name"], UserName=w["name"])
    assert run("aws", "apply", s.out, "--yes") == 1
    err = refusals(capsys)
    assert f"reaches role {d['name']} (attached) since the recommendation; no longer reaches " \
        f"{c['arn']} (boundary): refused, re-run recommend" in err
    assert f"reaches {w['arn']} (group:{s.group['arn']}) since the recommendation" in err
    assert snapshot(s.iam, s.principals, [s.shared_arn]) == before
    # Put back as it was: one new default version, one new group document.
    s.iam.detach_role_policy(RoleName=d["name"], PolicyArn=s.shared_arn)
    s.iam.put_role_permissions_boundary(RoleName=c["name"], PermissionsBoundary=s.shared_arn)
    s.iam.remove_user_from_group(GroupName=s.group["name"], UserName=w["name"])
    assert run("aws", "apply", s.out, "--yes") == 0
    after = snapshot(s.iam, s.principals, [s.shared_arn])
    assert len(after[s.shared_arn]) == 2 and (True, json.dumps(READ, sort_keys=True)) in \
        after[s.shared_arn]
    assert s.iam.get_group_policy(GroupName=s.group["name"], PolicyName="team")[
        "PolicyDocument"] == READ
    assert run("aws", "rollback", s.out / "journal.jsonl") == 0
    assert snapshot(s.iam, s.principals, [s.shared_arn]) == before
    assert s.iam.get_group_policy(GroupName=s.group["name"], PolicyName="team")[
        "PolicyDocument"] == RW


def two_holders(live, tmp_path):
    """Roles A and B holding one customer managed policy; a finding for A only."""
    s = Scene(live, tmp_path / "out")
    shared = s.managed("Shared", RW)
    a, b = s.role("A"), s.role("B")
    for principal in (a, b):
        s.attach(principal, shared)
    entry = s.managed_entry(shared, [(a, "attached"), (b, "attached")])
    return s, a, b, shared, entry, s.finding(a, {"s3": ["PutObject"]})


def test_a_holder_without_a_finding_keeps_everything(live, tmp_path, capsys):
    s, a, b, shared, entry, finding = two_holders(live, tmp_path)
    s.recommend(finding, a, [entry], [s.shared("p", entry, READ, [finding])])
    assert run("aws", "apply", s.out, "--yes") == 1
    assert f"{b['arn']} uses s3:PutObject now, which this change removes" in refusals(capsys)


def test_shared_copy_steps_detach_and_attach_per_principal(live, tmp_path, capsys):
    s, a, b, shared, entry, finding = two_holders(live, tmp_path)
    # As recommend --shared copy writes it: the reach kept once in the shared record, the
    # state naming it, the step naming the policy by ref and saying it is A's own copy.
    s.shared("shared-copy", {**entry, "status": "COPIED", "mode": "copy"}, None, [finding])
    held = {"ref": entry["ref"], "awsManaged": False, "via": "attached",
            "sharedPolicy": "shared-copy", "text": entry["text"]}
    copy_step = step(entry, READ)
    copy_step["unusedPermissionsRecommendedStep"].update(policyRef=entry["ref"],
                                                         copyOf=entry["ref"])
    s.recommend(finding, a, [held], [copy_step])
    before = snapshot(s.iam, [a, b], [shared])
    assert run("aws", "apply", s.out, "--yes") == 0
    after = snapshot(s.iam, [a, b], [shared])
    assert after[shared] == before[shared]  # the shared document itself is untouched
    assert after[b["arn"], "attached"] == [shared]
    (copy_arn,) = after[a["arn"], "attached"]
    assert "Shared" in copy_arn and "-refined-" in copy_arn
    assert run("aws", "rollback", s.out / "journal.jsonl") == 0
    assert snapshot(s.iam, [a, b], [shared, copy_arn]) == {**before, copy_arn: None}


def test_the_version_limit_and_pruning_are_journaled(scene, capsys):
    iam, out = scene.iam, scene.out
    document = iam.get_policy_version(PolicyArn=scene.own, VersionId="v1")["PolicyVersion"]["Document"]
    for _ in range(4):  # IAM's five versions
        iam.create_policy_version(PolicyArn=scene.own, PolicyDocument=json.dumps(document),
                                  SetAsDefault=False)
    assert run("aws", "apply", out, "--yes", "--only", scene.own) == 1
    assert "has 5 versions, IAM's limit: --prune-oldest" in refusals(capsys)
    before = snapshot(iam, scene.principals, scene.policies)
    assert run("aws", "apply", out, "--yes", "--only", scene.own, "--prune-oldest",
               "--journal", out / "prune.jsonl") == 0
    versions = iam.list_policy_versions(PolicyArn=scene.own)["Versions"]
    assert len(versions) == 5 and snapshot(iam, scene.principals, scene.policies) != before
    intents = [e for e in journal_of(out / "prune.jsonl") if e["state"] == "intent"]
    assert [e["op"] for e in intents] == ["delete_policy_version", "create_policy_version"]
    assert json.loads(intents[0]["document"]) == document
    assert run("aws", "rollback", out / "prune.jsonl") == 0
    assert snapshot(iam, scene.principals, scene.policies) == before


KILL = """
import os, signal, sys
import botocore.client
from refiner.aws import journal

point, number = sys.argv[1].split(":")
count = 0

def tick():
    global count
    count += 1
    if count == int(number):
        os.kill(os.getpid(), signal.SIGKILL)

if point == "line":  # killed once the Nth journal line is on disk
    write = journal.Journal.write
    def counted(self, entry):
        written = write(self, entry)
        tick()
        return written
    journal.Journal.write = counted
else:  # killed once the Nth IAM write has been made, before the journal says so
    call = botocore.client.BaseClient._make_api_call
    def counted_call(self, name, params):
        result = call(self, name, params)
        if name.startswith(("Put", "Create", "Attach", "Detach", "Delete", "Set")):
            tick()
        return result
    botocore.client.BaseClient._make_api_call = counted_call
from refiner.cli import main
sys.exit(main(sys.argv[2:]))
"""
# The scene's apply writes 17 journal lines around 8 IAM writes; its rollback 16 lines around
# 9 writes. A sample of the kill points runs by default, every one with -m slow.
SAMPLE = {"apply": {"line:2", "line:10", "call:4"}, "rollback": {"line:6", "call:2"}}
KILL_POINTS = [pytest.param(stage, point, marks=() if point in SAMPLE[stage] else pytest.mark.slow)
               for stage, lines, calls in (("apply", 16, 8), ("rollback", 15, 9))
               for point in [f"line:{n}" for n in range(1, lines + 1)]
               + [f"call:{n}" for n in range(1, calls + 1)]]


def killed(point: str, *args) -> None:
    done = subprocess.run([sys.executable, "-c", KILL, point, *map(str, args)],
                          env=os.environ.copy(), capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]


@pytest.mark.parametrize("stage,point", KILL_POINTS)
def test_kill_9_at_each_step_leaves_iam_and_the_journal_agreeing(scene, stage, point, capsys):
    iam, journal = scene.iam, scene.out / "journal.jsonl"
    before = snapshot(iam, scene.principals, scene.policies)
    if stage == "apply":
        killed(point, "aws", "apply", scene.out, "--yes")
        entries = journal_of(journal)  # whole: every line checksummed, none torn
        intents = [(e["run"], e["seq"]) for e in entries if e["state"] == "intent"]
        finished = {(e["run"], e["of"]) for e in entries if e["state"] == "done"}
        assert set(intents) - finished <= set(intents[-1:])  # at most the last is in doubt
        code = run("aws", "rollback", journal)
        if code == 1:  # only a detach apply could not know it made is left, and said so
            assert refusals(capsys).count("apply was interrupted around this detach") == 1
            code = run("aws", "rollback", journal, "--force")
    else:
        assert run("aws", "apply", scene.out, "--yes") == 0
        killed(point, "aws", "rollback", journal)
        code = run("aws", "rollback", journal)  # finishes what the killed one began
    assert code == 0
    assert snapshot(iam, scene.principals, scene.policies) == before
    assert run("aws", "rollback", journal) == 0


def test_an_iam_refusal_is_journaled_and_a_half_written_outdir_is_one_line(scene, monkeypatch,
                                                                           capsys):
    import botocore.client
    import botocore.exceptions

    original = botocore.client.BaseClient._make_api_call

    def refusing(self, name, params):
        if name == "DetachRolePolicy" and params["PolicyArn"] == scene.extra:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "UnmodifiableEntity", "Message": "no"}}, name)
        return original(self, name, params)

    before = snapshot(scene.iam, scene.principals, scene.policies)
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refusing)
    assert run("aws", "apply", scene.out, "--yes") == 1
    assert "AppExtra" in refusals(capsys)
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", original)
    failed = [e for e in journal_of(scene.out / "journal.jsonl") if e["state"] == "failed"]
    assert len(failed) == 1 and "UnmodifiableEntity" in failed[0]["error"]
    assert run("aws", "rollback", scene.out / "journal.jsonl") == 0  # nothing refused for it
    assert snapshot(scene.iam, scene.principals, scene.policies) == before

    assert run("aws", "rollback", scene.out / "missing.jsonl") == 2
    assert "no journal" in refusals(capsys)
    state = next((scene.out / "state").glob("*.json"))
    state.write_text(state.read_text()[:40])  # a recommend killed while writing
    assert run("aws", "apply", scene.out) == 2
    err = refusals(capsys)
    assert "half-written" in err and len(err.splitlines()) == 1
    state.write_text(json.dumps({"principal": {"arn": scene.app["arn"], "kind": "role"}}))
    assert run("aws", "apply", scene.out) == 2
    assert "does not name the principal's id, account, partition, name" in refusals(capsys)


def test_a_file_that_is_not_a_journal_is_never_cut(scene, capsys):
    summary = scene.out / "summary.json"
    summary.write_text('{"totals": {"findings": 2}}')  # one line, no newline: not torn
    assert run("aws", "apply", scene.out, "--yes", "--journal", summary) == 2
    assert "is not a journal refiner wrote" in refusals(capsys)
    assert summary.read_text() == '{"totals": {"findings": 2}}'
    assert run("aws", "rollback", summary) == 2
    assert summary.read_text() == '{"totals": {"findings": 2}}'


def test_a_copy_never_stands_in_for_a_group_or_boundary_policy(tmp_path):
    from refiner.aws.plan import plan

    out = tmp_path / "out"
    s = Scene.__new__(Scene)  # files only: no AWS
    s.n, s.out, s.account = 0, out, ACCOUNT
    for sub in ("state", "recommendations", "shared"):
        (out / sub).mkdir(parents=True)
    user = {"arn": f"arn:aws:iam::{ACCOUNT}:user/u", "id": "AIDA1", "account": ACCOUNT,
            "partition": "aws", "kind": "user", "name": "u"}
    group = f"arn:aws:iam::{ACCOUNT}:group/g"
    entry = {"ref": {"kind": "managed", "arn": S3_READ}, "text": json.dumps(RW),
             "awsManaged": True, "reach": [{"arn": user["arn"], "id": "AIDA1",
                                            "via": f"group:{group}"}]}
    s.recommend("f", user, [entry], [step(entry, READ)])
    (change,) = plan(str(out))
    assert change.how == "copy" and "otherwise than attached" in change.problem


def test_a_journal_cut_anywhere_keeps_every_whole_entry_and_reports_the_rest(tmp_path):
    from hypothesis import given
    from hypothesis import strategies as st

    from refiner.aws.journal import Journal, read_journal

    path = tmp_path / "j.jsonl"
    with Journal(str(path)) as journal:
        for number in range(6):
            journal.write({"state": "intent", "op": "put_inline", "account": ACCOUNT, "ref": {},
                           "text": "é\n\"" * number})
    whole = path.read_bytes()
    ends = [i + 1 for i, byte in enumerate(whole) if byte == ord("\n")]

    @given(st.integers(0, len(whole)))
    def cut_at(length: int) -> None:
        path.write_bytes(whole[:length])
        contents = read_journal(str(path))
        kept = sum(end <= length for end in ends)
        assert len(contents.entries) == kept  # every whole entry, nothing invented
        assert (contents.torn is not None) == (length not in [0, *ends])
        if contents.torn is not None:  # a writer keeps the cut bytes as an entry
            with Journal(str(path)) as reopened:
                assert reopened.contents.torn == contents.torn
            entries = read_journal(str(path)).entries
            assert entries[-1]["state"] == "torn" and entries[-1]["text"] == contents.torn
            assert len(entries) == kept + 1

    cut_at()


def held_actions(iam, actions: list[str]) -> dict[str, set[str]]:
    """Per role and user of the account, what it may do now by the regex oracle: the union of
    its inline, attached and groups' documents, within its permissions boundary."""
    from oracle import allowed_by

    export = {"RoleDetailList": [], "UserDetailList": [], "GroupDetailList": [], "Policies": []}
    for page in iam.get_paginator("get_account_authorization_details").paginate():
        for key in export:
            export[key] += page.get(key, [])
    documents = {p["Arn"]: next(v["Document"] for v in p["PolicyVersionList"]
                                if v["IsDefaultVersion"]) for p in export["Policies"]}

    def allowed(document: dict) -> set[str]:
        statements = document["Statement"]
        return set().union(*(allowed_by(s, actions) for s in (
            statements if isinstance(statements, list) else [statements])))

    def managed(arn: str) -> dict:
        if arn not in documents:  # AWS managed policies are not in the export
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            documents[arn] = iam.get_policy_version(PolicyArn=arn, VersionId=version)[
                "PolicyVersion"]["Document"]
        return documents[arn]

    groups = {g["GroupName"]: [p["PolicyDocument"] for p in g["GroupPolicyList"]]
              + [managed(a["PolicyArn"]) for a in g["AttachedManagedPolicies"]]
              for g in export["GroupDetailList"]}
    held = {}
    for kind, key in (("Role", "RoleDetailList"), ("User", "UserDetailList")):
        for detail in export[key]:
            mine = [p["PolicyDocument"] for p in detail.get(f"{kind}PolicyList", [])]
            mine += [managed(a["PolicyArn"]) for a in detail["AttachedManagedPolicies"]]
            mine += [d for name in detail.get("GroupList", []) for d in groups[name]]
            actions_held = set().union(*map(allowed, mine)) if mine else set()
            boundary = (detail.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
            if boundary:
                actions_held &= allowed(managed(boundary))
            held[detail["Arn"]] = actions_held
    return held


def test_recommend_then_apply_keeps_every_principal_whole(aws, analyzer, tmp_path, catalog,
                                                           capsys):
    """Issue 16 end to end: shared documents (a policy on three roles with different findings,
    one on a role without a finding, a boundary, a group's policy with two members) are
    recommended, applied to moto's IAM and checked per principal by the regex oracle, apart
    from the refiner: no principal loses an action it uses, and an action every holder leaves
    unused is gone."""
    pytest.importorskip("refiner.principals", reason="recommend's account graph (issue 16)")
    iam, _ = aws
    analyzer.findings.clear()
    s = Scene(analyzer, tmp_path / "unused")
    s.n = ""
    s3 = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
    shared = s.managed("Shared", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": s3, "Resource": "*"}]})
    kept = s.managed("Kept", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:DeleteObject"], "Resource": "*"}]})
    bound = s.managed("Bound", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "sqs:*"], "Resource": "*"}]})
    r1, r2, r3, r4 = s.role("R1", boundary=bound), s.role("R2"), s.role("R3"), s.role("R4")
    for principal in (r1, r2, r3):
        s.attach(principal, shared)
    for principal in (r3, r4):  # R4 has no finding: it uses everything
        s.attach(principal, kept)
    u1, u2 = s.user("U1"), s.user("U2")
    group = iam.create_group(GroupName="Team")["Group"]
    iam.put_group_policy(GroupName="Team", PolicyName="team", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:DeleteQueue"],
             "Resource": "*"}]}))
    for member in (u1, u2):
        iam.add_user_to_group(GroupName="Team", UserName=member["name"])
    unused = {r1["arn"]: {"s3": ["PutObject", "DeleteObject"]},
              r2["arn"]: {"s3": ["PutObject", "DeleteObject", "ListBucket"]},
              r3["arn"]: {"s3": ["DeleteObject"], "sqs": []},
              u1["arn"]: {"sqs": ["DeleteQueue"]}, u2["arn"]: {"sqs": ["DeleteQueue", "SendMessage"]}}
    for principal in (r1, r2, r3, u1, u2):
        s.finding(principal, unused[principal["arn"]])
    actions = [a for service in ("s3", "sqs") for a in catalog.actions_of(service)]
    before = held_actions(iam, actions)
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    assert run("aws", "fetch", "-o", bundle) == 0
    assert run("recommend", "--bundle", bundle, "-o", out, "--workers", "1") == 0
    assert run("aws", "apply", out, "--yes") == 0
    capsys.readouterr()
    after = held_actions(iam, actions)

    def unused_by(principal: dict, action: str) -> bool:
        service, name = action.split(":")
        listed = unused.get(principal["arn"], {}).get(service)
        return listed == [] or (listed is not None and name in listed)

    for principal in (r1, r2, r3, r4, u1, u2):
        arn = principal["arn"]
        used = {a for a in before[arn] if not unused_by(principal, a)}
        assert used <= after[arn], f"{arn} lost {sorted(used - after[arn])[:5]}"
        assert after[arn] <= before[arn], f"{arn} gained {sorted(after[arn] - before[arn])}"
    # Unused by every holder: gone from the shared documents.
    assert iam.get_group_policy(GroupName="Team", PolicyName="team")["PolicyDocument"][
        "Statement"][0]["Action"] in ("sqs:SendMessage", ["sqs:SendMessage"])
    version = iam.get_policy(PolicyArn=shared)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=shared, VersionId=version)["PolicyVersion"][
        "Document"]
    assert "s3:DeleteObject" not in json.dumps(document)  # unused by R1, R2 and R3
    assert "s3:GetObject" in json.dumps(document)  # used by all
    assert iam.get_policy(PolicyArn=kept)["Policy"]["DefaultVersionId"] == "v1"  # R4 uses it
    assert group["GroupName"] == "Team"
    assert run("aws", "rollback", out / "journal.jsonl") == 0
    assert held_actions(iam, actions) == before


def test_zz_refiners_own_policy_allows_every_call_it_made_and_no_other(catalog, tmp_path, capsys):
    """examples/refiner-aws/policy.json is what refiner proves from `iam:*`, `sts:*` and
    `access-analyzer:*` with everything but refiner.aws.PERMISSIONS unused; every call the
    tests above made (fixtures' setup calls aside) is allowed by it, and nothing else is."""
    from oracle import allowed_by

    from refiner.aws import AUTHORIZED_BY, PERMISSIONS

    setup = {"iam:CreateRole", "iam:CreateUser", "iam:ListRolePolicies", "iam:ListUserPolicies",
             "iam:CreateGroup", "iam:AddUserToGroup", "iam:RemoveUserFromGroup",
             "iam:DeleteRole", "iam:PutRolePermissionsBoundary",
             "iam:DeleteRolePermissionsBoundary", "iam:ListPolicies"}  # the tests' own
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


# --- what an attacker with the files, or a crash, must not get past -----------------------------

ADMIN = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]}


def test_fields_are_tied_to_the_arns_that_name_them(live, tmp_path, capsys):
    s = Scene(live, tmp_path / "out")
    a, b = s.role("A"), s.role("B")
    mine = s.inline(a, "p", RW)
    s.inline(b, "p", ADMIN)
    finding = s.finding(a, {"s3": ["PutObject"]})
    # The state names A's ARN with B's name and id: the write would go to B.
    s.recommend(finding, dict(a, name=b["name"], id=b["id"]), [mine], [step(mine, READ)])
    assert run("aws", "apply", s.out, "--yes") == 2
    err = refusals(capsys)
    assert "the principal's fields disagree with its ARN" in err and len(err.splitlines()) == 1
    assert s.iam.get_role_policy(RoleName=b["name"], PolicyName="p")["PolicyDocument"] == ADMIN
    # A user-inline ref whose owner ARN is a role (a user of the same name exists).
    s.iam.create_user(UserName=a["name"])
    s.iam.put_user_policy(UserName=a["name"], PolicyName="p", PolicyDocument=json.dumps(RW))
    s.iam.put_role_policy(RoleName=a["name"], PolicyName="p", PolicyDocument=json.dumps(ADMIN))
    wrong = dict(mine, ref=dict(mine["ref"], kind="user-inline"))
    s.recommend(finding, a, [wrong], [{"unusedPermissionsRecommendedStep": {
        "policyRef": wrong["ref"], "existingPolicyId": "p", "recommendedAction": "CREATE_POLICY",
        "recommendedPolicy": json.dumps(READ)}}])
    assert run("aws", "apply", s.out, "--yes") == 1
    assert f"a user-inline policy whose owner {a['arn']} is a role" in refusals(capsys)
    assert s.iam.get_role_policy(RoleName=a["name"], PolicyName="p")["PolicyDocument"] == ADMIN
    assert s.iam.get_user_policy(UserName=a["name"], PolicyName="p")["PolicyDocument"] == RW


def applied_two(live, tmp_path) -> tuple[Scene, dict]:
    """A role whose two inline policies apply has narrowed to READ."""
    s = Scene(live, tmp_path / "out")
    a = s.role("J")
    first, second = s.inline(a, "p", RW), s.inline(a, "q", RW)
    finding = s.finding(a, {"s3": ["PutObject"]})
    s.recommend(finding, a, [first, second], [step(first, READ), step(second, READ)])
    assert run("aws", "apply", s.out, "--yes") == 0
    return s, a


def written(path, entries: list[dict]) -> None:
    """entries written as a journal, the chain of checksums made anew (as a forger would)."""
    from refiner.aws.journal import checksum

    previous = ""
    for entry in entries:
        entry["prev"] = previous
        entry["sum"] = previous = checksum(entry)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_a_stale_undo_mark_does_not_excuse_a_change_since(live, tmp_path, capsys):
    from refiner.aws.journal import Journal

    s, a = applied_two(live, tmp_path)
    path = s.out / "journal.jsonl"
    intent = next(e for e in journal_of(path) if e["state"] == "intent" and
                  e["ref"]["name"] == "p")
    with Journal(str(path)) as journal:  # a rollback killed after its mark, before its call
        journal.write({"state": "undo", "of": [intent["run"], intent["seq"]]})
    other = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]}
    s.iam.put_role_policy(RoleName=a["name"], PolicyName="p", PolicyDocument=json.dumps(other))
    capsys.readouterr()
    assert run("aws", "rollback", path) == 1
    assert "inline policy p was changed since apply" in refusals(capsys)
    assert s.iam.get_role_policy(RoleName=a["name"], PolicyName="p")["PolicyDocument"] == other
    # A version: someone's new default is not apply's, nor the one the undo restores.
    v = s.role("V")
    arn = s.managed("Own", RW)
    s.attach(v, arn)
    entry = s.managed_entry(arn, [(v, "attached")])
    finding = s.finding(v, {"s3": ["PutObject"]})
    out = tmp_path / "v"
    t = Scene(live, out)
    t.recommend(finding, v, [entry], [step(entry, READ)])
    assert run("aws", "apply", out, "--yes") == 0
    path = out / "journal.jsonl"
    intent = next(e for e in journal_of(path) if e["state"] == "intent")
    with Journal(str(path)) as journal:
        journal.write({"state": "undo", "of": [intent["run"], intent["seq"]]})
    s.iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(other), SetAsDefault=True)
    capsys.readouterr()
    assert run("aws", "rollback", path) == 1
    assert "default version is v3, not v2 (apply's)" in refusals(capsys)
    assert s.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v3"


def test_a_journal_missing_duplicated_reordered_or_forged_line_is_refused(live, tmp_path,
                                                                          capsys):
    s, a = applied_two(live, tmp_path)
    capsys.readouterr()
    path = s.out / "journal.jsonl"
    entries = journal_of(path)
    first = next(e for e in entries if e["state"] == "intent")
    for damaged, line in (
            ([e for e in entries if e is not first], first["seq"]),  # a line deleted
            (entries + entries, len(entries) + 1),  # duplicated
            (entries[:2] + [entries[3], entries[2]] + entries[4:], 3)):  # two swapped
        copy_path = tmp_path / "damaged.jsonl"
        copy_path.write_text("".join(json.dumps(e) + "\n" for e in damaged))
        assert run("aws", "rollback", copy_path) == 2
        err = refusals(capsys)
        assert f"line {line} " in err and "refused" in err and len(err.splitlines()) == 1
    # A missing line with the chain made anew: the sequence of its run has a gap.
    forged = tmp_path / "forged.jsonl"
    written(forged, [dict(e) for e in entries if e is not first])
    assert run("aws", "rollback", forged) == 2
    assert "is entry 3 of run" in refusals(capsys)
    # Every undo made to restore another document, checksums and chain recomputed: the OUTDIR
    # recommend wrote says what the policy was.
    edited = [dict(e) for e in entries]
    for entry in edited:
        if entry["state"] == "intent":
            entry["before"] = json.dumps(ADMIN)
    written(path, edited)
    assert run("aws", "rollback", path) == 1
    assert refusals(capsys).count("is not the one recommend recorded") == 2
    assert s.iam.get_role_policy(RoleName=a["name"], PolicyName="p")["PolicyDocument"] == READ


def test_a_malformed_entry_is_refused_alone_and_never_called_nothing_written(live, tmp_path,
                                                                            capsys):
    from refiner.aws.journal import Journal

    s = Scene(live, tmp_path / "out")
    a, b = s.role("M"), s.role("N")
    mine = s.inline(a, "p", RW)
    finding = s.finding(a, {"s3": ["PutObject"]})
    s.recommend(finding, a, [mine], [step(mine, READ)])
    arn = s.managed("Sh", RW)
    s.attach(b, arn)
    entry = s.managed_entry(arn, [(b, "attached")])
    del entry["reach"][0]["via"]
    other = s.finding(b, {"s3": ["PutObject"]})
    s.recommend(other, b, [entry], [s.shared("zz-shared", entry, READ, [other])])
    assert run("aws", "apply", s.out, "--yes") == 1
    err = refusals(capsys)
    assert "does not say the principal's arn, id and how the policy reaches it" in err
    assert "internal error" not in err
    assert s.iam.get_role_policy(RoleName=a["name"], PolicyName="p")["PolicyDocument"] == READ
    entries = journal_of(s.out / "journal.jsonl")
    # Entries without the fields their state needs: the journal is damaged, exit 2.
    for bad in ({"state": "done"}, {"state": "intent", "op": "put_inline"},
                {"state": "intent", "op": "__init__", "account": ACCOUNT, "ref": {}}):
        path = tmp_path / "bad.jsonl"
        written(path, [dict(e) for e in entries] + [{"run": entries[-1]["run"],
                                                     "seq": entries[-1]["seq"] + 1, **bad}])
        assert run("aws", "rollback", path) == 2
        err = refusals(capsys)
        assert f"line {len(entries) + 1} is damaged" in err and len(err.splitlines()) == 1
    # A journal that cannot be parsed: refused, and its descriptor closed.
    path = tmp_path / "list.jsonl"
    path.write_text("[1,2]\n")
    held = len(os.listdir("/proc/self/fd"))
    with pytest.raises(Exception, match="is damaged"):
        Journal(str(path))
    assert len(os.listdir("/proc/self/fd")) == held
    assert path.read_text() == "[1,2]\n"


def test_a_bug_after_a_journaled_call_never_says_nothing_was_written(live, tmp_path, capsys,
                                                                    monkeypatch):
    from refiner.aws import apply as applying

    s = Scene(live, tmp_path / "out")
    a = s.role("B")
    first, second = s.inline(a, "p", RW), s.inline(a, "q", RW)
    finding = s.finding(a, {"s3": ["PutObject"]})
    s.recommend(finding, a, [first, second], [step(first, READ), step(second, READ)])
    made = applying.Run._put_inline

    def then_a_bug(self, iam, change, owner):
        made(self, iam, change, owner)
        raise RuntimeError("a bug")

    monkeypatch.setattr(applying.Run, "_put_inline", then_a_bug)
    assert run("aws", "apply", s.out, "--yes") == 3
    err = refusals(capsys)
    assert "internal error, IAM may have been changed (1 calls announced in journal" in err
    assert "nothing was written" not in err


def test_apply_proves_the_recommended_document_again(live, tmp_path, capsys):
    s = Scene(live, tmp_path / "out")
    a = s.role("D")
    policies = [s.inline(a, name, RW) for name in ("deny", "narrow", "condition")]
    finding = s.finding(a, {"s3": ["PutObject"]})
    get = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}
    deny = {"Version": "2012-10-17", "Statement": [get, dict(get, Effect="Deny")]}
    narrow = {"Version": "2012-10-17", "Statement": [dict(get, Resource="arn:aws:s3:::b/x")]}
    condition = {"Version": "2012-10-17", "Statement": [
        dict(get, Condition={"Bool": {"aws:SecureTransport": "false"}})]}
    documents = (deny, narrow, condition)
    s.recommend(finding, a, policies, [step(p, d) for p, d in zip(policies, documents,
                                                                   strict=True)])
    assert run("aws", "apply", s.out, "--yes") == 1
    err = refusals(capsys)
    assert err.count("recommend only narrows Allow statements' actions or drops statements") == 3
    assert "adds statement 2" in err and err.count("changes statement 1 beyond its actions") == 2
    for name in ("deny", "narrow", "condition"):
        assert s.iam.get_role_policy(RoleName=a["name"], PolicyName=name)["PolicyDocument"] == RW


def test_apply_refuses_what_the_kernel_does_not_prove(live, tmp_path, capsys):
    s = Scene(live, tmp_path / "out")
    a = s.role("K")
    mine = s.inline(a, "p", READ)
    finding = s.finding(a, {"s3": ["PutObject"]})
    s.recommend(finding, a, [mine], [step(mine, RW)])  # grants what the policy did not
    assert run("aws", "apply", s.out, "--yes") == 1
    assert "is not proven against the live policy and findings (unsound" in refusals(capsys)
    assert s.iam.get_role_policy(RoleName=a["name"], PolicyName="p")["PolicyDocument"] == READ


def test_a_recreated_group_or_managed_policy_is_refused(live, tmp_path, capsys):
    s = Scene(live, tmp_path / "out")
    u = s.user("U")
    g = s.iam.create_group(GroupName=s.name("G"))["Group"]
    s.iam.add_user_to_group(GroupName=g["GroupName"], UserName=u["name"])
    team = {"arn": g["Arn"], "id": g["GroupId"], "kind": "group", "name": g["GroupName"],
            "members": [u]}
    group_entry = s.inline(team, "gp", RW)
    arn = s.managed("Own", RW)
    s.attach(u, arn)
    managed = s.managed_entry(arn, [(u, "attached")])
    finding = s.finding(u, {"s3": ["PutObject"]})
    s.recommend(finding, u, [group_entry, managed], [
        s.shared("grp", group_entry, READ, [finding]), step(managed, READ)])
    # Both deleted and re-created under their names, with the same member and documents.
    s.iam.remove_user_from_group(GroupName=g["GroupName"], UserName=u["name"])
    s.iam.delete_group_policy(GroupName=g["GroupName"], PolicyName="gp")
    s.iam.delete_group(GroupName=g["GroupName"])
    again = s.iam.create_group(GroupName=g["GroupName"])["Group"]
    s.iam.add_user_to_group(GroupName=g["GroupName"], UserName=u["name"])
    s.iam.put_group_policy(GroupName=g["GroupName"], PolicyName="gp", PolicyDocument=json.dumps(RW))
    s.iam.detach_user_policy(UserName=u["name"], PolicyArn=arn)
    s.iam.delete_policy(PolicyArn=arn)
    assert s.managed("Own", RW) == arn
    s.attach(u, arn)
    assert run("aws", "apply", s.out, "--yes") == 1
    err = refusals(capsys)
    assert f"{g['Arn']} was deleted and re-created since the recommendation (id " \
        f"{g['GroupId']}, now {again['GroupId']})" in err
    assert f"{arn} was deleted and re-created since the recommendation" in err
    assert s.iam.get_group_policy(GroupName=g["GroupName"], PolicyName="gp")["PolicyDocument"] == RW
    assert s.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v1"
