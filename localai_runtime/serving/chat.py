"""Chat completions: the ``chat.completion`` object and its stream chunks."""

from __future__ import annotations

from typing import Any

from localai_runtime.backends import ModelInstance


def chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Chat's logprobs object from the backend's per-token entries (token, logprob, bytes, top_logprobs)."""
    return None if entries is None else {"content": entries, "refusal": None}


class ChatFormat:
    id_prefix = "chatcmpl"
    object = "chat.completion"
    chunk_object = "chat.completion.chunk"

    def method(self, instance: ModelInstance):  # noqa: ANN201 - the instance's generator
        return instance.chat

    def choice(self, index: int, text: str, finish: str, logprobs: list[dict[str, Any]] | None) -> dict[str, Any]:
        return {"index": index, "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": finish, "logprobs": chat_logprobs(logprobs)}

    def chunk_choice(self, index: int, text: str | None, finish: str | None,
                     logprobs: list[dict[str, Any]] | None, offset: int) -> dict[str, Any]:
        delta: dict[str, Any] = {"content": text} if text else {}
        return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": chat_logprobs(logprobs)}

    def opening_choices(self, n: int) -> list[dict[str, Any]]:
        return [{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                 "logprobs": None} for index in range(n)]


FORMAT = ChatFormat()
