"""Read an account's findings (GetFindingV2 pages), and a per-principal view of its IAM data."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .errors import InputError
from .jsontext import decode, parse_json_text, read_bytes, read_text
from .principals import VIA_ATTACHED, VIA_BOUNDARY, AccountGraph, principal_account


@dataclass
class PolicyRef:
    """One policy of a principal as `refiner aws compare` reads it: policy_id is the managed
    policy's ARN or the inline policy's name (Access Analyzer's existingPolicyId); kind is
    "managed", "inline" or "group"."""

    policy_id: str
    name: str
    kind: str
    text: str
    updated_at: str | None = None
    aws_managed: bool = False


@dataclass
class Principal:
    arn: str
    kind: str  # "role" or "user"
    name: str
    policies: list[PolicyRef] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # attached policies the export lacks


class Account:
    """Principals by ARN with their policies: a per-principal view of the account graph."""

    def __init__(self, graph: AccountGraph):
        self.graph = graph
        self.principals: dict[str, Principal] = {}
        for held in graph.principals.values():
            principal = self.principals[held.arn] = Principal(held.arn, held.kind, held.name,
                                                              missing=list(held.missing))
            for document, via in graph.documents_of(held):
                if via == VIA_BOUNDARY:
                    continue
                kind = "managed" if via == VIA_ATTACHED else "group" \
                    if via.startswith("group:") else "inline"
                principal.policies.append(PolicyRef(document.aws_id, document.name, kind,
                                                    document.text, document.updated_at,
                                                    document.aws_managed))

    @classmethod
    def read(cls, paths: list[str]) -> Account:
        return cls(AccountGraph.read(paths))


_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # never holds the "~" of a digest

# --- findings ---------------------------------------------------------------------------------

# What recommend's planner reads of a finding's first page (the rest stays in the worker).
READ_HEAD = ("resource", "status", "findingType", "accountUnreadable", "updatedAt", "analyzedAt")
HEAD_FIELDS = ("id", "resource", "resourceType", "resourceOwnerAccount", "status", "findingType",
               "updatedAt", "analyzedAt", "createdAt", "nextToken", "accountUnreadable")


@dataclass
class FindingPages:
    """Where the pages of one finding are: (file, byte offset of its line in a JSON Lines file
    or None for the whole file, line number). They are parsed when the finding is read, so a
    large account's findings are never all held at once."""

    sources: list[tuple[str, int | None, int]] = field(default_factory=list)
    account: str | None = None  # the account of its first page's resource (None: it names none)

    def texts(self) -> Iterator[tuple[str, str]]:
        """(label, text) of each page."""
        for file, offset, number in self.sources:
            if offset is None:
                yield f"findings {file}", read_text(file, "findings")
                continue
            try:
                with open(file, "rb") as handle:
                    handle.seek(offset)
                    line = handle.readline()
            except OSError as error:
                raise InputError(f"cannot read findings {file}: {error.strerror}") from None
            try:  # the first line may start with the file's byte-order mark
                text = line.decode("utf-8-sig" if offset == 0 else "utf-8")
            except UnicodeDecodeError:
                raise InputError(f"findings {file} is not UTF-8 text") from None
            yield f"findings {file} line {number}", text


def says_unused(head: dict) -> bool:
    """The finding (its first page's head) is an active unused-permissions finding of a
    readable account: the only kind whose unused actions are read."""
    return head.get("accountUnreadable") is not True and \
        head.get("status", "ACTIVE") == "ACTIVE" and \
        head.get("findingType") in (None, "UnusedPermission")


def parse_pages(texts: Iterable[tuple[str, str]]) -> tuple[dict, list[dict]]:
    """(the first page's head fields, every page compacted) of one finding's (label, text)
    pages, read strictly."""
    pages = []
    for label, text in texts:
        value = parse_json_text(text, label)
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise InputError(f"{label}: expected a GetFindingV2 response with an id")
        pages.append(_compact(value))
    return pages[0], pages


def finding_pages(paths: list[str]) -> dict[str, FindingPages]:
    """Finding id -> where its GetFindingV2 pages are, from files, folders of them (*.json,
    *.jsonl) and JSON Lines files (one response a line). Each page is parsed here for its id
    only (the strict reading is parse_pages', in a worker)."""
    pages: dict[str, FindingPages] = {}
    for label, text, source in _finding_texts(paths):
        try:  # orjson: some times faster; what it refuses, json reads or refuses in words
            value = orjson.loads(text)
        except ValueError:
            try:
                value = json.loads(text)
            except ValueError:
                value = parse_json_text(text, label)  # raises, in the strict reader's words
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            raise InputError(f"{label}: expected a GetFindingV2 response with an id")
        found = pages.get(value["id"])
        if found is None:
            resource = value.get("resource")
            found = pages[value["id"]] = FindingPages(
                account=sys.intern(principal_account(resource))
                if isinstance(resource, str) else None)
        found.sources.append(source)
    return pages


def _compact(value: dict) -> dict:
    """The page with only what is read later; well-formed action lists become lists of shared
    strings (anything else is kept as it was, for the finding's reader to refuse)."""
    page = {key: value[key] for key in HEAD_FIELDS if key in value}
    details = value.get("findingDetails")
    if not isinstance(details, list):
        if "findingDetails" in value:
            page["findingDetails"] = details
        return page
    page["findingDetails"] = [_compact_detail(detail) for detail in details]
    return page


def _compact_detail(detail: object) -> object:
    entry = detail.get("unusedPermissionDetails") if isinstance(detail, dict) else None
    if not isinstance(entry, dict) or set(detail) != {"unusedPermissionDetails"}:
        return detail
    actions = entry.get("actions")
    if not isinstance(actions, list) or not all(
            isinstance(item, dict) and isinstance(item.get("action"), str) for item in actions):
        return detail
    compact = {key: value for key, value in entry.items() if key not in ("actions", "lastAccessed")}
    if "actions" in entry:
        compact["actions"] = [sys.intern(item["action"]) for item in actions]
    return {"unusedPermissionDetails": compact}


def finding_file_name(finding_id: str) -> str:
    """A file name for a finding id, safe on every file system and distinct for distinct ids:
    an id of letters, digits, `.`, `_` and `-` is its own name; any other gets its unsafe
    characters replaced and `~` and a digest of the whole id appended (ids that differ only
    in `:` vs `/` get two files). A plain id holds no `~`, so the two kinds never meet."""
    if _PLAIN_ID.fullmatch(finding_id):
        return finding_id + ".json"
    digest = hashlib.sha256(finding_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return re.sub(r"[^A-Za-z0-9._-]", "_", finding_id)[:180] + f"~{digest}.json"


def _finding_texts(paths: list[str]) -> Iterator[tuple[str, str, tuple[str, int | None, int]]]:
    """(label, text, where it is) of every page."""
    for path in paths:
        folder = Path(path)
        files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".jsonl")) \
            if folder.is_dir() else [folder]
        for file in files:
            name = str(file)
            if file.suffix != ".jsonl":
                yield f"findings {name}", read_text(name, "findings"), (name, None, 0)
                continue
            data = read_bytes(name, "findings")
            decode(data, name, "findings")  # one line for a file that is not UTF-8 text
            offset = 0
            # Lines end at "\n" only: JSON strings may hold U+2028 and the like.
            for number, line in enumerate(data.split(b"\n"), 1):
                if line.strip():
                    text = line.decode("utf-8-sig" if offset == 0 else "utf-8")
                    yield f"findings {name} line {number}", text, (name, offset, number)
                offset += len(line) + 1
