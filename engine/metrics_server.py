"""HTTP endpoints of a running capture: ``/metrics``, ``/healthz``, ``/readyz``.

``/metrics`` is prometheus_client's own WSGI app (it negotiates OpenMetrics
from the Accept header and gzip); the server is prometheus_client's threading
WSGI server, in a daemon thread, so a slow scraper never touches the
supervisor's event loop.

* ``/healthz``: 200 ``ok`` while the supervisor runs (liveness).
* ``/readyz``: 200 ``ready`` once every feed is subscribed (frames arriving on
  the current ingest process for every symbol) and every writer drains its
  rings; else 503 with one line per reason.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import CollectorRegistry

StartResponse = Callable[..., Any]

#: the serving thread blocks on its socket (socketserver's default 0.5 s poll woke an idle
#: capture's supervisor twice a second); ``close`` wakes it with a connection of its own
_POLL = 3600.0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr (scrapes every few seconds would drown the console)."""


class MetricsServer:
    """Serve ``registry`` and the health endpoints on host:port (port 0 = any free port)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 readiness: Callable[[], list[str]]) -> None:
        self.host, self.port = host, port
        self.readiness = readiness  # reasons the capture is not ready; [] = ready
        self._metrics_app = make_wsgi_app(registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            reasons = self.readiness()
            if not reasons:
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable", "".join(f"not ready: {r}\n" for r in reasons))
        return _text(start_response, "404 Not Found", "see /metrics, /healthz, /readyz\n")

    def start(self) -> None:
        """Bind and serve in a daemon thread; OSError if the port is taken."""
        self._server = make_server(self.host, self.port, self.app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, args=(_POLL,), name="metrics-http",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            # shutdown() waits for the serving loop to look at its flag: a connection wakes it
            stopper = threading.Thread(target=server.shutdown, name="metrics-http-stop", daemon=True)
            stopper.start()
            host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
            for _ in range(25):  # a few seconds at most: the threads are daemons
                if not stopper.is_alive():
                    break
                with contextlib.suppress(OSError):
                    socket.create_connection((host, self.port), timeout=1.0).close()
                stopper.join(0.2)
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]
