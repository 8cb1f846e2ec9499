"""A loaded llama-cpp model's tokens: text to ids and back, and the tokenize operations.

:class:`Tokens` is a base class of :class:`~localai_runtime.backends.llama_cpp.instance.LlamaCppInstance`
and uses what the instance sets up: ``_model`` (the loaded weights), ``vocab``, ``n_vocab``,
``template``, ``_n_ctx``, ``_pieces`` and ``_preserved``. A chat prompt's tokens come from
:meth:`Tokens.chat_tokens` for chat completions and for tokenize's chat form alike, so a tokenize
count equals the chat completion's ``usage.prompt_tokens`` by construction. It is the
:class:`~localai_runtime.backends.llama_cpp.decoding.Codec` a generation decodes with.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Any

import llama_cpp
from llama_cpp import _internals as internals

from localai_runtime.backends._text import plain_messages, request_value
from localai_runtime.backends.llama_cpp.templates import ChatTemplate
from localai_runtime.errors import InvalidRequestError
from localai_runtime.tools.request import ToolRequest, modern_messages


class Tokens:
    _model: internals.LlamaModel
    template: ChatTemplate
    vocab: Any
    n_vocab: int
    _n_ctx: int
    _pieces: dict[int, bytes]
    _preserved: set[int]

    @property
    def context_size(self) -> int:
        """The context in tokens (what tokenize answers as ``max_model_len``)."""
        return self._n_ctx

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` as a completion prompt (with BOS where the model adds one)."""
        tokens = self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        bos = self._model.token_bos()  # a chat template may have written it already
        if bos >= 0 and llama_cpp.llama_vocab_get_add_bos(self.vocab) and tokens[:1] != [bos]:
            tokens.insert(0, bos)
        return tokens

    def tokenize_more(self, text: str) -> list[int]:
        """Tokens of ``text`` that continue a prompt (no BOS; special tokens parsed)."""
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def chat_tokens(self, request: Mapping[str, Any], tools: ToolRequest | None, generation_prompt: bool = True,
                    *, special: bool = False) -> list[int]:
        """The prompt a chat completion evaluates for the request's messages and ``tools``;
        ``special`` adds the model's BOS on top of what the template writes (vLLM's chat form
        with ``add_special_tokens``)."""
        prompt = self.template.render(plain_messages(modern_messages(request["messages"])), tools, generation_prompt)
        if not special:
            return self.tokenize(prompt)
        bos = self._model.token_bos()
        head = [bos] if bos >= 0 and llama_cpp.llama_vocab_get_add_bos(self.vocab) else []
        return head + self.tokenize_more(prompt)

    def tokenize_request(self, request: Mapping[str, Any], tools: ToolRequest) -> tuple[list[int], list[str] | None]:
        """A tokenize request's tokens (its ``prompt``, or its ``messages`` and ``tools``, parsed as
        chat parses them) and, with ``return_token_strs``, each token's string in the vocabulary."""
        special = request.get("add_special_tokens")
        if request.get("messages") is not None:
            tokens = self.chat_tokens(request, tools, request_value(request, "add_generation_prompt", True),
                                      special=bool(special))
        elif special is False:
            tokens = self.tokenize_more(request["prompt"])
        else:
            tokens = self.tokenize(request["prompt"])
        if not request_value(request, "return_token_strs", False):
            return tokens, None
        return tokens, [llama_cpp.llama_vocab_get_text(self.vocab, t).decode("utf-8", "replace") for t in tokens]

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``, special tokens written as their text (llama.cpp's own detokenizer,
        which also drops the space a SentencePiece vocabulary puts before the first word)."""
        if not all(isinstance(t, int) and 0 <= t < self.n_vocab for t in tokens):
            raise InvalidRequestError(f"token ids must be integers from 0 to {self.n_vocab - 1}", param="tokens")
        if not tokens:
            return ""
        ids = (llama_cpp.llama_token * len(tokens))(*tokens)
        size = 64 + 16 * len(tokens)
        for _ in range(2):
            buffer = ctypes.create_string_buffer(size)
            written = llama_cpp.llama_detokenize(self.vocab, ids, len(tokens), buffer, size, False, True)
            if written >= 0:
                return buffer.raw[:written].decode("utf-8", "replace")
            size = -written  # too small: llama.cpp says how much it needs
        raise RuntimeError("llama-cpp: detokenizing failed")

    def _special_text(self, token: int) -> str:
        return "" if token < 0 else self._model.detokenize([token], special=True).decode("utf-8", "replace")

    def piece(self, token: int) -> bytes:
        """The bytes ``token`` writes (cached); a call format's special markers keep their text."""
        piece = self._pieces.get(token)
        if piece is None:
            buffer = ctypes.create_string_buffer(256)
            special = token in self._preserved
            size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, special)
            if size < 0:  # the piece is longer than the buffer: llama.cpp says how long
                buffer = ctypes.create_string_buffer(-size)
                size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, special)
            if size < 0:
                raise RuntimeError(f"llama-cpp: token {token} has no text piece")
            piece = self._pieces[token] = buffer.raw[:size]
        return piece

    def logprob_entry(self, token: int, logprob: float) -> dict[str, Any]:
        """``token`` and its logprob as OpenAI's logprob entry."""
        data = self.piece(token)
        return {"token": data.decode("utf-8", "replace"), "logprob": float(logprob), "bytes": list(data)}

    def _checked_ids(self, ids: Sequence[Any], param: str) -> list[int]:
        if not ids or not all(isinstance(t, int) and 0 <= t < self.n_vocab for t in ids):
            raise InvalidRequestError(f"token ids must be a non-empty list of integers below {self.n_vocab}",
                                      param=param)
        return list(ids)
