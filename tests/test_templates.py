"""Chat templates and tools: the load-time probe, native rendering where a template knows tools,
polyfills where it does not, and call markers that are special tokens keeping their text.
"""

from __future__ import annotations

import json

import llama_cpp
import pytest

from localai_runtime.backends import LocalSettings
from localai_runtime.backends.llama_cpp import LlamaCppBackend
from localai_runtime.backends.llama_cpp.instance import CHATML_TEMPLATE
from localai_runtime.backends.llama_cpp.templates import ChatTemplate
from localai_runtime.demo_model import DemoModelSpec, write_demo_model
from localai_runtime.tools.formats import FORMATS, recognise
from localai_runtime.tools.request import tool_request

# The shape of Qwen 2.5's template: tools in the system turn, calls and results in Hermes markup,
# arguments written with tojson (so they must be objects, not strings).
HERMES_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n# Tools\n<tools>{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}"
    "\n</tools><|im_end|>\n{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant\n{{ message.content or '' }}"
    "{%- for call in message.tool_calls %}\n<tool_call>\n{\"name\": \"{{ call.function.name }}\", \"arguments\": "
    "{{ call.function.arguments | tojson }}}\n</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response>"
    "<|im_end|>\n"
    "{%- else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
]


def template(source: str) -> ChatTemplate:
    return ChatTemplate(source, None, recognise(source), eos="<|im_end|>", bos="")


def test_a_hermes_template_renders_tools_calls_and_results_natively():
    chat = template(HERMES_TEMPLATE)
    assert chat.form.name == "hermes"
    abilities = chat.abilities
    assert (abilities.tools, abilities.calls, abilities.arguments_as_object, abilities.results) == (True, True, True, True)
    prompt = chat.render(HISTORY, tool_request({"messages": HISTORY, "tools": [WEATHER]}))
    assert json.dumps(WEATHER, ensure_ascii=False) in prompt  # the template's own tool block
    assert '"arguments": {"city": "Paris"}' in prompt  # an object, not a string encoded twice
    assert "<tool_response>\nSunny\n</tool_response>" in prompt
    assert "You can call these tools" not in prompt  # nothing polyfilled


def test_a_template_without_tools_gets_them_polyfilled():
    chat = template(CHATML_TEMPLATE)
    assert chat.form.name == "generic" and not any(
        (chat.abilities.tools, chat.abilities.calls, chat.abilities.results))
    prompt = chat.render(HISTORY, tool_request({"messages": HISTORY, "tools": [WEATHER], "tool_choice": "required"}))
    assert prompt.startswith("<|im_start|>system\nYou can call these tools")
    assert '"name": "get_weather"' in prompt and "You must call the tool get_weather." in prompt
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert "<|im_start|>user\nThe tool get_weather answered: Sunny" in prompt


def test_tool_choice_none_leaves_tools_out_of_the_prompt():
    for source in (HERMES_TEMPLATE, CHATML_TEMPLATE):
        prompt = template(source).render(HISTORY[:1], tool_request({"messages": [], "tools": [WEATHER],
                                                                     "tool_choice": "none"}))
        assert "get_weather" not in prompt


@pytest.fixture(scope="module")
def marker_model(tmp_path_factory):
    spec = DemoModelSpec(extra_control=("<tool_call>",))
    return write_demo_model(tmp_path_factory.mktemp("marker") / "marker.gguf", spec)


def test_a_call_marker_that_is_a_special_token_keeps_its_text(marker_model):
    vocab = llama_cpp.Llama(model_path=str(marker_model), vocab_only=True, verbose=False)
    [marker] = vocab.tokenize(b"<tool_call>", add_bos=False, special=True)
    vocab.close()
    settings = LocalSettings("llama-cpp", marker_model, {"backend": "llama-cpp", "threads": 2, "context_size": 512,
                                                         "tool_call_format": "hermes"})
    instance = LlamaCppBackend().load(settings)
    try:
        pieces = instance.complete({"prompt": "hi", "max_tokens": 1, "temperature": 0,
                                    "logit_bias": {str(marker): 100}}, lambda: False)
        assert "".join(piece.text for piece in pieces) == "<tool_call>"
        assert FORMATS["hermes"].trigger == "<tool_call>"
    finally:
        instance.close()
