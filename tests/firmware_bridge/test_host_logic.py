"""Unit tests of the host-side pieces: clock mapping, conversion, SDI-12 parsing, config validation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from firmware_bridge.clock import WRAP, BoardClock
from firmware_bridge.conversion import ChangeTracker, displacement_um
from firmware_bridge.driver import FirmwareBridgeConfig
from firmware_bridge.sdi12 import Sdi12Error, crc16_arc, crc_chars, parse_measure, parse_values, teros12_vwc

T0 = 1_764_064_800.0  # 2025-11-25T10:00:00Z


def feed(clock: BoardClock, boot: int, board_ms: int, host_s: float, rtt: float = 0.01) -> str | None:
    return clock.observe(boot, board_ms % WRAP, host_s - rtt / 2, host_s + rtt / 2)


def test_offset_then_drift_are_estimated() -> None:
    clock = BoardClock(max_rtt_s=0.1, min_span_s=5.0)
    assert clock.to_utc(1, 0) is None and not clock.synced
    feed(clock, 1, 10_000, T0)
    assert clock.to_utc(1, 11_000) == datetime.fromtimestamp(T0 + 1.0, UTC)
    rate = 1 + 200e-6  # the board runs 200 ppm slow: 1 board ms = 1.0002 host ms
    for k in range(1, 11):
        feed(clock, 1, 10_000 + 1000 * k, T0 + k * rate)
    assert clock.drift_ppm == pytest.approx(200, abs=1)
    stamp = clock.to_utc(1, 10_000 + 100_000)
    assert stamp is not None and stamp.timestamp() == pytest.approx(T0 + 100 * rate, abs=1e-4)
    assert clock.synced


def test_slow_round_trips_are_not_used() -> None:
    clock = BoardClock(max_rtt_s=0.05)
    feed(clock, 1, 1000, T0, rtt=0.5)
    assert clock.counters.rejected_rtt == 1 and clock.to_utc(1, 1000) is None


def test_rollover_keeps_time_continuous() -> None:
    clock = BoardClock()
    start = WRAP - 3000
    feed(clock, 1, start, T0)
    assert feed(clock, 1, start + 6000, T0 + 6.0) == "rollover"  # the board now reports 3000
    assert clock.counters.rollovers == 1
    before = clock.to_utc(1, WRAP - 1000)  # a record stamped just before the wrap
    after = clock.to_utc(1, 1000)  # and one just after
    assert before is not None and after is not None
    assert after.timestamp() - before.timestamp() == pytest.approx(2.0, abs=1e-3)


def test_reset_drops_the_mapping_and_refuses_the_old_boot() -> None:
    clock = BoardClock()
    feed(clock, 4, 500_000, T0)
    assert feed(clock, 5, 800, T0 + 10) == "reset"
    assert clock.to_utc(4, 500_100) is None  # a record of the old boot gets no time at all
    stamp = clock.to_utc(5, 1800)
    assert stamp is not None and stamp.timestamp() == pytest.approx(T0 + 11)
    # same boot id (EEPROM lost) but the count ran backwards: also a reset
    assert feed(clock, 5, 100, T0 + 20) == "reset"
    assert clock.counters.resets == 2


def test_ratiometric_displacement_and_changes() -> None:
    # Ecomatik DL18 BLE manual p. 7: 1 V of 2.5 V excitation on an 11 mm sensor = 4400 um (Ecomatik DL18: um = V x 4400)
    assert displacement_um(400, 1000, 11000) == pytest.approx(4400)
    assert displacement_um(400, 1000, 11000, gain=1.01, offset_um=-5) == pytest.approx(4400 * 1.01 - 5)
    tracker = ChangeTracker(reset_threshold_um=2000)
    assert tracker.update(4400) == (0.0, "reference")
    assert tracker.update(4412.5) == (pytest.approx(12.5), None)
    change, event = tracker.update(400)  # re-mounted near the start of travel
    assert event == "reset" and change == pytest.approx(12.5)
    assert tracker.update(410)[0] == pytest.approx(22.5)


def test_sdi12_crc_matches_the_protocols_example() -> None:
    assert crc16_arc("0+2009.87+22.3+112") == 0x6911
    assert crc_chars(0x6911) == "FdQ"
    assert parse_values("0+2009.87+22.3+112FdQ\r\n", "0", with_crc=True) == [2009.87, 22.3, 112.0]
    with pytest.raises(Sdi12Error):
        parse_values("0+2009.87+22.3+113FdQ\r\n", "0", with_crc=True)
    assert parse_measure("00013\r\n", "0") == (1, 3)
    assert parse_values("1+1234.567-18.42\r\n", "1") == [1234.567, -18.42]
    with pytest.raises(Sdi12Error):
        parse_values("1+1234.5", "1")
    assert teros12_vwc(2009.87) == pytest.approx(0.084, abs=5e-4)  # TEROS 12 user manual sec. 4.1 calibration


def test_sample_config_documents_every_key_and_validates() -> None:
    sample = yaml.safe_load((Path(__file__).parents[2] / "firmware_bridge" / "sample.yaml").read_text())
    config = FirmwareBridgeConfig.model_validate(sample)
    assert set(FirmwareBridgeConfig.model_fields) <= set(sample)
    assert set(type(config.analog[0]).model_fields) <= set(sample["analog"][0])
    assert set(type(config.sdi12[0]).model_fields) <= set(sample["sdi12"][0])


@pytest.mark.parametrize(("change", "message"), [
    ({"analog": [], "sdi12": []}, "at least one"),
    ({"analog": [{"channel": 0, "model": "nope"}]}, "unknown dendrometer model"),
    ({"analog": [{"channel": 0, "model": "generic_radius"}]}, "needs full_range_um"),
    ({"analog": [{"channel": 0, "model": "ecomatik_dr1"}, {"channel": 0, "model": "ecomatik_dr1"}]}, "once"),
])
def test_config_errors_name_the_problem(change: dict[str, object], message: str) -> None:
    base = {"name": "dendro", "driver": "firmware_bridge", "port": "/dev/null"}
    with pytest.raises(ValidationError, match=message):
        FirmwareBridgeConfig.model_validate({**base, **change})
