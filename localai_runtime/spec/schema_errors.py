"""Which schema failure to report, and how: the field at fault, the reason, and a code.

jsonschema's ``best_match`` stops at a ``oneOf``/``anyOf`` whenever two of its branches fail
alike, which OpenAI's document makes the rule (a tool is one of a dozen tool types, a message one
of six roles): the client is told its whole object "is not valid under any of the given schemas".
:func:`best_error` goes on down, into the branch the instance meant: one that its discriminator
does not refuse (a ``type`` or ``role`` held to a ``const`` or an ``enum``, the choice's OpenAPI
``discriminator``, or the JSON type itself) and that declares the most of the properties it
sends; that branch's own failure is the one to report (``tools[0].name`` is missing). When every
branch refuses the discriminator, the failure is that property, with every value some branch
takes. Branches equally likely whose failures differ leave the choice itself as the failure.

:func:`describe` then words it the way OpenAI's API does (``Missing required parameter:
'tools[0].strict'.``) and :func:`error_code` gives the ``code`` that goes with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from jsonschema import ValidationError
from jsonschema.exceptions import relevance

from localai_runtime.errors import InvalidRequestError

_CHOICES = frozenset({"oneOf", "anyOf"})
_VALUE_CHECKS = frozenset({"const", "enum"})
_MAX_DEPTH = 32  # nested choices followed (each is a level of the instance or of a reference)

_CODES = {
    "required": "missing_required_parameter",
    "type": "invalid_type",
    "enum": "invalid_value",
    "const": "invalid_value",
    "additionalProperties": "unknown_parameter",
    "unevaluatedProperties": "unknown_parameter",
    "maxLength": "string_above_max_length",
    "minLength": "string_below_min_length",
    "maxItems": "array_above_max_length",
    "minItems": "array_below_min_length",
    "maxProperties": "object_above_max_properties",
    "minProperties": "object_below_min_properties",
}
"""The ``code`` of a failure by its keyword; anything else is ``invalid_value``."""

_BOUNDS = {"minimum": "below_min_value", "exclusiveMinimum": "below_min_value",
           "maximum": "above_max_value", "exclusiveMaximum": "above_max_value"}


def _value(error: ValidationError) -> Any:
    """The failing keyword's value in the schema (jsonschema types it as possibly unset)."""
    return cast(Any, error.validator_value)


def best_error(errors: Iterable[ValidationError], document: Any = None) -> ValidationError | None:
    """The failure to report among ``errors`` (those of one instance against one schema);
    ``document`` is what the schema's local ``$ref`` objects point into."""
    best = max(errors, key=relevance, default=None)
    return None if best is None else _Chooser(document).verdict(best, 0).best


@dataclass(frozen=True)
class _Verdict:
    """What one branch of a choice (or a whole choice) says: the failure to report, whether the
    instance refused it by a discriminator, and how many of the instance's properties it names."""

    best: ValidationError
    refused: bool = False
    evidence: int = 0


