"""`refiner aws compare`: ask Access Analyzer for its recommendations and judge each with the kernel."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..account import Account, finding_file_name
from ..catalog import Catalog
from ..errors import InputError
from ..finding import merge_findings
from ..jsontext import dumps, parse_json_text
from ..output import progress, write_file
from ..patterns import parse
from ..pipeline import refine_and_prove
from ..policy import allowed_among, load_policy, pattern_count, patterns_of
from ..prove import Violation
from ..verification import REJECTING, verify
from . import aws_errors, client, session
from .fetch import MANIFEST, bundle_inputs

AWS_RECOMMENDATIONS = "aws-recommendations"
MAX_POLLS = 120


@dataclass
class CompareJob:
    bundle: str
    catalog: Catalog
    timeout_ms: int
    profile: str | None = None
    region: str | None = None
    poll_seconds: float = 2.0
    progress: bool = True


@dataclass
class Judgement:
    """Refiner's verdicts on one of AWS's recommended steps, and how refiner's own differs."""

    finding_id: str
    policy_id: str
    action: str
    artifact: str  # the file AWS's recommendation was saved to
    verdicts: list[Violation] = field(default_factory=list)
    aws_patterns: int = 0
    refiner_patterns: int | None = None
    lost: list[str] = field(default_factory=list)  # used actions AWS's step no longer allows

    @property
    def accepted(self) -> bool:
        return not any(v.kind in REJECTING for v in self.verdicts)

    def as_json(self) -> dict:
        return {"findingId": self.finding_id, "policyId": self.policy_id,
                "recommendedAction": self.action, "accepted": self.accepted,
                "verdicts": [{"verdict": v.kind, "statement": v.statement, "message": v.message,
                              "witness": v.witness, "actions": list(v.actions),
                              "pattern": v.pattern} for v in self.verdicts],
                "awsPatterns": self.aws_patterns, "refinerPatterns": self.refiner_patterns,
                "usedActionsLost": self.lost}


def compare(job: CompareJob) -> list[Judgement]:
    """For each UnusedPermission finding of the bundle: GenerateFindingRecommendation, poll
    GetFindingRecommendation until it is done, save it under BUNDLE/aws-recommendations/, and
    judge each recommended step against the same finding and catalog."""
    details, findings = bundle_inputs(job.bundle)
    manifest = json.loads((Path(job.bundle) / MANIFEST).read_text(encoding="utf-8"))
    account = Account.read(details)
    analyzer = client(session(job.profile, job.region), "accessanalyzer")
    folder = Path(job.bundle) / AWS_RECOMMENDATIONS
    folder.mkdir(exist_ok=True)
    responses = [json.loads(p.read_text(encoding="utf-8"))
                 for p in sorted(Path(findings[0]).glob("*.json"))]
    responses = [r for r in responses if r.get("findingType") == "UnusedPermission"]
    judgements: list[Judgement] = []
    with progress(job.progress, len(responses), "asking Access Analyzer") as advance:
        for response in responses:
            try:
                recommendation = _recommendation(analyzer, manifest["analyzerArn"],
                                                 response["id"], job.poll_seconds)
            except aws_errors() as error:
                raise InputError(f"Access Analyzer refused finding {response['id']}: {error}") \
                    from None
            artifact = folder / finding_file_name(response["id"])
            write_file(str(artifact), dumps(recommendation, indent=2) + "\n")
            judgements += _judge(response, recommendation, account, job, str(artifact))
            advance()
    return judgements


def _recommendation(analyzer, analyzer_arn: str, finding_id: str, poll_seconds: float) -> dict:
    """AWS's recommendation for a finding, all pages of its steps, once it is not IN_PROGRESS."""
    analyzer.generate_finding_recommendation(analyzerArn=analyzer_arn, id=finding_id)
    for attempt in range(MAX_POLLS):
        first = analyzer.get_finding_recommendation(analyzerArn=analyzer_arn, id=finding_id)
        if first["status"] != "IN_PROGRESS":
            break
        time.sleep(min(poll_seconds * (1 + attempt / 4), 10 * poll_seconds))
    else:
        raise InputError(f"Access Analyzer's recommendation for {finding_id} stayed IN_PROGRESS")
    steps, token = list(first.get("recommendedSteps", [])), first.get("nextToken")
    while token:
        page = analyzer.get_finding_recommendation(analyzerArn=analyzer_arn, id=finding_id,
                                                   nextToken=token)
        steps += page.get("recommendedSteps", [])
        token = page.get("nextToken")
    whole = {k: v for k, v in first.items() if k not in ("ResponseMetadata", "nextToken")}
    whole["recommendedSteps"] = steps
    return json.loads(json.dumps(whole, default=lambda value: value.isoformat()))


