"""Tool calling and structured output, the same for every backend that can do them.

- ``request``: a chat request's tools, tool choice and tool messages, normalised (the legacy
  ``functions``/``function_call`` pair included) and checked: every mistake is a 400 naming the
  field, before the request waits for a model;
- ``formats``: the call formats models are trained on, as one table of data (markers, how a
  call is written, how calls are found in text), and how a template's format is recognised;
- ``grammar``: GBNF for a model's native call wrapper around ``{"name", "arguments"}``, so
  arguments always parse and match the tool's schema;
- ``grammar_limits``: what one request's grammar may cost (a registration's ``grammar_limits``),
  and the check of a JSON Schema against it before it is converted;
- ``gbnf_limits``: the same check of a GBNF text before llama.cpp parses it;
- ``grammar_checks``: every grammar input of one request measured against those limits, as the
  serving layer does before the request waits for a model instance;
- ``parsing``: splitting generated text into content and calls, whole or as it streams;
- ``response_format``: what the answer must be (text, a JSON object, JSON of a schema), parsed once;
- ``lark``, ``patterns`` and ``custom_grammar``: a custom tool's Lark or regex grammar read and
  written as GBNF for its call's ``{"input": "<text>"}``.

Imports nothing of the server but :mod:`localai_runtime.errors`; ``serving`` and the backends
import it.
"""
