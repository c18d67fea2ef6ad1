"""`sinkwatch demo`: the whole chain on one machine, with nothing but Python installed.

    simulators of a full station --> edge daemon (station.yaml generated in the data dir) --(disk buffer,
    MQTT 5 QoS 1)--> broker (embedded rumqttd, or --broker) --> central ingestor --> store (embedded SQLite, or
    --influx-url) --> HTTP API (FastAPI on a free port)

The station: a soil CO2 profile of three GMP252 (10, 30, 60 cm; addresses 240-242) on one RS-485 line, a soil
moisture/temperature probe (layout A) on a second RS-485 line, a GMP343 on an RS-232 port, the met sensors gap
filling and partitioning need — an SR30 pyranometer (SW_IN) and an HMP155 (TA, RH, VPD) on RS-485 lines of their
own, both following one simulated site weather (gateway.simulation.weather) — (each line a Python PTY pair, no
socat), and a WindMaster sonic plus an LI-7500 analyzer streaming at 20 Hz over TCP loopback from one
turbulence field. `sinkwatch station check` and `sinkwatch live` work on the generated station.yaml.

Every piece is the production code path; only the broker and the store are embedded defaults. The closing
summary counts readings through the public HTTP API, so a stored reading is one a researcher could fetch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway.demo_budget import DemoBudget, run_demo_budget
from gateway.demo_soilstems import (
    DemoSoilNames,
    DemoSoilStems,
    central_sections,
    closures_of,
    live_lines,
    run_demo_soilstems,
)
from gateway.edge.config import load_station_config
from gateway.edge.daemon import StationDaemon
from gateway.model import format_time, utc_now
from gateway.simulation.turbulence import TurbulenceSpec

log = logging.getLogger("sinkwatch.demo")

DEMO_SITE = "demo-forest"
# the demo runs for minutes, not months: health every 10 s and the alert rules every 5 s, so the status page shows
# them live
DEMO_TELEMETRY_S = 10.0
DEMO_ALERT_EVERY_S = 5.0
DEMO_STATION = "st01"


@dataclass
class DemoSummary:
    seconds: float
    readings_read: int
    readings_confirmed: int
    readings_stored: int
    sensor_errors: int
    api_url: str
    stored_by_variable: dict[str, int] = field(default_factory=dict)
    flux_records: list[dict[str, Any]] = field(default_factory=list)
    budget: DemoBudget | None = None  # the simulated year's budget (gateway/demo_budget.py), unless turned off
    soilstems: DemoSoilStems | None = None  # the simulated year's soil and stems (gateway/demo_soilstems.py)
    central_yaml: Path | None = None  # the demo's central config: `sinkwatch report/central ... -c` read it
    # `sinkwatch audit verify` of everything the demo station signed (arguments after `sinkwatch`): re-checks its
    # signatures, chains and every signed value against the store the demo kept (--data-dir); None when removed
    audit_args: list[str] | None = None

    def line(self) -> str:
        return (f"demo finished after {self.seconds:.0f} s: {self.readings_read} readings read, "
                f"{self.readings_confirmed} confirmed stored by the central service, "
                f"{self.readings_stored} readings stored "
                f"and served by {self.api_url}, {self.sensor_errors} sensor errors, "
                f"{len(self.flux_records)} flux periods{self.flux_comparison()}")

    def flux_comparison(self) -> str:
        """w'Ts' of the last good period against the simulator's prescribed truth: the chain's science check."""
        good = [r for r in self.flux_records if r.get("status") == "ok"]
        if not good:
            return " (fluxes need about a minute: try --duration 120)" if not self.flux_records else ""
        value = good[-1]["values"].get("W_T_SONIC_COV")
        if value is None:
            return ""
        return f" (last w'Ts' {value:.4f} K m s-1, prescribed {DEMO_TURBULENCE.truth('w', 'ts'):.4f})"


def parse_broker_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"--broker {url!r}: expected mqtt://HOST[:PORT]")
    return parts.hostname, parts.port or 1883


@contextlib.contextmanager
def _broker(url: str | None) -> Iterator[tuple[str, int]]:
    if url:
        yield parse_broker_url(url)
        return
    from gateway.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.host, broker.port


def demo_storage(data_dir: Path, influx_url: str | None) -> dict[str, object]:
    """The demo's store: embedded SQLite in the data dir, or database sinkwatch_demo of `influx_url`."""
    if influx_url:
        return {"kind": "influxdb", "url": influx_url, "database": "sinkwatch_demo"}
    return {"kind": "sqlite", "path": str(data_dir / "central.sqlite")}


