"""Prometheus metrics of one server process, in its own registry (so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

# Sub-millisecond resolution: a top-10 answer costs well under a millisecond in-process.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServingMetrics:
    """Counters and histograms named `mlops_serving_*`; label children are cached, `.labels()` is slow."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mlops_serving_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "mlops_serving_request_seconds",
            "Whole-request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_latency = Histogram(
            "mlops_serving_model_seconds", "Predictor time per request", buckets=LATENCY_BUCKETS, registry=r
        )
        self.feature_latency = Histogram(
            "mlops_serving_feature_lookup_seconds",
            "Online feature store lookup time per user",
            ["store"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "mlops_serving_fallbacks",
            "Answers that fell back to cold-start features, by reason",
            ["reason"],
            registry=r,
        )
        self.errors = Counter("mlops_serving_errors", "Error answers by code", ["code"], registry=r)
        self.model_info = Gauge(
            "mlops_serving_model_info", "The loaded model (value 1)", ["name", "version"], registry=r
        )
        self.ready = Gauge("mlops_serving_ready", "1 once the model is loaded and self-checked", registry=r)
        self._children: dict[tuple[str, tuple[str, ...]], MetricWrapperBase] = {}

    def _child(self, metric: MetricWrapperBase, *labels: str) -> MetricWrapperBase:
        key = (metric._name, labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)
            self._children[key] = child
        return child

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self._child(self.requests, route, str(status)).inc()  # type: ignore[attr-defined]
        self._child(self.latency, route).observe(seconds)  # type: ignore[attr-defined]

    def observe_features(self, store: str, seconds: float) -> None:
        """Record one feature lookup's latency."""
        self._child(self.feature_latency, store).observe(seconds)  # type: ignore[attr-defined]

    def fallback(self, reason: str) -> None:
        """Count one cold-start fallback."""
        self._child(self.fallbacks, reason).inc()  # type: ignore[attr-defined]

    def error(self, code: str) -> None:
        """Count one error answer."""
        self._child(self.errors, code).inc()  # type: ignore[attr-defined]

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
