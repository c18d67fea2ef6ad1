"""Between the engine's `FluxResult` and the wire's `FluxRecord` (`gateway.contract`): the contract sits below the
science and cannot build a `FluxResult`, so the way back lives here. The way there is
`FluxRecord.from_result(result, site=..., station=...)`."""

from __future__ import annotations

import math

from gateway.contract import FluxRecord
from gateway.flux.ec.result import FluxResult


def flux_result_of(record: FluxRecord) -> FluxResult:
    """The engine's `FluxResult` of a stored or received record (null becomes NaN), e.g. for
    `gateway.flux.files.write_ameriflux_csv`."""
    return FluxResult(start=record.start, end=record.end,
                      values={k: math.nan if v is None else float(v) for k, v in record.values.items()},
                      status=record.status, reasons=list(record.reasons), engine_version=record.engine_version,
                      settings_hash=record.settings_hash, source=f"{record.site}/{record.station}")
