"""`sinkwatch station check`: open every configured sensor once and say, per sensor, whether it works.

For a technician at the station: each row is a sensor with either its values and units (PASS) or the reason and
the likely fix (FAIL), the fix taken from the driver's `DeviceError.hint`. Polled sensors are checked the way the
daemon runs them: devices sharing a serial port go through one `RtuSerialLine`, so a wiring or settings problem
shows exactly as it will in operation.

Extension point: `CHECKS` is the list of check functions `run_checks` calls in order; each takes the validated
`StationConfig` and returns `CheckResult`s for the sensors it knows (`check_polled` covers every sensor that is
not a streaming instrument). Another kind of sensor adds its own function with `register_check`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.driver_api import DeviceError, is_stream_driver
from gateway.edge.bus import RtuSerialLine, SensorRunner
from gateway.edge.config import StationConfig
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
    return f"{reading.variable} = {value} {reading.unit}{flag}"


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


CHECKS: list[Check] = [check_polled]


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
