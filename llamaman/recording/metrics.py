"""Prometheus metrics: per-turn request metrics fed by the recorder, runtime gauges read at scrape."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
TPS_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000)
NO_MODEL = "unknown"


def model_label(name: Any) -> str:
    """The model label: case and a ':latest' tag folded so client spellings share one series."""
    label = str(name or NO_MODEL).strip().lower()
    return label.removesuffix(":latest") or NO_MODEL


class RequestMetrics:
    """Request counters and histograms in their own registry (one per app, never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("llamaman_requests", "Compat API requests by model, endpoint and status",
                                ["model", "endpoint", "status"], registry=r)
        self.ttft = Histogram("llamaman_request_ttft_seconds", "Request arrival to first content token",
                              ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.latency = Histogram("llamaman_request_duration_seconds", "Request arrival to last byte",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.gen_tps = Histogram("llamaman_generation_tokens_per_second",
                                 "Generation speed (llama-server predicted_n / predicted_ms)",
                                 ["model"], buckets=TPS_BUCKETS, registry=r)
        self.tokens = Counter("llamaman_tokens", "Tokens processed", ["model", "kind"], registry=r)
        self.dropped = Counter("llamaman_request_records_dropped", "Request records not stored",
                               ["reason"], registry=r)

    def observe(self, turn: dict[str, Any]) -> None:
        """Count one finished turn."""
        model = model_label(turn.get("model"))
        self.requests.labels(model, str(turn.get("endpoint") or ""), str(turn.get("status"))).inc()
        _observe(self.latency, model, turn.get("duration_s"))
        _observe(self.ttft, model, turn.get("ttft_s"))
        _observe(self.gen_tps, model, turn.get("gen_tps"))
        for kind in ("prompt", "completion"):
            count = turn.get(f"{kind}_tokens")
            if _number(count) and count > 0:
                self.tokens.labels(model, kind).inc(count)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _observe(histogram: Histogram, model: str, value: Any) -> None:
    if _number(value) and value >= 0:
        histogram.labels(model).observe(value)


_EVENTS = (("launches", "Model launches by the scheduler, by model and launcher", "launcher"),
           ("evictions", "Models evicted to respect LLAMAMAN_MAX_MODELS, by model and instance", "instance"),
           ("wakes", "Sleeping models woken by a request, by model and instance", "instance"))
_LOADED = frozenset({"starting", "healthy"})


class RuntimeCollector(Collector):
    """Gauges read from the live instances and scheduler counters at scrape time."""

    def __init__(self, instances: Callable[[], list[dict[str, Any]]], scheduler: Any) -> None:
        self.instances = instances
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        """Yield the runtime metric families."""
        instances = self.instances()
        yield from self._instance_gauges(instances)
        yield from _model_gauges(instances)
        yield from self._scheduler_counters()

    def _instance_gauges(self, instances: list[dict[str, Any]]) -> Iterator[Metric]:
        labels = ["instance", "model"]
        active = GaugeMetricFamily("llamaman_instance_active_requests", "Requests being served", labels=labels)
        queued = GaugeMetricFamily("llamaman_instance_queued_requests", "Requests waiting in the gate",
                                   labels=labels)
        load = GaugeMetricFamily("llamaman_instance_load_seconds", "Launch to healthy of the instance's model",
                                 labels=labels)
        for instance in instances:
            key = [str(instance.get("id")), model_label(instance.get("model_name"))]
            active.add_metric(key, instance.get("active_requests") or 0)
            queued.add_metric(key, instance.get("queued_requests") or 0)
            if _number(instance.get("load_time_s")):
                load.add_metric(key, instance["load_time_s"])
        yield from (active, queued, load)

    def _scheduler_counters(self) -> Iterator[Metric]:
        events = self.scheduler.events.snapshot() if hasattr(self.scheduler, "events") else {}
        for kind, help_text, second in _EVENTS:
            family = CounterMetricFamily(f"llamaman_scheduler_{kind}", help_text, labels=["model", second])
            merged: dict[tuple[str, str], int] = {}  # client spellings of one model share a series
            for (model, other), count in events.get(kind, {}).items():
                key = (model_label(model), other)
                merged[key] = merged.get(key, 0) + count
            for labels, count in sorted(merged.items()):
                family.add_metric(list(labels), count)
            yield family


def _model_gauges(instances: list[dict[str, Any]]) -> Iterator[Metric]:
    """Per model: instances holding it in memory (loading or loaded) and requests queued for it."""
    loaded: dict[str, int] = {}
    queued: dict[str, int] = {}
    for instance in instances:
        if instance.get("status") not in ("starting", "healthy", "sleeping"):
            continue  # stopped and failed records hold nothing
        model = model_label(instance.get("model_name"))
        loaded[model] = loaded.get(model, 0) + (instance.get("status") in _LOADED)
        queued[model] = queued.get(model, 0) + (instance.get("queued_requests") or 0)
    per_model = GaugeMetricFamily("llamaman_model_loaded_instances",
                                  "Instances with the model loading or loaded (0 while asleep)", labels=["model"])
    waiting = GaugeMetricFamily("llamaman_model_queued_requests", "Requests waiting in the gates of the "
                                "model's instances", labels=["model"])
    for model in sorted(loaded):
        per_model.add_metric([model], loaded[model])
        waiting.add_metric([model], queued[model])
    total = GaugeMetricFamily("llamaman_models_loaded", "Models loading or loaded on this node")
    total.add_metric([], sum(1 for count in loaded.values() if count))
    yield from (per_model, waiting, total)


class _Joined(Collector):
    """Several collectors seen as one, for a single exposition."""

    def __init__(self, parts: Iterable[Any]) -> None:
        self.parts = list(parts)

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


def render(*collectors: Any) -> bytes:
    """The Prometheus text exposition of the given registries/collectors."""
    return generate_latest(_Joined(collectors))
