"""IrgasonDriver's frame grammar: an example record in the IRGASON manual's Table 8-1 layout with its signature, units,
NAN, bad frames, counter."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from drivers.irgason.driver import (
    COLUMNS,
    M_CO2,
    M_H2O,
    SIGNATURE_SPANS,
    IrgasonConfig,
    IrgasonDriver,
    SignatureSpan,
    campbell_signature,
    signed_text,
)
from gateway.driver_api import BadRecord, StreamDriver

# An example record in the layout of IRGASON manual Table 8-1, without its signature
EXAMPLE_BODY = "1.234,-0.456,0.078,21.35,0,712.4,9.876,0,21.10,98.72,0.92,0.95,0,42"


def signed(body: str, span: SignatureSpan = "co2_through_counter") -> bytes:
    signature = campbell_signature(signed_text(body.split(","), span))
    return f"{body},{signature:04x}\r\n".encode()


def make(**overrides: Any) -> IrgasonDriver:
    settings: dict[str, Any] = {"name": "ec", "port": "/dev/ttyUSB0", **overrides}
    return IrgasonDriver(IrgasonConfig.model_validate(settings), station="st1")


def reason_of(driver: IrgasonDriver, frame: bytes) -> str:
    with pytest.raises(BadRecord) as caught:
        driver.parse(frame)
    return caught.value.reason


def test_campbell_signature_matches_the_csat3b_check_values() -> None:
    # Check values computed independently of this code: LSST span and the CSAT3B manual's span of one record
    assert campbell_signature(b"1.23456,-0.54321,0.08765,21.8473,0") == 0xBC5F
    assert campbell_signature(b"1.23456,-0.54321,0.08765,21.8473,0,17") == 0xDD98


def test_signature_of_the_protocols_example_for_each_span() -> None:
    # c6f2 comes from campbell_signature itself (pinned above by independent CSAT3B values): a
    # regression pin for the example record, whose real EC100 signature no manual gives
    assert signed(EXAMPLE_BODY).endswith(b",c6f2\r\n")
    assert signed_text(EXAMPLE_BODY.split(","), "co2_through_counter") == b"712.4,9.876,0,21.10,98.72,0.92,0.95,0,42"
    assert signed_text(EXAMPLE_BODY.split(","), "all_before_counter") == EXAMPLE_BODY.rsplit(",", 1)[0].encode()
    assert signed_text(EXAMPLE_BODY.split(","), "all_through_counter") == EXAMPLE_BODY.encode()


def test_is_a_stream_driver_with_documented_columns() -> None:
    assert isinstance(make(), StreamDriver)
    assert [c.name for c in COLUMNS] == ["U", "V", "W", "T_SONIC", "DIAG_SONIC", "CO2", "H2O", "DIAG_IRGA", "TA",
                                        "PRESS", "CO2SS", "H2OSS"]
    assert {c.name: c.unit for c in COLUMNS}["CO2"] == "mmol m-3"


def test_the_protocols_example_parses_with_densities_in_mmol_per_m3() -> None:
    values = make().parse(signed(EXAMPLE_BODY))
    assert values[:5] == (1.234, -0.456, 0.078, 21.35, 0.0)
    assert values[5] == pytest.approx(712.4 / 44.0095) and values[5] == pytest.approx(16.187, abs=1e-3)
    assert values[6] == pytest.approx(9.876 * 1000 / 18.01528) and values[6] == pytest.approx(548.201, abs=1e-3)
    assert values[7:] == (0.0, 21.10, 98.72, 0.92, 0.95)
    assert (M_CO2, M_H2O) == (44.0095, 18.01528)


_SPAN_START = len("1.234,-0.456,0.078,21.35,0,")


@pytest.mark.parametrize("position", range(_SPAN_START, len(EXAMPLE_BODY)))
def test_every_flipped_byte_of_the_signed_span_is_rejected(position: int) -> None:
    frame = bytearray(signed(EXAMPLE_BODY))
    comma = frame[position] == ord(",")
    frame[position] ^= 0x01  # a digit stays a digit (0<->1, 2<->3 ...): only the signature can tell
    # the signature is checked first; a comma turned '-' changes the element count, seen even before that
    assert reason_of(make(), bytes(frame)) == ("format" if comma else "checksum")


def test_a_flipped_byte_in_a_number_is_a_checksum_error() -> None:
    frame = signed(EXAMPLE_BODY).replace(b"712.4", b"713.4")
    assert reason_of(make(), frame) == "checksum"
    assert reason_of(make(), signed(EXAMPLE_BODY)[:-3] + b"0\r\n") == "checksum"  # the signature itself


@pytest.mark.parametrize("span", sorted(SIGNATURE_SPANS))
def test_the_configured_span_is_the_one_verified(span: SignatureSpan) -> None:
    frame = signed(EXAMPLE_BODY, span)
    assert make(signature_span=span).parse(frame)[0] == 1.234
    others = [s for s in SIGNATURE_SPANS if s != span]
    assert all(reason_of(make(signature_span=other, signature_span_fallback=False), frame) == "checksum"
               for other in others)
    assert make(signature_span=others[0], verify_signature=False).parse(frame)[0] == 1.234


def test_nan_elements_are_missing_values() -> None:
    body = "NAN,NAN,NAN,NAN,1,NAN,NAN,4,21.10,98.72,0.12,NAN,NAN,43"
    assert make().parse(signed(body)) == (None, None, None, None, 1.0, None, None, 4.0, 21.1, 98.72, 0.12, None)


@pytest.mark.parametrize(
    "body",
    [
        "1.234,-0.456,0.078,21.35,0,712.4,9.876,0,21.10,98.72,0.92,0.95,0",  # 14 elements
        "1.234,-0.456,0.078,21.35,0,712.4,9.876,0,21.10,98.72,0.92,0.95,0,42,0",  # 16
        "1.234,-0.456,0.078,21.35,0.5,712.4,9.876,0,21.10,98.72,0.92,0.95,0,42",  # diag not an integer
        "1.234,-0.456,0.078,21.35,0,7_12.4,9.876,0,21.10,98.72,0.92,0.95,0,42",
        "1.234,-0.456,0.078,inf,0,712.4,9.876,0,21.10,98.72,0.92,0.95,0,42",
        "1.234,-0.456,0.078,,0,712.4,9.876,0,21.10,98.72,0.92,0.95,0,42",
        "1.234,-0.456,0.078,21.35,0,712.4,9.876,0,21.10,98.72,0.92,0.95,0,NAN",
        "nan,-0.456,0.078,21.35,0,712.4,9.876,0,21.10,98.72,0.92,0.95,0,42",  # Campbell writes NAN
    ],
)
def test_malformed_records_are_format_errors(body: str) -> None:
    assert reason_of(make(), signed(body)) == "format"


@pytest.mark.parametrize("frame", [b"1.234,-0.456\r\n", b"\r\n", b"\xff\xfe,,,\r\n",
                                   EXAMPLE_BODY.encode() + b",xxxx\r\n", EXAMPLE_BODY.encode() + b",c6f\r\n"])
def test_truncated_garbled_or_unsigned_frames_are_format_errors(frame: bytes) -> None:
    assert reason_of(make(), frame) == "format"


def record(counter: int) -> bytes:
    return signed(f"1.0,2.0,0.1,20.0,0,700.0,10.0,0,20.0,98.0,0.9,0.9,0,{counter}")


def test_counter_gaps_are_counted_and_the_records_kept() -> None:
    driver = make()
    for counter in (60, 61, 62, 63, 0, 1):  # wraps at 64: no gap
        driver.parse(record(counter))
    assert (driver.counter_gaps, driver.lost_records) == (0, 0)
    assert driver.parse(record(4))[0] == 1.0  # 2 and 3 lost; the record is good data
    assert driver.parse(record(63))[0] == 1.0  # 5..62 lost (58 records)
    assert (driver.counter_gaps, driver.lost_records) == (2, 2 + 58)
    assert driver.last_counter == 63


def test_a_repeated_counter_is_a_counter_error() -> None:
    driver = make()
    driver.parse(record(5))
    assert reason_of(driver, record(5)) == "counter"
    assert make(counter_modulus=1000).parse(record(64))[0] == 1.0


def test_reset_forgets_the_counter_so_a_reconnect_is_no_gap() -> None:
    driver = make()
    driver.parse(record(5))
    driver.reset()
    driver.parse(record(30))
    assert (driver.counter_gaps, driver.lost_records, driver.last_counter) == (0, 0, 30)


def test_no_start_commands_and_config_limits() -> None:
    assert make().start_commands() == []
    with pytest.raises(ValidationError):
        IrgasonConfig.model_validate({"name": "ec", "port": "/dev/x", "signature_span": "everything"})
    with pytest.raises(ValidationError):
        IrgasonConfig.model_validate({"name": "ec", "port": "/dev/x", "counter_modulus": 1})


# --- variants an independent EC100 simulator may send (IRGASON manual, Table 8-1: counter range, signature span) ---


def test_a_counter_beyond_the_modulus_keeps_the_record_and_is_counted() -> None:
    driver = make()  # modulus 64, but the unit counts 0..255
    rows = [driver.parse(record(counter)) for counter in (62, 63, 64, 200, 255, 0, 1, 3)]
    assert [row[0] for row in rows] == [1.0] * 8
    assert driver.counter_out_of_range == 3
    assert (driver.counter_gaps, driver.lost_records) == (1, 1)  # only the in-range 1 -> 3 step is judged


def test_a_negative_counter_is_a_counter_error() -> None:
    assert reason_of(make(), signed("1.0,2.0,0.1,20.0,0,700.0,10.0,0,20.0,98.0,0.9,0.9,0,-1")) == "counter"


@pytest.mark.parametrize("span", list(SIGNATURE_SPANS))
def test_records_signed_over_any_documented_span_are_accepted_and_the_switch_counted(span: SignatureSpan) -> None:
    driver = make()
    for counter in range(5):
        row = driver.parse(signed(f"1.0,2.0,0.1,20.0,0,700.0,10.0,0,20.0,98.0,0.9,0.9,0,{counter}", span))
        assert row[0] == 1.0
    assert driver.signature_span == span
    assert driver.signature_span_switches == (0 if span == "co2_through_counter" else 1)


def test_without_fallback_another_span_is_a_checksum_bad_record() -> None:
    driver = make(signature_span_fallback=False)
    assert reason_of(driver, signed(EXAMPLE_BODY, "all_before_counter")) == "checksum"


def test_a_signature_matching_no_span_is_still_a_checksum_bad_record() -> None:
    frame = signed(EXAMPLE_BODY)
    wrong = frame[:-6] + f"{int(frame[-6:-2], 16) ^ 0x0F0F:04x}".encode() + b"\r\n"
    driver = make()
    assert reason_of(driver, wrong) == "checksum" and driver.signature_span_switches == 0


@pytest.mark.parametrize("unused", ["0", "NAN", "", "0.000", "-0.12"])
def test_element_13_is_not_read_whatever_it_holds(unused: str) -> None:
    body = f"1.234,-0.456,0.078,21.35,0,712.4,9.876,0,21.10,98.72,0.92,0.95,{unused},42"
    assert make().parse(signed(body))[:4] == (1.234, -0.456, 0.078, 21.35)
