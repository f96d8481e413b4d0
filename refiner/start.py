"""The `refiner` command's entry point: the proof child starts before the command line loads."""

from __future__ import annotations

import sys

# The commands that prove: their proof child loads Z3 and the proof's modules on the other core
# while this process loads the command line, the catalog and the inputs (start-up).
PROVING_COMMANDS = ("refine", "verify")


def prepare_proof() -> None:
    """In the proof child: the solver, its context and the modules the proof runs."""
    from . import pipeline, prove, verification  # noqa: F401

    prove.load_solver().main_ctx()  # making Z3's context is a good part of a small proof's time


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    prover = None
    if argv[:1] and argv[0] in PROVING_COMMANDS and not {"-h", "--help"} & set(argv):
        from .isolate import start_prover

        prover = start_prover(prepare_proof)
    from .cli import main as run_command_line

    return run_command_line(argv, prover=prover)


if __name__ == "__main__":
    sys.exit(main())