def demo_central_config(broker: tuple[str, int], data_dir: Path, influx_url: str | None) -> dict[str, Any]:
    """The demo's central config: its store, the budget's site facts and the soil and stems jobs of the demo station
    (written to <data-dir>/central.yaml, so the commands that take -c work on the demo's data)."""
    return {
        "mqtt": {"host": broker[0], "port": broker[1], "client_id": f"sinkwatch-central-demo-{int(time.time())}"},
        "storage": demo_storage(data_dir, influx_url),
        # the demo is the one explicit exception to API tokens: announced by the API itself (health, a header on
        # every response, the docs) and refused by the config on anything but loopback
        "api": {"host": "127.0.0.1", "port": 0, "auth": "development"},
        "data_dir": str(data_dir / "central"),
        "budget": {"per_station": {DEMO_STATION: {
            "latitude": DEMO_SITE_METADATA["latitude"], "longitude": DEMO_LONGITUDE,
            "utc_offset_h": DEMO_UTC_OFFSET_H, "site": DEMO_SITE}}},
        **central_sections(DEMO_SOIL_NAMES, DEMO_STATION, DEMO_UTC_OFFSET_H),
        "alerts": {"every_s": DEMO_ALERT_EVERY_S},
    }


@contextlib.contextmanager
def _central(broker: tuple[str, int], data_dir: Path, influx_url: str | None) -> Iterator[str]:
    from gateway.central.config import CentralConfig
    from gateway.central.service import run_central

    mapping = demo_central_config(broker, data_dir, influx_url)
    config = CentralConfig.model_validate(mapping)
    write_yaml(data_dir / "central.yaml", "the demo's central service: store, budget site, soil and stems jobs",
               {k: v for k, v in mapping.items() if k not in ("mqtt", "api")})
    stop = threading.Event()
    bound: list[int] = []
    ready = threading.Event()
    failure: list[BaseException] = []

    def on_ready(port: int) -> None:
        bound.append(port)
        ready.set()

    def serve() -> None:
        try:
            run_central(config, stop_event=stop, ready_callback=on_ready)
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, name="central", daemon=True)
    thread.start()
    if not ready.wait(30) or failure:
        stop.set()
        raise RuntimeError(f"central service did not start: {failure[0] if failure else 'timed out'}")
    try:
        yield f"http://127.0.0.1:{bound[0]}"
    finally:
        stop.set()
        thread.join(timeout=15)


