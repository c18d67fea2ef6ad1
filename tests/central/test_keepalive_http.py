"""The kept-alive HTTP connections of the InfluxDB store's write and query path (gateway/central/store/keepalive.py),
against a small HTTP server on loopback."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator

import pytest

from gateway.central.store.keepalive import KeepAliveHttp, RequestFailed, proxy_from_environment
from gateway.net import free_port


class OneAnswerServer:
    """Answers each connection's first request (no `Connection: close`, so the client keeps it) and then closes
    the connection, as a server does with an idle kept connection; counts connections and requests."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.heads: list[list[bytes]] = []  # each request's header lines
        self.answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head.split(b"\r\n")[0] + b" " + body)
                self.heads.append(head.split(b"\r\n")[1:])
                conn.sendall(self.answer)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server() -> Iterator[OneAnswerServer]:
    s = OneAnswerServer()
    yield s
    s.close()


def test_a_kept_connection_the_server_closed_is_replaced_and_the_request_sent_once_more(
        server: OneAnswerServer) -> None:
    http = KeepAliveHttp(f"http://127.0.0.1:{server.port}/prefix", timeout_s=5, headers={"Authorization": "Token t"})
    try:
        answers = [http.post("/write?db=x", f"m v={i} {i}".encode(), "text/plain") for i in range(3)]
    finally:
        http.close()
    assert answers == [(200, b"{}", "application/json")] * 3
    # each request after the first met a connection the server had closed, and went again on a new one
    assert server.connections == 3
    assert server.requests == [f"POST /prefix/write?db=x HTTP/1.1 m v={i} {i}".encode() for i in range(3)]


def test_no_server_is_a_request_failure_naming_the_cause() -> None:
    port = free_port()
    http = KeepAliveHttp(f"http://127.0.0.1:{port}", timeout_s=2, headers={})
    with pytest.raises(RequestFailed, match=r"Connection refused|ConnectionRefusedError") as caught:
        http.post("/query", b"q=SHOW+DATABASES", "application/x-www-form-urlencoded")
    assert caught.value.url == f"http://127.0.0.1:{port}"
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_the_connections_of_threads_that_ended_are_closed(server: OneAnswerServer) -> None:
    """An API thread pool replaces its threads: their kept connections must not pile up open."""
    http = KeepAliveHttp(f"http://127.0.0.1:{server.port}", timeout_s=5, headers={})
    try:
        for _ in range(5):
            worker = threading.Thread(target=http.post, args=("/query", b"q=1", "text/plain"))
            worker.start()
            worker.join()
        http.post("/query", b"q=1", "text/plain")
        # only this thread's connection is left open; the five ended threads' were closed
        assert [thread for thread, _ in http._all] == [threading.current_thread()]
    finally:
        http.close()
    assert http._all == []


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_a_plain_request_goes_through_the_environments_proxy_with_its_absolute_url_and_credentials(
        server: OneAnswerServer, no_proxy_environment: pytest.MonkeyPatch) -> None:
    target_port = free_port()  # nothing listens there: only the proxy can answer
    no_proxy_environment.setenv("HTTP_PROXY", f"http://ops:s%40cret@127.0.0.1:{server.port}")
    http = KeepAliveHttp(f"http://127.0.0.1:{target_port}/prefix", timeout_s=5, headers={})
    try:
        answer = http.post("/write?db=x", b"m v=1 1", "text/plain")
    finally:
        http.close()
    assert answer == (200, b"{}", "application/json")
    assert server.requests == [f"POST http://127.0.0.1:{target_port}/prefix/write?db=x HTTP/1.1 m v=1 1".encode()]
    assert f"Host: 127.0.0.1:{target_port}".encode() in server.heads[0]
    assert b"Proxy-Authorization: Basic " + base64.b64encode(b"ops:s@cret") in server.heads[0]


def test_no_proxy_naming_the_host_connects_directly(server: OneAnswerServer,
                                                    no_proxy_environment: pytest.MonkeyPatch) -> None:
    no_proxy_environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # would refuse
    no_proxy_environment.setenv("NO_PROXY", "example.org,127.0.0.1")
    http = KeepAliveHttp(f"http://127.0.0.1:{server.port}", timeout_s=5, headers={})
    try:
        assert http.post("/query", b"q=1", "application/x-www-form-urlencoded")[0] == 200
    finally:
        http.close()
    assert server.requests == [b"POST /query HTTP/1.1 q=1"]


def test_an_https_store_is_reached_through_a_connect_tunnel_of_the_proxy(
        server: OneAnswerServer, no_proxy_environment: pytest.MonkeyPatch) -> None:
    server.answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"  # the proxy refuses the tunnel
    no_proxy_environment.setenv("https_proxy", f"http://ops:pw@127.0.0.1:{server.port}")
    http = KeepAliveHttp("https://influx.example.org:8086", timeout_s=5, headers={})
    with pytest.raises(RequestFailed, match="Tunnel connection failed: 403"):
        http.post("/write?db=x", b"m v=1 1", "text/plain")
    assert server.requests[0].startswith(b"CONNECT influx.example.org:8086 HTTP/1.")
    assert b"Proxy-Authorization: Basic " + base64.b64encode(b"ops:pw") in server.heads[0]


def test_a_proxy_url_this_client_cannot_use_names_the_variable_and_the_fix(
        no_proxy_environment: pytest.MonkeyPatch) -> None:
    no_proxy_environment.setenv("HTTPS_PROXY", "https://proxy.example.org:3128")
    with pytest.raises(ValueError, match=r"HTTPS_PROXY=.*http://host:port.*NO_PROXY"):
        proxy_from_environment("https://influx.example.org:8086")
    http = KeepAliveHttp("https://influx.example.org:8086", timeout_s=5, headers={})  # opening the store is fine
    with pytest.raises(RequestFailed, match=r"HTTPS_PROXY=.*NO_PROXY"):  # each request fails, named
        http.post("/write?db=x", b"m v=1 1", "text/plain")
    assert proxy_from_environment("http://influx.example.org:8086") is None  # no HTTP_PROXY: direct
    no_proxy_environment.setenv("ALL_PROXY", "proxy.example.org:3128")
    proxy = proxy_from_environment("http://influx.example.org:8086")
    assert proxy is not None and (proxy.host, proxy.port, proxy.headers) == ("proxy.example.org", 3128, {})
