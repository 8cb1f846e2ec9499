"""The ``localai_upstream_*`` series: each upstream replica's health, load and outcomes, read
from the replica sets of loaded ``openai-upstream`` registrations when scraped.

Label values are bounded: ``model_name`` is a registered model, ``upstream`` a configured base
URL, ``outcome`` one of the adapter's own words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class ReplicaState(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def cooldowns(self) -> int: ...
    @property
    def outcomes(self) -> Mapping[str, int]: ...
    @property
    def state(self) -> str: ...


class ReplicaSetState(Protocol):
    @property
    def replicas(self) -> Sequence[ReplicaState]: ...
    @property
    def failovers(self) -> int: ...


Upstreams = Callable[[], Iterable[tuple[str, ReplicaSetState]]]


class UpstreamCollector(Collector):
    def __init__(self, upstreams: Upstreams) -> None:
        self._upstreams = upstreams

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The families :meth:`collect` yields, without reading the replica sets: the registry
        asks when the collector is registered, before the server has made its pools."""
        return UpstreamCollector(tuple).collect()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["model_name", "upstream"]
        requests = CounterMetricFamily("localai_upstream_requests", "Requests sent to an upstream replica, "
                                       "by outcome (ok, upstream_4xx, upstream_5xx, connect_error, timeout, "
                                       "stream_error, cancelled, probe_ok, probe_failed).", labels=[*labels, "outcome"])
        in_flight = GaugeMetricFamily("localai_upstream_in_flight", "Requests in flight to the replica.", labels=labels)
        up = GaugeMetricFamily("localai_upstream_up", "1 if the replica takes requests, 0 while it cools down "
                               "or is probed.", labels=labels)
        failures = GaugeMetricFamily("localai_upstream_consecutive_failures", "The replica's failures in a row.",
                                     labels=labels)
        cooldowns = CounterMetricFamily("localai_upstream_cooldowns", "Times the replica was set to cool down.",
                                        labels=labels)
        failovers = CounterMetricFamily("localai_upstream_failovers", "Requests retried on another replica.",
                                        labels=["model_name"])
        # Registrations of one model (chat and embeddings, say) may name the same replica: one
        # series per label set, summed (up: 1 only while every registration's view is healthy).
        moved: dict[str, int] = {}
        counted: dict[tuple[str, ...], int] = {}
        replicas: dict[tuple[str, str], list[int]] = {}
        for model, replica_set in self._upstreams():
            moved[model] = moved.get(model, 0) + replica_set.failovers
            for replica in replica_set.replicas:
                for outcome, count in replica.outcomes.items():
                    key = (model, replica.url, outcome)
                    counted[key] = counted.get(key, 0) + count
                entry = replicas.setdefault((model, replica.url), [0, 1, 0, 0])
                entry[0] += replica.in_flight
                entry[1] &= int(replica.state == "healthy")
                entry[2] = max(entry[2], replica.failures)
                entry[3] += replica.cooldowns
        for model, count in sorted(moved.items()):
            failovers.add_metric([model], count)
        for label_values, count in sorted(counted.items()):
            requests.add_metric(list(label_values), count)
        for (model, url), (busy, healthy, failed, rested) in sorted(replicas.items()):
            in_flight.add_metric([model, url], busy)
            up.add_metric([model, url], healthy)
            failures.add_metric([model, url], failed)
            cooldowns.add_metric([model, url], rested)
        yield from (requests, in_flight, up, failures, cooldowns, failovers)
