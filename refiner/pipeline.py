"""Refine a policy end to end: refine, write it back into its text, read that again, prove it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from . import keep
from .catalog import Catalog
from .finding import Unused
from .jsontext import loads
from .policy import PolicyInput, load_policy, parse_json_text
from .prove import Violation, same_json
from .refinement import DEFAULT_STRATEGY, Refinement, Refiner
from .writeback import edit_document


@dataclass
class Run:
    """A refinement, the text it was written into, and its proof.

    text is the whole input with the refinement written back (None when no statement is
    left: the policy is to be detached); refined is that text read again, which is what the
    proof is about."""

    policy: PolicyInput
    refinement: Refinement
    text: str | None
    document_text: str | None
    refined: PolicyInput | None
    violations: list[Violation]
    timings: dict[str, float] = field(default_factory=dict)
    queries: int = 0
    kept: list[dict] = field(default_factory=list)  # what keep rules kept, with the reasons
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    completed_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def detach(self) -> bool:
        return self.text is None

    @property
    def changed(self) -> bool:
        return self.text != self.policy.source.text


def refine_and_prove(policy: PolicyInput, unused: Unused, catalog: Catalog, timeout_ms: int,
                     compact: bool = False, strategy: str = DEFAULT_STRATEGY) -> Run:
    """Refine, write the result into the policy's own text, read it back and check every
    statement of what was read with the independent checker. strategy: how wildcards are
    narrowed (refinement.STRATEGIES); compact=True is the size strategy."""
    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    refinement = Refiner(unused, catalog, "size" if compact else strategy).refine_policy(policy)
    document_text = edit_document(policy.source.document_text(), refinement.pairs)
    text = refined = None
    proof_pairs: list[tuple[dict, dict | None]] = [(original, None)
                                                   for original, _ in refinement.pairs]
    violations: list[Violation] = []
    if document_text is not None:
        text = policy.source.with_document(document_text)
        refined = load_policy(parse_json_text(text, "refined policy"), "refined policy", text)
        kept = sum(new is not None for _, new in refinement.pairs)
        if len(refined.statements) != kept:  # every statement written must be one proven
            violations.append(Violation("structure", None, None, f"the written policy has "
                                        f"{len(refined.statements)} statements, not {kept}"))
        written = iter(refined.statements)
        proof_pairs = [(original, next(written, None) if new is not None else None)
                       for original, new in refinement.pairs]
    refined_at = time.perf_counter()
    checker = keep.checker(unused, catalog, timeout_ms)  # kept statements held unchanged
    violations += _outside_statements_changed(policy, refined)
    # Every statement is checked, changed or not: an unchanged one must admit nothing unused too.
    violations += [
        violation
        for index, (original, written_statement) in enumerate(proof_pairs)
        for violation in checker.check_statement(index, original, written_statement)
    ]
    proven_at = time.perf_counter()
    timings = {"refine": refined_at - started, "proof": proven_at - refined_at}
    return Run(policy, refinement, text, document_text, refined, violations, timings,
               checker.queries, unused.kept + keep.kept_statements(unused, policy.statements),
               started_at)


def refine_within_size(policy: PolicyInput, unused: Unused, catalog: Catalog, timeout_ms: int,
                       max_size: int | None = None, strategy: str = DEFAULT_STRATEGY) -> Run:
    """refine_and_prove; when the result is over max_size characters, the size strategy's
    coarser safe prefixes too, keeping the shorter (a failed proof of the coarser form is
    reported). The exact strategy never gets wildcards it did not ask for."""
    run = refine_and_prove(policy, unused, catalog, timeout_ms, strategy=strategy)
    if max_size is not None and strategy in ("words", "characters") and not run.violations \
            and run.refinement.size > max_size:
        coarser = refine_and_prove(policy, unused, catalog, timeout_ms, compact=True)
        if coarser.violations or coarser.refinement.size < run.refinement.size:
            return coarser
    return run


def _outside_statements_changed(policy: PolicyInput, refined: PolicyInput | None) -> list[Violation]:
    """Every top-level key but Statement must be read back exactly as it was (verify's own
    check), and so must the file around the document (AWS CLI wrappers)."""
    if refined is None:
        return []
    from .verification import document_changes  # verify's modules load when needed (start-up)

    changes = document_changes(policy.document, refined.document)
    if not changes and not same_json(_without_document(policy), _without_document(refined)):
        changes.append(Violation("structure", None, None, "the file around the policy changed"))
    return changes


def _without_document(policy: PolicyInput) -> object:
    """The file's value with the policy document taken out (AWS CLI wrappers); None for a
    bare document, whose text need not be read again."""
    if not policy.source.path:
        return None
    value = loads(policy.source.text, "policy")
    holder = value
    for key in policy.source.path[:-1]:
        holder = holder[key]
    holder[policy.source.path[-1]] = None
    return value
