"""recommend's OUTDIR: each file listed in a manifest before it is written; only those removed."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError
from .output import write_file

MANIFEST = ".refiner-recommend"  # the files this command wrote, one relative path a line
COMPLETE = "summary.json"  # written last: its absence means a run did not finish


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
        self._results: dict[str, dict | None] = {}
        self._manifest = None

    def begin(self, folders: tuple[str, ...]) -> None:
        for folder in (self.path, *(self.path / f for f in folders)):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InputError(f"cannot create {folder}: {error.strerror}") from None
        manifest = self.path / MANIFEST
        if manifest.is_file():
            self._listed = {line for line in manifest.read_text(encoding="utf-8").splitlines()
                            if line and _inside(line)}
        for relative in self._listed:  # temporary files of a killed run: ours by their name
            target = self.path / relative
            for temp in target.parent.glob(f".{target.name}.*"):
                temp.unlink(missing_ok=True)
        if COMPLETE in self._listed:  # from now on, until the end, the folder is incomplete
            (self.path / COMPLETE).unlink(missing_ok=True)
        try:
            self._manifest = open(manifest, "a", encoding="utf-8")  # noqa: SIM115 (closed by finish)
        except OSError as error:
            raise InputError(f"cannot write {manifest}: {error.strerror}") from None

    def write(self, relative: str, text: str) -> None:
        """Write OUTDIR/relative (unchanged content is left as it is: a re-run is cheap)."""
        if relative not in self._listed:
            self._manifest.write(relative + "\n")
            self._manifest.flush()  # in the kernel's hands: it outlives a kill -9
            self._listed.add(relative)
        self._written.add(relative)
        target = self.path / relative
        try:
            if target.read_text(encoding="utf-8") == text:
                return
        except (OSError, ValueError):
            pass
        write_file(str(target), text, sync=relative == COMPLETE)
        if relative.startswith("results/"):
            self._results.pop(Path(relative).stem, None)

    def result(self, key: str) -> dict | None:
        """A task's result on disk, or None. A FAILED result of an earlier run is no result:
        failures are tried again, never kept."""
        if key not in self._results:
            relative = f"results/{key}.json"
            try:
                value = json.loads((self.path / relative).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                value = None
            if value is not None and value.get("status") != "SUCCEEDED" \
                    and relative not in self._written:
                value = None
            if len(self._results) > 50_000:
                self._results.clear()
            self._results[key] = value
        return self._results[key]

    def finish(self) -> None:
        """Remove what earlier runs wrote and this one did not; keep the manifest to what is
        there. Called after summary.json is written."""
        for relative in sorted(self._listed - self._written):
            (self.path / relative).unlink(missing_ok=True)
        self._manifest.close()
        write_file(str(self.path / MANIFEST), "".join(f"{r}\n" for r in sorted(self._written)))


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
