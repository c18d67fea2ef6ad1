"""LI-COR LI-7500DS/RS against a clean-room instrument: messages a conforming unit may send in LI-COR's
configuration grammar (LI-7500RS/LI-7200RS instruction manual, App. D), served over a PTY to the real stream
runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.li7500.driver import LI7500Driver
from tests.crosscheck.streaming import close_to, serve_stream, serve_stream_tcp

pytestmark = pytest.mark.integration

# the reference's EXAMPLE record, one line
EXAMPLE = (b"(Data (Ndx 2210)(DiagVal 248)(CO2Raw 1.4921e-1)(CO2D 1.6874e1)(H2OD 5.2310e2)(Temp 1.8352e1)"
           b"(Pres 9.7125e1)(Aux 0)(Cooler 1.6021))\n")


def test_labelled_records_and_messages_a_unit_may_send(tmp_path: Path) -> None:
    payload = b"".join([
        EXAMPLE,
        # the labels in another order, signed values, an upper-case exponent, CR LF line end, signal strength
        b"(Data (CO2SS 9.85E1)(Pres 1.01325e2)(Temp -5.5e0)(H2OD 1.2e2)(CO2D 1.75e1)(DiagVal 255)(Ndx 2211))\r\n",
        # the reply to the driver's (Outputs ...) command, a rejected command, a diagnostics record
        b"(Ack (Received TRUE)(Val 0))\n",
        b"(Error (Received FALSE)(Msg \"unknown item Foo\"))\n",
        b"(Diagnostics (Chopper TRUE)(Detector TRUE)(PLL TRUE)(Sync TRUE))\n",
        # SmartFlux-style extra items (date, time and sonic values) the driver has no column for
        b"(Data (Ndx 2212)(Date 2026-12-06)(Time 12:00:00:050)(U -1.25)(DiagVal 247)(CO2D 1.68e1)(H2OD 5.2e2)"
        b"(Temp 1.8e1)(Pres 9.7e1))\n",
        # plain decimals (no exponent), a tab and spaces between items
        b"(Data\t(Ndx 2213) (DiagVal 248) (CO2D 16.9)(H2OD 523)(Temp 18.4)(Pres 97.1) )\n",
    ])
    served = serve_stream(LI7500Driver, {"configure": False}, payload, tmp_path, frames=7)
    assert served.columns == ["DIAG", "CO2", "H2O", "T_CELL", "PRESS", "CO2SS"]
    expected = [
        (248.0, 16.874, 523.10, 18.352, 97.125, None),
        (255.0, 17.5, 120.0, -5.5, 101.325, 98.5),
        (247.0, 16.8, 520.0, 18.0, 97.0, None),
        (248.0, 16.9, 523.0, 18.4, 97.1, None),
    ]
    assert served.health.bad == {}
    assert served.health.messages == 3
    assert served.driver.messages == {"Ack": 1, "Error": 1, "Diagnostics": 1}
    assert served.driver.last_error is not None and "unknown item Foo" in served.driver.last_error
    assert len(served.rows) == len(expected)
    for got, want in zip(served.rows, expected, strict=True):
        assert close_to(got, want), (got, want)


def test_a_record_cut_short_or_garbled_is_counted_not_read(tmp_path: Path) -> None:
    payload = b"".join([
        b"(Temp 1.8352e1)(Pres 9.7125e1)(Aux 0)(Cooler 1.6021))\n",  # joined mid-record
        b"(Data (Ndx 1)(DiagVal 248)(CO2D 1.6874e1)(H2OD 5.2310e2)(Temp 1.8352e1)(Pres 9.71",  # cut, then a new one
        EXAMPLE,
        b"(data (Ndx 2)(CO2D 1.0e1))\n",  # labels are case sensitive: not a record
    ])
    served = serve_stream(LI7500Driver, {"configure": False}, payload, tmp_path, frames=3)
    assert served.rows == []  # the example glued to the cut record is lost with it: one line, one record
    assert sum(served.health.bad.values()) == 3


def test_tab_delimited_records_without_labels(tmp_path: Path) -> None:
    outputs = ["Ndx", "DiagVal", "CO2D", "H2OD", "Temp", "Pres", "CO2SS"]
    payload = b"".join([
        b"2210\t248\t1.6874e1\t5.2310e2\t1.8352e1\t9.7125e1\t9.8e1\n",
        b"2211\t249\t-1.0e-1\t5.2e2\t-2.5e0\t1.0e2\t97\r\n",
    ])
    served = serve_stream(LI7500Driver, {"configure": False, "labels": False, "outputs": outputs}, payload,
                          tmp_path, frames=2)
    expected = [(248.0, 16.874, 523.1, 18.352, 97.125, 98.0), (249.0, -0.1, 520.0, -2.5, 100.0, 97.0)]
    assert served.health.bad == {}
    for got, want in zip(served.rows, expected, strict=True):
        assert close_to(got, want), (got, want)


def test_over_tcp_joined_mid_record_with_the_configuration_acknowledged(tmp_path: Path) -> None:
    """The Ethernet data port (TCP 7200): the connection comes up in the middle of a record, the driver's
    (Outputs ...) command is answered with an (Ack ...), records arrive split across reads."""
    payload = b"(Ack (Received TRUE))\n" + EXAMPLE * 3
    served = serve_stream_tcp(LI7500Driver, {}, payload, tmp_path, frames=5,
                              mid_record=b"(H2OD 5.2310e2)(Temp 1.8352e1)(Pres 9.7125e1))\n")
    assert served.received.startswith(b"(Outputs") and served.received.endswith(b"\n")
    assert served.health.messages == 1
    assert served.health.bad == {"format": 1}
    assert len(served.rows) == 3
    for got in served.rows:
        assert close_to(got, (248.0, 16.874, 523.10, 18.352, 97.125, None)), got
