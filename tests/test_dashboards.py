"""Grafana dashboards in dashboards/ query only what the central service writes (gateway/central/store/influx.py):

    measurement  readings
    tags         site, station, sensor, variable, unit, time_source
    fields       value, qc, clock_synced, qc_reason

Every identifier in a query must be double-quoted, so a misspelt tag or field cannot hide as a bare word.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.model import QualityFlag
from gateway.testing.services import InfluxInstance

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))

MEASUREMENT = "readings"
TAGS = {"site", "station", "sensor", "variable", "unit", "time_source"}
FIELDS = {"value", "qc", "clock_synced", "qc_reason"}
# Bare words a query may contain besides quoted identifiers: InfluxQL keywords and functions we use.
KEYWORDS = {
    "select", "from", "where", "and", "or", "group", "by", "time", "fill", "null", "as", "show", "tag", "values",
    "with", "key", "mean", "count", "last", "min", "max", "sum", "now", "limit", "order", "desc", "asc",
}  # fmt: skip
TEMPLATE_VARIABLES = {"site", "station"}


def load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return [p for p in found if p.get("type") != "row"]


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, InfluxQL) for every panel target and every query template variable."""
    found = [(f"panel {p['title']!r} target {t['refId']}", t["query"]) for p in panels(dashboard) for t in p["targets"]]
    found += [
        (f"variable {v['name']!r}", v["query"]) for v in dashboard["templating"]["list"] if v.get("type") == "query"
    ]
    return found


def check_query(query: str) -> list[str]:
    """Problems with one InfluxQL query, as messages (empty when it only uses the known schema)."""
    problems = []
    aliases = set(re.findall(r'\bAS\s+"(\w+)"', query, flags=re.IGNORECASE))
    for source in re.findall(r'\bFROM\s+(\(|"[^"]*"|\S+)', query, flags=re.IGNORECASE):
        if source not in ("(", f'"{MEASUREMENT}"'):
            problems.append(f'reads from {source}, not from "{MEASUREMENT}"')
    for identifier in re.findall(r'"([^"]*)"', query):
        if identifier not in TAGS | FIELDS | {MEASUREMENT} | aliases:
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
def test_queries_use_only_the_readings_schema(path: Path) -> None:
    found = queries(load(path))
    assert found
    problems = [f"{where}: {problem}" for where, query in found for problem in check_query(query)]
    assert problems == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('SELECT mean("value") FROM "reading" WHERE $timeFilter', 'reads from "reading"'),
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
    datasources = [p["datasource"] for p in panels(dashboard)]
    datasources += [t["datasource"] for p in panels(dashboard) for t in p["targets"]]
    datasources += [v["datasource"] for v in dashboard["templating"]["list"]]
    assert all(ds == {"type": "influxdb", "uid": "${DS_INFLUXDB}"} for ds in datasources)
    assert {v["name"] for v in dashboard["templating"]["list"]} >= TEMPLATE_VARIABLES
    for panel in panels(dashboard):
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["rawQuery"] is True
            assert "$timeFilter" in target["query"], panel["title"]
            for variable in TEMPLATE_VARIABLES:  # every panel follows the site/station selection
                assert f'"{variable}" =~ /^${variable}$/' in target["query"], (panel["title"], variable)


def _flag_expression() -> str:
    dashboard = load(DASHBOARD_DIR / "sinkwatch-overview.json")
    for _, query in queries(dashboard):
        match = re.search(r'SELECT ([^()]*(?:\([^()]*\)[^()]*)*) AS "flagged"', query)
        if match:
            return match.group(1)
    raise AssertionError('no query defines "flagged"')


def test_flagged_expression_is_an_indicator_of_qc_above_zero() -> None:
    expression = _flag_expression()
    for flag in QualityFlag:
        result = eval(expression.replace('"qc"', str(flag.value)), {"__builtins__": {}})
        assert result == (1 if flag > QualityFlag.GOOD else 0), flag


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
    shares = by_station("flagged")
    assert shares["plot-08"] == [0]
    assert shares["plot-07"] == [pytest.approx(6 / 16)]  # qc 1, 2, 3 on both variables
    co2 = by_station("Soil CO2")
    assert sorted(co2) == ["plot-07", "plot-08"]
    assert co2["plot-07"] == [pytest.approx((400.5 + 401.5 + 402.5 + 403.5 + 404.5 + 407.5) / 6)]  # BAD left out
    assert by_station("Probe temperature").keys() == {"plot-07"}
    assert [v[1] for s in results["variable 'station'"] for v in s["values"]] == ["plot-07", "plot-08"]