def _judge(response: dict, recommendation: dict, account: Account, job: CompareJob,
           artifact: str) -> list[Judgement]:
    finding_id = response["id"]
    if recommendation.get("status") != "SUCCEEDED":
        error = recommendation.get("error") or {}
        return [Judgement(finding_id, "", "none", artifact, [Violation(
            "unknown", None, None, f"AWS gave no recommendation ({recommendation.get('status')}: "
            f"{error.get('message', 'no reason')})")])]
    unused = merge_findings([(f"finding {finding_id}", response)], job.catalog)
    principal = account.principals.get(response.get("resource"))
    judgements = []
    for step in recommendation.get("recommendedSteps", []):
        detail = step.get("unusedPermissionsRecommendedStep", {})
        policy_id = detail.get("existingPolicyId", "")
        judgement = Judgement(finding_id, policy_id, detail.get("recommendedAction", ""),
                              artifact)
        ref = next((p for p in principal.policies if p.policy_id == policy_id), None) \
            if principal else None
        if ref is None:
            judgement.verdicts.append(Violation("unknown", None, None, f"policy {policy_id} of "
                                                f"{response.get('resource')} is not in the bundle"))
            judgements.append(judgement)
            continue
        label = f"policy {ref.name}"
        original = load_policy(parse_json_text(ref.text, label), label, ref.text)
        if judgement.action == "CREATE_POLICY":
            text = detail.get("recommendedPolicy", "")
            refined = load_policy(parse_json_text(text, f"AWS's {label}"), f"AWS's {label}", text)
        else:  # DETACH_POLICY: nothing of the policy is left
            refined = load_policy({"recommendedSteps": [step]}, f"AWS's {label}")
        report = verify(original, refined, unused, job.catalog, job.timeout_ms)
        judgement.verdicts = report.verdicts
        judgement.aws_patterns = pattern_count(refined.statements)
        if any(v.kind == "incomplete" for v in report.verdicts):
            judgement.lost = _used_actions_lost(original, refined, unused, job.catalog)
        ours = refine_and_prove(original, unused, job.catalog, job.timeout_ms)
        if not ours.violations:
            judgement.refiner_patterns = pattern_count(ours.refined.statements
                                                       if ours.refined else [])
        judgements.append(judgement)
    return judgements


def _used_actions_lost(original, refined, unused, catalog: Catalog) -> list[str]:
    """Every used catalog action the original policy allowed and AWS's does not: a report
    beside the kernel's verdict (which names one witness per obligation), by glob matching."""
    def allowed(policy) -> set[str]:
        found: set[str] = set()
        for statement in policy.statements:
            # An Action entry can only match names that start with its literal prefix.
            names = {a for p in patterns_of(statement)
                     for a in catalog.with_prefix(parse(p).literal_prefix)} \
                if "Action" in statement else catalog.all_actions()
            found |= allowed_among(statement, names)
        return found

    return sorted((a for a in allowed(original) - allowed(refined) if not unused.is_unused(a)),
                  key=str.lower)


def exit_code(judgements: list[Judgement]) -> int:
    """verify's codes: 1 when a step is rejected, 3 when one is undecided, else 0."""
    kinds = {v.kind for j in judgements for v in j.verdicts}
    if kinds & set(REJECTING):
        return 1
    if kinds & {"unknown", "solver-disagreement"}:
        return 3
    return 0


def as_table(judgements: list[Judgement]) -> str:
    lines = ["finding | policy | AWS's step | verdict | AWS patterns | refiner patterns | "
             "used actions AWS loses"]
    for j in judgements:
        verdict = "accepted" if j.accepted and not j.verdicts else \
            ", ".join(sorted({v.kind for v in j.verdicts})) or "accepted"
        lines.append(f"{j.finding_id} | {j.policy_id} | {j.action} | {verdict} | "
                     f"{j.aws_patterns} | {j.refiner_patterns if j.refiner_patterns is not None else '-'} | "
                     f"{', '.join(j.lost) or '-'}")
    return "\n".join(lines) + "\n"

