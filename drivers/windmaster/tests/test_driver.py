"""WindMaster frame grammar: an example frame in the manual's M1 layout byte for byte, checksum, units, missing
values."""

from __future__ import annotations

import pytest

from drivers.windmaster import grammar
from drivers.windmaster.driver import WindMasterConfig, WindMasterDriver
from drivers.windmaster.simulator import WindMasterSimulator
from gateway.driver_api import BadRecord

EXAMPLE = b"\x02Q,+001.234,-000.456,+000.078,M,+344.52,+022.41,00,\x0312\r\n"


def make_driver(**overrides: object) -> WindMasterDriver:
    return WindMasterDriver(WindMasterConfig.model_validate({"name": "sonic", "port": "/dev/null", **overrides}),
                            station="st1")


def test_builds_the_protocols_example_byte_for_byte() -> None:
    assert grammar.build_frame("Q", 1.234, -0.456, 0.078, 344.52, 22.41, 0) == EXAMPLE


def test_parses_the_example() -> None:
    assert make_driver().parse(EXAMPLE.rstrip(b"\r\n")) == (1.234, -0.456, 0.078, 344.52, 22.41, 0.0)


def test_wrong_checksum_is_a_checksum_bad_record() -> None:
    with pytest.raises(BadRecord) as info:
        make_driver().parse(EXAMPLE.replace(b"\x0312", b"\x0313"))
    assert info.value.reason == "checksum"


@pytest.mark.parametrize("frame", [b"", b"garbage", EXAMPLE[1:], EXAMPLE.replace(b"\x03", b"")])
def test_malformed_frames_are_format_bad_records(frame: bytes) -> None:
    with pytest.raises(BadRecord) as info:
        make_driver().parse(frame)
    assert info.value.reason == "format"


def test_noise_before_stx_is_ignored() -> None:
    assert make_driver().parse(b"\xff\x13zz" + EXAMPLE)[0] == 1.234


def test_other_node_letter_is_dropped() -> None:
    with pytest.raises(BadRecord, match="node letter"):
        make_driver(node="R").parse(EXAMPLE)


def test_knots_are_converted_to_metres_per_second() -> None:
    frame = grammar.build_frame("Q", 10.0, 0.0, 0.0, 344.0, 20.0, 0, units="N")
    assert make_driver().parse(frame)[0] == pytest.approx(10 * 1852 / 3600)


def test_failed_axis_sentinel_is_missing_and_status_kept() -> None:
    frame = grammar.build_frame("Q", 999.99, 999.99, 999.99, 344.0, 20.0, 1)
    assert make_driver().parse(frame) == (None, None, None, 344.0, 20.0, 1.0)


def test_simulator_frames_decode_to_their_logged_values() -> None:
    sim = WindMasterSimulator("tcp://127.0.0.1:0", seed=5)
    driver = make_driver()
    for index in range(100, 160):
        sim._pending_values = ()
        frame = sim.frame(index, index / 20)
        assert driver.parse(frame) == sim._pending_values


def test_configuration_mode_commands() -> None:
    sim = WindMasterSimulator("tcp://127.0.0.1:0")
    assert sim.on_command(b"D3") is None  # ignored while measuring
    assert sim.on_command(b"*") == b"CONFIGURATION MODE\r\n" and sim.paused
    reply = sim.on_command(b"D3")
    assert reply is not None and reply.startswith(b"M1,") and b"NQ" in reply
    assert sim.on_command(b"Q") is None and not sim.paused
    assert make_driver().start_commands() == [b"Q\r\n"]


def test_checksum_is_the_xor_of_every_byte_for_any_length() -> None:
    import random
    from functools import reduce

    rng = random.Random(3)
    for length in range(0, 90):
        body = bytes(rng.randrange(256) for _ in range(length))
        assert grammar.checksum(body) == reduce(lambda a, b: a ^ b, body, 0), body


def frame_with(field: int, raw: bytes) -> bytes:
    """EXAMPLE with one comma-separated field replaced, its checksum recomputed."""
    fields = EXAMPLE[1:EXAMPLE.index(b"\x03")].split(b",")
    fields[field] = raw
    body = b",".join(fields)
    return b"\x02" + body + b"\x03" + f"{grammar.checksum(body):02X}".encode() + b"\r\n"


@pytest.mark.parametrize(("field", "raw", "message"), [
    (1, b"+0a1.234", "U field b'+0a1.234' is not a number"),
    (3, b"nan", "W field b'nan' is not finite"),
    (5, b"+inf", "SOS field b'+inf' is not finite"),
    (6, b"-inf", "T_SONIC field b'-inf' is not finite"),
])
def test_a_value_that_is_not_a_finite_number_is_named(field: int, raw: bytes, message: str) -> None:
    with pytest.raises(BadRecord) as info:
        make_driver().parse(frame_with(field, raw))
    assert info.value.reason == "format" and info.value.message == message


