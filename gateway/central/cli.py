"""`sinkwatch central ...` commands (mounted by gateway/cli.py as a sub-app)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.configfile import ConfigError
from gateway.extras import MissingExtra, require_extra
from gateway.logs import setup_logging

if TYPE_CHECKING:
    from gateway.central.access import TokenStore
    from gateway.central.config import CentralConfig
    from gateway.central.provision import BrokerFiles



def load_central_config(path: Path) -> CentralConfig:
    """The central config, validated. Its models are imported (and pydantic builds them) only when a command reads
    a config: that is most of an import of this module, and `sinkwatch version`, `--help` and the station's
    commands pay it otherwise (docs/performance.md, "Start-up of the sinkwatch command")."""
    from gateway.central.config import load_central_config as load

    return load(path)


app = typer.Typer(help="Central service: ingest readings from MQTT into storage and serve them over HTTP.",
                  no_args_is_help=True)


def _config_or_exit(path: Path) -> CentralConfig:
    """The central config, validated; a config error is printed and the command stops with exit 2."""
    try:
        return load_central_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _data_dir_or_exit(path: Path, settings: CentralConfig) -> None:
    """Create `data_dir` if missing; stop with one message naming the key when it cannot be made or written."""
    import os

    data_dir = settings.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        problem = None if os.access(data_dir, os.W_OK | os.X_OK) else "this user may not write it"
    except OSError as exc:
        problem = f"cannot create it: {exc.strerror or exc}"
    if problem is not None:
        typer.echo(f"{path}: data_dir {data_dir}: {problem}; set data_dir to a folder this service's user may "
                   "write, e.g. /var/lib/sinkwatch/central", err=True)
        raise typer.Exit(2)


def _require_central(command: str) -> None:
    """Stop with the install line to run when this host lacks the central service's packages."""
    try:
        require_extra("central", command)
    except MissingExtra as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command()
