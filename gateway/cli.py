"""The `sinkwatch` command: one entry point, a subcommand per job."""

from __future__ import annotations

import inspect
import os
import signal
import threading
from collections.abc import MutableMapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer

from gateway import __version__
from gateway.central.cli import app as central_app
from gateway.central.cli import audit_app, flux_budget_station, flux_recompute, station_provision, station_revoke
from gateway.driver_api import SIMULATOR_ENTRY_POINT_GROUP
from gateway.edge.cli import app as station_app
from gateway.edge.cli import live
from gateway.extras import MissingExtra, require_extra
from gateway.flux.budget_cli import budget as file_budget
from gateway.flux.cli import app as flux_app
from gateway.probe import app as probe_app
from gateway.report_cli import report as site_report

app = typer.Typer(
    help="sinkwatch: continuous, traceable forest carbon-sink measurement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(given: bool) -> None:
    if given:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _sinkwatch(
    version: Annotated[bool, typer.Option("--version", help="print the installed version and exit (as `sinkwatch "
                                                            "version`)", callback=_print_version,
                                          is_eager=True)] = False,
) -> None:
    """sinkwatch: continuous, traceable forest carbon-sink measurement."""


station_app.command("provision")(station_provision)
station_app.command("revoke")(station_revoke)
app.add_typer(station_app, name="station")
app.add_typer(central_app, name="central")
app.add_typer(audit_app, name="audit")
flux_app.command("recompute")(flux_recompute)  # a central job, beside `flux ec`


def flux_budget(
    input_csv: Annotated[Path | None, typer.Argument(
        help="file mode: half-hourly table (CSV, tab- or blank-separated, may be gzipped) with TIMESTAMP_START/"
             "TIMESTAMP_END (YYYYMMDDHHMM; one of them is enough) or Year, DoY, Hour (REddyProc); NEE or FC, SW_IN "
             "(or Rg), TA, VPD (or RH), optional USTAR; -9999 missing", show_default=False)] = None,
    lat: Annotated[float | None, typer.Option(help="file mode, required: site latitude, degrees north")] = None,
    lon: Annotated[float | None, typer.Option(help="file mode, required: site longitude, degrees east")] = None,
    utc_offset: Annotated[float | None, typer.Option("--utc-offset", help="file mode, required: hours the time "
                                                                         "stamps' clock is ahead of UTC")] = None,
    out: Annotated[Path | None, typer.Option(help="half-hourly output CSV (file mode: required, one row per input "
                                                  "row)")] = None,
    ustar: Annotated[str | None, typer.Option(help="auto (moving-point test + bootstrap), none (NEE already "
                                                   "filtered) or a threshold in m s-1 (file mode default: auto; "
                                                   "station mode: budget.ustar of the config)")] = None,
    daily: Annotated[Path | None, typer.Option(help="write daily sums (gC m-2, tCO2e ha-1) to this CSV")] = None,
    monthly: Annotated[Path | None, typer.Option(help="write monthly sums to this CSV")] = None,
    annual: Annotated[Path | None, typer.Option(help="write annual sums with uncertainty and the u* threshold "
                                                     "distribution to this CSV")] = None,
    ustar_draws: Annotated[Path | None, typer.Option(help="write every bootstrap u* threshold to this CSV")] = None,
    met: Annotated[Path | None, typer.Option(help="file mode: CSV with SW_IN/TA/VPD/USTAR for the columns INPUT "
                                                  "lacks")] = None,
    storage_height: Annotated[float | None, typer.Option(help="file mode: compute SC from CO2/TA/PA at this height "
                                                              "(m) when INPUT has FC without SC")] = None,
    bootstrap: Annotated[int, typer.Option(help="file mode: u* bootstrap draws (auto)", min=100)] = 100,
    seed: Annotated[int, typer.Option(help="file mode: seed of the u* bootstrap")] = 0,
    record: Annotated[Path | None, typer.Option(help="file mode: write the run record (JSON: inputs' SHA-256, "
                                                   "settings, notes, outputs' SHA-256) for sinkwatch report "
                                                   "--budget-record")] = None,
    despike: Annotated[float | None, typer.Option(help="file mode: remove NEE spikes beyond Z x MAD/0.6745 of the "
                                                        "second differences (Papale et al. 2006: 4 to 7; off by "
                                                        "default; station mode: budget.despike_z)", min=0.5,
                                                   max=20)] = None,
    max_flux_flag: Annotated[int, typer.Option(help="file mode: remove NEE whose quality flag (FC_SSITC_TEST, "
                                                    "qcNEE: 0 best, 1 good, 2 bad) is above this", min=0,
                                               max=2)] = 1,
    ustar_plateau: Annotated[float, typer.Option(help="file mode: the u* moving-point test's plateau criterion: "
                                                      "1.0 ONEFlux's rule (default), 0.95 REddyProc's default "
                                                      "plateauCrit, e.g. to compare with a REddyProc-made product",
                                                 min=0.5, max=1.0)] = 1.0,
    station: Annotated[str | None, typer.Option(help="station mode: the station whose stored fluxes and met "
                                                     "readings to use")] = None,
    year: Annotated[int | None, typer.Option(help="station mode: calendar year of the station's standard time; "
                                                  "the current one gives the running total (file mode: the year of "
                                                  "a file with DoY and Hour but no Year column)", min=1950,
                                             max=2200)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="station mode: central config (storage, "
                                                                       "budget)")] = None,
) -> None:
    """Carbon budget: u* filtering, MDS gap filling, partitioning, daily/monthly/annual sums with uncertainty.

    File mode: sinkwatch flux budget INPUT.csv --lat LAT --lon LON --utc-offset H --out OUT.csv [...].
    Station mode: sinkwatch flux budget --station S --year Y -c central.yaml computes the budget from the central
    store (coordinates, sensors and settings under budget: in the config), stores it and prints the total.
    """
    if station is not None or config is not None or (year is not None and input_csv is None):
        missing = [name for name, value in (("--station", station), ("--year", year), ("--config", config))
                   if value is None]
        if missing:
            raise typer.BadParameter("station mode needs --station, --year and -c/--config together",
                                     param_hint=f"'{missing[0]}'")
        ignored = [name for name, given in (("INPUT_CSV", input_csv), ("--lat", lat), ("--lon", lon),
                                            ("--utc-offset", utc_offset), ("--met", met),
                                            ("--storage-height", storage_height)) if given is not None]
        if max_flux_flag != 1:
            ignored.append("--max-flux-flag")
        if despike is not None:
            ignored.append("--despike")
        if record is not None:
            ignored.append("--record")
        if ustar_plateau != 1.0:
            ignored.append("--ustar-plateau")
        if bootstrap != 100:  # station mode: budget.bootstrap and budget.seed of the config (were ignored silently)
            ignored.append("--bootstrap")
        if seed != 0:
            ignored.append("--seed")
        if ignored:
            raise typer.BadParameter("a file-mode option; in station mode the central config gives it (budget: in "
                                     "central.yaml)", param_hint=f"'{ignored[0]}'")
        assert station is not None and year is not None and config is not None
        flux_budget_station(station, year, config, ustar=ustar, out=out, daily=daily, monthly=monthly,
                            annual=annual, ustar_draws=ustar_draws)
        return
    for hint, value in (("'INPUT_CSV'", input_csv), ("'--lat'", lat), ("'--lon'", lon),
                        ("'--utc-offset'", utc_offset), ("'--out'", out)):
        if value is None:
            raise typer.BadParameter("missing: the file mode needs INPUT_CSV, --lat, --lon, --utc-offset and --out "
                                     "(the station mode --station, --year and -c)", param_hint=hint)
    assert input_csv is not None and lat is not None and lon is not None and utc_offset is not None and out is not None
    file_budget(input_csv, lat, lon, utc_offset, out, ustar=ustar or "auto", daily=daily, monthly=monthly,
                annual=annual, ustar_draws=ustar_draws, met=met, storage_height=storage_height, bootstrap=bootstrap,
                seed=seed, year=year, max_flux_flag=max_flux_flag, despike=despike, record=record,
                ustar_plateau=ustar_plateau)


