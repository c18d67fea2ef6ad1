"""Spike detection (despike.py, Papale et al. 2006): the same records hesseflux 5.0's madspikes flagged on both
reference site-years with its settings, injected spikes found on a synthetic series, the change of day and night not
taken for a spike, and the option through the chain and the command."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.flux.budget.despike import nee_spikes
from gateway.flux.budget.files import read_budget_csv
from gateway.flux.budget.pipeline import BudgetSettings, run_budget
from tests.flux.budget.refdata import DATA, SITES, hesseflux_run


@pytest.mark.parametrize("site", ["FR-Hes2016", "DE-Tha1998"])
def test_flags_what_hesseflux_flagged_with_its_settings(site: str) -> None:
    run = hesseflux_run(site)
    # hesseflux looked for spikes before the u* filter, in what its quality flags let through (flag 2 is missing)
    nee = np.where(np.isin(run["NEE_flag"], (0, 3, 5)), run["NEE_in"], np.nan)
    ours = nee_spikes(nee, run["SW_IN"], z=7.0, steps_per_day=48, window_days=15)  # madspikes: nscan 15 d, z 7
    theirs = run["NEE_flag"] == 3
    assert theirs.sum() > 30
    np.testing.assert_array_equal(np.flatnonzero(ours), np.flatnonzero(theirs))


def _diurnal(days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hour = (np.arange(days * 48) % 48) / 2.0
    sun = np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None)
    sw = 800.0 * sun
    # a night level and a light response: NEE jumps at dawn and dusk by several times its noise
    nee = np.where(sw > 10.0, -18.0 * sun, 6.0) + rng.normal(0.0, 1.0, sw.size)
    return nee, sw


def test_injected_spikes_are_found_and_nothing_else() -> None:
    nee, sw = _diurnal(30, seed=1)
    where = np.array([100, 333, 700, 901, 1200])  # night and day records
    spiked = nee.copy()
    spiked[where] += np.array([25.0, -30.0, 40.0, -25.0, 30.0])
    found = np.flatnonzero(nee_spikes(spiked, sw, z=7.0, steps_per_day=48))
    assert set(where) <= set(found)
    # a spike far beyond the limit makes its neighbours' second differences large too (eq. 1 holds −spike for
    # them): the method takes them with it (hesseflux as well), and nothing else
    assert set(found) <= set(where) | set(where - 1) | set(where + 1)
    # the clean series has a jump at every dawn and dusk: with day and night apart none is a spike
    for z in (5.5, 7.0):
        assert not nee_spikes(nee, sw, z=z, steps_per_day=48).any(), z


def test_records_without_sw_in_and_gaps_are_not_judged() -> None:
    nee, sw = _diurnal(20, seed=2)
    nee[50] += 40.0
    sw_missing = sw.copy()
    sw_missing[50] = np.nan
    assert not nee_spikes(nee, sw_missing, z=7.0, steps_per_day=48)[50]
    nee[49] = np.nan  # no second difference without both neighbours
    assert not nee_spikes(nee, sw, z=7.0, steps_per_day=48)[50]


@pytest.mark.parametrize(("z", "window_days", "message"), [(0.0, 13, "positive multiple"), (4.0, 0, "at least one")])
def test_bad_settings_are_refused(z: float, window_days: int, message: str) -> None:
    nee, sw = _diurnal(2, seed=3)
    with pytest.raises(ValueError, match=message):
        nee_spikes(nee, sw, z=z, steps_per_day=48, window_days=window_days)


def test_the_chain_removes_spikes_and_fills_them() -> None:
    nee, sw = _diurnal(20, seed=4)
    spiked = nee.copy()
    spiked[[300, 500]] += 40.0
    t = 1_600_000_000.0 - (1_600_000_000.0 % 86400.0) + 1800.0 * np.arange(nee.size)
    ta, vpd = 10.0 + sw / 100.0, 2.0 + sw / 100.0
    settings = BudgetSettings(ustar="none", partition=False, despike_z=5.5)
    result = run_budget(t, spiked, sw, ta, vpd, lat=50.0, lon=10.0, utc_offset_h=1.0, settings=settings)
    expected = nee_spikes(spiked, sw, z=5.5, steps_per_day=48)  # whole days from midnight: no padding
    assert expected[[300, 500]].all()
    assert result.scalars["N_SPIKES"] == float(expected.sum()) and result.scalars["DESPIKE_Z"] == 5.5
    assert f"{int(expected.sum())} NEE spikes removed (Papale et al. 2006, z = 5.5" in " ".join(result.notes)
    np.testing.assert_array_equal(result.hh["NEE"][[300, 500]], spiked[[300, 500]])  # the input stays as it was
    assert np.all(result.hh["NEE_F_QC"][[300, 500]] > 0)  # gap-filled
    assert np.all(np.abs(result.hh["NEE_F"][[300, 500]] - nee[[300, 500]]) < 10.0)
    plain = run_budget(t, spiked, sw, ta, vpd, lat=50.0, lon=10.0, utc_offset_h=1.0,
                       settings=BudgetSettings(ustar="none", partition=False))
    assert "N_SPIKES" not in plain.scalars and plain.hh["NEE_F"][300] == spiked[300]


def test_the_command_despikes_when_asked(tmp_path: Path) -> None:
    site, path = SITES["DE-Tha1998"], DATA / "DE-Tha1998_gapfill_tool.txt.gz"
    args = ["flux", "budget", str(path), "--year", "1998", "--lat", str(site["lat"]), "--lon", str(site["lon"]),
            "--utc-offset", str(site["utc_offset"]), "--ustar", "0.3", "--despike", "7", "--out",
            str(tmp_path / "out.csv")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = read_budget_csv(path, year=1998)
    expected = int(nee_spikes(data.columns["NEE"], data.columns["SW_IN"], z=7.0, steps_per_day=48).sum())
    found = re.search(r"note: (\d+) NEE spikes removed", result.output)
    assert found is not None and int(found.group(1)) == expected > 0
