"""Which operations have handlers: ``localai_runtime/handlers/<tag>.py`` functions named after
operationIds.

An operation tagged ``Chat`` is handled by ``localai_runtime.handlers.chat.<operationId>`` if that async
function exists; every other operation of the patched document is routed all the same and
answers 501 (see :class:`localai_runtime.http.middleware.NotImplementedMiddleware`).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from connexion.resolver import Resolver

from localai_runtime.http.middleware import not_implemented
from localai_runtime.spec.build import Operation

logger = logging.getLogger(__name__)

HANDLERS_PACKAGE = "localai_runtime.handlers"


def module_for_tag(tag: str | None) -> str:
    return re.sub(r"[^0-9a-z]+", "_", (tag or "default").lower()).strip("_")


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None


def find_handlers(
    operations: Mapping[str, Operation], packages: Sequence[str] = (HANDLERS_PACKAGE,)
) -> dict[str, Callable[..., Any]]:
    """operationId -> handler function, for every operation that has one (first package wins)."""
    found: dict[str, Callable[..., Any]] = {}
    modules: dict[str, Any] = {}
    for op_id, operation in operations.items():
        for package in packages:
            name = f"{package}.{module_for_tag(operation.tag)}"
            if name not in modules:
                modules[name] = _import(name)
            function = getattr(modules[name], op_id, None)
            if callable(function):
                found[op_id] = function
                break
    logger.info("%d of %d operations have handlers", len(found), len(operations))
    return found


def resolver(operations: Mapping[str, Operation], handlers: Mapping[str, Callable[..., Any]]) -> Resolver:
    """A connexion resolver: the handler, or a function answering 501 for the operation."""

    def resolve(op_id: str) -> Callable[..., Any]:
        if op_id in handlers:
            return handlers[op_id]
        operation = operations[op_id]

        async def unimplemented(*args: Any, **kwargs: Any) -> None:
            raise not_implemented(operation)

        return unimplemented

    return Resolver(function_resolver=resolve)
