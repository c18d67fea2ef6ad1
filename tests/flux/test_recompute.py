"""`sinkwatch flux recompute`: raw archive files written from the synthetic turbulence field (known covariances
and lag) go through the archive reader, the common grid and the engine into SqliteStore and a real InfluxDB.

Tolerance: the prescribed covariances are population values; the estimate from N samples of series whose
auto- and cross-correlations all decay as a^|k| (the field's AR(1) filter, a = exp(-1/(f·T))) has the standard
error SE(cov_ab) = sqrt((σa²σb² + cov_ab²)·(1 + a²)/(1 − a²)/N) (Bartlett 1946). Checks allow 4 SE.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gateway.central.rawstore import RawArchive
from gateway.central.recompute import RecomputeError, find_sensors, recompute
from gateway.central.store import InfluxStore, SqliteStore, Store
from gateway.central.store.provenance import flux_record_digest
from gateway.cli import app
from gateway.flux.ec.result import ENGINE_NAME, ENGINE_VERSION
from gateway.flux.ec.settings import ProcessingSettings
from gateway.flux.rawperiods import MAX_ARRIVAL_LATENCY_S, grid_phase, map_columns, place_on_grid
from gateway.rawarchive import ArchiveWriter
from gateway.simulation.turbulence import TurbulenceField, TurbulenceSpec

SPEC = TurbulenceSpec(time_scale_s=0.1, lag_s=0.25)
FS = SPEC.frequency_hz
N = SPEC.block_samples
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
HALF_HOURS = 2
SITE_FACTS = {"altitude": 100.0, "latitude": 51.0, "canopy_height": 20.0}
SONIC_DELAY_S, ANALYZER_DELAY_S, JITTER_S = 0.010, 0.023, 0.002


def standard_error(a: str, b: str) -> float:
    rho = math.exp(-1.0 / (FS * SPEC.time_scale_s))
    factor = (1 + rho**2) / (1 - rho**2)
    return math.sqrt((SPEC.truth(a, a) * SPEC.truth(b, b) + SPEC.truth(a, b) ** 2) * factor / N)


def write_station_archive(raw_root: Path, *, sonic_name: str = "sonic", analyzer_name: str = "irga",
                          half_hours: int = HALF_HOURS) -> None:
    """Half-hour archive files of a sonic and an open-path analyzer, stamped like arrivals (delay + jitter)."""
    field = TurbulenceField(SPEC, seed=3)
    rng = np.random.default_rng(11)
    for h in range(half_hours):
        start = int(T0.timestamp()) + 1800 * h
        first = field.index_at(start)
        sonic, gas = field.sonic(first, N), field.gas(first, N)
        nominal = start + np.arange(N) / FS
        common = {"site": "site1", "station": "st1", "frequency_hz": FS}
        writer = ArchiveWriter(raw_root / "site1" / "st1" / sonic_name, sonic_name, start,
                               [("U", "m s-1"), ("V", "m s-1"), ("W", "m s-1"), ("SOS", "m s-1"),
                                ("T_SONIC", "degC"), ("DIAG_SONIC", "1")],
                               {**common, "instrument": {"driver": "windmaster", "model": "WindMaster",
                                                         "height_m": 30.0, "north_offset_deg": 0.0}})
        times = nominal + SONIC_DELAY_S + rng.uniform(-JITTER_S, JITTER_S, N)
        for t, (u, v, w, ts) in zip(times, sonic, strict=True):
            writer.write(float(t), [float(u), float(v), float(w), 343.0, float(ts) - 273.15, 0.0])
        writer.close({"closed": "rotation", "bad_records": {}})
        writer = ArchiveWriter(raw_root / "site1" / "st1" / analyzer_name, analyzer_name, start,
                               [("DIAG", "1"), ("CO2", "mmol m-3"), ("H2O", "mmol m-3"), ("PRESS", "kPa")],
                               {**common, "instrument": {"driver": "li7500", "model": "LI7500"}})
        times = nominal + ANALYZER_DELAY_S + rng.uniform(-JITTER_S, JITTER_S, N)
        for t, (co2, h2o) in zip(times, gas, strict=True):
            writer.write(float(t), [250.0, float(co2), float(h2o), 99.5])
        writer.close({"closed": "rotation", "bad_records": {}})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("central") / "data"
    write_station_archive(root / "raw")
    return root


BACKENDS = ["sqlite", pytest.param("influx", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def central(request: pytest.FixtureRequest, data_dir: Path, tmp_path: Path) -> Iterator[tuple[Path, Store]]:
    """A central.yaml over the archive above, and a store opened on the same storage."""
    if request.param == "sqlite":
        storage = {"kind": "sqlite", "path": str(tmp_path / "central.sqlite")}
        store: Store = SqliteStore(tmp_path / "central.sqlite")
    else:
        influxd = request.getfixturevalue("influxd")
        storage = {"kind": "influxdb", "url": influxd.url, "database": "recompute"}
        store = InfluxStore(influxd.url, database="recompute")
    config = tmp_path / "central.yaml"
    config.write_text(yaml.safe_dump({"storage": storage, "data_dir": str(data_dir)}), encoding="utf-8")
    yield config, store
    store.close()


def run_cli(config: Path, tmp_path: Path, settings: dict[str, object] | None = None) -> str:
    metadata = tmp_path / "site.yaml"
    metadata.write_text(yaml.safe_dump(SITE_FACTS), encoding="utf-8")
    args = ["flux", "recompute", "--station", "st1", "--from", T0.isoformat(),
            "--to", (T0 + timedelta(hours=1)).isoformat(), "-c", str(config), "--metadata", str(metadata)]
    if settings is not None:
        path = tmp_path / "settings.yaml"
        path.write_text(yaml.safe_dump(settings), encoding="utf-8")
        args += ["--settings", str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_recompute_recovers_the_prescribed_covariances_and_lag_and_settings_coexist(
    central: tuple[Path, Store], data_dir: Path, tmp_path: Path
) -> None:
    config, store = central
    output = run_cli(config, tmp_path)

    records = store.query_fluxes("st1", T0, T0 + timedelta(hours=1))
    assert [r.end for r in records] == [T0 + timedelta(minutes=30), T0 + timedelta(hours=1)]
    assert "2 periods processed: 2 ok" in output
    for record in records:
        v = record.values
        assert record.status == "ok", record.reasons
        assert (record.site, record.engine_version) == ("site1", f"{ENGINE_NAME} {ENGINE_VERSION}")
        for name, (a, b) in {"W_T_SONIC_COV": ("w", "ts"), "W_CO2_COV": ("w", "co2"),
                             "W_H2O_COV": ("w", "h2o"), "U_W_COV": ("u", "w")}.items():
            value = v[name]
            assert isinstance(value, float)
            assert abs(value - SPEC.truth(a, b)) < 4 * standard_error(a, b), (name, value, SPEC.truth(a, b))
        assert (v["CO2_TLAG"], v["H2O_TLAG"]) == (SPEC.lag_s, SPEC.lag_s)
        assert v["PITCH"] == pytest.approx(SPEC.pitch_deg, abs=0.5)
        assert v["N_RECORDS"] == N
        fc, h, le, tau = (v[name] for name in ("FC", "H", "LE", "TAU"))
        assert fc is not None and h is not None and le is not None and tau is not None
        assert all(math.isfinite(x) for x in (fc, h, le, tau))
        assert fc < 0 < h  # the prescribed uptake and heating, after WPL and the humidity correction
    first_hash = records[0].settings_hash
    # each record is kept with the raw files it came from and its own digest (gateway/central/store/provenance.py)
    inputs = store.flux_inputs("st1", T0, T0 + timedelta(hours=1))
    assert [i.end for i in inputs] == [r.end for r in records]
    for kept, record in zip(inputs, records, strict=True):
        assert kept.record_sha256 == flux_record_digest(record)
        assert (kept.engine_version, kept.settings_hash) == (record.engine_version, record.settings_hash)
        half_hour = record.start.strftime("%Y%m%dT%H%M")
        assert [(f.sensor, f.name) for f in kept.files] == [("sonic", f"sonic_{half_hour}Z.swr"),
                                                            ("irga", f"irga_{half_hour}Z.swr")]
        for f in kept.files:
            path = data_dir / "raw" / "site1" / "st1" / f.sensor / f.name
            assert f.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    run_cli(config, tmp_path, settings={"detrend_meth": "linear", "timeconst": 300})

    sets = store.flux_result_sets("st1")
    assert len(sets) == 2 and {s.periods for s in sets} == {2}
    assert first_hash in {s.settings_hash for s in sets}
    other = next(s.settings_hash for s in sets if s.settings_hash != first_hash)
    assert store.query_fluxes("st1", T0, T0 + timedelta(hours=1), settings_hash=first_hash) == records
    linear = store.query_fluxes("st1", T0, T0 + timedelta(hours=1), settings_hash=other)
    assert [r.end for r in linear] == [r.end for r in records]
    assert all(r.values["W_T_SONIC_COV"] != b.values["W_T_SONIC_COV"] for r, b in zip(linear, records, strict=True))


def test_periods_without_raw_files_are_counted_not_stored(data_dir: Path, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    done: list[int] = []
    summary = recompute(RawArchive(data_dir / "raw"), store, "st1", T0 - timedelta(hours=1), T0 + timedelta(hours=1),
                        site_metadata=SITE_FACTS, settings=ProcessingSettings(), progress=done.append)

    assert (summary.periods, summary.no_raw_data, summary.ok, summary.stored) == (4, 2, 2, 2)
    assert sum(done) == 4
    assert [s.periods for s in store.flux_result_sets("st1")] == [2]
    store.close()


def test_a_missing_analyzer_file_gives_a_flux_without_gases_and_a_reason(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_station_archive(raw)
    first_irga = sorted((raw / "site1" / "st1" / "irga").iterdir())[0]
    first_irga.unlink()  # the analyzer's first half hour never arrived
    store = SqliteStore(tmp_path / "s.sqlite")
    summary = recompute(RawArchive(raw), store, "st1", T0, T0 + timedelta(minutes=30), site_metadata=SITE_FACTS,
                        settings=ProcessingSettings())

    (record,) = store.query_fluxes("st1", T0, T0 + timedelta(hours=1))
    assert summary.analyzer == "irga"
    assert record.values["H"] is not None and record.values.get("FC") is None
    assert "analyzer: no raw files of irga for this period" in record.reasons
    store.close()


def test_sensor_discovery_names_what_is_ambiguous(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_station_archive(raw, half_hours=1)
    write_station_archive(raw, sonic_name="sonic2", analyzer_name="irga", half_hours=1)
    archive = RawArchive(raw)

    with pytest.raises(RecomputeError, match=r"several sonic anemometers.*--sonic"):
        find_sensors(archive, "st1")
    assert find_sensors(archive, "st1", sonic="sonic2").analyzer == "irga"
    with pytest.raises(RecomputeError, match="no raw archive files of station 'nope'"):
        find_sensors(archive, "nope")


def test_missing_site_facts_are_named(data_dir: Path, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    with pytest.raises(RecomputeError, match="altitude and latitude"):
        recompute(RawArchive(data_dir / "raw"), store, "st1", T0, T0 + timedelta(hours=1), site_metadata={},
                  settings=ProcessingSettings())
    store.close()


def test_cli_errors_name_the_option(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "central.yaml"
    config.write_text(yaml.safe_dump({"storage": {"kind": "sqlite", "path": str(tmp_path / "x.sqlite")},
                                      "data_dir": str(data_dir)}), encoding="utf-8")
    result = CliRunner().invoke(app, ["flux", "recompute", "--station", "st1", "--from", "2026-11-25T10:00:00",
                                      "--to", "2026-11-25T11:00:00Z", "-c", str(config)])

    assert result.exit_code == 2
    assert "--from" in result.output and "append Z" in result.output


# --- the grid ------------------------------------------------------------------------------------------------------


def test_jittered_arrivals_land_on_their_slots_and_gaps_and_doubles_are_counted() -> None:
    rng = np.random.default_rng(5)
    start, n = 1_000_000.0, 200
    times = start + np.arange(n) / FS + 0.031 + rng.uniform(-0.004, 0.004, n)
    times = np.delete(times, [17, 18, 90])  # three records lost
    times = np.sort(np.append(times, times[40] + 0.001))  # one record twice

    phase = grid_phase(times, start, FS)
    index, slots, doubled, filled = place_on_grid(times, start, FS, n, phase)

    assert phase == pytest.approx(0.031 * FS, abs=0.02)
    assert doubled == 1 and filled == 0  # a record sent twice, right after its first: no empty slot before it
    assert sorted(set(range(n)) - set(slots.tolist())) == [17, 18, 90]
    assert np.all(np.abs(times[index] - (start + (slots + phase) / FS)) < 0.005)


def test_a_burst_after_a_stall_fills_the_empty_slots_before_it_in_arrival_order() -> None:
    start, n = 1_000_000.0, 400
    sent = start + np.arange(n) / FS + 0.012  # the instrument's output instants
    arrived = sent.copy()
    # the host stalls twice: 8 records read together 0.4 s late (one slot), 12 read spread over two slots
    arrived[100:108] = sent[108] + 0.0005 * np.arange(8)
    arrived[250:262] = sent[262] + np.linspace(0.0, 0.03, 12)
    arrived = np.sort(arrived)

    index, slots, doubled, filled = place_on_grid(arrived, start, FS, n, grid_phase(arrived, start, FS))

    assert doubled == 0 and filled == 8 + 12
    assert slots.tolist() == list(range(n))  # every record back on its own slot, in order
    assert index.tolist() == list(range(n))


def test_a_burst_spreads_back_no_further_than_the_latency_bound() -> None:
    start, n = 1_000_000.0, 200
    sent = start + np.arange(n) / FS + 0.01
    arrived = sent.copy()
    arrived[50:150] = sent[150]  # 5 s of records in one slot: more than MAX_ARRIVAL_LATENCY_S can explain
    arrived = np.sort(arrived)

    index, slots, doubled, filled = place_on_grid(arrived, start, FS, n, grid_phase(arrived, start, FS))

    assert filled == round(MAX_ARRIVAL_LATENCY_S * FS)
    assert doubled == 100 - filled
    assert np.all(np.diff(slots) > 0) and slots.size == index.size == n - doubled
    assert index[slots == 150][0] == 150 and index[slots == 130][0] == 130  # the burst's latest records are kept


def test_records_of_an_instrument_faster_than_the_grid_are_dropped() -> None:
    start, n = 1_000_000.0, 100
    arrived = start + np.arange(2 * n) / (2 * FS) + 0.001  # 40 Hz on a 20 Hz grid: every slot crowded, none empty

    _, slots, doubled, filled = place_on_grid(arrived, start, FS, n, grid_phase(arrived, start, FS))

    assert filled == 0 and slots.size == n and doubled >= n - 1


def test_column_mapping_converts_units_and_names_unknown_ones() -> None:
    mapping, problems = map_columns({"U": "m s-1", "T_SONIC": "degC", "CO2": "umol mol-1", "H2O": "mmol m-3",
                                     "PRESS": "hPa", "W": "knots", "DIAG": "1"}, {"model": "LI7200RS"})

    assert (mapping["T_SONIC"].variable, mapping["T_SONIC"].offset) == ("ts", 273.15)
    assert (mapping["CO2"].measure_type, mapping["H2O"].measure_type) == ("mixing_ratio", "molar_density")
    assert (mapping["PRESS"].variable, mapping["PRESS"].factor) == ("air_p", 100.0)
    assert mapping["DIAG"].variable == "diag_72"
    assert "W" not in mapping and problems == [
        "column W has unit 'knots', which the raw-archive reader does not know; not used"]
