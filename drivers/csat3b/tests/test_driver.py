"""CSAT3B record grammar: the signature of an example record (CSAT3B manual p. 55 algorithm), counter continuity,
NAN."""

from __future__ import annotations

import pytest

from drivers.csat3b import grammar
from drivers.csat3b.driver import CSAT3BConfig, CSAT3BDriver
from drivers.csat3b.simulator import CSAT3BSimulator
from gateway.driver_api import BadRecord

EXAMPLE = b"1.23456,-0.54321,0.08765,21.8473,0,17,bc5f\r"


def make_driver(**overrides: object) -> CSAT3BDriver:
    return CSAT3BDriver(CSAT3BConfig.model_validate({"name": "csat", "port": "/dev/null", **overrides}),
                        station="st1")


def test_signature_of_the_example_with_both_span_rules() -> None:
    fields = EXAMPLE.rstrip(b"\r").split(b",")
    assert grammar.signature(grammar.signed_part(fields, "through_diag")) == 0xBC5F
    assert grammar.signature(grammar.signed_part(fields, "through_counter")) == 0xDD98
    assert grammar.SIGNATURE_SPAN == "through_diag"


def test_builds_the_example_byte_for_byte() -> None:
    assert grammar.build_record(1.23456, -0.54321, 0.08765, 21.8473, 0, 17) == EXAMPLE


def test_parses_the_example() -> None:
    assert make_driver().parse(EXAMPLE) == (1.23456, -0.54321, 0.08765, 21.8473, 0.0)


def test_the_manual_span_rejects_the_example_without_fallback() -> None:
    with pytest.raises(BadRecord) as info:
        make_driver(signature_span="through_counter", signature_span_fallback=False).parse(EXAMPLE)
    assert info.value.reason == "checksum"


def test_counter_jump_counts_lost_records_and_repeat_is_dropped() -> None:
    driver = make_driver()
    driver.parse(grammar.build_record(1, 1, 1, 20, 0, 62))
    driver.parse(grammar.build_record(1, 1, 1, 20, 0, 2))  # 63, 0, 1 lost across the wrap
    assert driver.lost_records == 3
    with pytest.raises(BadRecord) as info:
        driver.parse(grammar.build_record(1, 1, 1, 20, 0, 2))
    assert info.value.reason == "counter"
    driver.reset()
    driver.parse(grammar.build_record(1, 1, 1, 20, 0, 40))
    assert driver.lost_records == 3


def test_nan_is_missing() -> None:
    record = grammar.build_record(None, None, None, None, 8, 3)
    assert b"NAN" in record
    assert make_driver().parse(record) == (None, None, None, None, 8.0)


@pytest.mark.parametrize("record", [b"", b"1,2,3", b"a,b,c,d,e,f,g", EXAMPLE.replace(b"bc5f", b"zzzz")])
def test_malformed_records_are_format_bad_records(record: bytes) -> None:
    with pytest.raises(BadRecord) as info:
        make_driver().parse(record)
    assert info.value.reason == "format"


def test_simulator_records_decode_to_their_logged_values() -> None:
    sim = CSAT3BSimulator("tcp://127.0.0.1:0", seed=2)
    driver = make_driver()
    for index in range(1000, 1100):
        frame = sim.frame(index, index / 20)
        assert driver.parse(frame) == sim._pending_values
    assert driver.lost_records == 0


