"""Render a proven refinement: the policy as JSON, a unified diff, or an Access Analyzer response."""

from __future__ import annotations

import difflib
import json
from datetime import datetime, timezone

from .policy import PolicyInput
from .refine import Refinement

FORMATS = ("json", "diff", "aws")


def as_json(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def as_diff(policy: PolicyInput, refinement: Refinement, name: str) -> str:
    """Unified diff of the original and refined policy, both in the same pretty form."""
    lines = difflib.unified_diff(
        as_json(policy.document).splitlines(keepends=True),
        as_json(refinement.document).splitlines(keepends=True),
        fromfile=f"a/{name}",
        tofile=f"b/{name}",
    )
    return "".join(lines)


def as_recommendation(
    policy: PolicyInput,
    refinement: Refinement,
    resource_arn: str | None,
    started_at: datetime,
    extra: dict | None = None,
) -> str:
    """An object shaped like Access Analyzer's GetFindingRecommendation response."""
    step: dict = {"recommendedAction": "DETACH_POLICY" if refinement.detach else "CREATE_POLICY"}
    if not refinement.detach:
        step["recommendedPolicy"] = json.dumps(refinement.document, ensure_ascii=False)
    if policy.policy_id:
        step["existingPolicyId"] = policy.policy_id
    if policy.updated_at:
        step["policyUpdatedAt"] = policy.updated_at
    response: dict = {"recommendationType": "UnusedPermissionRecommendation"}
    if resource_arn:
        response["resourceArn"] = resource_arn
    response.update(
        {
            "status": "SUCCEEDED",
            "startedAt": _timestamp(started_at),
            "completedAt": _timestamp(datetime.now(timezone.utc)),
            "recommendedSteps": [{"unusedPermissionsRecommendedStep": step}],
        }
    )
    response.update(extra or {})
    return as_json(response)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
