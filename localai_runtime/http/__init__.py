"""HTTP: the ASGI app built on connexion and starlette.

- ``app``: the app factory (routing of every operation, middleware, lifespan);
- ``openapi31``: OpenAPI 3.1 in connexion 3.3 through its documented extension points;
- ``errors``: exceptions as OpenAI's error envelope, the app's error handler;
- ``middleware``: keys, body limits, 501s; ``dispatch``: calling handlers with the
  validated body; ``routing``: handler or 501 per operation;
- ``document_views``: ``/openapi.json``, ``/openapi.yaml`` and Swagger UI.

May import :mod:`localai_runtime.spec`, :mod:`localai_runtime.serving.operations` and the backends; nothing
but the CLI and the package's ``create_app`` imports it.
"""
