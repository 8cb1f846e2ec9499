"""The document: OpenAI's OpenAPI 3.1 document, our fragments and the operator's patches, built
into the one document the server routes, validates and serves.

- ``files``: reading YAML/JSON files (libyaml), the parse cache and its directory;
- ``patching``: JSON Patch and Overlay 1.0 files applied in name order;
- ``build``: the pipeline (upstream document, ``spec/`` fragments, ``patches/``) and its
  operations;
- ``schemas``: JSON Schema 2020-12 validation over the document (plus OpenAPI 3.0's
  ``nullable``);
- ``schema_errors``: which failure to report (inside a ``oneOf``/``anyOf``, the branch the
  request chose), worded as OpenAI words it, with its field and its ``code``;
- ``request_schemas``: each operation's request body schema and its top-level fields.

Nothing here imports connexion, starlette or the serving code; everything else may import it.
"""
