"""The simulated soil and stems stores the soil/stems job, API and report tests start from, made once per pytest run
(tests/once.py, soilstems_helpers.make_soilstems_stores)."""

from __future__ import annotations

import pytest

from tests.once import made_once

from .soilstems_helpers import SoilStemsStores, make_soilstems_stores, read_soilstems_stores


@pytest.fixture(scope="session")
def soilstems_stores(tmp_path_factory: pytest.TempPathFactory) -> SoilStemsStores:
    return read_soilstems_stores(made_once(tmp_path_factory, "soilstems-stores", make_soilstems_stores))
