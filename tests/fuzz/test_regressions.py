"""One explicit test per bug the parser fuzzing found (bench/fuzz.py, docs/reliability.md): each input here made a
parser raise an error it does not declare, or return a value its callers cannot use."""

from __future__ import annotations

import base64
import gzip
import json
import re
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.gmp252.driver import GMP252Config, GMP252Driver
from drivers.gmp343 import grammar as gmp343_grammar
from drivers.gmp343.driver import GMP343Driver
from drivers.li7500 import sexpr
from drivers.li7500.driver import LI7500Driver
from firmware_bridge import protocol as p
from firmware_bridge.sdi12 import Sdi12Error, crc16_arc, crc_chars, parse_values
from gateway.central.ingest import Malformed, parse_batch, parse_raw_chunk
from gateway.configfile import MAX_YAML_DEPTH, ConfigError, read_yaml_mapping
from gateway.driver_api import BadRecord
from gateway.flux.files import load_metadata, load_settings
from gateway.model import QualityFlag, Reading, TimeSource
from gateway.rawarchive.archive import HEADER_PREFIX

from .targets import REPO_ROOT, FakeLine, IngestHarness

EDDYPRO_R1 = REPO_ROOT / "tests" / "data" / "ec-raw" / "eddypro" / "R1_dr_ba_maxcov_wpl_30min"


# --- drivers ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("high_word", [0x7F80, 0xFF80])  # +inf, -inf (low word first on the wire)
def test_gmp252_infinite_float_is_a_missing_value_with_its_reason(high_word: int) -> None:
    driver = GMP252Driver(GMP252Config(name="co2", port="/dev/fuzz", address=240), station="st1")
    driver.attach(FakeLine(registers=[[0x0000, high_word], [0x0000, 0x41A0], [0, 0]]))
    co2 = next(r for r in driver.poll() if r.variable == "CO2")
    assert co2.value is None and co2.qc == QualityFlag.MISSING
    assert co2.qc_reason is not None and "non-finite value (" in co2.qc_reason and "inf)" in co2.qc_reason


@pytest.mark.parametrize("token", ["inf", "-1e400", "nan", "1_0", "\u0663", "Infinity"])
def test_gmp343_refuses_numbers_the_probe_never_prints(token: str) -> None:
    reply = f"  {token}  421.95  422.40  18.72 (R C C+F T)\r\n>".encode()
    with pytest.raises(gmp343_grammar.GrammarError, match="not a finite number"):
        gmp343_grammar.parse_send(reply)


def test_gmp343_missing_value_with_a_long_errs_text_keeps_the_reason_within_200_characters() -> None:
    config = GMP343Driver.Config.model_validate({"name": "co2air", "driver": "gmp343", "port": "/dev/fuzz"})
    driver = GMP343Driver(config, station="st1")
    send = b"  ****  421.95  ****  18.72 (R C C+F T)\r\n>"
    errs = b"E" * 400 + b"\r\n>"
    driver.attach(FakeLine(replies=[b">", b"ECHO       : OFF\r\n>", b">", send, errs]))
    co2 = next(r for r in driver.poll() if r.variable.startswith("CO2"))
    assert co2.value is None and co2.qc_reason is not None and len(co2.qc_reason) <= 200
    assert co2.qc_reason.startswith("probe printed no value; errs: EEE")


def test_deeply_nested_s_expression_is_refused_by_depth() -> None:
    text = "(" * 3000 + "Data" + ")" * 3000
    with pytest.raises(sexpr.SExprError, match="nested deeper than 32 levels"):
        sexpr.parse(text)
    driver = LI7500Driver(LI7500Driver.Config.model_validate({"name": "irga", "driver": "li7500",
                                                               "port": "/dev/fuzz", "labels": False,
                                                               "outputs": ["Ndx", "CO2D"]}), station="st1")
    with pytest.raises(BadRecord) as caught:
        driver.parse(text.encode() + b"\n")
    assert caught.value.reason == "format"
    assert sexpr.parse("(Outputs(RS232(Freq 10)(Labels TRUE)))") == ("Outputs", ("RS232", ("Freq", "10"),
                                                                                  ("Labels", "TRUE")))


