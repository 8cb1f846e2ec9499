"""The application factory: resolved settings in, a connexion ``AsyncApp`` out.

Everything a request needs (the built spec, the registrations, the backends) is created
here, once, and reaches handlers through the lifespan state as a :class:`Runtime`; there are no
module globals.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from connexion import AsyncApp, ConnexionMiddleware
from connexion.middleware import MiddlewarePosition
from connexion.middleware.main import API
from connexion.middleware.security import SecurityMiddleware
from connexion.options import SwaggerUIOptions

from localai_runtime.access.keys import KeyRing, load_key_ring
from localai_runtime.backends import BackendRegistry
from localai_runtime.http import errors as http_errors
from localai_runtime.http import fast_routes, fast_validation, openapi31, routing
from localai_runtime.http.dispatch import HandlerMiddleware, plan_calls
from localai_runtime.http.document_views import add_document_views, swagger_ui_config
from localai_runtime.http.metrics import HTTPMetricsMiddleware
from localai_runtime.http.middleware import (
    BEARER,
    AuthMiddleware,
    BodyLimitMiddleware,
    NotImplementedMiddleware,
    credential_headers,
    secured_operations,
)
from localai_runtime.http.query_paths import QueryPathMiddleware
from localai_runtime.http.reloading import ReloadingApp
from localai_runtime.serving.registrations import Registrations, load_registrations
from localai_runtime.serving.runtime import Runtime
from localai_runtime.settings import Settings
from localai_runtime.spec.build import BuiltSpec, build_spec
from localai_runtime.spec.request_schemas import RequestSchemas

logger = logging.getLogger(__name__)

UI_PATH = "/ui"
fast_routes.install(ui_path=UI_PATH)  # before connexion builds its routers
fast_validation.install()

class RuntimeApp(AsyncApp):
    """``AsyncApp`` that also takes a ready ``Specification`` object.

    connexion's ``add_api`` only accepts a file, URL or dict and always parses it as OpenAPI
    3.0; this registers an :class:`~localai_runtime.http.openapi31.OpenAPI31Specification` with the
    app's options, as ``add_api`` would.
    """

    runtime: Runtime

    def add_specification(self, specification: openapi31.OpenAPI31Specification, *, base_path: str = "") -> None:
        middleware: ConnexionMiddleware = self.middleware
        middleware.apis.append(API(specification, base_path=base_path, name=None, **middleware.options.__dict__))


def _middlewares(settings: Settings, built: BuiltSpec, handlers: dict[str, Any], runtime: Runtime,
                 keys: KeyRing) -> list[Any]:
    implemented = set(handlers)
    implied = {name: query for document in built.documents for name, query in document.header_queries.items()}
    stack: list[Any] = [functools.partial(QueryPathMiddleware, paths=built.document["paths"],
                                          header_queries=implied, served=implemented.__contains__),
                        functools.partial(HTTPMetricsMiddleware, metrics=runtime.metrics)]
    secured = credential_headers(built.document, built.operations)
    if settings.metrics_need_key:
        secured["getMetrics"] = (BEARER,)
    for middleware in ConnexionMiddleware.default_middlewares:
        if middleware is SecurityMiddleware:
            stack.append(functools.partial(AuthMiddleware, keys=keys, secured=secured))
            stack.append(
                functools.partial(NotImplementedMiddleware, operations=built.operations, implemented=implemented)
            )
            continue
        stack.append(middleware)
        if middleware is MiddlewarePosition.BEFORE_SWAGGER.value:
            # Directly inside the exception middleware, so a 413 gets OpenAI's envelope.
            stack.insert(-1, functools.partial(BodyLimitMiddleware, max_bytes=settings.max_body_bytes))
    # Innermost: handlers are called with the validated body (see dispatch).
    stack.append(functools.partial(HandlerMiddleware, calls=plan_calls(built.document, built.operations, handlers)))
    return stack


@dataclass
class Configuration:
    """What the files on disk configure: the document, handlers, registrations and keys."""

    built: BuiltSpec
    handlers: dict[str, Any]
    schemas: RequestSchemas
    registrations: Registrations
    keys: KeyRing


def load_configuration(settings: Settings, backends: BackendRegistry, built: BuiltSpec | None = None) -> Configuration:
    """Everything read and checked; raises :class:`~localai_runtime.errors.SpecError` with every message."""
    built = built or build_spec(
        spec_path=settings.spec_path, fragments_dir=settings.fragments_dir, patches_dir=settings.patches_dir
    )
    handlers = routing.find_handlers(built.operations, settings.handler_packages)
    schemas = RequestSchemas(built)
    registrations = load_registrations(settings.configs_dir, schemas, backends)
    keys = load_key_ring(settings.keys_file, settings.api_keys, built.operations)
    return Configuration(built, handlers, schemas, registrations, keys)


def create_app(
    settings: Settings, built: BuiltSpec | None = None, backends: BackendRegistry | None = None
) -> ReloadingApp:
    backends = backends or BackendRegistry.from_entry_points()
    config = load_configuration(settings, backends, built)
    runtime = Runtime(settings=settings, spec=config.built, schemas=config.schemas,
                      registrations=config.registrations)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
        async with runtime.running():
            yield {"runtime": runtime}

    first = _assemble(settings, config, runtime, lifespan)

    def next_app() -> RuntimeApp:
        upcoming = load_configuration(settings, backends)
        app = _assemble(settings, upcoming, runtime, None)
        app.configuration = upcoming
        return app

    _log_keys(settings, config)
    return ReloadingApp(first, next_app)


def _assemble(settings: Settings, config: Configuration, runtime: Runtime, lifespan: Any) -> RuntimeApp:
    """The connexion app serving ``config`` on ``runtime`` (the first one runs its lifespan)."""
    built, handlers = config.built, config.handlers
    app = RuntimeApp(
        __name__,
        lifespan=lifespan,
        middlewares=_middlewares(settings, built, handlers, runtime, config.keys),
        resolver=routing.resolver(built.operations, handlers),
        validator_map=openapi31.validator_map(config.schemas),
        uri_parser_class=openapi31.OpenAPI31URIParser,
        strict_validation=True,  # an unknown query parameter is a 400, not silently ignored
        # connexion would serve its resolved copy, references expanded, re-serialized on the
        # event loop for every request. DocumentViews serves the document.
        swagger_ui_options=SwaggerUIOptions(swagger_ui_path=UI_PATH, serve_spec=False,
                                            swagger_ui_config=swagger_ui_config(built.documents)),
    )
    app.runtime = runtime
    for exception in http_errors.HANDLED:
        app.add_error_handler(exception, functools.partial(http_errors.error_handler, runtime))
    # connexion replaces top-level keys of the document it is given (servers, components):
    # a shallow copy keeps ours intact; it resolves references on a deep copy of its own.
    app.add_specification(openapi31.OpenAPI31Specification(dict(built.document)))
    # What /openapi.json, /anthropic/openapi.json... and /ui show: each vendor's document, which
    # operations have handlers marked on a copy (connexion routes and validates built.document).
    add_document_views(app, built.documents, handlers)
    return app


def _log_keys(settings: Settings, config: Configuration) -> None:
    if config.keys:
        secured = secured_operations(config.built.document, config.built.operations)
        logger.info("%d API keys (%s) required for %d secured operations", len(config.keys.keys),
                    ", ".join(key.name for key in config.keys.keys), len(secured))
    else:
        logger.warning(
            "no API keys configured: every operation is open to anyone who can reach %s:%s",
            settings.host, settings.port,
        )
