"""Split a refined managed policy over AWS's size limit into parts that fit, proven equal to it."""

from __future__ import annotations

import copy

from .catalog import Catalog
from .jsontext import dumps
from .policy import patterns_of
from .prove import Checker
from .refine import policy_size

DEFAULT_ATTACHMENT_QUOTA = 10  # managed policies per role or user (AWS's default quota)


def split_policy(document: dict, limit: int, catalog: Catalog, timeout_ms: int,
                 other_attached: int = 0) -> dict:
    """Parts of document, each at most limit characters (whitespace excluded), with the same
    statement keys and the Action lists of Allow statements divided among them.

    Each statement's pieces, joined again, are proven to admit exactly the strings the
    statement admitted (each contains the other, over all strings), so attaching every part
    grants what the one policy granted. NotAction and Deny statements are never divided (a
    divided NotAction would allow more). other_attached: the managed policies the principal
    has besides this one, which count against the same attachment quota."""
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
            if sum(policy_size(p) + 1 for _, p in part) + size <= room:
                part.append((index, piece))
                break
        else:
            parts.append([(index, piece)])
    documents = [{**shell, "Statement": [piece for _, piece in part]} for part in parts]
    fits = all(policy_size(d) <= limit for d in documents)
    checker = Checker(catalog, [], [], timeout_ms)
    problems = []
    for index, statement in enumerate(statements):
        joined = _joined(statement, [p for i, p in pieces if i == index])
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


def _joined(statement: dict, pieces: list[dict]) -> dict:
    if len(pieces) == 1:
        return pieces[0]
    joined = copy.deepcopy(statement)
    joined["Action"] = [entry for piece in pieces for entry in patterns_of(piece)]
    return joined
