"""Pure units: parameter parsing, InfluxQL rendering, line protocol, config loading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.central.alerts_config import RULE_NAMES, AlertsConfig
from gateway.central.config import SAMPLE_CONFIG_PATH, CentralConfig, load_central_config
from gateway.central.params import ParameterError, format_duration, parse_duration, parse_timestamp
from gateway.central.store import StoredReading
from gateway.central.store.base import to_ns
from gateway.central.store.influx import quote_identifier, reading_to_line, render_series_query
from gateway.configfile import ConfigError
from gateway.model import QualityFlag

from .helpers import T0, reading


@pytest.mark.parametrize(
    "text, expected",
    [("10s", timedelta(seconds=10)), ("30m", timedelta(minutes=30)), ("1h", timedelta(hours=1)),
     ("7d", timedelta(days=7)), (" 2h ", timedelta(hours=2))],
)
def test_parse_duration_accepts_number_and_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0s", "1.5h", "1h30m", "-1h", "10", "h", "10 s", "1w", "10S", "1e3s",
                                  "99999999999s", "1h; DROP"])
def test_parse_duration_rejects_everything_else(text: str) -> None:
    with pytest.raises(ParameterError) as excinfo:
        parse_duration(text)
    assert excinfo.value.parameter == "every"
    assert "e.g. 30m" in str(excinfo.value)


@pytest.mark.parametrize("seconds", [1, 59, 60, 90, 3600, 5400, 86400, 172800])
def test_format_duration_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25t10:00:00z", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25T12:00:00+02:00", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25T10:00:00.123456789Z", datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-25T10:00:00.5-01:30", datetime(2026, 11, 25, 11, 30, 0, 500000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_normalises_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text, "start")
    assert parsed == expected
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize(
    "text, hint",
    [
        ("2026-11-25T10:00:00", "no time zone"),
        ("2026-11-25T10:00:00 02:00", "%2B"),
        ("2026-11-25", "RFC 3339"),
        ("yesterday", "RFC 3339"),
        ("2026-13-25T10:00:00Z", "not a valid date"),
        ("1700000000", "RFC 3339"),
    ],
)
def test_parse_timestamp_errors_name_the_parameter_and_the_fix(text: str, hint: str) -> None:
    with pytest.raises(ParameterError) as excinfo:
        parse_timestamp(text, "end")
    assert excinfo.value.parameter == "end"
    assert hint in str(excinfo.value)


# --- InfluxQL ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("every", [None, timedelta(minutes=30)])
@pytest.mark.parametrize("aggregate", ["mean", "min", "max", "count", "last"])
def test_series_query_binds_station_and_variable_instead_of_embedding_them(
    every: timedelta | None, aggregate: str
) -> None:
    query = render_series_query(
        start_ns=to_ns(T0), end_ns=to_ns(T0 + timedelta(hours=1)), every=every, aggregate=aggregate,  # type: ignore[arg-type]
        limit=100,
    )
    assert "station = $station" in query and "variable = $variable" in query
    # The only literals are the integers we computed; no quote character can come from anywhere.
    assert "'" not in query and '"' not in query
    assert f"time >= {to_ns(T0)}" in query
    if every is None:
        assert "GROUP BY" not in query
    else:
        assert f"{aggregate}(value) AS value" in query and "GROUP BY time(1800s) fill(none)" in query
    assert query.endswith("LIMIT 101")


def test_series_query_rejects_windows_that_are_not_whole_seconds() -> None:
    with pytest.raises(ValueError, match="whole number of seconds"):
        render_series_query(start_ns=0, end_ns=10, every=timedelta(milliseconds=1500), aggregate="mean", limit=None)


def test_retention_policy_is_quoted_as_an_identifier() -> None:
    query = render_series_query(start_ns=0, end_ns=10, every=None, aggregate="mean", limit=None,
                                retention_policy='a"b')
    assert 'FROM "a\\"b".readings' in query
    assert quote_identifier("x\\") == '"x\\\\"'


def test_line_protocol_follows_the_point_schema() -> None:
    line = reading_to_line(StoredReading("site1", reading(value=412.5, qc=QualityFlag.SUSPECT, qc_reason='warm "up"')))
    head, fields, timestamp = _split_line(line)
    assert head.startswith("readings,")
    tags = dict(item.split("=", 1) for item in head.split(",")[1:])
    assert tags == {"sensor": "gmp252", "site": "site1", "station": "st1", "time_source": "gateway",
                    "unit": "umol\\ mol-1", "variable": "CO2"}
    assert fields == 'clock_synced=true,qc=1i,qc_reason="warm \\"up\\"",value=412.5'
    assert int(timestamp) == to_ns(T0)


def test_line_protocol_omits_value_when_missing() -> None:
    line = reading_to_line(StoredReading("site1", reading(value=None)))
    assert "value=" not in line and "qc=3i" in line


def _split_line(line: str) -> tuple[str, str, str]:
    # Tag values escape spaces as "\ "; split on unescaped spaces only.
    parts: list[str] = []
    current, escaped = "", False
    in_string = False
    for char in line:
        if char == " " and not escaped and not in_string and len(parts) < 2:
            parts.append(current)
            current = ""
            continue
        if char == '"' and not escaped:
            in_string = not in_string
        escaped = char == "\\" and not escaped
        current += char
    parts.append(current)
    return parts[0], parts[1], parts[2]


# --- config --------------------------------------------------------------------------------------------------


def test_sample_config_is_valid_and_documents_every_key() -> None:
    config = load_central_config(SAMPLE_CONFIG_PATH)
    text = SAMPLE_CONFIG_PATH.read_text(encoding="utf-8")
    for section_name in ("mqtt", "storage", "api", "budget", "provisioning"):
        section = getattr(config, section_name)
        for key in type(section).model_fields:
            assert f"  {key}:" in text, f"sample config does not document {section_name}.{key}"
    for key in type(config.alerts).model_fields:
        assert f"  {key}:" in text, f"sample config does not document alerts.{key}"
    for rule in RULE_NAMES:
        for key in type(config.alerts.rule(rule)).model_fields:
            assert f"    {key}:" in text or key == "enabled", f"sample config does not document alerts.{rule}.{key}"
    assert config.alerts == AlertsConfig()  # the sample shows the defaults
    for key in type(config.budget.defaults).model_fields:
        assert f"    {key}:" in text, f"sample config does not document budget.defaults.{key}"
    for key in CentralConfig.model_fields:
        assert f"{key}:" in text


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("storage: {kind: influxdb}\n", "storage.url is required"),
        ("storage: {kind: sqlite}\n", "storage.path is required"),
        ("storage: {kind: influxdb, url: 'http://x', api: v2, token: t}\n", "storage.org, storage.bucket"),
        ("storage: {kind: sqlite, path: x.db}\nmqtt: {prot: 1}\n", "mqtt.prot: unknown key"),
        ("storage: {kind: mongodb}\n", "storage.kind"),
        # hostile inputs by hand (docs/reliability.md): a YAML boolean was taken for 1 or 0
        ("storage: {kind: sqlite, path: x.db}\nmqtt: {port: on}\n", "mqtt.port: must be a number, not true"),
        ("storage: {kind: sqlite, path: x.db}\nalerts: {station_silent: {after_s: yes}}\n",
         "alerts.station_silent.after_s: must be a number, not true"),
        # first-day walkthrough (docs/reliability.md): taken, then "InfluxDB at 127.0.0.1:8086 unreachable"
        ("storage: {kind: influxdb, url: '127.0.0.1:8086'}\n",
         "\n  storage.url (127.0.0.1:8086) needs its scheme: http://127.0.0.1:8086 or https://127.0.0.1:8086"),
        ("storage: {kind: victoriametrics, path: x.db, insert_url: 'vminsert:8480', select_url: 'http://s'}\n",
         "storage.insert_url (vminsert:8480) needs its scheme"),
        # a section's own check was shown under its name twice: "storage: storage.url is required"
        ("storage: {kind: influxdb}\n", "\n  storage.url is required when storage.kind is influxdb"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "central.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_central_config(path)
    assert expected in str(excinfo.value)
    assert str(path) in str(excinfo.value)