@pytest.mark.parametrize("diag, problem", [("9" * 400, "out of range"), ("1_0", "not a number")])
def test_irgason_integer_element_too_large_is_a_bad_record(diag: str, problem: str) -> None:
    from drivers.irgason.driver import IrgasonConfig, IrgasonDriver, campbell_signature

    elements = ["1.234", "-0.456", "0.078", "21.35", diag, "712.4", "9.876", "0", "21.10", "98.72", "0.92", "0.95",
                "0", "42"]
    signature = campbell_signature(",".join(elements[5:14]).encode())  # diag (element 5) is outside the span
    driver = IrgasonDriver(IrgasonConfig(name="irga", port="/dev/fuzz"), station="st1")
    with pytest.raises(BadRecord, match=problem):  # OverflowError out of parse before the fix
        driver.parse(",".join([*elements, f"{signature:04x}"]).encode() + b"\r\n")


# --- firmware bridge ----------------------------------------------------------------------------------------------


def test_identity_with_an_unknown_channel_kind_is_a_protocol_error() -> None:
    body = b"board001" + bytes([1, 2, 3, 1]) + bytes([7, 0, 1]) + bytes([0, 9])
    with pytest.raises(p.ProtocolError, match="unknown channel kind 9") as caught:
        p.Identity.decode(body)
    assert caught.value.kind == "value"


def test_sdi12_reply_with_an_unknown_status_is_a_protocol_error() -> None:
    with pytest.raises(p.ProtocolError, match="unknown SDI-12 status 200"):
        p.Sdi12Reply.decode(bytes([1, 0, 0, 0, 0, 0, 200]) + b"0+1.0\r\n")


@pytest.mark.parametrize("reply, with_crc, problem", [
    ("0+-\r\n", False, "not a sequence of"),
    ("0-.\r\n", False, "not a sequence of"),
    ("0+1.5+\u00e9\r\n", True, "non-ASCII"),
    ("0+" + "9" * 400 + "\r\n", False, "too large"),
])
def test_sdi12_values_refuse_what_is_not_a_value(reply: str, with_crc: bool, problem: str) -> None:
    with pytest.raises(Sdi12Error, match=problem):
        parse_values(reply, "0", with_crc)


def test_sdi12_values_still_parse_the_teros_example_with_its_crc() -> None:
    text = "0+2009.87+22.3+112"
    assert parse_values(text + crc_chars(crc16_arc(text)) + "\r\n", "0", True) == [2009.87, 22.3, 112.0]


