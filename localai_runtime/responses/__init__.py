"""The Responses API and Conversations, served on the chat-completion path.

A Responses request becomes a chat request (``items``: input items to messages; ``request``:
fields to chat fields; ``tools``: its flat tools parsed straight into tool objects), runs on the
same registrations, pools and backends as chat completions (``turn``: one admitted request and
its generation), and its pieces become output items and stream events (``output``, ``events``).
``service`` ties it to the store (``localai_runtime.store``) for chains, retrieval, background
runs and conversations. Handlers (``localai_runtime/handlers/responses.py``,
``localai_runtime/handlers/conversations.py``) import this package; ``serving`` and the backends
never do.
"""
