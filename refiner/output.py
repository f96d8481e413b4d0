"""Write results without losing anything: atomic writes keeping modes, backups never overwritten."""

from __future__ import annotations

import itertools
import os
import stat
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import InputError

MAX_BACKUPS = 10_000


def check_writable(path: str) -> None:
    """An output path must name a file in an existing folder: anything else is bad usage."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"cannot write {path}: it is a directory")
    folder = target.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot write {path}: the folder {folder} is not writable")


def write_file(path: str, text: str, mode_of: str | None = None, sync: bool = True,
               checked: bool = False, new_mode: int | None = None) -> None:
    """Write text (UTF-8, exactly as given: no newline translation) to path through a temporary
    file in the same folder and a rename. The file gets the mode path already had, else that
    of mode_of (the input it was made from), else what a new file gets under the umask.
    sync=False skips the fsync: still whole after a killed process, not after a power loss
    (for the many files of one run, whose last file is synced). checked: the caller knows
    that path's folder exists and is writable (a failure is still one InputError line).
    new_mode: see write_chunks."""
    write_chunks(path, [text], mode_of, sync, checked, new_mode)


def write_chunks(path: str, chunks: Iterable[str], mode_of: str | None = None,
                 sync: bool = True, checked: bool = False, new_mode: int | None = None) -> None:
    """write_file for text made piece by piece (a large report is never held whole).
    new_mode: the caller knows path is a new file and the mode it gets (new_file_mode(),
    looked up once for the thousands of files of one run, not three system calls each)."""
    if not checked:
        check_writable(path)
    if new_mode is None:
        umask = _umask()
        mode = _mode(Path(path)) or (_mode(Path(mode_of)) if mode_of else None) or \
            0o666 & ~umask
        exact = mode & ~umask != mode or mode & ~0o777  # bits open() does not give
    else:
        mode, exact = new_mode, False
    handle, temp = _temporary(path, mode)
    try:
        with os.fdopen(handle, "wb") as out:
            if exact:
                os.fchmod(out.fileno(), mode)
            for chunk in chunks:
                out.write(chunk.encode("utf-8"))
            out.flush()
            if sync:
                os.fsync(out.fileno())
        try:
            os.replace(temp, path)
        except OSError as error:  # a folder in the way, say: one line, not a traceback
            raise InputError(f"cannot write {path}: {error.strerror}") from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def new_file_mode() -> int:
    """The mode a new file gets under the umask."""
    return 0o666 & ~_umask()


_TEMPORARY_NUMBERS = itertools.count()


def _temporary(target: str, mode: int) -> tuple[int, str]:
    """A new file beside target, named ".<target's name>.<process>-<number>" (what a killed
    run leaves is found by that name), created with its final mode: cheaper than mkstemp's
    random names for the thousands of files of one run, and as sure never to open another."""
    folder, name = os.path.split(target)
    for _ in range(MAX_BACKUPS):  # names left by a killed process with our number: skip them
        temp = os.path.join(folder, f".{name}.{os.getpid()}-{next(_TEMPORARY_NUMBERS)}")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), temp
        except FileExistsError:
            continue
        except OSError as error:
            raise InputError(f"cannot write {target}: {error.strerror}") from None
    raise InputError(f"cannot write {target}: no free temporary name beside it")


def backup(path: str) -> Path:
    """Copy path's bytes and mode to the first free name of path.bak, path.bak.1, ...: an
    existing backup is never overwritten, so the oldest original always survives."""
    source = Path(path)
    data, mode = source.read_bytes(), _mode(source) or new_file_mode()
    for number in range(MAX_BACKUPS):
        candidate = Path(f"{path}.bak" + (f".{number}" if number else ""))
        try:
            descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
        except OSError as error:
            raise InputError(f"cannot write the backup {candidate}: {error.strerror}") from None
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        return candidate
    raise InputError(f"{path} already has {MAX_BACKUPS} backups: remove some first")


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


class progress:
    """A progress bar on standard error, only when it is a terminal."""

    def __init__(self, enabled: bool, total: int, what: str):
        self.enabled = enabled and sys.stderr.isatty() and total > 0
        self.total, self.what = total, what

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.start()
        task = self._bar.add_task(self.what, total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._bar.stop()