flux_app.command("budget")(flux_budget)
app.add_typer(flux_app, name="flux")
app.add_typer(probe_app, name="probe")
app.command(name="live")(live)  # `sinkwatch live -c station.yaml`, the same as `sinkwatch station live`
app.command(name="report")(site_report)  # matplotlib is imported only when a report is rendered


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(__version__)


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds (default: until Ctrl-C)",
                                                   min=1)] = None,
    broker: Annotated[str | None, typer.Option(help="use this MQTT broker (mqtt://HOST:PORT) instead of the "
                                                    "embedded one")] = None,
    influx_url: Annotated[str | None, typer.Option(help="store in this InfluxDB (http://HOST:8086, database "
                                                        "sinkwatch_demo) instead of the embedded SQLite store")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="keep buffer, store and logs here (default: a temp dir, "
                                                       "removed at the end)")] = None,
    interval: Annotated[float, typer.Option(help="probe polling interval in seconds", min=0.1)] = 1.0,
    budget: Annotated[bool, typer.Option(help="first compute the carbon budget of a simulated year (a few seconds; "
                                              "see gateway/demo_budget.py)")] = True,
    soilstems: Annotated[bool, typer.Option(help="first compute soil efflux, GRO/TWD and stem carbon of a simulated "
                                                 "year (some seconds; see gateway/demo_soilstems.py), and at the end "
                                                 "the same of the live station")] = True,
) -> None:
    """Run the whole chain on this machine: simulated probe, station, broker, central service and HTTP API."""
    try:
        require_extra("demo", "sinkwatch demo")
    except MissingExtra as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from gateway.demo import run_demo
    from gateway.logs import setup_logging

    setup_logging("WARNING")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        summary = run_demo(duration, broker_url=broker, influx_url=influx_url, data_dir=data_dir,
                           interval_s=interval, stop=stop, budget=budget, soilstems=soilstems)
    except (RuntimeError, ValueError) as exc:
        typer.echo(f"demo failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(summary.line())
    if summary.readings_stored == 0:
        raise typer.Exit(1)


@app.command()
def simulate(
    device: Annotated[str, typer.Argument(help="device name, e.g. gmp252")],
    port: Annotated[str, typer.Option(help="serial path to serve on, 'pty' for a new pseudo-terminal pair, or "
                                           "tcp://HOST:PORT")],
    address: Annotated[list[int] | None, typer.Option(
        help="device address (default: the device's factory address, e.g. 240 for gmp252, 1 for sr30, 0 for "
             "hmp155); gmp252 takes several (--address 240 --address 241 ...): a soil CO2 profile on one RS-485 "
             "line, each probe deeper than the one before; a device without one (the streaming instruments, "
             "gmp343, firmware_bridge) refuses it", min=0, max=247)] = None,
    fault: Annotated[str, typer.Option(help="fault mode (see the driver's README)")] = "none",
    seed: Annotated[int, typer.Option(help="random seed of the simulated signal")] = 0,
    frequency: Annotated[float | None, typer.Option(help="output rate in Hz of a streaming instrument "
                                                         "(windmaster, csat3b, ...)", min=0.1, max=100)] = None,
) -> None:
    """Run a device simulator that speaks the device's real protocol, for commissioning and tests."""
    _stop_on_interrupt_and_term()
    found = {e.name: e for e in entry_points(group=SIMULATOR_ENTRY_POINT_GROUP)}
    if device not in found:
        typer.echo(f"unknown device {device!r}; simulators: {', '.join(sorted(found)) or 'none'}", err=True)
        raise typer.Exit(2)
    if port.startswith("tcp://"):
        host, sep, number = port.removeprefix("tcp://").rpartition(":")
        if not sep or not host or not number.isdigit() or not 0 < int(number) < 65536:
            typer.echo(f"--port {port!r}: not tcp://HOST:PORT with a port 1..65535; give e.g. tcp://127.0.0.1:5020",
                       err=True)
            raise typer.Exit(2)
    addresses = address or [240]
    if len(addresses) > 1:
        if device != "gmp252":
            typer.echo("several --address values are for gmp252 (a soil CO2 profile on one line)", err=True)
            raise typer.Exit(2)
        try:
            _simulate_profile(port, addresses, fault=fault, seed=seed)
        except (ValueError, OSError) as exc:
            typer.echo(f"simulator {device}: {exc}{_port_fix(exc)}", err=True)
            raise typer.Exit(1) from None
        return
    run = found[device].load()
    if address and "address" not in inspect.signature(run).parameters:  # was ignored without a word
        typer.echo(f"simulator {device} has no address (a device alone on its line or stream): leave --address out",
                   err=True)
        raise typer.Exit(2)
    extra = {"frequency_hz": frequency} if frequency is not None else {}
    if extra and "frequency_hz" not in inspect.signature(run).parameters:
        typer.echo(f"simulator {device} has no output rate: --frequency is for streaming instruments", err=True)
        raise typer.Exit(2)
    try:
        given = {"address": addresses[0]} if address else {}  # else the simulator's own factory address
        run(port, fault=fault, seed=seed, **given, **extra)
    except (ValueError, OSError) as exc:
        typer.echo(f"simulator {device}: {exc}{_port_fix(exc)}", err=True)
        raise typer.Exit(1) from None


def _port_fix(exc: Exception) -> str:
    """What to do about a --port the simulator could not open or listen on."""
    if not isinstance(exc, OSError):
        return ""
    return ("; --port: give a serial device that exists, 'pty' for a new pseudo-terminal pair, or tcp://HOST:PORT "
            "with an address of this host and a port no other program holds")


def _stop_on_interrupt_and_term() -> None:
    """Ctrl-C and SIGTERM stop a simulator the same way (its "stopped after" line, its line and PTY closed), also
    when it was started with SIGINT ignored: a background job of a non-interactive shell inherits that, Python then
    installs no handler of its own, and the simulator would ignore Ctrl-C for good."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


PROFILE_DEPTHS_M = (0.1, 0.3, 0.6, 1.0)


def _simulate_profile(port: str, addresses: list[int], *, fault: str, seed: int) -> None:
    """Several GMP252 on one simulated RS-485 line (19200 8N2), at 10, 30, 60, 100 cm, then every 50 cm deeper."""
    import contextlib

    from drivers.gmp252.simulator import profile_simulators
    from gateway.simulation.pty import python_pty_pair
    from gateway.simulation.rtu_line import RtuLineSimulator
    from gateway.simulation.until_stopped import serve_until_stopped

    if len(set(addresses)) != len(addresses):
        raise ValueError(f"--address values must differ on one line: {addresses}")
    if port.startswith("tcp://"):
        raise ValueError("a profile of several addresses is an RS-485 line: give a serial path or 'pty'")
    depths = {a: PROFILE_DEPTHS_M[i] if i < len(PROFILE_DEPTHS_M) else PROFILE_DEPTHS_M[-1] + 0.5 * (i - 3)
              for i, a in enumerate(addresses)}
    probes = profile_simulators(depths, seed=seed, fault=fault)
    with contextlib.ExitStack() as stack:
        sim_end = driver_end = port
        if port == "pty":
            sim_end, driver_end = stack.enter_context(python_pty_pair())
        stack.enter_context(RtuLineSimulator(sim_end, list(probes), baudrate=19200, parity="N", stopbits=2,
                                             keep_events=False))
        profile = ", ".join(f"address {a} at {d * 100:.0f} cm" for a, d in sorted(depths.items()))
        print(f"GMP252 soil CO2 profile on one RS-485 line (19200 8N2), fault {fault!r}: {profile}; point the "
              f"drivers' port at {driver_end}", flush=True)
        serve_until_stopped(lambda: f"stopped after {sum(p.requests for p in probes)} requests")


#: the BLAS thread settings numpy's libraries read when they load (OpenBLAS, OpenMP builds, MKL)
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread_unless_set(environ: MutableMapping[str, str]) -> bool:
    """Sets one BLAS thread in `environ` when none of BLAS_THREAD_VARIABLES is set (True), else leaves the
    operator's choice (False). Why: the flux engine's linear algebra is small (a `dot` of 36,000 pairs per
    covariance); with more threads OpenBLAS's idle threads spin on the other cores after every call, which cost
    a 30-min period 207 ms of CPU instead of 58 (docs/performance.md, FLUX, 2026-12-06 17:03), and the sums' last
    bits depend on the thread count, so a period's result would differ between a 2-core and a 4-core node."""
    if any(name in environ for name in BLAS_THREAD_VARIABLES):
        return False
    for name in BLAS_THREAD_VARIABLES:
        environ[name] = "1"
    return True


def main() -> None:
    """The `sinkwatch` command (pyproject's script): one BLAS thread unless set, before numpy loads (no command
    imports it before it runs: tests/test_packaging.py), then the commands."""
    one_blas_thread_unless_set(os.environ)
    app()


if __name__ == "__main__":
    main()
