"""The kept-alive HTTP connections of the InfluxDB store's write and query path (gateway/central/store/keepalive.py),
against a small HTTP server on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from gateway.central.store.keepalive import KeepAliveHttp, RequestFailed
from gateway.net import free_port


class OneAnswerServer:
    """Answers each connection's first request (no `Connection: close`, so the client keeps it) and then closes
    the connection, as a server does with an idle kept connection; counts connections and requests."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
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
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

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
