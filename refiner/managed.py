"""AWS managed policies: a dated snapshot of their documents, shipped with the package."""

from __future__ import annotations

import gzip
import json
import re
from functools import lru_cache
from importlib import resources

# The default versions AWS published when the snapshot was taken. Refresh: write one JSON
# object a line, {"name", "version", "document"}, for every policy of
# `aws iam list-policies --scope AWS` (document from get-policy-version of its DefaultVersionId),
# gzip it to refiner/data/aws-managed-policies.jsonl.gz and change SNAPSHOT_DATE.
SNAPSHOT_DATE = "2026-03"
SNAPSHOT_FILE = "aws-managed-policies.jsonl.gz"

# arn:<partition>:iam::aws:policy/<path><name>: the account part "aws" marks AWS managed
# policies in every partition (aws, aws-cn, aws-us-gov, ...).
AWS_MANAGED_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::aws:policy/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)$")


@lru_cache(maxsize=1)
def snapshot() -> dict[str, dict]:
    """name -> {"version", "document"} for every AWS managed policy in the snapshot."""
    data = resources.files("refiner").joinpath("data", SNAPSHOT_FILE).read_bytes()
    entries = (json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines() if line)
    return {entry["name"]: {"version": entry["version"], "document": entry["document"]} for entry in entries}


def is_aws_managed(arn: str) -> bool:
    return AWS_MANAGED_ARN.match(arn) is not None


def document_for_arn(arn: str) -> dict | None:
    """The snapshot's document of an AWS managed policy ARN; None when the ARN is not AWS
    managed or the snapshot does not know the policy (the caller must treat that as unknown)."""
    match = AWS_MANAGED_ARN.match(arn)
    if match is None:
        return None
    entry = snapshot().get(match.group(2))
    return entry["document"] if entry else None
