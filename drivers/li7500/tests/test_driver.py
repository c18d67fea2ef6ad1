"""LI7500Driver's frame grammar: the manual's record shape, both label modes, non-data messages and bad frames."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from drivers.li7500.driver import COLUMNS, LI7500Config, LI7500Driver, diag_flags, outputs_command
from gateway.driver_api import BadRecord, StreamDriver

EXAMPLE = (
    b"(Data (Ndx 2210)(DiagVal 248)(CO2Raw 1.4921e-1)(CO2D 1.6874e1)(H2OD 5.2310e2)"
    b"(Temp 1.8352e1)(Pres 9.7125e1)(Aux 0)(Cooler 1.6021))\n"
)


def make(**overrides: Any) -> LI7500Driver:
    settings: dict[str, Any] = {"name": "irga", "port": "tcp://192.0.2.20:7200", **overrides}
    return LI7500Driver(LI7500Config.model_validate(settings), station="st1")


def reason_of(driver: LI7500Driver, frame: bytes) -> str:
    with pytest.raises(BadRecord) as caught:
        driver.parse(frame)
    return caught.value.reason


def test_is_a_stream_driver_with_the_documented_columns() -> None:
    assert isinstance(make(), StreamDriver)
    assert [(c.name, c.unit) for c in COLUMNS] == [
        ("DIAG", "1"), ("CO2", "mmol m-3"), ("H2O", "mmol m-3"), ("T_CELL", "degC"), ("PRESS", "kPa"),
        ("CO2SS", "%"),
    ]


def test_the_protocols_example_record() -> None:
    # CO2SS is not in the example (an original LI-7500 record): None; CO2Raw, Aux, Cooler have no column
    assert make().parse(EXAMPLE) == (248.0, 16.874, 523.1, 18.352, 97.125, None)


def test_the_manuals_li7200rs_record_with_cr_lf_and_eight_digit_mantissas() -> None:
    frame = (b"(Data (Ndx 1545)(DiagVal 250)(CO2Raw 1.5386712e-1)(CO2D 3.2183277e1)(H2ORaw 3.5775542e-2)"
             b"(H2OD 1.9687008e2)(Temp 2.4227569e1)(Pres 9.8640356e1)(Aux 0)(Cooler 1.5756724))\r\n")
    assert make().parse(frame) == (250.0, 32.183277, 196.87008, 24.227569, 98.640356, None)


def test_labels_in_any_order_negative_values_and_signal_strength() -> None:
    frame = b"(Data (CO2SS 9.61e1)(Pres 9.7e1)(Temp -1.25e1)(H2OD 4.5e1)(CO2D -3.5e-2)(DiagVal 240))\n"
    assert make().parse(frame) == (240.0, -0.035, 45.0, -12.5, 97.0, 96.1)


def test_a_nan_value_is_missing() -> None:
    assert make().parse(b"(Data (DiagVal 248)(CO2D nan)(H2OD 5.2e2))\n") == (248.0, None, 520.0, None, None, None)


@pytest.mark.parametrize(
    "frame",
    [
        b"(Data (Ndx 2210)(DiagVal 248)(CO2D 1.6874e1)(H2OD 5.23",  # truncated mid-value
        b"(Data (Ndx 2210)(DiagVal 248)(CO2D 1.6874e1)\n",  # lost its closing ')'
        b"874e1)(H2OD 5.2310e2)(Temp 1.8352e1))\n",  # the tail of a record (joined mid-stream)
        b"(data (CO2D 1.6874e1))\n",  # labels are case sensitive: not a Data record
        b"(Data (co2d 1.6874e1)(h2od 5.2e2))\n",  # ... and not our labels
        b"(Data (CO2D 1.68.74e1))\n",
        b"(Data (CO2D (1 2)))\n",
        b"(Data (DiagVal 24.5)(CO2D 1))\n",
        b"(Data (CO2D \xb51))\n",
        b"16.874\t523.1\n",  # tab record while labels: true
        b"\n",
    ],
)
def test_malformed_frames_are_format_errors(frame: bytes) -> None:
    assert reason_of(make(), frame) == "format"


@pytest.mark.parametrize("head", [b"Ack", b"Error", b"Diagnostics"])
def test_messages_that_are_not_data_are_counted_not_parsed(head: bytes) -> None:
    driver = make()
    frame = b"(" + head + b" (val TRUE)(Detail (a 1)))\n"
    assert reason_of(driver, frame) == "not_data"
    assert reason_of(driver, frame) == "not_data"
    assert driver.messages[head.decode()] == 2
    assert driver.last_error == ((b"(" + head + b" (val TRUE)(Detail (a 1)))").decode() if head == b"Error" else None)


def test_tab_delimited_records_follow_the_configured_order() -> None:
    driver = make(labels=False, outputs=["Pres", "CO2D", "Ndx", "H2OD", "DiagVal"])
    assert driver.parse(b"9.7125e1\t1.6874e1\t2210\t5.2310e2\t248\r\n") == (248.0, 16.874, 523.1, None, 97.125, None)


def test_a_labelled_record_is_still_accepted_when_labels_are_off() -> None:
    assert make(labels=False).parse(EXAMPLE) == (248.0, 16.874, 523.1, 18.352, 97.125, None)


@pytest.mark.parametrize("frame", [b"248\t1.6874e1\n", b"1\t2\t3\t4\t5\t6\t7\t8\n", b"1\t2\t3\tx\t5\t6\t7\n"])
def test_tab_records_with_the_wrong_field_count_or_text_are_format_errors(frame: bytes) -> None:
    assert reason_of(make(labels=False), frame) == "format"


def test_start_command_configures_rate_labels_and_exactly_the_outputs() -> None:
    command = outputs_command(LI7500Config(name="irga", port="/dev/ttyS0", frequency_hz=20, labels=False,
                                           outputs=("CO2D", "H2OD", "DiagVal")))
    assert command == (b"(Outputs(RS232(Freq 20)(Labels FALSE)(DiagRec FALSE)(CO2D TRUE)(H2OD TRUE)(DiagVal TRUE)"
                       b"(Ndx FALSE)(CO2Raw FALSE)(H2ORaw FALSE)(Temp FALSE)(Pres FALSE)(Aux FALSE)(Cooler FALSE)"
                       b"(CO2SS FALSE)))\n")
    assert make(configure=False).start_commands() == []
    assert make().start_commands() == [outputs_command(make().config)]


@pytest.mark.parametrize(
    "settings",
    [{"outputs": []}, {"outputs": ["CO2D", "CO2D"]}, {"outputs": ["CO2 D"]}, {"outputs": ["Ndx", "Aux"]},
     {"frequency_hz": 25}, {"labels": "maybe"}, {"driver": "gmp252"}],
)
def test_config_refuses_what_cannot_work(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LI7500Config.model_validate({"name": "irga", "port": "tcp://h:7200", **settings})


def test_diag_flags_decode_the_original_li7500_byte() -> None:
    assert diag_flags(248) == {"chopper": True, "detector": True, "pll": True, "sync": True, "agc_percent": 50.0}
    assert diag_flags(0x5F)["chopper"] is False and diag_flags(0x5F)["agc_percent"] == 93.75
