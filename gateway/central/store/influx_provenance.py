"""InfluxStore's provenance of derived results (`gateway.central.store.provenance`).

    measurement  flux_inputs
    tags         site, station, engine_version, settings_hash (those of the flux record)
    fields       record_sha256, files (JSON list of [sensor, name, sha256]); both always written, so a rewrite
                 replaces the point whole
    time         the record's period end

Cardinality: one series per result set, as the `fluxes` measurement.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from influxdb_client import Point, WritePrecision

from gateway.central.store.base import from_ns, to_ns
from gateway.central.store.provenance import FLUX_INPUTS_MEASUREMENT, FluxInputs, files_from_json


def flux_inputs_to_line(inputs: FluxInputs) -> str:
    point = (Point(FLUX_INPUTS_MEASUREMENT).tag("site", inputs.site).tag("station", inputs.station)
             .tag("engine_version", inputs.engine_version).tag("settings_hash", inputs.settings_hash)
             .field("record_sha256", inputs.record_sha256).field("files", inputs.files_json())
             .time(to_ns(inputs.end), WritePrecision.NS))
    return str(point.to_line_protocol())


class InfluxProvenanceMixin:
    """Mixed into InfluxStore, which provides `_query`, `_write_body` and the retention policy."""

    if TYPE_CHECKING:
        retention_policy: str | None

        def _query(self, query: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]: ...

        def _write_body(self, body: str) -> None: ...

    def write_flux_inputs(self, inputs: list[FluxInputs]) -> None:
        if inputs:
            self._write_body("\n".join(flux_inputs_to_line(i) for i in inputs))

    def flux_inputs(self, station: str, start: datetime, end: datetime, *,
                    site: str | None = None) -> list[FluxInputs]:
        from gateway.central.store.influx import quote_identifier  # the module that mixes this class in

        source = (FLUX_INPUTS_MEASUREMENT if self.retention_policy is None
                  else f"{quote_identifier(self.retention_policy)}.{FLUX_INPUTS_MEASUREMENT}")
        where = f"station = $station AND time > {to_ns(start)} AND time <= {to_ns(end)}"
        params = {"station": station}
        if site is not None:
            where += " AND site = $site"
            params["site"] = site
        found = []
        for series in self._query(f"SELECT record_sha256, files FROM {source} WHERE {where} "
                                  "GROUP BY site, engine_version, settings_hash", params):
            tags = series.get("tags") or {}
            columns = series["columns"]
            for values in series.get("values") or []:
                row = dict(zip(columns, values, strict=True))
                if row.get("record_sha256") is None or row.get("files") is None:
                    continue  # a point met while it is being written (InfluxDB shows fields as they arrive)
                found.append(FluxInputs(site=str(tags.get("site")), station=station,
                                        engine_version=str(tags.get("engine_version")),
                                        settings_hash=str(tags.get("settings_hash")), end=from_ns(int(row["time"])),
                                        record_sha256=str(row["record_sha256"]),
                                        files=files_from_json(str(row["files"]))))
        return sorted(found, key=lambda i: (i.end, i.settings_hash, i.engine_version, i.site))
