"""Plain HTTP/1.1 requests over kept-alive connections (the standard library's `http.client`) for the InfluxDB
store's `/write` and `/query` (`InfluxStore._post`): every group of ingested messages costs a few of them.

httpx costs about 0.5 ms of CPU per request on loopback (its request and response models, URL merging, cookies,
event hooks); `http.client` on a kept connection about 0.15 ms (docs/performance.md, "NETWORK — what a message
costs the central ingest"). At a thousand stations' real-time rates a group is one or two messages, so that
difference was a fifth of an ingest worker's CPU. httpx stays for the v2 client and pings.

Streamed reads (`stream`: the API's long `/query` answers, read block by block) go through here too: httpx costs
~35 µs of CPU per HTTP chunk of the answer (h11's events, its decoders), `http.client` reads them in C-buffered
blocks — InfluxDB 1.x writes a MessagePack answer in chunks of ~2 kB, a year of NEE, H, LE, FC in ~800 of them:
42 ms of the reader's CPU through httpx, 12 ms here (docs/performance.md). A stream has a connection of its own (the
thread's kept one stays free for the queries a reader makes while it streams, e.g. the names of a digest), taken
from a pool of idle ones and given back only when its answer was read to the end.

One connection per thread (`http.client` connections are not thread-safe; the ingest worker writes from its store
thread while its worker thread queries, the API from its worker threads); the connections of threads that have
ended are closed when the next one is opened, so a thread pool that replaces its threads leaks none. A request
that fails on a connection used before is sent once more on a new one: the server may have closed an idle
connection, and every request sent here is idempotent (a write of points with their identity, a query).

Proxies are taken from the environment as httpx (the store's other client) takes them: `HTTP_PROXY` /
`HTTPS_PROXY` / `ALL_PROXY` (either case) unless `NO_PROXY` names the host; through an http:// proxy a plain
request goes with its absolute URL and an https one through a `CONNECT` tunnel (RFC 9110, 9.3.6), with
`Proxy-Authorization: Basic` when the proxy URL carries a user and password.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class RequestFailed(Exception):
    """The request got no HTTP answer (connection refused, reset, timed out, TLS failure); `__cause__` says why."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    headers: dict[str, str]  # Proxy-Authorization, when the proxy URL has credentials


def proxy_from_environment(url: str) -> Proxy | None:
    """The proxy the environment names for `url` (None: connect directly). Raises ValueError for a proxy URL this
    client cannot use, naming the variable to fix."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies_environment()
    name = parts.scheme if parts.scheme in proxies else "all"
    proxy_url = proxies.get(name)
    if not proxy_url:
        return None
    variable = f"{name.upper()}_PROXY"
    if "://" not in proxy_url:
        proxy_url = "http://" + proxy_url  # as httpx and curl read a bare host:port
    proxy = urlsplit(proxy_url)
    if proxy.scheme != "http" or not proxy.hostname:
        raise ValueError(f"{variable}={proxy_url!r}: the InfluxDB store reaches a proxy only as http://host:port; "
                         f"set {variable} to the proxy's http:// address or add {parts.hostname} to NO_PROXY")
    headers = {}
    if proxy.username is not None:
        credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    return Proxy(proxy.hostname, proxy.port or 80, headers)


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
        # a proxy setting this client cannot follow fails each request (counted and named like an unreachable
        # database) rather than the process that opens the store
        self._proxy_error: str | None = None
        try:
            self._proxy = proxy_from_environment(url)
        except ValueError as exc:
            self._proxy, self._proxy_error = None, str(exc)
        # through a plain-HTTP proxy the request line carries the absolute URL (RFC 9112, 3.2.2)
        self._target_prefix = (f"http://{parts.netloc.rpartition('@')[2]}{self._prefix}"
                               if self._proxy is not None and not self._https else self._prefix)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[tuple[threading.Thread, http.client.HTTPConnection]] = []  # every open one, by its thread
        self._idle_streams: list[http.client.HTTPConnection] = []  # of streams read to their end, for the next

    def _new_connection(self) -> http.client.HTTPConnection:
        host, port = (self._proxy.host, self._proxy.port) if self._proxy is not None else (self._host, self._port)
        if self._https:
            connection = http.client.HTTPSConnection(host, port, timeout=self._timeout_s, context=self._context)
            if self._proxy is not None:
                connection.set_tunnel(self._host, self._port, headers=self._proxy.headers)
            return connection
        return http.client.HTTPConnection(host, port, timeout=self._timeout_s)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it was used before."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        connection = self._new_connection()
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
        if self._proxy_error is not None:
            raise RequestFailed(self._proxy_error, self.url)
        headers = {**self._headers, "Content-Type": content_type, "Content-Length": str(len(body))}
        if self._proxy is not None and not self._https:
            headers.update(self._proxy.headers)
        while True:
            connection, reused = self._connection()
            try:
                connection.request("POST", self._target_prefix + path, body=body, headers=headers)
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

    @contextlib.contextmanager
    def stream(self, path: str, body: bytes, content_type: str, *, read_timeout_s: float,
               accept: str | None = None) -> Iterator[http.client.HTTPResponse]:
        """POST `body` to `path` on a connection of the stream pool; the response, its body not yet read (read it
        with `read1`, or `read`). `read_timeout_s`: the longest wait for the answer's head or its next bytes (the
        connection itself is opened within the client's timeout). The connection goes back to the pool when the
        answer was read to its end, else it is closed."""
        if self._proxy_error is not None:
            raise RequestFailed(self._proxy_error, self.url)
        headers = {**self._headers, "Content-Type": content_type, "Content-Length": str(len(body)),
                   "Accept-Encoding": "identity"}
        if accept is not None:
            headers["Accept"] = accept
        if self._proxy is not None and not self._https:
            headers.update(self._proxy.headers)
        while True:
            with self._lock:
                connection = self._idle_streams.pop() if self._idle_streams else None
            reused = connection is not None
            if connection is None:
                connection = self._new_connection()
            try:
                if connection.sock is None:
                    connection.connect()
                connection.sock.settimeout(read_timeout_s)
                connection.request("POST", self._target_prefix + path, body=body, headers=headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if reused and not isinstance(exc, TimeoutError | ssl.SSLError):
                    continue  # a kept connection the server had closed: once more on a new one
                raise RequestFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                                    self.url) from exc
            break
        try:
            yield response
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise RequestFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                                self.url) from exc
        except BaseException:
            connection.close()
            raise
        if response.isclosed() and not response.will_close:
            with self._lock:
                self._idle_streams.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
            idle, self._idle_streams = self._idle_streams, []
        for _, connection in connections:
            connection.close()
        for connection in idle:
            connection.close()
