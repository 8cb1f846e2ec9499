"""The ``gpt4all`` backend: GGUF models through the gpt4all 2.8 bindings.

gpt4all's ``generate`` tokenizes prompts without special tokens and ignores the GGUF chat
template, so this adapter renders chat messages itself (the registration's ``template``, else
the GGUF's ``tokenizer.chat_template``, else ChatML) and calls ``llmodel_prompt`` of
``gpt4all._pyllmodel`` directly, as ``GPT4All.generate`` does, with special-token parsing on
and context shifting off. Its callbacks give the exact prompt and completion token counts,
the raw bytes of each token (decoded here with an incremental UTF-8 decoder) and a way to stop.
Generation runs on a helper thread, as in gpt4all's own streaming, feeding a queue.

gpt4all has no seed, stop sequences, logprobs or grammars; ``stop`` is implemented here by
watching the text. Its C++ core also ends a reply at "### Human", "### Assistant" and similar
markers; that cannot be switched off. It embeds only with bert / nomic-bert models.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import jinja2
from gpt4all import GPT4All, _pyllmodel

from localai_runtime.backends._chat_template import CHATML_TEMPLATE, compile_template, render_chat
from localai_runtime.backends._gguf import inspect as inspect_gguf
from localai_runtime.backends._gguf import metadata
from localai_runtime.backends._gguf import missing as missing_model
from localai_runtime.backends._text import (
    DEFAULT_CONTEXT_SIZE,
    TextStream,
    request_value,
)
from localai_runtime.backends.abstract import LocalSettings, Piece, Pieces, ShouldStop
from localai_runtime.errors import (
    ContextLengthExceededError,
    NotImplementedAPIError,
    UnsupportedParameterError,
)

if TYPE_CHECKING:
    from localai_runtime.tools.request import ToolRequest
    from localai_runtime.tools.response_format import ResponseFormat

__all__ = ["GPT4AllBackend", "GPT4AllInstance", "HONOURED_EXTENSIONS", "render_chat"]

logger = logging.getLogger(__name__)

_EXTENSION_DEFAULTS = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "repeat_last_n": 64}
"""The ``x-localai-extensions`` sampling keys gpt4all honours, and the value of each left out."""
#: Keys of ``x-localai-extensions`` this backend applies (the server rejects the others).
HONOURED_EXTENSIONS = frozenset(_EXTENSION_DEFAULTS)

_SAMPLING = frozenset({"model", "max_tokens", "stop", "temperature", "top_p", "n", "stream", "stream_options"}) | {
    f"x-localai-extensions.{key}" for key in HONOURED_EXTENSIONS}

#: operationId -> request fields honoured; extension keys appear as ``x-localai-extensions.<key>``.
HONOURED: Mapping[str, frozenset[str]] = {
    "createChatCompletion": _SAMPLING | {"messages", "max_completion_tokens"},
    "createCompletion": _SAMPLING | {"prompt"},
    "createEmbedding": frozenset({"model", "input", "encoding_format"}),  # bert/nomic-bert models only
    # No add_special_tokens (it always adds BOS), token strings or detokenize: its API has neither.
    "tokenize": frozenset({"model", "prompt", "messages", "add_generation_prompt"}),
}

SETTINGS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "n_batch": {"type": "integer", "minimum": 1, "maximum": 128,
                    "description": "Prompt tokens evaluated per batch (gpt4all caps it at 128)."},
    },
}

EMBEDDING_ARCHITECTURES = frozenset({"bert", "nomic-bert"})
_POLL_S = 0.05


class GPT4AllBackend:
    name = "gpt4all"
    remote = False
    default_parallel = 1
    settings_schema = SETTINGS_SCHEMA
    honoured = HONOURED

    def honoured_for(self, settings: LocalSettings) -> Mapping[str, frozenset[str]]:
        return self.honoured

    def check(self, settings: LocalSettings, operations: frozenset[str]) -> list[str]:
        path = settings.model_file
        if (problem := missing_model(path)) is not None:
            return [problem]
        assert path is not None  # missing_model says so otherwise
        problems = []
        if settings.get("template") is not None:
            try:
                compile_template(settings.get("template"))
            except jinja2.TemplateError as exc:
                problems.append(f"template is not a valid Jinja template: {exc}")
        meta, damaged = inspect_gguf(path)
        if meta is None:
            return [*problems, damaged or f"cannot read {path}"]
        architecture = meta["architecture"]
        embeds = architecture in EMBEDDING_ARCHITECTURES
        if "createEmbedding" in operations and not embeds:
            problems.append("gpt4all cannot embed with this model (only bert/nomic-bert embedding models)")
        if operations & {"createChatCompletion", "createCompletion"} and embeds:
            problems.append(f"gpt4all cannot generate text with a {architecture} embedding model")
        return problems

    def load(self, settings: LocalSettings, operations: frozenset[str] | None = None) -> GPT4AllInstance:
        return GPT4AllInstance(settings)


class GPT4AllInstance:
    batching = False  # one generation at a time: the pool loads ``parallel`` instances
    kv_usage = 0.0

    def __init__(self, settings: LocalSettings) -> None:
        path = settings.model_file
        if (problem := missing_model(path)) is not None:
            raise RuntimeError(f"gpt4all: {problem}")
        assert path is not None  # missing_model says so otherwise
        self._n_ctx = settings.get("context_size", DEFAULT_CONTEXT_SIZE)
        self._n_batch = settings.get("n_batch", 128)
        try:
            self._model = GPT4All(model_name=path.name, model_path=path.parent, allow_download=False, device="cpu",
                                  n_threads=settings.get("threads"), n_ctx=self._n_ctx, verbose=False)
        except Exception as exc:  # gpt4all raises a bare Exception("Model not loaded") with n_threads set
            raise RuntimeError(f"gpt4all could not load the model file {path}: {exc}") from exc
        self._handle = self._model.model.model
        try:
            if not _pyllmodel.llmodel.llmodel_isModelLoaded(self._handle):  # e.g. a truncated file
                raise RuntimeError(f"gpt4all could not load the model file {path}")
            meta = metadata(path)
        except Exception as exc:  # gguf raises assorted errors for damaged files
            self._model.close()
            if isinstance(exc, RuntimeError):
                raise
            raise RuntimeError(f"gpt4all cannot read the GGUF metadata of {path}: {exc}") from exc
        self._embeds = meta["architecture"] in EMBEDDING_ARCHITECTURES
        self._eos_token = meta["eos_token"]
        try:
            self._template = compile_template(settings.get("template") or meta["chat_template"] or CHATML_TEMPLATE)
        except jinja2.TemplateError as exc:
            self._model.close()
            raise RuntimeError(f"gpt4all: the chat template for {path} is not valid Jinja: {exc}") from exc

    def close(self) -> None:
        self._model.close()

    def replicas(self) -> None:
        return None

    @property
    def context_size(self) -> int:
        return self._n_ctx

    def tokenize(self, text: str, param: str = "input") -> list[int]:
        """Tokens of ``text`` as a completion prompt, with BOS; gpt4all only tokenizes by evaluating
        (so a prompt must fit in the context)."""
        ids, error = self._prompt(text, {"n_predict": 0}, lambda _data: True, threading.Event())
        if error is not None:
            raise self._error(error, param)
        return ids

    def tokenize_request(self, request: Mapping[str, Any], tools: ToolRequest) -> tuple[list[int], list[str] | None]:
        if request.get("messages") is None:
            return self.tokenize(request["prompt"], "prompt"), None
        prompt = render_chat(self._template, request["messages"], eos_token=self._eos_token,
                             add_generation_prompt=request_value(request, "add_generation_prompt", True))
        return self.tokenize(prompt, "messages"), None  # as chat() evaluates it

    def detokenize(self, tokens: list[int]) -> str:
        raise NotImplementedAPIError("gpt4all cannot detokenize (its bindings have no detokenizer)")

    def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        if not self._embeds:
            raise NotImplementedAPIError("gpt4all cannot embed with this model (only bert/nomic-bert embedding models)")
        if not all(isinstance(item, str) for item in inputs):
            raise UnsupportedParameterError("gpt4all embeds text only, not token ids", param="input")
        result = self._model.embed(list(inputs), return_dict=True)
        return result["embeddings"], result["n_prompt_tokens"]

    def chat(self, request: Mapping[str, Any], should_stop: ShouldStop, tools: ToolRequest,
             response_format: ResponseFormat) -> Pieces:
        """The policy refuses tools and response formats for this backend: both ask for nothing here."""
        prompt = render_chat(self._template, request["messages"], eos_token=self._eos_token)
        max_tokens = request_value(request, "max_completion_tokens", request_value(request, "max_tokens"))
        return self._run([prompt], request, max_tokens, "messages", should_stop)

    def complete(self, request: Mapping[str, Any], should_stop: ShouldStop) -> Pieces:
        prompt = request["prompt"]
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise UnsupportedParameterError("gpt4all takes text prompts only, not token ids", param="prompt")
        return self._run(prompts, request, request_value(request, "max_tokens", 16), "prompt", should_stop)

    def _run(self, prompts: list[str], request: Mapping[str, Any], max_tokens: int | None, param: str,
             should_stop: ShouldStop) -> Pieces:
        """Sequential choices (``n``, then each prompt of a list), indexed prompt-major."""
        ext = request.get("x-localai-extensions") or {}
        stop = request_value(request, "stop", [])
        stop = [stop] if isinstance(stop, str) else list(stop)
        options = {  # read once, here: the fields of gpt4all's prompt context, with their defaults
            "n_predict": self._n_ctx if max_tokens is None else max_tokens,
            "temp": request_value(request, "temperature", 1.0),
            "top_p": request_value(request, "top_p", 1.0),
            **{key: request_value(ext, key, default) for key, default in _EXTENSION_DEFAULTS.items()},
        }
        n = request_value(request, "n", 1)
        for p, prompt in enumerate(prompts):
            for i in range(n):
                if should_stop() or (yield from self._choice(prompt, p * n + i, options, stop, param, should_stop)):
                    return

    def _choice(self, prompt: str, index: int, options: dict[str, Any], stop: list[str], param: str,
                should_stop: ShouldStop) -> Generator[Piece, None, bool]:
        """One choice, streamed from a helper thread; returns True when ``should_stop`` ended it."""
        pieces: queue.Queue[tuple[str, Any]] = queue.Queue()
        text = TextStream(stop)
        count = 0
        cancel = threading.Event()

        def on_token(data: bytes) -> bool:
            nonlocal count
            count += 1
            if out := text.feed(data):
                pieces.put(("text", out))
            return not text.stopped

        def work() -> None:
            try:
                pieces.put(("done", self._prompt(prompt, options, on_token, cancel)))
            except BaseException as exc:  # re-raised in the consuming thread
                pieces.put(("raised", exc))

        thread = threading.Thread(target=work, name="gpt4all-generate", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    kind, value = pieces.get(timeout=_POLL_S)
                except queue.Empty:
                    kind, value = "idle", None
                if kind == "text":
                    yield Piece(value, index)
                elif kind == "raised":
                    raise value
                elif kind == "done":
                    break
                if should_stop():
                    return True
        finally:
            cancel.set()
            thread.join()
        prompt_ids, error = value
        if error is not None:
            raise self._error(error, param)
        length = count >= options["n_predict"] or len(prompt_ids) + count >= self._n_ctx - 1
        yield Piece(text.finish(), index, finish_reason="length" if length and not text.stopped else "stop",
                    prompt_tokens=len(prompt_ids), completion_tokens=count, stop_sequence=text.stopped_by)
        return False

    def _error(self, error: str, param: str) -> Exception:
        """The exception for an error gpt4all reported through its response callback."""
        if "context window" in error or "too long" in error:  # it does not say how many tokens
            return ContextLengthExceededError(
                f"This model's maximum context length is {self._n_ctx} tokens and gpt4all needs the {param} "
                f"to fit in {self._n_ctx - 4} tokens; your {param} is longer. Please reduce its length.",
                param=param)
        return RuntimeError(f"gpt4all: {error}")

    def _prompt(self, prompt: str, options: dict[str, Any], on_token: Any,
                cancel: threading.Event) -> tuple[list[int], str | None]:
        """Run ``llmodel_prompt`` (blocking); returns the prompt's token ids and gpt4all's error, if any."""
        prompt_ids: list[int] = []
        errors: list[str] = []

        def on_prompt(token_id: int) -> bool:
            prompt_ids.append(token_id)
            return not cancel.is_set()

        def on_response(token_id: int, data: bytes) -> bool:
            if token_id < 0:
                errors.append(data.decode("utf-8", "replace"))
                return False
            return on_token(data) and not cancel.is_set()

        context = _pyllmodel.LLModelPromptContext(**options, n_batch=self._n_batch, context_erase=0.75)
        _pyllmodel.llmodel.llmodel_prompt(
            self._handle, prompt.encode("utf-8"), b"%1%2",  # "%1%2": no text around the prompt
            _pyllmodel.PromptCallback(on_prompt), _pyllmodel.ResponseCallback(on_response),
            False, ctypes.byref(context), True, ctypes.c_char_p(),  # no context shift; parse special tokens
        )
        return prompt_ids, errors[0] if errors else None


