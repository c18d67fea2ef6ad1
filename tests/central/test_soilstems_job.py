"""The central soil and stems jobs on simulated readings with a known truth (gateway/simulation/soilyear.py): the
gradient method's efflux, the chamber fluxes, GRO/TWD and the plot's stem carbon against the truth; what is stored;
bad input named (config and data); the schedule; the command."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from gateway.central.config import ApiSettings, CentralConfig, MqttSettings, StorageSettings, load_central_config
from gateway.central.service import run_central, wait_for
from gateway.central.soilstems import (
    SOIL_ENGINE,
    STEMS_ENGINE,
    ProductScheduler,
    SoilStemsJobError,
    compute_station_soil,
    compute_station_stems,
    run_station_product,
    table_csv,
)
from gateway.central.soilstems_config import SoilJobConfig, StemsJobConfig
from gateway.central.store import SqliteStore, StoredReading
from gateway.cli import app
from gateway.configfile import ConfigError
from gateway.flux.stems.allometry import plot_biomass
from gateway.model import QualityFlag, Reading, TimeSource
from gateway.simulation.soilyear import SoilYear
from gateway.testing.central import bearer, issue_token
from gateway.testing.services import MosquittoInstance

from .soilstems_helpers import (
    LATER,
    SITE,
    STATION,
    YEAR,
    SoilStemsStores,
    chamber_config,
    filled_store,
    profile_config,
    simulated_soil,
    simulated_stems,
    soil_job,
    soil_settings,
    stems_job,
    stems_settings,
)


@pytest.fixture(scope="module")
def soil_year_() -> SoilYear:
    return simulated_soil()


@pytest.fixture(scope="module")
def stems_year() -> SoilYear:
    return simulated_stems()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, soilstems_stores: SoilStemsStores) -> Iterator[SqliteStore]:
    """soil_year_ and stems_year stored, nothing computed (a copy of the run's shared store of them)."""
    instance = soilstems_stores.copy(soilstems_stores.filled, tmp_path_factory.mktemp("soilstems") / "store.sqlite")
    yield instance
    instance.close()


def values(table_values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in table_values], dtype=float)


def test_the_gradient_method_recovers_the_true_efflux(store: SqliteStore, soil_year_: SoilYear) -> None:
    result = compute_station_soil(store, STATION, YEAR, soil_job(), now=LATER)
    table = result.tables["gradient_1"]
    flux = values(table.values["FC_SOIL_GRAD"])
    ends = np.array([t.timestamp() for t in table.times])
    index = np.round((ends - 1800.0 - soil_year_.time_s[0]) / 1800.0).astype(int)
    # one row per half hour the profile delivered, stamped at the half hour's end, each with a value
    assert np.array_equal(index, np.flatnonzero(soil_year_.measured))
    assert np.isfinite(flux).all()
    ratio = flux / soil_year_.flux_true[index]
    # profile_fit is exact for this profile; what remains is the probes' 3 ppm noise
    assert abs(np.median(ratio) - 1) < 0.01 and np.percentile(np.abs(ratio - 1), 95) < 0.1
    unc = values(table.values["FC_SOIL_GRAD_UNC"])
    assert (unc > 0).all() and np.median(np.abs(flux - soil_year_.flux_true[index]) / unc) < 1
    # the temperatures and water contents used are stored beside (SWC in %)
    assert values(table.values["SWC_1_1_1"]).mean() == pytest.approx(100 * 0.33, abs=5)
    assert {"TS_1_1_1", "TS_1_3_1", "DS_CO2_1_2_1", "FC_SOIL_LAYER_1_1_1"} <= set(table.values)


def test_the_chamber_fluxes_recover_each_closures_true_flux(store: SqliteStore, soil_year_: SoilYear) -> None:
    result = compute_station_soil(store, STATION, YEAR, soil_job(), now=LATER)
    table = result.tables["chamber_1"]
    ends = [t.timestamp() for t in table.times]
    truth = dict(soil_year_.chamber_truth)
    assert len(ends) == len(truth) and all(any(abs(e - t) <= 10 for t in truth) for e in ends)
    flux = values(table.values["FC_SOIL_CH_1"])
    closure_ends = np.array(sorted(truth))
    expected = np.array([truth[float(closure_ends[np.argmin(np.abs(closure_ends - e))])] for e in ends])
    unc = values(table.values["FC_SOIL_CH_1_UNC"])
    # as the chamber science's own validation: median error of a few per cent, every error within 3 stated sigma
    assert np.median(np.abs(flux / expected - 1)) < 0.03
    assert (np.abs(flux - expected) <= 3 * unc).all()
    assert set(values(table.values["FC_SOIL_CH_1_METHOD"])) <= {1.0, 2.0}
    assert values(table.values["FC_SOIL_CH_1_N"]).min() >= 25