# The demo station: what is simulated where. Depths and AmeriFlux position qualifiers of the soil CO2 profile.
PROFILE: tuple[tuple[str, int, float, str], ...] = (
    ("soil_co2_10cm", 240, 0.1, "_1_1_1"),
    ("soil_co2_30cm", 241, 0.3, "_1_2_1"),
    ("soil_co2_60cm", 242, 0.6, "_1_3_1"),
)
SOIL_PROBE = ("soil_swc_10cm", 1, "_1_1_1")  # name, Modbus address, qualifier (layout A, 9600 8N1)
CANOPY_CO2 = ("co2_canopy", "_2_1_1")  # GMP343, ASCII on its own RS-232 port
PYRANOMETER = ("sw_in", 1, "_1_1_1")  # SR30-D1, Modbus RTU at its factory 19200 8E1, address 1
AIR_PROBE = ("ta_rh", 2, "_1_1_1")  # HMP155 in POLL mode at its factory 4800 7E1, address 2
SONIC, ANALYZER = "sonic", "irga"  # WindMaster and LI-7500 at 20 Hz over TCP, one turbulence field
CHAMBER = ("chamber_1", 1, 240, "_4_1_1")  # automated chamber: I/O module and GMP252 on a fifth RS-485 line, 8E1
# A real chamber closes for minutes every hour; the demo closes it for 40 s every 90 s so closures come quickly.
CHAMBER_SCHEDULE = {"every_s": 90.0, "closure_s": 40.0, "ambient_s": 10.0, "idle_every_s": 30.0, "lid_travel_s": 5.0}
CHAMBER_TRUE_FLUX = 2.5  # umol m-2 s-1: the simulated chamber's soil efflux (drivers/chamber/simulator.py)
DENDRO = ("dendro", ("_1_1_1", "_2_1_1", "_3_1_1"))  # firmware bridge board (USB serial), ecomatik_dr1 on ADC0..2
DENDRO_RANGE_UM, DENDRO_EXCITATION_MV = 11000.0, 2500.0
STREAM_HZ = 20.0
SUMMARY_INTERVAL_S = 10.0
# Fluxes on the station from the two streams. A real station averages 30 min; the demo averages 30 s so that
# fluxes appear within a minute or two, and its turbulence has a short integral time scale (0.1 s) so that 600
# records already pin the covariances down to a few per cent of the prescribed truth.
FLUX_AVERAGING_MIN = 0.5
DEMO_TURBULENCE = TurbulenceSpec(frequency_hz=STREAM_HZ, time_scale_s=0.1)
DEMO_SITE_METADATA = {"altitude": 100.0, "latitude": 51.0, "canopy_height": 20.0}
DEMO_LONGITUDE = 10.0  # the site's longitude and standard time, for the budget's potential radiation
DEMO_UTC_OFFSET_H = 1.0
DEMO_SOIL_NAMES = DemoSoilNames(
    probes=tuple((name, depth, suffix) for name, _address, depth, suffix in PROFILE),
    swc=f"{SOIL_PROBE[0]}/SWC{SOIL_PROBE[2]}", ts=f"{SOIL_PROBE[0]}/TS{SOIL_PROBE[2]}",
    chamber=(CHAMBER[0], CHAMBER[3]),
    dendrometer=(DENDRO[0], tuple(f"STEM_RAD_CHG{q}" for q in DENDRO[1])),
    frost_temperature=f"{AIR_PROBE[0]}/TA{AIR_PROBE[2]}")


