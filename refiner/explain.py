"""Explain a proven refinement: the CamelCase trie of each narrowed wildcard, as text, SVG or HTML.

For each wildcard of an Allow statement that the refinement replaced, the trie of the names it
matches (the used catalog actions and the unused names, cut at CamelCase words, as the words
strategy cuts them) is drawn from the node all names share: unsafe nodes (an unused action
below, or outside the wildcard) in one colour, safe ones in another, the entries the proven
refinement emitted outlined, unused actions marked. Below an emitted prefix only its children
are drawn, with a count of what lies below them, and a long run of safe leaves among siblings
is collapsed into one node with a count. The text form is a rich Tree; the SVG is laid out and
drawn by Graphviz's dot (the `graphviz` package and program: `pip install 'iam-refiner[explain]'`
and e.g. `apt-get install graphviz`); the HTML page holds the SVG and the diff."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field

from .catalog import Catalog
from .errors import InputError
from .finding import Unused
from .patterns import glob, parse
from .pipeline import Run
from .policy import patterns_of
from .refinement import Refiner
from .render import as_diff
from .trie import Trie, build_trie

FORMATS = ("text", "svg", "html")
LONGEST_SAFE_RUN = 4  # a longer run of safe leaves among siblings is collapsed ...
KEPT_OF_A_RUN = 2  # ... after its first few
SAFE, SAFE_LINE = "#c8f0d2", "#1a7f37"
UNSAFE, UNSAFE_LINE = "#ffcfcc", "#cf222e"
UNUSED, UNUSED_TEXT = "#a40e26", "#ffffff"
OUTLINE = "#0a3069"  # emitted entries


@dataclass
class Node:
    """A drawn node: a trie prefix in catalog casing, what it adds to its parent, whether it is
    safe, the entry emitted for it (outlined), whether an unused or used action ends here, and
    how many used actions below it are not drawn. A collapsed run has no prefix."""

    prefix: str
    segment: str
    safe: bool
    emitted: str | None = None
    unused: bool = False
    used: bool = False
    hidden: int = 0
    collapsed: int = 0  # the number of sibling leaves this node stands for
    children: list[Node] = field(default_factory=list)


@dataclass
class Explanation:
    """One wildcard: the statements that hold it, its trie, and the entries emitted for it."""

    pattern: str
    statements: list[int]
    sid: str | None
    root: Node
    emitted: list[str]
    used: int
    unused: int


def explain(run: Run, unused: Unused, catalog: Catalog, pattern: str | None = None) -> list[Explanation]:
    """The tries of the wildcards a proven run replaced (with pattern: of that wildcard, even
    if it was kept; an InputError when no Allow statement has it)."""
    refiner = Refiner(unused, catalog)
    found: dict[str, Explanation] = {}
    for index, (original, refined) in enumerate(run.refinement.pairs):
        if original.get("Effect") != "Allow" or "Action" not in original:
            continue
        before = patterns_of(original)
        after = patterns_of(refined) if refined is not None else []
        kept = {entry.lower() for entry in after}
        new = {entry.lower(): entry for entry in after if entry.lower() not in
               {text.lower() for text in before}}
        for text in before:
            lower = text.lower()
            wanted = lower == pattern.lower() if pattern is not None else lower not in kept
            if not wanted or not parse(text).has_wildcard:
                continue
            if lower in found:
                found[lower].statements.append(index)
                continue
            used, unused_names = refiner.matched(text)
            trie = build_trie(glob(text), used, unused_names, unused.services)
            root, emitted = _drawn(trie, unused_names, new)
            sid = original.get("Sid") if isinstance(original.get("Sid"), str) else None
            found[lower] = Explanation(text, [index], sid, root, emitted, len(used),
                                       len(unused_names))
    if pattern is not None and not found:
        raise InputError(f"--pattern {pattern!r} is not a wildcard of an Allow statement's Action")
    return list(found.values())


def _drawn(trie: Trie, unused_names: list[str], new: dict[str, str]) -> tuple[Node, list[str]]:
    """The drawn tree from the node every name shares, and the emitted entries it shows."""
    names = list(trie.used) + [name.lower() for name in unused_names]
    top = max((node for node in trie.nodes if all(name.startswith(node) for name in names)),
              key=len, default="")
    unused_lower = {name.lower() for name in unused_names}
    children: dict[str, list[str]] = {}
    for node in trie.nodes:
        if node.startswith(top) and node != top:
            children.setdefault(trie.parent(node), []).append(node)
    emitted: list[str] = []

    def grow(key: str, parent: str | None) -> Node:
        safe = key not in trie.unsafe
        frontier = safe and parent in trie.unsafe
        if frontier:  # a shortest safe prefix: `Prefix*`, or the one used action it holds
            entry = new.get(trie.emitted_for(key).lower())
        else:  # a used action on an unsafe node is emitted by name
            entry = new.get(key) if not safe and key in trie.used else None
        if entry is not None:
            emitted.append(entry)
        spelled = trie.spelling[key]
        node = Node(spelled, spelled[len(parent):] if parent is not None else spelled, safe,
                    entry, key in unused_lower, key in trie.used)
        one_action = frontier and entry is not None and not entry.endswith("*")
        if not safe or parent is None or (frontier and not one_action):
            node.children = _collapsed([grow(child, key) for child in children.get(key, [])])
        elif not one_action:
            node.hidden = len(trie.used_below(key)) - node.used
        return node

    return grow(top, None), emitted


def _collapsed(nodes: list[Node]) -> list[Node]:
    """Siblings with each run of more than LONGEST_SAFE_RUN safe leaves (not emitted) cut to
    its first KEPT_OF_A_RUN and one node that counts the rest."""
    result: list[Node] = []
    run: list[Node] = []

    def flush() -> None:
        if len(run) > LONGEST_SAFE_RUN:
            rest = run[KEPT_OF_A_RUN:]
            result.extend(run[:KEPT_OF_A_RUN])
            result.append(Node("", "", True, hidden=sum(n.used + n.hidden for n in rest),
                               collapsed=len(rest)))
        else:
            result.extend(run)
        run.clear()

    for node in nodes:
        if node.safe and node.emitted is None and not node.children:
            run.append(node)
        else:
            flush()
            result.append(node)
    flush()
    return result


# --- text ------------------------------------------------------------------------------------

def as_text(explanations: list[Explanation], color: bool = False, width: int = 120) -> str:
    """Each trie as a rich Tree; every node says in words what its colour says."""
    from rich.console import Console
    from rich.text import Text
    from rich.tree import Tree

    console = Console(file=io.StringIO(), width=width, force_terminal=color,
                      color_system="standard" if color else None, highlight=False)
    console.print(Text("safe: no unused action below · unsafe: an unused action below, or "
                       "outside the wildcard · ✗ unused action · ▣ emitted (proven)"))
    for explanation in explanations:
        tree = Tree(Text(_title(explanation), style="bold"))
        _add_text(tree, explanation.root, Text)
        console.print(tree)
    return console.file.getvalue()


def _title(explanation: Explanation, emitted: bool = True) -> str:
    where = ", ".join(str(i) for i in explanation.statements)
    sid = f" ({explanation.sid})" if explanation.sid else ""
    title = (f"{explanation.pattern}: statement {where}{sid}; {explanation.used} used and "
             f"{explanation.unused} unused actions")
    return title + (f"; emitted: {', '.join(explanation.emitted) or 'nothing'}" if emitted else "")


def _add_text(tree, node: Node, Text) -> None:
    branch = tree.add(_text_label(node, Text))
    for child in node.children:
        _add_text(branch, child, Text)


def _text_label(node: Node, Text):
    if node.collapsed:
        return Text(f"… {node.collapsed} more safe ({node.hidden} actions)", style="green")
    tags = ["safe" if node.safe else "unsafe"]
    if node.unused:
        tags.append("unused")
    if node.emitted is not None:
        tags.append("emitted")
    if node.hidden:
        tags.append(f"+{node.hidden} below")
    mark = "▣ " if node.emitted is not None else "✗ " if node.unused else ""
    style = ("green" if node.safe else "red") + (" bold" if node.emitted is not None else "")
    return Text(f"{mark}{node.emitted or node.prefix}  [{', '.join(tags)}]", style=style)


# --- SVG and HTML ----------------------------------------------------------------------------

def as_svg(explanations: list[Explanation]) -> str:
    """The tries as one SVG picture, laid out by Graphviz's dot, one cluster per wildcard."""
    try:
        import graphviz
    except ImportError:
        raise InputError("explain --format svg|html needs the graphviz package: pip install "
                         "'iam-refiner[explain]' (and Graphviz's dot, e.g. apt-get install "
                         "graphviz)") from None
    graph = graphviz.Digraph("refiner", graph_attr={
        "rankdir": "LR", "ordering": "out", "nodesep": "0.06", "ranksep": "0.25", "fontname": "Helvetica",
        "fontsize": "12", "bgcolor": "white"}, node_attr={
        "shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10",
        "height": "0.22", "margin": "0.06,0.02", "penwidth": "1"},
        edge_attr={"arrowsize": "0.4", "color": "#57606a"})
    _legend(graph)
    counter = iter(range(1_000_000))
    for number, explanation in enumerate(explanations):
        with graph.subgraph(name=f"cluster_{number}") as cluster:
            cluster.attr(label=_title(explanation, emitted=False), labeljust="l",
                         color="#d0d7de")
            _add_svg(cluster, explanation.root, None, counter)
    try:
        return graph.pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        raise InputError("explain --format svg|html needs Graphviz's dot program (e.g. apt-get "
                         "install graphviz)") from None


