"""Vaisala GMP343 CO2 probe over its ASCII serial line (RS-232, or RS-485 point to point), polled with `send`.

After each (re)connect the driver resynchronises and configures the probe: ESC + `s` (stop a running output),
`echo off`, and the FORM of grammar.py; then every poll is one `send` and, every `errs_every_n_polls` polls, one
`errs`. A reply it cannot parse, a timeout, or a probe waiting for a parameter value makes the next poll start over
with the resync. On a serial port the daemon's SerialBus attaches the line (`transact` = one command/reply
exchange); standalone the driver opens a line of its own.

Every exchange reads until the reply of *its* command is in (grammar's `*_reply` pickers) and drops the replies
ahead of it: those answered earlier commands and came late (a slow probe, a loaded host, a power-on banner that
arrived after the first command went out). Taking the first prompt instead put the driver one reply behind: the
late `echo off` confirmation was read as the `form` reply. The `echo off` confirmation is where a resync is in step
again; dropped replies are counted in `late_replies` (and in the line's counter of that name, which the station's
health shows).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from drivers.gmp343 import grammar
from gateway.driver_api import DeviceError, FailureKind, SensorConfig, SerialLine, SerialSettings, kernel_clock_synced
from gateway.model import QualityFlag, Reading, TimeSource, utc_now

log = logging.getLogger(__name__)


class GMP343Config(SensorConfig):
    """One GMP343 in a station config; `sample.yaml` documents every key."""

    driver: Literal["gmp343"] = "gmp343"
    port: str = Field(min_length=1, description="serial device, e.g. /dev/serial/by-id/..., one probe per port")
    baudrate: Literal[4800, 9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: float = Field(default=1.0, gt=0, le=30, description="seconds to wait for a command's reply")
    errs_every_n_polls: int = Field(default=10, ge=1, le=3600, description="ask `errs` on every n-th poll")
    variable_suffix: str | None = Field(
        default=None, pattern=r"^_\d+_\d+_\d+$", description="AmeriFlux position qualifier _H_V_R, e.g. _1_1_1"
    )
    read_temperature: bool = True

    def serial_settings(self) -> SerialSettings:
        return SerialSettings(self.port, self.baudrate, self.bytesize, self.parity, self.stopbits)


class GMP343Driver:
    """gateway.driver_api.Driver (and LineDriver) for a Vaisala GMP343."""

    Config: ClassVar[type[SensorConfig]] = GMP343Config
    # An ASCII probe without addressing cannot share its line: every device on it would answer `send`.
    shares_line: ClassVar[bool] = False

    def __init__(self, config: SensorConfig, *, station: str) -> None:
        if not isinstance(config, GMP343Config):
            config = GMP343Config.model_validate(config.model_dump())
        self.config: GMP343Config = config
        self.station = station
        self._line: SerialLine | None = None
        self._own_line: SerialLine | None = None
        self._configured = False
        self._polls = 0
        self._errors: str | None = None
        self.late_replies = 0  # replies to earlier commands read while waiting for the current one's; dropped
        self.echo_unconfirmed = False
        """The probe answered `echo off` without a confirmation: from then on a bare prompt is taken as its answer."""
        self._received = b""  # what the current exchange has read so far (kept for a timeout's diagnosis)

    def __repr__(self) -> str:
        return f"GMP343Driver({self.config.name!r}, port={self.config.port!r})"

    @property
    def _where(self) -> str:
        return f"GMP343 {self.config.name!r} at {self.config.port}"

    def attach(self, line: SerialLine) -> None:
        self.close()
        self._line = line

    def open(self) -> None:
        if self._line is None and self._own_line is None:
            from gateway.driver_api import RtuSerialLine

            self._own_line = RtuSerialLine(self.config.serial_settings())

    def close(self) -> None:
        self._configured = False
        if self._own_line is not None:
            close = getattr(self._own_line, "close", None)
            if callable(close):
                close()
            self._own_line = None

    def _command(self, text: bytes | str, pick: Callable[[list[bytes]], int | None] = grammar.first_reply,
                 expected: str = "a reply ending with the `>` prompt") -> bytes:
        """Send one command and return its reply (a late reply to an earlier command ahead of it is dropped)."""
        line = self._line or self._own_line
        if line is None:
            self.open()
            line = self._own_line
        assert line is not None

        def complete(received: bytes) -> bool:
            self._received = received
            return pick(grammar.split_replies(received)[0]) is not None

        self._received = b""

        try:
            received = line.transact(grammar.command(text), complete=complete, timeout_s=self.config.timeout_s)
        except DeviceError as exc:
            self._configured = False
            hint = exc.hint
            if exc.kind is FailureKind.TIMEOUT:
                hint = (f"expected {expected}; check the probe's supply, the serial settings (configured "
                        f"{self.config.baudrate} {self.config.bytesize}{self.config.parity}{self.config.stopbits}; "
                        "the hermes project uses 19200 8N1), the TX/RX wiring, and that the probe is in ASCII (not "
                        "Modbus) mode")
            raise DeviceError(exc.kind, f"{self._where}: {exc.message}", hint) from None
        replies, _rest = grammar.split_replies(received)
        index = pick(replies)
        if index is None:  # a line that returned before `complete` said so
            self._configured = False
            raise DeviceError(FailureKind.PROTOCOL, f"{self._where}: no reply to {text!r} in {received!r}",
                              f"expected {expected}; the driver resyncs on the next poll")
        self._count_late(len(replies) - 1)
        return replies[index]

    def _count_late(self, count: int) -> None:
        if count <= 0:
            return
        self.late_replies += count
        counters = getattr(self._line or self._own_line, "counters", None)
        if counters is not None and isinstance(getattr(counters, "late_replies", None), int):
            counters.late_replies += count

    def _configure(self) -> None:
        self._command("s")  # stop a running output; the leading ESC drops any half-typed command
        def echo_off(replies: list[bytes]) -> int | None:
            return grammar.echo_off_reply(replies, bare_prompt_ok=self.echo_unconfirmed)

        try:
            self._command("echo off", echo_off, "the `echo off` confirmation (`ECHO : OFF`, then `>`)")
        except DeviceError as exc:
            # the probe answered with prompts but never confirmed: take a bare prompt as its answer from now on
            if exc.kind is FailureKind.TIMEOUT and not self.echo_unconfirmed and grammar.split_replies(
                    self._received)[0]:
                self.echo_unconfirmed = True
                log.warning("%s: `echo off` answered without a confirmation; a bare prompt is taken as its answer "
                            "from now on", self._where)
            raise
        reply = self._command(grammar.FORM_COMMAND, grammar.form_reply)
        if grammar.PARAMETER_PROMPT_RE.search(reply):
            raise DeviceError(FailureKind.PROTOCOL, f"{self._where}: `form` asked for a value ({reply!r})",
                              "the probe's firmware may not know one of the FORM fields; check its version")
        self._configured = True

    def poll(self) -> list[Reading]:
        if not self._configured:
            self._configure()
        reply = self._command("send", grammar.send_reply, f"a measurement line tagged {grammar.FORM_TAG!r}")
        try:
            values = grammar.parse_send(reply)
        except grammar.GrammarError as exc:
            self._configured = False  # resync and re-send the FORM next time
            raise DeviceError(FailureKind.PROTOCOL, f"{self._where}: {exc}",
                              "line noise or another program changed the probe's FORM; the driver resyncs on the "
                              "next poll") from None
        if self._polls % self.config.errs_every_n_polls == 0:
            self._errors = grammar.parse_errs(self._command("errs", grammar.errs_reply, "the `errs` report"))
        self._polls += 1
        return self._readings(values)

    def _readings(self, values: dict[str, float | None]) -> list[Reading]:
        now: datetime = utc_now()
        synced = kernel_clock_synced()
        names = [n for n in ("CO2", "T") if n == "CO2" or self.config.read_temperature]
        out = []
        for name in names:
            spec = grammar.FIELDS[name]
            assert spec.variable is not None
            value = values[name]
            flag, reason = QualityFlag.GOOD, None
            if self._errors:
                flag, reason = QualityFlag.BAD, f"errs: {self._errors}"[:200]
            if value is None:
                flag = QualityFlag.MISSING
                reason = "; ".join(filter(None, ["probe printed no value", reason]))[:200]
            out.append(Reading(
                station=self.station, sensor=self.config.name,
                variable=spec.variable + (self.config.variable_suffix or ""), value=value, unit=spec.unit,
                time=now, time_source=TimeSource.GATEWAY, clock_synced=synced, qc=flag, qc_reason=reason,
            ))
        return out