@dataclass
class DemoRig:
    """The running simulators of the demo station, and where the station's drivers find them. Tests reach in
    to stop one (`profile_line.unplug(241)`, `sonic.stop()`, ...)."""

    profile_port: str  # RS-485 line 1 (19200 8N2): the three GMP252 of the profile
    soil_port: str  # RS-485 line 2 (9600 8N1): the soil probe
    canopy_port: str  # RS-232: the GMP343
    profile_line: Any  # RtuLineSimulator
    soil_line: Any  # RtuLineSimulator
    probes: list[Any]  # GMP252Simulator, in PROFILE order
    soil: Any  # SoilProbeSimulator
    canopy: Any  # GMP343Simulator
    sonic: Any  # WindMasterSimulator
    analyzer: Any  # LI7500Simulator
    met_port: str  # RS-485 line 3 (19200 8E1): the SR30 pyranometer
    air_port: str  # RS-485 line 4 (4800 7E1): the HMP155
    met_line: Any  # RtuLineSimulator
    pyranometer: Any  # SR30Simulator
    air_line: Any  # HMP155LineSimulator
    air_probe: Any  # HMP155Probe
    chamber_port: str  # RS-485 line 5 (19200 8E1): the automated chamber's I/O module and GMP252
    chamber_line: Any  # RtuLineSimulator
    chamber: Any  # ChamberModel: the lid and the headspace, with every closure's true flux
    board_port: str  # USB serial of the firmware bridge board with the dendrometers
    board: Any  # PythonBoard
    api_url: str = ""  # the central service of the running demo (set by run_demo before on_running)

    def station_config(self, work: Path, broker: tuple[str, int], interval_s: float = 1.0,
                       signing_key: Path | None = None) -> dict[str, Any]:
        """The station.yaml mapping of this rig: every sensor at its simulated port."""
        # 1 s: the simulated devices answer within milliseconds, but on a loaded machine (a CI runner, the test
        # suite beside it) a reply can take longer than 0.3 s, and the demo then showed sensor errors
        rtu: dict[str, Any] = {"interval_s": interval_s, "timeout_s": 1.0, "retries": 0}
        sensors: list[dict[str, Any]] = [
            {"name": name, "driver": "gmp252", "port": self.profile_port, "address": address, "baudrate": 19200,
             "parity": "N", "stopbits": 2, "variable_suffix": suffix, **rtu}
            for name, address, _depth, suffix in PROFILE
        ]
        sensors.append({"name": SOIL_PROBE[0], "driver": "soilprobe", "port": self.soil_port,
                        "address": SOIL_PROBE[1], "layout": "A", "baudrate": 9600, "parity": "N", "stopbits": 1,
                        "variable_suffix": SOIL_PROBE[2], **rtu})
        sensors.append({"name": CANOPY_CO2[0], "driver": "gmp343", "port": self.canopy_port,
                        "interval_s": max(interval_s, 2.0), "variable_suffix": CANOPY_CO2[1]})
        # read_temperature off: its T_PROBE_1_1_1 would mix with the 10 cm GMP252's in a series by variable
        sensors.append({"name": PYRANOMETER[0], "driver": "sr30", "port": self.met_port, "address": PYRANOMETER[1],
                        "variable_suffix": PYRANOMETER[2], "read_temperature": False, **rtu})
        sensors.append({"name": AIR_PROBE[0], "driver": "hmp155", "port": self.air_port, "address": AIR_PROBE[1],
                        "interval_s": interval_s, "timeout_s": 0.5, "variable_suffix": AIR_PROBE[2]})
        sensors.append({"name": SONIC, "driver": "windmaster", "port": self.sonic.tcp_endpoint,
                        "frequency_hz": STREAM_HZ, "height_m": 25.0})
        sensors.append({"name": ANALYZER, "driver": "li7500", "port": self.analyzer.tcp_endpoint,
                        "frequency_hz": STREAM_HZ})
        sensors.append({"name": CHAMBER[0], "driver": "chamber", "port": self.chamber_port, "io_address": CHAMBER[1],
                        "analyzer_address": CHAMBER[2], "baudrate": 19200, "parity": "E", "stopbits": 1,
                        "interval_s": min(max(interval_s, 1.0), 5.0), "timeout_s": 1.0, "retries": 0,
                        "variable_suffix": CHAMBER[3], **CHAMBER_SCHEDULE})
        sensors.append({"name": DENDRO[0], "driver": "firmware_bridge", "port": self.board_port,
                        "interval_s": max(interval_s, 2.0), "sample_interval_ms": 1000,
                        "analog": [{"channel": channel, "model": "ecomatik_dr1", "variable_suffix": suffix}
                                   for channel, suffix in enumerate(DENDRO[1])]})
        return {
            "site": DEMO_SITE, "station": DEMO_STATION,
            **({"signing_key": str(signing_key)} if signing_key is not None else {}),
            "mqtt": {"host": broker[0], "port": broker[1]},
            "buffer": {"path": str(work / "station-buffer.sqlite"), "publish_interval_s": 0.5},
            "streams": {"archive_dir": str(work / "raw"), "summary_interval_s": SUMMARY_INTERVAL_S,
                        "uplink": "summaries"},
            "flux": {"sonic": SONIC, "analyzer": ANALYZER, "averaging_min": FLUX_AVERAGING_MIN,
                     "metadata": dict(DEMO_SITE_METADATA)},
            "telemetry": {"interval_s": DEMO_TELEMETRY_S},
            "sensors": sensors,
        }

    def describe(self) -> list[str]:
        depths = ", ".join(f"{address} at {depth * 100:.0f} cm" for _n, address, depth, _s in PROFILE)
        return [
            f"RS-485 line {self.profile_port}: 3 x GMP252 soil CO2 profile (addresses {depths}), 19200 8N2",
            f"RS-485 line {self.soil_port}: soil probe (layout A, address {SOIL_PROBE[1]}), 9600 8N1",
            f"RS-232 {self.canopy_port}: GMP343 canopy CO2, 19200 8N1",
            f"RS-485 line {self.met_port}: SR30 pyranometer (SW_IN, address {PYRANOMETER[1]}), 19200 8E1",
            f"RS-485 line {self.air_port}: HMP155 (TA, RH, VPD; address {AIR_PROBE[1]}, POLL mode), 4800 7E1",
            f"{self.sonic.tcp_endpoint}: WindMaster sonic, {self.analyzer.tcp_endpoint}: LI-7500 analyzer, "
            f"{STREAM_HZ:g} Hz each from one turbulence field (summaries every {SUMMARY_INTERVAL_S:g} s)",
            f"RS-485 line {self.chamber_port}: automated soil chamber (I/O module {CHAMBER[1]}, GMP252 {CHAMBER[2]}), "
            f"19200 8E1, closed {CHAMBER_SCHEDULE['closure_s']:g} s every {CHAMBER_SCHEDULE['every_s']:g} s, true "
            f"efflux {CHAMBER_TRUE_FLUX:g} umol m-2 s-1",
            f"USB {self.board_port}: firmware bridge board with {len(DENDRO[1])} point dendrometers (ADC0..)",
        ]


