"""Exceptions as HTTP responses: OpenAI's error envelope with the error's status (on the routes
of another vendor's document, that vendor's envelope: :func:`shape_of`).

:mod:`localai_runtime.errors` holds the exception tree and the envelope itself (no web
framework, so ``spec`` and ``serving`` can raise them); this module turns any exception that
reaches connexion (ours, connexion's problems, starlette's HTTP errors, anything else as a
500) into the response, and is registered as the app's error handler.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

from localai_runtime import errors
from localai_runtime.access.keys import SCOPE_KEY
from localai_runtime.http.middleware import operation_id
from localai_runtime.spec.build import PRIMARY, BuiltSpec

if TYPE_CHECKING:
    from starlette.types import Scope

    from localai_runtime.serving.runtime import Runtime

logger = logging.getLogger(__name__)

ERROR_MEDIA_TYPE = "application/json"

# What the app registers error_handler for, most specific first.
HANDLED: tuple[type[Exception], ...] = (errors.APIError, ProblemException, HTTPException, Exception)

_PROBLEM_ERRORS: dict[int, type[errors.APIError]] = {
    400: errors.InvalidRequestError,
    401: errors.AuthenticationError,
    404: errors.NotFoundError,
    405: errors.MethodNotAllowedError,
    413: errors.PayloadTooLargeError,
    415: errors.UnsupportedMediaTypeError,
    501: errors.NotImplementedAPIError,
}

_HTTP_MESSAGES = {
    404: "Unknown request URL: {method} {path}. Please check the URL for typos.",
    405: "Method {method} is not allowed for {path}.",
}


def error_response(error: errors.APIError, shape: str = PRIMARY) -> Response:
    """The HTTP response for ``error``: the envelope of ``shape`` (OpenAI's unless another is
    named, :data:`localai_runtime.errors.ERROR_SHAPES`) with its status."""
    body, status = errors.ERROR_SHAPES[shape]
    return Response(
        content=json.dumps(body(error)),
        status_code=status(error),
        media_type=ERROR_MEDIA_TYPE,
        headers=error.headers,
    )


def shape_of(spec: BuiltSpec, scope: Scope) -> str:
    """The error envelope of a request: its operation's document's, or where no operation matched,
    that of a document whose clients send a header the request has (``anthropic-version``)."""
    op_id = operation_id(scope)
    if op_id is not None:
        document = spec.document_of(op_id)
        return document.errors if document is not None else PRIMARY
    names = {name.decode("latin-1").lower() for name, _ in scope.get("headers", ())}
    return next((document.errors for document in spec.documents
                 if document.client_header and document.client_header in names), PRIMARY)


def to_api_error(request: ConnexionRequest, exc: Exception) -> errors.APIError:
    """``exc`` as one of our errors; an unexpected exception becomes a logged 500."""
    if isinstance(exc, errors.APIError):
        return exc
    if isinstance(exc, ProblemException):
        cls = _PROBLEM_ERRORS.get(exc.status, errors.APIError)
        return cls(str(exc.detail or exc.title), headers=dict(exc.headers or {}))
    if isinstance(exc, HTTPException):
        cls = _PROBLEM_ERRORS.get(exc.status_code, errors.APIError)
        template = _HTTP_MESSAGES.get(exc.status_code, "{detail}")
        message = template.format(method=request.method, path=request.url.path, detail=exc.detail)
        return cls(message, headers=dict(exc.headers or {}))
    return errors.internal_error(exc)


def error_handler(runtime: Runtime, request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """connexion's error handler, which every error answered before a response began reaches: the
    envelope, counted in the runtime's metrics and logged (:func:`~localai_runtime.errors.log_error`)."""
    error = to_api_error(request, exc)
    runtime.count_error(error)
    key = request.scope.get("extensions", {}).get(SCOPE_KEY)
    where = operation_id(request.scope) or f"{request.method} {request.url.path}"
    errors.log_error(error, where, key=key.name if key is not None else None)
    response = error_response(error, shape_of(runtime.spec, request.scope))
    return ConnexionResponse(
        status_code=response.status_code,
        mimetype=ERROR_MEDIA_TYPE,
        body=response.body,
        headers=error.headers,
    )
