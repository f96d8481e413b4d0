"""`refiner aws fetch`: an account's unused-access findings and IAM data, as files recommend reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..account import finding_file_name
from ..errors import InputError
from ..jsontext import dumps
from ..output import progress, write_file
from ..principals import PAGE_ACCOUNT
from . import aws_errors, client, session
from .live import assumed, parse_arn

DETAILS, FINDINGS, MANIFEST = "authorization-details", "findings", "bundle.json"
UNUSED_ACCESS = ("ACCOUNT_UNUSED_ACCESS", "ORGANIZATION_UNUSED_ACCESS")
WANTED = {"findingType": {"eq": ["UnusedPermission", "UnusedIAMRole"]},
          "status": {"eq": ["ACTIVE"]}}


@dataclass
class FetchJob:
    bundle: str
    analyzer_arn: str | None = None
    profile: str | None = None
    region: str | None = None
    assume_role_name: str | None = None
    progress: bool = True


def bundle_inputs(bundle: str) -> tuple[list[str], list[str]]:
    """The authorization-details pages and the findings folder of a bundle fetch wrote."""
    folder = Path(bundle)
    if not (folder / MANIFEST).is_file():
        raise InputError(f"{bundle} is not a bundle written by `refiner aws fetch` (no {MANIFEST})")
    pages = sorted(str(p) for p in (folder / DETAILS).glob("*.json"))
    if not pages:
        raise InputError(f"bundle {bundle} holds no authorization details")
    return pages, [str(folder / FINDINGS)]


def fetch(job: FetchJob) -> dict:
    """Write BUNDLE/findings/<id>.json (each finding whole: its findingDetails pages joined),
    BUNDLE/authorization-details/<account>-<page>.json and BUNDLE/bundle.json; return the
    manifest. Findings already fetched and unchanged (same updatedAt) are not fetched again;
    findings no longer listed are removed, so a bundle never holds a stale one."""
    aws = session(job.profile, job.region)
    try:
        return _fetch(job, aws)
    except aws_errors() as error:
        raise InputError(f"AWS refused or could not be reached: {error}") from None


def _fetch(job: FetchJob, aws) -> dict:
    analyzer = client(aws, "accessanalyzer")
    analyzer_arn = job.analyzer_arn or unused_access_analyzer(analyzer)
    out = Path(job.bundle)
    for folder in (out / DETAILS, out / FINDINGS):
        folder.mkdir(parents=True, exist_ok=True)
    summaries = _list_findings(analyzer, analyzer_arn)
    fetched = skipped = 0
    with progress(job.progress, len(summaries), "fetching findings") as advance:
        for summary in summaries:
            path = out / FINDINGS / finding_file_name(summary["id"])
            if _same_update(path, summary):
                skipped += 1
            else:
                finding = whole_finding(analyzer, analyzer_arn, summary["id"])
                write_file(str(path), dumps(finding, indent=2) + "\n")
                fetched += 1
            advance()
    listed = {finding_file_name(s["id"]) for s in summaries}
    for path in (out / FINDINGS).glob("*.json"):
        if path.name not in listed:
            path.unlink()
    own_account = client(aws, "sts").get_caller_identity()["Account"]
    accounts = sorted({s.get("resourceOwnerAccount") or own_account for s in summaries}
                      | {own_account})
    read, unreadable = [], {}
    for account in accounts:
        try:
            iam = client(aws if account == own_account else _assumed(aws, account, job), "iam")
            _write_details(iam, out / DETAILS, account)
            read.append(account)
        except (InputError, *aws_errors()) as error:
            unreadable[account] = str(error)
            for old in (out / DETAILS).glob(f"{account}-*.json"):  # never read with new findings
                old.unlink()
    _mark_unreadable(out / FINDINGS, summaries, own_account, set(unreadable))
    manifest = {"analyzerArn": analyzer_arn, "findings": len(summaries), "fetched": fetched,
                "unchanged": skipped, "accountsRead": read, "accountsUnreadable": unreadable}
    write_file(str(out / MANIFEST), json.dumps(manifest, indent=2) + "\n")
    return manifest


def unused_access_analyzer(analyzer) -> str:
    found = []
    for kind in UNUSED_ACCESS:
        for page in analyzer.get_paginator("list_analyzers").paginate(type=kind):
            found += [a["arn"] for a in page["analyzers"] if a.get("status") == "ACTIVE"]
    if not found:
        raise InputError("no active unused-access analyzer in this account and region "
                         "(give one with --analyzer-arn)")
    return found[0]


def _list_findings(analyzer, analyzer_arn: str) -> list[dict]:
    summaries = []
    for page in analyzer.get_paginator("list_findings_v2").paginate(analyzerArn=analyzer_arn,
                                                                  filter=WANTED):
        summaries += page["findings"]
    return summaries


def whole_finding(analyzer, analyzer_arn: str, finding_id: str) -> dict:
    """GetFindingV2 with every findingDetails page joined. The paginator's full-result helper
    keeps only findingDetails, so the pages are walked here and the other fields kept."""
    whole: dict | None = None
    for page in analyzer.get_paginator("get_finding_v2").paginate(analyzerArn=analyzer_arn,
                                                                id=finding_id):
        page = {k: v for k, v in page.items() if k not in ("ResponseMetadata", "nextToken")}
        if whole is None:
            whole = page
        else:
            whole["findingDetails"] += page.get("findingDetails", [])
    return json.loads(json.dumps(whole, default=_timestamp))


def _write_details(iam, folder: Path, account: str) -> None:
    for old in folder.glob(f"{account}-*.json"):
        old.unlink()
    paginator = iam.get_paginator("get_account_authorization_details")
    for number, page in enumerate(paginator.paginate(), 1):
        page = {k: v for k, v in page.items() if k != "ResponseMetadata"}
        page[PAGE_ACCOUNT] = account  # a page of AWS managed policies alone names no account
        text = json.dumps(page, indent=2, default=_timestamp) + "\n"
        write_file(str(folder / f"{account}-{number:04d}.json"), text)


def _assumed(aws, account: str, job: FetchJob):
    """A session in a member account through the role the user named."""
    if not job.assume_role_name:
        raise InputError(f"findings of account {account}: give --assume-role-name to read its "
                         "IAM data")
    partition = parse_arn(client(aws, "sts").get_caller_identity()["Arn"])["partition"]
    return assumed(aws, account, job.assume_role_name, partition, "refiner-fetch")


def _mark_unreadable(folder: Path, summaries: list[dict], own_account: str,
                     unreadable: set[str]) -> None:
    """Findings of an account whose IAM data could not be read carry "accountUnreadable":
    recommend refuses them instead of pairing them with IAM data of another day."""
    for summary in summaries:
        path = folder / finding_file_name(summary["id"])
        finding = json.loads(path.read_text(encoding="utf-8"))
        marked = (summary.get("resourceOwnerAccount") or own_account) in unreadable
        if bool(finding.get("accountUnreadable")) != marked:
            if marked:
                finding["accountUnreadable"] = True
            else:
                finding.pop("accountUnreadable")
            write_file(str(path), dumps(finding, indent=2) + "\n")


def _same_update(path: Path, summary: dict) -> bool:
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return held.get("updatedAt") == _timestamp(summary.get("updatedAt"))


def _timestamp(value):
    """botocore gives datetimes; files hold ISO 8601 text, as the AWS CLI writes it."""
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return value
