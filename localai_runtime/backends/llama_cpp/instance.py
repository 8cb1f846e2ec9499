"""A loaded llama-cpp model: a registration's template, prompts checked and turned into a
:class:`~.generation.Generation`, and embeddings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import jinja2
import numpy as np

from localai_runtime.backends._gguf import missing as missing_model
from localai_runtime.backends._text import DEFAULT_CONTEXT_SIZE
from localai_runtime.backends.abstract import LocalSettings, Pieces, ShouldStop
from localai_runtime.backends.llama_cpp.embedding import embed_tokens
from localai_runtime.backends.llama_cpp.engine.params import SamplingParams
from localai_runtime.backends.llama_cpp.engine.scheduler import Engine
from localai_runtime.backends.llama_cpp.engine.shared import SharedModel, share
from localai_runtime.backends.llama_cpp.generation import Generation
from localai_runtime.backends.llama_cpp.sampling import read_params
from localai_runtime.backends.llama_cpp.templates import ChatTemplate
from localai_runtime.backends.llama_cpp.tokens import Tokens
from localai_runtime.backends.llama_cpp.tool_calls import CallPlan, plan_calls
from localai_runtime.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
)
from localai_runtime.tools.formats import FORMATS, recognise
from localai_runtime.tools.grammar_limits import GrammarLimits
from localai_runtime.tools.request import ToolRequest
from localai_runtime.tools.response_format import TEXT, ResponseFormat

logger = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_GENERATING = frozenset({"createChatCompletion", "createCompletion"})


class LlamaCppInstance(Tokens):
    """A registration's view of a shared loaded model: its template and tool-call format, and
    generation through the model's batching engine. Its methods run in many worker threads at
    once (one per request): the engine serialises what touches the context."""

    #: The pool lends one instance ``parallel`` times instead of loading ``parallel`` copies.
    batching = True

    def __init__(self, settings: LocalSettings, operations: frozenset[str] | None = None) -> None:
        path = settings.model_file
        if (problem := missing_model(path)) is not None:
            raise RuntimeError(f"llama-cpp: {problem}")
        self._settings = settings
        self._grammar_limits = GrammarLimits.from_settings(settings.get("grammar_limits"))
        self._shared: SharedModel | None = share(settings)
        try:
            assert self._shared.weights is not None  # share() loaded them
            self._model = self._shared.weights
            # The batching engine where the registration generates, the embedding context where
            # it embeds only; tokenize needs neither.
            self._engine = None
            if operations is None or operations & _GENERATING:
                self._engine = self._shared.engine()
            elif "createEmbedding" in operations:
                self._shared.embedder()
            self._setup(path)
        except BaseException:
            self.close()  # the shared model must not outlive a failed load
            raise

    def _setup(self, path: Any) -> None:
        model = self._model
        self.vocab = model.vocab
        size = self._settings.get("context_size", DEFAULT_CONTEXT_SIZE)
        self._n_ctx = size if self._engine is None else min(size, self._engine.slot_context)
        self.n_vocab = model.n_vocab()
        self._pieces: dict[int, bytes] = {}
        assert self._shared is not None
        metadata = self._shared.metadata
        own = self._settings.get("template")
        template = own or metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        tool_template = None if own else metadata.get("tokenizer.chat_template.tool_use")
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
    def grammar_limits(self) -> GrammarLimits:
        """What a request's grammar may cost (``local_settings.grammar_limits``, else the defaults)."""
        return self._grammar_limits

    @property
    def end_of_generation(self) -> list[int]:
        assert self._shared is not None
        return self._shared.end_of_generation

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("llama-cpp: this instance was loaded for embeddings only")
        return self._engine

    @property
    def kv_usage(self) -> float:
        return 0.0 if self._engine is None else self._engine.kv_usage

    def replicas(self) -> None:
        return None

    def close(self) -> None:
        shared, self._shared, self._engine = self._shared, None, None
        if shared is not None:
            shared.release()

    # -- chat and completions ---------------------------------------------------------------

    def chat(self, request: Mapping[str, Any], should_stop: ShouldStop, tools: ToolRequest,
             response_format: ResponseFormat) -> Pieces:
        """A chat completion's pieces; ``tools`` and ``response_format`` as the server parsed them.
        Checks the request now, then generates lazily."""
        prompt = self.chat_tokens(request, tools)
        self._check_length(prompt, "messages")
        params = read_params(self, request, response_format, chat=True)
        form = self.template.form
        plan = plan_calls(self.vocab, form, tools, params.grammar, self.grammar_limits)
        if plan is None and tools.offered:
            # Tools the model may not call (tool_choice none drops them from ``tools``): no call markup either.
            params = replace(params, stop=(*params.stop, form.trigger))
        return iter(self._generation([prompt], params, should_stop, plan))

    def complete(self, request: Mapping[str, Any], should_stop: ShouldStop) -> Pieces:
        """A completion's pieces, choice by choice for each prompt; checks the request now."""
        prompt = request["prompt"]
        if isinstance(prompt, str):
            prompts = [self.tokenize(prompt)]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = [self.tokenize(p) for p in prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
            prompts = [self._checked_ids(p, "prompt") for p in prompt]
        else:
            prompts = [self._checked_ids(prompt, "prompt")]
        for tokens in prompts:
            self._check_length(tokens, "prompt")
        return iter(self._generation(prompts, read_params(self, request, TEXT, chat=False), should_stop))

    def _check_length(self, tokens: list[int], param: str) -> None:
        if len(tokens) >= self._n_ctx:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {self._n_ctx} tokens. However, your {param} "
                f"resulted in {len(tokens)} tokens. Please reduce the length of the {param}.",
                param=param,
            )

    def _generation(self, prompts: list[list[int]], params: SamplingParams, should_stop: ShouldStop,
                    plan: CallPlan | None = None) -> Generation:
        return Generation(prompts, params, self, self.engine, self._n_ctx, should_stop, plan)

    # -- embeddings ---------------------------------------------------------------------------

    def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        """L2-normalised, pooled embeddings (mean pooling where the model declares none). Token
        ids are embedded as given, never detokenized and tokenized again."""
        assert self._shared is not None
        context, batch = self._shared.embedder()
        sequences = []
        items: list[str | list[int]] = list(inputs)
        for i, item in enumerate(items):
            if isinstance(item, list):
                tokens = self._checked_ids(item, "input")
            else:  # as Llama.embed tokenizes text
                tokens = self._model.tokenize(item.encode("utf-8"), add_bos=True, special=False)
            if not tokens:
                raise InvalidRequestError(f"input {i} has no tokens to embed", param="input")
            if len(tokens) > self._n_ctx:
                raise ContextLengthExceededError(
                    f"This model's maximum context length is {self._n_ctx} tokens, however input {i} has "
                    f"{len(tokens)} tokens. Please reduce the length of the input.", param="input")
            sequences.append(tokens)
        result = []
        width = self._model.n_embd()
        for tokens in sequences:
            with self._shared.embedding_lock:
                vector = embed_tokens(context, batch, width, tokens)
            norm = np.linalg.norm(vector)
            result.append((vector / norm if norm else vector).tolist())
        return result, sum(len(tokens) for tokens in sequences)
