"""The station's flux runner: the `flux:` config section, closing periods over the raw archive (closed files and
the open `.part` a stream runner is writing), waiting for late records, failed periods sent with their reasons,
restart and catch-up, and the outbox that keeps a record with its seq until its receipt. The archive files are
written with `ArchiveWriter` from the synthetic turbulence field (our own format boundary); the clock is the test's.

Covariance tolerance: 4 standard errors of a covariance of N samples of AR(1) series with a = exp(-1/(f·T))
(Bartlett: SE² = (σa²σb² + cov²)(1 + a²)/(1 − a²)/N), as in tests/flux/test_recompute.py.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.configfile import ConfigError
from gateway.contract import FluxRecord
from gateway.edge import fluxrunner
from gateway.edge.config import StationConfig, parse_station_config
from gateway.edge.fluxrunner import ARCHIVE_FLUSH_RECORDS, FluxOutbox, FluxRunner, archive_files
from gateway.rawarchive import ArchiveWriter, file_period_start
from gateway.simulation.turbulence import TurbulenceField, TurbulenceSpec

SPEC = TurbulenceSpec(time_scale_s=0.1, lag_s=0.25)
FS = SPEC.frequency_hz
T0 = 1_764_064_800.0  # 2025-11-25T10:00:00Z, a half-hour boundary
SITE = {"altitude": 100.0, "latitude": 51.0, "canopy_height": 20.0}


def station_config(tmp_path: Path, flux: dict[str, Any] | None = None, **sensor_overrides: Any) -> StationConfig:
    sonic = {"name": "sonic", "driver": "windmaster", "port": "tcp://127.0.0.1:1", "frequency_hz": 20,
             "height_m": 30.0, **sensor_overrides.get("sonic", {})}
    irga = {"name": "irga", "driver": "li7500", "port": "tcp://127.0.0.1:2", "frequency_hz": 20,
            **sensor_overrides.get("irga", {})}
    data = {"site": "site1", "station": "st1", "buffer": {"path": str(tmp_path / "buffer.sqlite")},
            "sensors": [sonic, irga],
            "flux": {"sonic": "sonic", "analyzer": "irga", "averaging_min": 1, "metadata": SITE} if flux is None
            else flux}
    return parse_station_config(data, tmp_path / "station.yaml")


@dataclass
class Archive:
    """Writes the sonic's and the analyzer's archive of [t_start, t_end) like the stream runner (arrival stamps
    = sample time + a small delay, a new file at each half hour); `open_files` leaves the last file of each
    sensor as `.part` (the runner still writing it)."""

    directory: Path
    created: float

    def write(self, t_start: float, t_end: float, *, sensors: tuple[str, ...] = ("sonic", "irga"),
              open_files: bool = True, gas_until: float | None = None) -> None:
        field = TurbulenceField(SPEC, seed=5)
        first = field.index_at(t_start)
        n = round((t_end - t_start) * FS)
        times = t_start + np.arange(n) / FS
        meta = {"site": "site1", "station": "st1", "frequency_hz": FS,
                "created": datetime.fromtimestamp(self.created, UTC).isoformat().replace("+00:00", "Z")}
        if "sonic" in sensors:
            rows = [[float(u), float(v), float(w), 343.0, float(ts) - 273.15, 0.0]
                    for u, v, w, ts in field.sonic(first, n)]
            self._files("sonic", [("U", "m s-1"), ("V", "m s-1"), ("W", "m s-1"), ("SOS", "m s-1"),
                                  ("T_SONIC", "degC"), ("DIAG_SONIC", "1")],
                        {**meta, "instrument": {"driver": "windmaster", "model": "WindMaster"}},
                        times + 0.004, rows, open_files)
        if "irga" in sensors:
            rows = [[248.0, float(co2), float(h2o), 99.5] for co2, h2o in field.gas(first, n)]
            gas_times = times + 0.011
            keep = len(gas_times) if gas_until is None else int(np.searchsorted(gas_times, gas_until))
            self._files("irga", [("DIAG", "1"), ("CO2", "mmol m-3"), ("H2O", "mmol m-3"), ("PRESS", "kPa")],
                        {**meta, "instrument": {"driver": "li7500", "model": "LI7500"}},
                        gas_times[:keep], rows[:keep], open_files)

    def _files(self, sensor: str, columns: list[tuple[str, str]], meta: dict[str, Any], times: np.ndarray,
               rows: list[list[float]], open_files: bool) -> None:
        writer: ArchiveWriter | None = None
        last_file = file_period_start(float(times[-1])) if len(times) else None
        for t, row in zip(times, rows, strict=True):
            if writer is None or t >= writer.period_end:
                if writer is not None:
                    writer.close({"closed": "rotation"})
                start = file_period_start(float(t))
                # the file left open is flushed at every record, so all of it is readable, as a runner's file is
                # once its next flush came; a file that gets closed is chunked as a station writes it (a chunk per
                # record made a half hour's 36,000 records 36,000 chunks: 10 CPU-s to write and read)
                flush_every = 1 if open_files and start == last_file else ARCHIVE_FLUSH_RECORDS
                writer = ArchiveWriter(self.directory, sensor, start, columns, meta, flush_every=flush_every)
            writer.write(float(t), row)
        if writer is not None and not open_files:
            writer.close({"closed": "rotation"})


def standard_error(a: str, b: str, n: int) -> float:
    rho = math.exp(-1.0 / (FS * SPEC.time_scale_s))
    return math.sqrt((SPEC.truth(a, a) * SPEC.truth(b, b) + SPEC.truth(a, b) ** 2) * (1 + rho**2) / (1 - rho**2) / n)


def make_runner(tmp_path: Path, started: float, config: StationConfig | None = None) -> FluxRunner:
    config = config or station_config(tmp_path)
    assert config.flux_setup is not None
    return FluxRunner(config.flux_setup, "site1", "st1", tmp_path / "raw", FluxOutbox(tmp_path / "buffer.sqlite"),
                      started=started)


# --- config -------------------------------------------------------------------------------------------------------


def test_flux_section_resolves_against_the_sensors(tmp_path: Path) -> None:
    setup = station_config(tmp_path).flux_setup
    assert setup is not None
    assert (setup.sonic, setup.analyzer, setup.period_s) == ("sonic", "irga", 60)
    md = setup.metadata
    assert (md.acquisition_frequency, md.sonic.height, md.altitude, md.canopy_height) == (20.0, 30.0, 100.0, 20.0)
    assert md.analyzer is not None and md.analyzer.path_type == "open"  # LI-7500: open path, WPL applies
    co2 = md.file.column("co2")
    assert co2 is not None and co2.measure_type == "molar_density"
    assert setup.settings.avrg_len == 1.0


@pytest.mark.parametrize(("flux", "overrides", "key"), [
    ({"sonic": "anemometer", "metadata": SITE}, {}, "flux.sonic"),
    ({"sonic": "irga", "metadata": SITE}, {}, "flux.sonic"),
    ({"sonic": "sonic", "analyzer": "sonic", "metadata": SITE}, {}, "flux.analyzer"),
    ({"sonic": "sonic", "analyzer": "irga", "metadata": SITE}, {"irga": {"frequency_hz": 10}}, "flux.analyzer"),
    ({"sonic": "sonic", "analyzer": "irga", "metadata": {"altitude": 100}}, {}, "flux.metadata"),
    ({"sonic": "sonic", "analyzer": "irga", "metadata": SITE, "averaging_min": 7}, {}, "flux.averaging_min"),
    ({"sonic": "sonic", "analyzer": "irga", "metadata": SITE, "settings": {"rot_meth": "sideways"}}, {},
     "flux.settings.rot_meth"),
    ({"sonic": "sonic", "analyzer": "irga", "metadata": SITE, "settings": {"avrg_len": 45}}, {}, "flux.settings"),
    ({"sonic": "sonic", "analyzer": "irga", "metadata": SITE, "averaging_min": 5, "settings": {"avrg_len": 10}},
     {}, "flux.averaging_min"),
    ({"sonic": "sonic", "analyzer": "irga", "metadata": SITE, "publish": "maybe"}, {}, "flux.publish"),
])
def test_flux_section_errors_name_the_key(tmp_path: Path, flux: dict[str, Any], overrides: dict[str, Any],
                                          key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        station_config(tmp_path, flux, **overrides)
    assert f"  {key}" in str(caught.value) and "station.yaml" in str(caught.value), str(caught.value)


def test_flux_settings_and_metadata_from_files_beside_station_yaml(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text("altitude: 250\nlatitude: 47.3\n", encoding="utf-8")
    (tmp_path / "r1.yaml").write_text("avrg_len: 5\ntlag_meth: covariance_maximization\n", encoding="utf-8")
    setup = station_config(tmp_path, {"sonic": "sonic", "analyzer": "irga", "metadata": "site.yaml",
                                      "settings": "r1.yaml"}).flux_setup
    assert setup is not None
    assert (setup.period_s, setup.metadata.altitude, setup.settings.tlag_meth.value) == (
        300, 250.0, "covariance_maximization")


# --- closing periods ----------------------------------------------------------------------------------------------


def test_a_period_is_cut_from_the_open_file_once_both_instruments_passed_its_end(tmp_path: Path) -> None:
    started = T0 - 10
    Archive(tmp_path / "raw", created=started).write(T0 - 5, T0 + 75)  # .part files, still being written
    runner = make_runner(tmp_path, started)
    settle = runner.setup.settle_s
    assert runner.step(T0 + 60 + settle - 1) == []  # the archive may not have flushed the period's end yet
    records = runner.step(T0 + 60 + settle)
    assert [(r.start.timestamp(), r.end.timestamp()) for r in records] == [(T0, T0 + 60)]
    record = records[0]
    assert record.status == "ok", record.reasons
    assert not any("not closed" in r for r in record.reasons)  # a live .part is not a power-cut leftover
    v = record.values
    assert v["N_RECORDS"] == 1200
    for name, (a, b) in {"W_T_SONIC_COV": ("w", "ts"), "W_CO2_COV": ("w", "co2"), "W_H2O_COV": ("w", "h2o")}.items():
        value = v[name]
        assert isinstance(value, float)
        assert abs(value - SPEC.truth(a, b)) < 4 * standard_error(a, b, 1200), (name, value)
    assert (v["CO2_TLAG"], v["H2O_TLAG"]) == (SPEC.lag_s, SPEC.lag_s)
    assert runner.outbox.count() == 1 and runner.step(T0 + 70 + settle) == []  # the next one is not due
    assert runner.health()["periods"] == {"ok": 1}


def test_a_half_hour_period_over_closed_files_is_computed_without_waiting(tmp_path: Path) -> None:
    started = T0 - 10
    Archive(tmp_path / "raw", created=started).write(T0, T0 + 1800, open_files=False)
    runner = make_runner(tmp_path, started, station_config(tmp_path, {"sonic": "sonic", "analyzer": "irga",
                                                                      "metadata": SITE}))
    records = runner.step(T0 + 1800 + runner.setup.settle_s)
    assert [(r.end.timestamp(), r.status) for r in records] == [(T0 + 1800, "ok")]
    assert records[0].values["N_RECORDS"] == 36000


def test_a_late_instrument_is_waited_for_then_the_period_is_sent_with_the_reason(tmp_path: Path) -> None:
    started = T0 - 10
    Archive(tmp_path / "raw", created=started).write(T0 - 5, T0 + 75, gas_until=T0 + 45)  # analyzer stopped
    runner = make_runner(tmp_path, started)
    assert runner.step(T0 + 60 + runner.setup.settle_s) == []
    assert runner.health()["waiting_for"] == ["irga"]
    records = runner.step(T0 + 60 + runner.setup.max_wait_s)
    assert len(records) == 1 and records[0].status != "ok"
    assert any("irga ended at 10:00:44" in r for r in records[0].reasons), records[0].reasons
    assert records[0].values["FC"] is None and records[0].values["H"] is not None  # the sonic's fluxes stay


def test_a_silent_sonic_gives_a_failed_record_not_a_gap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    started = T0 - 10
    Archive(tmp_path / "raw", created=started).write(T0 - 5, T0 + 135, sensors=("irga",))
    runner = make_runner(tmp_path, started)
    with caplog.at_level(logging.WARNING, logger="sinkwatch.edge.flux"):
        records = runner.step(T0 + 120 + runner.setup.max_wait_s)
    assert [(r.end.timestamp(), r.status) for r in records] == [(T0 + 60, "failed"), (T0 + 120, "failed")]
    assert any("no raw archive files of sonic" in r for r in records[0].reasons), records[0].reasons
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the same failure twice is one state change, logged once
    assert runner.health()["periods"] == {"failed": 2}


def test_an_engine_error_is_a_failed_period(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("bug")

    started = T0 - 10
    Archive(tmp_path / "raw", created=started).write(T0 - 5, T0 + 75)
    runner = make_runner(tmp_path, started)
    monkeypatch.setattr(fluxrunner, "process_period", broken)
    records = runner.step(T0 + 60 + runner.setup.settle_s)
    assert [r.status for r in records] == ["failed"]
    assert records[0].reasons == ["engine error: ZeroDivisionError: bug"]
    assert records[0].settings_hash == runner.setup.settings_hash and runner.health()["engine_errors"] == 1


def test_after_a_restart_missed_periods_come_from_the_archive_and_empty_ones_are_not_sent(tmp_path: Path) -> None:
    started = T0 - 10
    Archive(tmp_path / "raw", created=started).write(T0 - 5, T0 + 75, open_files=False)
    runner = make_runner(tmp_path, started)
    assert len(runner.step(T0 + 60 + runner.setup.settle_s)) == 1
    runner.outbox.close()
    # the daemon was down from T0+75 to T0+300; its new files start at T0+300
    restarted = T0 + 300
    Archive(tmp_path / "raw", created=restarted).write(T0 + 300, T0 + 375)
    again = make_runner(tmp_path, restarted)
    records = again.step(T0 + 360 + again.setup.settle_s)
    ends = [r.end.timestamp() - T0 for r in records]
    # 120: only 15 s of records before the stop -> sent as failed; 180..300: nothing recorded -> not sent
    assert ends == [120, 360]
    assert records[0].status == "failed" and records[1].status == "ok", records[1].reasons
    assert again.health()["periods"] == {"failed": 1, "no_raw_data": 3, "ok": 1}


def test_a_restart_before_the_first_period_was_computed_resumes_at_that_period(tmp_path: Path) -> None:
    """Found by the chaos run: a station killed in its first minutes (before its first period was due) started
    again at the first period after its new start, so the periods between were never computed nor sent."""
    started = T0 - 10
    Archive(tmp_path / "raw", created=started).write(T0 - 5, T0 + 50, open_files=False)
    first = make_runner(tmp_path, started)
    assert first.step(T0 + 40) == []  # the first period (ending T0 + 60) is not due yet; then the daemon dies
    first.outbox.close()
    restarted = T0 + 55
    Archive(tmp_path / "raw", created=restarted).write(T0 + 55, T0 + 135)
    again = make_runner(tmp_path, restarted)
    records = again.step(T0 + 120 + again.setup.settle_s)
    assert [r.end.timestamp() - T0 for r in records] == [60, 120]


def test_archive_files_of_a_sensor_and_half_hour(tmp_path: Path) -> None:
    names = ["sonic_20251125T1000Z.csv.gz", "sonic_20251125T1000Z_1.swr", "sonic_20251125T1000Z_2.swr.part",
             "sonic_x_20251125T1000Z.swr", "sonic_20251125T1030Z.swr", "irga_20251125T1000Z.swr",
             "sonic_20251125T1000Z.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    found = archive_files(tmp_path, "sonic", datetime.fromtimestamp(T0, UTC))
    assert [p.name for p in found] == names[:3]  # both formats, closed and open


# --- outbox ---------------------------------------------------------------------------------------------------


def test_a_record_waits_in_the_outbox_with_its_seq_until_its_receipt(tmp_path: Path) -> None:
    # sending is the delivery path's job (tests/edge/test_delivery.py); the outbox hands the record out with its seq
    started = T0 - 10
    Archive(tmp_path / "raw", created=started).write(T0 - 5, T0 + 75)
    runner = make_runner(tmp_path, started)
    woken: list[bool] = []
    runner.notify = lambda: woken.append(True)
    [record] = runner.step(T0 + 60 + runner.setup.settle_s)
    assert woken
    [item] = runner.outbox.claim(5, set())
    sent = FluxRecord.model_validate_json(item.payload)
    assert sent.seq == item.seq and sent.model_copy(update={"seq": None}) == record
    assert runner.outbox.claim(5, {item.seq}) == []  # out already: not handed out twice
    assert runner.outbox.reload(item.seq) == item.payload
    assert runner.outbox.confirm([(item.seq, item.seq)]) == (1, 1)
    assert runner.outbox.count() == 0 and runner.outbox.reload(item.seq) is None


def test_planar_fit_without_a_file_is_learned_from_the_station_s_own_periods(tmp_path: Path) -> None:
    """rot_meth planar_fit and no file: the first periods are rotated by double rotation and say why; once 3 periods'
    mean winds are stored (pf_min_num_per_sec 3) the runner fits the planes itself, also after a restart."""
    started = T0 - 10
    Archive(tmp_path / "raw", created=started).write(T0 - 5, T0 + 305, open_files=False)
    flux = {"sonic": "sonic", "analyzer": "irga", "averaging_min": 1, "metadata": SITE,
            "settings": {"rot_meth": "planar_fit", "pf_min_num_per_sec": 3}}
    config = station_config(tmp_path, flux)
    runner = make_runner(tmp_path, started, config)
    records = runner.step(T0 + 240 + runner.setup.settle_s)
    assert [r.end.timestamp() for r in records] == [T0 + 60, T0 + 120, T0 + 180, T0 + 240]
    for r in records[:3]:
        assert any("for the station's own planar fit: double rotation used" in x for x in r.reasons), r.reasons
        assert r.settings_hash != runner.setup.settings_hash
    assert not any("double rotation" in x for x in records[3].reasons), records[3].reasons
    assert records[3].settings_hash == runner.setup.settings_hash and records[3].values["PITCH"] is None
    restarted = make_runner(tmp_path, started, config)  # same buffer file: the mean winds are still there
    (fifth,) = restarted.step(T0 + 300 + restarted.setup.settle_s)
    assert fifth.end.timestamp() == T0 + 300 and not any("double rotation" in x for x in fifth.reasons)
