"""localai-runtime: an OpenAI-compatible server for local models, driven by OpenAI's own spec.

The public surface is small: :func:`create_app` builds the ASGI application from
:class:`Settings`; everything else is reached through the ``localai-runtime`` command.
"""

from __future__ import annotations

from localai_runtime.app import create_app
from localai_runtime.settings import Settings

__all__ = ["Settings", "create_app", "__version__"]
__version__ = "0.1.0"
