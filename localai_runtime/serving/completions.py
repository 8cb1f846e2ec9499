"""Legacy completions: the ``text_completion`` object, its chunks and its logprobs shape."""

from __future__ import annotations

from typing import Any

from localai_runtime.backends import ModelInstance
from localai_runtime.serving.policy import Prepared
from localai_runtime.serving.text import TextServing


def completion_logprobs(entries: list[dict[str, Any]] | None, offset: int = 0) -> dict[str, Any] | None:
    """The legacy completions logprobs object from the backend's per-token entries; ``offset``
    is where the entries' text starts in the choice's text."""
    if entries is None:
        return None
    offsets, position = [], offset
    for entry in entries:
        offsets.append(position)
        position += len(entry["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs") or []} for e in entries],
        "text_offset": offsets,
    }


class CompletionServing(TextServing):
    operation_id = "createCompletion"
    id_prefix = "cmpl"
    object = "text_completion"
    chunk_object = "text_completion"

    def generator(self, instance: ModelInstance, prepared: Prepared):  # noqa: ANN201 - the instance's generator
        return instance.complete

    def choice(self, index: int, text: str, finish: str, logprobs: list[dict[str, Any]] | None,
               calls: list[Any], legacy: bool) -> dict[str, Any]:
        return {"index": index, "text": text, "finish_reason": finish, "logprobs": completion_logprobs(logprobs)}

    def chunk_choice(self, index: int, text: str | None, finish: str | None,
                     logprobs: list[dict[str, Any]] | None, offset: int,
                     calls: list[Any], legacy: bool) -> dict[str, Any]:
        return {"index": index, "text": text or "", "finish_reason": finish,
                "logprobs": completion_logprobs(logprobs, offset)}
