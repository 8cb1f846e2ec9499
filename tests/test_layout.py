"""The package layout's import rules (README, "Where the code lives"), checked on the source:
the document's package imports no web framework and no serving code, serving never imports the
HTTP layer, backends import neither, the store imports none of them, the Responses API reaches
the backends only through serving, and handlers reach the engine only through serving and the
Responses API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "localai_runtime"

FORBIDDEN = {
    "localai_runtime/spec": ("connexion", "starlette", "localai_runtime.http", "localai_runtime.serving",
                             "localai_runtime.backends"),
    "localai_runtime/serving": ("connexion", "localai_runtime.http", "localai_runtime.responses"),
    "localai_runtime/backends": ("connexion", "starlette", "localai_runtime.http", "localai_runtime.serving"),
    "localai_runtime/store": ("connexion", "starlette", "localai_runtime.http", "localai_runtime.serving",
                              "localai_runtime.backends", "localai_runtime.spec", "localai_runtime.responses"),
    "localai_runtime/access": ("connexion", "starlette", "localai_runtime.http", "localai_runtime.serving",
                               "localai_runtime.backends", "localai_runtime.store"),
    "localai_runtime/observability": ("connexion", "starlette", "localai_runtime.http", "localai_runtime.serving",
                                      "localai_runtime.backends", "localai_runtime.spec", "localai_runtime.store"),
    "localai_runtime/responses": ("connexion", "localai_runtime.http", "localai_runtime.backends.llama_cpp",
                                  "localai_runtime.backends.gpt4all"),
    "localai_runtime/handlers": ("localai_runtime.backends", "localai_runtime.http", "localai_runtime.spec", "localai_runtime.store",
                 "llama_cpp", "gpt4all"),
}
ALLOWED = {
    ("localai_runtime/serving/runtime.py", "connexion"),  # a request's runtime comes from connexion's
    ("localai_runtime/serving/runtime.py", "connexion.context"),  # request context
}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_each_package_imports_only_what_the_layout_allows(folder):
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, folder
    broken = [f"{path.relative_to(REPO)} imports {name}" for path in files for name in sorted(imported(path))
              if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[folder])
              and (str(path.relative_to(REPO)), name) not in ALLOWED]
    assert not broken, "\n".join(broken)


def test_every_package_says_what_lives_there_and_modules_stay_small():
    for init in PACKAGE.rglob("__init__.py"):
        if "_bundled" in init.parts:
            continue
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(REPO)} has no docstring"
    oversized = [f"{p.relative_to(REPO)}: {n} lines" for p in PACKAGE.rglob("*.py")
                 if (n := len(p.read_text().splitlines())) > 330]
    assert not oversized, oversized
