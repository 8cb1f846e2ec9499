"""GBNF for tool calls: the format's frame around ``{"name", "<key>": <arguments>}``.

Each allowed tool contributes one alternative whose arguments follow that tool's ``parameters``
schema (llama-cpp-python's JSON-Schema converter), or its own grammar (a custom tool's); with
``parallel`` the frame may repeat. :func:`call_rules` builds (and checks) each tool's grammar once,
for every frame :func:`framed` puts it in. ``skip`` drops the frame's opening text already
written (the trigger, in ``auto`` mode, when the model began a call by itself and the grammar
takes over from there).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from localai_runtime.errors import InvalidRequestError
from localai_runtime.tools.formats import CallFormat
from localai_runtime.tools.gbnf_limits import check_gbnf
from localai_runtime.tools.grammar_limits import GrammarLimits, check_schema
from localai_runtime.tools.request import ToolRequest


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def prefixed(gbnf: str, prefix: str) -> str:
    """``gbnf`` with every rule renamed ``<prefix>-<name>`` (its root becomes ``<prefix>-root``),
    so several grammars can live in one."""
    names = set(re.findall(r"(?m)^([a-zA-Z][\w-]*)\s*::=", gbnf))

    def renamed(word: re.Match[str]) -> str:
        return f"{prefix}-{word.group(1)}" if word.group(1) in names else word.group(1)

    lines = []
    for line in gbnf.split("\n"):  # not splitlines(): a literal may hold U+2028, U+0085...
        if line.lstrip().startswith("#") or not line.strip():
            continue
        head, sep, body = line.partition("::=")
        if not sep:  # a rule continued on this line
            head, body = "", line
        # rule references are bare words outside string literals and character classes
        parts = re.split(r'("(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\])', body)
        for i in range(0, len(parts), 2):
            parts[i] = re.sub(r"(?<![\w-])([a-zA-Z][\w-]*)(?![\w-])", renamed, parts[i])
        lines.append(f"{prefix}-{head.strip()} ::={''.join(parts)}" if sep else "".join(parts))
    return "\n".join(lines)


def either(first: str, second: str) -> str:
    """One grammar accepting what ``first`` or ``second`` accepts (e.g. a JSON answer or calls)."""
    return f"root ::= a-root | b-root\n{prefixed(first, 'a')}\n{prefixed(second, 'b')}\n"


def _arguments_rules(schema_to_gbnf, schema: dict, prefix: str, param: str,
                     limits: GrammarLimits) -> tuple[str, str]:
    """(the rules of one tool's argument schema, renamed under ``prefix``; its root rule name);
    a schema over ``limits`` is refused before it is converted."""
    check_schema(schema, param, limits)
    try:
        gbnf = schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises assorted errors for schemas it cannot express
        raise InvalidRequestError(f"this parameters schema cannot be enforced: {exc}", param=param) from exc
    return prefixed(gbnf, prefix), f"{prefix}-root"


def call_grammar(form: CallFormat, tools: ToolRequest, schema_to_gbnf, limits: GrammarLimits, *,
                 skip: str = "") -> str:
    """The grammar of a turn of calls to ``tools.allowed``, minus the opening ``skip``."""
    return framed(form, tools, call_rules(form, tools, schema_to_gbnf, limits), skip=skip)


CallRules = tuple[str, list[str]]
"""One call (a GBNF expression: an alternative per allowed tool) and the rules it uses."""


def call_rules(form: CallFormat, tools: ToolRequest, schema_to_gbnf, limits: GrammarLimits) -> CallRules:
    """One call to any of ``tools.allowed``: each tool's arguments grammar converted and checked
    against ``limits`` once, whatever the frames (:func:`framed`) it is used in."""
    rules: list[str] = []
    alternatives: list[str] = []
    for index, name in enumerate(tools.allowed):
        tool = tools.tool(name)
        position = [t.name for t in tools.tools].index(name)
        param = tool.param or f"tools[{position}].function.parameters"
        if tool.grammar is not None:  # a custom tool's grammar, written for its arguments
            check_gbnf(tool.grammar, param, limits)
            body, root = prefixed(tool.grammar, f"t{index}"), f"t{index}-root"
        else:
            body, root = _arguments_rules(schema_to_gbnf, dict(tool.parameters), f"t{index}", param, limits)
        rules.append(body)
        alternatives.append(f"{_literal(form.call_head(name))} {root} \"}}\"")
    return f"( {' | '.join(alternatives)} )", rules


def framed(form: CallFormat, tools: ToolRequest, calls: CallRules, *, skip: str = "") -> str:
    """The grammar of a turn of ``calls`` in the format's frame, minus the opening ``skip``."""
    call, rules = calls
    opening = form.opening
    if not opening.startswith(skip):
        raise ValueError(f"{skip!r} does not open {form.name} calls")
    first = _parts(opening[len(skip):], call, form.after_call)
    parallel = tools.parallel and form.parallel
    more = f"( {_parts(form.between + form.before_call, call, form.after_call)} )*" if parallel else ""
    root = f"root ::= {first} {more} {_literal(form.after_all) if form.after_all else ''}".rstrip()
    return "\n".join([root, *rules]) + "\n"


def _parts(before: str, call: str, after: str) -> str:
    pieces: Sequence[str] = (_literal(before) if before else "", call, _literal(after) if after else "")
    return " ".join(p for p in pieces if p)
