"""Plain HTTP/1.1 requests over kept-alive connections (the standard library's `http.client`) for the InfluxDB
store's `/write` and `/query` (`InfluxStore._post`): every group of ingested messages costs a few of them.

httpx costs about 0.5 ms of CPU per request on loopback (its request and response models, URL merging, cookies,
event hooks); `http.client` on a kept connection about 0.15 ms (docs/performance.md, "NETWORK — what a message
costs the central ingest"). At a thousand stations' real-time rates a group is one or two messages, so that
difference was a fifth of an ingest worker's CPU. httpx stays for streamed reads, the v2 client and pings.

One connection per thread (`http.client` connections are not thread-safe; the ingest worker writes from its store
thread while its worker thread queries, the API from its worker threads); the connections of threads that have
ended are closed when the next one is opened, so a thread pool that replaces its threads leaks none. A request
that fails on a connection used before is sent once more on a new one: the server may have closed an idle
connection, and every request sent here is idempotent (a write of points with their identity, a query).
"""

from __future__ import annotations

import http.client
import ssl
import threading
from urllib.parse import urlsplit


class RequestFailed(Exception):
    """The request got no HTTP answer (connection refused, reset, timed out, TLS failure); `__cause__` says why."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class KeepAliveHttp:
    def __init__(self, url: str, *, timeout_s: float, headers: dict[str, str],
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self.url = url
        self._timeout_s = timeout_s
        self._headers = dict(headers)
        self._context = ssl_context if ssl_context is not None else (
            ssl.create_default_context() if self._https else None)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[tuple[threading.Thread, http.client.HTTPConnection]] = []  # every open one, by its thread

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it was used before."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout_s,
                                                     context=self._context)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        self._local.connection = connection
        with self._lock:
            ended = [(thread, c) for thread, c in self._all if not thread.is_alive()]
            self._all = [(thread, c) for thread, c in self._all if thread.is_alive()]
            self._all.append((threading.current_thread(), connection))
        for _, old in ended:
            old.close()
        return connection, False

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        self._local.connection = None
        connection.close()
        with self._lock:
            self._all = [(thread, c) for thread, c in self._all if c is not connection]

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes, str | None]:
        """POST `body` to `path` (with its query string); (status, response body, its Content-Type)."""
        headers = {**self._headers, "Content-Type": content_type, "Content-Length": str(len(body))}
        while True:
            connection, reused = self._connection()
            try:
                connection.request("POST", self._prefix + path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self._drop(connection)
                if reused and not isinstance(exc, TimeoutError | ssl.SSLError):
                    continue  # a kept connection the server had closed: once more on a new one
                raise RequestFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                                    self.url) from exc
            if response.will_close:
                self._drop(connection)
            return response.status, data, response.getheader("Content-Type")

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for _, connection in connections:
            connection.close()
