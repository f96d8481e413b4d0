"""Propose the patterns that replace a wildcard: the shortest safe prefixes of a CamelCase trie."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from .patterns import Glob, word_prefixes

Prefixes = Callable[[str], list[str]]  # a name's candidate prefixes: "", "service:", ..., name


def character_prefixes(full_name: str) -> list[str]:
    """The prefixes of "service:Action" that end anywhere in the action: "", "service:", then
    one per character (GetObject -> G, Ge, Get, GetO, ...). A cut inside the service name is
    never a candidate: `s*` would reach other services."""
    service, _, action = full_name.partition(":")
    head = f"{service}:"
    return ["", head] + [head + action[:cut] for cut in range(1, len(action) + 1)]


@dataclass
class Trie:
    """The trie of a wildcard's used and unused names, cut by a prefix function.

    spelling: each node (a lower-cased prefix) in the casing of the first name that has it;
    nodes sorted, so a prefix comes before everything that extends it; unsafe: nodes with an
    unused name below, or that reach a wholly unused service or leave the original wildcard;
    used: the used actions, lower case -> catalog spelling."""

    spelling: dict[str, str]
    nodes: list[str]
    unsafe: set[str]
    used: dict[str, str]
    used_sorted: list[str]
    parents: dict[str, str | None] = field(init=False)  # each node's parent (see parent)

    def __post_init__(self):
        self.parents = _parents(self.nodes)

    def parent(self, node: str) -> str | None:
        """The longest proper prefix of node that is a node."""
        return self.parents[node]

    def used_below(self, node: str) -> list[str]:
        """The used actions (lower case) that start with node."""
        first = bisect.bisect_left(self.used_sorted, node)
        last = first
        while last < len(self.used_sorted) and self.used_sorted[last].startswith(node):
            last += 1
        return self.used_sorted[first:last]

    def frontier(self) -> list[str]:
        """The safe nodes whose parent is unsafe: the shortest safe prefixes."""
        unsafe, parents = self.unsafe, self.parents
        return [node for node in self.nodes if node not in unsafe and parents[node] in unsafe]

    def emitted_for(self, node: str) -> str:
        """What a frontier node is written as: the action when it holds one, else `Prefix*`."""
        first = bisect.bisect_left(self.used_sorted, node)
        single = first + 1 == len(self.used_sorted) or not self.used_sorted[first + 1].startswith(node)
        return self.used[self.used_sorted[first]] if single else self.spelling[node] + "*"


def _parents(nodes: list[str]) -> dict[str, str | None]:
    """Each node's longest proper prefix among the nodes (sorted): in sorted order, the nodes
    that start a node are the ones still on the stack of the nodes before it that start it
    (a string between a prefix and what it starts starts with that prefix too)."""
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for node in nodes:
        while stack and not node.startswith(stack[-1]):
            stack.pop()
        parents[node] = stack[-1] if stack else None
        stack.append(node)
    return parents


def build_trie(original: Glob, used: list[str], unused: list[str], unused_services: set[str],
               prefixes: Prefixes = word_prefixes) -> Trie:
    """The trie of used + unused names (see shortest_safe_prefixes for what safe means)."""
    spelling: dict[str, str] = {}
    for name in used + unused:
        for lower, prefix in _cut(prefixes, name):
            spelling.setdefault(lower, prefix)
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
    return Trie(spelling, nodes, unsafe, used_lower, sorted(used_lower))


_CUTS: dict[tuple[Prefixes, str], tuple[tuple[str, str], ...]] = {}
CUTS_LIMIT = 100_000  # names whose cuts are kept (a catalog has about 20,000)


def _cut(prefixes: Prefixes, name: str) -> tuple[tuple[str, str], ...]:
    """(lower case, as spelled) for each candidate prefix of a name, computed once per
    process: the same catalog names come back in every trie of a run."""
    key = (prefixes, name)
    found = _CUTS.get(key)
    if found is None:
        if len(_CUTS) >= CUTS_LIMIT:
            _CUTS.clear()
        found = _CUTS[key] = tuple((prefix.lower(), prefix) for prefix in prefixes(name))
    return found


def shortest_safe_prefixes(
    original: Glob,
    used: list[str],
    unused: list[str],
    unused_services: set[str],
    compact: bool = False,
    prefixes: Prefixes = word_prefixes,
) -> list[str]:
    """Replace a wildcard by the fewest, shortest patterns that keep every used action.

    used: catalog actions the wildcard matches that stay allowed; unused: the unused names it
    matches (with or without a catalog entry). Nodes are the word prefixes of all these names
    (prefixes=character_prefixes: every character prefix), and a node's actions are all names
    that start with its prefix as a string (so `DescribeFleet` holds `DescribeFleets` too). A
    node is safe when no unused name starts with it, it does not reach into a wholly unused
    service, and `prefix*` stays inside the original wildcard. The safe nodes whose parent
    (longest proper prefix node) is unsafe are emitted: `prefix*`, or the action itself when
    the node holds one; a used action on an unsafe node is emitted by name.

    compact (the size strategy, and --max-size): each emitted node is cut back, character by
    character, to the shortest prefix (still inside its service) that is safe by the same
    test, and always written as `prefix*`. That admits more strings but no unused action and
    nothing outside the original, so it stays sound and complete. Cut-back prefixes may cover
    one another; the refine stage drops covered entries, as it does for every statement."""
    trie = build_trie(original, used, unused, unused_services, prefixes)
    unused_sorted = sorted(name.lower() for name in unused)
    emitted = [trie.used[node] for node in trie.nodes if node in trie.unsafe and node in trie.used]
    for node in trie.frontier():
        if compact:
            emitted.append(_shortest_safe_cut(node, trie.parent(node), trie.spelling[node],
                                              original, unused_sorted))
        else:
            emitted.append(trie.emitted_for(node))
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
