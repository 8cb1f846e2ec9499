"""The installed package (not only a checkout) carries spec/, patches/, configs/ and its handlers."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_wheel_bundles_the_default_directories_and_declares_the_adapters(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
                   check=True, timeout=300, capture_output=True)
    wheel = next(tmp_path.glob("localai_runtime-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for directory in ("spec", "patches", "configs"):
        found = (REPO / directory).iterdir() if directory == "configs" else (REPO / directory).rglob("*")
        shipped = {str(p.relative_to(REPO / directory)) for p in found  # spec/documents/, patches/anthropic/ too
                   if p.suffix in (".yaml", ".yml", ".json")}
        assert shipped and {f"localai_runtime/_bundled/{directory}/{name}" for name in shipped} <= names
    modules = {str(p.relative_to(REPO)) for p in (REPO / "localai_runtime").rglob("*.py") if "__pycache__" not in p.parts}
    assert "localai_runtime/handlers/chat.py" in modules and "localai_runtime/backends/llama_cpp/instance.py" in modules
    assert modules <= names, sorted(modules - names)  # every module of every package is installed
    assert not {name for name in names if name.startswith("handlers/")}  # no top-level package named "handlers"
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "llama-cpp = localai_runtime.backends.llama_cpp:LlamaCppBackend" in entry_points
    assert "localai-runtime = localai_runtime.cli:main" in entry_points


def test_installed_layout_finds_the_bundled_directories(tmp_path, monkeypatch):
    import localai_runtime.settings as settings

    package = tmp_path / "site-packages" / "localai_runtime"
    (package / "_bundled" / "patches").mkdir(parents=True)
    monkeypatch.setattr(settings, "__file__", str(package / "settings.py"))
    assert settings.resource_dir("patches") == package / "_bundled" / "patches"
