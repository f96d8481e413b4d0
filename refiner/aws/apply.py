"""`refiner aws apply`: put proven recommendations into IAM, each change checked live first and journaled.

A dry run (the default) is the same code path with the IAM writes switched off: every check
runs and each change is reported as it would go. Before a change: the principal is read live
(its unique id must be the recorded one, its account the credentials' or one reached through
--assume-role-name), the finding is read again (GetFindingV2: updatedAt unmoved and nothing the
change removes used since), the policy's text must be the one refined, and a managed or group
policy must reach exactly the principals it reached (ListEntitiesForPolicy, boundaries too).
Each IAM write is announced in the journal (on disk first) with what undoing it needs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import Catalog
from ..errors import InputError
from ..finding import Unused, merge_findings
from ..policy import PolicyInput, load_policy
from ..prove import DEFAULT_TIMEOUT_MS, same_json
from ..sharing import UnusedSet
from ..verification import REJECTING, document_changes, pair_statements, structure_key, verify
from . import aws_errors, session
from .compare import used_actions_lost
from .fetch import unused_access_analyzer, whole_finding
from .journal import Journal
from .live import (
    Accounts,
    Refused,
    attached_arns,
    document_now,
    inline_owner,
    managed_document,
    name_key,
    owner_name,
    parse_arn,
    principal_now,
    reach_differs,
    same_instant,
    same_policy,
    same_principal,
    version_document,
)
from .plan import Change, plan

MAX_VERSIONS = 5  # IAM keeps at most five versions of a managed policy
DEFAULT_ATTACHMENT_QUOTA = 10  # managed policies per role or user (20 on request)


@dataclass
class ApplyJob:
    outdir: str
    yes: bool = False
    only: list[str] = field(default_factory=list)
    journal: str | None = None
    prune_oldest: bool = False
    profile: str | None = None
    region: str | None = None
    assume_role_name: str | None = None
    analyzer_arn: str | None = None
    catalog: Catalog | None = None
    attachment_quota: int = DEFAULT_ATTACHMENT_QUOTA

    @property
    def journal_path(self) -> str:
        return self.journal or str(Path(self.outdir) / "journal.jsonl")


@dataclass
class Outcome:
    change: Change
    done: bool  # made (or, in a dry run, would be made)
    reason: str = ""


@dataclass
class ApplyReport:
    outcomes: list[Outcome]
    torn: str | None = None  # a journal line a crash cut short, found and kept

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.done]


def apply(job: ApplyJob) -> ApplyReport:
    """Check every planned change live and make it (only with job.yes)."""
    changes = plan(job.outdir, job.only)
    if not changes:
        return ApplyReport([])
    try:
        accounts = Accounts(session(job.profile, job.region), job.assume_role_name)
        analyzer = accounts.service("accessanalyzer")
        analyzer_arn = job.analyzer_arn or unused_access_analyzer(analyzer)
    except aws_errors() as error:
        raise InputError(f"AWS refused or could not be reached: {error}") from None
    journal = Journal(job.journal_path) if job.yes else None
    try:
        if journal is not None:
            journal.lock_folder(job.outdir)
        run = Run(job, accounts, Findings(analyzer, analyzer_arn), journal)
        torn = None
        if journal is not None:
            if journal.contents.torn is not None:
                torn = (f"journal line {journal.contents.torn_line} was cut short by a crash "
                        "(kept as a 'torn' entry; its call was never made)")
            journal.write({"state": "begin", "outdir": str(job.outdir),
                           "account": accounts.account,
                           "assumeRoleName": job.assume_role_name})
        outcomes = [run.one(change) for change in changes]
    except Exception as error:
        if journal is not None and journal.announced:  # a bug, after IAM calls were made
            error.refiner_written = (f"IAM may have been changed ({journal.announced} calls "
                                     f"announced in journal {journal.path}, run {journal.run})")
        raise
    finally:
        if journal is not None:
            journal.close()
    return ApplyReport(outcomes, torn)


class Findings:
    """Findings as Access Analyzer holds them now, read once per run."""

    def __init__(self, analyzer, analyzer_arn: str):
        self._analyzer, self._arn = analyzer, analyzer_arn
        self._read: dict[str, dict] = {}

    def get(self, finding_id: str) -> dict:
        if finding_id not in self._read:
            try:
                self._read[finding_id] = whole_finding(self._analyzer, self._arn, finding_id)
            except self._analyzer.exceptions.ResourceNotFoundException:
                raise Refused(f"finding {finding_id} no longer exists: re-run recommend") from None
        return self._read[finding_id]


class Run:
    """One apply: the checks and IAM calls of each change, journaled."""

    def __init__(self, job: ApplyJob, accounts: Accounts, findings: Findings,
                 journal: Journal | None):
        self.job, self.accounts, self.findings, self.journal = job, accounts, findings, journal
        import botocore.exceptions

        self._rejected = botocore.exceptions.ClientError
        self._catalog = job.catalog

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from ..catalog import load_default

            self._catalog = load_default()
        return self._catalog

    def one(self, change: Change) -> Outcome:
        if change.problem:
            return Outcome(change, False, change.problem)
        try:
            already = self._checked_change(change)
        except (Refused, InputError) as refusal:
            return Outcome(change, False, str(refusal))
        except aws_errors() as error:
            return Outcome(change, False, f"AWS refused: {error}")
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            # A recorded field missing or of another type: this change only is refused.
            return Outcome(change, False, "the recommendation is not in the shape refiner "
                           f"recommend writes (at {error!r}): refused, re-run recommend")
        return Outcome(change, True, "already as recommended: nothing to do" if already else "")

    # --- checks -------------------------------------------------------------------------------

    def _checked_change(self, change: Change) -> bool:
        """Check, then make the change; True when IAM already holds what it would make. An
        inline policy's owner is resolved once, from its ref, and that one owner is read,
        checked and written."""
        iam = self._iam_of(change)
        if change.principal is not None:
            same_principal(iam, change.principal)
        owner = self._owner(iam, change) if change.ref["kind"] != "managed" else None
        live = document_now(iam, change.ref, owner)
        if self._already(iam, change, live):
            return True
        if change.ref["kind"] == "managed":
            same_policy(iam, change.ref)
        unused_of = self._fresh_findings(change)
        if live is None:
            raise Refused("the policy no longer exists")
        if not same_json(live, json.loads(change.policy["text"])):
            raise Refused("the policy changed since the recommendation was made: re-run recommend")
        if change.how in ("version", "put-inline", "delete-inline") and (
                change.principal is None or change.ref["kind"] == "managed"):
            differs = reach_differs(iam, change.ref, change.policy.get("reach", []))
            if differs:
                raise Refused(f"{differs}: refused, re-run recommend")
        self._proven(change, live, unused_of)
        if owner is not None:
            getattr(self, "_" + change.how.replace("-", "_"))(iam, change, owner)
        else:
            getattr(self, "_" + change.how.replace("-", "_"))(iam, change)
        return False

    def _proven(self, change: Change, live: dict, unused_of: list[Unused | None]) -> None:
        """The recommended document proven again by the kernel, as `refiner verify` proves
        it, against the live document and the intersection of the live unused sets of every
        principal it reaches: a Deny added, a Resource narrowed or a Condition added is not
        what recommend proved, and is refused."""
        if change.document is None or change.how in ("detach", "delete-inline"):
            return  # nothing is left of the document: used_actions_lost judged it
        common = UnusedSet(everything=True)
        for unused in unused_of:
            common &= UnusedSet(everything=True) if unused is None else UnusedSet.of(unused)
        original = load_policy(live, "the live policy", json.dumps(live))
        refined = load_policy(json.loads(change.document), "the recommended policy",
                              change.document)
        reshaped = _reshaped(original, refined)
        if reshaped:
            raise Refused(f"the recommended document {reshaped}: recommend only narrows Allow "
                          "statements' actions or drops statements: refused")
        report = verify(original, refined, common.restricted(None, self.catalog).as_unused(),
                        self.catalog, DEFAULT_TIMEOUT_MS)
        wrong = [v for v in report.verdicts if v.kind in REJECTING
                 or v.kind in ("unknown", "solver-disagreement")]
        if wrong:
            raise Refused(f"the recommended document is not proven against the live policy and "
                          f"findings ({wrong[0].kind}: {wrong[0].message}): refused")

    def _already(self, iam, change: Change, live: dict | None) -> bool:
        """A change an earlier apply made (a re-run after a crash or a success)."""
        wanted = json.loads(change.document) if change.document else None
        if change.how in ("put-inline", "version"):
            return live is not None and same_json(live, wanted)
        if change.how == "delete-inline":
            return live is None
        if change.how == "detach":  # whoever detached it, nothing is left to take away
            principal = change.principal
            return change.ref["arn"] not in attached_arns(iam, principal["kind"], principal["name"])
        if change.how == "copy":
            principal = change.principal
            attached = attached_arns(iam, principal["kind"], principal["name"])
            copy = (f"arn:{principal['partition']}:iam::{principal['account']}:policy/"
                    f"{copy_name(change.ref['arn'], change.document)}")
            return change.ref["arn"] not in attached and copy in attached
        return False

    def _iam_of(self, change: Change):
        if change.principal is not None:
            account, partition = change.principal["account"], change.principal["partition"]
            if parse_arn(change.principal["arn"])["account"] != account:
                raise Refused(f"{change.principal['arn']} is not in account {account}")
        else:
            parts = parse_arn(change.ref.get("owner") or change.ref["arn"])
            account, partition = parts["account"], parts["partition"]
        return self.accounts.iam(account, partition)

    def _fresh_findings(self, change: Change) -> list[Unused | None]:
        """Refused when a finding moved since recommend, or a principal the document reaches
        now uses an action the change takes away. The live unused set of each principal the
        change reaches (Unused(): no finding, it uses everything; None: it uses nothing)."""
        old = load_policy(json.loads(change.policy["text"]), "the policy", change.policy["text"])
        new = load_policy(json.loads(change.document), "the recommended policy", change.document) \
            if change.action == "CREATE_POLICY" and change.how != "detach" else None
        holders = {change.principal["id"]: change.principal["arn"]} if change.principal else \
            {r["id"]: r["arn"] for r in change.policy.get("reach", [])}
        unused_of: dict[str, Unused | None] = {}
        for recorded in change.findings:
            if not recorded.get("id"):
                raise Refused("the recommendation does not name its finding")
            live = self.findings.get(recorded["id"])
            if live.get("status") != "ACTIVE":
                raise Refused(f"finding {recorded['id']} is {live.get('status')} now: re-run "
                              "recommend")
            if not same_instant(live.get("updatedAt"), recorded.get("updatedAt")):
                raise Refused(f"finding {recorded['id']} was updated since the recommendation "
                              f"({recorded.get('updatedAt')} -> {live.get('updatedAt')}): re-run "
                              "recommend")
            principal = recorded.get("principal") or {}
            if live.get("resource") != principal.get("arn"):
                raise Refused(f"finding {recorded['id']} is about {live.get('resource')}, not "
                              f"{principal.get('arn')}")
            unused_of[principal.get("id")] = None if live.get("findingType") == "UnusedIAMRole" \
                else merge_findings([(f"finding {recorded['id']}", live)], self.catalog)
        for unique, arn in holders.items():
            # No finding: the principal uses everything. UnusedIAMRole: it uses nothing.
            unused_of.setdefault(unique, Unused())
            if unused_of[unique] is None:
                continue
            lost = used_actions_lost(old.statements, new.statements if new else [],
                                     unused_of.get(unique) or Unused(), self.catalog)
            if lost:
                raise Refused(f"{arn} uses {', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}"
                              " now, which this change removes: re-run recommend")
        return [unused_of[unique] for unique in holders]

    # --- the changes ------------------------------------------------------------------------

    def _call(self, intent: dict, action) -> dict:
        """Journal the intent (on disk before the call), make the call, journal that it was
        done. In a dry run neither."""
        if self.journal is None:
            return {}
        entry = self.journal.write({"state": "intent", **intent})
        try:
            result = action() or {}
        except self._rejected as error:  # IAM answered no: the call changed nothing
            self.journal.write({"state": "failed", "of": entry["seq"], "error": str(error)})
            raise
        result = {k: v for k, v in result.items() if k != "ResponseMetadata"}
        self.journal.write({"state": "done", "of": entry["seq"], **result})
        return result

    def _record(self, change: Change, call: str) -> None:
        change.calls.append(call)

    def _owner(self, iam, change: Change) -> dict:
        """The inline policy's owner as its ref's owner ARN names it, with the unique id IAM
        gives it now, which must be the recorded one (a group re-created under its name is
        another group)."""
        owner = inline_owner(change.ref)
        if change.principal is not None and change.principal["arn"] != owner["arn"]:
            raise Refused(f"an inline policy of {owner['arn']}, not of {change.principal['arn']}")
        recorded = change.ref.get("ownerId") or (change.principal or {}).get("id")
        live = principal_now(iam, owner["kind"], owner["name"])
        if live.id is None:
            raise Refused(f"{owner['arn']} no longer exists")
        if not recorded:
            raise Refused(f"the recommendation does not record {owner['arn']}'s unique id "
                          "(re-run recommend)")
        if live.id != recorded:
            raise Refused(f"{owner['arn']} was deleted and re-created since the recommendation "
                          f"(id {recorded}, now {live.id})")
        return {**owner, "id": live.id}

    def _put_inline(self, iam, change: Change, owner: dict) -> None:
        kind, name = owner["kind"], change.ref["name"]
        self._record(change, f"Put{kind.title()}Policy")
        self._call({"op": "put_inline", "account": owner["account"], "owner": owner,
                    "ref": change.ref, "before": change.policy["text"], "after": change.document},
                   lambda: getattr(iam, f"put_{kind}_policy")(
                       **{name_key(kind): owner["name"]}, PolicyName=name,
                       PolicyDocument=change.document))

    def _delete_inline(self, iam, change: Change, owner: dict) -> None:
        kind, name = owner["kind"], change.ref["name"]
        self._record(change, f"Delete{kind.title()}Policy")
        self._call({"op": "delete_inline", "account": owner["account"], "owner": owner,
                    "ref": change.ref, "before": change.policy["text"], "after": None},
                   lambda: getattr(iam, f"delete_{kind}_policy")(
                       **{name_key(kind): owner["name"]}, PolicyName=name))

    def _detach(self, iam, change: Change, arn: str | None = None) -> None:
        principal, arn = change.principal, arn or change.ref["arn"]
        kind = principal["kind"]
        if arn not in attached_arns(iam, kind, principal["name"]):
            raise Refused(f"{arn} is no longer attached to {principal['arn']}")
        self._record(change, f"Detach{kind.title()}Policy {arn}")
        self._call({"op": "detach", "account": principal["account"], "principal": principal,
                    "ref": {"kind": "managed", "arn": arn}, "policyArn": arn,
                    "attachedBefore": True},
                   lambda: getattr(iam, f"detach_{kind}_policy")(
                       **{name_key(kind): principal["name"]}, PolicyArn=arn))

    def _version(self, iam, change: Change) -> None:
        arn = change.ref["arn"]
        versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
        if len(versions) >= MAX_VERSIONS:
            if not self.job.prune_oldest:
                raise Refused(f"{arn} has {len(versions)} versions, IAM's limit: --prune-oldest "
                              "deletes the oldest non-default one (saved in the journal)")
            oldest = min((v for v in versions if not v["IsDefaultVersion"]),
                         key=lambda v: v["CreateDate"])
            saved = version_document(iam, arn, oldest["VersionId"])
            copies = sum(same_json(version_document(iam, arn, v["VersionId"]), saved)
                         for v in versions)
            self._record(change, f"DeletePolicyVersion {oldest['VersionId']}")
            self._call({"op": "delete_policy_version", "account": parse_arn(arn)["account"],
                        "ref": change.ref, "policyArn": arn, "versionId": oldest["VersionId"],
                        "document": json.dumps(saved), "copiesBefore": copies},
                       lambda: iam.delete_policy_version(PolicyArn=arn,
                                                         VersionId=oldest["VersionId"]))
            if self.journal is not None:
                versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
        default = next(v["VersionId"] for v in versions if v["IsDefaultVersion"])
        self._record(change, "CreatePolicyVersion (default)")
        self._call({"op": "create_policy_version", "account": parse_arn(arn)["account"],
                    "ref": change.ref, "policyArn": arn, "defaultBefore": default,
                    "versionsBefore": sorted(v["VersionId"] for v in versions),
                    "document": change.document},
                   lambda: {"versionId": iam.create_policy_version(
                       PolicyArn=arn, PolicyDocument=change.document, SetAsDefault=True)
                       ["PolicyVersion"]["VersionId"]})

    def _copy(self, iam, change: Change) -> None:
        """AWS's detach-and-attach: a customer managed policy holding the recommended document
        (one per distinct document, reused by every principal that gets it) is attached, and
        the original detached from this principal only."""
        principal, original = change.principal, change.ref["arn"]
        kind = principal["kind"]
        attached = attached_arns(iam, kind, principal["name"])
        if original not in attached:  # never re-grant what was taken away since
            raise Refused(f"{original} is no longer attached to {principal['arn']}")
        name = copy_name(original, change.document)
        arn = f"arn:{principal['partition']}:iam::{principal['account']}:policy/{name}"
        existing = managed_document(iam, arn)
        if existing is not None and not same_json(existing, json.loads(change.document)):
            raise Refused(f"{arn} exists with another document: not reused, not replaced")
        if arn not in attached and len(attached) + 1 > self.job.attachment_quota:
            raise Refused(f"{principal['arn']} has {len(attached)} managed policies attached, "
                          f"the quota ({self.job.attachment_quota}; --attachment-quota): no room "
                          "to attach the copy before detaching the original")
        if existing is None:
            self._record(change, f"CreatePolicy {name}")
            self._call({"op": "create_policy", "account": principal["account"],
                        "ref": {"kind": "managed", "arn": arn}, "policyArn": arn,
                        "policyName": name, "document": change.document, "copyOf": original},
                       lambda: {"policyArn": iam.create_policy(
                           PolicyName=name, PolicyDocument=change.document,
                           Description=f"refiner: proven refinement of {original}"[:1000])
                           ["Policy"]["Arn"]})
            if self.journal is not None:  # IAM is eventually consistent: attach once it is seen
                iam.get_waiter("policy_exists").wait(
                    PolicyArn=arn, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        else:
            self._record(change, f"reuse {name}")
        if arn not in attached:
            self._record(change, f"Attach{kind.title()}Policy {name}")
            self._call({"op": "attach", "account": principal["account"], "principal": principal,
                        "ref": {"kind": "managed", "arn": arn}, "policyArn": arn},
                       lambda: getattr(iam, f"attach_{kind}_policy")(
                           **{name_key(kind): principal["name"]}, PolicyArn=arn))
        self._detach(iam, change, original)


def copy_name(original_arn: str, document: str) -> str:
    """A name unique to the recommended document: the same document gets the same copy."""
    digest = hashlib.sha256(json.dumps(json.loads(document), sort_keys=True,
                                       separators=(",", ":")).encode()).hexdigest()[:12]
    suffix = f"-refined-{digest}"
    return owner_name(original_arn)[:128 - len(suffix)] + suffix


def _reshaped(original: PolicyInput, refined: PolicyInput) -> str | None:
    """How the recommended document differs from the live one otherwise than recommend's
    refinements do (None: it does not): a top-level key, a statement added, a statement
    changed beyond its action list (Effect, Resource, Condition, Sid), a Deny changed or
    dropped. The kernel judges no new access; what recommend proved is this shape too."""
    changes = document_changes(original.document, refined.document) if refined.statements \
        else []
    if changes:
        return changes[0].message.removeprefix("the policy ")
    pairing = pair_statements(original.statements, refined.statements)
    if pairing.added:
        return f"adds statement {pairing.added[0] + 1}"
    for index, before, after in pairing.pairs:
        if before.get("Effect") != "Allow" and (after is None or not same_json(before, after)):
            return f"changes or drops Deny statement {index + 1}"
        if after is not None and structure_key(before) != structure_key(after):
            return (f"changes statement {index + 1} beyond its actions (Effect, Resource, "
                    "Condition or Sid)")
    return None
