"""The GitHub Action (action.yml) and the pre-commit hook, run for real on a git repository made
here: a base branch and a pull request branch that narrows one policy, widens another and adds
a third."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES
from iac_support import FIXTURES
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
APP = (FIXTURES / "serverless.yaml").read_text()
MODULE = (FIXTURES / "terraform" / "main.tf").read_text()
NEW_TEMPLATE = """\
Resources:
  Auditor:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Version: '2012-10-17'
        Statement:
          - Effect: Allow
            Action: cloudtrail:LookupEvents
            Resource: '*'
"""


def environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def git(repository: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repository, env=environment(), check=True,
                   capture_output=True)


def put(repository: Path, path: str, text: str) -> None:
    target = repository / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture
def repository(tmp_path) -> Path:
    repository = tmp_path / "repo"
    repository.mkdir()
    git(repository, "init", "-q", "-b", "main")
    put(repository, "infra/app.yaml", APP)
    put(repository, "modules/ingest/main.tf", MODULE)
    put(repository, "policies/role.json", (EXAMPLES / "policy.json").read_text())
    put(repository, "package.json", '{"name": "orders"}\n')
    put(repository, ".github/workflows/ci.yml", "on: push\njobs: {}\n")
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", "base")
    git(repository, "checkout", "-q", "-b", "feature")
    put(repository, "infra/app.yaml", APP.replace('Action: "sqs:*"   # TODO: narrow',
                                                  "Action: [sqs:ReceiveMessage, "
                                                  "sqs:DeleteMessage]"))
    put(repository, "modules/ingest/main.tf",
        MODULE.replace('"Action": ["sqs:SendMessage", "sqs:Get*"]', '"Action": ["sqs:*"]'))
    put(repository, "infra/audit.yaml", NEW_TEMPLATE)
    put(repository, "package.json", '{"name": "orders", "version": "2"}\n')
    put(repository, ".github/workflows/ci.yml", "on: [push, pull_request]\njobs: {}\n")
    (repository / "policies" / "role.json").unlink()
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", "feature")
    git(repository, "checkout", "-q", "main")  # the Action reads both commits from git
    return repository


def action_steps() -> list[dict]:
    return YAML(typ="safe").load((ROOT / "action.yml").read_text())["runs"]["steps"]


def run_step(step: dict, repository: Path, env: dict) -> subprocess.CompletedProcess:
    assert step["shell"] == "bash"
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=repository,
                          env={**environment(), **env}, capture_output=True, text=True,
                          timeout=120)


def run_action(repository: Path, tmp_path: Path, **inputs) -> tuple[int, dict, str]:
    """The Action's gate and verdict steps, with its inputs as GitHub passes them (env)."""
    steps = {step.get("id", step.get("name")): step for step in action_steps()}
    gate = steps["gate"]
    values = {"base": "main", "head": "feature", "allow-new-policies": "false",
              "sarif-file": str(tmp_path / "refiner.sarif"), **inputs}
    env = {name: re.sub(r"\$\{\{ inputs\.([a-z-]+) \}\}", lambda m: values[m.group(1)], value)
           for name, value in gate["env"].items()}
    output = tmp_path / "github_output"
    output.write_text("")
    done = run_step(gate, repository, {**env, "GITHUB_OUTPUT": str(output)})
    assert done.returncode == 0, done.stderr  # the gate step records, the verdict step fails
    code = int(re.search(r"^exit-code=(\d+)$", output.read_text(), re.MULTILINE).group(1))
    verdict = run_step(steps["Verdict"], repository, {"REFINER_EXIT": str(code)})
    assert verdict.returncode == code
    return code, json.loads(Path(values["sarif-file"]).read_text()), done.stdout + done.stderr


def test_the_action_rejects_what_a_pull_request_widens_and_adds(repository, tmp_path):
    code, sarif, output = run_action(repository, tmp_path)
    assert code == 1, output
    located = sorted(
        (r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
         r["locations"][0]["physicalLocation"]["region"]["startLine"], r["ruleId"])
        for r in sarif["runs"][0]["results"])
    widened = MODULE.replace('"Action": ["sqs:SendMessage", "sqs:Get*"]', '"Action": ["sqs:*"]')
    assert located == [("infra/audit.yaml", line_of(NEW_TEMPLATE, "Version"), "structure"),
                       ("modules/ingest/main.tf", line_of(widened, '"sqs:*"'), "unsound")]
    assert "package.json" not in output and "ci.yml" not in output
    # app.yaml, main.tf, audit.yaml and the deleted role.json (it held no Deny)
    assert "refiner gate: rejected; judged 4 files" in output
    assert "not judged: the values of deploy-time parameters" in output


def test_the_action_accepts_a_narrowing(repository, tmp_path):
    git(repository, "checkout", "-q", "-b", "narrow", "main")
    put(repository, "infra/app.yaml", APP.replace("- s3:Get*", "- s3:GetObject"))
    git(repository, "commit", "-q", "-am", "narrow")
    code, sarif, output = run_action(repository, tmp_path, head="narrow")
    assert code == 0, output
    assert sarif["runs"][0]["results"] == []
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is True
    code, _, output = run_action(repository, tmp_path, **{"allow-new-policies": "true"})
    assert code == 1  # the widened Terraform policy is still rejected
    assert "audit.yaml" not in output


def test_the_pre_commit_hook_judges_the_staged_files(repository):
    hook = next(h for h in YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text())
                if h["id"] == "refiner-gate")
    pattern = re.compile(hook.get("files", ""))  # pre-commit's default: every file

    def commit_hook(*files: str) -> subprocess.CompletedProcess:
        staged = [f for f in files if pattern.search(f)]
        return subprocess.run([*shlex.split(hook["entry"]), *staged], cwd=repository,
                              env=environment(), capture_output=True, text=True, timeout=120)

    put(repository, "infra/app.yaml", APP.replace("- s3:Get*", "- s3:*"))
    git(repository, "add", "infra/app.yaml")
    done = commit_hook("infra/app.yaml", "README.md")
    assert done.returncode == 1
    assert f"infra/app.yaml:{line_of(APP, '- s3:Get*')}: unsound" in done.stdout
    put(repository, "infra/app.yaml", APP.replace("- s3:Get*", "- s3:GetObject"))
    git(repository, "add", "infra/app.yaml")
    done = commit_hook("infra/app.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    # pre-commit passes no deleted file; a staged deletion of a Deny policy is still judged.
    put(repository, "guard.json", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}]}))
    git(repository, "add", "guard.json")
    git(repository, "commit", "-q", "-m", "guard")
    git(repository, "rm", "-q", "guard.json")
    done = commit_hook("infra/app.yaml")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "guard.json:1: structure" in done.stdout and "Deny" in done.stdout
