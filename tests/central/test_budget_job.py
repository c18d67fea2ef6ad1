"""The central budget job (gateway/central/budget.py): a simulated station-year stored like a station delivers it
(half-hourly flux records, met readings), the job's budget against the simulation's truth, a year in progress,
the choices it refuses to guess, and the same job against SQLite and a real influxd."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from gateway.central.budget import (
    BudgetJobError,
    budget_input_digests,
    compute_station_budget,
    run_station_budget,
    table_csv,
)
from gateway.central.store import InfluxStore, Resolution, SqliteStore, Store, StoredReading
from gateway.central.store.provenance import records_digest
from gateway.contract import FluxRecord
from gateway.flux.budget.pipeline import ENGINE_NAME, ENGINE_VERSION
from gateway.model import QualityFlag
from gateway.simulation.fluxyear import flux_records, met_readings, truth_gc_m2
from gateway.testing.services import InfluxInstance
from gateway.variables import vapour_pressure_deficit_hpa

from .budget_helpers import FACTOR, SITE, STATION, YEAR, after, fill_store, first_days, first_row, job, simulated_year


@pytest.fixture
def sqlite(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "central.sqlite")


def test_a_simulated_year_is_recovered_by_the_central_job(sqlite: SqliteStore) -> None:
    year = simulated_year()
    fill_store(sqlite, year)
    budget = run_station_budget(sqlite, STATION, YEAR, job(ustar="auto"), now=after(year))

    (run,) = sqlite.budget_runs(STATION, YEAR)
    assert run.complete and run.engine_version == f"{ENGINE_NAME} {ENGINE_VERSION}" and run.site == SITE
    assert run.settings_hash == budget.run.settings_hash
    assert len(sqlite.budget_table(run, "HH")) == year.time_start_s.size
    assert len(sqlite.budget_table(run, "DD")) == 366 and len(sqlite.budget_table(run, "MM")) == 12
    yy = first_row(sqlite.budget_table(run, "YY"))
    truth = truth_gc_m2(year)
    # the chain's own bars on a synthetic year (docs/budget.md, validation), through the store and the job
    assert yy["NEE_F"] == pytest.approx(truth["NEE"], abs=15.0)
    assert yy["RECO_NT"] == pytest.approx(truth["RECO"], rel=0.05)
    assert yy["GPP_NT"] == pytest.approx(truth["GPP"], rel=0.05)
    assert yy["NEE_F_UNC"] > 0 and yy["NEE_F_USTARUNC"] >= 0
    assert 0.3 < yy["GAP_FRACTION"] < 0.7
    # the u* threshold distribution is kept with the run
    assert run.scalars["USTAR_THRESHOLD"] == pytest.approx(year.ustar_threshold, abs=0.05)
    assert len(run.ustar_draws) == 100
    p05, p50, p95 = (float(run.scalars[f"USTAR_THRESHOLD_{p}"]) for p in ("P05", "P50", "P95"))
    assert p05 <= p50 <= p95
    assert run.settings["met"] == {"SW_IN": "sw_in/SW_IN_1_1_1", "TA": "ta_rh/TA_1_1_1", "VPD": "ta_rh/VPD_1_1_1"}
    # the annual sum is the sum of its half hours
    hh = sqlite.budget_table(run, "HH").values
    assert yy["NEE_F"] == pytest.approx(sum(v for v in hh["NEE_F"] if v is not None) * FACTOR, rel=1e-9)


def test_a_year_in_progress_is_a_running_total_that_fills_nothing_after_the_last_record(sqlite: SqliteStore) -> None:
    year = simulated_year()
    spring = first_days(year, 100)
    fill_store(sqlite, spring)
    now = after(spring, hours=24 * 5)  # five days without a record: the future is not filled either
    first = run_station_budget(sqlite, STATION, YEAR, job(), now=now)

    run = first.run
    assert not run.complete
    assert run.last_end == after(spring, hours=0)
    hh = sqlite.budget_table(run, "HH")
    assert hh.times[-1] == run.last_end and len(hh) == 100 * 48
    assert len(sqlite.budget_table(run, "DD")) == 100
    yy = first_row(sqlite.budget_table(run, "YY"))
    assert yy["N_RECORDS"] == 100 * 48 and yy["N_UNFILLED"] == 0
    nee_f = [v for v in hh.values["NEE_F"] if v is not None]
    assert len(nee_f) == len(hh) and yy["NEE_F"] == pytest.approx(sum(nee_f) * FACTOR, rel=1e-9)
    # within the record the running total follows the truth of the same days
    truth = float(spring.nee_true.sum()) * FACTOR
    assert yy["NEE_F"] == pytest.approx(truth, abs=max(3 * yy["NEE_F_UNC"], 8.0))
    assert any("not filled and not summed" in note for note in run.notes)

    # the next day's run over more data replaces it: same settings, one run, a longer record
    summer = first_days(year, 150)
    fill_store(sqlite, first_days(year, 50, skip_days=100))
    second = run_station_budget(sqlite, STATION, YEAR, job(), now=after(summer))
    (stored,) = sqlite.budget_runs(STATION, YEAR)
    assert stored.settings_hash == run.settings_hash == second.run.settings_hash
    assert stored.last_end == after(summer, hours=0) and len(sqlite.budget_table(stored, "DD")) == 150


def test_two_sensors_reporting_one_variable_need_a_choice(sqlite: SqliteStore) -> None:
    year = first_days(simulated_year(), 20)
    fill_store(sqlite, year)
    spare = [r.model_copy(update={"sensor": "ta_spare", "variable": "TA_1_2_1", "value": (r.value or 0) + 5})
             for r in met_readings(year, station=STATION) if r.variable == "TA_1_1_1"]
    sqlite.write([StoredReading(SITE, r) for r in spare])

    with pytest.raises(BudgetJobError) as excinfo:
        compute_station_budget(sqlite, STATION, YEAR, job(), now=after(year))
    message = str(excinfo.value)
    assert "ta_rh/TA_1_1_1" in message and "ta_spare/TA_1_2_1" in message
    assert f"budget.per_station.{STATION}.sensors.TA" in message

    chosen = compute_station_budget(sqlite, STATION, YEAR, job(per_station={STATION: {"sensors": {"TA": "ta_spare"}}}),
                                    now=after(year))
    assert chosen.run.settings["met"]["TA"] == "ta_spare/TA_1_2_1"
    assert chosen.tables["HH"].values["TA"][:3] == pytest.approx([float(v) + 5 for v in year.ta[:3]])
    wrong = job(per_station={STATION: {"sensors": {"TA": "ta_none"}}})
    with pytest.raises(BudgetJobError, match=r"sensors.TA = ta_none, but that reports no TA"):
        compute_station_budget(sqlite, STATION, YEAR, wrong, now=after(year))


def test_vpd_comes_from_rh_and_ta_when_no_sensor_reports_it(sqlite: SqliteStore) -> None:
    year = first_days(simulated_year(), 20)
    fill_store(sqlite, year, with_vpd=False)
    rh = [r.model_copy(update={"variable": "RH_1_1_1", "unit": "%", "value": 60.0 + (i % 7)})
          for i, r in enumerate(met_readings(year, station=STATION)) if r.variable == "TA_1_1_1"]
    sqlite.write([StoredReading(SITE, r) for r in rh])

    budget = compute_station_budget(sqlite, STATION, YEAR, job(), now=after(year))

    expected = vapour_pressure_deficit_hpa(year.ta, np.array([r.value for r in rh], dtype=float))
    assert budget.tables["HH"].values["VPD"] == pytest.approx(list(expected))
    assert budget.run.settings["met"]["VPD"] == "from ta_rh/TA_1_1_1 and ta_rh/RH_1_1_1"


def test_without_vpd_and_rh_the_reduced_method_runs_and_says_so(sqlite: SqliteStore) -> None:
    year = first_days(simulated_year(), 20)
    fill_store(sqlite, year, with_vpd=False)  # and no RH sensor

    budget = compute_station_budget(sqlite, STATION, YEAR, job(), now=after(year))

    notes = budget.run.notes
    assert any(n.startswith("no VPD or RH readings at site") for n in notes), notes
    assert any(n.startswith("VPD: no values; NEE gap-filled by the look-up table on SW_IN alone") for n in notes)
    assert budget.run.settings["met"]["VPD"] == "none"
    assert all(v is None or math.isnan(v) for v in budget.tables["HH"].values["VPD"])
    assert "VPD" not in budget.run.inputs  # nothing read for it: no digest
    assert all(v is not None and math.isfinite(v) for v in budget.tables["HH"].values["NEE_F"])  # all filled


def test_two_flux_result_sets_need_a_choice_and_flagged_fc_is_removed(sqlite: SqliteStore) -> None:
    year = first_days(simulated_year(), 20)
    fill_store(sqlite, year)
    # the same year recomputed with other settings, and there one flux flagged 2
    other = [r.model_copy(update={"settings_hash": "feedfacefeedface",
                                  "values": {**r.values, **({"FC_SSITC_TEST": 2} if i == 100 else {})}})
             for i, r in enumerate(flux_records(year, site=SITE, station=STATION))]
    sqlite.write_fluxes(other)

    with pytest.raises(BudgetJobError) as excinfo:
        compute_station_budget(sqlite, STATION, YEAR, job(), now=after(year))
    assert "feedfacefeedface" in str(excinfo.value) and "flux_settings_hash" in str(excinfo.value)

    chosen = compute_station_budget(
        sqlite, STATION, YEAR, job(per_station={STATION: {"flux_settings_hash": "feedfacefeedface"}}), now=after(year))
    fc = chosen.tables["HH"].values["FC"]
    assert fc[100] is None or math.isnan(fc[100])
    assert fc[101] == pytest.approx(float(year.nee[101])) or math.isnan(year.nee[101])
    assert chosen.run.settings["flux_set"]["settings_hash"] == "feedfacefeedface"
    assert any("FC_SSITC_TEST > 1 removed" in note for note in chosen.run.notes)


def test_one_settings_hash_across_an_engine_upgrade_is_one_set_the_newest_record_per_half_hour(
        sqlite: SqliteStore) -> None:
    year = first_days(simulated_year(), 20)
    records = flux_records(year, site=SITE, station=STATION)
    old, new = "sinkwatch-ec 0.9.0", "sinkwatch-ec 0.10.0"  # 0.10 is newer: compared as numbers, not as text
    upgrade = 400
    # the station ran the old engine until record 400 and the new one since; periods 300..399 were recomputed with
    # the new engine (another FC there), and one old period stays the old engine's only record
    sqlite.write_fluxes([r.model_copy(update={"engine_version": old}) for r in records[:upgrade]])
    sqlite.write_fluxes([r.model_copy(update={"engine_version": new}) for r in records[upgrade:]])
    recomputed = [r.model_copy(update={"engine_version": new, "values": {**r.values, "FC": -7.25}})
                  for r in records[300:upgrade] if r.values.get("FC") is not None]
    sqlite.write_fluxes(recomputed)
    sqlite.write([StoredReading(SITE, r) for r in met_readings(year, station=STATION)])

    budget = compute_station_budget(sqlite, STATION, YEAR, job(), now=after(year))
    fc = budget.tables["HH"].values["FC"]
    assert len(fc) == len(records)
    assert {i for i in range(len(fc)) if fc[i] == -7.25} == {300 + k for k, r in enumerate(records[300:upgrade])
                                                              if r.values.get("FC") is not None}
    for i in (0, 299, upgrade, len(records) - 1):  # outside the recomputed periods: each period's one record
        expected, got = records[i].values.get("FC"), fc[i]
        assert (got is None or math.isnan(got)) if expected is None else got == pytest.approx(expected)
    assert budget.run.settings["flux_set"]["engine_version"] == f"{new}, {old}"
    assert budget.run.inputs["fluxes"]["records"] == len(records)
    assert any(f"{new} ({len(records) - upgrade + len(recomputed)} half hours)" in note
               and f"{old} ({upgrade - len(recomputed)} half hours)" in note for note in budget.run.notes)

    # another engine's records under the same hash are not an upgrade of this one: the job refuses to guess
    sqlite.write_fluxes([r.model_copy(update={"engine_version": "other-engine 1.0"}) for r in records[:50]])
    with pytest.raises(BudgetJobError) as excinfo:
        compute_station_budget(sqlite, STATION, YEAR, job(), now=after(year))
    assert "other-engine 1.0" in str(excinfo.value) and "3 flux result sets" in str(excinfo.value)


def test_a_run_across_an_upgrade_is_read_again_as_it_was_computed(sqlite: SqliteStore) -> None:
    year = first_days(simulated_year(), 20)
    records = flux_records(year, site=SITE, station=STATION)
    sqlite.write_fluxes([r.model_copy(update={"engine_version": "sinkwatch-ec 1.0.0"}) for r in records[:500]])
    sqlite.write_fluxes([r.model_copy(update={"engine_version": "sinkwatch-ec 1.1.0"}) for r in records[200:]])
    sqlite.write([StoredReading(SITE, r) for r in met_readings(year, station=STATION)])
    run_station_budget(sqlite, STATION, YEAR, job(), now=after(year))
    (run,) = sqlite.budget_runs(STATION, YEAR)
    assert run.inputs["fluxes"]["records"] == len(records)
    assert budget_input_digests(sqlite, run) == run.inputs

    # the older engine's record of a period the newer one also computed is not what the run used: no change shown
    shadowed = records[300].model_copy(update={"engine_version": "sinkwatch-ec 1.0.0",
                                               "values": {**records[300].values, "FC": 11.0}})
    sqlite.write_fluxes([shadowed])
    assert budget_input_digests(sqlite, run) == run.inputs
    # the newer engine's record of a period changes: shown
    changed = records[300].model_copy(update={"engine_version": "sinkwatch-ec 1.1.0",
                                              "values": {**records[300].values, "FC": 12.0}})
    sqlite.write_fluxes([changed])
    assert budget_input_digests(sqlite, run)["fluxes"] != run.inputs["fluxes"]


def test_half_hours_with_too_few_readings_are_missing(sqlite: SqliteStore) -> None:
    year = first_days(simulated_year(), 20)
    fill_store(sqlite, year)
    # two more readings in every half hour but the first ten: those ten have a third of the median count
    extra = [r.model_copy(update={"time": r.time + timedelta(minutes=m)})
             for i, r in enumerate(met_readings(year, station=STATION)) if i // 3 >= 10 for m in (5, 10)]
    sqlite.write([StoredReading(SITE, r) for r in extra])

    budget = compute_station_budget(sqlite, STATION, YEAR, job(), now=after(year))

    sw = budget.tables["HH"].values["SW_IN"]
    assert all(v is None or math.isnan(v) for v in sw[:10]) and all(v is not None for v in sw[10:20])
    assert any("half hours with fewer than 0.5 x the median 3 readings" in note for note in budget.run.notes)


def test_bad_and_missing_met_readings_are_left_out(sqlite: SqliteStore) -> None:
    year = first_days(simulated_year(), 20)
    fill_store(sqlite, year)
    bad = [r.model_copy(update={"time": r.time + timedelta(minutes=1), "value": 1e4, "qc": QualityFlag.BAD})
           for r in met_readings(year, station=STATION) if r.variable == "SW_IN_1_1_1"]
    sqlite.write([StoredReading(SITE, r) for r in bad])

    budget = compute_station_budget(sqlite, STATION, YEAR, job(), now=after(year))
    assert budget.tables["HH"].values["SW_IN"] == pytest.approx([float(v) for v in year.sw_in])


@pytest.mark.parametrize("case, expected", [
    ("no fluxes", "no flux records stored for this year"),
    ("short", "a budget needs at least 14 days"),
    ("no radiation", "no SW_IN readings"),
    ("no coordinates", "no coordinates"),
    ("future", "has not begun"),
])
def test_a_station_year_that_cannot_give_a_budget_says_why(sqlite: SqliteStore, case: str, expected: str) -> None:
    year = first_days(simulated_year(), 20)
    config = job()
    target = YEAR
    if case == "short":
        fill_store(sqlite, first_days(year, 10))
    elif case == "no radiation":
        sqlite.write_fluxes(flux_records(year, site=SITE, station=STATION))
        sqlite.write([StoredReading(SITE, r) for r in met_readings(year, station=STATION) if "SW_IN" not in r.variable])
    elif case == "no coordinates":
        config = job(defaults={"latitude": None})
    elif case == "future":
        target = YEAR + 5
    with pytest.raises(BudgetJobError, match=expected):
        compute_station_budget(sqlite, STATION, target, config, now=after(year))


def test_stored_tables_render_as_the_command_files(sqlite: SqliteStore) -> None:
    year = first_days(simulated_year(), 20)
    fill_store(sqlite, year)
    budget = run_station_budget(sqlite, STATION, YEAR, job(), now=after(year))
    (run,) = sqlite.budget_runs(STATION)

    hh = table_csv(run, sqlite.budget_table(run, "HH")).splitlines()
    assert hh[0].startswith("TIMESTAMP_START,TIMESTAMP_END,FC,SC,NEE,USTAR,SW_IN,TA,VPD,NEE_F,NEE_F_QC")
    assert hh[1].startswith("202401010000,202401010030,")
    assert len(hh) == 1 + 20 * 48
    yy = table_csv(run, sqlite.budget_table(run, "YY")).splitlines()
    header, row = yy[0].split(","), yy[1].split(",")
    assert row[0] == "2024" and "USTAR_THRESHOLD" in header and "NEE_F_UNC" in header
    assert float(row[header.index("NEE_F")]) == pytest.approx(budget.tables["YY"].values["NEE_F"][0], rel=1e-5)


def _same_budget(store: Store, reference: Store) -> None:
    (a,) = store.budget_runs(STATION)
    (b,) = reference.budget_runs(STATION)
    assert (a.settings_hash, a.first_end, a.last_end, a.complete) == (b.settings_hash, b.first_end, b.last_end,
                                                                      b.complete)
    assert a.inputs == b.inputs  # the same records and means, so the same digests, whichever store served them
    resolutions: tuple[Resolution, ...] = ("HH", "DD", "YY")
    for resolution in resolutions:
        ta, tb = store.budget_table(a, resolution), reference.budget_table(b, resolution)
        assert ta.times == tb.times and ta.labels == tb.labels
        assert ta.values.keys() == tb.values.keys()
        for name in ta.values:
            left = [math.nan if v is None else v for v in ta.values[name]]
            right = [math.nan if v is None else v for v in tb.values[name]]
            np.testing.assert_array_equal(left, right, err_msg=f"{resolution} {name}")


@pytest.mark.integration
def test_the_job_gives_the_same_budget_on_a_real_influxd(sqlite: SqliteStore, influxd: InfluxInstance) -> None:
    year = first_days(simulated_year(), 30, skip_days=150)
    influx = InfluxStore(influxd.url, database="budget")
    try:
        for store in (influx, sqlite):
            fill_store(store, year)
            run_station_budget(store, STATION, YEAR, job(), now=after(year))
        _same_budget(influx, sqlite)
        # a second run over the same data replaces the first: one run, the same rows
        run_station_budget(influx, STATION, YEAR, job(), now=after(year))
        _same_budget(influx, sqlite)
    finally:
        influx.close()


def test_flux_records_from_the_simulation_are_valid_wire_records() -> None:
    records = flux_records(first_days(simulated_year(), 1), site=SITE, station=STATION)
    assert len(records) == 48
    for record in records:
        assert FluxRecord.model_validate_json(record.model_dump_json()) == record
        assert record.end - record.start == timedelta(minutes=30)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("influx", marks=pytest.mark.integration)])
def test_a_run_keeps_the_digests_of_its_inputs_and_they_show_a_later_change(
        sqlite: SqliteStore, backend: str, request: pytest.FixtureRequest) -> None:
    store: Store = sqlite
    if backend == "influx":
        store = InfluxStore(request.getfixturevalue("influxd").url, database="provenance")
    try:
        year = first_days(simulated_year(), 30, skip_days=150)
        fill_store(store, year)
        run_station_budget(store, STATION, YEAR, job(), now=after(year))
        (run,) = store.budget_runs(STATION, YEAR)
        records = store.query_fluxes(STATION, run.first_end - timedelta(hours=1), run.last_end)

        assert set(run.inputs) == {"fluxes", "SW_IN", "TA", "VPD"}
        fluxes = run.inputs["fluxes"]
        assert (fluxes["records"], fluxes["settings_hash"]) == (len(records), records[0].settings_hash)
        assert fluxes["sha256"] == records_digest(records)
        assert (run.inputs["TA"]["sensor"], run.inputs["TA"]["variable"]) == ("ta_rh", "TA_1_1_1")
        assert run.inputs["TA"]["windows"] == 30 * 48
        assert budget_input_digests(store, run) == run.inputs  # read again: what the run was computed from

        # one flux record recomputed with another FC, one late TA reading: the stored run no longer matches
        changed = records[100].model_copy(update={"values": {**records[100].values, "FC": -99.0}})
        store.write_fluxes([changed])
        late = next(r for r in met_readings(year, station=STATION) if r.variable == "TA_1_1_1")
        store.write([StoredReading(SITE, late.model_copy(update={"time": late.time + timedelta(seconds=1)}))])
        now = budget_input_digests(store, run)
        assert sorted(name for name in run.inputs if now[name] != run.inputs[name]) == ["TA", "fluxes"]
    finally:
        if store is not sqlite:
            store.close()


def test_spike_detection_is_a_setting_of_the_run(sqlite: SqliteStore) -> None:
    part = first_days(simulated_year(), 30)
    fill_store(sqlite, part)
    plain = run_station_budget(sqlite, STATION, YEAR, job(), now=after(part)).run
    despiked = run_station_budget(sqlite, STATION, YEAR, job(despike_z=5.5), now=after(part)).run
    # off by default and then not in the settings, so the runs stored before the option keep their hash
    assert "despike_z" not in plain.settings and not any("spikes removed" in n for n in plain.notes)
    assert despiked.settings["despike_z"] == 5.5 and despiked.settings_hash != plain.settings_hash
    assert any(re.search(r"\d+ NEE spikes removed \(Papale et al\. 2006, z = 5\.5", n) for n in despiked.notes)
    assert {r.settings_hash for r in sqlite.budget_runs(STATION, YEAR)} == {plain.settings_hash,
                                                                            despiked.settings_hash}
