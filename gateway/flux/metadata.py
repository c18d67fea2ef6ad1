"""Site metadata of a flux computation: the site facts a user gives (YAML or an EddyPro .metadata file), completed
from the raw archive headers of the sonic and the analyzer (their frequency, the sonic's height, north offset and
firmware, the analyzer's type and the gases' units). Used on the station (`gateway.edge.fluxrunner`, headers from
the sensor configs) and centrally (`gateway.central.recompute`, headers from the uplinked files).

Site facts the station does not record (altitude, latitude, canopy height, …) come from the given mapping, with the
keys of `SiteMetadata` (docs/flux-ec.md); any key it has wins over the headers, also inside `sonic` (e.g. only the
WindMaster's firmware `sw_version` given, the rest from the header). Without a `file` key the gases get
a time-lag window of −1..2 s around a nominal 0 s (arrival stamps already contain the analyzer's output delay).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.configfile import ConfigError
from gateway.flux.ec.settings import SiteMetadata
from gateway.flux.files import _read_text, _yaml_mapping, parse_eddypro_metadata
from gateway.flux.rawperiods import measure_types_of, path_type

DEFAULT_LAG_WINDOW_S = (-1.0, 2.0)


class MetadataError(ValueError):
    """The site metadata is incomplete or unusable; the message names what to add (as a `--metadata` key)."""


def site_metadata_from_headers(site_metadata: Mapping[str, Any], sonic_header: Mapping[str, Any],
                               analyzer_header: Mapping[str, Any] | None) -> SiteMetadata:
    """`SiteMetadata` from the given site facts, completed from the archive headers (module doc)."""
    merged: dict[str, Any] = dict(site_metadata)
    sonic_instrument = sonic_header.get("instrument") or {}
    merged.setdefault("site_id", str(sonic_header.get("site") or "site"))
    if "acquisition_frequency" not in merged and sonic_header.get("frequency_hz"):
        merged["acquisition_frequency"] = float(sonic_header["frequency_hz"])
    header_sonic: dict[str, Any] = {"model": str(sonic_instrument.get("model", "")),
                                    "north_offset": float(sonic_instrument.get("north_offset_deg") or 0.0)}
    if sonic_instrument.get("height_m") is not None:
        header_sonic["height"] = float(sonic_instrument["height_m"])
    if sonic_instrument.get("firmware"):  # the WindMaster driver's `firmware` (w-boost fix, gill_wm_wboost)
        header_sonic["sw_version"] = str(sonic_instrument["firmware"])
    if isinstance(merged.get("sonic"), Mapping):  # the given keys (e.g. sw_version alone) win, the headers fill in
        merged["sonic"] = {**header_sonic, **merged["sonic"]}
    elif "sonic" not in merged and "height" in header_sonic:
        merged["sonic"] = header_sonic
    if "analyzer" not in merged and analyzer_header is not None:
        instrument = analyzer_header.get("instrument") or {}
        merged["analyzer"] = {"model": str(instrument.get("model", "")), "path_type": path_type(instrument)}
    if "file" not in merged:
        lo, hi = DEFAULT_LAG_WINDOW_S
        columns: list[dict[str, Any]] = [{"index": i + 1, "variable": v} for i, v in enumerate(("u", "v", "w", "ts"))]
        types = measure_types_of(analyzer_header) if analyzer_header is not None else {}
        for gas in ("co2", "h2o"):
            if gas in types:
                columns.append({"index": len(columns) + 1, "variable": gas, "measure_type": types[gas],
                                "nom_timelag": 0.0, "min_timelag": lo, "max_timelag": hi})
        merged["file"] = {"columns": columns, "header_rows": 0}
    missing = [k for k in ("altitude", "latitude") if k not in merged]
    if missing:
        raise MetadataError(f"the raw archive headers do not say the site's {' and '.join(missing)}; give them "
                             "in --metadata (YAML with the keys of docs/flux-ec.md, e.g. altitude: 193, "
                             "latitude: 52.08)")
    if "sonic" not in merged:
        raise MetadataError("the sonic's archive header has no height_m; give sonic: {height: <m>} in --metadata")
    try:
        return SiteMetadata.model_validate(merged)
    except ValidationError as exc:
        raise MetadataError(f"metadata (from --metadata and the archive headers) not usable: {exc}") from None


def load_site_metadata(path: Path | None) -> dict[str, Any]:
    """The --metadata file as a mapping: YAML with `SiteMetadata` keys (any subset), or an EddyPro .metadata."""
    if path is None:
        return {}
    text = _read_text(path)
    if "[FileDescription]" in text:
        try:
            return parse_eddypro_metadata(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: cannot parse metadata: {exc}") from None
    return _yaml_mapping(path, text, "metadata")