@contextlib.contextmanager
def demo_simulators(work: Path, seed: int = 0) -> Iterator[DemoRig]:
    """Every simulator of the demo station, in this process, on Python PTY pairs (stable names under
    `<work>/ports/`) and TCP loopback: nothing but Python needed."""
    from drivers.chamber.simulator import ChamberModel, chamber_devices
    from drivers.gmp252.simulator import profile_simulators
    from drivers.gmp343.simulator import GMP343Simulator
    from drivers.hmp155.simulator import HMP155LineSimulator, HMP155Probe
    from drivers.li7500.simulator import LI7500Simulator
    from drivers.soilprobe.simulator import SoilProbeSimulator
    from drivers.sr30.simulator import SR30Simulator
    from drivers.windmaster.simulator import WindMasterSimulator
    from firmware_bridge.pyboard import PythonBoard, stem_signal
    from gateway.simulation.pty import python_pty_pair
    from gateway.simulation.rtu_line import RtuLineSimulator
    from gateway.simulation.weather import MetSignal

    ports = work / "ports"
    with contextlib.ExitStack() as stack:
        line1_sim, line1 = stack.enter_context(python_pty_pair(ports / "rs485-1"))
        line2_sim, line2 = stack.enter_context(python_pty_pair(ports / "rs485-2"))
        rs232_sim, rs232 = stack.enter_context(python_pty_pair(ports / "rs232-1"))
        probes = profile_simulators({address: depth for _n, address, depth, _s in PROFILE}, seed=seed)
        profile_line = stack.enter_context(
            RtuLineSimulator(line1_sim, list(probes), baudrate=19200, parity="N", stopbits=2, keep_events=False))
        soil = SoilProbeSimulator(address=SOIL_PROBE[1], layout="A", seed=seed)
        soil_line = stack.enter_context(
            RtuLineSimulator(line2_sim, [soil], baudrate=9600, parity="N", stopbits=1, keep_events=False))
        canopy = stack.enter_context(GMP343Simulator(rs232_sim, seed=seed))
        # one weather: the sun the pyranometer sees is the one that warms and dries the air at the HMP155
        weather = MetSignal(latitude_deg=DEMO_SITE_METADATA["latitude"], seed=seed)
        line3_sim, line3 = stack.enter_context(python_pty_pair(ports / "rs485-3"))
        line4_sim, line4 = stack.enter_context(python_pty_pair(ports / "rs485-4"))
        pyranometer = SR30Simulator(address=PYRANOMETER[1], seed=seed, signal=weather)
        met_line = stack.enter_context(
            RtuLineSimulator(line3_sim, [pyranometer], baudrate=19200, parity="E", stopbits=1, keep_events=False))
        air_probe = HMP155Probe(address=AIR_PROBE[1], seed=seed, signal=weather)
        air_line = stack.enter_context(HMP155LineSimulator(line4_sim, [air_probe]))
        # one field, one start time: the analyzer sees the sonic's turbulence with the field's known lag
        started = time.time()
        sonic = stack.enter_context(WindMasterSimulator("tcp://127.0.0.1:0", seed=seed, frequency_hz=STREAM_HZ,
                                                        wall_clock_start=started, spec=DEMO_TURBULENCE))
        analyzer = stack.enter_context(LI7500Simulator("tcp://127.0.0.1:0", seed=seed, frequency_hz=STREAM_HZ,
                                                       wall_clock_start=started, spec=DEMO_TURBULENCE))
        line5_sim, line5 = stack.enter_context(python_pty_pair(ports / "rs485-5"))
        chamber = ChamberModel(flux_umol_m2_s=CHAMBER_TRUE_FLUX, travel_s=1.0, p_pa=99000.0, seed=seed)
        chamber_line = stack.enter_context(RtuLineSimulator(
            line5_sim, list(chamber_devices(chamber, io_address=CHAMBER[1], analyzer_address=CHAMBER[2])),
            baudrate=19200, parity="E", stopbits=1, keep_events=False))
        usb_sim, usb = stack.enter_context(python_pty_pair(ports / "usb-board"))
        board = stack.enter_context(PythonBoard(usb_sim, adc_noise_counts=0.7, seed=seed))
        board.set_voltage(7, DENDRO_EXCITATION_MV)
        for channel in range(len(DENDRO[1])):
            board.set_signal(channel, stem_signal(DENDRO_RANGE_UM, DENDRO_EXCITATION_MV, _stem(channel)))
        yield DemoRig(line1, line2, rs232, profile_line, soil_line, list(probes), soil, canopy, sonic, analyzer,
                      line3, line4, met_line, pyranometer, air_line, air_probe, line5, chamber_line, chamber, usb,
                      board)