def test_values_too_large_to_add_up_are_still_values() -> None:
    # the common path checks the five values' sum for finiteness; two huge ones overflow it, yet each is finite
    frame = frame_with(6, b"+1e308")
    body = frame[1:frame.index(b"\x03")].replace(b"+344.52", b"+1e308")
    frame = b"\x02" + body + b"\x03" + f"{grammar.checksum(body):02X}".encode() + b"\r\n"
    assert make_driver().parse(frame) == (1.234, -0.456, 0.078, None, None, 0.0)  # beyond the missing magnitude


# --- optional fields the manual documents (sec. 7, 11.4) that our simulator does not send -------------------------


def test_analog_inputs_and_prt_after_the_status_are_accepted_and_not_recorded() -> None:
    frame = grammar.build_frame("Q", 1.234, -0.456, 0.078, 344.52, 22.41, 0, analog_v=(1.25, 0.5, 2.0, 4.999),
                                prt_c=21.37)
    assert b",00,+1.2500,+0.5000,+2.0000,+4.9990,+21.37C,\x03" in frame
    assert make_driver().parse(frame) == (1.234, -0.456, 0.078, 344.52, 22.41, 0.0)


def test_prt_alone_after_the_status_is_accepted() -> None:
    frame = grammar.build_frame("Q", 1.234, -0.456, 0.078, 344.52, 22.41, 0, prt_c=-3.5)
    assert make_driver().parse(frame) == (1.234, -0.456, 0.078, 344.52, 22.41, 0.0)


def test_without_sos_and_ts_those_columns_are_none() -> None:
    frame = grammar.build_frame("Q", 1.234, -0.456, 0.078, 344.52, 22.41, 0x01, sos_and_ts=False)
    assert frame.startswith(b"\x02Q,+001.234,-000.456,+000.078,M,01,\x03")
    assert make_driver().parse(frame) == (1.234, -0.456, 0.078, None, None, 1.0)


def test_without_sos_and_ts_two_analog_inputs_are_not_read_as_sos_and_ts() -> None:
    # 8 fields like the common frame; the status in the sixth is what gives the layout away
    frame = grammar.build_frame("Q", 1.234, -0.456, 0.078, 344.52, 22.41, 0, sos_and_ts=False, analog_v=(1.0, 2.0))
    assert make_driver().parse(frame) == (1.234, -0.456, 0.078, None, None, 0.0)


@pytest.mark.parametrize(("fields", "message"), [
    (b"Q,+001.234,-000.456,+000.078,M,+344.52,+022.41,00,+1.0000,abc,", "optional field 2 after the status"),
    (b"Q,+001.234,-000.456,+000.078,M,+344.52,+022.41,00,1,2,3,4,5,6,", "at most 5"),
    (b"Q,+001.234,-000.456,+000.078,M,+344.52,+022.41,+1.0000,", "no hex status"),
    (b"Q,+001.234,-000.456,+000.078,M,+344.52,", "no hex status"),
])
def test_an_optional_layout_that_does_not_fit_is_a_format_bad_record(fields: bytes, message: str) -> None:
    frame = b"\x02" + fields + b"\x03" + f"{grammar.checksum(fields):02X}".encode() + b"\r\n"
    with pytest.raises(BadRecord, match=message) as info:
        make_driver().parse(frame)
    assert info.value.reason == "format"


def test_a_one_digit_status_is_taken_as_the_status() -> None:
    body = b"Q,+001.234,-000.456,+000.078,M,+344.52,+022.41,1,"
    frame = b"\x02" + body + b"\x03" + f"{grammar.checksum(body):02X}".encode() + b"\r\n"
    assert make_driver().parse(frame) == (1.234, -0.456, 0.078, 344.52, 22.41, 1.0)


def test_a_polar_m2_frame_is_refused_not_read_as_u_and_v() -> None:
    """The factory mode M2 puts the direction (whole degrees) and the speed where M1 puts U and V (manual
    1561-PS-0001 sec. 7); read as M1 it gave U = 229 m/s."""
    body = b"Q,229,002.74,+000.13,M,+344.52,+022.41,00,"
    check = 0
    for byte in body:
        check ^= byte
    with pytest.raises(BadRecord) as info:
        make_driver().parse(b"\x02" + body + b"\x03" + f"{check:02X}".encode())
    assert info.value.reason == "format" and "M2" in info.value.message