def test_a_chamber_closure_too_short_is_flagged_without_a_value(store: SqliteStore) -> None:
    result = compute_station_soil(store, STATION, YEAR, soil_job(chambers=[chamber_config(min_closure_s=400)]),
                                  now=LATER)
    table = result.tables["chamber_1"]
    assert all(v is None for v in table.values["FC_SOIL_CH_1"])
    assert all(int(q or 0) & 1 for q in table.values["FC_SOIL_CH_1_QC"])
    assert "too short for a flux" in " ".join(result.run.notes)


def test_stems_follow_the_true_growth_and_give_the_plots_carbon(store: SqliteStore, stems_year: SoilYear) -> None:
    result = compute_station_stems(store, STATION, YEAR, stems_job(stems_year), now=LATER)
    for tree, (_t, gro_true, twd_true) in stems_year.dendro_truth.items():
        table = result.tables[f"tree_{tree}"]
        gro = values(table.values[f"GRO_{tree}"])
        twd = values(table.values[f"TWD_{tree}"])
        # the re-mounting jump (t1) and the spike (t2) are gone: GRO and TWD within a few um of the truth
        assert abs(np.nanmax(gro) - gro_true[-1]) < 15, tree
        assert np.nanpercentile(np.abs(twd - twd_true[:twd.size]), 99) < 25, tree
        assert len(result.tables[f"daily_{tree}"]) >= 364
    (plot,) = [t for name, t in result.tables.items() if name.startswith("plot_")]
    row = {k: float(v[0] if v[0] is not None else "nan") for k, v in plot.values.items()}
    assert row["N_TREES"] == 5 and row["N_INSTRUMENTED"] == 3
    # truth: the same allometry with every tree's true increment (the uninstrumented ones' too)
    trees = stems_year.trees
    true = plot_biomass([t.species for t in trees], np.array([t.dbh_cm for t in trees]), 400.0,
                        dbh_increment_cm=np.array([t.increment_cm for t in trees]), n_draws=300)
    assert row["C_AGB_INC"] == pytest.approx(true.carbon_increment_mg_ha, rel=0.1)
    assert abs(row["C_AGB_INC"] - true.carbon_increment_mg_ha) < 3 * row["C_AGB_INC_SD"]
    assert row["START_DATE"] == 20250101 and row["END_DATE"] == 20251231
    notes = " ".join(result.run.notes)
    assert "t4, t5" in notes and "1 jumps corrected" in notes


def test_runs_are_stored_versioned_and_replaced_by_a_rerun(store: SqliteStore, stems_year: SoilYear) -> None:
    first = run_station_product("soil", store, STATION, YEAR, soil_job(), stems_job(stems_year), now=LATER)
    again = run_station_product("soil", store, STATION, YEAR, soil_job(), stems_job(stems_year), now=LATER)
    other = run_station_product("soil", store, STATION, YEAR, soil_job(profiles=[profile_config(
        method="regression")]), stems_job(stems_year), now=LATER)
    runs = store.product_runs("soil", STATION, YEAR)
    assert first.run.settings_hash == again.run.settings_hash != other.run.settings_hash
    assert sorted(r.settings_hash for r in runs) == sorted({first.run.settings_hash, other.run.settings_hash})
    assert all(r.engine_version == SOIL_ENGINE and r.site == SITE for r in runs)
    (stored,) = [r for r in runs if r.settings_hash == first.run.settings_hash]
    back = store.product_table(stored, "gradient_1")
    assert back.times == first.tables["gradient_1"].times
    assert values(back.values["FC_SOIL_GRAD"]) == pytest.approx(values(first.tables["gradient_1"].values[
        "FC_SOIL_GRAD"]), nan_ok=True)
    assert not stored.complete  # 45 days of the year
    stems = run_station_product("stems", store, STATION, YEAR, soil_job(), stems_job(stems_year), now=LATER)
    assert stems.run.engine_version == STEMS_ENGINE and stems.run.complete
    csv_text = table_csv(stems.run, stems.tables["plot_1"])
    assert csv_text.splitlines()[0].startswith("TIMESTAMP,AGB,") and "202501010000" in csv_text


