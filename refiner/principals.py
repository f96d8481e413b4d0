"""Who holds what: the account graph of principals, groups and policy documents, and reach(document)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from .errors import InputError
from .jsontext import dumps, dumps_in_bulk, stream_members
from .policy import decoded_document

# kind of a document -> the AWS quota on its size (characters, whitespace aside)
MANAGED, ROLE_INLINE, USER_INLINE, GROUP_INLINE = "managed", "role-inline", "user-inline", \
    "group-inline"
VIA_ATTACHED, VIA_INLINE, VIA_BOUNDARY = "attached", "inline", "boundary"
# `refiner aws fetch` writes each page's account beside AWS's members: a page may hold only AWS
# managed policies, and their counts are that account's
PAGE_ACCOUNT = "RefinerAccountId"
EXPORT_LISTS = frozenset(("RoleDetailList", "UserDetailList", "Policies", "GroupDetailList"))
_ARN = re.compile(r"arn:(aws[a-z-]*):iam::([^:]*):(role|user|group|policy)/(.*)")


class Reached(NamedTuple):
    """A principal a document reaches, and how: attached, inline, group:<group ARN>, boundary
    (a tuple: an account's documents reach hundreds of thousands of principals)."""

    arn: str
    id: str | None
    via: str

    def as_json(self) -> dict:
        return {"arn": self.arn, "id": self.id, "via": self.via}


@dataclass(slots=True)
class Document:
    """One policy document, identified by its owner and kind, never by name alone."""

    kind: str  # managed | role-inline | user-inline | group-inline
    name: str
    text: str
    arn: str | None = None  # managed
    owner: str | None = None  # inline: the owner's ARN
    updated_at: str | None = None  # managed: CreateDate of the default version
    version_id: str | None = None
    aws_managed: bool = False
    attachment_count: int | None = None  # managed: as the export says
    boundary_count: int | None = None
    reach: list[Reached] = field(default_factory=list)
    id: str | None = None  # managed: its PolicyId (one re-created under its ARN has another)
    owner_id: str | None = None  # inline: its owner's RoleId, UserId or GroupId
    created: str | None = None  # managed: its CreateDate (where an export lacks PolicyId)
    # AWS managed: the account it is attached in. AWS's own policies have one ARN in every
    # account, but each account attaches them apart: one document per account, with that
    # account's reach and counts (an organization's accounts are never consolidated together).
    account: str | None = None
    unseen: str | None = None  # why the export cannot show its whole reach
    # managed, with a grace rule: each version's (VersionId, CreateDate, IsDefaultVersion,
    # Document) as the export holds them (see keep.needs_versions)
    versions: tuple | None = None
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def ref(self) -> dict:
        """Its identity, and the unique ids that tell it from one re-created under its names."""
        if self.kind == MANAGED:
            return {**self._identity, **({"id": self.id} if self.id else {}),
                    **({"createDate": self.created} if self.created else {})}
        return {**self._identity, **({"ownerId": self.owner_id} if self.owner_id else {})}

    @property
    def _identity(self) -> dict:
        if self.kind == MANAGED:
            return {"kind": MANAGED, "arn": self.arn}
        return {"kind": self.kind, "owner": self.owner, "name": self.name}

    @property
    def key(self) -> str:
        """A stable identity for files and maps: the ref's kind and names, hashed."""
        if self._key is None:
            identity = {**self._identity, **({"account": self.account} if self.account else {})}
            self._key = hashlib.sha256(dumps(identity).encode()).hexdigest()[:24]
        return self._key

    @property
    def digest(self) -> str:
        """What the document says, hashed: work on it is keyed by this, not by its name."""
        return text_digest(self.text)

    def reach_json(self) -> list[dict]:
        """reach as the recommendation contract writes it."""
        return [reached.as_json() for reached in self.reach]

    @property
    def aws_id(self) -> str:
        """Access Analyzer's existingPolicyId: a managed policy's ARN, an inline policy's name."""
        return self.arn if self.kind == MANAGED else self.name

    @property
    def shared(self) -> bool:
        """Changing it may change more than one principal's access: several principals, a
        group's policy (members come and go) or a permissions boundary."""
        return len(self.reach) > 1 or any(r.via != VIA_ATTACHED and r.via != VIA_INLINE
                                          for r in self.reach)

    def reach_incomplete(self) -> str | None:
        """Why the export may not show every principal this document reaches (None: it does).
        An export made with --filter lists a policy's attachments it does not hold."""
        if self.unseen:
            return self.unseen
        bounded = sum(r.via == VIA_BOUNDARY for r in self.reach)
        groups = len({r.via for r in self.reach if r.via.startswith("group:")})
        direct = sum(r.via == VIA_ATTACHED for r in self.reach)
        if self.attachment_count is not None and self.attachment_count > direct + groups:
            return (f"the export shows {direct + groups} of its {self.attachment_count} "
                    "attachments")
        if self.boundary_count is not None and self.boundary_count > bounded:
            return f"the export shows {bounded} of its {self.boundary_count} boundary uses"
        return None


@functools.lru_cache(maxsize=4096)
def text_digest(text: str) -> str:
    """A document text's SHA-256 (texts are shared by many documents: hashed once each)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class Principal:
    kind: str  # role | user
    arn: str
    id: str | None
    name: str
    path: str = "/"
    tags: list | tuple = ()  # the export's Tags (none: an empty tuple, one for all)
    create_date: str | None = None
    boundary: str | None = None  # the permissions boundary's managed policy ARN
    groups: tuple[str, ...] = ()  # group ARNs
    documents: list[tuple[str, str]] = field(default_factory=list)  # (document key, via)
    missing: tuple[str, ...] = ()  # what is attached but not exported
    attached: int = 0  # managed policies attached directly (the quota's count)

    @property
    def account(self) -> str:
        return principal_account(self.arn)

    @property
    def partition(self) -> str:
        return _arn_parts(self.arn)[0]

    def as_json(self) -> dict:
        """As the recommendation contract names a principal."""
        return {"arn": self.arn, "id": self.id, "account": self.account,
                "partition": self.partition, "kind": self.kind, "name": self.name}


@dataclass
class Group:
    arn: str
    id: str | None
    name: str
    members: list[str] = field(default_factory=list)  # user ARNs
    documents: list[str] = field(default_factory=list)  # document keys


class AccountGraph:
    """Principals, groups and documents of one or more exports (pages of one account, or
    several accounts), with who each document reaches. Texts are held once each."""

    def __init__(self, versions: bool = False, accounts: set[str] | None = None):
        """versions: keep each managed policy's every version (a grace rule reads their
        dates); accounts: the accounts of every principal of the whole input, when this graph
        reads some of its accounts (see account_groups)."""
        self._keep_versions, self._input_accounts = versions, accounts
        self.page_accounts: set[str] = set()  # every account the pages read name
        self.principals: dict[str, Principal] = {}
        self.groups: dict[str, Group] = {}  # by ARN
        self.documents: dict[str, Document] = {}  # by key
        self._managed: dict[str, str] = {}  # managed ARN -> document key
        self._group_details: dict[str, dict] = {}  # "account:name" -> detail, until resolved
        # (principal, attached policy ARNs, group names) until resolve: only the names, one
        # string each (the export's entries, held for every principal until every page is
        # read, would leave the memory they took behind them)
        self._pending: list[tuple[Principal, tuple, tuple]] = []
        self._texts: dict[str, str] = {}  # one copy of each distinct document text
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}  # one (key, via) of each
        # AWS managed policies as each page read them, by the page's account (None: the page
        # names no account), until resolve makes one document per account that attaches them
        self._aws_pages: list[tuple[str | None, dict[str, Document]]] = []
        self._aws_managed: dict[tuple[str, str], str] = {}  # (account, ARN) -> document key
        self._aws_templates: dict[tuple[str, str], Document] = {}  # ("": no account known)

    @classmethod
    def read(cls, paths: list[str], versions: bool = False,
             accounts: set[str] | None = None) -> AccountGraph:
        """The graph of export files, each read as it streams: only what the graph keeps is
        held (an export of 50,000 principals is never parsed whole)."""
        graph = cls(versions, accounts)
        for path in paths:
            graph.add_members(stream_members(path, "authorization details", EXPORT_LISTS), path)
        graph.resolve()
        return graph

    # --- reading -----------------------------------------------------------------------------

    def add_members(self, members: Iterable[tuple[str, object]], path: str) -> None:
        """An export's members: each item of its lists, in any order (attachments and groups
        are joined by resolve, once every page is read)."""
        found = False
        accounts: set[str] = set()  # the accounts the page's own ARNs name
        aws_managed: dict[str, Document] = {}
        named = None  # the account `refiner aws fetch` wrote the page for
        for key, item in members:
            if key == PAGE_ACCOUNT:
                if not isinstance(item, str):
                    raise InputError(f"authorization details {path}: {PAGE_ACCOUNT} must be "
                                     "an account id")
                named = item
            if key not in EXPORT_LISTS:
                continue
            found = True
            if key == "Policies":
                document = self._add_managed(item, path)
                if document is not None and document.aws_managed:
                    aws_managed[document.arn] = document
                elif document is not None:
                    accounts.add(_arn_parts(document.arn)[1])
            elif key == "GroupDetailList":
                arn, name = item.get("Arn"), item.get("GroupName")
                if not isinstance(arn, str) or not isinstance(name, str):
                    raise InputError(f"authorization details {path}: a group without Arn or "
                                     "name")
                accounts.add(_arn_parts(arn)[1])
                self._group_details[f"{_arn_parts(arn)[1]}:{name}"] = item
            else:
                self._add_principal("role" if key == "RoleDetailList" else "user", item, path)
                accounts.add(_arn_parts(item["Arn"])[1])
        self.page_accounts |= accounts | ({named} if named is not None else set())
        if named is not None and accounts - {named}:
            raise InputError(f"authorization details {path}: the page is for account {named} "
                             f"but holds ARNs of account {sorted(accounts - {named})[0]}")
        if aws_managed:
            account = named or (accounts.pop() if len(accounts) == 1 else None)
            self._aws_pages.append((account, aws_managed))
        if not found:
            raise InputError(f"authorization details {path}: expected the output of "
                             "`aws iam get-account-authorization-details`")

    def _add_managed(self, policy: dict, path: str) -> Document | None:
        arn = policy.get("Arn")
        if not isinstance(arn, str):
            raise InputError(f"authorization details {path}: a policy without Arn")
        every = _list(policy, "PolicyVersionList", arn)
        versions = [v for v in every if v.get("IsDefaultVersion")]
        if not versions:
            return None
        # moto's export lacks PolicyName: the ARN's last part is the name.
        name = policy.get("PolicyName") or arn.rsplit("/", 1)[-1]
        document = Document(MANAGED, name, self._text(versions[0].get("Document"), path), arn=arn,
                            updated_at=versions[0].get("CreateDate"),
                            version_id=versions[0].get("VersionId"),
                            aws_managed=is_aws_managed(arn),
                            attachment_count=_count(policy.get("AttachmentCount")),
                            boundary_count=_count(policy.get("PermissionsBoundaryUsageCount")),
                            id=_string(policy.get("PolicyId")),
                            created=_string(policy.get("CreateDate")),
                            versions=tuple(every) if self._keep_versions else None)
        if document.aws_managed:  # its document is made per account by resolve
            return document
        held = self.documents.get(document.key)
        if held is not None:  # the same export given twice: keep the reach gathered so far
            document.reach = held.reach
        self.documents[document.key] = document
        self._managed[arn] = document.key
        return document

    def _add_principal(self, kind: str, detail: dict, path: str) -> None:
        title = kind.title()
        arn, name = detail.get("Arn"), detail.get(f"{title}Name")
        if not isinstance(arn, str) or not isinstance(name, str):
            raise InputError(f"authorization details {path}: a {kind} without Arn or name")
        principal = self.principals.get(arn)
        if principal is None:
            boundary = detail.get("PermissionsBoundary")
            principal = Principal(
                kind, arn, detail.get(f"{title}Id"), name, detail.get("Path", "/"),
                _tags(detail.get("Tags", ())), detail.get("CreateDate"),
                boundary.get("PermissionsBoundaryArn") if isinstance(boundary, dict) else None)
            self.principals[arn] = principal
        for inline in _list(detail, f"{title}PolicyList", path):
            document = self._inline(inline, f"{kind}-inline", arn, path, principal.id)
            self._reach(document, principal, VIA_INLINE)
        attached = tuple(_interned(entry.get("PolicyArn"))
                         for entry in _list(detail, "AttachedManagedPolicies", arn))
        self._pending.append((principal, attached, tuple(map(_interned, _list(
            detail, "GroupList", arn, of=str)))))

    def resolve(self) -> None:
        """Attachments, boundaries and groups once every page is read (a page may name a
        policy or a group that another page holds)."""
        self._place_aws_managed()
        for principal, attached, group_names in self._pending:
            for policy in attached:
                if self._attach(principal, policy, VIA_ATTACHED):
                    principal.attached += 1
            if principal.boundary is not None:
                self._attach(principal, principal.boundary, VIA_BOUNDARY)
            for group_name in group_names:
                self._join(principal, group_name)
        self._pending = []
        self._group_details = {}
        self._aws_pages = []
        self._pairs = {}

    def _place_aws_managed(self) -> None:
        """Each page's AWS managed policies under the page's account. A page that names no
        account (it holds only AWS managed policies) is its account's when the graph holds one
        account; among several, its policies' counts could be any account's: their reach is
        unknown wherever no page of the account itself holds them."""
        accounts = self._input_accounts
        if accounts is None:
            accounts = {principal.account for principal in self.principals.values()}
        for account, documents in self._aws_pages:
            if account is None and len(accounts) == 1:
                account = next(iter(accounts))
            for arn, document in documents.items():
                if account is not None:
                    self._aws_templates[(account, arn)] = document
                else:
                    self._aws_templates.setdefault(("", arn), document)

    def _managed_key(self, arn: object, account: str) -> str | None:
        """The key of the managed policy `arn` as attached in `account` (None: not exported)."""
        if not isinstance(arn, str) or not is_aws_managed(arn):
            return self._managed.get(arn)
        key = self._aws_managed.get((account, arn))
        if key is not None:
            return key
        template = self._aws_templates.get((account, arn))
        unseen = None
        if template is None:
            template = self._aws_templates.get(("", arn))
            if template is None:
                return None
            unseen = (f"the export page that holds it names no account, so its attachments "
                      f"in account {account} are not known")
        document = dataclasses.replace(template, account=account, unseen=unseen, reach=[])
        self.documents[document.key] = document
        self._aws_managed[(account, arn)] = document.key
        return document.key

    def _join(self, principal: Principal, group_name: str) -> None:
        detail = self._group_details.get(f"{principal.account}:{group_name}")
        if detail is None:
            principal.missing += (f"group {group_name}",)
            return
        arn = detail["Arn"]
        group = self.groups.get(arn)
        if group is None:
            group = self.groups[arn] = Group(arn, detail.get("GroupId"), group_name)
            for inline in _list(detail, "GroupPolicyList", group_name):
                group.documents.append(self._inline(inline, GROUP_INLINE, arn, group_name,
                                                    group.id).key)
            for entry in _list(detail, "AttachedManagedPolicies", group_name):
                key = self._managed_key(entry.get("PolicyArn"), _arn_parts(arn)[1])
                if key is None:
                    group.documents.append("missing:" + str(entry.get("PolicyArn")))
                else:
                    group.documents.append(key)
        if principal.arn in group.members:
            return
        group.members.append(principal.arn)
        principal.groups += (arn,)
        via = sys.intern(f"group:{arn}")  # one string for every member
        for key in group.documents:
            if key.startswith("missing:"):
                principal.missing += (f"policy {key[len('missing:'):]} of group {group_name}",)
            else:
                self._reach(self.documents[key], principal, via)

    def _attach(self, principal: Principal, arn: object, via: str) -> bool:
        key = self._managed_key(arn, principal.account)
        if key is None:
            principal.missing += (f"policy {arn}" + (" (boundary)" if via == VIA_BOUNDARY
                                                     else ""),)
            return False
        return self._reach(self.documents[key], principal, via)

    def _reach(self, document: Document, principal: Principal, via: str) -> bool:
        """Once each: the same export given twice must not make two holders of one policy."""
        entry = (document.key, via)
        if entry in principal.documents:
            return False
        if via != VIA_INLINE:  # one pair for every holder of a shared document
            entry = self._pairs.setdefault(entry, entry)
        principal.documents.append(entry)
        document.reach.append(Reached(principal.arn, principal.id, via))
        return True

    def _inline(self, inline: dict, kind: str, owner: str, where: str,
                owner_id: str | None) -> Document:
        name = inline.get("PolicyName")
        if not isinstance(name, str):
            raise InputError(f"authorization details {where}: an inline policy without PolicyName")
        document = Document(kind, name, self._text(inline.get("PolicyDocument"), where),
                            owner=owner, owner_id=owner_id if isinstance(owner_id, str) else None)
        return self.documents.setdefault(document.key, document)

    def _text(self, document: object, where: str) -> str:
        text = document_text(document, where)
        return self._texts.setdefault(text, sys.intern(text) if len(text) < 64 else text)

    # --- questions -----------------------------------------------------------------------------

    def reach(self, key: str) -> list[dict]:
        """Every principal the document reaches: attached, inline, through a group, boundary."""
        return self.documents[key].reach_json()

    def documents_of(self, principal: Principal) -> list[tuple[Document, str]]:
        return [(self.documents[key], via) for key, via in principal.documents]


def account_groups(paths: list[str]) \
        -> tuple[list[tuple[list[str], set[str] | None]], set[str] | None]:
    """The exports by account, for an organization read one account at a time: groups of
    paths (each file with every other file that names one of its accounts; a page that names
    no account, AWS managed policies alone, in every group) with the accounts they name, and
    the accounts of every principal of them all (None: one group of every path, for every
    account). Each file is read here as the graph reads it (bad input is refused before any
    account is done), one at a time."""
    if len(paths) <= 1:
        return [(list(paths), None)], None
    named: dict[str, set[str]] = {}
    principal_accounts: set[str] = set()
    for path in paths:
        page = AccountGraph()
        page.add_members(stream_members(path, "authorization details", EXPORT_LISTS), path)
        named[path] = page.page_accounts
        principal_accounts |= {principal.account for principal in page.principals.values()}
    group_of: dict[str, int] = {}  # account -> its group
    members: list[set[str]] = []  # group -> its paths
    for path in paths:
        joined = sorted({group_of[a] for a in named[path] if a in group_of})
        if not named[path]:
            continue
        if not joined:
            members.append(set())
            joined = [len(members) - 1]
        into = joined[0]
        for other in joined[1:]:  # a file naming accounts of two groups joins them
            members[into] |= members[other]
            members[other] = set()
        members[into].add(path)
        for account, group in list(group_of.items()):
            if group in joined:
                group_of[account] = into
        for account in named[path]:
            group_of[account] = into
    groups = [([p for p in paths if p in group or not named[p]],
               set().union(*(named[p] for p in group))) for group in members if group]
    if len(groups) <= 1:
        return [(list(paths), None)], None
    return groups, principal_accounts


def principal_account(arn: str) -> str:
    """The account part of an IAM ARN ("" when it is not one)."""
    return _arn_parts(arn)[1]


def is_aws_managed(arn: str) -> bool:
    """AWS's own policies, in every partition (aws, aws-cn, aws-us-gov, ...)."""
    parts = _arn_parts(arn)
    return parts[1] == "aws" and parts[2] == "policy"


