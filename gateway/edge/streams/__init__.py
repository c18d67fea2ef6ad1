"""High-rate streaming instruments (10-20 Hz sonic anemometers and gas analyzers) on the edge daemon.

One `StreamRunner` thread per stream sensor owns its transport (serial port or TCP), and nothing else touches it:

    connect (backoff 0.5 s .. 30 s; a vanished USB adapter is reopened when its device node returns)
      -> write driver.start_commands()
      -> every `read_interval_s` (1 s, dithered by up to half a period) read what arrived -> split at
         driver.terminator (bounded: a line longer than `max_frame_bytes` is garbage, dropped, and the splitter
         resyncs at the next terminator)
      -> driver.parse(frame): values, or BadRecord -> counted by reason, dropped (logged on state changes only)
      -> stamp the read's records one instrument period apart, continuing the cadence, never later than the read
         (`stamping`), on the monotonic clock mapped to UTC (gateway/clock.py)
      -> (a) the raw archive (gateway/rawarchive, one file per half hour)  (b) the interval summaries

Summaries: every `summary_interval_s` (aligned to UTC), for every column the mean (`<COL>`), standard deviation
(`<COL>_SD`) and count of values (`<COL>_N`), plus the mean horizontal wind speed `WS` when the instrument has
U and V, become `Reading`s stamped at the interval's end (AmeriFlux TIMESTAMP_END convention) and go into the
station buffer like any polled reading. An interval is flagged (qc SUSPECT, `clock_synced` False, with the reason)
when the system clock stepped inside it, and SUSPECT when the instrument's output rate differs from its configured
`frequency_hz` by more than `rate_tolerance` (a drifting instrument clock).

Raw uplink (`uplink: all`): every closed archive file is linked into `<archive_dir>/outbox/` and queued in
`RawOutbox`, one channel of the station's delivery path (gateway/edge/delivery.py), on
`sinkwatch/v1/<site>/<station>/raw`; the link is deleted only on the central service's receipt, so a chunk survives
broker crashes and restarts exactly like the reading buffer.

Modules, one job each (import from them; this package re-exports nothing):

| module | job |
|---|---|
| `transport` | `Transport` (serial port or TCP socket), `FrameSplitter` (bounded split at the terminator) |
| `stamping` | `CadenceStamper` (a read's records stamped from the instrument's cadence), `ReadSchedule` |
| `runner` | `StreamRunner` (a thread per sensor: connect, read, stamp, parse), `StreamSettings`, `StreamHealth` |
| `summaries` | `IntervalSummary` (running sums of one interval) and `summary_readings` (its readings and quality) |
| `archiving` | `StreamArchive` (the sensor's half-hour raw archive files, their headers and footers) |
| `uplink` | `RawOutbox` (closed archive files, the raw channel's outbox; the payload is `gateway.contract.RawChunk`) |
| `group` | `StreamGroup` (every stream sensor of a station and the raw uplink, as the daemon sees them) |
"""