def _stem(index: int) -> Callable[[float], float]:
    """A dendrometer's absolute position (um) on a live stem, sped up so that a demo of minutes sees it move:
    growing 0.1 um a second (a season's growth in hours) with a 15-um swelling and shrinking every two minutes
    (tree water deficit)."""
    started = time.time()

    def position(t: float) -> float:
        return 4000.0 + 500.0 * index + 0.1 * (t - started) - 15.0 * math.sin(2 * math.pi * (t - started) / 120.0)
    return position


def write_yaml(path: Path, what: str, config: dict[str, Any]) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# generated by `sinkwatch demo`: {what}\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def demo_station_key(work: Path) -> Path:
    """The demo station's own signing key (made on first use) registered with the demo's central service, which
    requires signatures like any deployment (docs/security.md)."""
    from gateway.trust.keys import KeyRegistry, generate_key, load_private_key

    path = work / "station.key"
    key = load_private_key(path) if path.exists() else generate_key(path)
    KeyRegistry(work / "central").register(DEMO_SITE, DEMO_STATION, key.public_key(), replace_active=True)
    return path


def write_station_yaml(path: Path, config: dict[str, Any]) -> Path:
    return write_yaml(path, "the demo station's sensors at their simulated ports", config)


def demo_series(api_url: str) -> list[tuple[str, str]]:
    """Every (sensor, variable) the store holds for the demo station, as the API lists them."""
    with httpx.Client(base_url=api_url, timeout=10) as client:
        response = client.get("/api/v1/stations")
        response.raise_for_status()
        for entry in response.json():
            if entry["site"] == DEMO_SITE and entry["station"] == DEMO_STATION:
                return sorted((sensor, variable) for sensor, variables in entry["sensors"].items()
                              for variable in variables)
    return []


