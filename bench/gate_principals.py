"""Benchmark: the gate judging principals, with AWS managed policies resolved from the snapshot.

Run by hand (not part of the test suite):

    .venv/bin/python bench/gate_principals.py [--roles 50] [--repeat 3]

A CloudFormation template with ROLES roles, each holding an inline policy and one or two AWS
managed policies; HEAD attaches one more AWS managed policy to every role (a mix: one the role
already covers, ReadOnlyAccess beside AdministratorAccess; one it does not, SecurityAudit
beside AmazonEC2ReadOnlyAccess). Reported: wall time of compare_templates (holdings of BASE
and HEAD, every principal judged by the kernel), proof queries, and the verdicts' exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from refiner.gate import compare_templates  # noqa: E402
from refiner.iac import template_from_text  # noqa: E402

ARN = "arn:aws:iam::aws:policy/"
HOLDS = [[ARN + "AdministratorAccess"], [ARN + "AmazonEC2ReadOnlyAccess"]]
GAINS = [ARN + "ReadOnlyAccess", ARN + "SecurityAudit"]


def template(roles: int, gain: bool) -> str:
    resources = {}
    for number in range(roles):
        arns = list(HOLDS[number % 2]) + ([GAINS[number % 2]] if gain else [])
        resources[f"Role{number}"] = {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []},
            "ManagedPolicyArns": arns,
            "Policies": [{"PolicyName": "own", "PolicyDocument": {
                "Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": ["s3:GetObject", "sqs:SendMessage"],
                     "Resource": "*"}]}}]}}
    return json.dumps({"Resources": resources}, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--roles", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = template_from_text("base.json", template(args.roles, False))
    head = template_from_text("head.json", template(args.roles, True))
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = compare_templates(base, head)
        times.append(time.perf_counter() - start)
    rejected = sum(1 for v in result.verdicts if v.violation.kind in ("unsound", "structure"))
    print(f"{args.roles} roles, {result.principals} principals judged: best {min(times):.2f} s, "
          f"median {sorted(times)[len(times) // 2]:.2f} s; {result.queries} proof queries; "
          f"exit {result.exit_code()}, {rejected} rejecting verdicts")


if __name__ == "__main__":
    main()