class _Chooser:
    def __init__(self, document: Any) -> None:
        self.document = document

    def verdict(self, error: ValidationError, depth: int) -> _Verdict:
        """``error`` itself, or for a choice the failure of the branch the instance meant."""
        if error.validator not in _CHOICES or not error.context or depth > _MAX_DEPTH:
            return _Verdict(error)
        branches: dict[Any, list[ValidationError]] = {}
        for failure in error.context:
            branches.setdefault(failure.relative_schema_path[0], []).append(failure)
        keys = _discriminators(error)
        verdicts = {index: self._branch(error, index, failures, keys, depth) for index, failures in branches.items()}
        is_object = isinstance(error.instance, Mapping)

        def rank(index: Any) -> tuple[bool, int, int]:
            found = verdicts[index]
            meant = not found.refused and (found.evidence > 0 or not is_object)
            return meant, found.evidence, -len(branches[index]) if meant else 0

        top = max(rank(index) for index in branches)
        chosen = [verdicts[index] for index in branches if rank(index) == top]
        deepest = max(len(found.best.absolute_path) for found in chosen)  # of equals, the one that got furthest
        chosen = [found for found in chosen if len(found.best.absolute_path) == deepest]
        if all(found.refused for found in chosen) and chosen[0].best.validator in _VALUE_CHECKS:
            # A discriminator no branch takes: say every value some branch does.
            at = chosen[0].best.absolute_path
            chosen = [found for found in verdicts.values() if found.refused and found.best.absolute_path == at
                      and found.best.validator in _VALUE_CHECKS]
        best = chosen[0].best if len(chosen) == 1 else _merged(error, [found.best for found in chosen])
        return _Verdict(best, all(found.refused for found in chosen), max(found.evidence for found in chosen))

    def _branch(self, error: ValidationError, index: Any, failures: Sequence[ValidationError], keys: set[str],
                depth: int) -> _Verdict:
        schema = _value(error)[index] if isinstance(index, int) else {}
        evidence = self._evidence(error.instance, schema)
        refusal = next((failure for failure in failures if _refuses(failure, keys)), None)
        if refusal is not None:
            return _Verdict(refusal, True, evidence)
        found = self.verdict(max(failures, key=relevance), depth + 1)
        only = failures[0] if len(failures) == 1 and failures[0].validator in _CHOICES else None
        path = list(only.relative_path) if only is not None else None
        if path == []:  # the branch is itself a choice: what the instance meant there
            return _Verdict(found.best, found.refused, max(evidence, found.evidence))
        if path is not None and len(path) == 1 and isinstance(path[0], int):  # an array of items all refused
            return _Verdict(found.best, found.refused, evidence)
        return _Verdict(found.best, False, evidence)

    def _evidence(self, instance: Any, schema: Any) -> int:
        """How many of the instance's properties ``schema`` declares (through ``allOf``)."""
        if not isinstance(instance, Mapping):
            return 0
        declared: set[str] = set()
        pending, seen = [schema], 0
        while pending and seen < _MAX_DEPTH:
            node = self._resolved(pending.pop())
            seen += 1
            if isinstance(node, Mapping):
                declared.update(node.get("properties") or {})
                pending.extend(node.get("allOf") or [])
        return sum(1 for name in instance if name in declared)

    def _resolved(self, node: Any) -> Any:
        ref = node.get("$ref") if isinstance(node, Mapping) else None
        if self.document is None or not (isinstance(ref, str) and ref.startswith("#/")):
            return node
        found: Any = self.document
        for part in ref[2:].split("/"):
            found = found.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(found, Mapping) else None
        return found


def _discriminators(error: ValidationError) -> set[str]:
    """The properties that tell a choice's branches apart: its OpenAPI ``discriminator``, and
    those that some branch holds to a single value which the instance does not have."""
    keys = set()
    found = error.schema.get("discriminator") if isinstance(error.schema, Mapping) else None
    if isinstance(found, Mapping) and isinstance(found.get("propertyName"), str):
        keys.add(found["propertyName"])
    for failure in error.context:
        path = failure.relative_path
        if len(path) == 1 and _one_value(failure):
            keys.add(str(path[0]))
    return keys


def _one_value(failure: ValidationError) -> bool:
    return failure.validator == "const" or (failure.validator == "enum" and len(_value(failure) or ()) == 1)


def _refuses(failure: ValidationError, keys: set[str]) -> bool:
    """Whether a branch's failure shows the instance is not of that branch: its JSON type or its
    value refused, or a discriminator (``keys``, or a property held to one value) refused or
    missing."""
    path = failure.relative_path
    if not path:
        if failure.validator in (*_VALUE_CHECKS, "type"):
            return True
        if failure.validator == "required" and isinstance(failure.schema, Mapping):
            properties = failure.schema.get("properties") or {}
            return any(name in keys or _holds_a_value(properties.get(name)) for name in _missing(failure))
        return False
    if len(path) != 1 or failure.validator not in _VALUE_CHECKS:
        return False
    return str(path[0]) in keys or _one_value(failure)


def _holds_a_value(schema: Any) -> bool:
    return isinstance(schema, Mapping) and ("const" in schema or len(schema.get("enum") or ()) == 1)


def _missing(error: ValidationError) -> list[str]:
    required = cast(Iterable[str], _value(error))
    instance = error.instance
    return [name for name in required if isinstance(instance, Mapping) and name not in instance]


