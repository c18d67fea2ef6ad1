"""`sinkwatch station check`: open every configured sensor once and say, per sensor, whether it works.

For a technician at the station: each row is a sensor with either its values and units (PASS) or the reason and
the likely fix (FAIL), the fix taken from the driver's `DeviceError.hint`. Polled sensors are checked the way the
daemon runs them: devices sharing a serial port go through one `RtuSerialLine`, so a wiring or settings problem
shows exactly as it will in operation.

Streaming instruments (`check_streams`) are opened once, sent the driver's start commands and listened to for up
to `STREAM_CHECK_S`: PASS with the mean of the first records, or FAIL as cannot open / silent / only bad records.

While the station daemon runs, it owns every port (one owner per line, ports opened exclusively): the check then
reports each sensor from the daemon's live status file instead (`results_from_status`, see gateway/edge/live.py),
and says so above the table.

Extension point: `CHECKS` is the list of check functions `run_checks` calls in order; each takes the validated
`StationConfig` and returns `CheckResult`s for the sensors it knows (`check_polled` covers every sensor that is
not a streaming instrument, `check_streams` the others). Another kind of sensor adds its own function with
`register_check`.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import serial

from gateway.driver_api import BadRecord, DeviceError, RtuSerialLine, StreamConfig, StreamDriver, is_stream_driver
from gateway.edge.bus import SensorRunner
from gateway.edge.config import StationConfig
from gateway.edge.live import with_unit
from gateway.model import QualityFlag, Reading


@dataclass
class CheckResult:
    sensor: str
    driver: str
    ok: bool
    values: list[str] = field(default_factory=list)  # "CO2_1_1_1 = 4123.5 umol mol-1"
    reason: str | None = None
    fix: str | None = None
    where: str = ""  # port and address, for the technician


Check = Callable[[StationConfig], list[CheckResult]]


def _describe(reading: Reading) -> str:
    value = "null" if reading.value is None else f"{reading.value:.6g}"
    flag = "" if reading.qc is QualityFlag.GOOD else f" [qc {int(reading.qc)} {reading.qc.name.lower()}]"
    return f"{reading.variable} = {with_unit(value, reading.unit)}{flag}"


def _where(runner: SensorRunner) -> str:
    port = getattr(runner.config, "port", "")
    address = getattr(runner.config, "address", None)
    return f"{port} @{address}" if address is not None else str(port)


def _check_one(runner: SensorRunner) -> CheckResult:
    result = CheckResult(runner.config.name, runner.config.driver, ok=False, where=_where(runner))
    try:
        runner.driver.open()
        readings = runner.driver.poll()
    except DeviceError as exc:
        result.reason = f"{exc.kind.value}: {exc.message}"
        result.fix = exc.hint
        return result
    except Exception as exc:  # a driver bug is reported, not raised: the other sensors still get checked
        result.reason = f"driver_bug: {type(exc).__name__}: {exc}"
        result.fix = "this is a driver bug; please report it with this output"
        return result
    finally:
        with contextlib.suppress(Exception):
            runner.driver.close()
    result.values = [_describe(r) for r in readings]
    bad = [r for r in readings if r.qc >= QualityFlag.BAD]
    if not readings:
        result.reason = "the driver returned no readings"
    elif bad:
        result.reason = "; ".join(f"{r.variable}: {r.qc_reason or r.qc.name.lower()}" for r in bad)
        result.fix = "the device answers but reports a fault or an implausible value: see its README"
    else:
        result.ok = True
    return result


def check_polled(config: StationConfig) -> list[CheckResult]:
    """Every polled (non-stream) sensor, once, in config order; one shared line per serial port."""
    from gateway.edge.daemon import plan_lines

    runners = [SensorRunner(cls, cfg, config.station) for cls, cfg in config.sensors if not is_stream_driver(cls)]
    lines, _direct = plan_lines(runners)
    opened: list[RtuSerialLine] = []
    try:
        for settings, group in lines.values():
            # No reopen backoff: each device gets its own attempt to open the port, and its own verdict.
            line = RtuSerialLine(settings, reopen_backoff_s=(0.0, 0.0))
            opened.append(line)
            for runner in group:
                runner.driver.attach(line)  # type: ignore[attr-defined]
        return [_check_one(runner) for runner in runners]
    finally:
        for line in opened:
            line.close()


STREAM_CHECK_S = 3.0  # how long a stream check listens at most
STREAM_CHECK_RECORDS = 10  # good records that are enough for a verdict
STREAM_OPEN_FIX = ("check the instrument's power and cable, the `port` key (ls /dev/serial/by-id/, or the "
                   "serial-to-Ethernet converter's address and port), and that no other program holds the port")
STREAM_SILENT_FIX = ("check that the instrument is powered and in continuous output mode at its configured rate, "
                     "the serial settings (`baudrate`, `parity`, `stopbits`) and the cable (TX/RX swapped?)")
STREAM_BAD_FIX = ("the instrument sends, but nothing this driver reads: check its output mode/format and serial "
                  "settings against the driver's README")


def _check_stream(driver_class: type[StreamDriver], config: StreamConfig, station: str) -> CheckResult:
    """Open the stream once, send the driver's start commands, read a few records: PASS with their means, or FAIL
    with why (cannot open, silent, only bad records)."""
    from gateway.edge.streams.transport import FrameSplitter, Transport

    result = CheckResult(config.name, config.driver, ok=False, where=config.port)
    driver = driver_class(config, station=station)
    transport = Transport(config)
    try:
        transport.open(timeout_s=0.25)
        for command in driver.start_commands():
            transport.write(command)
    except (OSError, serial.SerialException, ValueError) as exc:
        transport.close()
        result.reason = f"no_port: cannot open {config.port}: {exc}"
        result.fix = STREAM_OPEN_FIX
        return result
    reset = getattr(driver, "reset", None)
    if callable(reset):
        reset()
    splitter = FrameSplitter(driver_class.terminator, 4096)
    good: list[tuple[float | None, ...]] = []
    bad: Counter[str] = Counter()
    started = time.monotonic()
    try:
        while time.monotonic() - started < STREAM_CHECK_S and len(good) < STREAM_CHECK_RECORDS:
            try:
                data = transport.read(4096)
            except (OSError, serial.SerialException) as exc:
                result.reason = f"disconnected: {config.port} lost: {exc}"
                result.fix = STREAM_OPEN_FIX
                return result
            for frame in splitter.feed(data):
                if not frame:
                    continue
                try:
                    good.append(driver.parse(frame))
                except BadRecord as exc:
                    bad[exc.reason] += 1
                except Exception as exc:  # a driver bug is reported, not raised
                    bad[f"driver_bug ({type(exc).__name__})"] += 1
    finally:
        transport.close()
    elapsed = time.monotonic() - started
    dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(bad.items()))
    if not good:
        if bad:
            result.reason = f"bad_records: {sum(bad.values())} records in {elapsed:.1f} s, all dropped ({dropped})"
            result.fix = STREAM_BAD_FIX
        else:
            result.reason = f"silent: no data from {config.port} in {elapsed:.1f} s"
            result.fix = STREAM_SILENT_FIX
        return result
    for index, column in enumerate(driver_class.columns):
        values = [v[index] for v in good if v[index] is not None]
        mean = f"{sum(values) / len(values):.6g}" if values else "null"  # type: ignore[arg-type]
        result.values.append(f"{column.name} = {with_unit(mean, column.unit)}")
    result.values.append(f"{len(good)} records in {elapsed:.1f} s" + (f" ({dropped} dropped)" if bad else ""))
    result.ok = True
    return result


def check_streams(config: StationConfig) -> list[CheckResult]:
    """Every streaming instrument (sonic, gas analyzer), once, in config order."""
    return [_check_stream(cast("type[StreamDriver]", cls), cast(StreamConfig, cfg), config.station)
            for cls, cfg in config.sensors if is_stream_driver(cls)]


CHECKS: list[Check] = [check_polled, check_streams]


def register_check(check: Check) -> None:
    """Add a check for another kind of sensor (e.g. streaming instruments); it runs after the existing ones."""
    if check not in CHECKS:
        CHECKS.append(check)


def run_checks(config: StationConfig) -> list[CheckResult]:
    results: list[CheckResult] = []
    for check in CHECKS:
        results.extend(check(config))
    return results


def render_table(results: list[CheckResult]) -> str:
    """A plain-text table a technician reads on a laptop over SSH: one line per sensor, then what to do."""
    name_width = max([len("sensor"), *(len(r.sensor) for r in results)])
    where_width = max([len("where"), *(len(r.where) for r in results)])
    lines = [f"{'sensor':{name_width}}  {'result':6}  {'where':{where_width}}  values / reason"]
    for r in results:
        detail = ", ".join(r.values) if r.ok else (r.reason or "")
        lines.append(f"{r.sensor:{name_width}}  {'PASS' if r.ok else 'FAIL':6}  {r.where:{where_width}}  {detail}")
        if not r.ok and r.fix:
            lines.append(f"{'':{name_width}}  {'':6}  {'':{where_width}}  fix: {r.fix}")
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed} of {len(results)} sensors pass" + (f"; {failed} FAIL" if failed else ""))
    return "\n".join(lines)


def _split_fix(reason: str) -> tuple[str, str | None]:
    """'message (fix: hint)' -> ('message', 'hint'): how SensorRunner keeps a DeviceError in `last_error`."""
    head, sep, tail = reason.rpartition(" (fix: ")
    return (head, tail.removesuffix(")")) if sep else (reason, None)


def results_from_status(snapshot: dict[str, Any]) -> list[CheckResult]:
    """Check results from a running daemon's status snapshot: each sensor PASS with its latest values while the
    daemon has it available, FAIL with the daemon's last error for it otherwise."""
    results: list[CheckResult] = []
    for sensor in snapshot["sensors"]:
        result = CheckResult(sensor["name"], sensor["driver"], ok=False, where=sensor.get("where", ""))
        for entry in sensor.get("latest", []):
            value = "null" if entry.get("value") is None else f"{entry['value']:.6g}"
            qc = entry.get("qc", 0)
            flag = "" if qc == int(QualityFlag.GOOD) else f" [qc {qc} {QualityFlag(qc).name.lower()}]"
            result.values.append(f"{entry['variable']} = {with_unit(value, entry.get('unit'))}{flag}")
        rate = sensor.get("rate")
        if sensor.get("kind") == "stream" and rate is not None:
            result.values.append(f"{rate:.1f} {sensor.get('rate_unit', 'records/s')}")
        available = sensor.get("available")
        if available is None:
            result.reason = f"{sensor.get('state', 'starting')}: the daemon has not read it yet"
            result.fix = "run the check again in a few seconds"
        elif not available:
            reason, fix = _split_fix(sensor.get("reason") or sensor.get("state", "unavailable"))
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(sensor.get("errors", {}).items()) if n)
            result.reason = f"{sensor.get('state', 'unavailable')}: {reason}" + (f" [errors: {kinds}]" if kinds else "")
            result.fix = fix or (STREAM_OPEN_FIX if sensor.get("kind") == "stream" else None)
        else:
            bad = [e for e in sensor.get("latest", []) if e.get("qc", 0) >= int(QualityFlag.BAD)]
            if bad:
                result.reason = "; ".join(f"{e['variable']}: {e.get('qc_reason') or 'bad'}" for e in bad)
                result.fix = "the device answers but reports a fault or an implausible value: see its README"
            else:
                result.ok = True
        results.append(result)
    return results
