"""Fluxes computed on the station reach the researcher: a WindMaster and an LI-7500 simulator (TCP, one turbulence
field, same seed, known covariances and lag) -> station daemon (stream runners, raw archive, flux runner with a
30-s averaging period) -> real Mosquitto -> central service -> InfluxDB -> GET /api/v1/fluxes.

Truth: the field's prescribed streamline-frame covariances (`TurbulenceSpec.truth`) and lag (`lag_s`).
Tolerance: the estimate of cov(a, b) from N samples of AR(1) series with a = exp(-1/(f·T)) has the standard error
SE = sqrt((σa²σb² + cov²)·(1 + a²)/(1 − a²)/N) (Bartlett 1946; for T ≫ 1/f this is N_eff = N/(2·T·f)). With
T = 0.05 s, f = 20 Hz, N = 600 and correlations of 0.8–0.85 SE is 6–8 % of the covariance; the check allows 4 SE.
The lag is found on a 1/f grid and must equal the prescribed 0.25 s exactly.

The simulators stream in real time, so this test takes one averaging period plus the wait for the first period
boundary and the archive's flush (about 45–75 s).
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.li7500.simulator import LI7500Simulator
from drivers.windmaster.simulator import WindMasterSimulator
from gateway.contract.asyncapi import validate_payload
from gateway.edge.config import parse_station_config
from gateway.edge.daemon import StationDaemon
from gateway.model import format_time
from gateway.simulation.stream_simulator import StreamSimulator
from gateway.simulation.turbulence import TurbulenceSpec
from gateway.testing.central import provisioned_key, running_central
from gateway.testing.services import InfluxInstance, MosquittoInstance

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FS = 20.0
AVERAGING_S = 30
SITE = {"altitude": 100.0, "latitude": 51.0, "canopy_height": 20.0}

# Loadings of (u, v, w, ts, co2, h2o) on six independent unit factors: Σ = L·Lᵀ is positive definite, and w is
# strongly correlated with Ts (0.85), CO2 (−0.85, uptake) and H2O (0.8), so a short period still pins them down.
_LOADINGS = np.array([
    # f_w     f_u   f_v   e_t     e_c     e_q
    [-0.35, 0.80, 0.00, 0.000, 0.0000, 0.0],  # u
    [0.00, 0.00, 0.77, 0.000, 0.0000, 0.0],  # v
    [0.40, 0.00, 0.00, 0.000, 0.0000, 0.0],  # w
    [0.329, 0.00, 0.00, 0.204, 0.0000, 0.0],  # ts, K
    [-0.085, 0.00, 0.00, 0.000, 0.0527, 0.0],  # co2, mmol m-3
    [1.60, 0.00, 0.00, 0.000, 0.0000, 1.2],  # h2o, mmol m-3
])
SPEC = TurbulenceSpec(frequency_hz=FS, time_scale_s=0.05, lag_s=0.25,
                      covariance=tuple(tuple(float(x) for x in row) for row in _LOADINGS @ _LOADINGS.T))


def standard_error(a: str, b: str, n: int) -> float:
    rho = math.exp(-1.0 / (FS * SPEC.time_scale_s))
    return math.sqrt((SPEC.truth(a, a) * SPEC.truth(b, b) + SPEC.truth(a, b) ** 2) * (1 + rho**2) / (1 - rho**2) / n)


def wall_aligned(cls: type[StreamSimulator]) -> type[StreamSimulator]:
    """The simulator, but it starts its paced output on a 1/f boundary of the wall clock, so sample i leaves at
    i/f for both simulators and their records meet on the station's grid with exactly the field's lag (two
    simulators started a few hundred ms apart would otherwise add that to the lag)."""

    class Aligned(cls):  # type: ignore[valid-type, misc]
        def _run(self) -> None:
            now = time.time()
            boundary = (math.floor(now * self.frequency_hz) + 1) / self.frequency_hz
            time.sleep(boundary - now)
            self._start_time = boundary + 1e-6
            super()._run()

    return Aligned


def station_yaml(tmp_path: Path, mosquitto: MosquittoInstance, sonic: str, irga: str) -> dict[str, Any]:
    return {
        "site": "hainich", "station": "plot-07",
        "signing_key": str(provisioned_key(tmp_path / "central", "hainich", "plot-07", tmp_path / "station.key")),
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        "buffer": {"path": str(tmp_path / "station" / "buffer.sqlite"), "publish_interval_s": 0.5},
        "streams": {"summary_interval_s": 10},
        "flux": {"sonic": "sonic", "analyzer": "irga", "averaging_min": AVERAGING_S / 60, "metadata": SITE},
        "sensors": [
            {"name": "sonic", "driver": "windmaster", "port": sonic, "frequency_hz": FS, "height_m": 30.0},
            {"name": "irga", "driver": "li7500", "port": irga, "frequency_hz": FS},
        ],
    }


def test_station_fluxes_match_the_simulated_truth(tmp_path: Path, mosquitto: MosquittoInstance,
                                                  influxd: InfluxInstance) -> None:
    sonic_sim = wall_aligned(WindMasterSimulator)("tcp://127.0.0.1:0", frequency_hz=FS, seed=7, spec=SPEC)
    irga_sim = wall_aligned(LI7500Simulator)("tcp://127.0.0.1:0", frequency_hz=FS, seed=7, spec=SPEC)
    with sonic_sim, irga_sim, running_central(mosquitto, influxd, tmp_path / "central") as api:
        config = parse_station_config(station_yaml(tmp_path, mosquitto, sonic_sim.tcp_endpoint,
                                                   irga_sim.tcp_endpoint), tmp_path / "station.yaml")
        daemon = StationDaemon(config)
        stop = threading.Event()
        thread = threading.Thread(target=daemon.run, args=(stop,), kwargs={"drain_timeout_s": 2})
        begin = datetime.now(UTC)
        thread.start()
        params = {"station": "plot-07", "start": format_time(begin - timedelta(minutes=1)),
                  "end": format_time(begin + timedelta(minutes=10))}
        records: list[dict[str, Any]] = []

        def fluxes_arrived() -> bool:
            response = api.get("/api/v1/fluxes", params=params)
            records[:] = response.json()["records"] if response.status_code == 200 else []
            return bool(records)

        try:
            deadline = time.monotonic() + 2 * AVERAGING_S + 60  # boundary wait + period + flush + delivery
            while not (arrived := fluxes_arrived()) and time.monotonic() < deadline:
                time.sleep(1.0)  # gently: the stream runners share this process
            health = daemon.health()
        finally:
            stop.set()
            thread.join(timeout=30)
    assert arrived, f"no flux record reached the central API; station flux health: {daemon.health()['flux']}"
    assert isinstance(health["flux"], dict) and health["flux"]["periods"]
    # the outbox row left on the central service's receipt (by the daemon's clean stop at the latest)
    assert daemon.delivery.counters("fluxes").confirmed >= 1
    for record in records:
        validate_payload("FluxRecord", record)  # docs/asyncapi.yaml
        assert record["status"] == "ok", record["reasons"]
        v = record["values"]
        n = v["N_RECORDS"]
        assert n == AVERAGING_S * FS
        for name, (a, b) in {"W_T_SONIC_COV": ("w", "ts"), "W_CO2_COV": ("w", "co2"),
                             "W_H2O_COV": ("w", "h2o"), "U_W_COV": ("u", "w")}.items():
            tolerance = 4 * standard_error(a, b, n)
            assert abs(v[name] - SPEC.truth(a, b)) < tolerance, (name, v[name], SPEC.truth(a, b), tolerance)
        assert (v["CO2_TLAG"], v["H2O_TLAG"]) == (SPEC.lag_s, SPEC.lag_s)
        assert v["FC"] < 0 < v["H"]  # the prescribed uptake and heating, after WPL and the humidity correction