def _arn_parts(arn: str) -> tuple[str, str, str]:
    match = _ARN.fullmatch(arn or "")
    return (match[1], match[2], match[3]) if match else ("", "", "")


def _interned(value: object) -> object:
    """A name many principals hold, one string for all of them."""
    return sys.intern(value) if isinstance(value, str) else value


def _tags(tags: object) -> object:
    """An export's Tags as it holds them; none: one empty tuple for every principal."""
    return () if tags == [] else tags


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: object) -> int | None:
    """A count as the export writes it (the strict reader keeps numbers as their text)."""
    text = getattr(value, "text", None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(text) if isinstance(text, str) and text.isdigit() else None


def _list(holder: dict, key: str, where: str, of: type = dict) -> list:
    """holder[key] when it is a list of `of` (missing: empty); anything else is malformed
    input, never read as "nothing attached"."""
    value = holder.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, of) for item in value):
        raise InputError(f"authorization details ({where}): {key} must be a list of "
                         f"{'objects' if of is dict else 'names'}")
    return value


def document_text(document: object, where: str) -> str:
    """A policy document as text: exports hold objects or (URL-encoded) strings."""
    if isinstance(document, str):
        return decoded_document(document)
    if isinstance(document, dict):
        return dumps_in_bulk(document, indent=2) + "\n"  # an export holds thousands
    raise InputError(f"authorization details {where}: a policy document is neither an object "
                     "nor a string")
