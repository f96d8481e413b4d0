"""The pull-request gate: the IAM a change touches must give no principal anything new.

    python -m refiner.iac.action --base BASE [--head HEAD] [--sarif FILE] [FILE ...]

BASE is compared where HEAD left it (`git merge-base BASE HEAD`); an empty or unknown BASE is
an error (exit 2): a gate with nothing to compare with would judge nothing. Without FILE, the
files are those `git diff -z` names between the two (any byte in a name); with FILE
(pre-commit passes the staged files), those, and the files deleted since BASE. HEAD's version
of a file is read from git when --head is given, else from the working tree. Policy files,
CloudFormation templates and Terraform files are judged by the no-new-access gate
(refiner.gate): by name or, whatever the name, by content that looks like IAM; the Terraform
files of one directory are judged together (a module: resources, variables, .tfvars and
templates across files). A file that cannot be read (a symbolic link, a submodule, over the
size limit, not UTF-8, not parsed) is `unknown` at its path, never skipped or "deleted". One
SARIF log gets every verdict at its file and line, paths relative to the repository root; the
summary line says what was judged and what the gate cannot judge. Exit code: 1 when something
is rejected, else 3 when something is unknown, else 0; 2 for bad input. The GitHub Action
(action.yml) and the pre-commit hook (.pre-commit-hooks.yaml) run this."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_PROOF_FAILED, EXIT_REJECTED, InputError
from ..isolate import DEFAULT_DEADLINE_SECONDS, NoProof, deadline_after, run_isolated
from ..jsontext import MAX_INPUT_BYTES
from ..output import write_file
from ..prove import DEFAULT_TIMEOUT_MS

SUFFIXES = (".json", ".yaml", ".yml", ".template", ".tf")
TERRAFORM = (".tf", ".tf.json")
# Files Terraform reads besides .tf: variable values and templates (templatefile, file).
TERRAFORM_INPUTS = (".tfvars", ".tfvars.json", ".tftpl", ".tpl")
# Files no deployer reads as IAM by themselves (a Terraform module that reads one makes it an
# input of that module).
DOCUMENTATION = (".md", ".rst", ".txt", ".adoc", ".html")
# Text that marks a file as IAM-bearing infrastructure, whatever its name or shape: such a
# file that cannot be read is `unknown`, never skipped.
IAM_MARKERS = re.compile(r"""["']?(Statement|Resources|AssumeRolePolicyDocument|PolicyDocument)"""
                         r"""["']?\s*[:=]|AWS::IAM::|AWS::Serverless::|\baws_iam_|"""
                         r"""resource\s+"aws_|^\s*iam\s*:""", re.MULTILINE)
NO_COMMIT = re.compile(r"^0+$")
OVERRIDE = re.compile(r"(^|/)([^/]*_)?override\.tf(\.json)?$")


def git(root: str, *arguments: str) -> subprocess.CompletedProcess:
    # Paths are paths, never patterns: a file named `*.json` or `:(glob)x` is that file.
    return subprocess.run(["git", *arguments], cwd=root, capture_output=True, timeout=120,
                          check=False, env={**os.environ, "GIT_LITERAL_PATHSPECS": "1"})


def commit_of(root: str, name: str, role: str) -> str:
    """The commit a name (a branch, a tag, a sha) stands for; an empty or unknown one is an
    error: a gate with nothing to compare with would judge nothing."""
    if not name or not name.strip() or NO_COMMIT.match(name.strip()):
        raise InputError(f"no {role} commit to compare with (--{role} is empty: a push that "
                         "creates a branch, a merge queue or a manual run must name one); "
                         "nothing was judged")
    found = git(root, "rev-parse", "--verify", "--quiet", f"{name.strip()}^{{commit}}")
    if found.returncode != 0:
        raise InputError(f"--{role} {name} is not a commit of this repository (with "
                         "actions/checkout, fetch-depth: 0 fetches the base)")
    return found.stdout.decode().strip()


def merge_base(root: str, base: str, head: str) -> str:
    """Where HEAD left BASE: what a pull request is judged against (not BASE's tip, which
    may have moved on)."""
    found = git(root, "merge-base", base, head)
    if found.returncode != 0:
        raise InputError(f"{base} and {head} have no common ancestor: nothing to compare with")
    return found.stdout.decode().strip()


