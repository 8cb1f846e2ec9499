"""Anthropic's Messages API, served on the chat-completion path from Anthropic's own document.

A Messages request (validated against Anthropic's schemas, weighed by the same policy) becomes a
chat request (``request``: system, text/tool_use/tool_result blocks, tools and tool_choice for
the same grammar engine), runs on the same registrations, pools and backends as chat
completions, and its pieces become content blocks and Anthropic's stream events (``content``);
``service`` holds the serving objects of ``messages_post``, ``beta_messages_post`` and their
``count_tokens``. The handler module (``localai_runtime/handlers/anthropic.py``) imports this
package; ``serving``, ``http`` and the backends never do.
"""
