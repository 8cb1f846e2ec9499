"""What the llama-cpp backend honours, its ``local_settings`` schema, and its start-up checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from localai_runtime.backends._gguf import inspect as inspect_gguf
from localai_runtime.backends._gguf import missing as missing_model
from localai_runtime.backends.abstract import LocalSettings
from localai_runtime.backends.llama_cpp.instance import LlamaCppInstance
from localai_runtime.tools.formats import FORMATS
from localai_runtime.tools.grammar_limits import SETTINGS_SCHEMA as GRAMMAR_LIMITS_SCHEMA

#: Keys of ``x-localai-extensions`` this backend applies (the server rejects the others).
HONOURED_EXTENSIONS = frozenset({
    "top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
    "mirostat", "mirostat_tau", "mirostat_eta", "grammar", "ignore_eos",
})

_SAMPLING = frozenset({
    "model", "max_tokens", "stop", "temperature", "top_p", "seed", "presence_penalty", "frequency_penalty",
    "logit_bias", "n", "logprobs", "stream", "stream_options",
}) | {f"x-localai-extensions.{key}" for key in HONOURED_EXTENSIONS}

#: operationId -> request fields honoured; extension keys appear as ``x-localai-extensions.<key>``.
HONOURED: Mapping[str, frozenset[str]] = {
    "createChatCompletion": _SAMPLING | {"messages", "max_completion_tokens", "top_logprobs", "response_format",
                                         "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"},
    "createCompletion": _SAMPLING | {"prompt"},
    "createEmbedding": frozenset({"model", "input", "encoding_format"}),  # the server encodes base64
    "tokenize": frozenset({"model", "prompt", "messages", "tools", "add_generation_prompt", "add_special_tokens",
                           "return_token_strs"}),
    "detokenize": frozenset({"model", "tokens"}),
}

SETTINGS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "n_gpu_layers": {"type": "integer", "minimum": -1, "description": "Layers offloaded to a GPU (-1: all)."},
        "main_gpu": {"type": "integer", "minimum": 0},
        "n_batch": {"type": "integer", "minimum": 1, "description": "Prompt tokens evaluated per batch."},
        "n_ubatch": {"type": "integer", "minimum": 1},
        "use_mmap": {"type": "boolean"},
        "use_mlock": {"type": "boolean"},
        "flash_attn": {"type": "boolean"},
        "rope_freq_base": {"type": "number", "minimum": 0},
        "rope_freq_scale": {"type": "number", "minimum": 0},
        "seed": {"type": "integer", "minimum": 0, "maximum": 4294967294,
                 "description": "Sampling seed for requests that give none (default: random)."},
        "verbose": {"type": "boolean", "description": "Let llama.cpp log to stderr."},
        "tool_call_format": {"enum": sorted(FORMATS), "description": (
            "The tool-call format the model was trained on (default: recognised from its chat template; "
            "generic teaches Hermes-style <tool_call> markup in a system message).")},
        "grammar_limits": GRAMMAR_LIMITS_SCHEMA,
    },
}

class LlamaCppBackend:
    name = "llama-cpp"
    remote = False
    default_parallel = 1
    settings_schema = SETTINGS_SCHEMA
    honoured = HONOURED

    def honoured_for(self, settings: LocalSettings) -> Mapping[str, frozenset[str]]:
        return self.honoured

    def check(self, settings: LocalSettings, operations: frozenset[str]) -> list[str]:
        problems = []
        if (problem := missing_model(settings.model_file)) is not None:
            problems.append(problem)
        elif settings.model_file is not None and (damaged := inspect_gguf(settings.model_file)[1]) is not None:
            problems.append(damaged)
        template = settings.get("template")
        if template is not None:
            try:
                Jinja2ChatFormatter(template, eos_token="", bos_token="")
            except jinja2.TemplateError as exc:
                problems.append(f"template is not a valid Jinja template: {exc}")
        return problems

    def load(self, settings: LocalSettings, operations: frozenset[str] | None = None) -> LlamaCppInstance:
        return LlamaCppInstance(settings, operations)
