"""The package layout, checked on the source: what each package may import (an allow-list, which
also writes README's "Where the code lives" table), docstrings, module and function sizes.

    python tests/test_layout.py --write    # rewrite README's table from MAY_IMPORT
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "localai_runtime"
README = REPO / "README.md"

# The third-party packages whose use is part of the layout: the web framework, the engines, the
# database, the metrics client, the server. Other libraries (yaml, jsonschema...) are free to use.
GUARDED = ("connexion", "starlette", "uvicorn", "llama_cpp", "gpt4all", "sqlalchemy", "prometheus_client")

# Each part of localai_runtime (a package, or a module at the top) -> what it may import besides
# itself: parts and modules of localai_runtime ("serving" is the package and everything in it,
# "serving.runtime" one module, "backends.__init__" the names the package itself exports), then
# GUARDED packages the same way. Only the HTTP layer uses the web framework, except where noted.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "errors": (),
    "settings": (),
    "spec": ("errors",),
    "tools": ("errors",),
    "store": ("sqlalchemy",),
    "observability": ("prometheus_client",),
    "access": ("errors", "spec"),
    "demo_model": ("spec",),
    "model_packages": ("demo_model", "errors", "spec"),
    "backends": ("errors", "model_packages", "spec", "tools", "llama_cpp", "gpt4all"),
    # starlette's response classes are what the operations return; a request's runtime comes
    # from connexion's request context (serving/runtime.py).
    "serving": ("access", "backends", "errors", "model_packages", "observability", "settings", "spec", "store",
                "tools", "starlette.responses", "connexion.context"),
    "responses": ("backends.__init__", "errors", "serving", "store", "tools", "starlette.responses"),
    "messages": ("backends.__init__", "errors", "serving", "tools", "starlette.responses"),
    # Handlers keep connexion's signatures: the request context in, a starlette response out.
    "handlers": ("errors", "messages", "observability.metrics", "responses", "serving.operations", "serving.runtime",
                 "connexion.context", "starlette.responses"),
    "http": ("access", "backends.__init__", "errors", "observability", "serving", "settings", "spec",
             "connexion", "starlette"),
    "cli": ("access", "backends", "demo_model", "errors", "http", "settings", "spec", "store", "uvicorn"),
    "__init__": ("http.app", "settings"),
}

TABLE_START = "<!-- layout table: written by `python tests/test_layout.py --write` from MAY_IMPORT -->"
TABLE_END = "<!-- end of layout table -->"


def part_of(path: Path) -> str:
    """The part of localai_runtime a source file belongs to: its package, or its module name."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _module(dotted: str) -> str:
    """``localai_runtime.X.Y.Z`` as the module it names, relative to the package: the longest
    prefix that is a module or package on disk (``backends.Piece`` is ``backends.__init__``)."""
    parts = dotted.split(".")[1:]
    for end in range(len(parts), 0, -1):
        base = PACKAGE.joinpath(*parts[:end])
        if base.with_suffix(".py").is_file():
            return ".".join(parts[:end])
        if base.is_dir():
            return ".".join(parts[:end]) + ".__init__"
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """What ``path`` imports that the layout governs: localai_runtime modules (as :func:`_module`
    names them) and GUARDED packages (dotted as written, ``from a import b`` as ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        top = name.split(".")[0]
        if top == "localai_runtime" and name != "localai_runtime":
            found.add(_module(name))
        elif top in GUARDED:
            found.add(name)
    return found


def allowed(name: str, entries: tuple[str, ...]) -> bool:
    return any(name == entry or (not entry.endswith(".__init__") and name.startswith(entry + "."))
               for entry in entries)


def sources() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_bundled" not in path.parts:
            found.setdefault(part_of(path), []).append(path)
    return found


def test_every_part_of_the_package_has_a_row():
    assert set(sources()) == set(MAY_IMPORT)


@pytest.mark.parametrize("part", sorted(MAY_IMPORT))
def test_each_part_imports_only_what_the_layout_allows(part):
    entries = (part, *MAY_IMPORT[part])
    broken = [f"{path.relative_to(REPO)} imports {name}" for path in sources()[part]
              for name in sorted(imports(path)) if not allowed(name, entries)]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("part", sorted(MAY_IMPORT))
def test_the_allow_list_names_only_what_is_imported(part):
    """An entry nothing uses any more is removed, so that the README says what is true."""
    used = set().union(*(imports(path) for path in sources()[part]))
    unused = [entry for entry in MAY_IMPORT[part] if not any(allowed(name, (entry,)) for name in used)]
    assert not unused, f"{part}: nothing imports {unused}; remove them from MAY_IMPORT"


def _summary(path: Path) -> str:
    """The docstring's first paragraph, on one line, in Markdown."""
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return re.sub(r"``([^`]+)``", r"`\1`", " ".join(docstring.split("\n\n")[0].split()))


