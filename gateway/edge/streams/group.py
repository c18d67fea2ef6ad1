"""The daemon's view of a station's streaming instruments: one `StreamRunner` per sensor and the raw outbox."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from gateway.driver_api import StreamConfig, StreamDriver, is_stream_driver
from gateway.edge.streams.runner import StreamRunner, StreamSettings, read_together
from gateway.edge.streams.uplink import RawOutbox
from gateway.model import Reading

if TYPE_CHECKING:
    from gateway.edge.config import StationConfig


class StreamGroup:
    """Every stream sensor of a station: one runner each (own transport, clock mapper, stamps, summaries and
    archive, so each notices clock steps itself), all read in one thread at the same moments
    (`runner.read_together`: a wake-up a second for all instead of one per sensor), plus the raw outbox when
    `streams.uplink` is `all` (the daemon adds it to its delivery path). The daemon starts it beside the polled
    sensors."""

    def __init__(self, config: StationConfig, sink: Callable[[list[Reading]], None]) -> None:
        streams = config.streams
        archive_dir = streams.archive_dir or Path(config.buffer.path).parent / "raw"
        self.settings = StreamSettings(archive_dir=archive_dir, summary_interval_s=streams.summary_interval_s,
                                       uplink=streams.uplink, read_interval_s=streams.read_interval_s)
        self.uplink: RawOutbox | None = None
        stream_sensors = [(cls, cfg) for cls, cfg in config.sensors if is_stream_driver(cls)]
        if stream_sensors and streams.uplink == "all":
            self.uplink = RawOutbox(config.site, config.station, archive_dir / "outbox", config.buffer.path)
        self.runners = [
            StreamRunner(cast("type[StreamDriver]", cls), cast(StreamConfig, cfg), station=config.station,
                         site=config.site, settings=self.settings, sink=sink,
                         on_archive_closed=self.uplink.enqueue if self.uplink else None)
            for cls, cfg in stream_sensors
        ]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, stop: threading.Event, beat: Callable[[], None] | None = None, beat_every_s: float = 5.0) -> None:
        """The streams thread; `beat` its heartbeat (`runner.read_together`)."""
        if self.runners:
            self._thread = threading.Thread(target=read_together, args=(self.runners, self._stop, beat, beat_every_s),
                                            name="streams", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def health(self) -> list[dict[str, object]]:
        return [vars(r.health) for r in self.runners]
