"""The engine's input: one averaging period of raw high-frequency data as arrays, plus its metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from gateway.flux.ec.settings import SiteMetadata


@dataclass
class RawPeriod:
    """One averaging period of raw data in canonical units, independent of any file format.

    ``data`` maps canonical variable names (see :data:`gateway.flux.ec.settings.CANONICAL_VARIABLES`) to float64
    arrays of equal length, NaN where a record is missing: ``u, v, w`` in m s-1 (sonic frame), ``ts`` in K, ``co2``
    in µmol mol-1 (fractions) or mmol m-3 (densities), ``h2o`` in mmol mol-1 or mmol m-3, ``air_p``/``int_p`` in Pa,
    temperatures in K, diagnostics as read. ``measure_types`` gives each gas's ``mixing_ratio``/``mole_fraction``/
    ``molar_density``. ``start``/``end`` bound the period (the result is labelled with ``end``). ``issues`` carries
    problems found while reading (gaps, bad time stamps, unparsable values) so the result can name them.
    """

    data: dict[str, NDArray[np.float64]]
    metadata: SiteMetadata
    start: datetime
    end: datetime
    measure_types: dict[str, str] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    source: str = ""
    expected_records: int | None = None

    @property
    def n_records(self) -> int:
        return len(self.data["w"]) if "w" in self.data else 0
