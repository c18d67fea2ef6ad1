"""The soil/stems part of the store contract (gateway/central/store/products.py), against SqliteStore and a real
influxd: the same fixtures as test_store_contract.py."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.central.store import Product, ProductRun, ProductTable, StationProduct, Store, StoreUnavailable

from .test_store_contract import AWKWARD_FLOATS, _influx_outage, _sqlite_outage, backend, store

__all__ = ["backend", "store"]  # the fixtures, re-exported so pytest finds them here

HALF_HOUR = timedelta(minutes=30)
Y0 = datetime(2025, 1, 1, tzinfo=UTC) - timedelta(hours=1)  # midnight of 1 January at UTC+1


def run(*, product: Product = "soil", station: str = "st1", year: int = 2025,
        settings_hash: str = "aaaaaaaaaaaaaaaa", engine_version: str = "sinkwatch-soil 0.1.0", site: str = "site1",
        complete: bool = False, notes: list[str] | None = None) -> ProductRun:
    return ProductRun(
        product=product, site=site, station=station, year=year, engine_version=engine_version,
        settings_hash=settings_hash, computed_at=datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        first=Y0 + HALF_HOUR, last=Y0 + 3 * HALF_HOUR, complete=complete, utc_offset_h=1.0,
        settings={"method": "layer_extrapolation", "depths": [0.1, 0.3], "site": {"bulk_density": 1.2}},
        notes=notes or ["a note", "ünïcode, quoted \""],
        inputs={"site1/probe_10cm/CO2_1_1_1 means 1800s": {"kind": "means", "site": "site1", "sensor": "probe_10cm",
                                                           "variable": "CO2_1_1_1", "every_s": 1800, "calls": 1,
                                                           "items": 3, "first": "2025-01-01T00:00:00.000000Z",
                                                           "last": "2025-01-01T01:00:00.000000Z",
                                                           "sha256": "ef" * 32}})


def tables(first: list[float | None] | None = None) -> dict[str, ProductTable]:
    flux = first if first is not None else [1.5, None, 1 / 3]
    return {
        "gradient_1": ProductTable("gradient_1", [Y0 + (i + 1) * HALF_HOUR for i in range(3)],
                                   {"FC_SOIL_GRAD": flux, "FC_SOIL_GRAD_QC": [0.0, 16.0, 4.0],
                                    "TS_1_1_1": [5.0, None, 5.5]}),
        "chamber_1": ProductTable("chamber_1", [Y0 + timedelta(minutes=65)], {"FC_SOIL_CH_1": [2.25],
                                                                             "FC_SOIL_CH_1_QC": [4.0]}),
    }


def as_rows(table: ProductTable) -> list[tuple[datetime, dict[str, float | None]]]:
    return [(t, {k: v[i] for k, v in table.values.items()}) for i, t in enumerate(table.times)]


def test_a_product_run_round_trips_exactly(store: Store) -> None:
    awkward = [v for v in AWKWARD_FLOATS if v is None or abs(v) < 1e300]
    many = ProductTable("gradient_1", [Y0 + (i + 1) * HALF_HOUR for i in range(len(awkward))],
                        {"FC_SOIL_GRAD": awkward})
    written = StationProduct(run(), {**tables(), "gradient_1": many})
    store.write_product(written)

    (found,) = store.product_runs("soil", "st1")
    for name in ("product", "site", "station", "year", "engine_version", "settings_hash", "computed_at", "first",
                 "last", "complete", "utc_offset_h", "settings", "notes", "inputs"):
        assert getattr(found, name) == getattr(written.run, name), name
    assert found.tables["gradient_1"] == (many.times[0], many.times[-1], len(awkward), ["FC_SOIL_GRAD"])
    for name, table in written.tables.items():
        assert as_rows(store.product_table(found, name)) == as_rows(table), name
    assert len(store.product_table(found, "chamber_9")) == 0  # a table the run does not have
    assert store.product_runs("stems", "st1") == []  # the products are kept apart


def test_rewriting_a_run_replaces_it_whole(store: Store) -> None:
    store.write_product(StationProduct(run(), tables()))
    shorter = {"gradient_1": ProductTable("gradient_1", [Y0 + HALF_HOUR],
                                          {"FC_SOIL_GRAD": [None], "FC_SOIL_GRAD_QC": [16.0], "TS_1_1_1": [4.0]})}
    store.write_product(StationProduct(run(complete=True, notes=["second"]), shorter))

    (found,) = store.product_runs("soil", "st1", 2025)
    assert (found.complete, found.notes) == (True, ["second"])
    # the value that became missing reads as missing; rows and tables the new run lacks are gone
    assert as_rows(store.product_table(found, "gradient_1")) == as_rows(shorter["gradient_1"])
    assert len(store.product_table(found, "chamber_1")) == 0
    assert list(found.tables) == ["gradient_1"]


def test_runs_of_other_products_settings_engines_years_and_stations_coexist(store: Store) -> None:
    store.write_product(StationProduct(run(settings_hash="bbbbbbbbbbbbbbbb"), tables([1.0, 1.0, 1.0])))
    store.write_product(StationProduct(run(settings_hash="aaaaaaaaaaaaaaaa"), tables([2.0, 2.0, 2.0])))
    store.write_product(StationProduct(run(engine_version="sinkwatch-soil 0.2.0"), tables([3.0, 3.0, 3.0])))
    store.write_product(StationProduct(run(year=2024), tables([4.0, 4.0, 4.0])))
    store.write_product(StationProduct(run(station="st2"), tables([5.0, 5.0, 5.0])))
    store.write_product(StationProduct(run(product="stems"), tables([6.0, 6.0, 6.0])))

    runs = store.product_runs("soil", "st1")
    assert [(r.year, r.settings_hash, r.engine_version) for r in runs] == [
        (2024, "aaaaaaaaaaaaaaaa", "sinkwatch-soil 0.1.0"),
        (2025, "aaaaaaaaaaaaaaaa", "sinkwatch-soil 0.1.0"),
        (2025, "aaaaaaaaaaaaaaaa", "sinkwatch-soil 0.2.0"),
        (2025, "bbbbbbbbbbbbbbbb", "sinkwatch-soil 0.1.0"),
    ]
    firsts = [store.product_table(r, "gradient_1").values["FC_SOIL_GRAD"][0] for r in runs]
    assert firsts == [4.0, 2.0, 3.0, 1.0]
    assert [r.year for r in store.product_runs("soil", "st1", 2024)] == [2024]
    (stems,) = store.product_runs("stems", "st1")
    assert store.product_table(stems, "gradient_1").values["FC_SOIL_GRAD"][0] == 6.0
    (other,) = store.product_runs("soil", "st2")
    assert store.product_table(other, "gradient_1").values["FC_SOIL_GRAD"][0] == 5.0


def test_a_large_table_is_read_back_whole(store: Store) -> None:
    # more rows than one InfluxDB read page, so paging must join them seamlessly
    n = 12_345
    times = [Y0 + timedelta(minutes=10 * (i + 1)) for i in range(n)]
    big = ProductTable("tree_t1", times, {"GRO_t1": [float(i) for i in range(n)],
                                          "TWD_t1": [None if i % 7 == 0 else 0.5 for i in range(n)]})
    store.write_product(StationProduct(run(product="stems"), {"tree_t1": big}))
    (found,) = store.product_runs("stems", "st1")
    back = store.product_table(found, "tree_t1")
    assert back.times == times
    assert back.values["GRO_t1"] == big.values["GRO_t1"] and back.values["TWD_t1"] == big.values["TWD_t1"]


@pytest.mark.parametrize("hostile", ["st1' OR '1'='1", 'st1" OR 1=1 --', "st1; DROP TABLE product_runs", "*"])
def test_hostile_station_names_find_no_product(store: Store, hostile: str) -> None:
    store.write_product(StationProduct(run(), tables()))
    assert store.product_runs("soil", hostile) == []
    assert len(store.product_runs("soil", "st1")) == 1


def test_a_table_must_be_strictly_increasing_and_well_named() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        ProductTable("t", [Y0, Y0], {"X": [1.0, 2.0]})
    with pytest.raises(ValueError, match="table name"):
        ProductTable("a table; drop", [Y0], {"X": [1.0]})
    with pytest.raises(ValueError, match="one value per row"):
        ProductTable("t", [Y0], {"X": [1.0, math.nan]})


Outage = Callable[[Path], AbstractContextManager[tuple[Store, Callable[[], None]]]]


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param(_sqlite_outage, id="sqlite"),
        pytest.param(_influx_outage, id="influx", marks=pytest.mark.integration),
    ],
)
def test_a_product_write_during_an_outage_raises_store_unavailable_and_works_after(outage: Outage,
                                                                                   tmp_path: Path) -> None:
    with outage(tmp_path) as (store, recover):
        with pytest.raises(StoreUnavailable):
            store.write_product(StationProduct(run(), tables()))
        recover()
        store.write_product(StationProduct(run(), tables()))
        (found,) = store.product_runs("soil", "st1")
        assert store.product_table(found, "chamber_1").values["FC_SOIL_CH_1"] == [2.25]
