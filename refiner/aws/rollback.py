"""`refiner aws rollback`: undo exactly what a journal's applies did, where IAM still holds what they left.

Before each undo IAM is read: the version apply made is still the default, the inline document
is the one apply put, the attachment apply made is still there, the principal is the one apply
changed (same unique id). When someone changed it since, that undo is skipped and reported
(--force undoes it anyway). A created copy is deleted by the ARN apply recorded, and only when
nothing is attached to it. Every undo is announced in the journal before its first call and
marked when finished, so a rollback that stops (a crash, a refusal) can be run again and
finishes what it can."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..prove import same_json
from ..recommend import STATE
from . import aws_errors, session
from .journal import Journal
from .live import (
    Accounts,
    Refused,
    attached_arns,
    default_version,
    inline_document,
    name_key,
    principal_now,
    version_document,
)
from .plan import SHARED, ref_key, ref_label

FORCE = " (--force undoes it anyway)"
ANY_TEXT = object()  # a policy recommend recorded, whatever its text (a re-attached one)


@dataclass
class RollbackJob:
    journal: str
    profile: str | None = None
    region: str | None = None
    assume_role_name: str | None = None
    force: bool = False
    run: str | None = None  # only this apply run (default: every run, newest first)


@dataclass
class RollbackReport:
    undone: list[dict] = field(default_factory=list)  # intents undone by this rollback
    skipped: list[tuple[dict, str]] = field(default_factory=list)  # intents left, and why
    torn: str | None = None


def describe(intent: dict) -> str:
    who = (intent.get("principal") or intent.get("owner") or {}).get("arn")
    ref = intent.get("ref") or {}
    what = intent.get("policyArn") or f"{ref.get('owner')} inline policy {ref.get('name')}"
    return f"{intent['run']}#{intent['seq']} {intent['op']} {what}" + (f" ({who})" if who else "")


def recorded_texts(outdir: str | None) -> dict[tuple, list[str]] | None:
    """The policies' texts as recommend recorded them in OUTDIR (state and shared records),
    by ref; None when the folder is not at hand. What an undo restores must be one of them."""
    out = Path(outdir) if outdir else None
    if out is None or not (out / STATE).is_dir():
        return None
    texts: dict[tuple, list[str]] = {}
    for path in [*sorted((out / STATE).glob("*.json")), *sorted((out / SHARED).glob("*.json"))]:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # its policies are not known: an undo of them is refused below
        policies = record.get("policies") if path.parent.name == STATE else [record]
        for policy in policies if isinstance(policies, list) else []:
            if isinstance(policy, dict) and isinstance(policy.get("ref"), dict) \
                    and isinstance(policy.get("text"), str):
                texts.setdefault(ref_key(policy["ref"]), []).append(policy["text"])
    return texts


def rollback(job: RollbackJob) -> RollbackReport:
    if not Path(job.journal).is_file():
        raise InputError(f"no journal {job.journal}")
    with Journal(job.journal) as journal:  # the exclusive lock: no apply runs meanwhile
        report = RollbackReport()
        contents = journal.contents
        if contents.torn is not None:
            report.torn = (f"journal line {contents.torn_line} was cut short by a crash (kept "
                           "as a 'torn' entry; its call was never made)")
        entries = contents.entries
        intents = [e for e in entries if e.get("state") == "intent"]
        done = {(e["run"], e["of"]): e for e in entries if e.get("state") == "done"}
        failed = {(e["run"], e["of"]) for e in entries if e.get("state") == "failed"}
        started = {tuple(e["of"]) for e in entries if e.get("state") == "undo"}
        finished = {tuple(e["of"]) for e in entries if e.get("state") == "undone"}
        runs = {e["run"] for e in intents}
        if job.run and job.run not in runs:
            raise InputError(f"journal {job.journal} has no run {job.run}")
        begin = next((e for e in reversed(entries) if e.get("state") == "begin"), {})
        outdirs = {e["run"]: e.get("outdir") for e in entries if e.get("state") == "begin"}
        recorded = {run: recorded_texts(outdir) for run, outdir in outdirs.items()}
        pending = [e for e in reversed(intents) if (e["run"], e["seq"]) not in finished | failed
                   and (not job.run or e["run"] == job.run)]
        if not pending:
            return report
        try:
            accounts = Accounts(session(job.profile, job.region),
                                job.assume_role_name or begin.get("assumeRoleName"))
        except aws_errors() as error:
            raise InputError(f"AWS refused or could not be reached: {error}") from None
        try:
            _undo_all(journal, pending, accounts, done, started, recorded, job.force, report)
        except Exception as error:
            if journal.announced:  # a bug, after an undo was under way
                error.refiner_written = (f"IAM may have been changed ({journal.announced} undos "
                                         f"announced in journal {job.journal})")
            raise
        return report


def _undo_all(journal: Journal, pending: list[dict], accounts: Accounts, done: dict,
              started: set, recorded: dict, force: bool, report: RollbackReport) -> None:
    for intent in pending:
        key = (intent["run"], intent["seq"])
        undo = Undo(journal, intent, done.get(key), key in started, force,
                    recorded.get(intent["run"]))
        try:
            undo.run(accounts.iam(intent["account"]))
        except Refused as refusal:
            report.skipped.append((intent, str(refusal)))
            continue
        except aws_errors() as error:
            report.skipped.append((intent, f"AWS refused: {error}"))
            continue
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            report.skipped.append((intent, f"an entry this refiner cannot undo ({error!r})"))
            continue
        journal.write({"state": "undone", "of": list(key)})
        report.undone.append(intent)


class Undo:
    """The undo of one journaled call: check what IAM holds, then put back what was there."""

    def __init__(self, journal: Journal, intent: dict, done: dict | None, started: bool,
                 force: bool, recorded: dict[tuple, list[str]] | None = None):
        self.journal, self.intent, self.done = journal, intent, done
        self.started, self.force, self.recorded = started, force, recorded

    def run(self, iam) -> None:
        getattr(self, self.intent["op"])(iam)

    def _begin(self) -> None:
        """On disk before the undo's first call: a second rollback knows it was under way."""
        if not self.started:
            self.journal.write({"state": "undo", "of": [self.intent["run"], self.intent["seq"]]})
            self.started = True

    def _changed(self, what: str) -> None:
        if not self.force:
            raise Refused(f"{what} since apply: left as it is{FORCE}")

    def _as_recommended(self, ref: dict, document: dict | None) -> None:
        """What an undo restores must be the policy as recommend recorded it (when its OUTDIR
        is at hand): a journal edited to restore another document is refused."""
        if self.recorded is None or self.force or document is None:  # None: nothing restored
            return
        texts = self.recorded.get(ref_key(ref), [])
        if not texts or not (document is ANY_TEXT or any(
                _same(document, json.loads(text)) for text in texts)):
            raise Refused(f"the document this undo would restore is not the one recommend "
                          f"recorded for {ref_label(ref)} (the journal was edited?){FORCE}")

    def _same_owner(self, iam, owner: dict) -> None:
        live = principal_now(iam, owner["kind"], owner["name"])
        if live.id is None:
            raise Refused(f"{owner['arn']} no longer exists")
        if owner.get("id") and live.id != owner["id"]:
            raise Refused(f"{owner['arn']} was deleted and re-created since apply "
                          f"(id {owner['id']}, now {live.id})")

    # --- one per journaled operation ------------------------------------------------------------

    def put_inline(self, iam) -> None:
        owner, name = self.intent["owner"], self.intent["ref"]["name"]
        self._same_owner(iam, owner)
        live = inline_document(iam, owner["kind"], owner["name"], name)
        before = json.loads(self.intent["before"]) if self.intent["before"] else None
        after = json.loads(self.intent["after"]) if self.intent["after"] else None
        if _same(live, before):
            return  # the call never ran, or its undo already did
        if not _same(live, after):  # a stale undo mark does not excuse a change since
            self._changed(f"{owner['arn']} inline policy {name} was changed")
        self._as_recommended(self.intent["ref"], before)
        self._begin()
        who = {name_key(owner["kind"]): owner["name"], "PolicyName": name}
        if before is None:
            getattr(iam, f"delete_{owner['kind']}_policy")(**who)
        else:
            getattr(iam, f"put_{owner['kind']}_policy")(**who,
                                                        PolicyDocument=self.intent["before"])

    delete_inline = put_inline  # after is None: apply left no policy

    def attach(self, iam) -> None:
        principal, arn = self.intent["principal"], self.intent["policyArn"]
        self._same_owner(iam, principal)
        if arn not in attached_arns(iam, principal["kind"], principal["name"]):
            return  # never attached, or detached already
        self._begin()
        getattr(iam, f"detach_{principal['kind']}_policy")(
            **{name_key(principal["kind"]): principal["name"]}, PolicyArn=arn)

    def detach(self, iam) -> None:
        principal, arn = self.intent["principal"], self.intent["policyArn"]
        if not self.intent.get("attachedBefore"):
            return  # it was not attached before apply: nothing to give back
        self._same_owner(iam, principal)
        if arn in attached_arns(iam, principal["kind"], principal["name"]):
            return  # attached again already
        self._as_recommended({"kind": "managed", "arn": arn}, ANY_TEXT)  # one of its policies
        if self.done is None and not self.started and not self.force:
            # Apply stopped before it knew whether its detach was made: the policy may have
            # been detached by someone else since, and re-attaching it would re-grant it.
            raise Refused(f"apply was interrupted around this detach, and {arn} is detached "
                          f"from {principal['arn']} now: not re-attached (it may have been "
                          f"detached by someone else){FORCE}")
        self._begin()
        getattr(iam, f"attach_{principal['kind']}_policy")(
            **{name_key(principal["kind"]): principal["name"]}, PolicyArn=arn)

    def create_policy_version(self, iam) -> None:
        arn, before = self.intent["policyArn"], self.intent["defaultBefore"]
        versions = {v["VersionId"]: v for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]}
        made = (self.done or {}).get("versionId") or next(
            (v for v in versions if v not in self.intent["versionsBefore"] and same_json(
                version_document(iam, arn, v), json.loads(self.intent["document"]))), None)
        if made not in versions:
            return  # never made, or deleted already
        default = default_version(iam, arn)
        if default not in (made, before):  # apply's, or the one the undo restores
            self._changed(f"{arn}'s default version is {default}, not {made} (apply's)")
        if before not in versions:
            raise Refused(f"{arn}'s version {before} (the default before apply) is gone")
        self._as_recommended(self.intent["ref"], version_document(iam, arn, before))
        self._begin()
        if default != before:
            iam.set_default_policy_version(PolicyArn=arn, VersionId=before)
        iam.delete_policy_version(PolicyArn=arn, VersionId=made)

    def delete_policy_version(self, iam) -> None:
        # The content returns as a new version (IAM gives it a new id); counting the versions
        # that hold it makes a repeated rollback create it only once.
        arn, saved = self.intent["policyArn"], json.loads(self.intent["document"])
        held = sum(same_json(version_document(iam, arn, v["VersionId"]), saved)
                   for v in iam.list_policy_versions(PolicyArn=arn)["Versions"])
        missing = self.intent["copiesBefore"] - held
        if missing <= 0:
            return
        self._begin()
        for _ in range(missing):
            iam.create_policy_version(PolicyArn=arn, PolicyDocument=self.intent["document"],
                                      SetAsDefault=False)

    def create_policy(self, iam) -> None:
        arn = (self.done or {}).get("policyArn") or self.intent["policyArn"]
        try:
            versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
        except iam.exceptions.NoSuchEntityException:
            return  # never created, or deleted already
        holders = [name for usage in ("PermissionsPolicy", "PermissionsBoundary")
                   for page in iam.get_paginator("list_entities_for_policy").paginate(
                       PolicyArn=arn, PolicyUsageFilter=usage)
                   for key, field_ in (("PolicyRoles", "RoleName"), ("PolicyUsers", "UserName"),
                                       ("PolicyGroups", "GroupName"))
                   for name in (e[field_] for e in page[key])]
        if holders:  # never with --force: others depend on it
            raise Refused(f"{arn} is attached to {', '.join(sorted(set(holders)))}: not deleted")
        others = [v for v in versions if not v["IsDefaultVersion"]]
        default = next(v["VersionId"] for v in versions if v["IsDefaultVersion"])
        if others or not same_json(version_document(iam, arn, default),
                                    json.loads(self.intent["document"])):
            self._changed(f"{arn} was given other versions")
        self._begin()
        for version in others:
            iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
        iam.delete_policy(PolicyArn=arn)


def _same(live: dict | None, wanted: dict | None) -> bool:
    if live is None or wanted is None:
        return live is wanted
    return same_json(live, wanted)
