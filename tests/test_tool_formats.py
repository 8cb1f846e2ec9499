"""The tool-call formats as data, on their own: each format's written calls are read back by the
streaming scanner whatever the piece boundaries, each format's call grammar is valid GBNF for
llama.cpp, templates are recognised by their markers, and requests are normalised and checked.
"""

from __future__ import annotations

import json

import llama_cpp
import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf

from localai_runtime.errors import InvalidRequestError, UnsupportedParameterError
from localai_runtime.tools.formats import FORMATS, GENERIC, recognise
from localai_runtime.tools.grammar import call_grammar
from localai_runtime.tools.grammar_limits import GrammarLimits
from localai_runtime.tools.parsing import CallScanner
from localai_runtime.tools.request import modern_messages, tool_request

CALLS = [("get_weather", '{"city": "Pa\\"ris }", "days": [1, {"x": "]"}]}'), ("add", '{"a": 1, "b": 2}')]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "add", "parameters": {
             "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}]


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_written_calls_are_read_back_in_any_pieces(name, size):
    form = FORMATS[name]
    text = form.write(CALLS)
    scanner = CallScanner(form)
    deltas = [d for i in range(0, len(text), size) for d in scanner.feed(text[i:i + size])]
    assert [(c.name, c.arguments) for c in scanner.calls] == CALLS and scanner.complete
    names = [(d.index, d.name) for d in deltas if d.name is not None]
    assert names == [(0, "get_weather"), (1, "add")]  # each name once, in order
    for index, (_, arguments) in enumerate(CALLS):
        assert "".join(d.arguments for d in deltas if d.index == index) == arguments
        json.loads(arguments)


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "add"}}])
def test_every_format_has_a_valid_call_grammar(name, choice):
    form = FORMATS[name]
    tools = tool_request({"messages": [], "tools": TOOLS, "tool_choice": choice})
    for skip in ("", form.trigger):
        grammar = call_grammar(form, tools, json_schema_to_gbnf, GrammarLimits(), skip=skip)
        assert llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) is not None
        assert ("get_weather" in grammar) is (choice == "required")  # a named choice allows that name only


@pytest.mark.parametrize(("template", "expected"), [
    ("{% for m in messages %}<tool_call>{{ m.content }}</tool_call>{% endfor %}", "hermes"),
    ("[AVAILABLE_TOOLS]{{ tools }}[/AVAILABLE_TOOLS][TOOL_CALLS]", "mistral"),
    ("<|start_header_id|>ipython<|end_header_id|><|python_tag|>", "llama3"),
    ("<start_of_turn>user\n{{ content }}<end_of_turn>", "generic"),
])
def test_formats_are_recognised_from_the_template(template, expected):
    assert recognise(template).name == expected
    assert GENERIC.parallel is False and FORMATS["hermes"].parallel is True


def test_requests_are_normalised():
    legacy = tool_request({"messages": [], "functions": [TOOLS[1]["function"]], "function_call": {"name": "add"}})
    assert (legacy.mode, legacy.allowed, legacy.legacy, legacy.parallel) == ("required", ("add",), True, False)
    allowed = tool_request({"messages": [], "tools": TOOLS, "tool_choice": {
        "type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {
            "name": "add"}}]}}})
    assert (allowed.mode, allowed.allowed) == ("auto", ("add",))
    none = tool_request({"messages": [], "tools": TOOLS, "tool_choice": "none", "parallel_tool_calls": False})
    assert not none.calls and none.tools == ()
    with pytest.raises(UnsupportedParameterError) as custom:
        tool_request({"messages": [], "tools": [{"type": "custom", "custom": {"name": "x"}}]})
    assert custom.value.param == "tools[0].type"
    with pytest.raises(InvalidRequestError) as both:
        tool_request({"messages": [], "tools": TOOLS, "functions": [TOOLS[0]["function"]]})
    assert both.value.param == "functions"


def test_legacy_messages_become_tool_calls_and_results():
    messages = modern_messages([
        {"role": "user", "content": "1+2?"},
        {"role": "assistant", "content": None, "function_call": {"name": "add", "arguments": '{"a": 1, "b": 2}'}},
        {"role": "function", "name": "add", "content": "3"},
    ])
    call = messages[1]["tool_calls"][0]
    assert call["function"] == {"name": "add", "arguments": '{"a": 1, "b": 2}'} and "function_call" not in messages[1]
    assert messages[2] == {"role": "tool", "tool_call_id": call["id"], "name": "add", "content": "3"}
