"""Serving: from a validated request body to the OpenAI response, the same way for every backend.

- ``registrations``: the registration files (model name, operations, backend, defaults,
  overrides, policy), checked at start-up;
- ``fields`` and ``policy``: what a request sets, and whether the serving backend honours it
  (nothing silently ignored); ``merging``: defaults and overrides; ``output_filters``: the
  server's own cut/trim patterns (RE2);
- ``pool``: model instances, loading and the bounded queue; ``leases``: what a request holds of
  a pool (a lent instance, a queue place taken ahead); ``pools``: each registration's pool,
  and what a reload keeps of them; ``lifecycle``: idle unloading and the loaded-models cap;
  ``generation``: running a backend in worker threads, tracked per instance, cancelled when the
  client leaves;
- ``runtime``: the per-server object handlers reach through the lifespan state;
- ``base``: a per-API serving class (prepare once, answer locally or relay upstream);
  ``operations``: the serving object of each operation, which handlers call; ``text``: generated
  text, whole or streamed, shaped by the API (``chat``, ``completions``); ``embeddings``,
  ``tokenize``; ``vectors``: an embedding as floats or base64; ``streaming``: the SSE response,
  its first event and its late error event; ``upstream``: the relay to an ``openai-upstream``
  engine.

What it may import is in README's package table (``tests/test_layout.py``); never
:mod:`localai_runtime.http` or :mod:`localai_runtime.responses`. Handlers import ``runtime`` and
``operations``.
"""
