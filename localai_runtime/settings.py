"""Server-wide settings, resolved once from the command line and the environment.

Per-model settings live with the registrations in ``configs/``; this is only what the whole
server shares. The defaults point at the project's ``spec/``, ``patches/`` and ``configs/``
directories, found beside the package in a checkout and inside it once installed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
API_KEYS_ENV = "LOCALAI_API_KEYS"
DATA_DIR_ENV = "LOCALAI_DATA_DIR"


def resource_dir(name: str) -> Path:
    """``spec``, ``patches`` or ``configs``: the checkout's folder, else the installed copy."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / name
    if checkout.is_dir():
        return checkout
    return package / "_bundled" / name


def keys_from_env() -> list[str]:
    return [key.strip() for key in os.environ.get(API_KEYS_ENV, "").split(",") if key.strip()]


def default_data_dir() -> Path:
    """``$LOCALAI_DATA_DIR``, else the user's data directory (``$XDG_DATA_HOME``, ``~/.local/share``)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "localai-runtime"


@dataclass(frozen=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    spec_path: Path | None = None
    fragments_dir: Path = field(default_factory=lambda: resource_dir("spec"))
    patches_dir: Path | None = field(default_factory=lambda: resource_dir("patches"))
    configs_dir: Path | None = field(default_factory=lambda: resource_dir("configs"))
    api_keys: tuple[str, ...] = ()
    keys_file: Path | None = None
    """Scoped keys (YAML; see ``localai_runtime.access.keys``), beside the unrestricted ``api_keys``."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_loaded_models: int | None = None
    """Registrations with a loaded model at most (None: no cap); see ``serving.lifecycle``."""
    queue_size: int = 16
    """Requests that may wait for a busy model before the next one answers 429."""
    handler_packages: tuple[str, ...] = ("localai_runtime.handlers",)
    """Packages searched, in order, for ``<tag>.<operationId>`` handler functions."""
    store: bool = True
    """Keep responses and conversations (off: ``store``, chains and conversations are refused)."""
    data_dir: Path = field(default_factory=default_data_dir)
    """Where the store's SQLite database lives (unless ``database_url`` names another)."""
    database_url: str | None = None
    retention_days: float | None = None
    """Stored responses and conversations older than this are deleted (None: kept)."""
    watch: bool = False
    """Reload when the configs, patches or keys file change (``serve`` turns it on)."""
    reload_on_sighup: bool = False
    """Reload on SIGHUP, with or without ``watch`` (``serve`` turns it on)."""
    watch_polling: bool = False
    """Watch by polling (for file systems without change events)."""
    metrics: bool = True
    """Keep Prometheus metrics (``GET /metrics``); off, the endpoint answers 404."""
    metrics_need_key: bool = False
    """``GET /metrics`` needs an API key like the OpenAI operations (open by default)."""
    freeze_startup_objects: bool = False
    """Start with the cyclic garbage collector off and, once ready, move every object alive to
    its permanent generation (``gc.freeze``) and turn it on: the parsed document and the routes
    are never traversed again, so a full collection no longer stalls the event loop walking them,
    and start-up runs no collections; the cyclic garbage start-up leaves (argparse's and the
    imports') is frozen with the rest. On for ``serve``, which owns its process; off for servers
    embedded in another process."""
