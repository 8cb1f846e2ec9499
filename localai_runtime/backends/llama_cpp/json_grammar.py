"""JSON Schema to GBNF, with strings that are valid JSON.

llama-cpp-python's converter writes string characters as ``[^"\\]``, which lets a model put raw
control characters (a newline, a tab) inside a JSON string: the arguments of a call, or a
structured answer, then fail to parse. llama.cpp's own converter, and the ``JSON_GBNF`` grammar
beside it, exclude them; this applies the same rule to every converted schema.
"""

from __future__ import annotations

import re

from llama_cpp.llama_grammar import json_schema_to_gbnf

_LOOSE_CHAR = re.compile(r'^char ::= \[\^"\\\\\]', re.MULTILINE)
_STRICT_CHAR = r'char ::= [^"\\\\\\x7F\\x00-\\x1F]'


def schema_to_gbnf(schema_json: str) -> str:
    return _LOOSE_CHAR.sub(_STRICT_CHAR, json_schema_to_gbnf(schema_json))
