"""Tool calls on llama-cpp: the call grammar, and the two-phase generation of ``auto``.

``required`` and a named function generate the whole turn under the call grammar (the model's
native frame around ``{"name": <allowed name>, "<key>": <that tool's parameters>}``).
``auto`` generates freely with the format's trigger as a stop string; when the model starts a
call, generation goes on from the trigger under the call grammar (the prompt prefix is still in
the cache, so only the new text is evaluated), and the arguments always parse and match the
schema. Text before the trigger is the message's content; nothing of the markup reaches it.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

from localai_runtime.backends.abstract import Piece
from localai_runtime.backends.llama_cpp.engine.grammar import LazyGrammar
from localai_runtime.backends.llama_cpp.engine.params import SamplingParams
from localai_runtime.backends.llama_cpp.generation import Generation
from localai_runtime.backends.llama_cpp.json_grammar import schema_to_gbnf
from localai_runtime.backends.llama_cpp.sampling import compile_grammar
from localai_runtime.tools.formats import CallFormat
from localai_runtime.tools.grammar import call_rules, either, framed
from localai_runtime.tools.grammar_limits import GrammarLimits
from localai_runtime.tools.parsing import CallScanner
from localai_runtime.tools.request import REQUIRED, ToolRequest


def plan_calls(vocab: Any, form: CallFormat, tools: ToolRequest, answer: LazyGrammar | None,
               limits: GrammarLimits) -> CallPlan | None:
    """The plan for a request's calls (None when it allows none); ``answer`` is the grammar a
    structured answer follows; each grammar is checked against ``limits`` before it is built.
    Every error is a 400 now."""
    if not tools.calls:
        return None
    rules = call_rules(form, tools, schema_to_gbnf, limits)  # each tool's grammar built and checked once
    calls = framed(form, tools, rules)
    whole = None
    if tools.mode == REQUIRED:
        whole = compile_grammar(vocab, calls, "tools", limits)
    elif answer is not None:  # auto with a structured answer: a call, or the answer
        whole = compile_grammar(vocab, either(calls, answer.text), "response_format", limits)
    after = compile_grammar(vocab, framed(form, tools, rules, skip=form.trigger), "tools", limits)
    return CallPlan(form, tools, whole, after, "function_call" if tools.legacy else "tool_calls")


@dataclass(frozen=True)
class CallPlan:
    """A :class:`~.generation.Plan`: how a choice of a request that may call tools is generated."""

    form: CallFormat
    tools: ToolRequest
    whole: LazyGrammar | None
    """The grammar of the whole answer: calls only (required), or calls or a structured answer."""
    after_trigger: LazyGrammar
    """The grammar that takes over once the model wrote the trigger (auto)."""
    finish: str

    def choice(self, generation: Generation, prompt: list[int], index: int,
               params: SamplingParams) -> Generator[Piece, None, bool]:
        """One choice; returns True when told to stop."""
        form = self.form
        if self.whole is not None:
            scanner = CallScanner(form)
            decoded = yield from _calls(generation.decode(prompt, replace(params, grammar=self.whole, stop=())),
                                        scanner, index, form.opening)
            if decoded.finish is None:
                return True
            used, cached = decoded.tokens, decoded.cached
        else:
            free = yield from generation.pieces(prompt, replace(params, stop=(*params.stop, form.trigger)), index)
            if free.finish is None:
                return True
            if free.stopped_by != form.trigger:
                yield Piece(free.tail, index, finish_reason=free.finish, prompt_tokens=len(prompt),
                            completion_tokens=free.tokens, cached_tokens=free.cached, stop_sequence=free.stopped_by)
                return False
            # The model began a call: go on from the trigger under the call grammar.
            continued = prompt + generation.codec.tokenize_more(free.content + form.trigger)
            budget = None if params.max_tokens is None else max(0, params.max_tokens - free.tokens)
            scanner = CallScanner(form, skip=form.trigger)
            calling = replace(params, grammar=self.after_trigger, stop=(), max_tokens=budget)
            decoded = yield from _calls(generation.decode(continued, calling), scanner, index, "")
            if decoded.finish is None:
                return True
            used, cached = free.tokens + decoded.tokens, free.cached
        finish = self.finish if scanner.complete else decoded.finish
        yield Piece("", index, finish_reason=finish, prompt_tokens=len(prompt), completion_tokens=used,
                    cached_tokens=cached)
        return False


def _calls(decoding, scanner: CallScanner, index: int, frame: str) -> Generator[Piece, None, Any]:
    """Pieces of a decoding under the call grammar: a structured answer's text when it is not a
    call (auto with a response_format), else the calls as they are written."""
    text = ""
    calling: bool | None = None if frame else True
    while True:
        try:
            chunk, _logprobs = next(decoding)
        except StopIteration as done:
            if calling is None and text:  # shorter than the frame: an answer
                yield Piece(text, index)
            return done.value
        if calling is None:
            text += chunk
            if frame.startswith(text):
                continue
            calling = text.startswith(frame)
            chunk, text = text, ""
        if calling:
            deltas = scanner.feed(chunk)
            if deltas:
                yield Piece("", index, tool_calls=deltas)
        else:
            yield Piece(chunk, index)

