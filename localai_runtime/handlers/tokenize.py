"""Tokenize and detokenize (tag ``Tokenize``), in vLLM's shapes at vLLM's paths."""

from __future__ import annotations

from typing import Any

from connexion import context
from starlette.responses import Response

from localai_runtime.serving import operations as serving
from localai_runtime.serving import runtime


async def tokenize(body: dict[str, Any]) -> Response:
    return await serving.TOKENIZE.serve(runtime.current(), body, context.receive)


async def detokenize(body: dict[str, Any]) -> Response:
    return await serving.DETOKENIZE.serve(runtime.current(), body, context.receive)
