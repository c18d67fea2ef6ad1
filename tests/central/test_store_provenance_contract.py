"""The provenance of derived results (gateway/central/store/provenance.py) in every store: the inputs of recomputed
flux records are kept under the record's identity and replaced with it; the digests that bind them to the record
and name the inputs of budget and product runs are the same whichever store served the records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.central.store import InfluxStore, SqliteStore, Store
from gateway.central.store.base import SeriesPoint
from gateway.central.store.budget import WindowMean
from gateway.central.store.provenance import (
    FluxInputs,
    InputFile,
    InputRecorder,
    flux_record_digest,
    means_digest,
    points_digest,
    records_digest,
)
from gateway.central.store.victoria import VictoriaStore

from .helpers import T0, flux_record

BACKENDS = ["sqlite", pytest.param("influx", marks=pytest.mark.integration),
            pytest.param("victoria", marks=pytest.mark.integration)]
HOUR = timedelta(hours=1)
AWKWARD = {"FC": -12.345678901234567, "H": 1e-300, "LE": None, "TAU": 0.1 + 0.2, "FC_SSITC_TEST": 2,
           "N_RECORDS": 36000, "ZL": -0.0}


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        instance: Store = SqliteStore(tmp_path / "central.sqlite")
    elif request.param == "victoria":
        instance = VictoriaStore(request.getfixturevalue("victoria").url, side_path=tmp_path / "side.sqlite")
    else:
        instance = InfluxStore(request.getfixturevalue("influxd").url, database="provenance")
    yield instance
    instance.close()


def inputs_of(record_end_minutes: int, *, settings_hash: str = "0123456789abcdef", site: str = "site1",
              files: int = 2) -> tuple[FluxInputs, object]:
    record = flux_record(end=T0 + timedelta(minutes=record_end_minutes), settings_hash=settings_hash, site=site,
                         values=dict(AWKWARD))
    kept = tuple(InputFile("sonic" if i % 2 == 0 else "irga", f"f{i}_20261125T1000Z.csv.gz", f"{i:064x}")
                 for i in range(files))
    return FluxInputs(record.site, record.station, record.engine_version, record.settings_hash, record.end,
                      flux_record_digest(record), kept), record


def test_flux_inputs_round_trip_with_the_record_they_name(store: Store) -> None:
    first, record = inputs_of(30)
    second, other = inputs_of(60, files=1)
    store.write_fluxes([record, other])  # type: ignore[list-item]
    store.write_flux_inputs([first, second])

    assert store.flux_inputs("st1", T0, T0 + HOUR) == [first, second]
    assert store.flux_inputs("st1", T0 + timedelta(minutes=30), T0 + HOUR) == [second]  # ends in (start, end]
    assert store.flux_inputs("st1", T0, T0 + HOUR, site="elsewhere") == []
    assert store.flux_inputs("st2", T0, T0 + HOUR) == []
    # the record as the store serves it has the digest its inputs name: the binding survives the round trip
    served = store.query_fluxes("st1", T0, T0 + HOUR)
    assert [flux_record_digest(r) for r in served] == [first.record_sha256, second.record_sha256]


def test_a_rewrite_replaces_the_inputs_and_other_result_sets_keep_theirs(store: Store) -> None:
    first, _ = inputs_of(30, files=3)
    again, _ = inputs_of(30, files=1)
    other_set, _ = inputs_of(30, settings_hash="fedcba9876543210")
    store.write_flux_inputs([first, other_set])
    store.write_flux_inputs([again])

    assert store.flux_inputs("st1", T0, T0 + HOUR) == [again, other_set]


@pytest.mark.parametrize("hostile", ["st1' OR '1'='1", 'st1" OR 1=1', "st1\\", "/.*/", "$station"])
def test_hostile_station_strings_find_no_inputs(store: Store, hostile: str) -> None:
    store.write_flux_inputs([inputs_of(30)[0]])
    assert store.flux_inputs(hostile, T0, T0 + HOUR) == []


def test_input_digests_follow_the_content_only() -> None:
    records = [flux_record(end=T0 + timedelta(minutes=30 * i), values=dict(AWKWARD)) for i in (1, 2)]
    assert records_digest(records) == records_digest(list(reversed(records)))  # the order they come in
    assert flux_record_digest(records[0]) == flux_record_digest(records[0].model_copy(update={"seq": 17}))
    unsigned_zero = records[0].model_copy(update={"values": {**AWKWARD, "ZL": 0.0}})
    assert flux_record_digest(unsigned_zero) == flux_record_digest(records[0])  # InfluxDB keeps no -0.0
    changed = records[0].model_copy(update={"values": {**AWKWARD, "FC": -12.345678901234566}})
    assert records_digest([changed, records[1]]) != records_digest(records)
    means = [WindowMean(T0, 412.5, 180), WindowMean(T0 + HOUR, 413.0, 179)]
    assert means_digest(means) == means_digest(means[::-1])
    assert means_digest([means[0], WindowMean(T0 + HOUR, 413.0, 178)]) != means_digest(means)
    points = [SeriesPoint(T0, 1.5, 0), SeriesPoint(T0 + HOUR, None, 3)]
    assert points_digest(points) != points_digest([points[0], SeriesPoint(T0 + HOUR, 0.0, 0)])
    assert points_digest([SeriesPoint(T0, -0.0, 0)]) == points_digest([SeriesPoint(T0, 0.0, 0)])


class ServedItems:
    """A store that answers with given items (the recorder's digests are over what it was given)."""

    def __init__(self, points: list[SeriesPoint], means: list[WindowMean]) -> None:
        self.points, self.means = points, means

    def query_series(self, *_args: object, **_kwargs: object) -> list[SeriesPoint]:
        return self.points

    def window_means(self, *_args: object, **_kwargs: object) -> list[WindowMean]:
        return self.means


def test_the_recorders_digests_are_those_of_points_digest_and_means_digest() -> None:
    # InputRecorder makes its lines a column at a time; they must stay those the digest functions define
    values = [1.5, None, -0.0, 0.0, float("nan"), float("inf"), 1e-5, 1e16, 0.1 + 0.2, -123456.789, 5e-324]
    points = [SeriesPoint(T0 + timedelta(microseconds=1) + i * timedelta(seconds=10.5), v, q)
              for i, (v, q) in enumerate(zip(values, [0, 3, 1, 2, None, 0, 0, 1, 0, 2, 0], strict=True))]
    means = [WindowMean(T0 + i * HOUR, v if v is not None else float("nan"), i) for i, v in enumerate(values)]
    recorder = InputRecorder(ServedItems(points, means))

    for half in (points[:4], points[4:]):
        recorder._store.points = half
        recorder.query_series("st1", "CO2", T0, T0 + HOUR, site="s", sensor="g")
    recorder.window_means("st1", "CO2", T0, T0 + HOUR, timedelta(minutes=30), site="s", sensor="g")

    inputs = recorder.inputs
    assert inputs["s/g/CO2 readings"]["sha256"] == points_digest(points)
    assert inputs["s/g/CO2 readings"]["items"] == len(points)
    assert inputs["s/g/CO2 means 1800s"]["sha256"] == means_digest(means)
