"""A request's side of the engine: its prompt and sampler go in, sampled tokens come out.

The request's worker thread submits a :class:`Job` and reads its tokens; the scheduler thread
emits them and ends the job once (end of generation, the token budget, told to stop, or an
error). A reader that stops early (a stop string) leaves; the scheduler frees the slot at its
next step.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localai_runtime.backends.llama_cpp.engine.slot_sampling import SlotSampler

READ_CHECK_S = 5.0
"""How often a reader waiting for a token checks that the scheduler is still running."""


@dataclass(frozen=True)
class Ended:
    finish: str | None
    """``stop`` (end of generation), ``length`` (the budget), or None: told to stop."""
    error: BaseException | None = None


class Job:
    def __init__(self, prompt: list[int], sampler: SlotSampler, budget: int, should_stop: Callable[[], bool],
                 alive: Callable[[], bool]) -> None:
        self.prompt = prompt
        self.sampler = sampler
        self.budget = budget
        self.should_stop = should_stop
        self.cached = 0
        """Prompt tokens found in the slot's cache (not evaluated again); set when admitted."""
        self.finish: str | None = None
        self._left = False
        self._alive = alive
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()

    # -- the scheduler's side ---------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._left or self.should_stop()

    def emit(self, token: int, logprob: dict[str, Any] | None) -> None:
        self._events.put((token, logprob))

    def end(self, finish: str | None, error: BaseException | None = None) -> None:
        self.sampler.close()
        self._events.put(Ended(finish, error))

    # -- the reader's side ------------------------------------------------------------------

    def tokens(self) -> Iterator[tuple[int, dict[str, Any] | None]]:
        """Sampled tokens and their logprob entries until the job ends (then :attr:`finish` says
        why); the error that ended it is raised here."""
        while True:
            try:
                item = self._events.get(timeout=READ_CHECK_S)
            except queue.Empty:
                if not self._alive():
                    raise RuntimeError("llama-cpp: the model's engine stopped") from None
                continue
            if isinstance(item, Ended):
                if item.error is not None:
                    raise _own(item.error)
                self.finish = item.finish
                return
            yield item

    def leave(self) -> None:
        """The reader wants no more tokens: the slot is freed at the scheduler's next step."""
        self._left = True


def _own(error: BaseException) -> BaseException:
    """An exception for this reader alone: one failure can end several jobs, and raising one
    object in several threads would mix their tracebacks."""
    try:
        copy = type(error)(*error.args)
    except Exception:  # noqa: BLE001 - an exception that cannot be rebuilt is raised as it is
        return error
    copy.__dict__.update(error.__dict__)
    copy.__cause__ = error.__cause__
    return copy
