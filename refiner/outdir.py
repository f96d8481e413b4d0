"""recommend's OUTDIR: each file listed in a manifest before it is written; only those removed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import orjson

from .errors import InputError
from .output import new_file_mode, write_chunks, write_file

MANIFEST = ".refiner-recommend"  # the files this command wrote, one relative path a line
COMPLETE = "summary.json"  # written last: its absence means a run did not finish
RESULTS = "results.jsonl"  # every task's result, one JSON line each, appended as it completes
RESULTS_HELD = 2_000  # results held in memory besides on disk (a result is a few KiB)


class OutputFolder:
    """Writes are atomic (temporary file and rename); each path is added to the manifest
    before its file is created, so a run killed at any point leaves only files the manifest
    names (temporary ones included, by their prefix). A run removes, at its end, the files an
    earlier run wrote that this one did not: never a file it did not write."""

    def __init__(self, path: str, inputs: list[str]):
        self.path = Path(path)
        _refuse_overlap(self.path, inputs)
        self._listed: set[str] = set()
        self._written: set[str] = set()
        self._offsets: dict[str, int] = {}  # task key -> where its result starts in RESULTS
        self._fresh: set[str] = set()  # keys whose result this run wrote
        self._used: set[str] = set()  # keys of earlier results this run relies on
        self._cache: dict[str, dict] = {}
        self._manifest = None
        self._results = None
        self._new_mode = new_file_mode()
        self._unlisted: set[str] = set()  # files in its folders it did not write

    def begin(self, folders: tuple[str, ...]) -> None:
        for folder in (self.path, *(self.path / f for f in folders)):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InputError(f"cannot create {folder}: {error.strerror}") from None
        # Files in them that this command did not write keep their mode when they are replaced
        # (listed here once: the thousands this command writes need not be looked up).
        self._unlisted = {f"{folder}/{entry.name}" for folder in folders
                          for entry in os.scandir(self.path / folder)}
        manifest = self.path / MANIFEST
        if manifest.is_file():
            self._listed = {line for line in manifest.read_text(encoding="utf-8").splitlines()
                            if line and _inside(line)}
        self._unlisted -= self._listed
        self._remove_temporary_files()
        if COMPLETE in self._listed:  # from now on, until the end, the folder is incomplete
            (self.path / COMPLETE).unlink(missing_ok=True)
        try:
            self._manifest = open(manifest, "a", encoding="utf-8")  # noqa: SIM115 (closed by finish)
        except OSError as error:
            raise InputError(f"cannot write {manifest}: {error.strerror}") from None
        self._open_results()

    def _remove_temporary_files(self) -> None:
        """Temporary files of a killed run: ours by their name (".<listed name>.<random>"),
        each folder listed once."""
        by_folder: dict[Path, set[str]] = {}
        for relative in self._listed:
            target = self.path / relative
            by_folder.setdefault(target.parent, set()).add(target.name)
        for folder, names in by_folder.items():
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") and entry.name[1:].rsplit(".", 1)[0] in names:
                    Path(entry.path).unlink(missing_ok=True)

    def _open_results(self) -> None:
        """Index the results earlier runs appended (a line cut short by a kill is not a
        result), then append to the file from its last whole line."""
        path = self.path / RESULTS
        if RESULTS not in self._listed and path.exists():  # not ours: never read or replaced
            raise InputError(f"{path} was not written by `refiner recommend`: give -o "
                                 "another folder")
        self._note(RESULTS)
        end = 0
        try:
            with open(path, "rb") as held:
                for line in held:
                    if not line.endswith(b"\n"):
                        break
                    try:
                        value = orjson.loads(line)
                    except ValueError:
                        break
                    if isinstance(value, dict) and value.get("status") == "SUCCEEDED":
                        self._offsets[value["key"]] = end
                    end += len(line)
        except OSError:
            pass
        self._results = open(path, "ab+")  # noqa: SIM115 (closed by finish)
        self._results.truncate(end)

    def _note(self, *relatives: str) -> None:
        new = [relative for relative in relatives if relative not in self._listed]
        if new:
            self._manifest.write("".join(f"{relative}\n" for relative in new))
            self._manifest.flush()  # in the kernel's hands: it outlives a kill -9
            self._listed.update(new)
        self._written.update(relatives)

    def read(self, relative: str) -> str | None:
        """OUTDIR/relative as this command wrote it before, or None."""
        if relative not in self._listed:
            return None
        try:
            return (self.path / relative).read_text(encoding="utf-8")
        except (OSError, ValueError):
            return None

    def write(self, *files: tuple[str, str]) -> None:
        """Write each (OUTDIR/relative, text), listed first in one manifest line each
        (unchanged content is left as it is: a re-run is cheap)."""
        written_before = {relative for relative, _ in files if relative in self._listed}
        self._note(*(relative for relative, _ in files))
        for relative, text in files:  # only a file listed before can hold this text already
            target = self.path / relative
            if relative in written_before:
                try:
                    if target.read_text(encoding="utf-8") == text:
                        continue
                except (OSError, ValueError):
                    pass
            # begin() made the folders: each of thousands of files need not check them again;
            # a file not there before gets a new file's mode
            there = relative in written_before or relative in self._unlisted
            write_file(str(target), text, sync=relative == COMPLETE, checked=True,
                       new_mode=None if there else self._new_mode)

    def write_chunks(self, relative: str, chunks) -> None:
        """Write OUTDIR/relative piece by piece (a large summary is never held whole)."""
        self._note(relative)
        write_chunks(str(self.path / relative), chunks, sync=relative == COMPLETE)

    def add_result(self, result: dict) -> None:
        """Append a task's result as one line, as soon as it completes."""
        self._results.seek(0, os.SEEK_END)
        self._offsets[result["key"]] = self._results.tell()
        self._fresh.add(result["key"])
        self._results.write(orjson.dumps(result) + b"\n")
        self._results.flush()
        self._remember(result["key"], result)  # its finding is written soon: not read back

    def has_result(self, key: str) -> bool:
        """A result of key is on disk (of this run, or a SUCCEEDED one of an earlier run)."""
        return key in self._offsets

    def result(self, key: str) -> dict | None:
        """A task's result, or None. A FAILED result of an earlier run is no result: failures
        are tried again, never kept."""
        if key not in self._offsets:
            return None
        if key not in self._cache:
            self._results.seek(self._offsets[key])
            self._remember(key, orjson.loads(self._results.readline()))
        return self._cache[key]

    def _remember(self, key: str, result: dict) -> None:
        if len(self._cache) >= RESULTS_HELD:
            del self._cache[next(iter(self._cache))]  # the oldest
        self._cache[key] = result

    def finish(self) -> None:
        """Remove what earlier runs wrote and this one did not; keep the manifest to what is
        there. Called after summary.json is written."""
        self._compact_results()
        for relative in sorted(self._listed - self._written):
            (self.path / relative).unlink(missing_ok=True)
        self._manifest.close()
        write_file(str(self.path / MANIFEST), "".join(f"{r}\n" for r in sorted(self._written)))


    def _compact_results(self) -> None:
        """Keep the results this run used (the resume cache of the next), one line each,
        copied a line at a time."""
        def kept() -> Iterator[str]:
            for key in sorted(self._fresh | self._used):
                self._results.seek(self._offsets[key])
                yield self._results.readline().decode("utf-8")

        write_chunks(str(self.path / RESULTS), kept())
        self._results.close()

    def use(self, key: str) -> None:
        """This run relies on the result of key (done by an earlier run): keep it."""
        self._used.add(key)


def check_complete(outdir: str) -> None:
    """Refuse, in one line, a folder that is not a finished output of `refiner recommend`."""
    folder = Path(outdir)
    if (folder / COMPLETE).is_file() and (folder / "recommendations").is_dir():
        return
    if (folder / MANIFEST).is_file():
        raise InputError(f"{outdir} was left half-written by a `refiner recommend` that did not "
                         "finish (it has no summary.json): run recommend again")
    raise InputError(f"{outdir} is not an output folder of `refiner recommend`")


def _inside(relative: str) -> bool:
    """A manifest line names a file inside OUTDIR (a damaged manifest cannot reach out)."""
    parts = Path(relative).parts
    return bool(parts) and not Path(relative).is_absolute() and ".." not in parts


def _refuse_overlap(out: Path, inputs: list[str]) -> None:
    """OUTDIR must not hold an input, nor lie inside one (a re-run would read its own output)."""
    target = out.resolve()
    for path in inputs:
        source = Path(path).resolve()
        if source == target or target in source.parents or source in target.parents:
            raise InputError(f"-o {out} overlaps the input {path}: give another folder")
