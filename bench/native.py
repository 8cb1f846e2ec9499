"""llama.cpp's native ``llama-server``, built once from the sources vendored in the llama-cpp-python
sdist of the installed version, for benchmarks to compare against.

``python bench/native.py`` builds it (about 6 minutes on 2 cores) into
``~/.cache/localai-runtime/llama-server-<version>/`` and prints the binary's path; later calls
find it there and say so.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "localai-runtime"


def _version() -> str:
    return importlib.metadata.version("llama_cpp_python")


def binary_path(version: str | None = None) -> Path:
    return CACHE / f"llama-server-{version or _version()}" / "llama-server"


def ensure_built(log=print) -> Path:
    """The path of a ``llama-server`` built from the installed version's sdist, building it first
    when the cache lacks it."""
    version = _version()
    target = binary_path(version)
    if target.exists():
        log(f"native llama-server {version}: cached at {target}")
        return target
    log(f"native llama-server {version}: building once from the llama-cpp-python sdist (about 6 minutes)")
    with tempfile.TemporaryDirectory(prefix="llama-server-build-") as work:
        work_dir = Path(work)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                        "--dest", str(work_dir), f"llama-cpp-python=={version}"], check=True)
        archive = next(work_dir.glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(work_dir, filter="data")
        source = next(work_dir.glob("llama_cpp_python-*/vendor/llama.cpp"))
        build = work_dir / "build"
        subprocess.run(["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                        "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                        "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 2)],
                       check=True, stdout=subprocess.DEVNULL)
        built = next(build.glob("**/bin/llama-server"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, target)
    log(f"native llama-server {version}: built into {target}")
    return target


if __name__ == "__main__":
    print(ensure_built(log=lambda message: print(message, file=sys.stderr)))
