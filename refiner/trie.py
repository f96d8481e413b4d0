"""Propose the patterns that replace a wildcard: the shortest safe prefixes of a CamelCase trie."""

from __future__ import annotations

import bisect

from .patterns import Glob, word_prefixes


def shortest_safe_prefixes(
    original: Glob,
    used: list[str],
    unused: list[str],
    unused_services: set[str],
    compact: bool = False,
) -> list[str]:
    """Replace a wildcard by the fewest, shortest patterns that keep every used action.

    used: catalog actions the wildcard matches that stay allowed; unused: the unused names it
    matches (with or without a catalog entry). Nodes are the word prefixes of all these names,
    and a node's actions are all names that start with its prefix as a string (so
    `DescribeFleet` holds `DescribeFleets` too). A node is safe when no unused name starts with
    it, it does not reach into a wholly unused service, and `prefix*` stays inside the original
    wildcard. The safe nodes whose parent (longest proper prefix node) is unsafe are emitted:
    `prefix*`, or the action itself when the node holds one; a used action on an unsafe node is
    emitted by name.

    compact (for policies over AWS's size limit): each emitted node is cut back, character by
    character, to the shortest prefix (still inside its service) that is safe by the same
    test, and always written as `prefix*`. That admits more strings but no unused action and
    nothing outside the original, so it stays sound and complete. Cut-back prefixes may cover
    one another; the refine stage drops covered entries, as it does for every statement."""
    spelling: dict[str, str] = {}
    for name in used + unused:
        for prefix in word_prefixes(name):
            spelling.setdefault(prefix.lower(), prefix)
    nodes = sorted(spelling)  # a prefix sorts before everything that extends it

    unsafe: set[str] = set()
    for name in unused:
        lower = name.lower()
        unsafe.update(lower[:cut] for cut in range(len(lower) + 1) if lower[:cut] in spelling)
    for node in nodes:
        if node in unsafe:
            continue
        head = node.split(":", 1)[0] + ":" if ":" in node else None
        reaches_unused_service = head is None or head[:-1] in unused_services
        if reaches_unused_service or not original.covers_prefix(node):
            unsafe.add(node)

    used_lower = {name.lower(): name for name in used}
    used_sorted = sorted(used_lower)
    unused_sorted = sorted(name.lower() for name in unused)
    emitted: list[str] = []
    for node in nodes:
        if node in unsafe:
            if node in used_lower:
                emitted.append(used_lower[node])
            continue
        parent = _parent(node, spelling)
        if parent not in unsafe:
            continue
        if compact:
            emitted.append(_shortest_safe_cut(node, parent, spelling[node], original,
                                              unused_sorted))
            continue
        first = bisect.bisect_left(used_sorted, node)
        single = first + 1 == len(used_sorted) or not used_sorted[first + 1].startswith(node)
        emitted.append(used_lower[used_sorted[first]] if single else spelling[node] + "*")
    return sorted(set(emitted), key=lambda text: (text.lower(), text))


def _shortest_safe_cut(node: str, parent: str, spelled: str, original: Glob,
                       unused_sorted: list[str]) -> str:
    """The shortest cut of a safe node, longer than its parent and than its service head,
    under which no unused name lies and which stays inside the original, as `cut*`."""
    start = max(len(parent) + 1, node.index(":") + 1)
    for cut in range(start, len(node) + 1):
        prefix = node[:cut]
        at = bisect.bisect_left(unused_sorted, prefix)
        no_unused_below = at == len(unused_sorted) or not unused_sorted[at].startswith(prefix)
        if no_unused_below and original.covers_prefix(prefix):
            return spelled[:cut] + "*"
    return spelled + "*"


def _parent(node: str, nodes: dict[str, str]) -> str | None:
    for cut in range(len(node) - 1, -1, -1):
        if node[:cut] in nodes:
            return node[:cut]
    return None
