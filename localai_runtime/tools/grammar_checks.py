"""Every grammar one request brings, measured against its registration's limits before it waits.

The serving layer calls :func:`check_request_grammars` (in a worker thread) once the request is parsed (its tools, its
answer format), before it takes a queue place or a model instance: an over-limit schema or GBNF
is a 400 at once, even while every instance is busy with a long generation. The backend then
builds what was measured (a converted schema's GBNF is measured again there, as llama.cpp will
read it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from localai_runtime.tools.gbnf_limits import check_gbnf
from localai_runtime.tools.grammar_limits import GrammarLimits, check_schema
from localai_runtime.tools.request import Tool, ToolRequest
from localai_runtime.tools.response_format import JSON_SCHEMA, ResponseFormat

GRAMMAR_PARAM = "x-localai-extensions.grammar"


def tool_grammars(tools: ToolRequest) -> Iterator[tuple[Tool, str]]:
    """Each tool a call may use (those a call grammar is built from), and the request field its
    grammar comes from: its parameters schema, or a custom tool's grammar definition."""
    if not tools.calls:
        return
    names = [tool.name for tool in tools.tools]
    for name in tools.allowed:
        tool = tools.tool(name)
        yield tool, tool.param or f"tools[{names.index(name)}].function.parameters"


def has_grammars(tools: ToolRequest, response_format: ResponseFormat, extensions: Mapping[str, Any]) -> bool:
    """Whether the request brings anything :func:`check_request_grammars` measures."""
    return tools.calls or response_format.type == JSON_SCHEMA or isinstance(extensions.get("grammar"), str)


def check_request_grammars(limits: GrammarLimits, tools: ToolRequest, response_format: ResponseFormat,
                           extensions: Mapping[str, Any]) -> None:
    """A 400 naming the field and the limit for the first grammar input over ``limits``: a tool's
    parameters or a custom tool's translated grammar, a JSON ``response_format`` (or
    ``text.format``) schema, the GBNF of ``x-localai-extensions.grammar``."""
    for tool, param in tool_grammars(tools):
        if tool.grammar is not None:  # a custom tool's grammar, as translated to GBNF
            check_gbnf(tool.grammar, param, limits)
        else:
            check_schema(dict(tool.parameters), param, limits)
    if response_format.type == JSON_SCHEMA:
        check_schema({} if response_format.schema is None else response_format.schema, response_format.schema_param,
                     limits)
    grammar = extensions.get("grammar")
    if isinstance(grammar, str):
        check_gbnf(grammar, GRAMMAR_PARAM, limits)
