"""Registrations: which backend and model file serve a model name, for which operations.

A registration file in the configs directory (YAML or JSON) holds one registration, a list
of them, or several YAML documents. Each has three parts, plus two optional ones::

    registration:      {model: NAME, operations: [operationId, ...]}
    local_settings:    {backend: NAME, model_file: PATH, ...}   # checked by the backend's schema
    request_defaults:  {...}   # any request field of those operations, extensions included
    request_overrides: {...}   # forced over the request (e.g. cap max_tokens)
    policy:            {unsupported_parameters: error|drop, unknown_parameters: error|drop,
                        hosted_tools: error|drop}

Registrations are keyed by (operationId, model). Everything is checked at start-up (and by
``localai-runtime check``), each error naming the file, the registration and the JSON path.
A registration whose backend package is missing or whose model file cannot be found is kept
but unavailable: its requests answer 503 naming the model while the rest keeps working.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localai_runtime.backends import (
    Backend,
    BackendRegistry,
    BackendUnavailable,
    LocalSettings,
)
from localai_runtime.backends.abstract import COMMON_SETTINGS_SCHEMA
from localai_runtime.errors import InvalidRequestError, ModelNotFoundError, SpecError
from localai_runtime.model_packages import model_path
from localai_runtime.serving.fields import (
    HINT_FIELDS,
    SERVER_FIELDS,
    backend_operations,
    honoured,
    is_metadata,
    relay_problems,
    serves,
    set_fields,
)
from localai_runtime.serving.output_filters import PatternError, compile_filters
from localai_runtime.spec import files
from localai_runtime.spec.files import entries
from localai_runtime.spec.request_schemas import RequestSchemas
from localai_runtime.spec.schema_errors import describe
from localai_runtime.spec.schemas import SchemaCache

logger = logging.getLogger(__name__)

POLICIES = ("error", "drop")

FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["registration", "local_settings"],
    "properties": {
        "registration": {
            "type": "object",
            "additionalProperties": False,
            "required": ["model", "operations"],
            "properties": {
                "model": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"^\S+$"},
                "operations": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string"}},
                "description": {"type": "string"},
            },
        },
        "local_settings": {"type": "object"},
        "request_defaults": {"type": "object"},
        "request_overrides": {"type": "object"},
        "policy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "unsupported_parameters": {"enum": list(POLICIES)},
                "unknown_parameters": {"enum": list(POLICIES)},
                "hosted_tools": {"enum": list(POLICIES)},
            },
        },
    },
}

_SECRET_WORDS = ("key", "token", "secret", "password")


@dataclass
class Registration:
    model: str
    operations: frozenset[str]
    settings: LocalSettings
    defaults: dict[str, Any]
    overrides: dict[str, Any]
    unsupported_policy: str
    unknown_policy: str
    source: Path
    index: int
    backend: Backend | None = None
    problem: str | None = None
    """Why this registration cannot serve (missing backend package, model file...)."""
    hosted_policy: str = "error"
    """What a Responses request's hosted tools (``web_search``, ``mcp``...) get: ``drop`` (removed
    and reported) or ``error`` (a 400); ``policy.hosted_tools``, else ``unsupported_parameters``."""

    @property
    def remote(self) -> bool:
        """Its backend relays requests to another server (on the event loop, holding no model here)."""
        return self.backend is not None and self.backend.remote

    @property
    def label(self) -> str:
        return f"{self.model} ({self.source.name}#{self.index})"

    def public(self) -> dict[str, Any]:
        """What the transparency endpoint shows: no secrets, no absolute paths."""
        settings = {
            key: ("***" if any(word in key.lower() for word in _SECRET_WORDS) else value)
            for key, value in self.settings.values.items()
        }
        if self.settings.model_file is not None:
            settings["model_file"] = self.settings.model_file.name
        return {
            "model": self.model,
            "operations": sorted(self.operations),
            "source": f"{self.source.name}#{self.index}",
            "backend": self.settings.backend,
            "local_settings": settings,
            "request_defaults": self.defaults,
            "request_overrides": self.overrides,
            "policy": {"unsupported_parameters": self.unsupported_policy, "unknown_parameters": self.unknown_policy,
                       "hosted_tools": self.hosted_policy},
            "status": "unavailable" if self.problem else "available",
            "problem": self.problem.replace(f"{self.source.parent}{os.sep}", "") if self.problem else None,
        }


@dataclass
class Registrations:
    by_key: dict[tuple[str, str], Registration] = field(default_factory=dict)

    @property
    def all(self) -> list[Registration]:
        unique: dict[int, Registration] = {id(r): r for r in self.by_key.values()}
        return list(unique.values())

    def models(self) -> list[str]:
        return sorted({model for _, model in self.by_key})

    def for_model(self, model: str) -> list[Registration]:
        return [r for r in self.all if r.model == model]

    def lookup(self, operation_id: str, model: Any) -> Registration:
        """The registration serving ``model`` for ``operation_id``, or the OpenAI error why not."""
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("You must provide a model parameter", param="model",
                                      code="missing_required_parameter")
        registration = self.by_key.get((operation_id, model))
        if registration is not None:
            return registration
        serving = sorted({op for r in self.for_model(model) for op in r.operations})
        if not serving:
            raise ModelNotFoundError(model)
        raise InvalidRequestError(
            f"The model '{model}' does not serve {operation_id}; it serves: {', '.join(serving)}",
            param="model",
            code="model_not_supported",
        )


class _Loader:
    """Builds :class:`Registrations` from files, collecting every error before raising."""

    def __init__(self, schemas: RequestSchemas, backends: BackendRegistry) -> None:
        self.schemas = schemas
        self.backends = backends
        self.checker = SchemaCache()
        self.errors: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def load(self, files: Iterable[Path]) -> Registrations:
        result = Registrations()
        origin: dict[tuple[str, str], str] = {}
        for path in files:
            for index, raw in enumerate(entries(path)):
                registration = self.build(path, index, raw)
                if registration is None:
                    continue
                for operation in sorted(registration.operations):
                    key = (operation, registration.model)
                    where = f"{path}#{index} (model {registration.model})"
                    if key in origin:
                        self.error(
                            where,
                            f"model {registration.model!r} is already registered for {operation} by {origin[key]}",
                        )
                        continue
                    origin[key] = f"{path}#{index}"
                    result.by_key[key] = registration
        if self.errors:
            raise SpecError("invalid registrations:\n  " + "\n  ".join(self.errors))
        return result

    def build(self, path: Path, index: int, raw: Any) -> Registration | None:
        where = f"{path}#{index}"
        error = self.checker.first_error(FILE_SCHEMA, raw)
        if error is not None:
            self.error(where, describe(error)[0])
            return None
        model = raw["registration"]["model"]
        where = f"{path}#{index} (model {model})"
        operations = frozenset(raw["registration"]["operations"])
        ok = self.check_operations(where, operations)
        backend, settings, problem = self.settings(where, path, raw["local_settings"], operations)
        defaults = raw.get("request_defaults") or {}
        overrides = raw.get("request_overrides") or {}
        if ok:
            for section, values in (("request_defaults", defaults), ("request_overrides", overrides)):
                self.check_request_values(where, section, values, operations, backend, settings)
            sections = {"request_defaults": defaults, "request_overrides": overrides}
            for message in relay_problems(backend, settings, operations, self.schemas, sections):
                self.error(where, message)
        policy = raw.get("policy") or {}
        if settings is None:
            return None
        return Registration(
            model=model, operations=operations, settings=settings, defaults=defaults, overrides=overrides,
            unsupported_policy=policy.get("unsupported_parameters", "error"),
            unknown_policy=policy.get("unknown_parameters", "error"),
            source=path, index=index, backend=backend, problem=problem,
            hosted_policy=policy.get("hosted_tools", policy.get("unsupported_parameters", "error")),
        )

    def check_operations(self, where: str, operations: frozenset[str]) -> bool:
        ok = True
        for operation in sorted(operations):
            if operation not in self.schemas.spec.operations:
                self.error(where, f"registration.operations: unknown operationId {operation!r}")
                ok = False
            elif self.schemas.get(operation) is None:
                self.error(where, f"registration.operations: {operation} takes no JSON request body, so no model")
                ok = False
        return ok

    def settings(
        self, where: str, path: Path, values: Mapping[str, Any], operations: frozenset[str]
    ) -> tuple[Backend | None, LocalSettings | None, str | None]:
        name = values.get("backend")
        if not isinstance(name, str):
            self.error(where, "local_settings.backend: required, the name of a backend adapter")
            return None, None, None
        try:
            backend = self.backends.get(name)
        except BackendUnavailable as exc:
            logger.error("%s: %s", where, exc)
            return None, LocalSettings(name, None, dict(values)), str(exc)
        except SpecError as exc:
            self.error(where, f"local_settings.backend: {exc}")
            return None, None, None
        schema = {
            "type": "object",
            "additionalProperties": False,
            "required": COMMON_SETTINGS_SCHEMA["required"],
            "properties": {**COMMON_SETTINGS_SCHEMA["properties"], **backend.settings_schema.get("properties", {})},
        }
        error = self.checker.first_error(schema, dict(values))
        if error is not None:
            self.error(where, describe(error, "local_settings")[0])
            return None, None, None
        settings = LocalSettings(name, model_path(path, values.get("model_file")), dict(values))
        problems = backend.check(settings, backend_operations(operations))
        for operation in sorted(op for op in operations if not serves(backend, op)):
            problems.append(f"backend {name} cannot serve {operation}")
        problem = "; ".join(problems) or None
        if problem:
            logger.error("%s: %s", where, problem)
        return backend, settings, problem

    def check_request_values(
        self, where: str, section: str, values: Mapping[str, Any], operations: frozenset[str], backend: Backend | None,
        settings: LocalSettings | None = None,
    ) -> None:
        if "model" in values:
            self.error(where, f"{section}.model: the model is the registration's own name; remove it here")
        try:  # cutstrings / trimstrings are compiled as they will run, once, here
            compile_filters(values.get("x-localai-extensions") if isinstance(values, Mapping) else None)
        except PatternError as exc:
            self.error(where, f"{section}.{exc}")
        for operation in sorted(operations):
            request = self.schemas.get(operation)
            assert request is not None  # checked by check_operations
            known = {}
            for key, value in values.items():
                if key in request.fields:
                    known[key] = value
                else:
                    self.error(where, f"{section}.{key}: unknown field for {operation} (not in {request.name})")
            error = self.schemas.first_error_in_part(request, known)
            if error is not None:
                self.error(where, f"{section} for {operation}: {describe(error, section)[0]}")
            if backend is not None:  # weighed as the policy weighs a request's fields (no-ops and hints pass)
                served = honoured(backend, operation, settings)
                for name in set_fields(known, request):
                    if name not in served and name not in SERVER_FIELDS and not is_metadata(name):
                        message = f"backend {backend.name} does not honour it for {operation}"
                        if name in HINT_FIELDS:
                            logger.warning("%s: %s.%s: %s; answers list it in x-localai-dropped-fields",
                                           where, section, name, message)
                        else:
                            self.error(where, f"{section}.{name}: {message}")


def load_registrations(configs_dir: Path | None, schemas: RequestSchemas, backends: BackendRegistry) -> Registrations:
    if configs_dir is None:
        return Registrations()
    registrations = _Loader(schemas, backends).load(files.files_in(configs_dir))
    logger.info(
        "%d registrations for %d models from %s", len(registrations.all), len(registrations.models()), configs_dir
    )
    return registrations
