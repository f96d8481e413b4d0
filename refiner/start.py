"""The `refiner` command's entry point: the proof child starts before the command line loads."""

from __future__ import annotations

import os
import sys

# The commands that prove: their proof child loads Z3 and the proof's modules on the other core
# while this process loads the command line, the catalog and the inputs (start-up).
PROVING_COMMANDS = ("refine", "verify")


def prepare_proof() -> None:
    """In the proof child: the solver, its context and the modules the proof runs."""
    from . import pipeline, prove, verification  # noqa: F401

    prove.load_solver().main_ctx()  # making Z3's context is a good part of a small proof's time


def run(argv: list[str]) -> int:
    """The command line (argv without the program name), with refine's and verify's proof
    child started first."""
    prover = None
    if _proves(argv):
        from .isolate import start_prover

        prover = start_prover(prepare_proof)
    from .cli import main as run_command_line

    return run_command_line(argv, prover=prover)


def main() -> None:
    """The `refiner` command. refine and verify end without tearing their modules down (Z3's
    objects, the catalog: a good part of a small run's time); everything they write is
    written and closed by then, and what is left in standard output and error is flushed."""
    argv = sys.argv[1:]
    code = run(argv)
    if not _proves(argv):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away: as a normal exit would
            code = code or 120
    os._exit(code)


def _proves(argv: list[str]) -> bool:
    return bool(argv[:1]) and argv[0] in PROVING_COMMANDS and not {"-h", "--help"} & set(argv)


if __name__ == "__main__":
    main()
