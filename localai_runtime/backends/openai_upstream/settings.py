"""The ``openai-upstream`` registration's ``local_settings``: schema, defaults and parsed form."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_PARALLEL = 64
DEFAULT_TIMEOUTS = {"connect": 5.0, "first_byte": 120.0, "idle": 60.0}

SETTINGS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "base_urls": {
            "type": "array", "minItems": 1, "uniqueItems": True,
            "items": {"type": "string", "pattern": "^https?://[^\\s/]+"},
            "description": "Replicas of one OpenAI-compatible engine, each up to its /v1 (http://host:8000/v1).",
        },
        "upstream_model": {"type": "string", "minLength": 1,
                           "description": "The model name the upstream knows (clients send the registration's)."},
        "api_key_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                        "description": "The environment variable holding the upstream's API key (optional)."},
        "timeouts": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "connect": {"type": "number", "exclusiveMinimum": 0},
                "first_byte": {"type": "number", "exclusiveMinimum": 0,
                               "description": "Until the answer (a stream: its first event) begins."},
                "idle": {"type": "number", "exclusiveMinimum": 0, "description": "Between two stream events."},
            },
            "description": "Seconds; defaults: connect 5, first_byte 120, idle 60.",
        },
        "honoured": {
            "oneOf": [{"const": "all"}, {"type": "array", "uniqueItems": True, "items": {"type": "string"}}],
            "description": ("Request fields the upstream honours: 'all' (every documented field), or a list "
                            "(an extension as x-localai-extensions.<key>, sent upstream as a top-level field)."),
        },
        "retries": {"type": "integer", "minimum": 0, "maximum": 16, "description": (
            "Other replicas tried after a connection error or a 5xx before the first byte "
            "(default: every other replica).")},
        "failures_to_cool": {"type": "integer", "minimum": 1, "maximum": 1000,
                             "description": "Failures in a row after which a replica cools down (default 3)."},
        "cooldown_seconds": {"type": "number", "minimum": 0, "maximum": 86400,
                             "description": "How long a failing replica rests before it is probed (default 10)."},
        "parallel": {"type": "integer", "minimum": 1, "maximum": 4096, "description": (
            f"Requests in flight to the upstream at once; more wait in the queue (default {DEFAULT_PARALLEL}).")},
    },
    "required": ["base_urls", "upstream_model"],
}


@dataclass(frozen=True)
class UpstreamSettings:
    base_urls: tuple[str, ...]
    upstream_model: str
    api_key_env: str | None
    connect: float
    first_byte: float
    idle: float
    honoured: frozenset[str] | None
    """None: every documented field."""
    retries: int
    failures_to_cool: int
    cooldown_seconds: float

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> UpstreamSettings:
        timeouts = {**DEFAULT_TIMEOUTS, **(values.get("timeouts") or {})}
        urls = tuple(str(url).rstrip("/") for url in values["base_urls"])
        honoured = values.get("honoured", "all")
        return cls(
            base_urls=urls, upstream_model=values["upstream_model"], api_key_env=values.get("api_key_env"),
            connect=float(timeouts["connect"]), first_byte=float(timeouts["first_byte"]),
            idle=float(timeouts["idle"]),
            honoured=None if honoured == "all" else frozenset(honoured),
            retries=int(values.get("retries", len(urls) - 1)),
            failures_to_cool=int(values.get("failures_to_cool", 3)),
            cooldown_seconds=float(values.get("cooldown_seconds", 10)),
        )

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None