def count_stored_by_variable(api_url: str, start_margin: timedelta = timedelta(hours=1)) -> dict[str, int]:
    """Readings stored per variable (all sensors reporting it), counted through the public HTTP API (/stations,
    then /series for each sensor and variable)."""
    now = utc_now()
    counts: dict[str, int] = {}
    with httpx.Client(base_url=api_url, timeout=10) as client:
        for sensor, variable in demo_series(api_url):
            response = client.get("/api/v1/series", params={
                "site": DEMO_SITE, "station": DEMO_STATION, "sensor": sensor, "variable": variable,
                "start": (now - start_margin).isoformat(), "end": (now + start_margin).isoformat(),
            })
            response.raise_for_status()
            counts[variable] = counts.get(variable, 0) + len(response.json()["points"])
    return counts


def fetch_flux_records(api_url: str, margin: timedelta = timedelta(hours=1)) -> list[dict[str, Any]]:
    """The station's flux records as a researcher would fetch them (GET /api/v1/fluxes)."""
    now = utc_now()
    with httpx.Client(base_url=api_url, timeout=10) as client:
        response = client.get("/api/v1/fluxes", params={
            "station": DEMO_STATION, "start": (now - margin).isoformat(), "end": (now + margin).isoformat()})
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()["records"]
        return records


def count_stored(api_url: str, start_margin: timedelta = timedelta(hours=1)) -> int:
    return sum(count_stored_by_variable(api_url, start_margin).values())


def run_demo(duration_s: float | None, *, broker_url: str | None = None, influx_url: str | None = None,
             data_dir: Path | None = None, interval_s: float = 1.0, seed: int = 0,
             stop: threading.Event | None = None, echo: bool = True,
             on_running: Callable[[DemoRig, Path], None] | None = None, budget: bool = True,
             soilstems: bool = True) -> DemoSummary:
    """Run the demo station until `stop` is set or `duration_s` has passed. `on_running(rig, station_yaml)` is
    called (in this thread) once the station runs, e.g. for a test to check it while it runs. `budget`: first
    store a simulated year for the demo station and run the central budget job on it (gateway/demo_budget.py);
    it runs before the station starts, so its seconds of computing never take time from the station's threads.
    `soilstems`: likewise a simulated year of soil profile, chamber and dendrometers through the central soil and
    stems jobs (gateway/demo_soilstems.py), and after the station stopped the same jobs over its live readings."""
    stop = stop or threading.Event()
    owned_dir = data_dir is None
    work = Path(tempfile.mkdtemp(prefix="sinkwatch-demo-")) if data_dir is None else data_dir
    work.mkdir(parents=True, exist_ok=True)
    say = print if echo else log.info
    started = time.monotonic()
    try:
        with _broker(broker_url) as broker, _central(broker, work, influx_url) as api_url, \
                demo_simulators(work, seed) as rig:
            key_path = demo_station_key(work)
            station_yaml = write_station_yaml(work / "station.yaml",
                                              rig.station_config(work, broker, interval_s, signing_key=key_path))
            say(f"broker:   mqtt://{broker[0]}:{broker[1]}")
            say(f"status:   {api_url}/   (the status page: stations, health, alarms, fluxes, budget)")
            say(f"API:      {api_url}/api/v1/stations   docs: {api_url}/docs   (development mode: no tokens; a "
                "deployment uses api.auth: token)")
            say(f"series:   {api_url}/api/v1/series?station={DEMO_STATION}&variable=CO2{PROFILE[0][3]}"
                f"&start=...&end=...")
            for line in rig.describe():
                say(f"sensors:  {line}")
            say(f"station:  {station_yaml}; data in {work}")
            say(f"check:    sinkwatch station check -c {station_yaml}")
            say(f"live:     sinkwatch live -c {station_yaml}")
            demo_budget = _budget(work, influx_url, api_url, seed, say) if budget else None
            demo_soil = _soilstems(work, influx_url, api_url, seed, say) if soilstems else None
            station = load_station_config(station_yaml)
            daemon = StationDaemon(station)
            signing_from = utc_now()  # the station signs every item it sends after this
            station_thread = threading.Thread(target=daemon.run, args=(stop,), name="station", daemon=True)
            station_thread.start()
            if duration_s is None:
                say("running until Ctrl-C")
            if on_running is not None:
                rig.api_url = api_url
                on_running(rig, station_yaml)
            stop.wait(duration_s)
            stop.set()
            station_thread.join(timeout=30)
            read = daemon.readings_received
            confirmed = daemon.delivery.counters("readings").confirmed_units
            errors = (sum(sum(r.health.errors.values()) for r in daemon.runners)
                      + sum(sum(r.health.bad.values()) for r in daemon.streams.runners))
            # a receipt says the store holds a batch, so the API shows at least what was confirmed
            stored = count_stored_by_variable(api_url)
            if demo_soil is not None:
                demo_soil.live = _live_soilstems(work, influx_url, rig, say)
            audit = None
            if not owned_dir:
                audit = audit_arguments(work / "central.yaml", signing_from, utc_now() + timedelta(seconds=1))
                say(f"audit:    sinkwatch {' '.join(audit)}")
            else:
                say("audit:    give --data-dir to keep the store, and the demo prints the `sinkwatch audit verify` "
                    "that re-checks every item the station signed")
            return DemoSummary(time.monotonic() - started, read, confirmed, sum(stored.values()), errors,
                               api_url, stored, fetch_flux_records(api_url), demo_budget, demo_soil,
                               work / "central.yaml", audit)
    finally:
        if owned_dir:
            shutil.rmtree(work, ignore_errors=True)


