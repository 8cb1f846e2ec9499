"""The server's Prometheus metrics: vLLM's names and ``model_name`` label, and ``localai_`` ones.

Counters and histograms are fed as requests run (:class:`RequestMetrics`, one per generation
request); the gauges of running and waiting requests and loaded models are read from the model
pools when scraped (:class:`_PoolCollector`), so they are exact at every scrape, return to 0 when
requests end however they end, and a scrape never loads a model. Label values are bounded: a
model label is always a registered model name, operation labels come from the document and
status codes and error codes from this server's own code.

``vllm:kv_cache_usage_perc`` is the share of a batching engine's KV cells that running requests
hold (0 for backends without one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from localai_runtime.observability.upstreams import UpstreamCollector, Upstreams

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MODEL = ["model_name"]

_LATENCY = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
            40.0, 80.0, 160.0, 640.0, 2560.0)
_TOKENS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
_LOAD = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class PoolState(Protocol):
    @property
    def busy(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def loaded(self) -> bool: ...
    @property
    def kv_usage(self) -> float: ...


class _PoolCollector(Collector):
    def __init__(self, pools: Callable[[], Iterable[tuple[str, PoolState]]], models: Callable[[], Iterable[str]]):
        self._pools = pools
        self._models = models

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families :meth:`collect` yields, without reading the pools: the registry asks
        when the collector is registered, before the server has made its pools."""
        return _PoolCollector(tuple, tuple).collect()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        running = GaugeMetricFamily("vllm:num_requests_running", "Requests generating right now.", labels=MODEL)
        waiting = GaugeMetricFamily("vllm:num_requests_waiting", "Requests waiting for a model instance.",
                                    labels=MODEL)
        usage = GaugeMetricFamily("vllm:kv_cache_usage_perc", "KV-cache use by running requests, 0 to 1.",
                                  labels=MODEL)
        loaded = GaugeMetricFamily("localai_model_loaded", "1 if an instance of the model is loaded.", labels=MODEL)
        totals: dict[str, list[float]] = {model: [0, 0, 0, 0.0] for model in self._models()}
        pools = list(self._pools())
        for model, pool in pools:
            entry = totals.setdefault(model, [0, 0, 0, 0.0])
            entry[0] += pool.busy
            entry[1] += pool.waiting
            entry[2] = max(entry[2], int(pool.loaded))
            entry[3] = max(entry[3], pool.kv_usage)  # registrations of a model may share one engine
        for model, (busy, queued, is_loaded, kv) in sorted(totals.items()):
            running.add_metric([model], busy)
            waiting.add_metric([model], queued)
            usage.add_metric([model], kv)
            loaded.add_metric([model], is_loaded)
        count = GaugeMetricFamily("localai_models_loaded", "Registrations with a loaded model.")
        count.add_metric([], sum(int(pool.loaded) for _, pool in pools))
        yield from (running, waiting, usage, loaded, count)


