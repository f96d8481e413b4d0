"""The journal of apply and rollback: one writer, checksummed entries, on disk before each call.

JSON Lines. Every entry names the run that wrote it (a random id) and its sequence number in
that run (1, 2, 3, ...), and carries a checksum of its own text and of the previous entry's
checksum (a chain), so a changed, cut, missing, duplicated or reordered line is seen. The
checksums are not secret: whoever can write the journal can forge a whole new chain, so the
journal is kept where only the operator can write (it is as sensitive as the credentials).
An entry reaches the disk (the file, and on creation the folder) before the IAM call it
announces. One process at a time holds the journal (an exclusive lock held for the whole run),
so two applies never interleave. A last line cut short by a crash is reported, kept (as a
"torn" entry that quotes it) and never mistaken for a call: its call was never made, since
every call waits for its entry to be on disk."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

START = b'{"run": "'  # how every entry's line begins (json.dumps keeps the key order)
OPS = ("put_inline", "delete_inline", "attach", "detach", "create_policy_version",
       "delete_policy_version", "create_policy")  # the IAM calls an intent may announce


def checksum(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "sum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Contents:
    """A journal as read: its entries in order, and the text of a torn last line, if any."""

    entries: list[dict] = field(default_factory=list)
    torn: str | None = None
    torn_line: int | None = None
    whole_bytes: int = 0  # the length of the journal up to the end of its last whole entry
    last_sum: str = ""  # the checksum the next entry's "prev" names


def read_journal(path: str) -> Contents:
    """Every entry, checked. A bad line in the middle means the journal was edited or damaged:
    refused, since what it lost cannot be known. A bad last line is a write a crash cut short."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise InputError(f"cannot read journal {path}: {error.strerror}") from None
    return _parse(path, data)


def _parse(path: str, data: bytes) -> Contents:
    contents = Contents()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail: bytes after the last newline
    offset = 0
    order = _Order(path)
    for number, raw in enumerate(complete, 1):
        entry = _entry(raw)
        if entry is None:
            if number == len(complete) and not tail and _ours(raw):
                contents.torn, contents.torn_line = raw.decode("utf-8", "replace"), number
                break
            raise InputError(f"journal {path} line {number} is damaged (not an entry refiner "
                             "wrote, or its checksum does not match): refused")
        order.check(number, entry, contents.last_sum)
        contents.entries.append(entry)
        contents.last_sum = entry["sum"]
        offset += len(raw) + 1
    if tail:  # even a whole entry whose newline never reached the disk counts as torn
        if not _ours(tail):
            raise InputError(f"{path} is not a journal refiner wrote (line {len(complete) + 1}): "
                             "refused")
        contents.torn, contents.torn_line = tail.decode("utf-8", "replace"), len(complete) + 1
    contents.whole_bytes = offset
    return contents


class _Order:
    """Each entry follows the one before it (its "prev" is that entry's checksum), each run
    numbers its entries 1, 2, 3, ... in one unbroken stretch, and every entry has the fields
    its state needs, naming only intents before it."""

    def __init__(self, path: str):
        self.path = path
        self.runs: dict[str, int] = {}  # run -> its last seq
        self.current: str | None = None
        self.intents: set[tuple[str, int]] = set()

    def check(self, number: int, entry: dict, prev: str) -> None:
        def refuse(why: str) -> None:
            raise InputError(f"journal {self.path} line {number} {why}: refused")

        if entry.get("prev") != prev:
            refuse("does not follow the line before it (a line is missing, duplicated or out "
                   "of order)")
        run, seq, state = entry.get("run"), entry.get("seq"), entry.get("state")
        if not (isinstance(run, str) and _integer(seq) and isinstance(state, str)):
            refuse("is damaged (no run, seq or state)")
        if run != self.current and run in self.runs:
            refuse(f"continues run {run} after another run (lines out of order)")
        if seq != self.runs.get(run, 0) + 1:
            refuse(f"is entry {seq} of run {run}, not {self.runs.get(run, 0) + 1} (a line is "
                   "missing, duplicated or out of order)")
        self.current, self.runs[run] = run, seq
        of = entry.get("of")
        if state == "intent":
            if entry.get("op") not in OPS or not isinstance(entry.get("account"), str) \
                    or not isinstance(entry.get("ref"), dict):
                refuse("is damaged (an intent without a known op, its account or its ref)")
            self.intents.add((run, seq))
        elif state in ("done", "failed"):
            if not (_integer(of) and (run, of) in self.intents):
                refuse(f"is damaged (a {state} entry that names no intent of its run before it)")
        elif state in ("undo", "undone"):
            if not (isinstance(of, list) and len(of) == 2 and isinstance(of[0], str)
                    and _integer(of[1]) and tuple(of) in self.intents):
                refuse(f"is damaged (an {state} entry that names no intent before it)")
        elif state not in ("begin", "torn"):
            refuse(f"is damaged (an entry of unknown state {state!r})")


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ours(raw: bytes) -> bool:
    """Whether a cut line could be the start of an entry (each begins with its run id), so
    that a file that is not a journal is never cut short as if it were one."""
    return raw.startswith(START) or START.startswith(raw)


def _entry(raw: bytes) -> dict | None:
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("sum") != checksum(entry):
        return None
    return entry


class Journal:
    """The open journal of one run: locked, appended to, each entry synced before it returns."""

    def __init__(self, path: str):
        self.path = path
        self.run = uuid.uuid4().hex[:12]
        self._seq = 0
        folder = Path(path).parent
        if not folder.is_dir():
            raise InputError(f"cannot write journal {path}: no folder {folder}")
        created = not Path(path).exists()
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as error:
            raise InputError(f"cannot write journal {path}: {error.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise InputError(f"journal {path} is in use by another refiner apply or rollback: "
                             "refused (one writer at a time)") from None
        self._folder_lock = None
        self.announced = 0  # intents and undos this run wrote: IAM calls may follow each
        if created:
            _sync_folder(folder)
        try:
            self.contents = _parse(path, _read_all(self._fd))
        except BaseException:
            self.close()
            raise
        self._last_sum = self.contents.last_sum
        if self.contents.torn is not None:
            self._close_torn_tail()

    def _close_torn_tail(self) -> None:
        """Cut the torn bytes off and keep them as an entry, so the journal stays whole and
        the damage stays on record."""
        os.ftruncate(self._fd, self.contents.whole_bytes)
        os.fsync(self._fd)
        self.write({"state": "torn", "line": self.contents.torn_line,
                    "text": self.contents.torn})

    def write(self, entry: dict) -> dict:
        """Append entry (given its run, seq and checksum); on disk when this returns."""
        self._seq += 1
        entry = {"run": self.run, "seq": self._seq, "prev": self._last_sum, **entry}
        entry["sum"] = checksum(entry)
        data = (json.dumps(entry) + "\n").encode()
        while data:  # os.write may write less than asked
            data = data[os.write(self._fd, data):]
        os.fsync(self._fd)
        self._last_sum = entry["sum"]
        if entry["state"] in ("intent", "undo"):
            self.announced += 1
        return entry

    def lock_folder(self, folder: str) -> None:
        """Also hold a folder (recommend's output): two applies of one output, each with its
        own journal, would make the same changes twice."""
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            raise InputError(f"{folder} is being applied by another refiner apply: refused "
                             "(one at a time)") from None
        self._folder_lock = descriptor

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
        if self._folder_lock is not None:
            os.close(self._folder_lock)
            self._folder_lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_all(descriptor: int) -> bytes:
    os.lseek(descriptor, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(descriptor, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _sync_folder(folder: Path) -> None:
    """The new file's name is on disk too, not only its bytes."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
