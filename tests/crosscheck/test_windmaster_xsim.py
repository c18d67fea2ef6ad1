"""Gill WindMaster against a clean-room instrument: frames a conforming unit may send (Gill "WindMaster and
WindMaster Pro" manual 1561-PS-0001 Issue 11, sec. 7 and 11.4), served over a PTY to the real stream runner.
Each variant is either read to the right values or counted as a bad record; none gives a wrong number."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.windmaster.driver import WindMasterDriver
from tests.crosscheck.frames import gill_frame
from tests.crosscheck.streaming import close_to, serve_stream

pytestmark = pytest.mark.integration

KNOT = 1852.0 / 3600.0


def test_m1_variants_a_unit_may_send_are_read_to_their_values(tmp_path: Path) -> None:
    frames = [
        # the reference's EXAMPLE, J2 (3 decimals), checksum 12
        gill_frame(["Q", "+001.234", "-000.456", "+000.078", "M", "+344.52", "+022.41", "00"]),
        # J1 (normal resolution, 2 decimals)
        gill_frame(["Q", "-002.50", "+000.75", "-000.10", "M", "+340.01", "+015.00", "00"]),
        # checksum printed in lower-case hex digits
        gill_frame(["Q", "+000.500", "+000.250", "+000.125", "M", "+345.00", "+025.00", "00"], lower_hex=True),
        # a non-zero status: the values come with it, the status is the diagnostic column
        gill_frame(["Q", "+003.000", "+001.000", "-000.500", "M", "+343.00", "+020.00", "01"]),
        gill_frame(["Q", "+003.000", "+001.000", "-000.500", "M", "+343.00", "+020.00", "0A"]),
        # four analog inputs and the PRT temperature after the status
        gill_frame(["Q", "+001.000", "+002.000", "+003.000", "M", "+344.00", "+021.00", "00",
                    "+1.2345", "+0.0000", "+2.5000", "-0.1000", "+019.87C"]),
        # speed in knots (U2, units letter N): converted to m s-1
        gill_frame(["Q", "+010.00", "-004.00", "+000.50", "N", "+344.00", "+021.00", "00"]),
        # no trailing comma before ETX
        gill_frame(["Q", "+000.100", "+000.200", "+000.300", "M", "+344.10", "+021.10", "00"],
                   trailing_comma=False),
    ]
    served = serve_stream(WindMasterDriver, {"node": "Q"}, b"".join(frames), tmp_path, frames=len(frames))
    assert served.columns == ["U", "V", "W", "SOS", "T_SONIC", "DIAG_SONIC"]
    expected = [
        (1.234, -0.456, 0.078, 344.52, 22.41, 0.0),
        (-2.5, 0.75, -0.1, 340.01, 15.0, 0.0),
        (0.5, 0.25, 0.125, 345.0, 25.0, 0.0),
        (3.0, 1.0, -0.5, 343.0, 20.0, 1.0),
        (3.0, 1.0, -0.5, 343.0, 20.0, 10.0),
        (1.0, 2.0, 3.0, 344.0, 21.0, 0.0),
        (10.0 * KNOT, -4.0 * KNOT, 0.5 * KNOT, 344.0, 21.0, 0.0),
        (0.1, 0.2, 0.3, 344.1, 21.1, 0.0),
    ]
    assert served.health.bad == {}
    assert len(served.rows) == len(expected)
    for got, want in zip(served.rows, expected, strict=True):
        assert close_to(got, want), (got, want)


def test_another_node_letter_is_read_when_configured(tmp_path: Path) -> None:
    frame = gill_frame(["A", "+001.500", "-001.500", "+000.000", "M", "+344.00", "+021.00", "00"])
    served = serve_stream(WindMasterDriver, {"node": "A"}, frame * 3, tmp_path, frames=3)
    assert [r[:3] for r in served.rows] == [(1.5, -1.5, 0.0)] * 3


def test_what_is_not_an_m1_data_frame_is_counted_never_read_as_wind(tmp_path: Path) -> None:
    good = gill_frame(["Q", "+001.000", "+001.000", "+001.000", "M", "+344.00", "+021.00", "00"])
    payload = b"".join([
        good,
        # M2 polar (the factory mode): direction (integer degrees) and speed where M1 puts U and V
        gill_frame(["Q", "229", "002.74", "+000.13", "M", "+344.52", "+022.41", "00"]),
        gill_frame(["Q", "229", "002.74", "+000.13", "M", "00"]),  # the same with SOS and Ts switched off
        # a frame whose checksum does not match its bytes
        gill_frame(["Q", "+009.000", "+009.000", "+009.000", "M", "+344.00", "+021.00", "00"], corrupt=True),
        # another unit's node letter on the same line
        gill_frame(["B", "+009.000", "+009.000", "+009.000", "M", "+344.00", "+021.00", "00"]),
        # configuration-mode text after a technician sent '*'
        b"CONFIGURATION MODE\r\n",
        good,
    ])
    served = serve_stream(WindMasterDriver, {"node": "Q"}, payload, tmp_path, frames=7)
    assert [r[:3] for r in served.rows] == [(1.0, 1.0, 1.0)] * 2
    assert served.health.bad.get("checksum") == 1
    assert served.health.bad.get("format") == 4


def m10_frame(index: int) -> bytes:
    """A binary M10 record (manual sec. 11.4): B4 B4, ten 16-bit little-endian words (status, U, V, W, SOS, A1-A4,
    PRT), one XOR checksum byte: 23 bytes, no line end."""
    words = [0, 123 + index, -45 - index, 7, 34452, 0, 0, 0, 0, 2241]
    body = b"".join(w.to_bytes(2, "little", signed=w < 0) for w in words)
    check = 0
    for byte in body:
        check ^= byte
    return b"\xb4\xb4" + body + bytes([check])


def test_a_unit_in_a_binary_mode_gives_no_values_only_counted_bad_records(tmp_path: Path) -> None:
    """Binary output (M8/M10) is a documented mode the driver does not read: the bytes must come out as counted bad
    records (or overflows), never as wind, and the M1 frame after them is read."""
    good = gill_frame(["Q", "+001.000", "+002.000", "+003.000", "M", "+344.00", "+021.00", "00"])
    binary = b"".join(m10_frame(i) for i in range(300))
    served = serve_stream(WindMasterDriver, {"node": "Q"}, binary + b"\r\n" + good, tmp_path, frames=1, good=1,
                          timeout_s=15.0)
    assert [r[:3] for r in served.rows] == [(1.0, 2.0, 3.0)]  # nothing but the M1 frame's values
    assert sum(served.health.bad.values()) >= 1
