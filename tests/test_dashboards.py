"""Grafana as code (dashboards/, deploy/grafana/): the dashboards and alert rules query only what the central
service writes (gateway/central/store/influx*.py), are what dashboards/build.py writes, and every panel query, every
variable query and every alert query returns rows from a real InfluxDB holding the network demo data
(gateway/demo_network.py: three stations over a day, a simulated year's budget, soil and stems runs, alert events).

Every identifier in a query must be double-quoted, so a misspelt measurement, tag or field cannot hide as a bare
word; regular expressions (`/^GRO_/`) select dynamic fields.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.central.alerts_config import AlertsConfig
from gateway.central.store.health import SCALAR_FIELDS
from gateway.flux.ec.result import OUTPUT_VARIABLES
from gateway.testing.services import InfluxInstance, running_influxd

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"

MEASUREMENT = "readings"
TAGS = {"site", "station", "sensor", "variable", "unit", "time_source"}
FIELDS = {"value", "qc", "clock_synced", "qc_reason"}
DYNAMIC = re.compile(r"^[A-Z][A-Z0-9_]*$")  # a FLUXNET/budget/product variable name
STATION = {"site", "station"}
#: measurement -> (tags, fields; None: the variables of a result, any DYNAMIC name)
SCHEMA: dict[str, tuple[set[str], set[str] | None]] = {
    "readings": (TAGS, FIELDS),
    "health": (STATION, set(SCALAR_FIELDS)),
    "health_buffers": (STATION | {"channel"}, {"index", "unit", "pending", "oldest_age_s", "refusing"}),
    "health_sensors": (STATION | {"sensor"}, {"index", "driver", "kind", "state", "available", "availability",
                                              "errors_total", "errors", "last_error", "variables"}),
    "health_sensor_errors": (STATION | {"sensor", "kind"}, {"count"}),
    "alerts": (STATION | {"rule", "subject"}, {"firing", "state", "value", "threshold", "message"}),
    "fluxes": (STATION | {"engine_version", "settings_hash"},
               set(OUTPUT_VARIABLES) | {"period_s", "status", "reasons", "names", "nulls"}),
    "budget": (STATION | {"year", "engine_version", "settings_hash", "resolution"}, None),
    "soil": (STATION | {"year", "engine_version", "settings_hash", "table"}, None),
    "stems": (STATION | {"year", "engine_version", "settings_hash", "table"}, None),
}
# Bare words a query may contain besides quoted identifiers: InfluxQL keywords and functions we use.
KEYWORDS = {
    "select", "from", "where", "and", "or", "group", "by", "time", "fill", "null", "as", "show", "tag", "values",
    "with", "key", "mean", "count", "last", "first", "min", "max", "sum", "spread", "now", "limit", "order", "desc",
    "asc", "none", "previous", "cumulative_sum", "non_negative_difference",
}  # fmt: skip
TEMPLATE_VARIABLES = {"site", "station"}
PANELS_WITHOUT_QUERIES = {"alertlist", "text"}


def load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def build_module() -> Any:
    spec = importlib.util.spec_from_file_location("dashboards_build", DASHBOARD_DIR / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return [p for p in found if p.get("type") != "row"]


EXPRESSION_DATASOURCE = {"type": "__expr__", "uid": "__expr__"}


def is_expression(target: dict[str, Any]) -> bool:
    """A Grafana server-side expression (math on other targets' results), not an InfluxQL query."""
    return bool(target.get("datasource") == EXPRESSION_DATASOURCE)


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, InfluxQL) for every panel target and every query template variable."""
    found = [(f"panel {p['title']!r} target {t['refId']}", t["query"]) for p in panels(dashboard)
             for t in p.get("targets", []) if not is_expression(t)]
    found += [
        (f"variable {v['name']!r}", v["query"]) for v in dashboard["templating"]["list"] if v.get("type") == "query"
    ]
    return found


def check_query(query: str) -> list[str]:
    """Problems with one InfluxQL query, as messages (empty when it only uses the known schema)."""
    problems = []
    aliases = set(re.findall(r'\bAS\s+"(\w+)"', query, flags=re.IGNORECASE))
    sources = re.findall(r'\bFROM\s+(\(|"[^"]*"|\S+)', query, flags=re.IGNORECASE)
    measurements = set()
    for source in sources:
        if source == "(":
            continue
        if source.strip('"') not in SCHEMA or not source.startswith('"'):
            problems.append(f'reads from {source}, not from one of {", ".join(sorted(SCHEMA))}')
        else:
            measurements.add(source.strip('"'))
    known = set(SCHEMA) | aliases
    dynamic = False
    for name in measurements:
        tags, fields = SCHEMA[name]
        known |= tags | (fields or set())
        dynamic |= fields is None
    for identifier in re.findall(r'"([^"]*)"', query):
        if identifier not in known and not (dynamic and DYNAMIC.match(identifier)):
            problems.append(f'unknown identifier "{identifier}"')
    rest = re.sub(r'"[^"]*"', " ", query)
    rest = re.sub(r"/(?:[^/\\]|\\.)*/", " ", rest)  # regex literals
    rest = re.sub(r"'(?:[^'\\]|\\.)*'", " ", rest)  # string literals
    rest = re.sub(r"\$\{?\w+\}?", " ", rest)  # Grafana macros and variables
    rest = re.sub(r"\b\d+[a-z]*\b", " ", rest)  # numbers and durations
    for word in re.findall(r"[A-Za-z_]\w*", rest):
        if word.lower() not in KEYWORDS:
            problems.append(f"bare word {word!r} (quote identifiers; keywords allowed: see KEYWORDS)")
    return problems


def test_there_is_a_dashboard() -> None:
    assert DASHBOARD_DIR / "sinkwatch-overview.json" in DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_queries_use_only_the_stored_schema(path: Path) -> None:
    found = queries(load(path))
    assert found
    problems = [f"{where}: {problem}" for where, query in found for problem in check_query(query)]
    assert problems == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('SELECT mean("value") FROM "reading" WHERE $timeFilter', 'reads from "reading"'),
        ('SELECT last("uptime") FROM "health" WHERE $timeFilter', 'unknown identifier "uptime"'),
        ('SELECT mean("FC") FROM "flux" WHERE $timeFilter', 'reads from "flux"'),
        ('SELECT mean("FCX") FROM "fluxes" WHERE $timeFilter', 'unknown identifier "FCX"'),
        ('SELECT mean("value") FROM "health" WHERE $timeFilter', 'unknown identifier "value"'),
        ('SELECT mean("value") FROM readings WHERE $timeFilter', "reads from readings"),
        ('SELECT mean("val") FROM "readings" WHERE $timeFilter', 'unknown identifier "val"'),
        ('SELECT mean(value) FROM "readings" WHERE "station" = \'x\'', "bare word 'value'"),
        ('SHOW TAG VALUES FROM "readings" WITH KEY = "host"', 'unknown identifier "host"'),
    ],
)
def test_query_checker_catches_mistakes(query: str, expected: str) -> None:
    assert any(expected in problem for problem in check_query(query)), check_query(query)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_importable_with_a_datasource_input(path: Path) -> None:
    dashboard = load(path)
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_INFLUXDB"]
    assert dashboard["__inputs"][0]["pluginId"] == "influxdb"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    variables = dashboard["templating"]["list"]
    # provisioned, `${DS_INFLUXDB}` resolves to this variable; imported, the input replaces it
    assert [v for v in variables if v["type"] == "datasource"] == [
        {"name": "DS_INFLUXDB", "label": "InfluxDB", "type": "datasource", "query": "influxdb", "current": {},
         "hide": 0, "refresh": 1, "regex": "", "options": []}]
    datasources = [p["datasource"] for p in panels(dashboard)]
    datasources += [t["datasource"] for p in panels(dashboard) for t in p.get("targets", []) if not is_expression(t)]
    datasources += [v["datasource"] for v in variables if v["type"] == "query"]
    assert all(ds == {"type": "influxdb", "uid": "${DS_INFLUXDB}"} for ds in datasources)
    assert {v["name"] for v in variables} >= TEMPLATE_VARIABLES
    for panel in panels(dashboard):
        if panel["type"] in PANELS_WITHOUT_QUERIES:
            assert "targets" not in panel or not panel["targets"], panel["title"]
            continue
        assert panel["targets"], panel["title"]
        refs = {t["refId"] for t in panel["targets"]}
        assert any(not is_expression(t) for t in panel["targets"]), panel["title"]
        for target in panel["targets"]:
            if is_expression(target):  # math on this panel's other targets only
                assert target["type"] == "math", panel["title"]
                used = set(re.findall(r"\$([A-Z])\b", target["expression"]))
                assert used and used <= refs - {target["refId"]}, (panel["title"], target["expression"])
                continue
            assert target["rawQuery"] is True
            assert "$timeFilter" in target["query"], panel["title"]
            for variable in TEMPLATE_VARIABLES:  # every panel follows the site/station selection
                assert f'"{variable}" =~ /^${variable}$/' in target["query"], (panel["title"], variable)


def test_the_generated_files_are_what_build_writes() -> None:
    stale = [str(path.relative_to(ROOT)) for path, text in build_module().rendered().items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    assert stale == [], "run .venv/bin/python dashboards/build.py and commit the result"


def test_the_six_dashboards_of_the_network_exist() -> None:
    titles = {load(path)["title"] for path in DASHBOARDS}
    assert titles >= {"sinkwatch network", "sinkwatch station health", "sinkwatch sensor detail",
                      "sinkwatch eddy-covariance quality", "sinkwatch soil and stems", "sinkwatch carbon budget",
                      "sinkwatch overview"}


def test_flagged_share_is_flagged_readings_over_all_readings() -> None:
    [panel] = [p for p in panels(load(DASHBOARD_DIR / "sinkwatch-overview.json")) if "flagged" in p["title"]]
    targets = {t["refId"]: t for t in panel["targets"]}
    assert '"qc" > 0' in targets["A"]["query"] and '"qc" > 0' not in targets["B"]["query"]
    assert targets["A"]["query"].replace('"qc" > 0 AND ', "") == targets["B"]["query"]  # the same readings otherwise
    assert targets["C"]["expression"] == "$A / $B"
    assert targets["A"]["hide"] and targets["B"]["hide"] and not targets["C"].get("hide", False)


# --- the queries run against a real InfluxDB 1.x --------------------------------------------------------------------


def _grafana_substitute(query: str) -> str:
    """What Grafana sends for the last hour, a 1 min interval and site/station set to 'All' (both test values)."""
    return (
        query.replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "1m")
        .replace("$site", "(hainich)")
        .replace("$station", "(plot-07|plot-08)")
    )


def _influx(instance: InfluxInstance, query: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{instance.url}/query", params={"db": "sinkwatch", "q": query}, timeout=10)
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, (query, result["error"])
    series: list[dict[str, Any]] = result.get("series", [])
    return series


@pytest.mark.integration
def test_queries_run_against_influxdb(influxd: InfluxInstance) -> None:
    _influx(influxd, "CREATE DATABASE sinkwatch")
    # all points within the first seconds of one minute two minutes ago, so every GROUP BY time() has one bucket
    now = (int(time.time()) // 60 * 60 - 120) * 10**9
    lines = []
    # plot-07: one CO2 probe, qc 0,0,0,0,1,2,3,0 (3 of 8 flagged); plot-08: all good
    for i, qc in enumerate([0, 0, 0, 0, 1, 2, 3, 0]):
        value = "" if qc == 3 else f"value={400 + i}.5,"
        for variable, unit in (("CO2_1_1_1", "umol\\ mol-1"), ("T_PROBE", "degC")):
            lines.append(
                f"readings,site=hainich,station=plot-07,sensor=gmp252-a,variable={variable},unit={unit},"
                f"time_source=gateway {value}qc={qc}i,clock_synced=true {now + i * 10**9}"
            )
    lines.append(
        "readings,site=hainich,station=plot-08,sensor=gmp252-a,variable=CO2,unit=umol\\ mol-1,time_source=gateway "
        f"value=512,qc=0i,clock_synced=true {now}"
    )
    response = httpx.post(f"{influxd.url}/write", params={"db": "sinkwatch"}, content="\n".join(lines), timeout=10)
    assert response.status_code == 204, response.text

    dashboard = load(DASHBOARD_DIR / "sinkwatch-overview.json")
    results = {}
    for where, query in queries(dashboard):
        series = _influx(influxd, _grafana_substitute(query))
        assert series, f"{where} returned nothing"
        results[where] = series

    def by_station(title: str) -> dict[str, list[Any]]:
        key = next(k for k in results if title in k)
        return {s["tags"]["station"]: [v[1] for v in s["values"] if v[1] is not None] for s in results[key]}

    counts = {station: sum(values) for station, values in by_station("Readings per station").items()}  # fill(0)
    assert counts == {"plot-07": 16, "plot-08": 1}
    flagged = {s["tags"]["station"]: sum(v[1] for v in s["values"]) for s in results[
        "panel 'Share of readings flagged (qc > 0)' target A"]}
    readings = {s["tags"]["station"]: sum(v[1] for v in s["values"]) for s in results[
        "panel 'Share of readings flagged (qc > 0)' target B"]}
    assert readings == counts
    assert flagged == {"plot-07": 6}  # qc 1, 2, 3 on both variables; plot-08 has none, so no series
    assert flagged["plot-07"] / readings["plot-07"] == pytest.approx(6 / 16)  # what $A / $B draws
    co2 = by_station("Soil CO2")
    assert sorted(co2) == ["plot-07", "plot-08"]
    assert co2["plot-07"] == [pytest.approx((400.5 + 401.5 + 402.5 + 403.5 + 404.5 + 407.5) / 6)]  # BAD left out
    assert by_station("Probe temperature").keys() == {"plot-07"}
    assert [v[1] for s in results["variable 'station'"] for v in s["values"]] == ["plot-07", "plot-08"]


# --- every dashboard and alert query against the network demo data in a real InfluxDB --------------------------------


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxInstance]:
    """A real influxd holding three demo stations over the last day, a simulated year's budget, soil and stems runs
    and the alert events of one round (gateway/demo_network.py)."""
    from gateway.central.store import InfluxStore
    from gateway.demo_network import write_network

    with running_influxd(tmp_path_factory.mktemp("influxd-network")) as influxd:
        store = InfluxStore(influxd.url, database="sinkwatch")
        try:
            write_network(store, stations=3, days=1.0, simulated_days=40)
        finally:
            store.close()
        yield influxd


def _range(spec: str) -> str:
    """A Grafana relative range ("now-24h", "30d", "now-2y") as an InfluxQL duration."""
    value = spec.removeprefix("now-")
    return f"{int(value[:-1]) * 365}d" if value.endswith("y") else value


def _seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[duration[-1]]


def _substitute(query: str, window: str, values: dict[str, list[str]]) -> str:
    """What Grafana sends: the time range, an interval of about 100 points, each variable with every value."""
    interval = f"{max(60, _seconds(window) // 100)}s"
    query = query.replace("$timeFilter", f"time > now() - {window}").replace("$__interval", interval)
    for name in sorted(values, key=len, reverse=True):
        query = query.replace(f"${name}", "(" + "|".join(re.escape(v) for v in values[name]) + ")")
    return query


def _rows(series: list[dict[str, Any]]) -> int:
    return sum(1 for s in series for row in s.get("values") or [] if any(v is not None for v in row[1:]))


DASHBOARDS_OF_THE_NETWORK = [p for p in DASHBOARDS if p.name != "sinkwatch-overview.json"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)  # the first one waits for the network fixture: a simulated year's budget, soil and stems
@pytest.mark.parametrize("path", DASHBOARDS_OF_THE_NETWORK, ids=lambda p: p.name)
def test_every_query_returns_rows_from_the_demo_network(network: InfluxInstance, path: Path) -> None:
    dashboard = load(path)
    window = _range(dashboard["time"]["from"])
    values: dict[str, list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        series = _influx(network, _substitute(variable["query"], window, values))
        found = [row[1] for s in series for row in s.get("values") or []]
        values[variable["name"]] = found if variable.get("multi", True) else found[:1]  # Grafana: the first
        assert values[variable["name"]], f"variable {variable['name']!r} found no values"
    # every demo station; the budget only of st01, the one with a (simulated) year of fluxes; the sensor detail one
    # station (the first)
    expected = {"st01"} if path.name in ("sinkwatch-budget.json", "sinkwatch-sensor.json") else {"st01", "st02",
                                                                                                  "st03"}
    assert set(values["station"]) == expected
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            query = _substitute(target["query"], _range(panel.get("timeFrom", window)), values)
            started = time.monotonic()
            series = _influx(network, query)
            assert _rows(series) > 0, f"panel {panel['title']!r} target {target['refId']} returned no rows: {query}"
            assert time.monotonic() - started < 60  # a hung query fails here; speed is measured in bench/


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROVISIONING / "alerting" / "sinkwatch-alerts.yaml").read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    [group] = document["groups"]
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def test_alert_rules_are_well_formed_and_use_the_provisioned_data_source() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "sinkwatch.yaml").read_text(encoding="utf-8"))
    [source] = datasources["datasources"]
    assert (source["type"], source["jsonData"]["dbName"]) == ("influxdb", "sinkwatch")
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "sinkwatch.yaml").read_text(encoding="utf-8"))
    assert providers["providers"][0]["type"] == "file"
    rules = _alert_rules()
    assert len({r["uid"] for r in rules}) == len(rules)
    for rule in rules:
        refs = {d["refId"] for d in rule["data"]}
        assert rule["condition"] in refs, rule["uid"]
        for node in rule["data"]:
            model = node["model"]
            if node["datasourceUid"] == "__expr__":
                used = set(re.findall(r"\$([A-Z])", model.get("expression", ""))) or {model.get("expression")}
                assert used <= refs - {node["refId"]}, (rule["uid"], node["refId"], used)
            else:
                assert node["datasourceUid"] == source["uid"]
                assert check_query(model["query"]) == [], (rule["uid"], model["query"])
    titles = {r["title"] for r in rules}
    assert {"Station silent", "Buffer growing", "Clock unsynchronised", "Sensor stuck", "Flag-2 share high",
            "Analyzer signal strength low", "Disk nearly full", "Sensor out of range: TA"} <= titles


def test_alert_rules_carry_the_central_services_thresholds() -> None:
    defaults = AlertsConfig()
    by_uid = {r["uid"]: r for r in _alert_rules()}
    silent = by_uid["sinkwatch-station-silent"]["data"][0]
    assert silent["relativeTimeRange"]["from"] == defaults.station_silent.after_s
    ta = by_uid["sinkwatch-out-of-range-ta"]["data"][-1]["model"]["expression"]
    low, high = defaults.sensor_out_of_range.ranges["TA"]
    assert ta == f"$B < {low:g} || $B > {high:g}"
    assert f"$B < {defaults.signal_strength_low.min_percent:g}" == (
        by_uid["sinkwatch-signal-strength-low"]["data"][-1]["model"]["expression"])


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_alert_query_returns_rows_and_finds_the_demo_problems(network: InfluxInstance) -> None:
    found: dict[str, list[dict[str, Any]]] = {}
    for rule in _alert_rules():
        for node in rule["data"]:
            if node["datasourceUid"] == "__expr__":
                continue
            window = f"{max(3600, node['relativeTimeRange']['from'])}s"
            series = _influx(network, _substitute(node["model"]["query"], window, {}))
            assert _rows(series) > 0, (rule["uid"], node["refId"])
            found[f"{rule['uid']}/{node['refId']}"] = series
    # what Grafana's rules would see: st02's stuck probe, st03's clock and dirty analyzer, st02's flags
    spread = {(s["tags"]["station"], s["tags"]["variable"]): s["values"][0][1]
              for s in found["sinkwatch-sensor-stuck/A"]}
    assert spread[("st02", "CO2_1_2_1")] == 0 and spread[("st01", "CO2_1_2_1")] > 0
    error = {s["tags"]["station"]: s["values"][0][1] for s in found["sinkwatch-clock-unsynchronised/A"]}
    assert error == {"st01": 0.01, "st02": 0.01, "st03": 16.0}
    signal = {s["tags"]["station"]: s["values"][0][1] for s in found["sinkwatch-signal-strength-low/A"]}
    assert signal["st03"] < 70 < signal["st01"]
    flags = {s["tags"]["station"]: s["values"][0][1] for s in found["sinkwatch-flag2-share/A"]}
    assert flags["st02"] > 0.5 > flags["st01"]
    firing = {(s["tags"]["station"], s["tags"]["rule"]) for s in found["sinkwatch-central-alert/A"]
              if s["values"][0][1] == 1}
    assert {("st02", "sensor_stuck"), ("st03", "clock_unsynchronised"), ("st03", "signal_strength_low"),
            ("st02", "flag2_share")} <= firing