class Metrics:
    """One server's metrics, in a registry of its own."""

    def __init__(self, pools: Callable[[], Iterable[tuple[str, PoolState]]],
                 models: Callable[[], Iterable[str]], upstreams: Upstreams = tuple) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        registry.register(_PoolCollector(pools, models))
        registry.register(UpstreamCollector(upstreams))
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens processed.", MODEL, registry=registry)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated.", MODEL, registry=registry)
        self.success = Counter("vllm:request_success", "Requests finished, by why they finished.",
                               [*MODEL, "finished_reason"], registry=registry)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time from arrival to the first token.",
                              MODEL, buckets=_LATENCY, registry=registry)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Time between two output pieces.", MODEL,
                             buckets=_LATENCY, registry=registry)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Time from arrival to the last token.", MODEL,
                             buckets=_LATENCY, registry=registry)
        self.queue = Histogram("vllm:request_queue_time_seconds", "Time waiting for a model instance (and its load).",
                               MODEL, buckets=_LATENCY, registry=registry)
        self.request_prompt = Histogram("vllm:request_prompt_tokens", "Prompt tokens per request.", MODEL,
                                        buckets=_TOKENS, registry=registry)
        self.request_generation = Histogram("vllm:request_generation_tokens", "Generated tokens per request.",
                                            MODEL, buckets=_TOKENS, registry=registry)
        self.http = Counter("localai_http_requests", "HTTP requests by operation and status.",
                            ["operation_id", "status"], registry=registry)
        self.errors = Counter("localai_errors", "Error answers and stream error events, by error code.", ["code"],
                              registry=registry)
        self.loads = Counter("localai_model_loads", "Model loads, by outcome.", [*MODEL, "outcome"],
                             registry=registry)
        self.unloads = Counter("localai_model_unloads", "Model unloads, by reason.", [*MODEL, "reason"],
                               registry=registry)
        self.reloads = Counter("localai_config_reloads", "Configuration reloads, by outcome (applied, failed).",
                               ["outcome"], registry=registry)
        self.config = Gauge("localai_config_info", "The active configuration (its files' sha256).", ["config_hash"],
                            registry=registry)
        self._series: dict[str, _ModelSeries] = {}
        self.load_seconds = Histogram("localai_model_load_seconds", "Time to load a model's instances.", MODEL,
                                      buckets=_LOAD, registry=registry)

    def configuration(self, digest: str) -> None:
        """The active configuration's hash, as the one series of ``localai_config_info``."""
        self.config.clear()
        self.config.labels(digest).set(1)

    def request(self, model: str) -> RequestMetrics:
        series = self._series.get(model)
        if series is None:  # labels() costs microseconds a call: looked up once per model
            series = self._series[model] = _ModelSeries(self, model)
        return RequestMetrics(series)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ModelSeries:
    """One model's series (its ``labels()`` children)."""

    def __init__(self, m: Metrics, model: str) -> None:
        self.model = model
        self._success = m.success
        self.queue, self.ttft, self.itl, self.e2e = (m.queue.labels(model), m.ttft.labels(model),
                                                     m.itl.labels(model), m.e2e.labels(model))
        self.prompt_tokens, self.generation_tokens = m.prompt_tokens.labels(model), m.generation_tokens.labels(model)
        self.request_prompt, self.request_generation = (m.request_prompt.labels(model),
                                                        m.request_generation.labels(model))
        self._by_reason: dict[str, Any] = {}

    def success(self, reason: str) -> Any:
        child = self._by_reason.get(reason)
        if child is None:
            child = self._by_reason[reason] = self._success.labels(self.model, reason)
        return child


class RequestMetrics:
    """What one generation request feeds: created on arrival, ``admitted`` once it has an
    instance, ``piece`` for each output piece (from any thread), ``finished`` at the end."""

    def __init__(self, series: _ModelSeries) -> None:
        self._series = series
        self.model = series.model
        self.arrived = time.perf_counter()
        self._last: float | None = None

    def admitted(self) -> None:
        self._series.queue.observe(time.perf_counter() - self.arrived)

    def piece(self) -> None:
        now = time.perf_counter()
        if self._last is None:
            self._series.ttft.observe(now - self.arrived)
        else:
            self._series.itl.observe(now - self._last)
        self._last = now

    def finished(self, reason: str, prompt_tokens: int, completion_tokens: int) -> None:
        series = self._series
        series.success(reason).inc()
        series.prompt_tokens.inc(prompt_tokens)
        series.generation_tokens.inc(completion_tokens)
        series.request_prompt.observe(prompt_tokens)
        series.request_generation.observe(completion_tokens)
        series.e2e.observe(time.perf_counter() - self.arrived)


class Unobserved:
    """The observer of a server that keeps no metrics (``--no-metrics``)."""

    def admitted(self) -> None:
        pass

    def piece(self) -> None:
        pass

    def finished(self, reason: str, prompt_tokens: int, completion_tokens: int) -> None:
        pass


UNOBSERVED = Unobserved()
