"""The HTTP side: /metrics in Prometheus text format, /healthz, 404 elsewhere."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from agent_defs.metrics.collector import AgentflowCollector

log = logging.getLogger(__name__)


def build_registry(instance: Any | None, queue_factory: Callable[[], Any] | None) -> CollectorRegistry:
    """A registry holding only the agentflow collector (no process metrics of this server, which
    would say nothing about the platform)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentflowCollector(instance, queue_factory))
    return registry


def make_app(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: the metrics are at /metrics\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics request: " + format, *args)


def serve(host: str, port: int, registry: CollectorRegistry, ready: threading.Event | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = make_server(host, port, make_app(registry), ThreadingWSGIServer, handler_class=_QuietHandler)
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    log.info(
        "serving metrics on http://%s:%d/metrics",
        host,
        server.server_port,
        extra={"service": "metrics", "host": host, "port": server.server_port},
    )
    if ready is not None:
        ready.set()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        server.server_close()
        log.info("metrics server stopped", extra={"service": "metrics"})
