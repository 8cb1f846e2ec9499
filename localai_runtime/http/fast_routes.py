"""Route matching by index: starlette's ``Router`` tries its routes one by one with a regular
expression each, and connexion builds routers with a route per operation of the document, two of
them deep in every request's path, so every request would scan hundreds of patterns.

:func:`install` gives ``Router`` a lookup that tries, for a path without parameters, only the
routes that can match it (its own, and the parametrised ones whose pattern matches it, found
once and kept), in the routers' own order, so the first full match, a 405 and the fallbacks are
exactly starlette's. A path with an id in it (``/v1/responses/resp_1``) still tries the
parametrised routes in order, skipping every fixed one. When nothing matches, the path with a
slash added or removed is looked up the same way (starlette's redirect if it matches), else the
router's default app is called, as starlette does.
"""

from __future__ import annotations

from typing import Any

from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.routing import BaseRoute, Match, Route, Router, get_route_path
from starlette.types import Receive, Scope, Send

_original = Router.app
_MAX_CACHED_PATHS = 4096


class _Index:
    def __init__(self, routes: list[BaseRoute]) -> None:
        self.size = len(routes)
        self.routes = routes
        self.fixed: dict[str, list[tuple[int, BaseRoute]]] = {}
        self.patterned: list[tuple[int, BaseRoute]] = []
        for position, route in enumerate(routes):
            if isinstance(route, Route) and not route.param_convertors:
                self.fixed.setdefault(route.path, []).append((position, route))
            else:
                self.patterned.append((position, route))
        self.only_patterned = [route for _, route in self.patterned]
        self._by_path: dict[str, list[BaseRoute]] = {}

    def candidates(self, scope: Scope) -> list[BaseRoute]:
        path = get_route_path(scope)
        fixed = self.fixed.get(path)
        if fixed is None:
            return self.only_patterned
        found = self._by_path.get(path)
        if found is None:
            may_match = [(p, r) for p, r in self.patterned if r.matches(scope)[0] is not Match.NONE]
            found = [route for _, route in sorted(fixed + may_match, key=lambda pair: pair[0])]
            if len(self._by_path) < _MAX_CACHED_PATHS:
                self._by_path[path] = found
        return found


async def _indexed_app(self: Router, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        await _original(self, scope, receive, send)
        return
    index: _Index | None = getattr(self, "_localai_index", None)
    if index is None or index.size != len(self.routes) or index.routes is not self.routes:
        index = self._localai_index = _Index(self.routes)  # type: ignore[attr-defined]
    scope.setdefault("router", self)
    partial: Any = None
    partial_scope: Any = None
    for route in index.candidates(scope):
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            scope["route"] = route
            scope.update(child_scope)
            await route.handle(scope, receive, send)
            return
        if match is Match.PARTIAL and partial is None:
            partial, partial_scope = route, child_scope
    if partial is not None:
        scope["route"] = partial
        scope.update(partial_scope)
        await partial.handle(scope, receive, send)
        return
    # Nothing matched. starlette would now scan every route again with a slash added or removed
    # (a redirect if that matches), then call the default app, which is where every request to
    # connexion's Swagger UI router goes: look the other path up by index instead.
    route_path = get_route_path(scope)
    if self.redirect_slashes and route_path != "/":
        other = dict(scope)
        other["path"] = scope["path"].rstrip("/") if route_path.endswith("/") else scope["path"] + "/"
        if any(route.matches(other)[0] is not Match.NONE for route in index.candidates(other)):
            await _original(self, scope, receive, send)  # starlette's own redirect answer
            return
    await self.default(scope, receive, send)


def install(ui_path: str) -> None:
    """Route by index in every ``Router`` made from now on (call before building the app), and
    send requests outside ``ui_path`` past connexion's Swagger UI middleware directly: its router
    (a mount, an inner router, a miss, its default) only ever passes them on unchanged."""
    Router.app = _indexed_app  # type: ignore[method-assign]
    call = SwaggerUIMiddleware.__call__
    prefix = ui_path.rstrip("/")

    async def swagger_ui(self: SwaggerUIMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path != prefix and not path.startswith(prefix + "/"):
            await self.app(scope, receive, send)
            return
        await call(self, scope, receive, send)

    if not getattr(call, "_localai_bypass", False):
        swagger_ui._localai_bypass = True  # type: ignore[attr-defined]
        SwaggerUIMiddleware.__call__ = swagger_ui