def _legend(graph) -> None:
    with graph.subgraph(name="cluster_legend") as legend:
        legend.attr(label="legend", labeljust="l", color="#d0d7de")
        legend.node("legend_safe", "safe: no unused action below", fillcolor=SAFE, color=SAFE_LINE)
        legend.node("legend_unsafe", "unsafe: an unused action below", fillcolor=UNSAFE,
                    color=UNSAFE_LINE)
        legend.node("legend_unused", "✗ unused action", fillcolor=UNUSED, fontcolor=UNUSED_TEXT,
                    color=UNUSED)
        legend.node("legend_emitted", "emitted, proven", fillcolor=SAFE, color=OUTLINE,
                    penwidth="3")
        legend.edges([("legend_safe", "legend_unsafe"), ("legend_unsafe", "legend_unused"),
                      ("legend_unused", "legend_emitted")])
        legend.edge_attr.update(style="invis")


def _add_svg(graph, node: Node, parent: str | None, counter) -> None:
    name = f"n{next(counter)}"
    attributes = {"fillcolor": SAFE if node.safe else UNSAFE,
                  "color": SAFE_LINE if node.safe else UNSAFE_LINE}
    if node.collapsed:
        label = f"… {node.collapsed} more ({node.hidden} actions)"
        attributes["style"] = "rounded,filled,dashed"
    else:
        label = node.segment or node.prefix
        if node.unused:
            label = f"✗ {label}"
            attributes.update(fillcolor=UNUSED, fontcolor=UNUSED_TEXT, color=UNUSED)
        if node.emitted is not None:
            label = f"{label}\n{node.emitted}" if node.emitted != label else label
            attributes.update(color=OUTLINE, penwidth="3")
        if node.hidden:
            label += f" (+{node.hidden})"
    graph.node(name, label, **attributes)
    if parent is not None:
        graph.edge(parent, name)
    for child in reversed(node.children):  # dot's LR layout stacks siblings bottom to top
        _add_svg(graph, child, name, counter)


