"""An embedded MQTT broker (amqtt) for `sinkwatch demo` and single-machine trials.

Production uses Mosquitto (deploy/mosquitto/); this exists so the whole chain runs on a machine with nothing but
Python installed. amqtt is asyncio-based, so it gets its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import Any

from gateway.net import free_port

log = logging.getLogger("sinkwatch.broker")


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    def start(self) -> EmbeddedBroker:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # plugins listed explicitly: amqtt's entry-point plugin discovery is deprecated
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._broker = Broker(config, loop=self._loop)
                self._loop.run_until_complete(self._broker.start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="embedded-broker", daemon=True)
        self._thread.start()
        if not started.wait(15) or failure:
            reason = failure[0] if failure else "timed out"
            raise RuntimeError(f"embedded MQTT broker could not listen on {self.host}:{self.port}: {reason}")
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._broker is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            future.result(timeout=10)
        except Exception:
            log.warning("embedded broker did not shut down cleanly", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._broker = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