def validate(
    config: Annotated[Path, typer.Option("--config", "-c", help="central config file (see sample-config)")],
) -> None:
    """Check a central config without opening the store, the broker or a port."""
    settings = _config_or_exit(config)
    storage = settings.storage
    where = storage.path if storage.kind == "sqlite" else storage.url
    typer.echo(f"{config}: ok — storage {storage.kind} ({where}), broker {settings.mqtt.host}:{settings.mqtt.port}"
               f"{' (TLS)' if settings.mqtt.tls else ''}, API {settings.api.scheme}://{settings.api.host}:"
               f"{settings.api.port} (auth {settings.api.auth}), data_dir {settings.data_dir}")


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="central config file (see sample-config)")],
    workers: Annotated[int, typer.Option("--workers", min=0, max=64, help="ingest in N worker processes sharing "
                                         "the stations' stream (MQTT v5 shared subscription); 0: in this process")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log debug messages")] = False,
) -> None:
    """Run the ingestor and the HTTP API until Ctrl-C / SIGTERM."""
    _require_central("sinkwatch central serve")
    settings = _config_or_exit(config)
    _data_dir_or_exit(config, settings)
    setup_logging("DEBUG" if verbose else None)
    from gateway.central.service import ApiListenError, open_store, run_central, tune_collector  # after validation
    from gateway.central.store import StoreError
    from gateway.central.workers import WorkerPool

    try:
        store = open_store(settings.storage, settings.data_dir)
    except StoreError as exc:
        typer.echo(f"{config}: {exc}", err=True)
        raise typer.Exit(1) from None
    tune_collector()
    try:
        run_central(
            settings,
            ready_callback=lambda port: typer.echo(f"API listening on {settings.api.scheme}://{settings.api.host}:"
                                                   f"{port} (docs at /docs)"),
            store=store,
            workers=WorkerPool(config.resolve(), settings.data_dir, workers) if workers else None,
        )
    except ApiListenError as exc:
        typer.echo(f"{config}: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()


@app.command()
def ingest(
    config: Annotated[Path, typer.Option("--config", "-c", help="central config file (see sample-config)")],
    name: Annotated[str, typer.Option("--name", help="this worker's name: its MQTT client id is <mqtt.client_id>-"
                                      "<name>, its dead letters go to dead-letter.<name>.jsonl")] = "w1",
    group: Annotated[str, typer.Option("--group", help="the shared subscription group the workers share")]
    = "sinkwatch-ingest",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log debug messages")] = False,
) -> None:
    """One stateless ingest worker: stores what the broker hands it of the stations' stream (shared with every
    other worker of the group) until Ctrl-C / SIGTERM; no API (run `serve` for that)."""
    _require_central("sinkwatch central ingest")
    from gateway.model import IDENTIFIER_RE

    if not IDENTIFIER_RE.fullmatch(name):
        typer.echo(f"--name {name!r}: use letters, digits, '_', '.' or '-' (it becomes a file and client name)",
                   err=True)
        raise typer.Exit(2)
    settings = _config_or_exit(config)
    _data_dir_or_exit(config, settings)
    setup_logging("DEBUG" if verbose else None)
    from gateway.central.service import tune_collector
    from gateway.central.workers import run_ingest_worker
    from gateway.contract import shared_subscription

    try:
        shared_subscription(group, "x")
    except ValueError as exc:
        typer.echo(f"--group: {exc}", err=True)
        raise typer.Exit(2) from None
    from gateway.central.store import StoreError

    tune_collector()
    try:
        run_ingest_worker(settings, name, group=group)
    except StoreError as exc:
        typer.echo(f"{config}: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("sample-config")
def sample_config() -> None:
    """Print a documented sample config to start from."""
    from gateway.central.config import SAMPLE_CONFIG_PATH

    typer.echo(SAMPLE_CONFIG_PATH.read_text(encoding="utf-8"), nl=False)


def openapi_document() -> dict[str, object]:
    """The HTTP contract as served at /openapi.json (the store is never touched to produce it)."""
    from gateway.central.access import AccessControl, TokenStore
    from gateway.central.api import create_app
    from gateway.central.store import SqliteStore

    return create_app(SqliteStore(":memory:"), access=AccessControl("token", TokenStore(":memory:"))).openapi()


@app.command()
def openapi() -> None:
    """Print the HTTP API's OpenAPI document (docs/openapi.json is this output)."""
    import json

    _require_central("sinkwatch central openapi")
    typer.echo(json.dumps(openapi_document(), indent=2, sort_keys=True))


# `sinkwatch flux recompute`: a central job (raw archive -> engine -> Store), mounted under `sinkwatch flux` by
# gateway/cli.py beside `flux ec`.
def flux_recompute(
    station: Annotated[str, typer.Option(help="station id whose uplinked raw files to process")],
    from_: Annotated[str, typer.Option("--from", help="first period start, RFC 3339 with zone, e.g. "
                                                      "2026-11-25T00:00:00Z")],
    to: Annotated[str, typer.Option(help="last period end, RFC 3339 with zone")],
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (storage, data_dir)")],
    metadata: Annotated[Path | None, typer.Option(help="site facts the archive does not hold (altitude, latitude, "
                                                       "canopy_height, ...): YAML with SiteMetadata keys or an "
                                                       "EddyPro .metadata")] = None,
    settings: Annotated[Path | None, typer.Option(help="processing settings: EddyPro .eddypro or YAML "
                                                       "(default: the engine defaults)")] = None,
    site: Annotated[str | None, typer.Option(help="site of the station (only if it has raw files under several)")]
    = None,
    sonic: Annotated[str | None, typer.Option(help="sensor name of the sonic (if the station has several)")] = None,
    analyzer: Annotated[str | None, typer.Option(help="sensor name of the gas analyzer (if several)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="replaces DATA_DIR in planar-fit/spectral-assessment "
                                                       "paths")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler, e.g. tcp://10.0.0.5:8786: compute the "
                                                         "periods on its workers, a day per task (they must see the "
                                                         "data directory at the same path; the cluster extra); "
                                                         "default: in this process")] = None,
) -> None:
    """Reprocess a station's fluxes centrally from its archived raw files; results go to the central store with
    their engine version and settings hash (results of other settings stay)."""
    _require_central("sinkwatch flux recompute")
    from gateway.central.params import ParameterError, parse_timestamp
    from gateway.central.rawstore import RAW_DIR, RawArchive
    from gateway.central.recompute import RecomputeError, find_sensors
    from gateway.central.recompute import recompute as run
    from gateway.central.store import StoreError
    from gateway.flux.files import load_method_files, load_settings
    from gateway.flux.metadata import load_site_metadata
    from gateway.flux.rawperiods import period_bounds

    try:
        start = parse_timestamp(from_, "--from")
        end = parse_timestamp(to, "--to")
        if end <= start:
            raise ParameterError("--to", f"{to} is not after --from {from_}")
        central = load_central_config(config)
        st = load_settings(settings)
        site_md = load_site_metadata(metadata)
        pf, assessment = load_method_files(st, settings, data_dir)
        archive = RawArchive(central.data_dir / RAW_DIR)
        sensors = find_sensors(archive, station, site=site, sonic=sonic, analyzer=analyzer)
    except ParameterError as exc:
        typer.echo(f"flux recompute: {exc.parameter}: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except (ConfigError, RecomputeError, ValueError) as exc:
        typer.echo(f"flux recompute: {exc}", err=True)
        raise typer.Exit(2) from None
    from gateway.central.service import open_store

    periods = len(period_bounds(start, end, st.avrg_len))
    typer.echo(f"station {station} (site {sensors.site}): sonic {sensors.sonic}, analyzer "
               f"{sensors.analyzer or '(none)'}; {periods} periods of {st.avrg_len:g} min")
    from gateway.central.fanout import runner_for
    from gateway.extras import MissingExtra

    try:
        runner = runner_for(scheduler)
    except (MissingExtra, OSError, TimeoutError) as exc:
        typer.echo(f"flux recompute: --scheduler {scheduler}: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        store = open_store(central.storage)
    except StoreError as exc:
        typer.echo(f"flux recompute: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        with typer.progressbar(length=periods, label="recompute", show_pos=True) as bar:
            summary = run(archive, store, station, start, end, site_metadata=site_md, settings=st,
                          planar_fit=pf, spectral_assessment=assessment, progress=bar.update, sensors=sensors,
                          runner=runner)
    except ValueError as exc:  # RecomputeError, or settings the engine cannot honour with this metadata
        typer.echo(f"flux recompute: {exc}", err=True)
        raise typer.Exit(2) from None
    except StoreError as exc:
        typer.echo(f"flux recompute: storage: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
        runner.close()
    typer.echo(f"{summary.processed} periods processed: {summary.ok} ok, {summary.partial} partial, "
               f"{summary.failed} failed; {summary.no_raw_data} without raw data (not stored); "
               f"{summary.stored} stored as settings_hash {summary.settings_hash or '-'} ({summary.engine_version})")
    for reason, count in summary.failure_reasons.most_common():
        typer.echo(f"  failed ({count}): {reason}", err=True)
    if summary.processed and summary.failed == summary.processed:
        raise typer.Exit(1)


# `sinkwatch flux budget --station S --year Y -c central.yaml`: the central budget job for one station-year, the
# second mode of `sinkwatch flux budget` (gateway/cli.py dispatches between the file mode and this one).
def flux_budget_station(station: str, year: int, config: Path, *, ustar: str | None = None,
                        out: Path | None = None, daily: Path | None = None, monthly: Path | None = None,
                        annual: Path | None = None, ustar_draws: Path | None = None) -> None:
    """Compute a station-year's carbon budget from the central store, store it, print the (running) total."""
    _require_central("sinkwatch flux budget --station")
    from gateway.central.budget import BudgetJobError, describe, run_station_budget, table_csv
    from gateway.central.store import StoreError
    from gateway.outputs import OutputPathError, check_output_files

    try:
        check_output_files([("--out", out), ("--daily", daily), ("--monthly", monthly), ("--annual", annual),
                            ("--ustar-draws", ustar_draws)], inputs=[("-c/--config", config)])
        central = load_central_config(config)
        mode: str | float | None = None
        if ustar is not None:
            mode = ustar if ustar in ("auto", "none") else float(ustar)
    except (ConfigError, OutputPathError) as exc:
        typer.echo(f"flux budget: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValueError:
        typer.echo(f"flux budget: --ustar {ustar!r}: give auto, none or a threshold in m s-1 (e.g. 0.2)", err=True)
        raise typer.Exit(2) from None
    from gateway.central.api_names import unknown_station_problem
    from gateway.central.service import open_store

    try:
        store = open_store(central.storage)
    except StoreError as exc:
        typer.echo(f"flux budget: storage: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        problem = unknown_station_problem(store, station)
        if problem is not None:
            typer.echo(f"flux budget: {problem}", err=True)
            raise typer.Exit(2)
        budget = run_station_budget(store, station, year, central.budget, ustar=mode)
    except BudgetJobError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except StoreError as exc:
        typer.echo(f"flux budget: storage: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    run = budget.run
    inputs = run.settings
    typer.echo(f"station {station} {year} (site {run.site}): fluxes {inputs['flux_set']['engine_version']} "
               f"{inputs['flux_set']['settings_hash']}; " + ", ".join(f"{k} {v}" for k, v in inputs["met"].items()))
    for note in run.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(describe(budget))
    threshold = run.scalars.get("USTAR_THRESHOLD")
    if isinstance(threshold, float) and threshold == threshold:
        spread = ""
        if run.ustar_draws:
            s = {k: run.scalars.get(f"USTAR_THRESHOLD_{k}") for k in ("P05", "P50", "P95", "N")}
            spread = f" (bootstrap p05 {s['P05']:.3f}, p50 {s['P50']:.3f}, p95 {s['P95']:.3f}, n {s['N']:.0f})"
        typer.echo(f"u* threshold {threshold:.3f} m s-1{spread}")
    try:
        for path, resolution in ((out, "HH"), (daily, "DD"), (monthly, "MM"), (annual, "YY")):
            if path is not None:
                path.write_text(table_csv(run, budget.tables[resolution]), encoding="utf-8")
                typer.echo(f"wrote {path}")
        if ustar_draws is not None:
            ustar_draws.write_text("USTAR_THRESHOLD\n" + "".join(f"{v:.6g}\n" for v in run.ustar_draws),
                                   encoding="utf-8")
    except OSError as exc:  # checked writable before; a full disk or a folder removed meanwhile
        typer.echo(f"flux budget: cannot write {exc.filename}: {exc.strerror}; the budget is stored (below), the "
                   "files not all written: free space or choose another path", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"stored as settings_hash {run.settings_hash} ({run.engine_version}): "
               f"GET /api/v1/budget?station={station}&year={year}&settings_hash={run.settings_hash}")


# `sinkwatch central soil|stems --station S --year Y -c central.yaml`: the central soil/stems job once.
@app.command()
def budgets(
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (storage, budget)")],
    years: Annotated[str, typer.Option(help="calendar years, e.g. 2024 or 2020-2025")],
    station: Annotated[list[str] | None, typer.Option(help="a station (repeat for several); default: every "
                                                           "station of the store")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler, e.g. tcp://10.0.0.5:8786: compute the "
                                                         "station-years on its workers (the cluster extra); "
                                                         "default: in this process")] = None,
) -> None:
    """The carbon budget of many station-years at once (reprocessing): each computed as `sinkwatch flux budget
    --station S --year Y` does, stored, one line per station-year; exit 2 when any could not be had."""
    _require_central("sinkwatch central budgets")
    from gateway.central.budget import describe, run_budgets
    from gateway.central.fanout import runner_for
    from gateway.central.service import open_store
    from gateway.central.store import StoreError
    from gateway.extras import MissingExtra

    try:
        central = load_central_config(config)
        first, _, last = years.partition("-")
        wanted = list(range(int(first), int(last or first) + 1))
        if not wanted or not 2000 <= wanted[0] <= wanted[-1] <= 2200:
            raise ValueError
    except ConfigError as exc:
        typer.echo(f"central budgets: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValueError:
        typer.echo(f"central budgets: --years {years!r}: give a year or a range, e.g. 2024 or 2020-2025", err=True)
        raise typer.Exit(2) from None
    try:
        runner = runner_for(scheduler)
    except (MissingExtra, OSError, TimeoutError) as exc:
        typer.echo(f"central budgets: --scheduler {scheduler}: {exc}", err=True)
        raise typer.Exit(2) from None
    failed = 0
    try:
        store = open_store(central.storage)
        try:
            stations = station or sorted({info.station for info in store.stations()})
            for outcome in run_budgets(store, [(s, y) for s in stations for y in wanted], central.budget,
                                       runner=runner):
                if outcome.budget is not None:
                    typer.echo(f"{outcome.station} {outcome.year}: {describe(outcome.budget)}")
                else:
                    failed += 1
                    typer.echo(f"{outcome.station} {outcome.year}: error: {outcome.error}", err=True)
        finally:
            store.close()
    except StoreError as exc:
        typer.echo(f"central budgets: storage: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        runner.close()
    if failed:
        raise typer.Exit(2)


def _run_product(product: str, station: str, year: int, config: Path, out_dir: Path | None) -> None:
    _require_central(f"sinkwatch central {product}")
    from gateway.central.soilstems import SoilStemsJobError, describe, run_station_product, table_csv
    from gateway.central.store import StoreError

    try:
        central = load_central_config(config)
    except ConfigError as exc:
        typer.echo(f"central {product}: {exc}", err=True)
        raise typer.Exit(2) from None
    from gateway.central.service import open_store

    try:
        store = open_store(central.storage)
    except StoreError as exc:
        typer.echo(f"central {product}: storage: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        result = run_station_product(product, store, station, year, central.soil, central.stems)  # type: ignore[arg-type]
    except SoilStemsJobError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except StoreError as exc:
        typer.echo(f"central {product}: storage: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        store.close()
    for note in result.run.notes:
        typer.echo(f"note: {note}", err=True)
    for line in describe(result):
        typer.echo(line)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, table in result.tables.items():
            path = out_dir / f"{station}_{year}_{name}.csv"
            path.write_text(table_csv(result.run, table), encoding="utf-8")
            typer.echo(f"wrote {path}")
    first = sorted(result.tables)[0]
    typer.echo(f"stored as settings_hash {result.run.settings_hash} ({result.run.engine_version}): "
               f"GET /api/v1/{product}?station={station}&year={year}&table={first}")


@app.command()
def soil(
    station: Annotated[str, typer.Option(help="station id (soil.per_station.<station> in the config)")],
    year: Annotated[int, typer.Option(help="calendar year of the station's standard time", min=2000, max=2200)],
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (storage, soil:)")],
    out_dir: Annotated[Path | None, typer.Option(help="also write every table as CSV here")] = None,
) -> None:
    """Soil CO2 efflux of a station-year from its stored readings (gradient method per profile, chamber fluxes per
    closure), stored with its engine version and settings hash (docs/soil-stems.md)."""
    _run_product("soil", station, year, config, out_dir)


@app.command()
def stems(
    station: Annotated[str, typer.Option(help="station id (stems.per_station.<station> in the config)")],
    year: Annotated[int, typer.Option(help="calendar year of the station's standard time", min=2000, max=2200)],
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (storage, stems:)")],
    out_dir: Annotated[Path | None, typer.Option(help="also write every table as CSV here")] = None,
) -> None:
    """Dendrometer GRO/TWD (cleaned, zero-growth) and stem carbon per plot of a station-year from its stored
    readings and tree list, stored with its engine version and settings hash (docs/soil-stems.md)."""
    _run_product("stems", station, year, config, out_dir)


# --- `sinkwatch central ca ...`: the deployment's private CA (gateway/central/pki.py, docs/security.md "TLS") ------

ca_app = typer.Typer(help="The deployment's private certificate authority: TLS for the broker, InfluxDB and the API, "
                          "station client certificates.", no_args_is_help=True)
app.add_typer(ca_app, name="ca")


@ca_app.command("init")
def ca_init(
    dir: Annotated[Path, typer.Option("--dir", help="folder for ca.crt, ca.key (0600), ca.crl; keep it on the "
                                                    "operator's host")],
    name: Annotated[str, typer.Option(help="the CA's common name")] = "sinkwatch CA",
) -> None:
    """Create the private CA. Its ca.crt goes to every station (mqtt.ca_file) and service; ca.key stays here."""
    _require_central("sinkwatch central ca init")
    from gateway.central.pki import CertificateAuthority, PkiError

    try:
        ca = CertificateAuthority.create(dir, name)
    except PkiError as exc:
        typer.echo(f"ca init: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"created {ca.cert_path} (give it to every client as ca_file) and {dir / 'ca.key'} (mode 0600: keep "
               "it here, never on a station or the broker)")


@ca_app.command("server-cert")
def ca_server_cert(
    dir: Annotated[Path, typer.Option("--dir", help="the CA folder (sinkwatch central ca init)")],
    host: Annotated[list[str], typer.Option("--host", help="a host name or IP address clients connect to; repeat "
                                                           "for several (the first is the certificate's name)")],
    out: Annotated[Path, typer.Option(help="write OUT.crt and OUT.key (0600), e.g. /etc/mosquitto/certs/broker")],
) -> None:
    """Issue a server certificate (broker, InfluxDB, API) for the given host names and addresses."""
    _require_central("sinkwatch central ca server-cert")
    from gateway.central.pki import CertificateAuthority, PkiError, write_private, write_public

    try:
        issued = CertificateAuthority(dir).issue_server(host)
    except PkiError as exc:
        typer.echo(f"ca server-cert: {exc}", err=True)
        raise typer.Exit(2) from None
    cert, key = out.with_name(out.name + ".crt"), out.with_name(out.name + ".key")
    write_public(cert, issued.cert_pem)
    write_private(key, issued.key_pem)
    typer.echo(f"wrote {cert} and {key} (mode 0600) for {', '.join(host)}; give the server's user read access "
               f"to the key, e.g. chown mosquitto {key}")
# `sinkwatch audit verify`: mounted by gateway/cli.py under `sinkwatch audit`.
audit_app = typer.Typer(help="Check the stored record against what the stations signed (docs/security.md).",
                        no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    station: Annotated[str, typer.Option(help="station id to audit")],
    from_: Annotated[str, typer.Option("--from", help="items signed from, RFC 3339 with zone")],
    to: Annotated[str, typer.Option(help="items signed before, RFC 3339 with zone")],
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (storage, data_dir)")],
    site: Annotated[str | None, typer.Option(help="site of the station (if it reported under several)")] = None,
    sample: Annotated[int, typer.Option(min=0, help="half hours whose fluxes are recomputed from the archived raw "
                                                    "files and compared with the stored ones")] = 4,
    settings: Annotated[Path | None, typer.Option(help="processing settings of the stored fluxes to reproduce "
                                                       "(EddyPro .eddypro or YAML; default: engine defaults)")]
    = None,
    metadata: Annotated[Path | None, typer.Option(help="site facts the raw archive does not hold (YAML/.metadata)")]
    = None,
    limit: Annotated[int, typer.Option(min=1, help="breaks listed (all are counted)")] = 50,
) -> None:
    """Verify signatures and chain continuity, compare every signed value with the store, recompute a sample of
    fluxes from raw files; print a verdict. Exit 0: intact, 1: broken, 2: the audit could not run."""
    _require_central("sinkwatch audit verify")
    from gateway.central.api_names import unknown_station_problem
    from gateway.central.audit import recompute_sampler, verify_station
    from gateway.central.params import ParameterError, parse_timestamp
    from gateway.central.rawstore import RAW_DIR, RawArchive
    from gateway.central.service import open_store
    from gateway.central.store import StoreError
    from gateway.trust.keys import KeyRegistry, RegistryError

    try:
        start = parse_timestamp(from_, "--from")
        end = parse_timestamp(to, "--to")
        if end <= start:
            raise ParameterError("--to", f"{to} is not after --from {from_}")
        central = load_central_config(config)
    except ParameterError as exc:
        typer.echo(f"audit verify: {exc.parameter}: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except (ConfigError, ValueError) as exc:
        typer.echo(f"audit verify: {exc}", err=True)
        raise typer.Exit(2) from None
    archive = RawArchive(central.data_dir / RAW_DIR)
    try:
        store = open_store(central.storage)
    except StoreError as exc:
        typer.echo(f"audit verify: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        problem = unknown_station_problem(store, station)
        if problem is not None:  # nothing to audit: "INTACT" of no item would be read as an all-clear
            typer.echo(f"audit verify: {problem}", err=True)
            raise typer.Exit(2)
        sampler = recompute_sampler(store, archive, station, site, sample, settings, metadata) if sample else None
        report = verify_station(store, KeyRegistry(central.data_dir), archive, station, start, end, site=site,
                                recompute_sample=sampler)
    except (StoreError, RegistryError) as exc:
        typer.echo(f"audit verify: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    for line in report.lines(limit):
        typer.echo(line)
    if not report.intact:
        raise typer.Exit(1)


# --- `sinkwatch central station ...`: remote configuration and commands (gateway/central/api_commands.py) -----------

station_app = typer.Typer(help="Steer a station remotely through the central service's API: push a new station.yaml, "
                               "restart it, check its sensors or its clock (docs/operations.md).",
                          no_args_is_help=True)
app.add_typer(station_app, name="station")

ApiOption = Annotated[str | None, typer.Option(
    "--api", envvar="SINKWATCH_API_URL", help="the central service's API, e.g. https://central.example:8080 "
                                              "(default: from --config, else http://127.0.0.1:8080)")]
CentralConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c", help="central config: the API's address (and, for command-key, data_dir)")]
TokenFileOption = Annotated[Path | None, typer.Option(
    "--token-file", help="a file holding an API token of role operator (or set SINKWATCH_API_TOKEN)")]
CaFileOption = Annotated[Path | None, typer.Option(
    "--ca-file", help="the CA certificate of an https API (a private CA); default: the system's")]
StationOption = Annotated[str, typer.Option("--station", help="the station id, e.g. plot-07")]
SiteOption = Annotated[str | None, typer.Option(help="the station's site (only when the id exists at several)")]
WaitOption = Annotated[float, typer.Option(
    "--wait", help="seconds to wait for the station's outcome, printing each step (0: send and return)")]

# exit codes of the station commands
_EXIT_OK, _EXIT_OUTCOME, _EXIT_USAGE, _EXIT_PENDING, _EXIT_SEND = 0, 1, 2, 3, 4


def _api_client(api: str | None, config: Path | None, token_file: Path | None, ca_file: Path | None) -> Any:
    import os

    import httpx

    url = api
    if url is None and config is not None:
        settings = _config_or_exit(config)
        host = settings.api.host if settings.api.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        url = f"{settings.api.scheme}://{host}:{settings.api.port}"
    url = url or "http://127.0.0.1:8080"
    token = os.environ.get("SINKWATCH_API_TOKEN")
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            typer.echo(f"--token-file {token_file}: {exc.strerror}", err=True)
            raise typer.Exit(_EXIT_USAGE) from None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30.0,
                        verify=str(ca_file) if ca_file is not None else True)


def _detail(response: Any) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:500]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return str(detail)


def _print_step(step: dict[str, Any]) -> None:
    typer.echo(f"{step['time']}  {step['status']:<11}  {step['message']}")
    for check in step.get("checks") or []:
        detail = ", ".join(check.get("values") or []) if check["ok"] else (check.get("reason") or "")
        typer.echo(f"    {check['name']:<20} {'PASS' if check['ok'] else 'FAIL'}  {detail}")
        if not check["ok"] and check.get("fix"):
            typer.echo(f"    {'':<20}       fix: {check['fix']}")


def _send_and_follow(client: Any, station: str, body: dict[str, Any], wait_s: float) -> None:
    import time

    import httpx

    try:
        response = client.post(f"/api/v1/stations/{station}/commands", json=body)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach the API at {client.base_url}: {exc}", err=True)
        raise typer.Exit(_EXIT_SEND) from None
    if response.status_code not in (202, 503) or "id" not in response.json():
        typer.echo(f"refused ({response.status_code}): {_detail(response)}", err=True)
        raise typer.Exit(_EXIT_USAGE if response.status_code in (401, 403, 404, 422) else _EXIT_SEND)
    command = response.json()
    if response.status_code == 503:
        typer.echo(f"command {command['id']} not sent: {command.get('send_problem')}", err=True)
        raise typer.Exit(_EXIT_SEND)
    typer.echo(f"command {command['id']} ({command['kind']}) sent to {command['site']}/{command['station']}")
    shown = 0
    deadline = time.monotonic() + wait_s
    while True:
        for step in command["results"][shown:]:
            _print_step(step)
        shown = len(command["results"])
        if command["final"]:
            if command.get("clock_offset_s") is not None:
                typer.echo(f"station clock - central clock: {command['clock_offset_s']:+.3f} s (estimated over a round "
                           f"trip of {command['round_trip_s']:.3f} s through the broker)")
            raise typer.Exit(_EXIT_OK if command["outcome"] == "ok" else _EXIT_OUTCOME)
        if time.monotonic() >= deadline:
            if wait_s > 0:
                typer.echo(f"no outcome yet after {wait_s:g} s (status: {command['status']}); ask again with "
                           f"`sinkwatch central station status {command['id']} --station {station}`", err=True)
            raise typer.Exit(_EXIT_PENDING if wait_s > 0 else _EXIT_OK)
        time.sleep(1.0)
        try:
            reply = client.get(f"/api/v1/stations/{station}/commands/{command['id']}")
        except httpx.HTTPError:
            continue  # the API is away for a moment: the command is under way anyway
        if reply.status_code == 200:
            command = reply.json()


def _check_pushed_config(file: Path, station: str, site: str | None) -> None:
    """Exit 2 before anything is sent when the file is no YAML mapping or names another station or site: the station
    would refuse it anyway, after a round trip. The rest of the validation (drivers, keys, the files the config
    names) needs the station's own files and runs on the station (`sinkwatch station validate` there)."""
    from gateway.configfile import read_yaml_mapping

    try:
        pushed = read_yaml_mapping(file)
    except ConfigError as exc:
        typer.echo(f"{exc}; nothing sent", err=True)
        raise typer.Exit(2) from None
    for key, meant in (("station", station), ("site", site)):
        named = pushed.get(key)
        if meant is not None and named != meant:
            typer.echo(f"{file}: names {key} {named!r}, not {meant!r} (--{key}); a station refuses a config that "
                       f"names another {key}: push that station's own file, or fix its {key} key; nothing sent",
                       err=True)
            raise typer.Exit(2)


@station_app.command("push-config")
def station_push_config(
    file: Annotated[Path, typer.Argument(help="the new station.yaml, whole", exists=True, dir_okay=False)],
    station: StationOption,
    site: SiteOption = None,
    rollback_after: Annotated[float, typer.Option(
        "--rollback-after", help="seconds the station's daemon has to be healthy with it (running, connected, "
                                 "subscribed) before the station restores the old config by itself")] = 120.0,
    wait: WaitOption = 300.0,
    api: ApiOption = None,
    config: CentralConfigOption = None,
    token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
) -> None:
    """Push a new station.yaml: the station validates it, keeps the old one, restarts with it and rolls back by
    itself unless healthy in time. Exit 0: applied; 1: rejected or rolled back (the reason is printed); 2: not
    sent, the file is no YAML mapping or names another station or site."""
    _require_central("sinkwatch central station push-config")
    _check_pushed_config(file, station, site)
    text = file.read_text(encoding="utf-8")
    with _api_client(api, config, token_file, ca_file) as client:
        _send_and_follow(client, station, {"kind": "push_config", "site": site, "config": text,
                                           "rollback_after_s": rollback_after}, wait)


@station_app.command("command")
def station_command(
    kind: Annotated[str, typer.Argument(help="restart, check or clock-check")],
    station: StationOption,
    site: SiteOption = None,
    wait: WaitOption = 60.0,
    api: ApiOption = None,
    config: CentralConfigOption = None,
    token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
) -> None:
    """Restart a station's daemon, check its sensors (as `sinkwatch station check` on site) or report its clock.
    Exit 0: done; 1: the station refused or failed; 3: no outcome within --wait; 4: not sent."""
    _require_central("sinkwatch central station command")
    kinds = {"restart": "restart", "check": "check", "clock-check": "clock_check", "clock_check": "clock_check"}
    if kind not in kinds:
        typer.echo(f"unknown command {kind!r}: use restart, check or clock-check (a new config: push-config)",
                   err=True)
        raise typer.Exit(_EXIT_USAGE)
    with _api_client(api, config, token_file, ca_file) as client:
        _send_and_follow(client, station, {"kind": kinds[kind], "site": site}, wait)


@station_app.command("status")
def station_command_status(
    command_id: Annotated[str, typer.Argument(help="the command's id (printed when it was sent)")],
    station: StationOption,
    api: ApiOption = None,
    config: CentralConfigOption = None,
    token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
) -> None:
    """Show a command: every step the station reported and its outcome."""
    _require_central("sinkwatch central station status")
    with _api_client(api, config, token_file, ca_file) as client:
        response = client.get(f"/api/v1/stations/{station}/commands/{command_id}")
        if response.status_code != 200:
            typer.echo(f"{response.status_code}: {_detail(response)}", err=True)
            raise typer.Exit(_EXIT_USAGE)
        command = response.json()
    typer.echo(f"command {command['id']} ({command['kind']}) to {command['site']}/{command['station']}, issued "
               f"{command['issued']} by {command['issued_by']}: {command['status']}")
    for step in command["results"]:
        _print_step(step)
    if not command["final"]:
        raise typer.Exit(_EXIT_PENDING)
    raise typer.Exit(_EXIT_OK if command["outcome"] == "ok" else _EXIT_OUTCOME)


@station_app.command("command-key")
def station_command_key(
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (its data_dir)")],
) -> None:
    """Print the central command key's public half: stations trust it with `commands.trusted_keys`."""
    from gateway.central.commands import PUBLIC_KEY_FILE, read_public_key

    settings = _config_or_exit(config)
    text = read_public_key(settings.data_dir)
    if text is None:
        typer.echo(f"no {settings.data_dir / PUBLIC_KEY_FILE} yet: the central service makes its command key at its "
                   "first start (sinkwatch central serve); or ask the API: GET /api/v1/commands/key", err=True)
        raise typer.Exit(_EXIT_USAGE)
    typer.echo(text)


# --- `sinkwatch central token ...`: API tokens (gateway/central/access.py) -----------------------------------------

token_app = typer.Typer(help="API tokens: who may read the data (reader), see the service's counters (operator) or "
                             "manage tokens (admin).", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _token_store(config: Path) -> TokenStore:
    _require_central("sinkwatch central token")
    settings = _config_or_exit(config)
    from gateway.central.access import TokenStore

    _data_dir_or_exit(config, settings)
    return TokenStore.in_data_dir(settings.data_dir)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="who or what holds it, e.g. grafana or a.researcher@example.org")],
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (its data_dir holds the tokens)")],
    role: Annotated[str, typer.Option(help="reader (data), operator (+ health counters), admin (+ tokens)")]
    = "reader",
) -> None:
    """Issue a token and print it once: only its SHA-256 is kept."""
    from gateway.central.access import ROLES, TokenError

    if role not in ROLES:
        typer.echo(f"token create: --role {role!r}: use one of {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    store = _token_store(config)
    try:
        info, token = store.create(name, role)
    except TokenError as exc:
        typer.echo(f"token create: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    typer.echo(f"token {info.id} for {info.name}, role {info.role}; shown this once, keep it secret:", err=True)
    typer.echo(token)


@token_app.command("list")
def token_list(
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (its data_dir holds the tokens)")],
) -> None:
    """Every token issued: id, name, role, created, revoked (never the tokens)."""
    store = _token_store(config)
    try:
        tokens = store.list()
    finally:
        store.close()
    typer.echo(f"{'id':12}  {'role':8}  {'created':20}  {'revoked':20}  name")
    for t in tokens:
        typer.echo(f"{t.id:12}  {t.role:8}  {t.created:20}  {t.revoked or '-':20}  {t.name}")


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="the token's id (token list) or the name of an active token")],
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (its data_dir holds the tokens)")],
) -> None:
    """Revoke a token; the running service refuses it from the next request on."""
    from gateway.central.access import TokenError

    store = _token_store(config)
    try:
        info = store.revoke(token)
    except TokenError as exc:
        typer.echo(f"token revoke: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    typer.echo(f"revoked token {info.id} ({info.name}, {info.role}) at {info.revoked}")


# --- `sinkwatch station provision|revoke` (mounted under `sinkwatch station` by gateway/cli.py): an operator's jobs
# on the central host, gateway/central/provision.py -------------------------------------------------------------------


def _provisioning(config: Path, command: str) -> tuple[CentralConfig, BrokerFiles]:
    _require_central(command)
    from gateway.central.provision import BrokerFiles

    settings = _config_or_exit(config)
    p = settings.provisioning
    return settings, BrokerFiles(p.broker_password_file, p.broker_acl_file, tuple(p.broker_reload), p.broker_crl_file)


def station_provision(
    name: Annotated[str, typer.Argument(help="the station id (also its broker user name), e.g. plot-07")],
    site: Annotated[str, typer.Option(help="the site id, e.g. hainich")],
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (data_dir, provisioning:)")],
    cert: Annotated[bool, typer.Option("--cert", help="a client certificate from the private CA instead of a "
                                                      "password")] = False,
    out: Annotated[Path | None, typer.Option(help="write the station's folder under this one (default: "
                                                  "provisioning.out_dir)")] = None,
) -> None:
    """Give a new station its identity: broker credentials, signing key and station.yaml; register it centrally
    and add it to the broker."""
    from gateway.central.provision import ProvisioningError, provision_station
    from gateway.model import IDENTIFIER_PATTERN

    settings, broker = _provisioning(config, "sinkwatch station provision")
    for label, value in (("NAME", name), ("--site", site)):
        if not re.fullmatch(IDENTIFIER_PATTERN, value):
            typer.echo(f"station provision: {label} {value!r}: use letters, digits, '_', '.', '-' (at most 64, "
                       "starting with a letter or digit)", err=True)
            raise typer.Exit(2)
    p = settings.provisioning
    try:
        result = provision_station(
            name, site, data_dir=settings.data_dir, out_dir=out or p.out_dir, broker_host=p.broker_host,
            broker_port=p.broker_cert_port if cert else p.broker_port, ca_dir=p.ca_dir, broker=broker,
            certificate=cert, template=p.station_template, station_etc=p.station_etc)
    except ProvisioningError as exc:
        typer.echo(f"station provision: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"provisioned {site}/{name} ({result.station.auth}, signing key {result.station.key_id}):")
    for path in result.files:
        typer.echo(f"  {path}")
    typer.echo(f"copy {result.folder}/ onto the station as {p.station_etc}/ (secret files stay mode 0600), add its "
               "sensors to station.yaml, then `systemctl enable --now sinkwatch-station`")
    if result.broker_updated:
        typer.echo("broker: password/ACL files updated" + ("; broker reloaded" if result.reloaded else
                                                          "; reload it now: systemctl reload mosquitto"))
    else:
        typer.echo(f"broker: add the entries of {result.folder / 'broker-entries.txt'} to its password and ACL "
                   "files and reload it (or set provisioning.broker_password_file/broker_acl_file)")


def station_revoke(
    name: Annotated[str, typer.Argument(help="the station id")],
    site: Annotated[str, typer.Option(help="the site id")],
    config: Annotated[Path, typer.Option("--config", "-c", help="central config (data_dir, provisioning:)")],
) -> None:
    """Revoke a station: broker login, client certificate and signing key; the broker reloads, other stations stay
    connected."""
    from gateway.central.provision import ProvisioningError, revoke_station

    settings, broker = _provisioning(config, "sinkwatch station revoke")
    try:
        record, updated, reloaded = revoke_station(name, site, data_dir=settings.data_dir,
                                                   ca_dir=settings.provisioning.ca_dir, broker=broker)
    except ProvisioningError as exc:
        typer.echo(f"station revoke: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"revoked {site}/{name} ({record.auth}) at {record.revoked}: its signing key no longer verifies, "
               "the central service dead-letters whatever still arrives from it")
    if updated:
        typer.echo("broker: password/ACL files updated" + ("; broker reloaded: the station is refused now" if reloaded
                                                          else "; reload it now: systemctl reload mosquitto"))
    else:
        typer.echo(f"broker: remove {name}'s password line and ACL block and reload it (systemctl reload "
                   "mosquitto)" + ("; the CRL is rewritten: copy it to the broker's crlfile"
                                   if record.auth == "certificate" else ""))
