"""Builders for readings and batches shared by the central tests."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from gateway.central.ingest import Ingestor
from gateway.central.store import Store, StoredReading
from gateway.central.store.reads import FluxRow
from gateway.central.streaming import ameriflux_stamp
from gateway.contract import FluxRecord, ReadingBatch
from gateway.flux.files import ameriflux_cells, ameriflux_header
from gateway.model import QualityFlag, Reading, TimeSource

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


def reading(
    station: str = "st1",
    *,
    time: datetime = T0,
    value: float | None = 412.5,
    variable: str = "CO2",
    sensor: str = "gmp252",
    unit: str = "umol mol-1",
    qc: QualityFlag | None = None,
    qc_reason: str | None = None,
) -> Reading:
    if qc is None:
        qc = QualityFlag.MISSING if value is None else QualityFlag.GOOD
    return Reading(
        station=station, sensor=sensor, variable=variable, value=value, unit=unit, time=time,
        time_source=TimeSource.GATEWAY, clock_synced=True, qc=qc, qc_reason=qc_reason,
    )


def stored(site: str, readings: list[Reading]) -> list[StoredReading]:
    return [StoredReading(site=site, reading=r) for r in readings]


def series(
    station: str, values: list[float | None], *, start: datetime = T0, step: timedelta = timedelta(seconds=10),
    variable: str = "CO2",
) -> list[Reading]:
    return [reading(station, time=start + i * step, value=v, variable=variable) for i, v in enumerate(values)]


def batch(site: str, station: str, seq: int, readings: list[Reading]) -> ReadingBatch:
    return ReadingBatch(site=site, station=station, seq=seq, sent=datetime.now(UTC), readings=readings)


def flux_record(
    station: str = "st1",
    *,
    end: datetime = T0 + timedelta(minutes=30),
    settings_hash: str = "0123456789abcdef",
    engine_version: str = "sinkwatch-ec 0.1.0",
    values: dict[str, int | float | None] | None = None,
    status: Literal["ok", "partial", "failed"] = "ok",
    reasons: list[str] | None = None,
    site: str = "site1",
    minutes: int = 30,
) -> FluxRecord:
    if values is None:
        values = {"FC": -12.345678901234567, "H": 301.448, "LE": None, "TAU": 0.4, "USTAR": 0.755822,
                  "FC_SSITC_TEST": 1, "H_SSITC_TEST": 0, "LE_SSITC_TEST": 2, "N_RECORDS": 36000}
    return FluxRecord(site=site, station=station, start=end - timedelta(minutes=minutes), end=end, status=status,
                      reasons=reasons or [], engine_version=engine_version, settings_hash=settings_hash,
                      values=values)


def dead_letters(ingestor: Ingestor) -> list[dict[str, Any]]:
    if not ingestor.dead_letter_path.exists():
        return []
    return [json.loads(line) for line in ingestor.dead_letter_path.read_text(encoding="utf-8").splitlines()]


def assert_the_changed_second_reading_was_set_aside(ingestor: Ingestor, store: Store) -> None:
    """After `series("st1", [1.0, 2.0])` and then the same two with the second's value changed to None: the stored
    pair unchanged, one duplicate, one conflict set aside beside what the store holds."""
    assert [(p.value, p.qc) for p in store.query_series("st1", "CO2", T0, T0 + timedelta(hours=1))] == [
        (1.0, 0), (2.0, 0)]
    counters = ingestor.counters()
    assert (counters["readings_stored"], counters["duplicate_readings"], counters["readings_set_aside"]) == (
        2, 1, {"conflict": 1})
    [record] = dead_letters(ingestor)
    [entry] = record["set_aside"]
    assert (entry["index"], entry["reading"]["value"], entry["stored"]["value"]) == (1, None, 2.0)


def ameriflux_by_cells(cols: list[str], rows: list[FluxRow], base_only: bool = False) -> bytes:
    """AmeriFlux BASE text of `rows` as the file writer's cell-by-cell path writes it (csv module, `format` per
    value): what the streamed encoder must equal."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ameriflux_header(cols, base_only))
    for r in rows:
        row = [ameriflux_stamp(r.start_ns), ameriflux_stamp(r.end_ns), *ameriflux_cells(cols, r.values)]
        if not base_only:
            row += [r.engine_version, r.settings_hash, r.status, "; ".join(r.reasons)]
        writer.writerow(row)
    return out.getvalue().encode()
