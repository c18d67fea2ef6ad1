"""The budget part of the store contract (gateway/central/store/budget.py), against SqliteStore and a real influxd:
the same fixtures as test_store_contract.py, kept in a file of its own beside it."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.central.store import (
    BudgetRun,
    BudgetTable,
    StationBudget,
    Store,
    StoreUnavailable,
)
from gateway.model import QualityFlag

from .helpers import reading, stored
from .test_store_contract import AWKWARD_FLOATS, _influx_outage, _sqlite_outage, backend, store

__all__ = ["backend", "store"]  # the fixtures, re-exported so pytest finds them here

HALF_HOUR = timedelta(minutes=30)
Y0 = datetime(2025, 1, 1, tzinfo=UTC) - timedelta(hours=1)  # midnight of 1 January at UTC+1


def run(*, station: str = "st1", year: int = 2025, settings_hash: str = "aaaaaaaaaaaaaaaa",
        engine_version: str = "sinkwatch-budget 0.1.0", site: str = "site1", complete: bool = False,
        draws: list[float] | None = None, notes: list[str] | None = None) -> BudgetRun:
    return BudgetRun(
        site=site, station=station, year=year, engine_version=engine_version, settings_hash=settings_hash,
        computed_at=datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC), first_end=Y0 + HALF_HOUR,
        last_end=Y0 + 3 * HALF_HOUR, complete=complete, utc_offset_h=1.0,
        settings={"ustar": "auto", "lat": 51.0, "sensors": {"TA": "ta_rh"}},
        scalars={"USTAR_THRESHOLD": 0.2512, "USTAR_MODE": "auto", "E0_NT": math.nan},
        ustar_draws=draws if draws is not None else [0.21, 0.25, 1 / 3],
        notes=notes or ["a note", "ünïcode, quoted \""],
        inputs={"fluxes": {"site": site, "engine_version": "sinkwatch-ec 0.3.0", "settings_hash": "0123456789abcdef",
                           "records": 3, "first_end": "2025-01-01T00:30:00.000000Z",
                           "last_end": "2025-01-01T01:30:00.000000Z", "sha256": "ab" * 32},
                "TA": {"sensor": "hmp155", "variable": "TA_1_1_1", "windows": 3, "sha256": "cd" * 32}},
    )


def tables(hh_values: list[float | None] | None = None) -> dict[str, BudgetTable]:
    hh = hh_values if hh_values is not None else [-1.5, None, 1 / 3]
    return {
        "HH": BudgetTable("HH", [Y0 + (i + 1) * HALF_HOUR for i in range(3)],
                          ["202501010000", "202501010030", "202501010100"],
                          {"NEE_F": hh, "NEE_F_QC": [0.0, 1.0, 3.0], "RECO_NT": [2.0, 2.5, None]}),
        "DD": BudgetTable("DD", [Y0, Y0 + timedelta(days=1)], ["20250101", "20250102"],
                          {"NEE_F": [0.1, None], "GAP_FRACTION": [0.25, 1.0]}),
        "YY": BudgetTable("YY", [Y0], ["2025"], {"NEE_F": [-131.7], "NEE_F_UNC": [12.25]}),
    }


def as_rows(table: BudgetTable) -> list[tuple[datetime, str, dict[str, float | None]]]:
    return [(t, label, {k: v[i] for k, v in table.values.items()})
            for i, (t, label) in enumerate(zip(table.times, table.labels, strict=True))]


def test_a_budget_run_round_trips_exactly(store: Store) -> None:
    awkward = [v for v in AWKWARD_FLOATS if v is None or abs(v) < 1e300]
    hh = BudgetTable("HH", [Y0 + (i + 1) * HALF_HOUR for i in range(len(awkward))],
                     [f"r{i}" for i in range(len(awkward))], {"NEE_F": awkward})
    written = StationBudget(run(), {**tables(), "HH": hh})
    store.write_budget(written)

    (found,) = store.budget_runs("st1")
    for name in ("site", "station", "year", "engine_version", "settings_hash", "computed_at", "first_end",
                 "last_end", "complete", "utc_offset_h", "settings", "ustar_draws", "notes", "inputs"):
        assert getattr(found, name) == getattr(written.run, name), name
    assert found.scalars["USTAR_THRESHOLD"] == 0.2512 and found.scalars["USTAR_MODE"] == "auto"
    assert math.isnan(float(found.scalars["E0_NT"]))  # a missing scalar stays missing
    assert found.ranges["HH"] == (hh.times[0], hh.times[-1], len(awkward))
    for resolution, table in written.tables.items():
        assert as_rows(store.budget_table(found, resolution)) == as_rows(table), resolution  # type: ignore[arg-type]
    assert len(store.budget_table(found, "MM")) == 0  # a resolution the run does not have


def test_rewriting_a_run_replaces_it_whole(store: Store) -> None:
    store.write_budget(StationBudget(run(draws=[0.2] * 5), tables()))
    shorter = {"HH": BudgetTable("HH", [Y0 + HALF_HOUR], ["202501010000"],
                                 {"NEE_F": [None], "NEE_F_QC": [2.0], "RECO_NT": [3.0]}),
               "YY": BudgetTable("YY", [Y0], ["2025"], {"NEE_F": [None], "NEE_F_UNC": [1.0]})}
    store.write_budget(StationBudget(run(complete=True, draws=[0.3], notes=["second"]), shorter))

    (found,) = store.budget_runs("st1", 2025)
    assert (found.complete, found.ustar_draws, found.notes) == (True, [0.3], ["second"])
    # the value that became missing reads as missing, the rows the new run lacks are gone
    assert as_rows(store.budget_table(found, "HH")) == as_rows(shorter["HH"])
    assert as_rows(store.budget_table(found, "YY")) == as_rows(shorter["YY"])
    assert len(store.budget_table(found, "DD")) == 0


def test_runs_of_other_settings_engines_years_and_stations_coexist(store: Store) -> None:
    store.write_budget(StationBudget(run(settings_hash="bbbbbbbbbbbbbbbb"), tables([1.0, 1.0, 1.0])))
    store.write_budget(StationBudget(run(settings_hash="aaaaaaaaaaaaaaaa"), tables([2.0, 2.0, 2.0])))
    store.write_budget(StationBudget(run(engine_version="sinkwatch-budget 0.2.0"), tables([3.0, 3.0, 3.0])))
    store.write_budget(StationBudget(run(year=2024), tables([4.0, 4.0, 4.0])))
    store.write_budget(StationBudget(run(station="st2"), tables([5.0, 5.0, 5.0])))

    runs = store.budget_runs("st1")
    assert [(r.year, r.settings_hash, r.engine_version) for r in runs] == [
        (2024, "aaaaaaaaaaaaaaaa", "sinkwatch-budget 0.1.0"),
        (2025, "aaaaaaaaaaaaaaaa", "sinkwatch-budget 0.1.0"),
        (2025, "aaaaaaaaaaaaaaaa", "sinkwatch-budget 0.2.0"),
        (2025, "bbbbbbbbbbbbbbbb", "sinkwatch-budget 0.1.0"),
    ]
    assert [r.year for r in store.budget_runs("st1", 2024)] == [2024]
    firsts = [store.budget_table(r, "HH").values["NEE_F"][0] for r in runs]
    assert firsts == [4.0, 2.0, 3.0, 1.0]
    assert [store.budget_table(r, "HH").values["NEE_F"][0] for r in store.budget_runs("st2")] == [5.0]


@pytest.mark.parametrize("hostile", ["st1' OR '1'='1", 'st1" OR 1=1 --', "st1; DROP TABLE budget_runs", "*"])
def test_hostile_station_names_find_no_budget(store: Store, hostile: str) -> None:
    store.write_budget(StationBudget(run(), tables()))
    assert store.budget_runs(hostile) == []
    assert len(store.budget_runs("st1")) == 1


def test_empty_store_has_no_budget(store: Store) -> None:
    assert store.budget_runs("st1") == []
    assert len(store.budget_table(run(), "HH")) == 0


def test_window_means_average_the_good_readings_of_one_sensor(store: Store) -> None:
    t0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    readings = [
        reading(time=t0 + timedelta(minutes=1), value=10.0, variable="TA_1_1_1", sensor="hmp", unit="degC"),
        reading(time=t0 + timedelta(minutes=11), value=13.0, variable="TA_1_1_1", sensor="hmp", unit="degC",
                qc=QualityFlag.SUSPECT),
        reading(time=t0 + timedelta(minutes=21), value=99.0, variable="TA_1_1_1", sensor="hmp", unit="degC",
                qc=QualityFlag.BAD),
        reading(time=t0 + timedelta(minutes=25), value=None, variable="TA_1_1_1", sensor="hmp", unit="degC"),
        reading(time=t0 + timedelta(minutes=31), value=20.0, variable="TA_1_1_1", sensor="hmp", unit="degC"),
        # only bad in the third half hour: no window at all
        reading(time=t0 + timedelta(minutes=61), value=50.0, variable="TA_1_1_1", sensor="hmp", unit="degC",
                qc=QualityFlag.BAD),
        # another sensor's TA and another variable are not mixed in
        reading(time=t0 + timedelta(minutes=2), value=-40.0, variable="TA_1_1_1", sensor="sonic", unit="degC"),
        reading(time=t0 + timedelta(minutes=3), value=-40.0, variable="TA_1_2_1", sensor="hmp", unit="degC"),
    ]
    store.write(stored("site1", readings))
    store.write(stored("site2", [reading(time=t0 + timedelta(minutes=4), value=-40.0, variable="TA_1_1_1",
                                         sensor="hmp", unit="degC")]))

    means = store.window_means("st1", "TA_1_1_1", t0, t0 + 2 * HALF_HOUR + HALF_HOUR, HALF_HOUR, site="site1",
                               sensor="hmp")

    assert [(m.start, m.mean, m.count) for m in means] == [(t0, 11.5, 2), (t0 + HALF_HOUR, 20.0, 1)]
    assert store.window_means("st1", "TA_1_1_1", t0, t0 + HALF_HOUR, HALF_HOUR, site="site1", sensor="none") == []


Outage = Callable[[Path], AbstractContextManager[tuple[Store, Callable[[], None]]]]


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param(_sqlite_outage, id="sqlite"),
        pytest.param(_influx_outage, id="influx", marks=pytest.mark.integration),
    ],
)
def test_a_budget_write_during_an_outage_raises_store_unavailable_and_works_after(outage: Outage,
                                                                                  tmp_path: Path) -> None:
    with outage(tmp_path) as (store, recover):
        with pytest.raises(StoreUnavailable):
            store.write_budget(StationBudget(run(), tables()))
        recover()
        store.write_budget(StationBudget(run(), tables()))
        (found,) = store.budget_runs("st1")
        assert store.budget_table(found, "YY").values["NEE_F"] == [-131.7]
