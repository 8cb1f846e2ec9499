"""The scheduler thread: one llama.cpp context, N slots, one ``llama_decode`` per step.

Each step puts the next token of every decoding slot into one batch, fills the rest of the
batch (``n_batch`` tokens) with prompt chunks of admitted requests in arrival order (so a long
prompt is evaluated over several steps while the others keep streaming), decodes once, and
samples every slot that produced logits. A request waits for a free slot and takes the one whose
cached tokens share the longest prefix with its prompt. A failure ends only the requests it
touches: a sampling error ends its own request, a failed decode the requests in that batch.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from localai_runtime.backends.llama_cpp.engine.batch import Batch
from localai_runtime.backends.llama_cpp.engine.jobs import Job
from localai_runtime.backends.llama_cpp.engine.slot_sampling import SlotSampler
from localai_runtime.backends.llama_cpp.engine.threads import ThreadPool

logger = logging.getLogger(__name__)


class Slot:
    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.cached: list[int] = []
        """The tokens whose keys and values this slot's sequence holds, from position 0."""
        self.job: Job | None = None
        self.todo: list[int] = []
        """Prompt tokens still to evaluate."""
        self.next: int | None = None
        """The token sampled last, evaluated at the next step."""
        self.generated = 0
        self.admitted = 0
        self.adding: list[int] = []


class EngineClosed(RuntimeError):
    pass