def _merged(error: ValidationError, failures: Sequence[ValidationError]) -> ValidationError:
    """One failure for the failures of branches the instance could equally have meant, where
    they are about one field: every value or type any of them accepts; else the choice itself."""
    paths = {tuple(failure.absolute_path) for failure in failures}
    kinds = {str(failure.validator) for failure in failures}
    if len(paths) != 1 or not (kinds <= {*_VALUE_CHECKS, "type"} or kinds == {"required"}):
        return error
    if kinds == {"required"}:
        missing = {tuple(_missing(failure)[:1]) for failure in failures}
        return failures[0] if len(missing) == 1 else error
    values: list[Any] = []
    types: list[str] = []
    for failure in failures:
        if failure.validator == "const":
            values.append(_value(failure))
        elif failure.validator == "enum":
            values.extend(_value(failure))
        elif failure.validator == "type":
            kind = _value(failure)
            types.extend([kind] if isinstance(kind, str) else kind)
    instance, path = failures[0].instance, list(paths.pop())
    if values:
        unique = list({repr(value): value for value in values}.values())
        return ValidationError(f"{instance!r} is not one of {unique!r}", validator="enum", validator_value=unique,
                               instance=instance, path=path)
    if types:
        distinct = list(dict.fromkeys(types))
        return ValidationError(f"{instance!r} is not of type {', '.join(map(repr, distinct))}", validator="type",
                               validator_value=distinct, instance=instance, path=path)
    return error


def format_path(parts: Iterable[Any], prefix: str = "") -> str:
    """``("messages", 0, "role")`` -> ``messages[0].role``."""
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def field_path(error: ValidationError) -> list[Any]:
    """The path of the field at fault: a missing or unknown property is named, not its object."""
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, Mapping):
        missing = _missing(error)
        if missing:
            path.append(missing[0])
    if (error.validator == "additionalProperties" and isinstance(error.instance, Mapping)
            and isinstance(error.schema, Mapping)):
        allowed = set(error.schema.get("properties") or {})
        extra = next((name for name in error.instance if name not in allowed), None)
        if extra is not None:
            path.append(extra)
    return path


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


_TYPE_NAMES = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "a boolean", "null": "null"}


def _json_type(value: Any) -> str:
    for python, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                         (list, "an array"), (Mapping, "an object"), (type(None), "null")):
        if isinstance(value, python):
            return name
    return type(value).__name__  # a value JSON has not (a YAML date in a registration file)


def _reason(error: ValidationError, param: str | None) -> str:
    """The reason, in OpenAI's words where it has some; jsonschema's otherwise."""
    where = f"'{param}'" if param else "the request body"
    if error.validator == "required" and param:
        return f"Missing required parameter: '{param}'."
    if error.validator == "additionalProperties" and param:
        return f"Unknown parameter: '{param}'."
    if error.validator == "type":
        kinds = _value(error) if isinstance(_value(error), list) else [_value(error)]
        expected = " or ".join(_TYPE_NAMES.get(kind, str(kind)) for kind in kinds)
        got = _json_type(error.instance)
        return f"Invalid type for {where}: expected {expected}, but got {got} instead."
    if error.validator in _VALUE_CHECKS:
        values = [_value(error)] if error.validator == "const" else list(_value(error))
        supported = _short(", ".join(repr(value) for value in values))
        return f"Invalid value for {where}: {_short(repr(error.instance), 100)}. Supported values are: {supported}."
    if error.validator in _CHOICES:
        return f"Invalid value for {where}: it matches none of the {len(_value(error))} accepted forms."
    return f"Invalid value for {where}: {_short(error.message)}"


def describe(error: ValidationError, prefix: str = "") -> tuple[str, str | None]:
    """A message naming the field and the reason, and the field's path (``None`` for the whole
    body); ``prefix`` is put before the path (a registration's section)."""
    param = format_path(field_path(error), prefix) or None
    return _reason(error, param), param


def error_code(error: ValidationError) -> str:
    """OpenAI's ``code`` for the failure (``missing_required_parameter``, ``invalid_type``...)."""
    bound = _BOUNDS.get(str(error.validator))
    if bound is not None:
        return ("integer_" if isinstance(error.instance, int) else "decimal_") + bound
    if error.validator == "minItems" and error.instance == []:
        return "empty_array"
    return _CODES.get(str(error.validator), "invalid_value")


def request_error(error: ValidationError, note: str = "") -> InvalidRequestError:
    """The 400 for a request that fails its schema: the field, the reason (``note`` after it)
    and the code."""
    message, param = describe(error)
    return InvalidRequestError(message + note, param=param, code=error_code(error))