def test_signature_equals_the_manuals_shift_and_add_on_any_bytes() -> None:
    """The table-driven signature against the manual's algorithm written out step by step (p. 55)."""
    import random

    def manual(data: bytes, seed: int = 0xAAAA) -> int:
        msb, lsb = seed >> 8, seed & 0xFF
        for byte in data:
            new = ((lsb << 1) + msb + byte + (1 if lsb & 0x80 else 0)) & 0xFF
            msb, lsb = lsb, new
        return (msb << 8) | lsb

    rng = random.Random(7)
    for _ in range(2000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        seed = rng.randrange(1 << 16)
        assert grammar.signature(data, seed) == manual(data, seed)


def record_with(field: int, raw: bytes, counter: int = 17) -> bytes:
    """EXAMPLE with one value field replaced, its counter set and its signature recomputed."""
    fields = EXAMPLE.rstrip(b"\r").split(b",")
    fields[field] = raw
    fields[5] = str(counter).encode()
    fields[6] = f"{grammar.signature(grammar.signed_part(fields)):04x}".encode()
    return b",".join(fields) + grammar.TERMINATOR


@pytest.mark.parametrize(("field", "raw", "message"), [
    (0, b"1.2x", "Ux b'1.2x' is not a number"),
    (1, b"", "Uy b'' is not a number"),
    (3, b"--21.8", "Ts b'--21.8' is not a number"),
])
def test_a_value_that_is_not_a_number_is_named_and_its_counter_still_counts(field: int, raw: bytes,
                                                                           message: str) -> None:
    driver = make_driver()
    driver.parse(record_with(0, b"1.0", counter=10))
    with pytest.raises(BadRecord) as info:
        driver.parse(record_with(field, raw, counter=13))
    assert info.value.reason == "format" and info.value.message == message
    assert driver.lost_records == 2  # the counter was read before the values, as the record's place in the run


@pytest.mark.parametrize("raw", [b"NAN", b"nan", b"inf", b"-Infinity", b"1e999"])
def test_a_value_that_is_not_finite_is_missing_beside_the_others(raw: bytes) -> None:
    assert make_driver().parse(record_with(2, raw)) == (1.23456, -0.54321, None, 21.8473, 0.0)


def test_values_too_large_to_add_up_are_still_values() -> None:
    # the common path checks the four values' sum for finiteness; two huge ones overflow it, yet each is finite
    record = record_with(0, b"1.7e308")
    fields = record.rstrip(b"\r").split(b",")
    fields[1] = b"1.7e308"
    fields[6] = f"{grammar.signature(grammar.signed_part(fields)):04x}".encode()
    assert make_driver().parse(b",".join(fields)) == (1.7e308, 1.7e308, 0.08765, 21.8473, 0.0)


def test_a_six_field_record_is_named_with_its_bytes_as_received() -> None:
    with pytest.raises(BadRecord) as info:
        make_driver().parse(b"1,2,3,4,0,17\r\n")
    assert info.value.message == "6 fields, expected 7: b'1,2,3,4,0,17\\r\\n'"


# --- a unit (or an independent simulator) signing with the other documented span ---------------------------------


@pytest.mark.parametrize(("configured", "sent"), [("through_diag", "through_counter"),
                                                  ("through_counter", "through_diag")])
def test_records_signed_under_the_other_span_are_accepted_and_the_switch_counted(configured: str, sent: str) -> None:
    driver = make_driver(signature_span=configured)
    records = [grammar.build_record(1.5, -0.25, 0.05, 20.0 + i, 0, i, span=sent) for i in range(5)]  # type: ignore[arg-type]
    assert [driver.parse(r)[3] for r in records] == [20.0, 21.0, 22.0, 23.0, 24.0]
    assert driver.signature_span_switches == 1  # switched once, then the other span is the active one


def test_manual_span_example_dd98_is_accepted_by_the_default_driver() -> None:
    assert make_driver().parse(b"1.23456,-0.54321,0.08765,21.8473,0,17,dd98\r") == (
        1.23456, -0.54321, 0.08765, 21.8473, 0.0)


def test_a_signature_matching_neither_span_is_still_a_checksum_bad_record() -> None:
    driver = make_driver()
    with pytest.raises(BadRecord) as info:
        driver.parse(grammar.build_record(1, 1, 1, 20, 0, 3, bad_signature=True))
    assert info.value.reason == "checksum" and driver.signature_span_switches == 0


def test_crlf_line_ends_are_accepted() -> None:
    # the runner splits at CR; the LF of a CR LF unit then leads the next record
    driver = make_driver()
    assert driver.parse(b"\n" + EXAMPLE) == (1.23456, -0.54321, 0.08765, 21.8473, 0.0)
