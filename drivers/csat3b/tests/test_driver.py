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


def test_the_manual_span_rejects_the_example() -> None:
    with pytest.raises(BadRecord) as info:
        make_driver(signature_span="through_counter").parse(EXAMPLE)
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
