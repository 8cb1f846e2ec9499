"""Request validation without per-request set-up: connexion's request validation rebuilds, for
every request, what depends only on the operation (two URI parsers, the parameter validator, the
body definition looked up by media type three times, its nullability).

:func:`install` makes ``RequestValidationOperation`` build those once per operation (and media
type) and keep them; each request still gets its own body validator and the same checks in the
same order, so answers do not change. Written against connexion 3.3 (pinned in ``setup.cfg``).
"""

from __future__ import annotations

import logging
from typing import Any

from connexion import utils
from connexion.middleware.request_validation import RequestValidationOperation
from starlette.types import Receive, Scope, Send

logger = logging.getLogger(__name__)

_MAX_MEDIA_TYPES = 32  # the media types a client sends are its own: keep a few per operation


class _Prepared:
    def __init__(self, operation: RequestValidationOperation) -> None:
        spec = operation._operation
        self.uri_parser = spec._uri_parser_class(spec.parameters, spec.body_definition())
        self.parameters = operation._validator_map["parameter"](
            spec.parameters, uri_parser=self.uri_parser, strict_validation=operation.strict_validation,
            security_query_params=operation.security_query_params)
        self.bodies: dict[str, tuple[Any, bool, bool, Any]] = {}

    def body(self, operation: RequestValidationOperation, mime_type: str) -> tuple[Any, bool, bool, Any]:
        found = self.bodies.get(mime_type)
        if found is None:
            spec = operation._operation
            schema = spec.body_schema(mime_type)
            try:
                validator = operation._validator_map["body"][mime_type] if schema else None
            except KeyError:
                validator = None
            found = (schema, spec.request_body.get("required", False),
                     utils.is_nullable(spec.body_definition(mime_type)), validator)
            if len(self.bodies) < _MAX_MEDIA_TYPES:
                self.bodies[mime_type] = found
        return found


async def _validate(self: RequestValidationOperation, scope: Scope, receive: Receive, send: Send) -> None:
    prepared: _Prepared | None = self.__dict__.get("_localai_prepared")
    if prepared is None:
        prepared = self._localai_prepared = _Prepared(self)
    prepared.parameters.validate(scope)
    mime_type, encoding = self.extract_content_type(scope["headers"])
    self.validate_mime_type(mime_type)
    schema, required, nullable, validator_class = prepared.body(self, mime_type)
    if schema:
        if validator_class is None:
            logger.info("Skipping validation. No validator registered for content type: %s.", mime_type)
        else:
            validator = validator_class(schema=schema, required=required, nullable=nullable, encoding=encoding,
                                        strict_validation=self.strict_validation, uri_parser=prepared.uri_parser)
            receive, scope = await validator.wrap_receive(receive, scope=scope)
    await self.next_app(scope, receive, send)


def install() -> None:
    """Validate requests with per-operation set-up kept (call before serving)."""
    RequestValidationOperation.__call__ = _validate
