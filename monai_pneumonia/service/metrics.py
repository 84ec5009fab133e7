"""The service's Prometheus metrics and its local HTTP endpoint (``/metrics``, ``/healthz``).

:class:`ServiceMetrics` counts what the results log records (received, classified, refused, quarantined,
flagged), times each film from receipt to classification, and exposes the live drift monitor's statistics;
``prometheus_client`` (Apache-2.0) does the exposition. :class:`MetricsServer` serves it on 127.0.0.1 only: the
endpoint carries no PHI, but it is not meant to leave the host unprotected.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from collections.abc import Callable, Mapping
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from monai_pneumonia.monitoring.drift import WindowResult

__all__ = ["HealthCheck", "MetricsServer", "ServiceMetrics"]

logger = logging.getLogger(__name__)

#: ``() -> (ok, reason)``: the service's health (``reason`` says what is wrong when not ok).
HealthCheck = Callable[[], tuple[bool, str]]
#: Receipt-to-classification seconds the latency histogram distinguishes.
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)


class ServiceMetrics:
    """Counters, latency histogram and drift gauges in a registry of their own.

    Feed it every results-log record (:meth:`observe`), each receipt (:meth:`received`) and each drift evaluation
    (:meth:`drift`).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        prefix = "monai_pneumonia"
        self._received = Counter(f"{prefix}_received", "Instances received and spooled", registry=self.registry)
        self._events = {event: Counter(f"{prefix}_{event}", text, registry=self.registry) for event, text in (
            ("classified", "Instances classified"), ("refused", "Instances refused (not classified)"),
            ("quarantined", "Instances quarantined (the process died on them)"),
            ("flagged", "Classified instances with at least one flag"))}
        self._latency = Histogram(f"{prefix}_latency_seconds", "Seconds from receipt to classification",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._drift = Gauge(f"{prefix}_drift", "1 when the rolling window is in drift", registry=self.registry)
        self._window = Gauge(f"{prefix}_drift_window_films", "Films in the last evaluated window", registry=self.registry)
        self._psi = Gauge(f"{prefix}_drift_psi", "PSI of each signal in the last window", ["signal"],
                          registry=self.registry)
        self._p = Gauge(f"{prefix}_drift_p_value", "BH-adjusted p-value of each signal in the last window", ["signal"],
                        registry=self.registry)
        self._alarm = Gauge(f"{prefix}_drift_alarm", "1 when the signal alarms in the last window", ["signal"],
                            registry=self.registry)

    def received(self) -> None:
        """Count one received instance."""
        self._received.inc()

    def observe(self, record: Mapping) -> None:
        """Count one results-log record (``{"event", ...}``)."""
        event = record.get("event")
        if event in ("classified", "refused", "quarantined"):
            self._events[event].inc()
        if event == "classified":
            if record.get("flags"):
                self._events["flagged"].inc()
            if record.get("classified") is not None and record.get("received") is not None:
                self._latency.observe(max(0.0, float(record["classified"]) - float(record["received"])))

    def drift(self, result: WindowResult) -> None:
        """Expose one drift evaluation."""
        self._drift.set(int(result.drift))
        self._window.set(result.count)
        for test in result.tests:
            self._psi.labels(test.signal).set(test.psi)
            self._p.labels(test.signal).set(test.p_adjusted)
            self._alarm.labels(test.signal).set(int(test.alarm))


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature; no access log on stderr
        logger.debug("metrics endpoint: " + format, *args)


class MetricsServer:
    """``/metrics`` (Prometheus text format) and ``/healthz`` (200 ``ok`` / 503 and the reason) on a local port.

    Args:
        metrics: the metrics to expose.
        health: the service's health check.
        port: TCP port (0: any free one, see :attr:`port` after :meth:`start`).
        host: bind address (loopback by default).
    """

    def __init__(self, metrics: ServiceMetrics, health: HealthCheck, port: int, host: str = "127.0.0.1") -> None:
        self.metrics, self.health = metrics, health
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._server = make_server(host, port, self._app, server_class=_ThreadingServer, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        if path == "/healthz":
            try:
                ok, reason = self.health()
            except Exception as error:  # noqa: BLE001 - a failing check is an unhealthy service, not a crash
                ok, reason = False, f"health check failed ({type(error).__name__})"
            body = (b"ok\n" if ok else f"unhealthy: {reason}\n".encode())
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics and /healthz only\n"]

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()
        self._started = True
        logger.info("metrics on http://%s:%d/metrics and /healthz", self._server.server_address[0], self.port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if getattr(self, "_started", False):
            self._server.shutdown()
        self._server.server_close()
