"""A loaded llama-cpp model: prompts to tokens, the generation loop, logprobs, embeddings."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any

import jinja2
import llama_cpp
import numpy as np
from llama_cpp import Llama

from localai_runtime.backends._gguf import missing as missing_model
from localai_runtime.backends._text import DEFAULT_CONTEXT_SIZE, request_value
from localai_runtime.backends.abstract import LocalSettings, Piece, ShouldStop
from localai_runtime.backends.llama_cpp.decoding import Decoded, as_pieces, decode
from localai_runtime.backends.llama_cpp.embedding import embed_tokens
from localai_runtime.backends.llama_cpp.sampling import SamplingOptions
from localai_runtime.backends.llama_cpp.templates import ChatTemplate
from localai_runtime.backends.llama_cpp.tokens import Tokens
from localai_runtime.backends.llama_cpp.tool_calls import call_choice, plan_calls
from localai_runtime.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
)
from localai_runtime.tools.formats import FORMATS, recognise
from localai_runtime.tools.request import ToolRequest, tool_request

logger = logging.getLogger(__name__)

#: Settings passed to ``Llama()`` under the same name.
_LLAMA_KWARGS = ("n_gpu_layers", "main_gpu", "n_batch", "n_ubatch", "use_mmap", "use_mlock", "flash_attn",
                 "rope_freq_base", "rope_freq_scale", "verbose")
CHATML_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_GENERATING = frozenset({"createChatCompletion", "createCompletion"})


class LlamaCppInstance(Tokens):
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
        # A generation context where the registration generates (or only tokenizes: it is the
        # lighter of the two); an embedding context is opened when first needed (at once for a
        # registration that embeds without generating).
        self._llama: Llama | None = None
        self._embedder: Llama | None = None
        if operations is None or operations & _GENERATING or "createEmbedding" not in operations:
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
        self.vocab = llama_cpp.llama_model_get_vocab(model.model)
        # llama.cpp may round the context up (to 256 at least), but Llama sizes its token
        # buffer by the size asked for and then silently loses tokens past it: keep within both.
        self._n_ctx = min(model.n_ctx(), len(model.input_ids))
        self.n_vocab = model.n_vocab()
        self._pieces: dict[int, bytes] = {}
        own = self._settings.get("template")
        template = own or model.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        tool_template = None if own else model.metadata.get("tokenizer.chat_template.tool_use")
        named = self._settings.get("tool_call_format")
        form = FORMATS[named] if named else recognise(tool_template or template)
        try:
            self.template = ChatTemplate(template, tool_template, form, eos=self._special_text(model.token_eos()),
                                         bos=self._special_text(model.token_bos()))
        except jinja2.TemplateError as exc:
            raise RuntimeError(f"llama-cpp: the chat template for {path} is not valid Jinja: {exc}") from exc
        # A call format's markers may be special tokens: their text must not vanish when detokenized.
        self._preserved = {tokens[0] for f in FORMATS.values()
                           if len(tokens := self.tokenize_more(f.trigger)) == 1}

    @property
    def default_seed(self) -> int | None:
        """The seed for requests that give none (``local_settings.seed``; None: random)."""
        return self._settings.get("seed")

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

    # -- chat and completions ---------------------------------------------------------------

    def chat(self, request: Mapping[str, Any], should_stop: ShouldStop) -> Iterator[Piece]:
        tools = tool_request(request)
        max_tokens = request_value(request, "max_completion_tokens", request_value(request, "max_tokens"))
        top = request_value(request, "top_logprobs", 0) if request_value(request, "logprobs", False) else None
        return self._choices([self.chat_tokens(request, tools)], request, max_tokens, top, "messages", should_stop,
                             tools)

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
                 top_logprobs: int | None, param: str, should_stop: ShouldStop,
                 tools: ToolRequest | None = None) -> Iterator[Piece]:
        """Checks the request now (errors raise before any output), then generates lazily."""
        for tokens in prompts:
            if len(tokens) >= self._n_ctx:
                raise ContextLengthExceededError(
                    f"This model's maximum context length is {self._n_ctx} tokens. However, your {param} "
                    f"resulted in {len(tokens)} tokens. Please reduce the length of the {param}.",
                    param=param,
                )
        options = SamplingOptions(self, request, max_tokens, top_logprobs)
        if tools is not None:
            options.calls = plan_calls(self, self.template.form, tools, options.answer_gbnf)
            if options.calls is None and any(request.get(key) for key in ("tools", "functions")):
                options.stop.append(self.template.form.trigger)  # tool_choice none: no call markup either
        return self._run(prompts, options, request_value(request, "n", 1), should_stop)

    def _run(
        self, prompts: list[list[int]], options: SamplingOptions, n: int, should_stop: ShouldStop
    ) -> Iterator[Piece]:
        for p, tokens in enumerate(prompts):
            for i in range(n):
                seed = llama_cpp.LLAMA_DEFAULT_SEED if options.seed is None else (options.seed + i) % 2**32
                if should_stop() or (yield from self._choice(tokens, p * n + i, seed, options, should_stop)):
                    return

    def _choice(self, prompt: list[int], index: int, seed: int, options: SamplingOptions,
                should_stop: ShouldStop) -> Generator[Piece, None, bool]:
        """One choice; returns True when ``should_stop`` ended it (no final piece then)."""
        llama = self._generator
        llama.set_seed(seed)
        llama.last_n_tokens_size = options.repeat_last_n if options.repeat_last_n >= 0 else self._n_ctx
        if options.calls is not None:
            return (yield from call_choice(self, prompt, index, options, should_stop))
        decoded = yield from as_pieces(self._decode(prompt, options, options.sampling, should_stop), index)
        if decoded.finish is None:
            return True
        yield Piece(decoded.tail, index, finish_reason=decoded.finish, prompt_tokens=len(prompt),
                    completion_tokens=decoded.tokens)
        return False

    def _decode(self, prompt: list[int], options: SamplingOptions, sampling: Mapping[str, Any],
                should_stop: ShouldStop, *, stop: Sequence[str] | None = None,
                max_tokens: int | None = None) -> Generator[tuple[str, Any], None, Decoded]:
        return (yield from decode(
            self, prompt, sampling, max_tokens=options.max_tokens if max_tokens is None else max_tokens,
            stop=options.stop if stop is None else stop, top_logprobs=options.top_logprobs, should_stop=should_stop))

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
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float64)
        logits -= logits.max()
        peak = logits.max()
        logprobs = logits - (peak + np.log(np.exp(logits - peak).sum()))
        best: Any = ()
        if top:  # the top few without sorting the whole vocabulary
            count = min(top, self.n_vocab)
            best = np.argpartition(-logprobs, count - 1)[:count]
            best = best[np.argsort(-logprobs[best], kind="stable")]
        entry = self._token_entry(token, logprobs[token])
        entry["top_logprobs"] = [self._token_entry(int(t), logprobs[t]) for t in best]
        return entry

    def _token_entry(self, token: int, logprob: float) -> dict[str, Any]:
        data = self._piece(token)
        return {"token": data.decode("utf-8", "replace"), "logprob": float(logprob), "bytes": list(data)}

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
            vector = embed_tokens(self._embedder, tokens)
            norm = np.linalg.norm(vector)
            result.append((vector / norm if norm else vector).tolist())
        return result, sum(len(tokens) for tokens in sequences)