class Engine:
    def __init__(self, model: internals.LlamaModel, params: Any, *, slots: int, verbose: bool = False) -> None:
        self._context = internals.LlamaContext(model=model, params=params, verbose=verbose)
        self.ctx = self._context.ctx
        self._threads = ThreadPool(self.ctx, params.n_threads)
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._vocab = model.vocab
        self.n_vocab = model.n_vocab()
        self.slot_context = llama_cpp.llama_n_ctx_seq(self.ctx)
        """Tokens of context each slot holds."""
        self.n_batch = llama_cpp.llama_n_batch(self.ctx)
        self._n_swa = llama_cpp.llama_model_n_swa(model.model)
        self._batch = Batch(self.n_batch)
        self.slots = [Slot(i) for i in range(slots)]
        self._waiting: deque[Job] = deque()
        self._arrivals = 0
        self._wake = threading.Condition()
        self._closing = False
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name="llama-cpp-engine", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def busy_slots(self) -> int:
        return sum(1 for slot in self.slots if slot.job is not None)

    @property
    def kv_usage(self) -> float:
        """The share of the KV cells that running requests hold (read from any thread; a request
        that left no longer counts, though its slot is freed only at the next step)."""
        running = [slot for slot in self.slots if (job := slot.job) is not None and not job.cancelled]
        return sum(len(slot.cached) for slot in running) / (len(self.slots) * self.slot_context)

    def submit(self, prompt: list[int], sampler: SlotSampler, budget: int, should_stop: Callable[[], bool]) -> Job:
        """Queue a generation of at most ``budget`` tokens after ``prompt`` (which fits a slot);
        the engine owns ``sampler`` from now on and closes it when the job ends."""
        job = Job(prompt, sampler, budget, should_stop, lambda: self.alive)
        with self._wake:
            if self._closing or not self.alive:
                job.end(None, EngineClosed("llama-cpp: the model is being unloaded" if self._closing
                                           else "llama-cpp: the model's engine stopped"))
                return job
            self._waiting.append(job)
            self._wake.notify()
        return job

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        self._threads.close()
        self._context.close()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                with self._wake:
                    self._admit()
                    while not self._closing and not self._waiting and not any(s.job for s in self.slots):
                        self._wake.wait()
                        self._admit()
                    if self._closing:
                        break
                self._step()
            except Exception as exc:  # noqa: BLE001 - a bug here must not strand every reader
                logger.exception("llama-cpp engine step failed")
                for slot in self.slots:
                    if slot.job is not None:
                        self._forget(slot)
                        self._end(slot, None, exc)
        closed = EngineClosed("llama-cpp: the model was unloaded")
        for slot in self.slots:
            if slot.job is not None:
                self._end(slot, None, closed)
        while self._waiting:
            self._waiting.popleft().end(None, closed)

    def _admit(self) -> None:
        """Give waiting jobs free slots (called holding the lock); drop jobs whose reader left."""
        for job in [job for job in self._waiting if job.cancelled]:
            self._waiting.remove(job)
            job.end(None)
        free = [slot for slot in self.slots if slot.job is None]
        while self._waiting and free:
            job = self._waiting.popleft()
            shared, _, slot = max(((_shared(s.cached, job.prompt), -len(s.cached), s) for s in free),
                                  key=lambda choice: choice[:2])
            free.remove(slot)
            self._assign(slot, job, shared)

    def _assign(self, slot: Slot, job: Job, shared: int) -> None:
        """Give ``slot``, whose cache begins with ``shared`` tokens of the prompt, to ``job``."""
        keep = min(shared, len(job.prompt) - 1)  # at least one token to evaluate
        if keep > 0 and self._n_swa > 0:
            # A sliding-window cache keeps only the last window of positions: reuse needs the
            # window before ``keep`` (llama.cpp's server makes the same check).
            first = llama_cpp.llama_memory_seq_pos_min(self._memory, slot.seq)
            if first > 0 and first >= keep - self._n_swa:
                keep = 0
        if keep < len(slot.cached):
            if not llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, keep, -1):
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
                keep = 0
            del slot.cached[keep:]
        job.cached = keep
        self._arrivals += 1
        slot.job, slot.todo, slot.next, slot.generated, slot.admitted = job, job.prompt[keep:], None, 0, self._arrivals

    def _step(self) -> None:
        n = 0
        outputs: list[tuple[Slot, int]] = []
        used: list[Slot] = []
        for slot in self.slots:
            job = slot.job
            if job is None:
                continue
            if job.cancelled:
                self._end(slot, None)
            elif slot.next is not None:
                n = self._add(slot, [slot.next], n, outputs, used)
        prefilling = sorted((s for s in self.slots if s.job is not None and s.next is None), key=lambda s: s.admitted)
        for slot in prefilling:
            if n >= self.n_batch:
                break
            n = self._add(slot, slot.todo[:self.n_batch - n], n, outputs, used)
        if n == 0:
            return
        self._batch.struct.n_tokens = n
        status = llama_cpp.llama_decode(self.ctx, self._batch.struct)
        self.steps += 1
        if status != 0:
            failure = RuntimeError(f"llama-cpp: decoding failed (llama_decode returned {status})")
            for slot in used:
                self._forget(slot)
                self._end(slot, None, failure)
            return
        for slot in used:
            slot.cached.extend(slot.adding)
            if slot.next is None:
                del slot.todo[:len(slot.adding)]
        for slot, index in outputs:
            self._sample(slot, index)

    def _add(self, slot: Slot, tokens: list[int], n: int, outputs: list[tuple[Slot, int]], used: list[Slot]) -> int:
        """Put ``tokens`` of ``slot`` at batch index ``n`` on, after its cached ones; its last
        token gives logits when it is the last one the slot has to evaluate (a decoding slot's
        token, or the end of its prompt). Returns the next free index."""
        end = self._batch.put(n, tokens, len(slot.cached), slot.seq)
        if slot.next is not None or len(tokens) == len(slot.todo):
            self._batch.logits[end - 1] = 1
            outputs.append((slot, end - 1))
        slot.adding = tokens
        used.append(slot)
        return end

    def _sample(self, slot: Slot, index: int) -> None:
        job = slot.job
        assert job is not None
        try:
            token, logprob = job.sampler.sample(self.ctx, index)
        except Exception as exc:  # noqa: BLE001 - ends this request only
            self._end(slot, None, exc)
            return
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._end(slot, "stop")
            return
        job.emit(token, logprob)
        slot.generated += 1
        if slot.generated >= job.budget:
            self._end(slot, "length")
        else:
            slot.next = token

    def _end(self, slot: Slot, finish: str | None, error: BaseException | None = None) -> None:
        job, slot.job, slot.next, slot.todo = slot.job, None, None, []
        if job is not None:
            job.end(finish, error)

    def _forget(self, slot: Slot) -> None:
        """Drop a slot's cache (after a failed decode its state is unknown)."""
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
        slot.cached = []


def _shared(cached: list[int], prompt: list[int]) -> int:
    """The length of the common prefix of two token lists."""
    m = min(len(cached), len(prompt))
    if m == 0 or cached[0] != prompt[0]:
        return 0
    differs = np.flatnonzero(np.asarray(cached[:m]) != np.asarray(prompt[:m]))
    return int(differs[0]) if differs.size else m
