"""Split a refined managed policy over AWS's size limit into parts that fit, proven equal to it."""

from __future__ import annotations

import copy

from .catalog import Catalog
from .jsontext import dumps
from .policy import patterns_of
from .prove import Checker, Violation
from .refinement import policy_size

DEFAULT_ATTACHMENT_QUOTA = 10  # managed policies per role or user (AWS's default quota)


def split_policy(document: dict, limit: int, catalog: Catalog, timeout_ms: int,
                 other_attached: int = 0) -> dict:
    """Parts of document, each at most limit characters (whitespace excluded), with the same
    statement keys and the Action lists of Allow statements divided among them.

    Each statement's pieces divide its Action list (checked here: joined again in order they
    are the list, and every other key is the statement's), so together they admit exactly the
    strings it admitted, and attaching every part grants what the one policy granted; the
    kernel also checks each joined statement against the original both ways. NotAction and
    Deny statements are never divided (a divided NotAction would allow more).
    other_attached: the managed policies the principal has besides this one, which count
    against the same attachment quota."""
    shell = {key: value for key, value in document.items() if key != "Statement"}
    statements = document["Statement"] if isinstance(document["Statement"], list) \
        else [document["Statement"]]
    room = limit - policy_size({**shell, "Statement": []})
    pieces: list[tuple[int, dict]] = []
    for index, statement in enumerate(statements):
        pieces += [(index, piece) for piece in _pieces(statement, room)]
    parts: list[list[tuple[int, dict]]] = []
    for index, piece in pieces:  # first fit, in statement order
        size = policy_size(piece) + 1
        for part in parts:
            # Two pieces of one statement in one part would repeat its Sid (IAM refuses that).
            if all(i != index for i, _ in part) and \
                    sum(policy_size(p) + 1 for _, p in part) + size <= room:
                part.append((index, piece))
                break
        else:
            parts.append([(index, piece)])
    documents = [{**shell, "Statement": [piece for _, piece in part]} for part in parts]
    fits = all(policy_size(d) <= limit for d in documents)
    checker = Checker(catalog, [], [], timeout_ms)
    problems = []
    for index, statement in enumerate(statements):
        own = [piece for part in documents for piece in part["Statement"]
               if piece is not None and _index_of(piece, pieces) == index]
        joined = _joined(statement, own)
        if patterns_of(joined) != patterns_of(statement) or any(
                {k: v for k, v in piece.items() if k != "Action"}
                != {k: v for k, v in statement.items() if k != "Action"} for piece in own):
            problems.append(Violation("structure", index, None, "the parts do not divide it"))
        problems += checker.check_statement(index, statement, joined)
        problems += checker.check_statement(index, joined, statement)
    return {"parts": [dumps(d, indent=2) + "\n" for d in documents], "fits": fits,
            "proven": not problems,
            "problems": [p.describe() for p in problems[:3]],
            "fitsAttachmentQuota": other_attached + len(documents) <= DEFAULT_ATTACHMENT_QUOTA}


def _pieces(statement: dict, room: int) -> list[dict]:
    """The statement whole when it fits or cannot be divided, else its Action list in runs."""
    if policy_size(statement) < room or statement.get("Effect") != "Allow" \
            or "Action" not in statement or isinstance(statement["Action"], str):
        return [statement]
    overhead = policy_size({**statement, "Action": []})
    pieces, run, size = [], [], overhead
    for entry in patterns_of(statement):
        cost = len(dumps(entry)) + 1
        if run and size + cost > room - 1:
            pieces.append(run)
            run, size = [], overhead
        run.append(entry)
        size += cost
    pieces.append(run)
    result = []
    for run in pieces:
        piece = copy.deepcopy(statement)
        piece["Action"] = run
        result.append(piece)
    return result


def _index_of(piece: dict, pieces: list[tuple[int, dict]]) -> int:
    return next(index for index, candidate in pieces if candidate is piece)


def _joined(statement: dict, pieces: list[dict]) -> dict:
    if len(pieces) == 1:
        return pieces[0]
    joined = copy.deepcopy(statement)
    joined["Action"] = [entry for piece in pieces for entry in patterns_of(piece)]
    return joined
