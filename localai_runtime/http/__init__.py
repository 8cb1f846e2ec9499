"""HTTP: the ASGI app built on connexion and starlette.

- ``app``: the app factory (routing of every operation, middleware, lifespan);
- ``openapi31``: OpenAPI 3.1 in connexion 3.3 through its documented extension points;
- ``errors``: exceptions as OpenAI's error envelope, the app's error handler;
- ``middleware``: keys, body limits, 501s; ``dispatch``: calling handlers with the
  validated body; ``routing``: handler or 501 per operation; ``fast_routes`` and
  ``fast_validation``: the hot operations' routing and body validation without connexion's
  per-request work;
- ``document_views``: ``/openapi.json``, ``/openapi.yaml`` and Swagger UI; ``metrics``:
  ``/metrics``; ``reloading``: taking a changed configuration while serving.

What it may import is in README's package table (``tests/test_layout.py``); nothing but the CLI
and the package's ``create_app`` imports it.
"""
