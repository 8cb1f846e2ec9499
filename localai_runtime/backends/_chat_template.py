"""A chat template as gpt4all's adapter renders it: compiled as Hugging Face and llama.cpp
compile them, rendered on plain messages, a render failure a 400 naming ``messages``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localai_runtime.backends._text import plain_messages
from localai_runtime.errors import InvalidRequestError

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def compile_template(template: str) -> jinja2.Template:
    """A chat template compiled the way Hugging Face and llama.cpp render them."""
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(template)


def render_chat(template: jinja2.Template, messages: Sequence[Mapping[str, Any]], *,
                bos_token: str = "", eos_token: str = "", add_generation_prompt: bool = True) -> str:
    """The prompt for ``messages``; gpt4all adds BOS itself, so ``bos_token`` stays empty."""
    try:
        return template.render(messages=plain_messages(messages), bos_token=bos_token, eos_token=eos_token,
                               add_generation_prompt=add_generation_prompt)
    except (ValueError, jinja2.TemplateError) as exc:
        raise InvalidRequestError(f"the chat template cannot render these messages: {exc}",
                                  param="messages") from exc