def table() -> str:
    rows = ["| package | what lives there | may import |", "|---|---|---|"]
    for part in sorted(MAY_IMPORT, key=lambda name: (not (PACKAGE / name).is_dir(), name)):
        is_package = (PACKAGE / part).is_dir()
        where = f"`localai_runtime/{part}/`" if is_package else f"`localai_runtime/{part}.py`"
        source = PACKAGE / part / "__init__.py" if is_package else PACKAGE / f"{part}.py"
        ours = [entry for entry in MAY_IMPORT[part] if entry.split(".")[0] not in GUARDED]
        theirs = [entry for entry in MAY_IMPORT[part] if entry.split(".")[0] in GUARDED]
        may = "; ".join(", ".join(f"`{entry}`" for entry in group) for group in (ours, theirs) if group)
        rows.append(f"| {where} | {_summary(source)} | {may or 'nothing'} |")
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    return f"{text[:start]}\n{table()}\n{text[end:]}"


def test_the_readme_table_is_the_allow_list():
    text = README.read_text()
    assert readme_with_table(text) == text, "README's layout table is stale: run python tests/test_layout.py --write"


def test_every_package_says_what_lives_there_and_modules_stay_small():
    for init in PACKAGE.rglob("__init__.py"):
        if "_bundled" in init.parts:
            continue
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(REPO)} has no docstring"
    oversized = [f"{p.relative_to(REPO)}: {n} lines" for p in PACKAGE.rglob("*.py")
                 if (n := len(p.read_text().splitlines())) > 330]
    assert not oversized, oversized


# A function or method (its def line to its last line, docstring included) stays within this many
# lines: long enough for a dispatch table or a streaming loop with its error handling, short
# enough that a function does one thing (nearly all are far shorter).
FUNCTION_LINES = 50

# The functions longer than FUNCTION_LINES today, with their length: this list may only shrink
# (a function split below the limit leaves it; a new long function does not join it).
LONG_FUNCTIONS = {
    # Writes the demo GGUF's metadata and tensors in order, one writer call per field.
    "localai_runtime/demo_model.py:write_demo_model": 62,
    # Opens an upstream connection: the request, retries on a reused connection, the status.
    "localai_runtime/backends/openai_upstream/client.py:open": 61,
}


def functions() -> dict[str, int]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                key = f"{path.relative_to(REPO)}:{node.name}"
                found[key] = max(found.get(key, 0), node.end_lineno - node.lineno + 1)
    return found


def test_functions_stay_short():
    long = {name: lines for name, lines in functions().items() if lines > FUNCTION_LINES}
    grown = {name: lines for name, lines in long.items() if lines > LONG_FUNCTIONS.get(name, FUNCTION_LINES)}
    assert not grown, f"over {FUNCTION_LINES} lines (or longer than listed in LONG_FUNCTIONS): {grown}"


def test_the_list_of_long_functions_only_shrinks():
    current = functions()
    shorter = {name: current.get(name) for name, lines in LONG_FUNCTIONS.items()
               if current.get(name, 0) < lines}
    assert not shorter, f"shorter (or gone) now; lower or remove them in LONG_FUNCTIONS: {shorter}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    README.write_text(readme_with_table(README.read_text()))
