"""What the VictoriaMetrics store does beyond the shared contract (which it passes: test_store_*_contract.py): the
limits of VictoriaMetrics' model it refuses by name, the values it keeps exactly although the database does not,
its configuration."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from gateway.central.config import StorageSettings
from gateway.central.service import open_store
from gateway.central.store import WriteOutcome
from gateway.central.store.victoria import VictoriaStore, _line, _quote
from gateway.testing.services import VictoriaInstance

from .helpers import T0, reading, series, stored


def test_configuration_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"storage\.url .* or storage\.insert_url and storage\.select_url"):
        StorageSettings(kind="victoriametrics", path=tmp_path / "side.sqlite")
    with pytest.raises(ValidationError, match=r"storage\.path is required when storage\.kind is victoriametrics"):
        StorageSettings(kind="victoriametrics", url="http://127.0.0.1:8428")
    cluster = StorageSettings(kind="victoriametrics", path=tmp_path / "side.sqlite",
                              insert_url="http://vminsert:8480/insert/0/influx",
                              select_url="http://vmselect:8481/select/0/prometheus",
                              flush_urls=["http://vmstorage-1:8482"])
    store = open_store(cluster)
    try:
        assert isinstance(store, VictoriaStore)
        assert (store.insert_url, store.select_url, store.flush_urls) == (
            "http://vminsert:8480/insert/0/influx", "http://vmselect:8481/select/0/prometheus",
            ["http://vmstorage-1:8482"])
    finally:
        store.close()


def test_label_values_cannot_leave_their_string() -> None:
    assert _quote('a"b\\c\nd') == '"a\\"b\\\\c\\x0ad"'


@pytest.mark.integration
def test_a_second_reading_of_a_series_in_one_millisecond_is_refused_by_name(victoria: VictoriaInstance,
                                                                           tmp_path: Path) -> None:
    store = open_store(StorageSettings(kind="victoriametrics", url=victoria.url, path=tmp_path / "side.sqlite"))
    try:
        first = reading(time=T0 + timedelta(microseconds=100), value=1.0)
        same_ms = reading(time=T0 + timedelta(microseconds=900), value=2.0)
        other_sensor = reading(time=T0 + timedelta(microseconds=900), value=3.0, sensor="other")

        outcome = store.write(stored("site1", [first, same_ms, other_sensor]))

        assert outcome.written == 2
        [refused] = outcome.rejected
        assert refused.reading.reading == same_ms
        assert "one reading per series and millisecond" in refused.reason and "gmp252/CO2" in refused.reason
        assert [(p.time, p.value) for p in store.query_series("st1", "CO2", T0, T0 + timedelta(seconds=1),
                                                              sensor="gmp252")] == [(first.time, 1.0)]
        # sent again, the stored one is a duplicate and the refused one is refused again, never stored
        again = store.write(stored("site1", [first, same_ms]))
        assert (again.duplicates, len(again.rejected)) == (1, 1)
    finally:
        store.close()


@pytest.mark.integration
def test_values_read_back_exactly_although_the_database_rounds_them(victoria: VictoriaInstance,
                                                                   tmp_path: Path) -> None:
    values: list[float | None] = [1 / 3, 412.123456789012, 1e-300, 1.7976931348623157e308, 5e-324, -0.0]
    store = VictoriaStore(victoria.url, side_path=tmp_path / "side.sqlite")
    try:
        store.write(stored("site1", series("st1", values)))

        # what VictoriaMetrics itself answers for the plain values: rounded
        export = httpx.get(f"{victoria.url}/api/v1/export", params={"match[]": '{__name__="readings_value"}'})
        rounded = [float(v) for line in export.text.splitlines() for v in httpx.Response(200, text=line).json()[
            "values"]]
        assert rounded != values
        # what the store reads back: the very floats written
        points = store.query_series("st1", "CO2", T0, T0 + timedelta(hours=1))
        assert [p.value for p in points] == values
        assert str(points[-1].value) == "-0.0"
    finally:
        store.close()


@pytest.mark.integration
def test_two_writers_sharing_the_guard_never_both_store_one_identity(victoria: VictoriaInstance,
                                                                     tmp_path: Path) -> None:
    # two ingest workers (stores of their own, one guard file) handed conflicting readings of the same instants at
    # the same moment: each identity is stored once, the other writer reports a conflict
    guard = tmp_path / "write-guard"
    writers = [VictoriaStore(victoria.url, side_path=tmp_path / "side.sqlite", write_guard=guard) for _ in range(2)]
    rounds, per_round = 8, 50
    outcomes: list[list[WriteOutcome]] = [[], []]
    start = threading.Barrier(2)

    def work(index: int) -> None:
        for r in range(rounds):
            batch = series("st1", [float(index)] * per_round, start=T0 + r * timedelta(minutes=10))
            start.wait()
            outcomes[index].append(writers[index].write(stored("site1", batch)))

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert sum(o.written for side in outcomes for o in side) == rounds * per_round
        assert sum(len(o.conflicts) for side in outcomes for o in side) == rounds * per_round
        # VictoriaMetrics holds one sample per reading: counts and raw points agree with what was reported written
        end = T0 + rounds * timedelta(minutes=10)
        assert len(writers[0].query_series("st1", "CO2", T0, end)) == rounds * per_round
        [count] = writers[0].query_series("st1", "CO2", T0, end, timedelta(days=1), "count")
        assert count.value == rounds * per_round
    finally:
        for writer in writers:
            writer.close()



@pytest.mark.integration
def test_a_series_new_since_a_look_up_is_found_although_its_index_was_flushed_in_the_background(
        victoria: VictoriaInstance, tmp_path: Path) -> None:
    # VictoriaMetrics 1.79 caches which series a label filter matched over a day and forgets that answer when its
    # index flushes: at once on /internal/force_flush, but only on a 10-s tick when its own 1-s flusher indexed the new
    # series first (a slow write: a loaded machine). The identity look-up must not take a resend for new meanwhile.
    store = VictoriaStore(victoria.url, side_path=tmp_path / "side.sqlite")
    try:
        first = stored("site1", series("st1", [1.0, 2.0, 3.0], start=T0 - timedelta(days=5)))
        assert store.held_readings(first) == {}  # the day's empty answer for this station's filter, now cached
        # a write the background flusher indexes before the force_flush comes (as the store's write under load)
        body = "\n".join(_line(item) for item in first)
        httpx.post(f"{victoria.url}/write", content=body.encode()).raise_for_status()
        time.sleep(2.5)
        httpx.get(f"{victoria.url}/internal/force_flush").raise_for_status()

        outcome = store.write(first)

        assert (outcome.written, outcome.duplicates) == (0, 3)
    finally:
        store.close()
