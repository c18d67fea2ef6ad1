"""`sinkwatch probe modbus --port P`: find the Modbus RTU devices on an RS-485 line and name the known ones.

For a technician with a laptop and a USB-RS485 adapter: which addresses answer, at which serial settings, and what
they are. The search tries serial settings in order of likelihood (the GMP252's 19200 8N2 first, then the soil
probes' 9600/4800 8N1, ...), and within a setting every address of the range with a short timeout. Devices on one
line must share settings, so once a setting finds devices the search finishes that setting's addresses and stops
(`--all-settings` keeps going). Parity none is tried with 2 stop bits: a UART with 1 stop bit reads such frames,
and its replies read fine at 2, so "8N2" also finds 8N1 devices.

Identification reads a few registers and checks their plausibility:

- Vaisala GMP252: status registers 0x0800..0x0801 answer, register 0x0300 holds the address it answered at, and the
  CO2 float at 0x0000 (low word first) is a plausible ppm value.
- Hukseflux SR30-D1 (drivers/sr30/README.md): register 0x0000 holds the address it answered at, the scaling factors
  0x0008..0x0009 are positive, and the irradiance 0x0002..0x0003 (most-significant word first) divided by its
  scaling factor is a plausible W m-2 value; checked before the soil probe, whose registers it would also fit.
- generic soil probe (drivers/soilprobe/registers.py): 3 registers from 0x0000 answer; layout A if value 0 / 10 is
  a plausible VWC (0..100 %) and value 1 / 10 a plausible signed temperature, layout B if value 0 / 100 is a
  temperature and value 1 / 100 a VWC. When both are plausible both are reported.
- anything else that answers (even with an exception) is listed as an unknown Modbus device.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Protocol

import typer

from gateway.driver_api import DeviceError, FailureKind, SerialSettings
from gateway.driver_api.rtu import ModbusExceptionReply

BAUDRATES = (19200, 9600, 4800, 38400, 57600, 115200, 2400, 1200)
STANDARD_BAUDRATES = frozenset(BAUDRATES)  # what --baud takes
# (parity, stop bits), most likely first
FRAMINGS = (("N", 2), ("E", 1), ("O", 1))


class ProbeLine(Protocol):
    def read_registers(
        self, device: int, address: int, count: int, *, function: int = 3, timeout_s: float, retries: int = 0
    ) -> list[int]: ...

    def close(self) -> None: ...


LineFactory = Callable[[SerialSettings], ProbeLine]


@dataclass
class Found:
    address: int
    settings: str
    device: str
    evidence: str


@dataclass
class ScanReport:
    port: str
    found: list[Found] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)  # settings tried, in order
    garbled: dict[str, int] = field(default_factory=dict)  # settings -> replies that failed CRC (a wrong baud hint)
    error: str | None = None


def parse_addresses(text: str) -> list[int]:
    """'1-247', '240', '1,2,240-243' -> sorted addresses; ValueError naming the bad part."""
    addresses: set[int] = set()
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise ValueError(f"{part!r} is not an address or a range like 1-247") from None
        if 1 <= last < first <= 247:
            raise ValueError(f"{part!r}: the range runs backwards; write {last}-{first} (addresses 1..247)")
        if not 1 <= first <= last <= 247:
            raise ValueError(f"{part!r}: expected an address or FIRST-LAST within the Modbus slave range 1..247")
        addresses.update(range(first, last + 1))
    return sorted(addresses)


def _float_low_word_first(words: list[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", words[1], words[0]))[0])


def _signed(word: int) -> int:
    return int(struct.unpack(">h", struct.pack(">H", word))[0])


def identify(line: ProbeLine, address: int, timeout_s: float) -> str | None:
    """What answers at `address`, as 'device: evidence', or None for silence. Raises DeviceError(NO_PORT)."""
    try:
        words = line.read_registers(address, 0x0000, 2, timeout_s=timeout_s)
        first: str = "registers 0x0000.. " + " ".join(f"{w:04X}" for w in words)
    except ModbusExceptionReply as exc:
        first = f"exception {exc.code:02d} to a read of 0x0000"
        words = []
    except DeviceError as exc:
        if exc.kind is FailureKind.NO_PORT:
            raise
        if exc.kind is FailureKind.CRC:
            return None
        if exc.kind is FailureKind.TIMEOUT:
            return None
        first = exc.message
        words = []
    gmp = _gmp252(line, address, timeout_s, words)
    if gmp:
        return gmp
    pyranometer = _sr30(line, address, timeout_s, words)
    if pyranometer:
        return pyranometer
    soil = _soil_probe(line, address, timeout_s)
    if soil:
        return soil
    return f"unknown Modbus device: {first}"


def _gmp252(line: ProbeLine, address: int, timeout_s: float, co2_words: list[int]) -> str | None:
    try:
        status = line.read_registers(address, 0x0800, 2, timeout_s=timeout_s)
        (own_address,) = line.read_registers(address, 0x0300, 1, timeout_s=timeout_s)
    except DeviceError as exc:
        if exc.kind is FailureKind.NO_PORT:
            raise
        return None
    if own_address != address or len(co2_words) != 2:
        return None
    co2 = _float_low_word_first(co2_words)
    if not (co2 != co2 or 0.0 <= co2 <= 1e6):  # NaN (warming up) is plausible too
        return None
    state = "ok" if status == [0, 0] else f"device status {status[0]}, CO2 status {status[1]}"
    value = "no value yet (NaN)" if co2 != co2 else f"CO2 {co2:.1f} ppm"
    return f"Vaisala GMP252 (or GMP251): {value}, {state}"


def _sr30(line: ProbeLine, address: int, timeout_s: float, first_words: list[int]) -> str | None:
    if len(first_words) != 2 or first_words[0] != address:
        return None
    try:
        scale_irradiance, scale_temperature = line.read_registers(address, 0x0008, 2, timeout_s=timeout_s)
        high, low = line.read_registers(address, 0x0002, 2, timeout_s=timeout_s)
    except DeviceError as exc:
        if exc.kind is FailureKind.NO_PORT:
            raise
        return None
    if not (0 < scale_irradiance <= 10000 and 0 < scale_temperature <= 10000):
        return None
    irradiance = struct.unpack(">i", struct.pack(">HH", high, low))[0] / scale_irradiance
    if not -50.0 <= irradiance <= 2500.0:
        return None
    return f"Hukseflux SR30-D1 pyranometer (or another SR-series digital): {irradiance:.1f} W m-2"


def _soil_probe(line: ProbeLine, address: int, timeout_s: float) -> str | None:
    try:
        words = line.read_registers(address, 0x0000, 3, timeout_s=timeout_s)
    except DeviceError as exc:
        if exc.kind is FailureKind.NO_PORT:
            raise
        return None
    layouts = []
    swc_a, ts_a = words[0] / 10, _signed(words[1]) / 10
    if 0 <= swc_a <= 100 and -40 <= ts_a <= 80:
        layouts.append(f"layout A (SWC {swc_a:.1f} %, TS {ts_a:.1f} degC, EC {words[2]} uS/cm)")
    ts_b, swc_b = _signed(words[0]) / 100, words[1] / 100
    if -40 <= ts_b <= 80 and 0 <= swc_b <= 100:
        layouts.append(f"layout B (TS {ts_b:.2f} degC, SWC {swc_b:.2f} %, EC {words[2]} uS/cm)")
    if not layouts:
        return None
    return "soil moisture/temperature probe: " + " or ".join(layouts)


def candidate_settings(port: str, baudrates: Iterable[int]) -> list[SerialSettings]:
    return [SerialSettings(port, baud, 8, parity, stop) for baud in baudrates for parity, stop in FRAMINGS]


def scan(
    port: str,
    addresses: list[int],
    *,
    baudrates: Iterable[int] = BAUDRATES,
    timeout_s: float = 0.1,
    all_settings: bool = False,
    line_factory: LineFactory | None = None,
    progress: Callable[[str], None] = lambda _text: None,
) -> ScanReport:
    if line_factory is None:
        from gateway.driver_api import RtuSerialLine

        def line_factory(settings: SerialSettings) -> ProbeLine:
            return RtuSerialLine(settings, reopen_backoff_s=(0.0, 0.0))

    report = ScanReport(port)
    for settings in candidate_settings(port, baudrates):
        label = settings.describe()
        report.tried.append(label)
        progress(f"trying {label} on addresses {addresses[0]}..{addresses[-1]}")
        line = line_factory(settings)
        found_here = 0
        try:
            for address in addresses:
                what = identify(line, address, timeout_s)
                if what is None:
                    continue
                device, _, evidence = what.partition(": ")
                report.found.append(Found(address, label, device, evidence))
                found_here += 1
        except DeviceError as exc:  # NO_PORT: no point in trying other settings
            hint = (exc.hint or "").replace("the `port` key", "--port")  # the line's hint speaks of station.yaml
            report.error = f"{exc.message} (fix: {hint})" if hint else exc.message
            return report
        finally:
            garbled = getattr(getattr(line, "counters", None), "crc_errors", 0)
            if garbled:
                report.garbled[label] = garbled
            line.close()
        if found_here and not all_settings:
            break
    return report


def render(report: ScanReport) -> str:
    if report.error and not report.found:  # the port could not be opened: nothing was tried on it
        lines = [f"port {report.port}: not scanned"]
    else:
        lines = [f"port {report.port}: tried {', '.join(report.tried) or 'nothing'}"]
    if report.error:
        lines.append(f"error: {report.error}")
    if report.found:
        width = max(len(f.device) for f in report.found)
        lines.append(f"{'address':>7}  {'settings':10}  {'device':{width}}  evidence")
        for f in report.found:
            lines.append(f"{f.address:>7}  {f.settings:10}  {f.device:{width}}  {f.evidence}")
    elif not report.error:
        lines.append("no device answered. Check the supply, swap A and B, and try --all-settings or a wider "
                     "--addresses range.")
    for label, count in report.garbled.items():
        lines.append(f"note: {count} garbled replies at {label}: a device is probably there at another baud rate "
                     "or parity")
    return "\n".join(lines)


app = typer.Typer(help="Find devices on a field bus (technician tools).", no_args_is_help=True)


@app.command()
def modbus(
    port: Annotated[str, typer.Option(help="serial port of the RS-485 adapter, e.g. /dev/ttyUSB0")],
    addresses: Annotated[str, typer.Option(help="addresses to try: 1-247, 240, or 1-10,240-247")] = "1-247",
    baud: Annotated[list[int] | None, typer.Option(help="baud rate(s) to try (repeat the option); default: "
                                                         "19200 9600 4800 38400 57600 115200 2400 1200")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each reply", min=0.01, max=5)] = 0.1,
    all_settings: Annotated[bool, typer.Option(help="keep trying other settings after devices were found")] = False,
) -> None:
    """Scan addresses, baud rates and parities on an RS-485 line and name the devices that answer."""
    try:
        wanted = parse_addresses(addresses)
    except ValueError as exc:
        typer.echo(f"--addresses: {exc}", err=True)
        raise typer.Exit(2) from None
    odd = [rate for rate in baud or () if rate not in STANDARD_BAUDRATES]
    if odd:  # a typo (19201, 960) would be scanned at a rate no device speaks, and "no device answered" misleads
        typer.echo(f"--baud {odd[0]}: not a serial rate a field device uses; give one of "
                   f"{', '.join(map(str, sorted(STANDARD_BAUDRATES)))} (repeat --baud for several)", err=True)
        raise typer.Exit(2)
    report = scan(port, wanted, baudrates=baud or BAUDRATES, timeout_s=timeout, all_settings=all_settings,
                  progress=lambda text: typer.echo(text, err=True))
    typer.echo(render(report))
    if report.error or not report.found:
        raise typer.Exit(1)
