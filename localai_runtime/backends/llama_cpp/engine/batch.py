"""The engine's ``llama_batch``, its arrays owned by numpy.

``llama_batch_init`` allocates each token's sequence-id array on its own, so writing a token's
sequence would mean one numpy view per token or one ctypes call per token per step. Here the
sequence ids are one contiguous array and each token's ``seq_id`` pointer points at its element: a
chunk of tokens is written with a few slice assignments. The struct is only read by
``llama_decode``; nothing here is freed by llama.cpp.
"""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np


class Batch:
    def __init__(self, size: int) -> None:
        self.token = np.zeros(size, dtype=np.int32)
        self.pos = np.zeros(size, dtype=np.int32)
        self.seq = np.zeros(size, dtype=np.int32)
        self.logits = np.zeros(size, dtype=np.int8)
        self._n_seq_id = np.ones(size, dtype=np.int32)
        self._seq_pointers = np.arange(size, dtype=np.uintp) * self.seq.itemsize + self.seq.ctypes.data
        self.struct = llama_cpp.llama_batch(
            n_tokens=0,
            token=self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token)),
            embd=None,
            pos=self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos)),
            n_seq_id=self._n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
            seq_id=self._seq_pointers.ctypes.data_as(ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id))),
            logits=self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )

    def put(self, index: int, tokens: list[int], first_position: int, seq: int) -> int:
        """Write ``tokens`` of sequence ``seq`` from ``index`` on, at positions from
        ``first_position``, none giving logits yet; returns the index after them."""
        end = index + len(tokens)
        self.token[index:end] = tokens
        self.pos[index:end] = np.arange(first_position, first_position + len(tokens))
        self.seq[index:end] = seq
        self.logits[index:end] = 0
        return end