# --- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message"), [
    ({"probes": [{"depth_m": 0.1, "co2": "a/CO2_1_1_1", "ts": "a/TS_1_1_1"},
                 {"depth_m": 0.3, "co2": "b/CO2_1_2_1"}]}, "has no ts: give the soil temperature"),
    ({"probes": [{"co2": "a/CO2_1_1_1", "ts": "a/TS"}, {"depth_m": 0.3, "co2": "b/CO2", "ts": "b/TS"}]},
     "depth_m"),
    ({"probes": [{"depth_m": 0.3, "co2": "a/CO2", "ts": "a/TS"}, {"depth_m": 0.1, "co2": "b/CO2", "ts": "b/TS"}]},
     "must increase strictly"),
    ({"probes": [{"depth_m": 10, "co2": "a/CO2", "ts": "a/TS"}, {"depth_m": 30, "co2": "b/CO2", "ts": "b/TS"}]},
     "not cm"),
    ({"soil": {"porosity": 1.2}}, "porosity 1.2 is outside"),
    ({"soil": {"bulk_density": 2.6, "particle_density": 2.5}}, "gives no pore space"),
    ({"method": "profile_fitt"}, "is not one of"),
])
def test_bad_profile_metadata_is_refused_naming_the_key_and_the_fix(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SoilJobConfig.model_validate({"per_station": {STATION: {"profiles": [profile_config(**change)]}}})


@pytest.mark.parametrize(("tree", "message"), [
    ({"tree": "t1", "dbh_cm": 30.0}, "species"),
    ({"tree": "t1", "species": "  ", "dbh_cm": 30.0}, "needs its species"),
    ({"tree": "t1", "species": "Fagus sylvatica"}, "dbh_cm"),
    ({"tree": "t1", "species": "Fagus sylvatica", "dbh_cm": 650.0}, "mm instead of cm"),
])
def test_a_tree_without_species_or_dbh_is_refused(tree: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StemsJobConfig.model_validate({"per_station": {STATION: {"plots": [{"name": "1", "area_m2": 100,
                                                                              "trees": [tree]}]}}})


def _central_yaml(tmp_path: Path, stems: dict[str, object]) -> Path:
    path = tmp_path / "central.yaml"
    path.write_text(yaml.safe_dump({"storage": {"kind": "sqlite", "path": str(tmp_path / "s.sqlite")},
                                    "stems": {"per_station": {STATION: stems}}}))
    return path


def test_a_tree_list_file_names_the_line_of_a_tree_without_species_or_dbh(tmp_path: Path) -> None:
    (tmp_path / "trees.csv").write_text("tree,species,dbh_cm,dendrometer\nt1,Fagus sylvatica,31.0,d/STEM_RAD_CHG\n"
                                        "t2,,28.5,\n")
    path = _central_yaml(tmp_path, {"plots": [{"name": "1", "area_m2": 100, "trees_csv": "trees.csv"}]})
    with pytest.raises(ConfigError, match=r"trees.csv: line 3: tree t2 has no species; give it"):
        load_central_config(path)
    (tmp_path / "trees.csv").write_text("tree,species,dbh_cm\nt1,Fagus sylvatica,31.0\nt2,Quercus robur,\n")
    with pytest.raises(ConfigError, match="line 3: tree t2 has no DBH; measure it"):
        load_central_config(path)
    (tmp_path / "trees.csv").write_text("tree,species,dbh_cm\nt1,Fagus sylvatica,31.0\nt2,Quercus robur,27\n")
    config = load_central_config(path)
    assert [t.tree for t in config.stems.per_station[STATION].plots[0].trees] == ["t1", "t2"]


def test_an_input_without_readings_is_named(store: SqliteStore) -> None:
    no_temperature = profile_config()
    no_temperature["probes"][1]["ts"] = "co2_30/TS_1_2_1"  # nothing stored under that name
    with pytest.raises(SoilStemsJobError, match=r"no readings of co2_30/TS_1_2_1 \(soil temperature at 0.3 m\).*"
                                                r"a probe with no temperature gives no flux"):
        compute_station_soil(store, STATION, YEAR, soil_job(profiles=[no_temperature], chambers=[]), now=LATER)
    with pytest.raises(SoilStemsJobError, match=r"no soil profile or chamber configured; add soil\.per_station\.st9"):
        compute_station_soil(store, "st9", YEAR, soil_job(), now=LATER)
    with pytest.raises(SoilStemsJobError, match="the year has not begun"):
        compute_station_soil(store, STATION, 2027, soil_job(), now=LATER)


def test_a_plot_without_any_dendrometer_reading_is_an_error(store: SqliteStore, stems_year: SoilYear) -> None:
    trees = [{"tree": "x1", "species": "Fagus sylvatica", "dbh_cm": 30.0, "dendrometer": "dendro/STEM_RAD_CHG_9_1_1"}]
    job = StemsJobConfig.model_validate({"per_station": {STATION: {"plots": [{"name": "1", "area_m2": 100,
                                                                              "trees": trees}]}}})
    with pytest.raises(SoilStemsJobError, match="plot 1 has no dendrometer readings for any of its 1 trees"):
        compute_station_stems(store, STATION, YEAR, job, now=LATER)


# --- schedule and command -----------------------------------------------------------------------------------------


def test_the_schedule_runs_each_station_logs_a_failure_once_and_counts(store: SqliteStore, stems_year: SoilYear,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    soil = SoilJobConfig.model_validate({"every": "1d", "per_station": {
        STATION: soil_settings(), "st9": {"profiles": [profile_config()]}}})
    clock = iter([datetime(2025, 2, 20, tzinfo=UTC) + timedelta(minutes=i) for i in range(100)])
    scheduler = ProductScheduler("soil", store, soil, stems_job(stems_year), clock=lambda: next(clock))
    with caplog.at_level(logging.WARNING):
        assert scheduler.run_round() is False
        scheduler.run_round()
    counters = scheduler.counters()
    assert counters["rounds"] == 2 and counters["every_s"] == 86400
    assert counters["stations"][f"{STATION}/2025"]["runs_ok"] == 2
    failed = counters["stations"]["st9/2025"]
    assert failed["runs_failed"] == 2 and "no readings of co2_10/CO2_1_1_1" in failed["last_error"]
    assert sum("st9" in r.message for r in caplog.records) == 1  # the same failure is logged once
    assert len(store.product_runs("soil", STATION, 2025)) >= 1


def test_the_command_runs_the_job_once_and_names_a_problem(tmp_path: Path, soil_year_: SoilYear) -> None:
    db = tmp_path / "s.sqlite"
    filled_store(db, soil_year_).close()
    config = tmp_path / "central.yaml"
    config.write_text(yaml.safe_dump({"storage": {"kind": "sqlite", "path": str(db)},
                                      "soil": {"per_station": {STATION: soil_settings()}}}))
    result = CliRunner().invoke(app, ["central", "soil", "--station", STATION, "--year", str(YEAR), "-c",
                                      str(config), "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "gradient_1:" in result.output and "chamber_1:" in result.output
    assert (tmp_path / "out" / f"{STATION}_{YEAR}_gradient_1.csv").read_text().startswith("TIMESTAMP_START,")
    assert "GET /api/v1/soil?station=st1&year=2025&table=" in result.output
    failing = CliRunner().invoke(app, ["central", "stems", "--station", STATION, "--year", str(YEAR), "-c",
                                       str(config)])
    assert failing.exit_code == 2 and "no plots configured; add stems.per_station.st1.plots" in failing.output


def test_a_broken_chamber_does_not_withhold_the_profiles_efflux(store: SqliteStore) -> None:
    silent = chamber_config(co2="chamber_2/CO2_5_1_1", lid="chamber_2/LID_CLOSED_5_1_1", temperature=None, name="2")
    result = compute_station_soil(store, STATION, YEAR, soil_job(chambers=[silent]), now=LATER)
    assert list(result.tables) == ["gradient_1"]
    assert any(n.startswith("not computed: chamber 2: ") and "no readings of chamber_2/CO2_5_1_1" in n
               for n in result.run.notes)


@pytest.mark.integration
def test_the_central_service_runs_both_schedules_and_serves_their_runs(
        mosquitto: MosquittoInstance, tmp_path: Path, stems_year: SoilYear, soilstems_stores: SoilStemsStores) -> None:
    soilstems_stores.copy(soilstems_stores.filled, tmp_path / "central.sqlite").close()  # soil_year_, stems_year
    soil = SoilJobConfig.model_validate({"every": "1s", "previous_year_days": 366,
                                         "per_station": {STATION: soil_settings()}})
    stems = StemsJobConfig.model_validate({"every": "1s", "previous_year_days": 366,
                                           "per_station": {STATION: stems_settings(stems_year)}})
    config = CentralConfig(
        mqtt=MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id=f"central-{uuid.uuid4().hex[:8]}"),
        storage=StorageSettings(kind="sqlite", path=tmp_path / "central.sqlite"),
        api=ApiSettings(port=0), data_dir=tmp_path / "data", soil=soil, stems=stems)
    stop = threading.Event()
    ports: list[int] = []
    thread = threading.Thread(target=run_central, args=(config,),
                              kwargs={"stop_event": stop, "ready_callback": ports.append})
    thread.start()
    try:
        assert wait_for(lambda: bool(ports), 10)
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=30,
                          headers=bearer(issue_token(config.data_dir))) as api:
            def served(product: str, table: str) -> bool:
                params: dict[str, str | int] = {"station": STATION, "year": YEAR, "table": table}
                return api.get(f"/api/v1/{product}", params=params).status_code == 200

            assert wait_for(lambda: served("soil", "gradient_1"), 90)
            assert wait_for(lambda: served("stems", "plot_1"), 90)
            health = api.get("/api/v1/health").json()
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    this_year = datetime.now(UTC).year
    for product in ("soil", "stems"):
        counters = health["counters"][product]
        assert counters["every_s"] == 1.0 and counters["rounds"] >= 1
        assert counters["stations"][f"{STATION}/{YEAR}"]["runs_ok"] >= 1
        if this_year != YEAR:  # the current year has no readings: counted, with the reason
            assert "readings" in (counters["stations"][f"{STATION}/{this_year}"]["last_error"] or "")


def test_each_run_keeps_the_digests_of_the_series_it_read(tmp_path: Path, stems_year: SoilYear,
                                                          soilstems_stores: SoilStemsStores) -> None:
    own = soilstems_stores.copy(soilstems_stores.filled, tmp_path / "store.sqlite")  # soil_year_, stems_year
    try:
        soil = run_station_product("soil", own, STATION, YEAR, soil_job(), stems_job(stems_year), now=LATER)
        stems = run_station_product("stems", own, STATION, YEAR, soil_job(), stems_job(stems_year), now=LATER)
        (stored,) = own.product_runs("soil", STATION, YEAR)
        assert stored.inputs == soil.run.inputs  # kept with the run
        kinds = {entry["kind"] for entry in soil.run.inputs.values()}
        assert kinds == {"means", "readings"}  # the profiles' period means, the chamber's raw CO2 and lid state
        assert all(entry["items"] > 0 and len(entry["sha256"]) == 64 for entry in soil.run.inputs.values())
        assert {entry["kind"] for entry in stems.run.inputs.values()} >= {"readings"}  # the dendrometers
        # the same job over the same store reads the same: the digests are a check of the run against the store
        assert compute_station_soil(own, STATION, YEAR, soil_job(), now=LATER).run.inputs == soil.run.inputs
        name, entry = next((n, e) for n, e in soil.run.inputs.items() if e["kind"] == "means")
        late = own.query_series(STATION, entry["variable"], LATER - timedelta(days=400), LATER,
                                sensor=entry["sensor"], site=entry["site"])[-1]
        reading = Reading(station=STATION, sensor=entry["sensor"], variable=entry["variable"], value=late.value,
                          unit=next(iter(own.series_sources(STATION, entry["variable"], late.time,
                                                            late.time + timedelta(seconds=1)))).unit,
                          time=late.time - timedelta(seconds=1), time_source=TimeSource.GATEWAY, clock_synced=True,
                          qc=QualityFlag.GOOD)
        own.write([StoredReading(entry["site"], reading)])
        again = compute_station_soil(own, STATION, YEAR, soil_job(), now=LATER).run.inputs
        assert [n for n in soil.run.inputs if again[n] != soil.run.inputs[n]] == [name]
    finally:
        own.close()
