"""Campbell CSAT3B and IRGASON/EC150 (EC100) against a clean-room instrument: records a conforming unit may send
(CSAT3B instruction manual, signature p. 55; IRGASON manual Table 8-1; EC150 manual App. C.1; EC155 manual
sec. 7.2.5), signed with Campbell's signature as its CRBasic documentation states it, served over a PTY to the
real stream runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.csat3b.driver import CSAT3BDriver
from drivers.irgason.driver import IrgasonDriver
from tests.crosscheck.frames import campbell_signature, csat3b_record, ec100_record
from tests.crosscheck.streaming import close_to, serve_stream

pytestmark = pytest.mark.integration


def test_the_signature_as_documented_gives_the_reference_examples() -> None:
    """Our clean-room signature reproduces both worked values of the reference record: bc5f over Ux..Diag (the
    span LSST observed), dd98 with the counter (the manual's wording)."""
    assert campbell_signature(b"1.23456,-0.54321,0.08765,21.8473,0") == 0xBC5F
    assert campbell_signature(b"1.23456,-0.54321,0.08765,21.8473,0,17") == 0xDD98


def test_csat3b_records_a_unit_may_send_are_read_to_their_values(tmp_path: Path) -> None:
    records = [
        csat3b_record("1.23456", "-0.54321", "0.08765", "21.8473", 0, 17),  # the reference's EXAMPLE (bc5f)
        csat3b_record("0.50000", "0.25000", "-0.12500", "20.0000", 0, 18, upper_hex=True),
        csat3b_record("NAN", "NAN", "NAN", "NAN", 64, 19),  # a blocked path: no values, a diagnostic word
        csat3b_record("2.00000", "1.00000", "0.10000", "19.5000", 4, 20, ending=b"\r\n"),  # CR LF line end
        csat3b_record("-1.00000", "0.00000", "0.00000", "18.0000", 0, 21),
    ]
    served = serve_stream(CSAT3BDriver, {}, b"".join(records), tmp_path, frames=len(records))
    assert served.columns == ["U", "V", "W", "T_SONIC", "DIAG_SONIC"]
    expected = [
        (1.23456, -0.54321, 0.08765, 21.8473, 0.0),
        (0.5, 0.25, -0.125, 20.0, 0.0),
        (None, None, None, None, 64.0),
        (2.0, 1.0, 0.1, 19.5, 4.0),
        (-1.0, 0.0, 0.0, 18.0, 0.0),
    ]
    assert served.health.bad == {}
    assert len(served.rows) == len(expected)
    for got, want in zip(served.rows, expected, strict=True):
        assert close_to(got, want), (got, want)


def test_csat3b_signed_as_the_manual_words_it_is_read_and_a_bad_signature_counted(tmp_path: Path) -> None:
    records = [
        csat3b_record("1.00000", "2.00000", "3.00000", "20.0000", 0, 62, span="through_counter"),
        csat3b_record("1.00000", "2.00000", "3.00000", "20.0000", 0, 63, span="through_counter"),
        csat3b_record("9.00000", "9.00000", "9.00000", "20.0000", 0, 0, span="through_counter", corrupt=True),
        csat3b_record("1.00000", "2.00000", "3.00000", "20.0000", 0, 1, span="through_counter"),
        csat3b_record("1.00000", "2.00000", "3.00000", "20.0000", 0, 5, span="through_counter"),  # 3 records lost
    ]
    served = serve_stream(CSAT3BDriver, {}, b"".join(records), tmp_path, frames=len(records))
    assert [r[:3] for r in served.rows] == [(1.0, 2.0, 3.0)] * 4
    assert served.health.bad == {"checksum": 1}
    assert served.driver.lost_records == 4  # counter 0 (the corrupted record) and 2, 3, 4


# elements 1..14 of an EC100 record as text; the reference's EXAMPLE
EXAMPLE = ["1.234", "-0.456", "0.078", "21.35", "0", "712.4", "9.876", "0", "21.10", "98.72", "0.92", "0.95", "0",
           "42"]
M_CO2, M_H2O = 44.0095, 18.01528  # g mol-1


def molar(co2_mg: float, h2o_g: float) -> tuple[float, float]:
    return co2_mg / M_CO2, h2o_g * 1000.0 / M_H2O


def with_elements(counter: int, **changes: str) -> list[str]:
    elements = list(EXAMPLE)
    for key, text in changes.items():
        elements[int(key.removeprefix("e")) - 1] = text
    elements[13] = str(counter)
    return elements


def test_ec100_records_a_unit_may_send_are_read_to_their_values(tmp_path: Path) -> None:
    records = [
        ec100_record(with_elements(42)),  # signed over elements 6..14 (EC155 manual text)
        ec100_record(with_elements(43, e13="NAN")),  # the unused element printed as NAN
        ec100_record(with_elements(44, e6="NAN", e7="NAN", e8="4095")),  # the gas path blocked
        ec100_record(with_elements(45, e1="NAN", e2="NAN", e3="NAN", e4="NAN", e5="3")),  # the sonic failed
        ec100_record(with_elements(46), first=1),  # signed over every element before the signature
        ec100_record(with_elements(47, e9="-5.25", e11="0.5")),
    ]
    served = serve_stream(IrgasonDriver, {}, b"".join(records), tmp_path, frames=len(records))
    co2, h2o = molar(712.4, 9.876)
    sonic = (1.234, -0.456, 0.078, 21.35, 0.0)
    rest = (21.10, 98.72, 0.92, 0.95)
    expected = [
        (*sonic, co2, h2o, 0.0, *rest),
        (*sonic, co2, h2o, 0.0, *rest),
        (*sonic, None, None, 4095.0, *rest),
        (None, None, None, None, 3.0, co2, h2o, 0.0, *rest),
        (*sonic, co2, h2o, 0.0, *rest),
        (*sonic, co2, h2o, 0.0, -5.25, 98.72, 0.5, 0.95),
    ]
    assert served.health.bad == {}
    assert len(served.rows) == len(expected)
    for got, want in zip(served.rows, expected, strict=True):
        assert close_to(got, want), (got, want)


def test_ec100_bad_signature_and_short_record_are_counted(tmp_path: Path) -> None:
    records = [
        ec100_record(with_elements(1)),
        ec100_record(with_elements(2, e6="999.9"), corrupt=True),
        b"1.234,-0.456,0.078\r\n",  # a record cut short (power dip, line noise)
        ec100_record(with_elements(3)),
    ]
    served = serve_stream(IrgasonDriver, {}, b"".join(records), tmp_path, frames=len(records))
    co2, _ = molar(712.4, 9.876)
    assert [round(r[5] or 0.0, 9) for r in served.rows] == [round(co2, 9)] * 2
    assert served.health.bad == {"checksum": 1, "format": 1}
