"""Request merging: objects key by key, arrays and scalars replace, overrides win."""

from __future__ import annotations

from localai_runtime.serving.merging import effective_request, merge


def test_request_wins_over_defaults_and_objects_merge_key_by_key():
    defaults = {"temperature": 0.7, "stop": ["a"], "x-localai-extensions": {"top_k": 40, "min_p": 0.05}}
    request = {"temperature": 0.1, "stop": ["b", "c"], "x-localai-extensions": {"top_k": 5}}
    assert merge(defaults, request) == {
        "temperature": 0.1, "stop": ["b", "c"], "x-localai-extensions": {"top_k": 5, "min_p": 0.05},
    }


def test_overrides_win_over_the_request():
    merged = effective_request({"max_tokens": 10}, {"max_tokens": 5000, "n": 2}, {"max_tokens": 256})
    assert merged == {"max_tokens": 256, "n": 2}


def test_null_in_the_request_is_a_value_and_inputs_are_not_modified():
    defaults = {"seed": 3, "x": {"a": 1}}
    request = {"seed": None, "x": {"b": 2}}
    assert merge(defaults, request) == {"seed": None, "x": {"a": 1, "b": 2}}
    assert defaults == {"seed": 3, "x": {"a": 1}} and request == {"seed": None, "x": {"b": 2}}


def test_a_scalar_replaces_an_object_and_back():
    assert merge({"a": {"b": 1}}, {"a": 2}) == {"a": 2}
    assert merge({"a": 2}, {"a": {"b": 1}}) == {"a": {"b": 1}}
