"""HMP155: the grammar on its own, the readings and their quality (VPD from the shared formula), the simulated
probes' command interpreter, and driver <-> simulator over a socat PTY through the bus's own line (real pyserial,
7E1), several probes on one line, every fault mode, and `sinkwatch station check`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.hmp155 import grammar
from drivers.hmp155.driver import HMP155Config, HMP155Driver, readings_from
from drivers.hmp155.simulator import FAULTS, HMP155LineSimulator, HMP155Probe
from gateway.driver_api import DeviceError, FailureKind, RtuSerialLine
from gateway.model import QualityFlag, Reading
from gateway.simulation.weather import MetSignal
from gateway.testing.serial_pty import socat_pty_pair
from gateway.variables import vapour_pressure_deficit_hpa

# A reply in the driver's FORM, checksum worked by hand: the bytes of "HMP05  45.23  18.20 0000 N " are
# 72+77+80 + 48+53 + 32+32 + 52+53+46+50+51 + 32+32 + 49+56+46+50+48 + 32 + 4*48 + 32 + 78 + 32 = 1325,
# and 1325 mod 256 = 45 = 0x2D.
EXAMPLE = b"HMP05  45.23  18.20 0000 N 2D\r\n"


def test_the_worked_example_parses_and_its_checksum_holds() -> None:
    assert grammar.checksum_cs2(b"HMP05  45.23  18.20 0000 N ") == "2D"
    values = grammar.parse_send(EXAMPLE, 5)
    assert (values.address, values.rh, values.t, values.errors, values.stat) == (5, 45.23, 18.2, (), "N")


@pytest.mark.parametrize(("reply", "reason"), [
    (b"HMP05  45.23  18.20 0000 N 2E\r\n", "checksum"),
    (b"HMP06  45.23  18.20 0000 N 2E\r\n", "address"),
    (b"RH=  45.2 %RH  T=  18.2 'C\r\n", "format"),  # the factory FORM: ours is not installed
    (b"HMP05  45.23  18.20 0000 N 2D", "format"),  # cut short before CR LF
])
def test_unusable_replies_say_why(reply: bytes, reason: str) -> None:
    with pytest.raises(grammar.GrammarError) as info:
        grammar.parse_send(reply, 5)
    assert info.value.reason == reason


def test_stars_error_flags_and_heating_status_are_read() -> None:
    body = b"HMP05  45.23 ***.** 1010 H "
    values = grammar.parse_send(body + grammar.checksum_cs2(body).encode() + b"\r\n", 5)
    assert values.t is None and values.rh == 45.23
    assert values.errors == ("T", "RH") and values.stat == "H"


def test_the_form_fits_the_probes_command_line_and_replies_complete_at_their_ends() -> None:
    assert len(grammar.FORM_SPEC) <= grammar.FORM_MAX_CHARS
    assert grammar.FORM_COMMAND.startswith(grammar.ESC) and grammar.FORM_COMMAND.endswith(b"\r")
    assert grammar.send_reply_complete(b"SEND 5\r\n" + EXAMPLE) and not grammar.send_reply_complete(EXAMPLE[:-2])
    assert grammar.line_reply_complete(b"\r\nline closed\r\n") and grammar.line_reply_complete(b">")
    assert not grammar.line_reply_complete(b"\r\n") and not grammar.line_reply_complete(b"\r\nline clo")


# --- readings and their quality ----------------------------------------------------------------------------------


def config(**overrides: Any) -> HMP155Config:
    return HMP155Config.model_validate({"name": "ta_rh", "port": "/dev/null", "address": 5, **overrides})


def graded(values: grammar.SendValues, **overrides: Any) -> dict[str, Reading]:
    readings = readings_from(values, config(**overrides), "st1", datetime.now(UTC), True)
    return {r.variable: r for r in readings}


def test_vpd_is_the_shared_formula_of_the_published_ta_and_rh() -> None:
    readings = graded(grammar.SendValues(5, 45.23, 18.2, (), "N"), variable_suffix="_1_1_1")
    assert set(readings) == {"TA_1_1_1", "RH_1_1_1", "VPD_1_1_1"}
    assert readings["VPD_1_1_1"].value == vapour_pressure_deficit_hpa(18.2, 45.23)
    assert readings["VPD_1_1_1"].value == pytest.approx(11.4, abs=0.1)  # e_w(18.2) ~20.9 hPa x 0.548
    assert [readings[v].unit for v in ("TA_1_1_1", "RH_1_1_1", "VPD_1_1_1")] == ["degC", "%", "hPa"]
    assert all(r.qc is QualityFlag.GOOD and r.qc_reason is None for r in readings.values())
    assert set(graded(grammar.SendValues(5, 45.23, 18.2, (), "N"), publish_vpd=False)) == {"TA", "RH"}


def test_a_humidity_error_makes_rh_and_vpd_bad_but_leaves_ta_good() -> None:
    readings = graded(grammar.SendValues(5, 45.0, 18.0, ("RH",), "N"))
    assert readings["RH"].qc is readings["VPD"].qc is QualityFlag.BAD
    assert readings["TA"].qc is QualityFlag.GOOD
    assert readings["VPD"].qc_reason is not None and "humidity measurement error" in readings["VPD"].qc_reason


def test_a_missing_temperature_leaves_vpd_missing_with_the_reason() -> None:
    readings = graded(grammar.SendValues(5, 45.0, None, ("T",), "N"))
    assert readings["TA"].value is None and readings["TA"].qc is QualityFlag.MISSING
    assert readings["VPD"].value is None and readings["VPD"].qc is QualityFlag.MISSING
    assert readings["VPD"].qc_reason is not None and "temperature measurement error" in readings["VPD"].qc_reason
    assert readings["RH"].qc is QualityFlag.GOOD


@pytest.mark.parametrize(("stat", "flag"), [("N", QualityFlag.GOOD), ("h", QualityFlag.GOOD),
                                            ("H", QualityFlag.SUSPECT), ("S", QualityFlag.SUSPECT),
                                            ("X", QualityFlag.SUSPECT)])
def test_purge_and_sensor_heating_make_rh_suspect(stat: str, flag: QualityFlag) -> None:
    readings = graded(grammar.SendValues(5, 45.0, 18.0, (), stat))
    assert readings["RH"].qc is readings["VPD"].qc is flag
    assert readings["TA"].qc is QualityFlag.GOOD


def test_impossible_values_are_bad_and_a_memory_error_makes_everything_suspect() -> None:
    readings = graded(grammar.SendValues(5, 112.0, -95.0, (), "N"))
    assert readings["RH"].qc is readings["TA"].qc is readings["VPD"].qc is QualityFlag.BAD
    memory = graded(grammar.SendValues(5, 45.0, 18.0, ("MEM",), "N"))
    assert all(r.qc is QualityFlag.SUSPECT and "memory error" in (r.qc_reason or "") for r in memory.values())
    near_saturation = graded(grammar.SendValues(5, 101.2, 3.0, (), "N"))
    assert near_saturation["RH"].qc is QualityFlag.GOOD and (near_saturation["VPD"].value or 0) < 0


# --- the simulated probe -------------------------------------------------------------------------------------------


def test_in_poll_mode_only_the_addressed_probe_answers_send_and_open() -> None:
    probe = HMP155Probe(address=5)
    assert probe.handle_line(b"SEND 4") == b"" and probe.handle_line(b"FORM") == b""
    assert probe.handle_line(b"SEND 5").startswith(b"RH=")  # the factory FORM [U]
    assert probe.handle_line(b"OPEN 5") == b"\r\nHMP 5 line opened for operator commands\r\n"
    assert probe.handle_line(grammar.FORM_COMMAND[1:-1]) == b">"
    assert probe.handle_line(b"FORM").startswith(grammar.FORM_SPEC.encode())
    assert probe.handle_line(b"CLOSE") == b"\r\nline closed\r\n"
    assert probe.handle_line(b"FORM") == b""  # closed again: POLL mode ignores it
    values = grammar.parse_send(probe.handle_line(b"SEND 5"), 5)
    assert values.rh == probe.served[-1]["RH"] and values.t == probe.served[-1]["T"]


def test_stop_mode_settings_and_a_bad_form_are_answered_like_a_terminal_session() -> None:
    probe = HMP155Probe(address=0, mode="STOP")
    assert probe.handle_line(b"ADDR 12") == b"Address        : 12\r\n>"
    assert probe.handle_line(b"ECHO ON") == b"Echo           : ON\r\n>"
    assert probe.handle_line(b'FORM "x" NOPE') == b'FORM "x" NOPE\r\nInvalid format\r\n>'  # echoed from now on
    assert probe.handle_line(b"SMODE POLL").endswith(b"Serial mode    : POLL\r\n>")
    assert probe.handle_line(b"SEND 0") == b""  # now in POLL mode at address 12


def test_the_simulated_air_warms_by_day_and_dries_as_it_warms() -> None:
    clock = {"now": datetime(2025, 6, 21, 2, 0, tzinfo=UTC).timestamp()}
    probe = HMP155Probe(address=1, signal=MetSignal(cloudiness=0.0), wall_clock=lambda: clock["now"])
    probe.form = grammar.FORM_SPEC
    night = grammar.parse_send(probe.handle_line(b"SEND 1"), 1)
    clock["now"] = datetime(2025, 6, 21, 14, 0, tzinfo=UTC).timestamp()
    afternoon = grammar.parse_send(probe.handle_line(b"SEND 1"), 1)
    assert night.t is not None and afternoon.t is not None and afternoon.t > night.t + 7
    assert night.rh is not None and afternoon.rh is not None and afternoon.rh < night.rh - 20


# --- over a pseudo-terminal ----------------------------------------------------------------------------------------


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (Debian package socat)")
    with socat_pty_pair(tmp_path) as pair:
        yield pair


@pytest.fixture
def line(ptys: tuple[str, str]) -> Iterator[RtuSerialLine]:
    driver_line = RtuSerialLine(config(port=ptys[1]).serial_settings(), reopen_backoff_s=(0.0, 0.0))
    yield driver_line
    driver_line.close()


def make_driver(line: RtuSerialLine, **overrides: Any) -> HMP155Driver:
    # A patient timeout unless a test is about timeouts: a PTY reply on a loaded host can take longer than 0.3 s,
    # and the timeout then failed a quality-flag test once in ~15 runs
    settings = {"timeout_s": 1.0, **overrides}
    driver = HMP155Driver(config(port=line.settings.port, **settings), station="st1", clock_synced=lambda: True)
    driver.attach(line)
    driver.open()
    return driver


def by_variable(readings: list[Reading]) -> dict[str, Reading]:
    return {r.variable: r for r in readings}


@pytest.mark.integration
def test_driver_installs_its_form_then_reads_what_each_probe_on_the_line_served(
    ptys: tuple[str, str], line: RtuSerialLine
) -> None:
    probes = [HMP155Probe(address=5, seed=1), HMP155Probe(address=7, seed=2)]
    with HMP155LineSimulator(ptys[0], probes) as bus:
        drivers = [make_driver(line), make_driver(line, address=7, name="ta_rh_10m")]
        polled = [[by_variable(d.poll()) for d in drivers] for _ in range(3)]
    assert bus.collisions == 0
    assert probes[0].commands[:4] == ["OPEN 5", grammar.FORM_COMMAND[1:-1].decode(), "CLOSE", "SEND 5"]
    assert probes[1].commands.count("SEND 7") == 3 and probes[1].form == grammar.FORM_SPEC
    for probe_index, probe in enumerate(probes):
        for poll, served in zip(polled, probe.served, strict=True):
            readings = poll[probe_index]
            assert readings["TA"].value == served["T"] and readings["RH"].value == served["RH"]
            assert readings["VPD"].value == vapour_pressure_deficit_hpa(served["T"], served["RH"])
            assert all(r.qc is QualityFlag.GOOD for r in readings.values())


@pytest.mark.integration
@pytest.mark.parametrize(("fault", "kind", "words"), [
    ("no_reply", FailureKind.TIMEOUT, "POLL mode with address 5"),
    ("garbage", FailureKind.PROTOCOL, "re-installs"),
    ("bad_checksum", FailureKind.CRC, "termination"),
    ("slow", FailureKind.TIMEOUT, "4800 7E1"),
])
def test_faults_surface_as_device_errors_and_the_driver_recovers(ptys: tuple[str, str], line: RtuSerialLine,
                                                                 fault: str, kind: FailureKind, words: str) -> None:
    probe = HMP155Probe(address=5)
    with HMP155LineSimulator(ptys[0], [probe]):
        driver = make_driver(line, timeout_s=0.3)  # shorter than the slow probe's 0.5 s
        if fault != "no_reply":
            driver.poll()  # configured and working before the fault
        probe.set_fault(fault)
        with pytest.raises(DeviceError) as info:
            driver.poll()
        probe.set_fault("none")
        driver.config.timeout_s = 1.0  # room for a slow reply still in flight
        recovered = by_variable(driver.poll())
    assert info.value.kind is kind and "ta_rh" in info.value.message
    assert info.value.hint is not None and words in info.value.hint
    assert recovered["TA"].value == probe.served[-1]["T"]


@pytest.mark.integration
@pytest.mark.parametrize(("fault", "variable", "flag"), [
    ("t_error", "TA", QualityFlag.MISSING),
    ("rh_error", "RH", QualityFlag.BAD),
    ("purge", "RH", QualityFlag.SUSPECT),
])
def test_device_status_reaches_the_quality_flag(ptys: tuple[str, str], line: RtuSerialLine, fault: str,
                                                variable: str, flag: QualityFlag) -> None:
    with HMP155LineSimulator(ptys[0], [HMP155Probe(address=5, fault=fault)]):
        readings = by_variable(make_driver(line).poll())
    assert readings[variable].qc is flag and readings["VPD"].qc is flag
    assert readings[variable].qc_reason


@pytest.mark.integration
def test_a_form_changed_behind_the_drivers_back_is_reinstalled(ptys: tuple[str, str], line: RtuSerialLine) -> None:
    probe = HMP155Probe(address=5)
    with HMP155LineSimulator(ptys[0], [probe]):
        driver = make_driver(line)
        driver.poll()
        probe.form = '"RH=" 4.1 RH #r #n'  # someone at a terminal
        with pytest.raises(DeviceError) as info:
            driver.poll()
        assert info.value.kind is FailureKind.PROTOCOL
        assert by_variable(driver.poll())["RH"].value == probe.served[-1]["RH"]
    assert probe.form == grammar.FORM_SPEC and probe.commands.count("OPEN 5") == 2


@pytest.mark.integration
def test_station_check_reads_an_hmp155(ptys: tuple[str, str], tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from gateway.cli import app

    station = tmp_path / "station.yaml"
    station.write_text(yaml.safe_dump({
        "site": "forest", "station": "st1", "buffer": {"path": str(tmp_path / "buffer.sqlite")},
        "sensors": [{"name": "ta_rh_2m", "driver": "hmp155", "port": ptys[1], "address": 3, "timeout_s": 0.5,
                     "variable_suffix": "_1_1_1"}],
    }))
    with HMP155LineSimulator(ptys[0], [HMP155Probe(address=3)]):
        result = CliRunner().invoke(app, ["station", "check", "-c", str(station)])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("ta_rh_2m"))
    assert " PASS " in row and "TA_1_1_1 = " in row


def test_an_unattached_driver_opens_a_line_of_its_own_and_names_a_missing_port(tmp_path: Path) -> None:
    driver = HMP155Driver(config(port=str(tmp_path / "ttyUSB9")), station="st1")
    with pytest.raises(DeviceError) as info:
        driver.poll()
    driver.close()
    assert info.value.kind is FailureKind.NO_PORT and "ttyUSB9" in info.value.message


def test_config_defaults_are_the_factory_settings_and_addresses_stop_at_99() -> None:
    assert config().serial_settings().describe() == "4800 7E1"
    with pytest.raises(ValidationError, match="address"):
        config(address=100)


def test_every_fault_mode_is_exercised_above() -> None:
    assert set(FAULTS) == {"none", "no_reply", "garbage", "bad_checksum", "t_error", "rh_error", "purge", "slow"}


# --- variants the user guide allows and our simulator did not send (docs/reliability.md, 2026-12-06) -------------


def signed(body: bytes, end: bytes = b"\r\n") -> bytes:
    return body + grammar.checksum_cs2(body).encode() + end


@pytest.mark.parametrize("end", [b"\r\n", b"\r", b"\n"])
def test_variant_line_end_cr_lf_cr_or_lf_ends_the_reply(end: bytes) -> None:
    reply = signed(b"HMP05  45.23  18.20'C    0000 N ", end)
    assert grammar.send_reply_complete(reply)
    values = grammar.parse_send(reply, 5)
    assert (values.rh, values.t) == (45.23, 18.2)


@pytest.mark.parametrize("echo", [b"SEND 5\r\n", b"\x1bSEND 5\r\n", b"SEND 5\r", b"\x1bSEND 5\r"])
def test_variant_echo_on_with_esc_or_a_bare_cr_is_not_taken_for_the_reply(echo: bytes) -> None:
    reply = signed(b"HMP05  45.23  18.20'C    0000 N ")
    assert not grammar.send_reply_complete(echo)
    assert grammar.send_reply_complete(echo + reply)
    assert grammar.parse_send(echo + reply, 5).t == 18.2


@pytest.mark.parametrize(("body", "t"), [
    (b"HMP05  45.23  64.76'F    0000 N ", 18.2),  # UNIT N: T in degF
    (b"HMP05  45.23  18.20'C    0000 N ", 18.2),
    (b"HMP05  45.23  18.20 0000 N ", 18.2),  # a FORM without U5: metric, as before
    (b"HMP05  45.23 ***.**'F    1000 N ", None),
])
def test_variant_temperature_unit_printed_by_u5_is_honoured(body: bytes, t: float | None) -> None:
    values = grammar.parse_send(signed(body), 5)
    assert values.t == (None if t is None else pytest.approx(t, abs=0.01))


@pytest.mark.parametrize(("body", "stat"), [
    (b"HMP05  45.23  18.20'C    0000 N 0     ", "N"),  # revision C: STAT in a 7-character field
    (b"HMP05  45.23  18.20'C    0000 h 115   ", "h"),
    (b"HMP05  45.23  18.20'C    0000 H 159.0 ", "H"),
    (b"HMP 5  45.23  18.20'C    0000 N ", "N"),  # ADDR space-filled
])
def test_variant_seven_character_stat_and_space_filled_address_are_read(body: bytes, stat: str) -> None:
    values = grammar.parse_send(signed(body), 5)
    assert (values.address, values.rh, values.t, values.stat) == (5, 45.23, 18.2, stat)


def test_variant_a_checksum_still_guards_the_seven_character_stat() -> None:
    reply = signed(b"HMP05  45.23  18.20'C    0000 H 159.0 ")
    with pytest.raises(grammar.GrammarError) as info:
        grammar.parse_send(reply.replace(b"159.0", b"158.0"), 5)
    assert info.value.reason == "checksum"


@pytest.mark.integration
@pytest.mark.parametrize(("units", "stat_chars"), [("N", 1), ("M", 7), ("N", 7)])
def test_variant_probe_in_degf_or_with_seven_character_stat_is_read_through_the_driver(
    ptys: tuple[str, str], line: RtuSerialLine, units: str, stat_chars: int
) -> None:
    probe = HMP155Probe(address=5, seed=3, units=units, stat_chars=stat_chars)
    with HMP155LineSimulator(ptys[0], [probe]):
        readings = by_variable(make_driver(line).poll())
    served_t = probe.served[-1]["T"]
    expected_t = (served_t - 32.0) * 5.0 / 9.0 if units == "N" else served_t
    assert readings["TA"].value == pytest.approx(expected_t, abs=1e-9)
    assert readings["RH"].value == probe.served[-1]["RH"] and readings["TA"].qc is QualityFlag.GOOD


@pytest.mark.integration
def test_variant_probe_refusing_u5_gets_the_form_without_the_unit(ptys: tuple[str, str], line: RtuSerialLine) -> None:
    probe = HMP155Probe(address=5, seed=4, without_modifiers=frozenset({"U5"}))
    with HMP155LineSimulator(ptys[0], [probe]):
        driver = make_driver(line)
        for _ in range(2):  # the FORM with U5 was refused twice: the factory FORM answered
            with pytest.raises(DeviceError) as info:
                driver.poll()
        readings = by_variable(driver.poll())
    assert info.value.kind is FailureKind.PROTOCOL and driver.form_fallbacks == 1
    assert probe.form == grammar.FORM_SPEC_WITHOUT_UNIT
    assert readings["TA"].value == probe.served[-1]["T"] and readings["TA"].qc is QualityFlag.GOOD


@pytest.mark.integration
def test_variant_noise_after_a_start_does_not_drop_the_unit_field(ptys: tuple[str, str], line: RtuSerialLine) -> None:
    probe = HMP155Probe(address=5, seed=5, units="N")
    with HMP155LineSimulator(ptys[0], [probe]):
        driver = make_driver(line)
        for _ in range(3):  # garbage at every fresh start, then a good reply, then garbage again
            probe.set_fault("garbage")
            with pytest.raises(DeviceError):
                driver.poll()
            probe.set_fault("none")
            readings = by_variable(driver.poll())
    assert driver.form_fallbacks == 0 and probe.form == grammar.FORM_SPEC
    assert readings["TA"].value == pytest.approx((probe.served[-1]["T"] - 32.0) * 5.0 / 9.0, abs=1e-9)
