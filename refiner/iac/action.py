"""The pull-request gate: the policy files a change touches must grant nothing new.

    python -m refiner.iac.action --base BASE [--head HEAD] [--sarif FILE] [FILE ...]

Without FILE, the files are those `git diff --name-only BASE...HEAD` names (what a pull request
changes since it left BASE); with FILE (pre-commit passes the staged files), those. HEAD's
version of a file is `git show HEAD:path` when --head is given, else the working tree's;
BASE's is `git show BASE:path` (a file new in HEAD has no policy in BASE). Policy files are
plain IAM policies, CloudFormation templates (JSON, YAML) and Terraform files (.tf, .tf.json,
plans); other files are skipped. Each is judged by the no-new-access gate (refiner.gate), and
one SARIF log gets every verdict at its file and line, paths relative to the repository root.
Exit code: 1 when something is rejected, else 2 when a file could not be read, else 3 when a
proof had no answer, else 0. The GitHub Action (action.yml) and the pre-commit hook
(.pre-commit-hooks.yaml) run this."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from .. import __version__
from ..errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_PROOF_FAILED, EXIT_REJECTED, InputError
from ..isolate import DEFAULT_DEADLINE_SECONDS, NoProof, deadline_after, run_isolated
from ..jsontext import MAX_INPUT_BYTES
from ..output import write_file
from ..prove import DEFAULT_TIMEOUT_MS

SUFFIXES = (".json", ".yaml", ".yml", ".template", ".tf")


def git(root: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *arguments], cwd=root, capture_output=True, timeout=120,
                          check=False)


def changed_files(root: str, base: str, head: str) -> list[str]:
    found = git(root, "diff", "--name-only", "--no-renames", f"{base}...{head}")
    if found.returncode != 0:
        raise InputError(f"git diff {base}...{head} failed: "
                         f"{found.stderr.decode(errors='replace').strip()}")
    return [line for line in found.stdout.decode().splitlines() if line]


def version_at(root: str, commit: str, path: str) -> str | None:
    """A file's text at a commit (None when it is not there)."""
    shown = git(root, "show", f"{commit}:{path}")
    if shown.returncode != 0 or len(shown.stdout) > MAX_INPUT_BYTES:
        return None
    try:
        return shown.stdout.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def working_version(root: str, path: str) -> str | None:
    file = Path(root) / path
    if not file.is_file() or file.stat().st_size > MAX_INPUT_BYTES:
        return None
    try:
        return file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def judge(pairs: list[tuple[str, str | None, str]], timeout_ms: int, allow_new: bool):
    """[(path, BASE text or None, HEAD text)] -> [(path, Comparison or None, plain, error)];
    files that are no policy file are left out."""
    from ..gate import compare_templates
    from . import Template, template_from_text

    results = []
    for path, base_text, head_text in pairs:
        try:
            head = template_from_text(path, head_text)
            if head is None:
                continue
            base = template_from_text(path, base_text) if base_text is not None else None
            if base is None:
                base = Template(path, head.kind, "", [])
            comparison = compare_templates(base, head, None, None, timeout_ms, allow_new)
            results.append((path, comparison, head.kind == "policy", None))
        except InputError as error:
            results.append((path, None, False, str(error)))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refiner.iac.action",
                                     description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="files to judge (default: those git diff BASE...HEAD names)")
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--head", help="the commit under review (default: the working tree)")
    parser.add_argument("--allow-new-policies", action="store_true",
                        help="accept policies that HEAD adds (default: a new grant, rejected)")
    parser.add_argument("--sarif", metavar="FILE", help="write one SARIF log here")
    parser.add_argument("--sarif-root", metavar="DIR",
                        help="SARIF paths relative to DIR (default: the repository root)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_MS / 1000,
                        metavar="SECONDS", help="per proof obligation")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_SECONDS,
                        metavar="SECONDS", help="for the whole run")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except InputError as error:
        print(f"refiner gate: {error}", file=sys.stderr)
        _failed_sarif(args, str(error))
        return EXIT_BAD_INPUT
    except NoProof as error:
        print(f"refiner gate: {error}", file=sys.stderr)
        _failed_sarif(args, str(error))
        return EXIT_PROOF_FAILED


def run(args) -> int:
    from ..gate import labelled, repository_root, sarif_for

    if not (math.isfinite(args.timeout) and args.timeout > 0 and math.isfinite(args.deadline)
            and args.deadline > 0):
        raise InputError("--timeout and --deadline must be positive numbers of seconds")
    root = repository_root()
    if args.files:
        here = Path.cwd()
        paths = [os.path.relpath(here / f, root).replace(os.sep, "/") for f in args.files]
    else:
        paths = changed_files(root, args.base, args.head or "HEAD")
    pairs = []
    for path in paths:
        if not path.lower().endswith(SUFFIXES):
            continue
        head_text = version_at(root, args.head, path) if args.head else working_version(root, path)
        if head_text is None:
            continue  # deleted in HEAD: nothing granted there
        pairs.append((path, version_at(root, args.base, path), head_text))
    deadline = deadline_after(args.deadline)
    results = run_isolated(judge, pairs, max(1, round(args.timeout * 1000)),
                           args.allow_new_policies, deadline=deadline)
    codes, judged, errors = [], [], []
    for path, comparison, plain, error in results:
        if error is not None:
            errors.append(f"{path}: {error}")
            print(f"refiner gate: {error}", file=sys.stderr)
            continue
        code = comparison.exit_code()
        codes.append(code)
        judged.append((path, comparison, plain))
        for verdict in comparison.verdicts:
            print(f"{path}:{verdict.line}: {labelled(verdict, plain).describe()}")
    if args.sarif:
        log = json.loads(sarif_for([(str(Path(root) / p), c, plain) for p, c, plain in judged],
                                   __version__, args.sarif_root or root))
        if errors:
            invocation = log["runs"][0]["invocations"][0]
            invocation["executionSuccessful"] = False
            invocation["toolExecutionNotifications"] = [
                {"level": "error", "message": {"text": error}} for error in errors]
        write_file(args.sarif, json.dumps(log, indent=2) + "\n")
    code = EXIT_REJECTED if EXIT_REJECTED in codes else EXIT_BAD_INPUT if errors else \
        EXIT_PROOF_FAILED if EXIT_PROOF_FAILED in codes else EXIT_OK
    summary = {EXIT_OK: "accepted: nothing new is granted", EXIT_REJECTED: "rejected",
               EXIT_BAD_INPUT: "a file could not be read", EXIT_PROOF_FAILED: "not proven"}[code]
    print(f"refiner gate: {len(judged) + len(errors)} policy files "
          f"({sum(c.policies for _, c, _ in judged)} changed policies proven): {summary}",
          file=sys.stderr)
    return code


def _failed_sarif(args, message: str) -> None:
    """A SARIF log that says the run failed, so that the upload after it does not fail too."""
    if not args.sarif:
        return
    from ..render import as_sarif

    with contextlib.suppress(InputError):
        write_file(args.sarif, as_sarif([], [], ".", __version__, failure=message))


if __name__ == "__main__":
    sys.exit(main())
