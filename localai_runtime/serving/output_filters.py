"""``cutstrings`` and ``trimstrings``: regular expressions the server removes from generated text.

Patterns come from clients and from registration defaults, and they run on text a client can
steer, so they run on RE2 (google-re2): matching takes time linear in the text, with no
backtracking, whatever the pattern. Every expression is compiled exactly as it will run when
the request is validated (:func:`compile_filters`), so a pattern RE2 does not accept is a 400
naming ``x-localai-extensions.cutstrings[i]`` before any generation, never a 500 after it.
Applying them costs time in proportion to the text: the server calls :meth:`OutputFilters.apply`
from a worker thread, never on the event loop.

Accepted syntax is RE2's: Perl-style classes, repetition (counts up to 1000), groups (also
named, ``(?P<name>...)``), alternation, ``^``/``$``/``\\A``/``\\z``/``\\b`` and flags such as
``(?i)``; no backreferences and no lookaround.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from localai_runtime.errors import InvalidRequestError
from localai_runtime.serving.fields import EXTENSIONS, OUTPUT_FILTERS

KEYS = OUTPUT_FILTERS

_OPTIONS = re2.Options()
_OPTIONS.max_mem = 8 << 20  # RE2 refuses a pattern whose program would need more ("pattern too large")
_OPTIONS.log_errors = False  # a client's bad pattern is its 400, not a line in the server's log


def _compile(expression: str) -> re2._Regexp:
    return re2.compile(expression, _OPTIONS)


@dataclass(frozen=True)
class OutputFilters:
    """Compiled ``cutstrings`` (every match removed) and ``trimstrings`` (a match at the start
    and one at the end removed)."""

    cut: tuple[Any, ...] = ()
    trim_start: tuple[Any, ...] = ()
    trim_end: tuple[Any, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.cut or self.trim_start)

    def apply(self, text: str) -> str:
        for pattern in self.cut:
            text = pattern.sub("", text)
        for start, end in zip(self.trim_start, self.trim_end, strict=True):
            text = end.sub("", start.sub("", text, count=1), count=1)
        return text


NONE = OutputFilters()


class PatternError(ValueError):
    """A pattern RE2 does not accept; ``param`` names it (``x-localai-extensions.cutstrings[1]``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def compile_filters(extensions: Mapping[str, Any] | None) -> OutputFilters:
    """The filters an ``x-localai-extensions`` object asks for; :class:`PatternError` names the
    first pattern that does not compile as it will run."""
    if not isinstance(extensions, Mapping):  # absent, or a type error the schema reports
        return NONE
    compiled: dict[str, list[Any]] = {"cut": [], "trim_start": [], "trim_end": []}
    plans = {"cutstrings": (("cut", "{}"),), "trimstrings": (("trim_start", r"\A(?:{})"), ("trim_end", r"(?:{})\z"))}
    for key in KEYS:
        patterns: Sequence[Any] = extensions.get(key) or ()
        if not isinstance(patterns, list | tuple):
            continue  # the schema reports it
        for index, pattern in enumerate(patterns):
            param = f"{EXTENSIONS}.{key}[{index}]"
            if not isinstance(pattern, str):
                raise PatternError(f"{param} must be a string", param)
            try:
                _compile(pattern)  # alone first: a pattern like "a)|(b" must not change the wrapper
                for target, shape in plans[key]:
                    compiled[target].append(_compile(shape.format(pattern)))
            except re2.error as exc:
                reason = exc.args[0] if exc.args else exc
                reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
                raise PatternError(f"{param}: {pattern!r} is not a regular expression RE2 accepts: {reason}",
                                   param) from exc
    return OutputFilters(tuple(compiled["cut"]), tuple(compiled["trim_start"]), tuple(compiled["trim_end"]))


def request_filters(request: Mapping[str, Any]) -> OutputFilters:
    """The filters of a merged request, a 400 naming the pattern when one is refused."""
    try:
        return compile_filters(request.get(EXTENSIONS))
    except PatternError as exc:
        raise InvalidRequestError(str(exc), param=exc.param) from exc
