"""An embedded MQTT 5 broker for `sinkwatch demo` and single-machine trials.

Production uses Mosquitto (deploy/mosquitto/); this exists so the whole chain runs on a machine with nothing but
Python installed. It is rumqttd, compiled into the `iotcore` wheel, run in a child process (rumqttd has no shutdown
API, so stopping it means ending that process; the child also exits on its own when this process dies). Every
sinkwatch client speaks MQTT 5 (a refused PUBLISH must come back with a reason code), so the broker listens with
rumqttd's v5 listener only. No persistence: the demo's stations keep every item until the central service's
receipt, so a broker that forgets costs a resend, not data.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from gateway.net import free_port

log = logging.getLogger("sinkwatch.broker")

# A raw archive file of a 20 Hz instrument is about 1-1.5 MB per half hour (docs/asyncapi.yaml, raw channel).
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

_CONFIG = """\
id = 0

[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v5.1]
name = "v5-1"
listen = "{host}:{port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {max_payload}
    max_inflight_count = 100
    dynamic_filters = true
"""


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self._broker: Any = None
        self._config_dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> EmbeddedBroker:
        from iotcore import Broker

        self._config_dir = tempfile.TemporaryDirectory(prefix="sinkwatch-broker-")
        config = Path(self._config_dir.name) / "rumqttd.toml"
        config.write_text(_CONFIG.format(host=self.host, port=self.port, max_payload=MAX_PAYLOAD_BYTES),
                          encoding="utf-8")
        try:
            self._broker = Broker(config_path=str(config)).start(timeout=15)
        except (OSError, RuntimeError) as exc:
            self._config_dir.cleanup()
            raise RuntimeError(f"embedded MQTT broker could not listen on {self.host}:{self.port}: {exc}") from exc
        log.info("embedded MQTT 5 broker listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        if self._config_dir is not None:
            self._config_dir.cleanup()
            self._config_dir = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
