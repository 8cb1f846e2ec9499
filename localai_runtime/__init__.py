"""localai-runtime: an OpenAI-compatible server for local models, driven by OpenAI's own spec.

The public surface is small: :func:`create_app` builds the ASGI application from
:class:`Settings`; everything else is reached through the ``localai-runtime`` command.
"""

from __future__ import annotations

import warnings

# connexion 3.3 imports starlette's TestClient at import time, which warns without httpx2; this
# server never uses the test client, so the warning would only confuse operators.
warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated")

from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:
    from localai_runtime.http.app import create_app
    from localai_runtime.settings import Settings

__all__ = ["Settings", "create_app", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``create_app`` and ``Settings`` on first use: the command line starts loading preloaded
    models before it imports the application (connexion, the store...)."""
    if name == "create_app":
        from localai_runtime.http.app import create_app

        return create_app
    if name == "Settings":
        from localai_runtime.settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