def audit_arguments(central_yaml: Path, start: datetime, end: datetime) -> list[str]:
    """`sinkwatch audit verify` over the items the demo station signed in [start, end), on the demo's store."""
    return ["audit", "verify", "--station", DEMO_STATION, "--site", DEMO_SITE, "--from", format_time(start),
            "--to", format_time(end), "-c", str(central_yaml)]


def _budget(work: Path, influx_url: str | None, api_url: str, seed: int,
            say: Callable[[str], None]) -> DemoBudget:
    from gateway.central.config import StorageSettings

    say("budget:   storing a simulated year of half-hourly fluxes and met readings for the demo station and "
        "computing its carbon budget ...")
    result = run_demo_budget(
        StorageSettings.model_validate(demo_storage(work, influx_url)), api_url, site=DEMO_SITE,
        station=DEMO_STATION, latitude=DEMO_SITE_METADATA["latitude"], longitude=DEMO_LONGITUDE,
        utc_offset_h=DEMO_UTC_OFFSET_H, radiation_sensor=PYRANOMETER[0], air_sensor=AIR_PROBE[0],
        suffix=PYRANOMETER[2], seed=seed)
    for line in result.lines():
        say(f"budget:   {line}")
    return result


def _demo_central(work: Path, influx_url: str | None) -> Any:
    from gateway.central.config import CentralConfig

    return CentralConfig.model_validate(demo_central_config(("127.0.0.1", 1883), work, influx_url))


def _soilstems(work: Path, influx_url: str | None, api_url: str, seed: int,
               say: Callable[[str], None]) -> DemoSoilStems:
    from gateway.central.config import StorageSettings

    say("soil:     storing a simulated year of soil profile, chamber and dendrometer readings for the demo station "
        "and computing soil efflux, GRO/TWD and stem carbon ...")
    result = run_demo_soilstems(StorageSettings.model_validate(demo_storage(work, influx_url)), api_url,
                                _demo_central(work, influx_url), DEMO_SOIL_NAMES, site=DEMO_SITE,
                                station=DEMO_STATION, utc_offset_h=DEMO_UTC_OFFSET_H, seed=seed)
    for line in result.lines():
        say(f"soil:     {line}")
    say(f"report:   sinkwatch report --station {DEMO_STATION} --year {result.year} -c {work / 'central.yaml'} "
        f"--out-dir {work / 'report'}")
    return result


def _live_soilstems(work: Path, influx_url: str | None, rig: DemoRig, say: Callable[[str], None]) -> list[str]:
    from gateway.central.config import StorageSettings

    lines = live_lines(StorageSettings.model_validate(demo_storage(work, influx_url)), _demo_central(work, influx_url),
                       DEMO_STATION, closures_of(rig.chamber))
    for line in lines:
        say(f"soil:     {line}")
    return lines
