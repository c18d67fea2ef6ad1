"""The s-expression tokenizer/parser against the manual's record and command shapes (LI-7500RS/LI-7200RS manual App.
D)."""

from __future__ import annotations

import math

import pytest

from drivers.li7500 import sexpr

EXAMPLE = (
    "(Data (Ndx 2210)(DiagVal 248)(CO2Raw 1.4921e-1)(CO2D 1.6874e1)(H2OD 5.2310e2)"
    "(Temp 1.8352e1)(Pres 9.7125e1)(Aux 0)(Cooler 1.6021))"
)


def test_the_protocols_example_parses_into_labelled_pairs() -> None:
    parsed = sexpr.parse(EXAMPLE)
    assert parsed[0] == "Data"
    assert sexpr.pairs(parsed) == {
        "Ndx": "2210", "DiagVal": "248", "CO2Raw": "1.4921e-1", "CO2D": "1.6874e1", "H2OD": "5.2310e2",
        "Temp": "1.8352e1", "Pres": "9.7125e1", "Aux": "0", "Cooler": "1.6021",
    }


def test_render_reproduces_the_example_and_the_manuals_command() -> None:
    assert sexpr.render(sexpr.parse(EXAMPLE), space_after_head=True) == EXAMPLE
    command = "(Outputs(RS232(Freq 10)(Pres TRUE))(BW 10))"
    assert sexpr.render(sexpr.parse(command)) == command


def test_nesting_whitespace_and_quoted_strings() -> None:
    parsed = sexpr.parse(' \t( Outputs (RS232 (EOL "0D0A") (Freq 1)) (BW 5 ) )\r')
    assert parsed == ("Outputs", ("RS232", ("EOL", "0D0A"), ("Freq", "1")), ("BW", "5"))
    assert sexpr.parse("(Ack (received (Outputs (BW 5))))") == ("Ack", ("received", ("Outputs", ("BW", "5"))))


def test_labels_are_kept_case_sensitive() -> None:
    assert sexpr.parse("(data (co2d 1))") == ("data", ("co2d", "1"))


@pytest.mark.parametrize(
    ("atom", "value"),
    [("248", 248.0), ("1.6874e1", 16.874), ("1.5386712e-1", 0.15386712), ("-0.456", -0.456),
     ("-2.5E-03", -0.0025), ("+3.", 3.0), (".5", 0.5), ("0", 0.0)],
)
def test_numbers_in_exponent_and_signed_notation(atom: str, value: float) -> None:
    assert sexpr.number(atom) == value


@pytest.mark.parametrize("atom", ["1_000", "inf", "1e", "--1", "1.2.3", "TRUE", "", "0x10", "1e5e2"])
def test_things_float_would_take_or_that_are_not_numbers_are_refused(atom: str) -> None:
    with pytest.raises(ValueError):
        sexpr.number(atom)


def test_nan_spellings_give_nan() -> None:
    assert math.isnan(sexpr.number("nan")) and math.isnan(sexpr.number("-NaN"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("(Data (CO2D 1.6874e1)(H2OD 5.2310e2)", "truncated"),  # cut before the last ')'
        ("(Data (CO2D 1.6874e1)(H2OD 5.23", "truncated"),  # cut inside a value
        ("2e1)(H2OD 5.2310e2))", "does not start"),  # joined the stream mid-record
        ("(Data (CO2D 1))(Data (CO2D 2))", "after the end"),  # two records, one line
        ("(Data (CO2D 1)))", "after the end"),
        ("(Data ())", "empty list"),
        ('(Outputs(EOL "0D0A))', "unterminated string"),
        ("", "empty"),
        ("   \r", "empty"),
    ],
)
def test_malformed_and_truncated_messages_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(sexpr.SExprError, match=fragment):
        sexpr.parse(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [(16.874, "1.6874000e1"), (-0.0012345678, "-1.2345678e-3"), (0.0, "0.0000000e0"), (523.1, "5.2310000e2"),
     (9.99999999, "1.0000000e1")],
)
def test_format_number_writes_licor_exponents_that_read_back(value: float, text: str) -> None:
    assert sexpr.format_number(value) == text
    assert sexpr.number(text) == pytest.approx(value, rel=1e-7)
