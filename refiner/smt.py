"""Export proof obligations as standalone SMT-LIB 2.6 files and re-discharge them with cvc5."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError

HEADER = """; refiner proof obligation {label}
; expected result: unsat (no string breaks the obligation)
(set-logic QF_S)
(set-info :smt-lib-version 2.6)
(set-info :status unsat)
"""


def to_smtlib(label: str, assertions: str) -> str:
    """One obligation (the checker's definitions, declarations and assertion) as a standalone
    SMT-LIB 2.6 script in the strings theory, ending in (check-sat)."""
    body = assertions.replace(")(", ")\n(")
    return HEADER.format(label=label) + body + "\n(check-sat)\n"


def write_obligations(directory: str, obligations: list[tuple[str, str]]) -> list[Path]:
    """Write (label, SMT-LIB text) pairs as numbered .smt2 files into directory."""
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create {directory}: {error.strerror}") from None
    paths = []
    for number, (label, text) in enumerate(obligations):
        path = folder / f"{number:05d}-{label}.smt2"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def cvc5_result(text: str, timeout_ms: int) -> str:
    """What cvc5 answers to an SMT-LIB script's (check-sat): sat, unsat or unknown."""
    try:
        import cvc5
    except ImportError:
        raise InputError("--solver cvc5 needs the cvc5 package: pip install cvc5") from None

    solver = cvc5.Solver()
    solver.setOption("tlimit-per", str(timeout_ms))
    parser = cvc5.InputParser(solver)
    parser.setIncrementalStringInput(cvc5.InputLanguage.SMT_LIB_2_6, "obligation")
    parser.appendIncrementalStringInput(text)
    symbols = parser.getSymbolManager()
    answers = []
    while True:
        command = parser.nextCommand()
        if command.isNull():
            break
        output = command.invoke(solver, symbols)
        if output and output.strip() in ("sat", "unsat", "unknown"):
            answers.append(output.strip())
    return answers[-1] if answers else "unknown"
