"""`sinkwatch station ...`: commands for a station node."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from gateway.configfile import ConfigError

if TYPE_CHECKING:
    from gateway.edge.config import StationConfig

app = typer.Typer(help="Run and inspect a station node (the edge daemon).", no_args_is_help=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="station config file (YAML)")]


def load_station_config(path: Path) -> StationConfig:
    """The station config, validated; its models are imported (and built) only when a command reads a config,
    not when `sinkwatch` starts (docs/performance.md, "Start-up of the sinkwatch command")."""
    from gateway.edge.config import load_station_config as load

    return load(path)


def _load_or_exit(path: Path) -> StationConfig:
    try:
        return load_station_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command()
def validate(config: ConfigOption) -> None:
    """Check a station config without opening any port or connection."""
    station = _load_or_exit(config)
    count = len(station.sensors)
    typer.echo(f"{config}: ok — station {station.site}/{station.station}, {count} sensor{'s' * (count != 1)}, "
               f"broker {station.mqtt.host}:{station.mqtt.port}, buffer {station.buffer.path}")


@app.command("sample-config")
def sample_config(
    driver: Annotated[str | None, typer.Option(help="print this driver's sensor entry instead, every key documented "
                                                    "with its default (e.g. gmp252, windmaster)")] = None,
) -> None:
    """Print a station config to start from (or, with --driver, one sensor's keys)."""
    from importlib.resources import files

    if driver is None:
        typer.echo(files("gateway.edge").joinpath("sample-station.yaml").read_text(encoding="utf-8"), nl=False)
        return
    from gateway.driver_api.base import driver_sample

    try:
        typer.echo(driver_sample(driver), nl=False)
    except KeyError as exc:
        typer.echo(f"--driver: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None


@app.command()
def run(config: ConfigOption) -> None:
    """Run the edge daemon until SIGINT/SIGTERM: poll sensors, buffer on disk, publish over MQTT."""
    from gateway.edge import configtrial
    from gateway.edge.daemon import StationDaemon
    from gateway.edge.systemd import notify
    from gateway.logs import setup_logging

    setup_logging()
    edge_log = logging.getLogger("sinkwatch.edge")
    stop = threading.Event()
    signalled = threading.Event()

    def on_signal(*_: object) -> None:
        notify("STOPPING=1")
        signalled.set()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    while True:
        # a config pushed by the operator may be on trial: too late, or refused now, it is rolled back here
        # (gateway/edge/configtrial.py), before anything is opened
        trial = configtrial.before_start(config)
        trying = trial is not None and trial.state == "trying"
        try:
            station = load_station_config(config)
        except ConfigError as exc:
            if trial is not None and trying:
                configtrial.roll_back(config, trial, f"the daemon refused the new config at its start: {exc}; the "
                                      "previous config is back in force")
                continue
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        try:
            daemon = StationDaemon(station)
        except Exception as exc:
            if trial is None or not trying:
                if isinstance(exc, ConfigError):  # a config the daemon cannot use (its buffer cannot be opened)
                    typer.echo(str(exc), err=True)
                    raise typer.Exit(2) from None
                raise
            edge_log.exception("the daemon cannot start with the config on trial")
            configtrial.roll_back(config, trial, f"the daemon could not start with the new config: "
                                  f"{type(exc).__name__}: {exc}; the previous config is back in force")
            continue
        daemon.run(stop)
        edge_log.info("final health: %s", json.dumps(daemon.health(), default=str))
        if daemon.restart_reason is not None and not signalled.is_set():
            _reexec(daemon.restart_reason)
        return


def _reexec(reason: str) -> NoReturn:
    """Start the daemon again in this process (same pid, so systemd's main process stays the same): a command
    asked for a restart, or a pushed config is to be tried or rolled back."""
    from gateway.edge.systemd import notify

    logging.getLogger("sinkwatch.edge").warning("starting again: %s", reason)
    notify("RELOADING=1")
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


@app.command()
def check(config: ConfigOption) -> None:
    """Open every configured sensor once and print a pass/fail table; exit 1 if any sensor fails."""
    from gateway.edge.check import render_table, results_from_status, run_checks
    from gateway.edge.live import StatusUnavailable, read_status

    station = _load_or_exit(config)
    try:
        snapshot = read_status(station)
    except StatusUnavailable:
        snapshot = None
    if snapshot is not None:
        # The daemon owns the ports (opened exclusively): ask it, through its status file, instead of opening them.
        typer.echo(f"station daemon running (pid {snapshot.get('pid')}): it owns the ports, so this check reports "
                   f"its live status of {snapshot.get('age_s', 0.0):.1f} s ago instead of opening them")
        results = results_from_status(snapshot)
        typer.echo(render_table(results))
        if not all(r.ok for r in results):
            raise typer.Exit(1)
        return
    # The table says everything; the daemon's "unavailable" log lines (and pymodbus's own "Connection to ... failed"
    # for a Modbus TCP port) would only repeat it on stderr.
    quiet = [logging.getLogger(name) for name in ("sinkwatch.edge", "pymodbus")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.CRITICAL)
    try:
        results = run_checks(station)
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
    typer.echo(render_table(results))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def live(
    config: ConfigOption,
    once: Annotated[bool, typer.Option("--once", help="print the table once and exit (scripts, tests)")] = False,
    period: Annotated[float, typer.Option(help="seconds between refreshes", min=0.2)] = 1.0,
) -> None:
    """Live table of every sensor's latest value, rate, errors and availability, from the running daemon's status
    file (never opens a port); exit 1 if the daemon's status is missing or stale."""
    from gateway.edge.live import live_loop

    station = _load_or_exit(config)
    stop = threading.Event()
    if not once:
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    code = live_loop(station, once=once, period_s=period, stop=stop)
    if code:
        raise typer.Exit(code)
