"""The ``llama-cpp`` backend: GGUF models through llama-cpp-python.

Generation drives ``Llama.generate`` (llama.cpp's sampler chain, grammars, penalties, seeds)
with this module's own loop instead of ``create_completion(stream=True)``, which in 0.3.x
lets a multi-byte character cut by ``max_tokens`` run past the limit, drops invalid bytes
silently and reports no token counts when streaming. The loop decodes token bytes with an
incremental UTF-8 decoder, holds back text that may begin a stop sequence, counts tokens,
and polls ``should_stop`` after every token.

Chat prompts are rendered with the registration's ``template`` or the GGUF's own
``tokenizer.chat_template`` (ChatML when it has none) through llama-cpp-python's
``Jinja2ChatFormatter``; ``response_format`` becomes a GBNF grammar. The prompt is evaluated a
batch at a time, polling ``should_stop`` between batches, so a client that leaves during a long
prompt stops it; the prefix already in the context's cache is reused. Embeddings use a second
``Llama`` created with ``embedding=True`` on first use (weights are shared through mmap); an
instance loaded only for embeddings opens that context alone. Token ids are embedded as given.
"""

from __future__ import annotations

import ctypes
import json
import logging
from collections.abc import Generator, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

import jinja2
import llama_cpp
import numpy as np
from llama_cpp import Llama, LlamaGrammar, LogitsProcessorList
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from localai_runtime.backends._gguf import inspect as inspect_gguf
from localai_runtime.backends._gguf import missing as missing_model
from localai_runtime.backends._text import (
    DEFAULT_CONTEXT_SIZE,
    TextStream,
    plain_messages,
    request_value,
)
from localai_runtime.backends.abstract import LocalSettings, Piece, ShouldStop
from localai_runtime.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
)

__all__ = ["HONOURED_EXTENSIONS", "LlamaCppBackend", "LlamaCppInstance"]

logger = logging.getLogger(__name__)

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
    "createChatCompletion": _SAMPLING | {"messages", "max_completion_tokens", "top_logprobs", "response_format"},
    "createCompletion": _SAMPLING | {"prompt"},
    "createEmbedding": frozenset({"model", "input", "encoding_format"}),  # the server encodes base64
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
    },
}

#: Settings passed to ``Llama()`` under the same name.
_LLAMA_KWARGS = ("n_gpu_layers", "main_gpu", "n_batch", "n_ubatch", "use_mmap", "use_mlock", "flash_attn",
                 "rope_freq_base", "rope_freq_scale", "verbose")
CHATML_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_BANNED = -1e30  # a finite "never": a grammar may still force the token when nothing else is allowed


class LlamaCppBackend:
    name = "llama-cpp"
    settings_schema = SETTINGS_SCHEMA
    honoured = HONOURED

    def check(self, settings: LocalSettings, operations: frozenset[str]) -> list[str]:
        problems = []
        if (problem := missing_model(settings.model_file)) is not None:
            problems.append(problem)
        elif (damaged := inspect_gguf(settings.model_file)[1]) is not None:
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


_GENERATING = frozenset({"createChatCompletion", "createCompletion"})


