"""`ReplyTiming`, when the serial master first looks for a device's reply: a quantile of how late the device's
replies come, tracked from one bit per reply (whole at the first look or not)."""

from __future__ import annotations

from gateway.driver_api.serial_line import LATENESS_CAP_S, LATENESS_STEP_S, WHOLE_SHARE, ReplyTiming


def looks(timing: ReplyTiming, lateness_s: list[float], rounds: int, device: int = 7) -> list[bool]:
    """Replay replies late by `lateness_s` (cycled, shuffled by a stride) against the timing; the first looks'
    outcomes."""
    outcomes = []
    for k in range(rounds):
        late = lateness_s[(k * 7) % len(lateness_s)]
        whole = late <= timing.extra_s(device)
        timing.first_look(device, whole=whole)
        outcomes.append(whole)
    return outcomes


def test_a_device_that_answers_at_once_is_looked_for_at_its_wire_time() -> None:
    timing = ReplyTiming()
    assert looks(timing, [0.0], 100) == [True] * 100
    assert timing.extra_s(7) == 0.0


def test_the_wait_settles_where_the_chosen_share_of_first_looks_find_the_reply_whole() -> None:
    timing = ReplyTiming()
    lateness = [i * 0.001 for i in range(10)]  # late by 0, 1, ... 9 ms, equally often
    outcomes = looks(timing, lateness, 20_000)
    share = sum(outcomes[-5000:]) / 5000
    assert abs(share - WHOLE_SHARE) < 0.05, share
    # the WHOLE_SHARE quantile of the lateness, within a step or two
    assert 0.007 - 2 * LATENESS_STEP_S <= timing.extra_s(7) <= 0.008 + 2 * LATENESS_STEP_S


def test_one_very_late_reply_moves_the_wait_by_one_step_and_it_comes_back() -> None:
    timing = ReplyTiming()
    timing.first_look(7, whole=False)  # a reply 300 ms late, once (a loaded machine)
    assert timing.extra_s(7) == LATENESS_STEP_S * WHOLE_SHARE
    looks(timing, [0.0], 10)
    assert timing.extra_s(7) == 0.0


def test_devices_are_timed_apart_and_the_wait_is_capped() -> None:
    timing = ReplyTiming()
    looks(timing, [10.0], 10_000, device=3)  # never in at the first look
    assert timing.extra_s(3) == LATENESS_CAP_S
    assert timing.extra_s(4) == 0.0