# --- config and flux files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, problem", [
    (b"site: \x8f\n", "not UTF-8 text"),
    (b"site: " + b"[" * 2000 + b"]" * 2000, "nested too deeply"),
    (b"site: !!int abc\n", "tagged value"),
    (b"site: !!float\n", "tagged value"),
])
def test_yaml_configs_refuse_with_a_config_error(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "station.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=problem):
        read_yaml_mapping(path)


def test_yaml_nesting_is_refused_past_the_depth_limit_not_at_pythons_recursion_limit(tmp_path: Path) -> None:
    """A config nests a few levels; the loader refuses a node deeper than MAX_YAML_DEPTH (the top-level mapping is
    level 1), naming where, instead of composing until Python's recursion limit (1-2 s of CPU for 3 kB of
    brackets)."""
    path = tmp_path / "central.yaml"
    lists = MAX_YAML_DEPTH - 1  # the innermost list at the limit
    path.write_text("site: " + "[" * lists + "]" * lists + "\n", encoding="utf-8")
    data: object = read_yaml_mapping(path)["site"]
    for _ in range(lists - 1):
        assert isinstance(data, list) and len(data) == 1
        data = data[0]
    assert data == []
    path.write_text("site: " + "[" * (lists + 1) + "]" * (lists + 1) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"line 1, column {len('site: ') + lists + 1}: lists or mappings nested "
                                          rf"deeper than {MAX_YAML_DEPTH} levels"):
        read_yaml_mapping(path)


@pytest.mark.parametrize("key, value", [("sr_num_spk", "inf"), ("sr_num_spk", "1e400")])
def test_eddypro_project_with_an_infinite_count_is_a_config_error(tmp_path: Path, key: str, value: str) -> None:
    text = (EDDYPRO_R1 / "eddypro_settings_echo.eddypro").read_text()
    path = tmp_path / "run.eddypro"
    assert f"\n{key}=" in text
    path.write_text(re.sub(rf"\n{key}=[^\n]*", f"\n{key}={value}", text))
    with pytest.raises(ConfigError, match="cannot parse settings"):
        load_settings(path)


def test_eddypro_metadata_with_infinite_header_rows_or_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    text = (EDDYPRO_R1 / "input_DE-HoH.metadata").read_text()
    path = tmp_path / "site.metadata"
    path.write_text(text.replace("header_rows=1", "header_rows=1e400", 1))
    with pytest.raises(ConfigError, match="cannot parse metadata"):
        load_metadata(path)
    path.write_bytes(text.encode() + b"\n;\xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_metadata(path)


# --- MQTT payloads ----------------------------------------------------------------------------------------------------


def test_reading_whose_offset_leaves_the_calendar_is_a_schema_error() -> None:
    reading = {"station": "st1", "sensor": "s", "variable": "CO2", "value": 1.0, "unit": "u",
               "time": "0001-01-01T00:00:00+23:59", "time_source": "gateway", "clock_synced": True, "qc": 0}
    payload = json.dumps({"schema_version": 1, "site": "site1", "station": "st1", "seq": 1,
                          "sent": "2026-11-25T10:00:00Z", "readings": [reading]}).encode()
    with pytest.raises(Malformed) as caught:  # an OverflowError out of the model before the fix
        parse_batch("site1", "st1", payload)
    assert caught.value.reason == "schema"
    # a datetime handed over by our own code gets the same treatment
    east = timezone(timedelta(hours=23, minutes=59))
    with pytest.raises(ValidationError, match="outside the range of UTC dates"):
        Reading(station="st1", sensor="s", variable="CO2", value=1.0, unit="u", time=datetime(1, 1, 1, tzinfo=east),
                time_source=TimeSource.GATEWAY, clock_synced=True, qc=QualityFlag.GOOD)


@pytest.mark.parametrize("time", ["1600-01-01T00:00:00Z", "2300-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                  "2262-04-11T23:47:17Z"])
def test_reading_outside_the_storable_range_is_dead_lettered_not_a_crash_of_the_store(time: str) -> None:
    harness = IngestHarness()
    reading = {"station": "st1", "sensor": "s", "variable": "CO2", "value": 1.0, "unit": "u", "time": time,
               "time_source": "gateway", "clock_synced": True, "qc": 0}
    good = {**reading, "time": "2026-11-25T10:00:00Z"}
    payload = json.dumps({"schema_version": 1, "site": "site1", "station": "st1", "seq": 1,
                          "sent": "2026-11-25T10:00:00Z", "readings": [good, reading]}).encode()
    harness.handle(("sinkwatch/v1/site1/st1/readings", payload))  # OverflowError out of SQLite before the fix
    counters = harness.ingestor.counters()
    # set aside alone, like any implausible stamp (gateway/central/ingest.py); its good neighbour is stored
    assert counters["readings_set_aside"] == {"implausible_time": 1} and counters["readings_stored"] == 1
    assert counters["malformed"] == {}


@pytest.mark.parametrize("topic", ["sinkwatch/v1/site1/st1/readings", "sinkwatch/v1/site1/st1/other"])
def test_deeply_nested_json_payload_is_dead_lettered_not_a_crash_of_the_worker(topic: str) -> None:
    harness = IngestHarness()
    harness.handle((topic, b"[" * 100_000))  # RecursionError out of handle() while naming the seq, before the fix
    assert harness.ingestor.counters()["dead_lettered"] == 1


def test_flux_period_outside_the_storable_range_is_dead_lettered() -> None:
    harness = IngestHarness()
    record = {"schema_version": 1, "site": "site1", "station": "st1", "start": "2299-12-31T23:30:00Z",
              "end": "2300-01-01T00:00:00Z", "status": "ok", "reasons": [], "engine_version": "sinkwatch-ec 0.1.0",
              "settings_hash": "0123456789abcdef", "values": {"FC": -1.5}}
    harness.handle(("sinkwatch/v1/site1/st1/fluxes", json.dumps(record).encode()))
    counters = harness.ingestor.counters()
    assert counters["malformed"] == {"schema": 1} and counters["flux_records_stored"] == 0


def raw_payload(file_bytes: bytes) -> bytes:
    data = gzip.compress(file_bytes, mtime=0)
    return json.dumps({"schema_version": 1, "site": "site1", "station": "st1", "sensor": "sonic",
                       "file": "sonic_20261125T1000Z.csv.gz", "format": "sinkwatch-raw/1",
                       "encoding": "gzip+base64", "size": len(data),
                       "data": base64.b64encode(data).decode()}).encode()


@pytest.mark.parametrize("header, problem", [
    ("5", "not an object"),
    ('["site1"]', "not an object"),
    ("[" * 100_000 + "]" * 100_000, "header is not JSON"),
])
def test_raw_file_header_that_is_not_a_json_object_is_bad_data(header: str, problem: str) -> None:
    with pytest.raises(Malformed, match=problem) as caught:
        parse_raw_chunk("site1", "st1", raw_payload((HEADER_PREFIX + header + "\nU,V\n").encode()))
    assert caught.value.reason == "bad_data"


def test_raw_file_check_does_not_hold_the_inflated_file_in_memory() -> None:
    header = HEADER_PREFIX + json.dumps({"site": "site1", "station": "st1", "sensor": "sonic"}) + "\n"
    inflated = header.encode() + b"0" * (64 << 20)  # 64 MiB that gzip packs into ~64 KiB
    payload = raw_payload(inflated)
    tracemalloc.start()
    try:
        chunk, data = parse_raw_chunk("site1", "st1", payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert chunk.sensor == "sonic" and len(data) == chunk.size
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB while checking a 64 MiB file"


# --- raw archive and EddyPro method files -----------------------------------------------------------------------


@pytest.mark.parametrize("header, problem", [
    ("5", "header is JSON but not an object"),
    ("[" * 5000, "header is not JSON"),
    ('{"format": "sinkwatch-raw", "version": 1, "columns": [1, 2]}', "not a list of {name, unit} objects"),
])
def test_raw_archive_with_a_broken_header_is_a_value_error(tmp_path: Path, header: str, problem: str) -> None:
    from gateway.rawarchive.archive import read_archive

    path = tmp_path / "sonic_20261125T1000Z.csv.gz"
    path.write_bytes(gzip.compress((HEADER_PREFIX + header + "\nTIME,U\n1.0,2.0\n").encode()))
    with pytest.raises(ValueError, match=problem):
        read_archive(path)


def test_raw_archive_cut_after_its_header_is_a_value_error(tmp_path: Path) -> None:
    from gateway.rawarchive.archive import CSV_FORMAT_VERSION, read_archive

    path = tmp_path / "sonic_20261125T1000Z.csv.gz.part"
    path.write_bytes(gzip.compress((HEADER_PREFIX + json.dumps({"version": CSV_FORMAT_VERSION})).encode()))
    with pytest.raises(ValueError, match="no column-name line"):
        read_archive(path)


def test_spectral_assessment_with_a_short_exp_line_is_a_value_error() -> None:
    from gateway.flux.ec.spectral import parse_spectral_assessment

    text = (REPO_ROOT / "tests" / "data" / "ec-raw" / "spectral_assessment.txt").read_text()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split() == ["exp1", "exp2", "exp3"])
    lines[at + 1] = lines[at + 1].split()[0]
    with pytest.raises(ValueError, match="expected the three numbers exp1 exp2 exp3, found 1"):
        parse_spectral_assessment("\n".join(lines))
