"""What one request's grammar may cost to prepare, and the check of a JSON Schema against it.

A grammar engine expands what a request asks for: a JSON Schema's ``maxLength: 20000`` becomes
twenty thousand nested groups, a GBNF ``"a"{0,30000}`` thirty thousand rules, and llama.cpp
parses nesting recursively on the thread's stack. So every schema and grammar a request brings
is measured first, and one over a limit is a 400 naming the field and the limit, before anything
is converted or compiled. :class:`GrammarLimits` holds the limits (a registration may set its
own under ``local_settings.grammar_limits``); :func:`check_schema` measures a JSON Schema,
:mod:`~localai_runtime.tools.gbnf_limits` a GBNF text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from localai_runtime.errors import InvalidRequestError

LLAMA_CPP_MAX_REPETITION = 2000
"""llama.cpp's own ceiling for a GBNF repetition count."""


@dataclass(frozen=True)
class GrammarLimits:
    max_repetition: int = 1000
    """The largest count one bound may ask for: a schema's ``minLength``, ``maxLength``,
    ``minItems``, ``maxItems``, a ``pattern``'s ``{m,n}``, a GBNF ``{m,n}``."""
    max_depth: int = 2000
    """How deeply groups may nest (GBNF parentheses, schema objects, the groups the converter
    writes for each repetition) and how long a chain of rules each beginning with the next may
    be; llama.cpp follows both recursively."""
    max_rules: int = 10000
    """Rules and alternatives a grammar may have, counting those llama.cpp generates for groups
    and repetitions; for a schema, the sum of its bounds (each costs a rule or two)."""
    max_length: int = 1_000_000
    """Characters of GBNF text, and elements it expands to (``"abc"{5}`` is fifteen)."""
    max_step_seconds: float = 1.0
    """The most time a grammar may take over one generated token (an ambiguous grammar can
    double its work with each); the generation ends there with a 400 naming the field."""

    @classmethod
    def from_settings(cls, values: Mapping[str, Any] | None) -> GrammarLimits:
        """The limits a registration sets (``local_settings.grammar_limits``), else the defaults."""
        return cls(**dict(values or {}))


SETTINGS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "What one request's grammar (a JSON schema, tool parameters, a GBNF grammar) may cost.",
    "properties": {
        "max_repetition": {"type": "integer", "minimum": 1, "maximum": LLAMA_CPP_MAX_REPETITION,
                           "description": "Largest maxLength/maxItems/minLength/minItems or {m,n} count."},
        "max_depth": {"type": "integer", "minimum": 1, "maximum": 10000,
                      "description": "Deepest nesting of groups, and longest chain of leftmost rule references."},
        "max_rules": {"type": "integer", "minimum": 1, "maximum": 1000000,
                      "description": "Rules and alternatives of a grammar, generated ones included."},
        "max_length": {"type": "integer", "minimum": 1, "maximum": 100000000,
                       "description": "Characters of grammar text, and elements its {m} copies expand to."},
        "max_step_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 60,
                             "description": "Most seconds the grammar may take over one generated token."},
    },
}

_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems")
_NAMED = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
"""Keywords whose value maps names to schemas."""
_DATA = frozenset({"enum", "const", "default", "examples"})
"""Keywords whose value is data, not a schema."""
_QUANTIFIER = re.compile(r"\{\s*(?:(\d+)\s*)?(?:,\s*(?:(\d+)\s*)?)?\}")
"""A regex's ``{m,n}``; no two runs of space touch, so a long unclosed one is read in linear time."""


def refuse(what: str, limit: int, name: str, param: str) -> InvalidRequestError:
    """The 400 for a measure over a limit: names the field, the measure and the limit."""
    return InvalidRequestError(f"{what} exceeds this model's limit of {limit} (grammar_limits.{name})", param=param)


def check_schema(schema: Any, param: str, limits: GrammarLimits) -> None:
    """Refuse ``schema`` (a 400 naming ``param`` and the path inside it) when a bound, a
    pattern's quantifier, its nesting or the sum of its bounds is over ``limits``. Walks the
    schema without recursion: its depth is what is being measured."""
    total = 0
    todo: list[tuple[Any, str, int, bool]] = [(schema, param, 0, False)]
    while todo:
        node, where, depth, names = todo.pop()
        if depth > limits.max_depth:
            raise refuse(f"a schema nested {depth} deep", limits.max_depth, "max_depth", where)
        if isinstance(node, list):
            todo.extend((item, f"{where}[{i}]", depth + 1, False) for i, item in enumerate(node))
            continue
        if not isinstance(node, Mapping):
            continue
        if names:  # {name: schema}: every value is a schema, whatever its name
            todo.extend((value, f"{where}.{key}", depth + 1, False) for key, value in node.items())
            continue
        for key in _BOUNDS:
            value = node.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                if value > limits.max_repetition:
                    raise refuse(f"{key} {value}", limits.max_repetition, "max_repetition", f"{where}.{key}")
                total += int(value)
        if isinstance(node.get("pattern"), str):
            total += _check_pattern(node["pattern"], f"{where}.pattern", limits)
        if total > limits.max_rules:
            raise refuse(f"the schema's bounds, {total} repetitions in all,", limits.max_rules, "max_rules", param)
        todo.extend((value, f"{where}.{key}", depth + 1, key in _NAMED) for key, value in node.items()
                    if isinstance(value, Mapping | list) and key not in _DATA)


def _check_pattern(pattern: str, param: str, limits: GrammarLimits) -> int:
    """The repetitions a ``pattern``'s counted quantifiers ask for (each checked)."""
    total = 0
    for match in _QUANTIFIER.finditer(pattern):
        counts = [int(group) if len(group) <= 9 else 10**9 for group in match.groups() if group]
        count = max(counts, default=0)
        if count > limits.max_repetition:
            raise refuse(f"the quantifier {match.group(0)}", limits.max_repetition, "max_repetition", param)
        total += count
    depth = deepest = 0
    for char in re.sub(r"\\.", "", pattern):
        depth += (char == "(") - (char == ")")
        deepest = max(deepest, depth)
    if deepest > limits.max_depth:
        raise refuse(f"groups nested {deepest} deep", limits.max_depth, "max_depth", param)
    return total