class LlamaCppInstance:
    def __init__(self, settings: LocalSettings, operations: frozenset[str] | None = None) -> None:
        path = settings.model_file
        if (problem := missing_model(path)) is not None:
            raise RuntimeError(f"llama-cpp: {problem}")
        self._settings = settings
        self._kwargs: dict[str, Any] = {
            "n_ctx": settings.get("context_size", DEFAULT_CONTEXT_SIZE),
            "n_threads": settings.get("threads"),
            "verbose": False,
            **{key: settings.get(key) for key in _LLAMA_KWARGS if settings.get(key) is not None},
        }
        # A generation context only where the registration generates; an embedding context is
        # opened when first needed (at once for an embedding-only registration).
        self._llama: Llama | None = None
        self._embedder: Llama | None = None
        if operations is None or operations & _GENERATING:
            self._llama = self._open(embedding=False)
        else:
            self._embedder = self._open(embedding=True)
        try:
            self._setup(path)
        except BaseException:
            self.close()  # the Llama opened above must not outlive a failed load
            raise

    def _setup(self, path: Any) -> None:
        model = self._model
        self._vocab = llama_cpp.llama_model_get_vocab(model.model)
        # llama.cpp may round the context up (to 256 at least), but Llama sizes its token
        # buffer by the size asked for and then silently loses tokens past it: keep within both.
        self._n_ctx = min(model.n_ctx(), len(model.input_ids))
        self._n_vocab = model.n_vocab()
        self._pieces: dict[int, bytes] = {}
        template = self._settings.get("template") or model.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        try:
            self._formatter = Jinja2ChatFormatter(template, eos_token=self._special_text(model.token_eos()),
                                                  bos_token=self._special_text(model.token_bos()))
        except jinja2.TemplateError as exc:
            raise RuntimeError(f"llama-cpp: the chat template for {path} is not valid Jinja: {exc}") from exc

    @property
    def _model(self) -> Llama:
        """The context opened first: its vocabulary and metadata serve both."""
        model = self._llama or self._embedder
        assert model is not None
        return model

    @property
    def _generator(self) -> Llama:
        if self._llama is None:
            raise RuntimeError("llama-cpp: this instance was loaded for embeddings only")
        return self._llama

    def _open(self, *, embedding: bool) -> Llama:
        path = self._settings.model_file
        kwargs = dict(self._kwargs)
        if embedding:  # non-causal models need a whole input in one micro-batch
            kwargs.update(embedding=True, n_batch=kwargs["n_ctx"], n_ubatch=kwargs["n_ctx"])
        try:
            return Llama(model_path=str(path), **kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            raise RuntimeError(f"llama-cpp could not load the model file {path}: {exc}") from exc

    def close(self) -> None:
        for model in (self._llama, self._embedder):
            if model is not None:
                model.close()
        self._llama = self._embedder = None

    # -- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` as a completion prompt (with BOS where the model adds one)."""
        tokens = self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        bos = self._model.token_bos()  # a chat template may have written it already
        if bos >= 0 and llama_cpp.llama_vocab_get_add_bos(self._vocab) and tokens[:1] != [bos]:
            tokens.insert(0, bos)
        return tokens

    def _special_text(self, token: int) -> str:
        return "" if token < 0 else self._model.detokenize([token], special=True).decode("utf-8", "replace")

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buffer = ctypes.create_string_buffer(256)
            size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
            if size < 0:  # the piece is longer than the buffer: llama.cpp says how long
                buffer = ctypes.create_string_buffer(-size)
                size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
            if size < 0:
                raise RuntimeError(f"llama-cpp: token {token} has no text piece")
            piece = self._pieces[token] = buffer.raw[:size]
        return piece

    @cached_property
    def _end_of_generation(self) -> list[int]:
        return [t for t in range(self._n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t)]

    def _checked_ids(self, ids: Sequence[Any], param: str) -> list[int]:
        if not ids or not all(isinstance(t, int) and 0 <= t < self._n_vocab for t in ids):
            raise InvalidRequestError(f"token ids must be a non-empty list of integers below {self._n_vocab}",
                                      param=param)
        return list(ids)

    # -- chat and completions ---------------------------------------------------------------

    def chat(self, request: Mapping[str, Any], should_stop: ShouldStop) -> Iterator[Piece]:
        messages = plain_messages(request["messages"])
        try:
            prompt = self._formatter(messages=messages).prompt
        except (ValueError, jinja2.TemplateError) as exc:
            raise InvalidRequestError(f"the chat template cannot render these messages: {exc}",
                                      param="messages") from exc
        max_tokens = request_value(request, "max_completion_tokens", request_value(request, "max_tokens"))
        top = request_value(request, "top_logprobs", 0) if request_value(request, "logprobs", False) else None
        return self._choices([self.tokenize(prompt)], request, max_tokens, top, "messages", should_stop)

    def complete(self, request: Mapping[str, Any], should_stop: ShouldStop) -> Iterator[Piece]:
        prompt = request["prompt"]
        if isinstance(prompt, str):
            prompts = [self.tokenize(prompt)]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = [self.tokenize(p) for p in prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
            prompts = [self._checked_ids(p, "prompt") for p in prompt]
        else:
            prompts = [self._checked_ids(prompt, "prompt")]
        top = request_value(request, "logprobs")
        return self._choices(prompts, request, request_value(request, "max_tokens", 16), top, "prompt", should_stop)

    def _choices(self, prompts: list[list[int]], request: Mapping[str, Any], max_tokens: int | None,
                 top_logprobs: int | None, param: str, should_stop: ShouldStop) -> Iterator[Piece]:
        """Checks the request now (errors raise before any output), then generates lazily."""
        for tokens in prompts:
            if len(tokens) >= self._n_ctx:
                raise ContextLengthExceededError(
                    f"This model's maximum context length is {self._n_ctx} tokens. However, your {param} "
                    f"resulted in {len(tokens)} tokens. Please reduce the length of the {param}.",
                    param=param,
                )
        return self._run(prompts, _Options(self, request, max_tokens, top_logprobs), request_value(request, "n", 1),
                         should_stop)

    def _run(self, prompts: list[list[int]], options: _Options, n: int, should_stop: ShouldStop) -> Iterator[Piece]:
        for p, tokens in enumerate(prompts):
            for i in range(n):
                seed = llama_cpp.LLAMA_DEFAULT_SEED if options.seed is None else (options.seed + i) % 2**32
                if should_stop() or (yield from self._choice(tokens, p * n + i, seed, options, should_stop)):
                    return

    def _choice(self, prompt: list[int], index: int, seed: int, options: _Options,
                should_stop: ShouldStop) -> Generator[Piece, None, bool]:
        """One choice; returns True when ``should_stop`` ended it (no final piece then)."""
        llama = self._generator
        if not self._prefill(prompt, should_stop):
            return True
        limit = self._n_ctx - len(prompt)
        max_tokens = limit if options.max_tokens is None else min(options.max_tokens, limit)
        llama.set_seed(seed)
        llama.last_n_tokens_size = options.repeat_last_n if options.repeat_last_n >= 0 else self._n_ctx
        text = TextStream(options.stop)
        logprobs: list[dict[str, Any]] = []
        count, finish = 0, "length"
        tokens = llama.generate(prompt, **options.sampling)
        try:
            for token in tokens if max_tokens > 0 else ():
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                count += 1
                if options.top_logprobs is not None:
                    logprobs.append(self._logprob(token, options.top_logprobs))
                if out := text.feed(self._piece(token)):
                    yield Piece(out, index, logprobs=logprobs or None)
                    logprobs = []
                if text.stopped:
                    finish = "stop"
                    break
                if count >= max_tokens:
                    break
                if should_stop():
                    return True
        finally:
            tokens.close()
        yield Piece(text.finish(), index, finish_reason=finish, logprobs=logprobs or None,
                    prompt_tokens=len(prompt), completion_tokens=count)
        return False

    def _prefill(self, prompt: list[int], should_stop: ShouldStop) -> bool:
        """Evaluate all but the prompt's last token a batch at a time, polling ``should_stop``
        between batches (a client that leaves during a long prompt stops it within a batch);
        False when told to stop. The prefix already in the cache is kept, as ``generate`` would
        keep it, and ``generate`` then evaluates just the last token."""
        llama = self._generator
        head = prompt[:-1]
        cached = 0
        for old, new in zip(llama.input_ids[:llama.n_tokens].tolist(), head, strict=False):
            if old != new:
                break
            cached += 1
        llama.n_tokens = cached  # eval() drops the cache past this point
        for start in range(cached, len(head), max(1, llama.n_batch)):
            if should_stop():
                return False
            llama.eval(head[start:start + llama.n_batch])
        return not should_stop()

    def _logprob(self, token: int, top: int) -> dict[str, Any]:
        """OpenAI's chat logprob entry for ``token`` (the last logits are the ones it was sampled from)."""
        pointer = llama_cpp.llama_get_logits_ith(self._generator.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
        logits -= logits.max()
        peak = logits.max()
        logprobs = logits - (peak + np.log(np.exp(logits - peak).sum()))
        best: Any = ()
        if top:  # the top few without sorting the whole vocabulary
            count = min(top, self._n_vocab)
            best = np.argpartition(-logprobs, count - 1)[:count]
            best = best[np.argsort(-logprobs[best], kind="stable")]
        entry = self._token_entry(token, logprobs[token])
        entry["top_logprobs"] = [self._token_entry(int(t), logprobs[t]) for t in best]
        return entry

    def _token_entry(self, token: int, logprob: float) -> dict[str, Any]:
        data = self._piece(token)
        return {"token": data.decode("utf-8", "replace"), "logprob": float(logprob), "bytes": list(data)}

    def _grammar(self, text: str, param: str) -> LlamaGrammar:
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, text.encode("utf-8"), b"root")
        if not sampler:  # llama.cpp would crash on a NULL sampler later
            raise InvalidRequestError("the grammar is not valid GBNF with a 'root' rule", param=param)
        llama_cpp.llama_sampler_free(sampler)
        return LlamaGrammar.from_string(text, verbose=False)

    # -- embeddings ---------------------------------------------------------------------------

    def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        """L2-normalised, pooled embeddings (mean pooling where the model declares none). Token
        ids are embedded as given, never detokenized and tokenized again."""
        if self._embedder is None:
            self._embedder = self._open(embedding=True)
        sequences = []
        for i, item in enumerate(inputs):
            if isinstance(item, list):
                tokens = self._checked_ids(item, "input")
            else:  # as Llama.embed tokenizes text
                tokens = self._embedder.tokenize(item.encode("utf-8"))
            if not tokens:
                raise InvalidRequestError(f"input {i} has no tokens to embed", param="input")
            if len(tokens) > self._n_ctx:
                raise ContextLengthExceededError(
                    f"This model's maximum context length is {self._n_ctx} tokens, however input {i} has "
                    f"{len(tokens)} tokens. Please reduce the length of the input.", param="input")
            sequences.append(tokens)
        result = []
        for tokens in sequences:
            vector = self._embed_tokens(tokens)
            norm = np.linalg.norm(vector)
            result.append((vector / norm if norm else vector).tolist())
        return result, sum(len(tokens) for tokens in sequences)

    def _embed_tokens(self, tokens: list[int]) -> np.ndarray:
        """One sequence through the embedding context (what ``Llama.embed`` does per input,
        on token ids instead of text)."""
        embedder = self._embedder
        assert embedder is not None
        width = embedder.n_embd()
        batch, context = embedder._batch, embedder._ctx
        batch.reset()
        batch.add_sequence(tokens, 0, True)  # every token an output, as Llama.embed marks them
        context.kv_cache_clear()
        try:
            context.decode(batch)
        finally:
            batch.reset()
        if embedder.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_NONE:  # one vector per token
            pointer = llama_cpp.llama_get_embeddings(context.ctx)
            return np.ctypeslib.as_array(pointer, shape=(len(tokens), width)).astype(np.float64).mean(axis=0)
        pointer = llama_cpp.llama_get_embeddings_seq(context.ctx, 0)
        return np.ctypeslib.as_array(pointer, shape=(width,)).astype(np.float64)


class _Options:
    """A request's sampling settings, as ``Llama.generate`` arguments plus what the loop needs."""

    def __init__(self, instance: LlamaCppInstance, request: Mapping[str, Any], max_tokens: int | None,
                 top_logprobs: int | None) -> None:
        ext = request.get("x-localai-extensions") or {}
        stop = request_value(request, "stop", [])
        self.stop = [stop] if isinstance(stop, str) else list(stop)
        self.max_tokens = max_tokens
        self.top_logprobs = top_logprobs
        self.seed = request_value(request, "seed", instance._settings.get("seed"))
        self.repeat_last_n = ext.get("repeat_last_n", 64)
        self.sampling: dict[str, Any] = {
            "temp": request_value(request, "temperature", 1.0),
            "top_p": request_value(request, "top_p", 1.0),
            "top_k": ext.get("top_k", 0),
            "min_p": ext.get("min_p", 0.0),
            "typical_p": ext.get("typical_p", 1.0),
            "repeat_penalty": ext.get("repeat_penalty", 1.0),
            "presence_penalty": request_value(request, "presence_penalty", 0.0),
            "frequency_penalty": request_value(request, "frequency_penalty", 0.0),
            "mirostat_mode": ext.get("mirostat", 0),
            "mirostat_tau": ext.get("mirostat_tau", 5.0),
            "mirostat_eta": ext.get("mirostat_eta", 0.1),
            "grammar": self._grammar(instance, request, ext),
            "logits_processor": self._bias(instance, request, ext),
        }

    @staticmethod
    def _grammar(instance: LlamaCppInstance, request: Mapping[str, Any], ext: Mapping[str, Any]) -> LlamaGrammar | None:
        response_format = request_value(request, "response_format", {"type": "text"})
        kind = response_format.get("type")
        if "grammar" in ext and kind != "text":
            raise InvalidRequestError("give either a grammar or a JSON response_format, not both",
                                      param="response_format")
        if "grammar" in ext:
            return instance._grammar(ext["grammar"], "x-localai-extensions.grammar")
        if kind == "json_object":
            return instance._grammar(JSON_GBNF, "response_format")
        if kind == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema", {})
            try:
                gbnf = json_schema_to_gbnf(json.dumps(schema))
            except Exception as exc:  # the converter raises assorted errors for unsupported schemas
                raise InvalidRequestError(f"this JSON schema cannot be enforced: {exc}",
                                          param="response_format") from exc
            return instance._grammar(gbnf, "response_format")
        return None

    @staticmethod
    def _bias(
        instance: LlamaCppInstance, request: Mapping[str, Any], ext: Mapping[str, Any]
    ) -> LogitsProcessorList | None:
        logit_bias = request_value(request, "logit_bias", {})
        if not logit_bias and not ext.get("ignore_eos"):
            return None
        bias = np.zeros(instance._n_vocab, dtype=np.float32)
        for key, value in logit_bias.items():
            token = int(key) if str(key).isdigit() else -1
            if not 0 <= token < instance._n_vocab:
                raise InvalidRequestError(f"logit_bias: {key!r} is not a token id of this model", param="logit_bias")
            bias[token] = value
        if ext.get("ignore_eos"):
            bias[instance._end_of_generation] = _BANNED
        return LogitsProcessorList([lambda _ids, scores: scores + bias])


