"""API keys and what each may do: the keys file, matching a presented key, scopes and limits.

``keys`` loads ``--keys-file`` (and the flat ``--api-key`` keys, which stay unrestricted) into a
:class:`~localai_runtime.access.keys.KeyRing`; ``limits`` keeps each key's request rate and
concurrency. The HTTP layer and serving may import this package; it imports only
``localai_runtime.errors`` and ``localai_runtime.spec``.
"""
