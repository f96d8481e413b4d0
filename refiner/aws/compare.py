"""`refiner aws compare`: ask Access Analyzer for its recommendations and judge each with the kernel."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..account import Account, PolicyRef, finding_file_name
from ..catalog import Catalog
from ..errors import InputError
from ..finding import Unused, merge_findings
from ..jsontext import dumps, parse_json_text
from ..output import progress, write_file
from ..patterns import parse
from ..pipeline import refine_and_prove
from ..policy import allowed_among, load_policy, pattern_count, patterns_of
from ..prove import Violation, same_json
from ..verification import REJECTING, verify
from . import aws_errors, client, session
from .fetch import MANIFEST, bundle_inputs, whole_finding
from .live import Accounts, Refused, inline_document, managed_document, parse_arn

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
    assume_role_name: str | None = None
    concurrency: int = 8


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
    stale: str = ""  # how the bundle differs from the live finding and policies

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
                "usedActionsLost": self.lost, **({"bundleStale": self.stale} if self.stale else {})}


def compare(job: CompareJob) -> list[Judgement]:
    """For each UnusedPermission finding of the bundle: GenerateFindingRecommendation, poll
    GetFindingRecommendation until it is done, save it under BUNDLE/aws-recommendations/, and
    judge each recommended step against the finding and the principal's policies as they are
    now (read again; a bundle that differs is said to be stale). AWS is asked about several
    findings at once (job.concurrency, each client backing off adaptively); the proofs run
    here one at a time. A finding whose answer cannot be read is unknown, the rest go on."""
    details, findings = bundle_inputs(job.bundle)
    manifest = json.loads((Path(job.bundle) / MANIFEST).read_text(encoding="utf-8"))
    account = Account.read(details)
    aws = session(job.profile, job.region)
    try:
        accounts = Accounts(aws, job.assume_role_name)
    except aws_errors() as error:
        raise InputError(f"AWS refused or could not be reached: {error}") from None
    analyzer = client(aws, "accessanalyzer")
    folder = Path(job.bundle) / AWS_RECOMMENDATIONS
    folder.mkdir(exist_ok=True)
    responses = [json.loads(p.read_text(encoding="utf-8"))
                 for p in sorted(Path(findings[0]).glob("*.json"))]
    responses = [r for r in responses if r.get("findingType") == "UnusedPermission"]
    judgements: dict[str, list[Judgement]] = {}
    with progress(job.progress, len(responses), "asking Access Analyzer") as advance, \
            ThreadPoolExecutor(max_workers=max(1, job.concurrency)) as pool:
        asked = {pool.submit(_ask, analyzer, accounts, manifest["analyzerArn"], response,
                             account, job.poll_seconds): response for response in responses}
        for future in as_completed(asked):
            response = asked[future]
            artifact = folder / finding_file_name(response["id"])
            try:
                answer = future.result()
            except (Refused, InputError, *aws_errors()) as error:
                judgements[response["id"]] = [Judgement(
                    response["id"], "", "none", str(artifact), [Violation(
                        "unknown", None, None, f"AWS's answer could not be read: {error}")])]
            else:
                write_file(str(artifact), dumps(answer.recommendation, indent=2) + "\n")
                judgements[response["id"]] = _judge(answer, job, str(artifact))
            advance()
    return [j for response in responses for j in judgements[response["id"]]]


@dataclass
class Answer:
    """AWS's recommendation for a finding, with the finding and the principal's policies as
    they are now, and how the bundle differs from them."""

    finding: dict
    recommendation: dict
    policies: list[PolicyRef]  # as IAM holds them now
    stale: list[str] = field(default_factory=list)


def _ask(analyzer, accounts: Accounts, analyzer_arn: str, response: dict, account: Account,
         poll_seconds: float) -> Answer:
    """In a worker thread: AWS calls only (the kernel runs in the caller)."""
    finding = whole_finding(analyzer, analyzer_arn, response["id"])
    recommendation = _recommendation(analyzer, analyzer_arn, response["id"], poll_seconds)
    principal = account.principals.get(finding.get("resource"))
    if principal is None:
        raise Refused(f"{finding.get('resource')} is not in the bundle")
    parts = parse_arn(principal.arn)
    iam = accounts.iam(parts["account"], parts["partition"])
    stale = []
    if finding.get("updatedAt") != response.get("updatedAt"):
        stale.append(f"finding updated since fetch ({response.get('updatedAt')} -> "
                     f"{finding.get('updatedAt')})")
    policies = []
    for ref in principal.policies:
        if ref.kind == "group":  # AWS's answer covers the principal's own policies
            continue
        now = managed_document(iam, ref.policy_id) if ref.kind == "managed" else \
            inline_document(iam, principal.kind, principal.name, ref.name)
        if now is None:
            stale.append(f"policy {ref.policy_id} no longer exists")
            continue
        if not same_json(now, json.loads(ref.text)):
            stale.append(f"policy {ref.policy_id} changed since fetch")
        policies.append(PolicyRef(ref.policy_id, ref.name, ref.kind, json.dumps(now),
                                  ref.updated_at, ref.aws_managed))
    return Answer(finding, recommendation, policies, stale)


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


def _judge(answer: Answer, job: CompareJob, artifact: str) -> list[Judgement]:
    finding, recommendation = answer.finding, answer.recommendation
    finding_id = finding["id"]
    stale = "; ".join(answer.stale)
    if recommendation.get("status") != "SUCCEEDED":
        error = recommendation.get("error") or {}
        return [Judgement(finding_id, "", "none", artifact, [Violation(
            "unknown", None, None, f"AWS gave no recommendation ({recommendation.get('status')}: "
            f"{error.get('message', 'no reason')})")], stale=stale)]
    unused = merge_findings([(f"finding {finding_id}", finding)], job.catalog)
    judgements = []
    stepped = set()
    for step in recommendation.get("recommendedSteps", []):
        detail = step.get("unusedPermissionsRecommendedStep", {})
        policy_id = detail.get("existingPolicyId", "")
        stepped.add(policy_id)
        judgement = Judgement(finding_id, policy_id, detail.get("recommendedAction", ""),
                              artifact, stale=stale)
        ref = next((p for p in answer.policies if p.policy_id == policy_id), None)
        if ref is None:
            judgement.verdicts.append(Violation("unknown", None, None, f"policy {policy_id} of "
                                                f"{finding.get('resource')} is not the "
                                                "principal's now"))
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
            judgement.lost = used_actions_lost(original.statements, refined.statements, unused,
                                               job.catalog)
        ours = refine_and_prove(original, unused, job.catalog, job.timeout_ms)
        if not ours.violations:
            judgement.refiner_patterns = pattern_count(ours.refined.statements
                                                       if ours.refined else [])
        judgements.append(judgement)
    for ref in answer.policies:  # a policy AWS left out while it still grants unused actions
        if ref.policy_id in stepped:
            continue
        label = f"policy {ref.name}"
        statements = load_policy(parse_json_text(ref.text, label), label, ref.text).statements
        granted = sorted((a for a in allowed_actions(statements, job.catalog)
                          if unused.is_unused(a)), key=str.lower)
        if granted:
            judgements.append(Judgement(finding_id, ref.policy_id, "none", artifact, [Violation(
                "incomplete", None, None, f"AWS's answer has no step for {label}, which still "
                f"grants unused {', '.join(granted[:5])}{' ...' if len(granted) > 5 else ''}")],
                stale=stale))
    return judgements


def used_actions_lost(original: list[dict], refined: list[dict], unused: Unused,
                      catalog: Catalog) -> list[str]:
    """Every used catalog action the original statements allowed and the refined ones do not:
    a report beside the kernel's verdict (which names one witness per obligation), by glob
    matching."""
    lost = allowed_actions(original, catalog) - allowed_actions(refined, catalog)
    return sorted((a for a in lost if not unused.is_unused(a)), key=str.lower)


def allowed_actions(statements: list[dict], catalog: Catalog) -> set[str]:
    """The catalog actions Allow statements admit (glob matching, for reports)."""
    found: set[str] = set()
    for statement in statements:
        # An Action entry can only match names that start with its literal prefix.
        names = {a for p in patterns_of(statement)
                 for a in catalog.with_prefix(parse(p).literal_prefix)} \
            if "Action" in statement else catalog.all_actions()
        found |= allowed_among(statement, names)
    return found


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
                     f"{', '.join(j.lost) or '-'}" + (f" (bundle stale: {j.stale})" if j.stale else ""))
    return "\n".join(lines) + "\n"