def changed_files(root: str, base: str, head: str | None) -> list[str]:
    """Paths changed from base to head (or the working tree), as git writes them with -z:
    any byte in a name, no quoting."""
    found = git(root, "diff", "-z", "--name-only", "--no-renames", base,
                *([head] if head else []), "--")
    if found.returncode != 0:
        raise InputError(f"git diff {base} {head or ''} failed: "
                         f"{found.stderr.decode(errors='replace').strip()}")
    return [os.fsdecode(name) for name in found.stdout.split(b"\0") if name]


@dataclass
class Version:
    """A file at a commit or in the working tree: its text, or why it cannot be read (a
    symbolic link, too large, not UTF-8); neither when it is not there."""

    text: str | None = None
    problem: str | None = None

    @property
    def present(self) -> bool:
        return self.text is not None or self.problem is not None


def _decoded(data: bytes) -> Version:
    if len(data) > MAX_INPUT_BYTES:
        return Version(problem=f"larger than {MAX_INPUT_BYTES // 2**20} MiB: not read")
    try:
        return Version(data.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        return Version(problem=f"not UTF-8 (byte {error.start}): not read")


def version_at(root: str, commit: str | None, path: str) -> Version:
    """A file's version at a commit (None: the working tree)."""
    if commit is None:
        file = Path(root) / path
        if file.is_symlink():
            return Version(problem="a symbolic link: the gate reads no file through a link")
        if not file.is_file():
            return Version()
        if file.stat().st_size > MAX_INPUT_BYTES:
            return Version(problem=f"larger than {MAX_INPUT_BYTES // 2**20} MiB: not read")
        return _decoded(file.read_bytes())
    listed = git(root, "ls-tree", "-z", commit, "--", path)
    entry = listed.stdout.split(b"\0")[0] if listed.returncode == 0 else b""
    if not entry:
        return Version()
    mode, kind, _ = entry.split(b" ", 2)
    if mode == b"120000":
        return Version(problem="a symbolic link: the gate reads no file through a link")
    if kind == b"commit":
        return Version(problem="a submodule: the gate does not read another repository")
    if kind != b"blob":
        return Version()
    size = git(root, "cat-file", "-s", f"{commit}:{path}")
    if size.returncode == 0 and int(size.stdout.strip() or 0) > MAX_INPUT_BYTES:
        return Version(problem=f"larger than {MAX_INPUT_BYTES // 2**20} MiB: not read")
    shown = git(root, "cat-file", "blob", f"{commit}:{path}")
    if shown.returncode != 0:
        return Version(problem="git cannot show it")
    return _decoded(shown.stdout)


def files_in(root: str, commit: str | None, directory: str) -> list[str]:
    """The Terraform files of one module directory at a commit (None: the working tree)."""
    if commit is None:
        folder = Path(root) / directory
        names = sorted(os.listdir(folder)) if folder.is_dir() else []
        return [f"{directory}/{n}" if directory else n for n in names
                if n.endswith(TERRAFORM) and ((folder / n).is_file() or (folder / n).is_symlink())]
    listed = git(root, "ls-tree", "-z", "--name-only", commit, "--",
                 f"{directory}/" if directory else ".")
    return sorted(name for name in (os.fsdecode(n) for n in listed.stdout.split(b"\0") if n)
                  if name.endswith(TERRAFORM))


def looks_like_iam(path: str, *versions: Version) -> bool:
    """Whether a changed path may hold IAM: by its name, its text, or because it is a link
    or a submodule (what a deployer reads through it is not in this change)."""
    return path.lower().endswith(SUFFIXES) or any(
        v.text is not None and IAM_MARKERS.search(v.text) or v.problem is not None and
        ("link" in v.problem or "submodule" in v.problem) for v in versions)


@dataclass
class Unit:
    """What is judged together: one file, or the Terraform files of one module directory
    (its resources reference each other across files)."""

    pairs: list[tuple[str, Version, Version]]  # (path, BASE, HEAD)
    module: bool = False
    inputs: list[str] = field(default_factory=list)  # Terraform inputs that changed


def units_for(root: str, base: str, head: str | None, paths: list[str]) -> list[Unit]:
    units: list[Unit] = []
    modules: dict[str, list[str]] = {}
    others = []
    for path in paths:
        directory = os.path.dirname(path)
        lower = path.lower()
        if lower.endswith(TERRAFORM) or lower.endswith(TERRAFORM_INPUTS):
            modules.setdefault(directory, []).append(path)
            continue
        others.append(path)
        if lower.endswith(DOCUMENTATION):
            continue  # no deployer reads these as IAM (a module that reads one: below)
        before, after = version_at(root, base, path), version_at(root, head, path)
        if looks_like_iam(path, before, after):
            units.append(Unit([(path, before, after)]))
    for path in others:  # a module that may read a changed file: its folder or one above
        directory = os.path.dirname(path)
        while True:
            if directory not in modules and (files_in(root, base, directory) or
                                             files_in(root, head, directory)):
                modules[directory] = []
            if not directory:
                break
            directory = os.path.dirname(directory)
    for directory, changed in sorted(modules.items()):
        names = sorted(set(files_in(root, base, directory)) | set(files_in(root, head, directory))
                       | {p for p in changed if p.lower().endswith(TERRAFORM)})
        inputs = [p for p in changed if p.lower().endswith(TERRAFORM_INPUTS)]
        if not names:
            continue  # variable files with no module beside them
        pairs = [(name, version_at(root, base, name), version_at(root, head, name))
                 for name in names]
        # Any other changed file the module names (file(), templatefile(), a path) is an input.
        texts = [v.text for _, *versions in pairs for v in versions if v.text is not None]
        inputs += [p for p in others if any(os.path.basename(p) in text for text in texts)]
        if changed or inputs:
            units.append(Unit(pairs, True, inputs))
    return units


def judge(units: list[Unit], timeout_ms: int, allow_new: bool):
    """[Unit] -> [(path, Comparison, plain)]: every file's verdicts; a file that cannot be
    read, or looks like IAM infrastructure and is not read as such, is `unknown` there."""
    from ..gate import Comparison, Verdict, compare_templates, gone_and_added
    from ..prove import Checker, Violation
    from . import Template
    from .gains import judge as judge_principals

    def unknown(comparison: Comparison, message: str, line: int = 1) -> None:
        comparison.verdicts.append(Verdict("", Violation("unknown", -1, None, message), line))

    results, read = [], []
    for unit in units:
        templates = []
        for path, before, after in unit.pairs:
            comparison = Comparison()
            results.append((path, comparison, False))
            sides = []
            for side, version in (("BASE", before), ("HEAD", after)):
                sides.append(_template(path, version, side, comparison, unknown))
            if sides[0] is None and sides[1] is None and not comparison.verdicts:
                results.pop()
                continue
            templates.append((path, comparison, *sides))
        read.append((unit, templates))
    module_holdings = {id(unit): _module_holdings(templates) if unit.module else None
                       for unit, templates in read}
    sides = [(b, h) for _, templates in read for _, _, b, h in templates]
    moves = [gone_and_added(b, h) for b, h in sides]
    position = 0
    for unit, templates in read:
        # What the module's expressions read (variables, locals), wherever it is written.
        context = [[t.context for _, _, t, _ in templates if t is not None and t.context],
                   [t.context for _, _, _, t in templates if t is not None and t.context]]
        changed = sorted(context[0]) != sorted(context[1])
        for path, comparison, before, after in templates:
            others = moves[:position] + moves[position + 1:]
            position += 1
            if before is None and after is None:
                continue
            kind = (after or before).kind
            holdings = module_holdings[id(unit)]
            held = frozenset(h.policy_id for p in holdings[1].principals.values()
                             for h in [*p.documents, p.boundary]
                             if h is not None and h.policy_id) if holdings else frozenset()
            try:
                found = compare_templates(before or Template(path, kind, "", []),
                                          after or Template(path, kind, "", []), None, None,
                                          timeout_ms, allow_new, principals=not unit.module,
                                          context_changed=changed if unit.module else None,
                                          elsewhere=([p for gone, _ in others for p in gone],
                                                     [p for _, added in others for p in added]),
                                          held_in_module=held)
            except InputError as error:
                unknown(comparison, f"{path} cannot be judged: {error}")
                continue
            comparison.verdicts += found.verdicts
            comparison.notes += found.notes
            comparison.queries += found.queries
            comparison.policies += found.policies
            comparison.principals += found.principals
            for kind_name, count in found.kinds.items():
                comparison.kinds[kind_name] = comparison.kinds.get(kind_name, 0) + count
        if not unit.module or not templates:
            continue
        for path, comparison, before, after in templates:
            if OVERRIDE.search(path) and (before is None) != (after is None) or \
                    OVERRIDE.search(path) and before is not None and before.text != after.text:
                unknown(comparison, f"{path} is a Terraform override file: it changes blocks "
                        "of other files, and the gate does not merge them")
        by_path = {path: comparison for path, comparison, _, _ in templates}
        first_path, first = templates[0][0], templates[0][1]
        for name in unit.inputs:
            unknown(first, f"{name} changed: Terraform reads it (variable values, templatefile, "
                    "file), and the gate does not")
        holdings = module_holdings[id(unit)]
        if holdings is None:
            unknown(first, f"who holds what in {os.path.dirname(first_path) or '.'} could not "
                    "be read: the principals are not judged")
            continue
        checker = Checker([], [], [], timeout_ms)
        findings, notes, judged = judge_principals(*holdings, checker, allow_new, changed)
        first.principals += judged
        first.notes += notes
        first.queries += checker.queries
        for finding in findings:
            target = by_path.get(finding.path, first)
            target.verdicts.append(Verdict(finding.principal, finding.violation, finding.line))
    return results


def _module_holdings(templates) -> tuple | None:
    """(BASE, HEAD) holdings of the files of one Terraform module, references resolved across
    them; None when they cannot be read."""
    from .holders import Holdings, read_holdings

    holdings = []
    try:
        for index in (2, 3):
            side = [entry[index] for entry in templates if entry[index] is not None]
            policies = {p.id: p for template in side for p in template.policies}
            merged = Holdings()
            for template in side:
                merged = merged.merge(read_holdings(template, policies))
            holdings.append(merged.unify())
    except Exception:  # whatever fails, the principals are unknown (the caller says so)
        return None
    return tuple(holdings)


def _template(path: str, version: Version, side: str, comparison, unknown):
    """The template a version reads as (None: absent, or no IAM in it)."""
    from . import template_from_text

    if version.problem is not None:
        unknown(comparison, f"{path} ({side}) is {version.problem}")
        return None
    if version.text is None:
        return None
    try:
        template = template_from_text(path, version.text)
    except InputError as error:
        unknown(comparison, f"{path} ({side}) cannot be read: {error}")
        return None
    if template is None and IAM_MARKERS.search(version.text):
        unknown(comparison, f"{path} ({side}) looks like IAM infrastructure but is not read as "
                "a policy, a CloudFormation template or a Terraform file")
    return template


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
    base = commit_of(root, args.base, "base")
    head = commit_of(root, args.head, "head") if args.head is not None else None
    base = merge_base(root, base, head or commit_of(root, "HEAD", "head"))
    if args.files:
        here = Path.cwd()
        paths = [os.path.relpath(here / f, root).replace(os.sep, "/") for f in args.files]
        # pre-commit passes no deleted file: a deleted Deny policy is a widening all the same.
        paths += [p for p in changed_files(root, base, head)
                  if p not in paths and not version_at(root, head, p).present]
    else:
        paths = changed_files(root, base, head)
    units = units_for(root, base, head, paths)
    deadline = deadline_after(args.deadline)
    results = run_isolated(judge, units, max(1, round(args.timeout * 1000)),
                           args.allow_new_policies, deadline=deadline)
    codes = []
    for path, comparison, plain in results:
        codes.append(comparison.exit_code())
        for verdict in comparison.verdicts:
            print(f"{path}:{verdict.line}: {labelled(verdict, plain).describe()}")
    if args.sarif:
        write_file(args.sarif, sarif_for([(str(Path(root) / p), c, plain)
                                          for p, c, plain in results],
                                         __version__, args.sarif_root or root))
    code = EXIT_REJECTED if EXIT_REJECTED in codes else \
        EXIT_PROOF_FAILED if EXIT_PROOF_FAILED in codes else EXIT_OK
    print(summary_line([c for _, c, _ in results], code), file=sys.stderr)
    return code


def summary_line(comparisons: list, code: int) -> str:
    """The verdict, what was judged (policies by kind, principals) and what the gate cannot
    judge."""
    from ..gate import SCOPE

    kinds: dict[str, int] = {}
    for comparison in comparisons:
        for kind, count in comparison.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
    verdict = {EXIT_OK: "accepted: nothing new is granted", EXIT_REJECTED: "rejected",
               EXIT_PROOF_FAILED: "unknown (not proven: see the unknown verdicts)"}[code]
    judged = ", ".join(f"{kinds.get(k, 0)} {k}" for k in ("identity", "trust", "resource")) + \
        " policies"
    principals = sum(c.principals for c in comparisons)
    return (f"refiner gate: {verdict}; judged {len(comparisons)} files: {judged} "
            f"({sum(c.policies for c in comparisons)} changed, proven), {principals} principals "
            f"(attachments, groups, boundaries); {SCOPE}")


def _failed_sarif(args, message: str) -> None:
    """A SARIF log that says the run failed, so that the upload after it does not fail too."""
    if not args.sarif:
        return
    from ..render import as_sarif

    with contextlib.suppress(InputError):
        write_file(args.sarif, as_sarif([], [], ".", __version__, failure=message))


if __name__ == "__main__":
    sys.exit(main())