PAGE_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1b1f24; background: #fff; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
.trie svg { max-width: 100%; height: auto; }
pre { background: #f6f8fa; padding: .6em; overflow-x: auto; }
.add { color: #1a7f37; } .del { color: #cf222e; }
"""


def as_html(explanations: list[Explanation], run: Run, name: str, catalog: Catalog) -> str:
    """A self-contained page: the picture, then the diff of the proven refinement."""
    svg = as_svg(explanations)
    svg = svg[svg.index("<svg"):]  # inline: no XML declaration or doctype
    diff = as_diff(run, name)
    lines = []
    for line in diff.splitlines():
        kind = ("add" if line.startswith("+") and not line.startswith("+++") else
                "del" if line.startswith("-") and not line.startswith("---") else "")
        lines.append(f"<span class='{kind}'>{_e(line)}</span>" if kind else _e(line))
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>refiner explain: {_e(name)}</title><style>{PAGE_STYLE}</style></head><body>"
            f"<h1>refiner explain: {_e(name)}</h1>"
            f"<p>Catalog {_e(catalog.version)}. {len(explanations)} wildcard(s) drawn; the "
            f"refinement was proven by the kernel ({run.queries} proof queries).</p>"
            f"<div class='trie'>{svg}</div><h2>Diff</h2>"
            f"<pre id='diff'>{chr(10).join(lines) or '(nothing changes)'}</pre></body></html>\n")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
