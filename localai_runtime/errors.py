"""Errors, and OpenAI's error envelope they carry (``APIError.body()``).

Every error the server produces reaches the client as::

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

as a plain response (:mod:`localai_runtime.http.errors`) or as the error event of a stream that
has started (:func:`stream_error_event`), and is logged once, with the operation, status, param
and code (:func:`log_error`). No web framework is imported here, so every layer,
the document's included, can raise these. The exception tree::

    APIError                       (500 api_error)
    ├── InternalError              (500: an unexpected exception, logged with its traceback)
    ├── InvalidRequestError        (400 invalid_request_error, code invalid_value unless given)
    │   ├── UnknownParameterError  (400, code unknown_parameter)
    │   ├── UnsupportedParameterError (400, code unsupported_parameter)
    │   └── ContextLengthExceededError (400, code context_length_exceeded)
    ├── AuthenticationError        (401)
    ├── NotFoundError              (404)
    │   └── ModelNotFoundError     (404, code model_not_found, param model)
    ├── MethodNotAllowedError      (405)
    ├── PayloadTooLargeError       (413)
    ├── UnsupportedMediaTypeError  (415)
    ├── ClientClosedRequest        (499: the client went away; nobody reads the answer)
    ├── RateLimitError             (429, Retry-After)
    │   └── ModelBusyError         (429: the model's queue is full; Anthropic's 529)
    ├── NotImplementedAPIError     (501)
    └── ServiceUnavailableError    (503)

Routes of another vendor's document answer in that vendor's envelope: ``ERROR_SHAPES`` maps a
shape's name to the body and the status of an error (Anthropic's
``{"type": "error", "error": {"type", "message"}, "request_id"}``, its error type chosen by the
status, a full queue as its ``overloaded_error`` 529).

``SpecError`` is separate: it is raised at start-up (and by ``localai-runtime check``) for a
bad spec, fragment, patch or registration file, and never reaches a client.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)


class SpecError(Exception):
    """A start-up problem in a file the operator controls; the message names the file."""


class APIError(Exception):
    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(APIError):
    """A request this server cannot take. Every 400 has a code: ``invalid_value`` unless the
    raiser (or a subclass) names a more precise one."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class UnknownParameterError(InvalidRequestError):
    code = "unknown_parameter"


class UnsupportedParameterError(InvalidRequestError):
    code = "unsupported_parameter"


class ContextLengthExceededError(InvalidRequestError):
    code = "context_length_exceeded"


class AuthenticationError(APIError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDeniedError(APIError):
    status = 403
    type = "invalid_request_error"
    code = "insufficient_permissions"


class NotFoundError(APIError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(
            f"The model '{model}' does not exist or is not registered on this server",
            param="model",
            **kwargs,
        )


class MethodNotAllowedError(APIError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLargeError(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaTypeError(APIError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class ClientClosedRequest(APIError):
    """The client disconnected before its answer began (while queued, or while the prompt was
    evaluated); its work was cancelled. The status is nginx's 499, for logs: nobody receives it."""

    status = 499
    type = "invalid_request_error"
    code = "client_closed_request"


class RateLimitError(APIError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ModelBusyError(RateLimitError):
    """Every instance of the model busy and its queue full (not the key over its limits)."""


class NotImplementedAPIError(APIError):
    status = 501
    type = "not_implemented_error"
    code = "not_implemented"


class ServiceUnavailableError(APIError):
    status = 503
    type = "service_unavailable_error"
    code = "service_unavailable"


_ANTHROPIC_TYPES: Mapping[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
    415: "invalid_request_error", 429: "rate_limit_error", 499: "invalid_request_error",
    504: "timeout_error", 529: "overloaded_error",
}
"""Anthropic's error type for a status (any other: ``api_error``)."""

def anthropic_status(error: APIError) -> int:
    """A busy model is Anthropic's 529 ``overloaded_error``; a key over its limit stays 429."""
    return 529 if isinstance(error, ModelBusyError) else error.status


def anthropic_body(error: APIError) -> dict[str, Any]:
    """Anthropic's error envelope; the message names the field where one is at fault."""
    message = error.message
    if error.param and error.param not in message:
        message = f"{error.param}: {message}"
    return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(anthropic_status(error), "api_error"),
                                       "message": message},
            "request_id": f"req_{uuid.uuid4().hex}"}


ERROR_SHAPES: Mapping[str, tuple[Callable[[APIError], dict[str, Any]], Callable[[APIError], int]]] = {
    "openai": (APIError.body, lambda error: error.status),
    "anthropic": (anthropic_body, anthropic_status),
}
"""An error envelope by name: the body of an error and its status."""


def stream_error_event(error: APIError) -> bytes:
    """The SSE event that reports ``error`` after a stream has started."""
    return b"data: " + json.dumps(error.body()).encode() + b"\n\n"


class InternalError(APIError):
    """A 500 for an unexpected exception, its ``__cause__``: the traceback goes to the log with
    the error's line (:func:`log_error`), never to the client."""


def internal_error(exc: BaseException) -> APIError:
    """The 500 that answers an unexpected exception."""
    error = InternalError("The server had an error while processing your request.")
    error.__cause__ = exc
    return error


def log_error(error: APIError, where: str, *, key: str | None = None, late: bool = False) -> None:
    """The one log line of an error answered to a client, so that an operator sees what clients
    were refused and what failed: at INFO for a refusal (a 4xx; a 501 asks for an operation this
    server does not have), at ERROR for a server failure (5xx), with the traceback of an
    unexpected exception. ``where``: the operationId, or the method and path when no operation
    matched; ``key``: the name of the API key used (the key itself is never logged); ``late``: the
    error ended a stream that had begun."""
    failure = error.status >= 500 and not isinstance(error, NotImplementedAPIError)
    cause = error.__cause__ if isinstance(error, InternalError) else None
    logger.log(logging.ERROR if failure else logging.INFO, "%s -> %d%s param=%s code=%s%s: %s",
               where, error.status, " (in its stream)" if late else "", error.param, error.code,
               f" key={key}" if key else "", " ".join(error.message.split())[:500], exc_info=cause)
