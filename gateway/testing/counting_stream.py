"""A counting stream instrument for the chaos harness: a Gill WindMaster in M1 mode (the repo's simulator,
`drivers/windmaster/simulator.py`, and its frame grammar) serving on TCP, whose every record carries its serial
number, and a log of every record served.

It runs in its own process, so a station killed by the harness never takes it along. Record `k` (1, 2, ...) is the
frame of `record_values(k)`: U = k/1000 m s-1 (printed with the three decimals of high resolution, `J2`, so it
decodes back to k exactly), V = -U, W = 0.25 m s-1, SOS = 340.00 m s-1, Ts = 15.00 degC, status 00. When a frame
has been handed to a connected client whole (`sendall` returned), the record is *served* and one JSON line is
appended (and flushed) to the served log: k and the monotonic and wall-clock times of the write.

What makes a summary checkable: the station's summary of an interval holds, per column, the mean, the standard
deviation and the count. For records ka..kb, consecutive, U_N = kb - ka + 1, U = (ka + kb) / 2000 and
U_SD = sqrt(N (N + 1) / 12) / 1000 (`expected_summary`). Among N distinct record numbers with a given mean, only
consecutive ones have the smallest spread, so a stored summary whose U, U_SD and U_N fit these for some ka
(`records_of`) says exactly which records it counted; anything else (a record missing inside the interval, counted
twice, a value rounded on the way) does not fit.

    python -m gateway.testing.counting_stream --port tcp://127.0.0.1:4001 --log served-stream.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from drivers.windmaster import grammar
from drivers.windmaster.simulator import WindMasterSimulator

U_STEP = 0.001  # m s-1 per record number: the last printed decimal of U at high resolution
W_VALUE, SOS_VALUE, TS_VALUE = 0.25, 340.0, 15.0
MAX_RECORD = 998_999  # U stays below the driver's missing-value magnitude of 999 (13.8 h at 20 Hz)
# the columns of the WindMaster driver, in order, with their units
COLUMNS = (("U", "m s-1"), ("V", "m s-1"), ("W", "m s-1"), ("SOS", "m s-1"), ("T_SONIC", "degC"),
           ("DIAG_SONIC", "1"))


def record_values(k: int) -> tuple[float, float, float, float, float, float]:
    """U, V, W, SOS, T_SONIC, DIAG_SONIC of record `k`, as the driver decodes them."""
    u = k / 1000
    return u, -u, W_VALUE, SOS_VALUE, TS_VALUE, 0.0


def expected_summary(first: int, last: int) -> dict[str, tuple[float | None, str]]:
    """variable -> (value, unit) of the summary of records first..last (module docstring), every variable a station
    sends for a WindMaster interval: <COL>, <COL>_SD, <COL>_N and WS."""
    n = last - first + 1
    mean_k = (first + last) / 2
    sd_k = math.sqrt(n * (n + 1) / 12) if n >= 2 else None
    means = {"U": mean_k / 1000, "V": -mean_k / 1000, "W": W_VALUE, "SOS": SOS_VALUE, "T_SONIC": TS_VALUE,
             "DIAG_SONIC": 0.0}
    out: dict[str, tuple[float | None, str]] = {}
    for name, unit in COLUMNS:
        out[name] = (means[name], unit)
        spread = sd_k / 1000 if name in ("U", "V") and sd_k is not None else (0.0 if n >= 2 else None)
        out[f"{name}_SD"] = (spread, unit)
        out[f"{name}_N"] = (float(n), "1")
    out["WS"] = (math.sqrt(2) * mean_k / 1000, "m s-1")  # |(U, -U)| = sqrt(2) U, U > 0
    return out


def records_of(mean_u: Any, count: Any) -> tuple[int, int] | None:
    """The records first..last a summary with this U and U_N counted, if they are consecutive numbers (the fit of
    the mean; `expected_summary` checks the rest); None when no run of records fits."""
    if not isinstance(mean_u, int | float) or not isinstance(count, int | float):
        return None
    if not (math.isfinite(mean_u) and math.isfinite(count)) or count < 1 or count != int(count):
        return None
    n = int(count)
    first_x2 = 2 * mean_u * 1000 - (n - 1)  # = 2 * first
    first = round(first_x2 / 2)
    if abs(first_x2 - 2 * first) > 1e-6 * max(1.0, abs(first_x2)) or first < 1:
        return None
    return first, first + n - 1


def close_enough(stored: Any, expected: float | None) -> bool:
    """A stored summary value against the exact one: the station sums in floating point (shifted sums), so the
    last few bits may differ; a value rounded or converted on the way (float32, a printed decimal) differs far more."""
    if expected is None:
        return stored is None or (isinstance(stored, float) and math.isnan(stored))
    if not isinstance(stored, int | float) or not math.isfinite(stored):
        return False
    return abs(float(stored) - expected) <= 1e-9 * abs(expected) + 1e-12


@dataclass(frozen=True, slots=True)
class ServedRecord:
    """One line of the stream's served log."""

    k: int
    monotonic: float  # time.monotonic() after the frame was handed to the client (system-wide on Linux)
    wall: float

    def to_json(self) -> str:
        return json.dumps({"k": self.k, "mono": self.monotonic, "wall": self.wall}, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> ServedRecord:
        item = json.loads(line)
        return cls(int(item["k"]), float(item["mono"]), float(item["wall"]))


def read_served_records(path: Path, offset: int = 0) -> tuple[list[ServedRecord], int]:
    """The complete lines of the served log from byte `offset` on, and the offset after the last of them."""
    if not path.exists():
        return [], offset
    records: list[ServedRecord] = []
    with open(path, encoding="utf-8") as stream:
        stream.seek(offset)
        while True:
            line = stream.readline()
            if not line.endswith("\n"):
                break
            offset = stream.tell()
            records.append(ServedRecord.from_json(line))
    return records, offset


def _last_served(path: Path) -> int:
    records, _ = read_served_records(path)
    return max((r.k for r in records), default=0)


class CountingWindMaster(WindMasterSimulator):
    """The WindMaster simulator serving record numbers instead of turbulence; `served_log` gets a line per record
    a client received whole."""

    def __init__(self, port: str, served_log: Path, *, frequency_hz: float = 20.0) -> None:
        super().__init__(port, frequency_hz=frequency_hz, high_resolution=True)
        self.k = _last_served(served_log)  # a restarted instrument never serves a number twice
        self._log: TextIO = open(served_log, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.served_records = 0

    def frame(self, index: int, unix_time: float) -> bytes:
        if self.k >= MAX_RECORD:
            raise RuntimeError(f"record numbers beyond {MAX_RECORD} do not fit the WindMaster's U field")
        self.k += 1
        u, v, w, sos, ts, _ = record_values(self.k)
        self.record((u, v, w, sos, ts, 0.0))
        return grammar.build_frame(self.node, u, v, w, sos, ts, 0, high_resolution=True)

    def _write(self, data: bytes) -> None:
        clients = list(self._clients)
        super()._write(data)
        # served when at least one client took the whole frame (a client whose sendall failed has been dropped)
        if any(client in self._clients for client in clients):
            self._log.write(ServedRecord(self.k, time.monotonic(), time.time()).to_json() + "\n")
            self._log.flush()
            self.served_records += 1

    def close(self) -> None:
        self._log.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A counting WindMaster on TCP (chaos harness)")
    parser.add_argument("--port", required=True, help="tcp://HOST:PORT to serve on")
    parser.add_argument("--log", required=True, type=Path, help="served log (JSON lines), appended to")
    parser.add_argument("--frequency", type=float, default=20.0, help="records per second (default 20)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    instrument = CountingWindMaster(args.port, args.log, frequency_hz=args.frequency)
    instrument.start()
    print(f"counting WindMaster at {args.frequency:g} Hz on {instrument.tcp_endpoint}, log {args.log}", flush=True)
    try:
        stop.wait()
    finally:
        instrument.stop()
        instrument.close()
        print(f"stopped after {instrument.served_records} records served", flush=True)


if __name__ == "__main__":
    main()
