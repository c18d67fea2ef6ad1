"""The simulated site weather: the sun where astronomy puts it, air warming after noon, humidity falling as it
warms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.simulation.weather import MetSignal, haurwitz_clear_sky, solar_position


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def test_the_sun_stands_at_the_textbook_noon_elevations() -> None:
    # 51 N at solar noon: 90 - 51 + 23.44 = 62.44 deg at the June solstice, 15.56 deg at the December one
    june = max(solar_position(at("2025-06-21T11:00:00") + 60 * m, 51.0, 10.5).cos_zenith for m in range(60))
    december = max(solar_position(at("2025-12-21T11:00:00") + 60 * m, 51.0, 10.5).cos_zenith for m in range(60))
    assert june == pytest.approx(0.8864, abs=0.003)
    assert december == pytest.approx(0.2683, abs=0.004)


def test_solar_noon_comes_earlier_east_of_greenwich() -> None:
    # at 15 E the sun culminates about an hour before 12:00 UTC (the equation of time near the equinox is ~-7 min)
    day = at("2025-03-21T00:00:00")
    culmination = max(range(0, 86400, 60), key=lambda s: solar_position(day + s, 45.0, 15.0).cos_zenith)
    assert culmination / 3600 == pytest.approx(11.0 + 7 / 60, abs=0.1)


def test_clear_sky_irradiance_is_zero_at_night_and_about_1000_with_the_sun_overhead() -> None:
    assert haurwitz_clear_sky(-0.2) == 0.0
    assert haurwitz_clear_sky(1.0) == pytest.approx(1037.2, abs=0.5)


def test_a_summer_day_warms_after_noon_and_dries_as_it_warms() -> None:
    signal = MetSignal(cloudiness=0.0)
    day = at("2025-06-21T00:00:00")
    hours = [day + 600 * i for i in range(144)]
    ta = [signal.ta(t) for t in hours]
    rh = [signal.rh(t) for t in hours]
    sw = [signal.sw_in(t) for t in hours]
    warmest = hours[ta.index(max(ta))]
    assert 13.3 <= (warmest - day) / 3600 <= 14.3  # 14:30 local solar time is ~13:50 UTC at 10.5 E
    assert rh.index(min(rh)) == ta.index(max(ta)) and max(rh) <= 100.0
    assert 35 < min(rh) < 70 and max(rh) > 90
    assert sw[0] == 0.0 and max(sw) > 850
    daily_mean = sum(sw) / len(sw)
    assert 300 < daily_mean < 380  # clear-sky June daily mean at 51 N


def test_clouds_only_ever_dim_and_the_seed_fixes_them() -> None:
    cloudy, same, other = MetSignal(cloudiness=0.6, seed=1), MetSignal(cloudiness=0.6, seed=1), MetSignal(
        cloudiness=0.6, seed=2)
    clear = MetSignal(cloudiness=0.0)
    noon = at("2025-06-21T11:00:00")
    times = [noon + timedelta(minutes=5 * i).total_seconds() for i in range(48)]
    assert all(0.4 * clear.sw_in(t) - 1e-9 <= cloudy.sw_in(t) <= clear.sw_in(t) + 1e-9 for t in times)
    assert [cloudy.sw_in(t) for t in times] == [same.sw_in(t) for t in times]
    assert [cloudy.sw_in(t) for t in times] != [other.sw_in(t) for t in times]
