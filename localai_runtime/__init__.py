"""localai-runtime: an OpenAI-compatible server for local models, driven by OpenAI's own spec.

The public surface is small: :func:`create_app` builds the ASGI application from
:class:`Settings`; everything else is reached through the ``localai-runtime`` command.
"""

from __future__ import annotations

import warnings

# connexion 3.3 imports starlette's TestClient at import time, which warns without httpx2; this
# server never uses the test client, so the warning would only confuse operators.
warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated")

from localai_runtime.http.app import create_app  # noqa: E402
from localai_runtime.settings import Settings  # noqa: E402

__all__ = ["Settings", "create_app", "__version__"]
__version__ = "0.1.0"
