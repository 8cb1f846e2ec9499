"""The ``openai-upstream`` backend: this server as the front door of an existing engine.

A registration names one or more replicas of an OpenAI-compatible engine (vLLM, llama.cpp's
``llama-server``, Ray Serve, KServe, another localai-runtime). Requests are validated, merged
and policed here as for any backend, then sent to the replica with the fewest requests in
flight; connection errors and 5xx answers before the first byte fail over to another replica,
and a replica that keeps failing rests, then is probed before it is used again.

- ``settings``: the ``local_settings`` schema and its parsed form.
- ``replicas``: choosing a replica, its health, cooldown and counters.
- ``transport``: a lean HTTP/1.1 client, kept-alive connections per replica.
- ``client``: sending a request with failover, and what counts against a replica.
- ``answer``: reading an answer or a stream within the timeouts.
- ``failures``: upstream errors in OpenAI's shape, naming the replica.
- ``streams``: reading server-sent events, and chat chunks as pieces (for the Responses API).
- ``backend``: the adapter itself (entry point ``openai-upstream``).

Imports the standard library, ``localai_runtime.errors``, ``localai_runtime.tools`` and the backend
contract; nothing of the HTTP layer or of serving (serving imports this, through the registry).
"""

from localai_runtime.backends.openai_upstream.backend import OpenAIUpstreamBackend

__all__ = ["OpenAIUpstreamBackend"]
