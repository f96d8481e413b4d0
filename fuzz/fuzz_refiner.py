"""Coverage-guided fuzzing of refiner's input handling and pipeline with atheris.

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/fuzz_refiner.py -atheris_runs=20000 -max_len=2048

Each input is split at its first NUL byte into a policy and a finding. Reading, refining and
proving must end in a result, an InputError (exit 2) or a rejected proof (exit 3); anything
else (another exception, a crash, a hang past libFuzzer's timeout) is a finding.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from refiner.catalog import Catalog
    from refiner.errors import InputError
    from refiner.finding import parse_finding
    from refiner.pipeline import refine_and_prove
    from refiner.policy import load_policy, parse_json_text

# A small catalog keeps each run fast; its names collide the way real ones do.
CATALOG = Catalog({
    "s3": ["GetObject", "GetObjectAcl", "GetBucketPolicy", "GetBucketPolicyStatus", "ListBucket",
           "PutObject"],
    "ec2": ["DescribeFleets", "DescribeFleetHistory", "DescribeInstances", "RunInstances"],
    "iam": ["CreateAccessKey", "ListAccessKeys", "GetRole"],
}, "fuzz")


def test_one_input(data: bytes) -> None:
    policy_bytes, _, finding_bytes = data.partition(b"\0")
    try:
        policy = load_policy(parse_json_text(policy_bytes.decode("utf-8", "replace"), "policy"))
        unused = parse_finding(parse_json_text(finding_bytes.decode("utf-8", "replace"),
                                               "finding"), CATALOG)
    except InputError:
        return
    run = refine_and_prove(policy, unused, CATALOG, timeout_ms=2_000)
    if any(v.kind not in ("unknown",) for v in run.violations):
        raise AssertionError(f"refiner proposed an unproven refinement: {run.violations[0]}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
