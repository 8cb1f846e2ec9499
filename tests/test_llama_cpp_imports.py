"""The llama-cpp backend's import graph, read from the source (imports under TYPE_CHECKING
count too): the batching engine imports nothing of the backend above it, and no module of the
backend imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKEND = "localai_runtime.backends.llama_cpp"
ENGINE = f"{BACKEND}.engine"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((REPO / BACKEND.replace(".", "/")).rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {other for other in imported(path) if other in known and other != name}
            for name, path in known.items()}


def test_the_engine_imports_nothing_of_the_backend_above_it():
    above = [f"{name} imports {other}" for name, others in graph().items() if name.startswith(ENGINE)
             for other in sorted(others) if not other.startswith(ENGINE)]
    assert not above, "\n".join(above)


def test_no_module_of_the_backend_imports_itself_back():
    edges = graph()
    cycles = []
    for start in edges:
        seen, todo = set(), list(edges[start])
        while todo:
            name = todo.pop()
            if name == start:
                cycles.append(start)
                break
            if name not in seen:
                seen.add(name)
                todo.extend(edges[name])
    assert not cycles, f"in an import cycle: {', '.join(sorted(cycles))}"
