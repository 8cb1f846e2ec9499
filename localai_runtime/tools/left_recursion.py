"""Left recursion in the rules of a custom tool's grammar (llama.cpp's grammars cannot have it).

A rule is left-recursive when it may begin with itself: through the rules each alternative
begins with, past any that may match the empty text. :func:`refuse_left_recursion` finds both in
time linear in the size of the rules, without recursion over rule chains: which nodes may match
nothing is propagated from the leaves up, each node once (a worklist over the nodes' parents and
the references to each rule), and the rules' "may begin with" graph is searched iteratively.
"""

from __future__ import annotations

from collections.abc import Mapping

from localai_runtime.tools.patterns import GrammarConstructError, Node


def nullable_nodes(rules: Mapping[str, Node]) -> set[int]:
    """The ``id`` of each node of ``rules`` (rules' own trees, kept alive by ``rules``) that may
    match the empty text."""
    parents: dict[int, list[Node | str]] = {}
    """Node -> its parent nodes, or the rule it is the tree of."""
    references: dict[str, list[Node]] = {}
    missing: dict[int, int] = {}
    """A sequence -> how many of its items are not yet known to be nullable."""
    found: set[int] = set()
    todo: list[Node] = []
    for name, root in rules.items():
        parents.setdefault(id(root), []).append(name)
        walk = [root]
        while walk:
            node = walk.pop()
            if id(node) in missing:  # a node met twice is read once
                continue
            kind = node[0]
            children: list[Node] = list(node[1]) if kind in ("seq", "alt") else [node[1]] if kind == "rep" else []
            for child in children:
                parents.setdefault(id(child), []).append(node)
            walk.extend(children)
            if kind == "ref":
                references.setdefault(node[1], []).append(node)
            missing[id(node)] = len(children) if kind == "seq" else 1
            if kind == "lit" and not node[1] or kind == "seq" and not children or kind == "rep" and node[2] == 0:
                todo.append(node)
    done_rules: set[str] = set()
    while todo:
        node = todo.pop()
        if id(node) in found:
            continue
        found.add(id(node))
        for parent in parents.get(id(node), ()):
            if isinstance(parent, str):  # the rule is nullable: so is every reference to it
                if parent not in done_rules:
                    done_rules.add(parent)
                    todo.extend(references.get(parent, ()))
                continue
            missing[id(parent)] -= 1
            if missing[id(parent)] == 0 or parent[0] in ("alt", "rep"):
                todo.append(parent)
    return found


def _first(node: Node, nullable: set[int]) -> set[str]:
    """The rules ``node`` may begin with (groups nest at most ``MAX_NESTING`` deep)."""
    kind = node[0]
    if kind == "ref":
        return {node[1]}
    if kind == "rep":
        return _first(node[1], nullable)
    found: set[str] = set()
    for item in node[1] if kind in ("seq", "alt") else ():
        found |= _first(item, nullable)
        if kind == "seq" and id(item) not in nullable:
            break
    return found


def refuse_left_recursion(rules: Mapping[str, Node]) -> None:
    """A rule that may begin with itself (llama.cpp's grammars cannot have one) is refused, named."""
    nullable = nullable_nodes(rules)
    graph = {name: _first(node, nullable) for name, node in rules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in graph:
        todo: list[tuple[str, bool]] = [(root, False)]
        while todo:
            name, leaving = todo.pop()
            if leaving:
                state[name] = 2
                continue
            if state.get(name) == 1:
                raise GrammarConstructError(f"left recursion: the rule {name!r} may begin with itself")
            if state.get(name) == 2:
                continue
            state[name] = 1
            todo.append((name, True))
            todo.extend((child, False) for child in graph[name] if state.get(child) != 2)
