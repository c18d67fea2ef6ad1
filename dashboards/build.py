"""Grafana as code: writes the sinkwatch dashboards (dashboards/*.json) and Grafana's alert rules
(deploy/grafana/provisioning/alerting/sinkwatch-alerts.yaml) from the definitions below.

    .venv/bin/python dashboards/build.py          # write the files
    .venv/bin/python dashboards/build.py --check  # exit 1 when a file differs from what this would write

tests/test_dashboards.py checks that the committed files are what this writes, and runs every panel query, every
variable query and every alert query against a real InfluxDB holding the network demo data
(gateway/demo_network.py). `sinkwatch-overview.json` (readings at a glance) is kept by hand and is not written here.

The queries are InfluxQL on what the central service writes (docs/architecture.md, "Storage"); every identifier is
double-quoted, every panel follows the `site` and `station` variables and the time range (`$timeFilter`). The data
source is `${DS_INFLUXDB}`: an input when a dashboard is imported by hand, and a dashboard variable of type
datasource when Grafana provisions it from deploy/grafana/provisioning/, so one file serves both.

The alert rules mirror the central service's (gateway/central/alerts.py) with the same default thresholds
(gateway/central/alerts_config.py), for sites that route alerts through Grafana; the central service evaluates its
own rules whether Grafana runs or not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.central.alerts_config import AlertsConfig  # noqa: E402  (after the path: run as a script)

DS = {"type": "influxdb", "uid": "${DS_INFLUXDB}"}
DATASOURCE_UID = "sinkwatch-influxdb"  # the provisioned data source (deploy/grafana/provisioning/datasources/)
F = '"site" =~ /^$site$/ AND "station" =~ /^$station$/'
ALERT_FOLDER = "sinkwatch"


# --- building blocks --------------------------------------------------------------------------------------------------


def target(ref: str, query: str, alias: str = "", fmt: str = "time_series") -> dict[str, Any]:
    found: dict[str, Any] = {"refId": ref, "datasource": DS, "rawQuery": True, "resultFormat": fmt, "query": query}
    if alias:
        found["alias"] = alias
    return found


def panel(kind: str, title: str, description: str, targets: list[dict[str, Any]], *, w: int = 12, h: int = 8,
          unit: str = "short", time_from: str | None = None, style: str = "line", **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"type": kind, "title": title, "description": description, "datasource": DS,
                             "gridPos": {"w": w, "h": h}, "targets": targets}
    if kind == "timeseries":
        found["fieldConfig"] = {"defaults": {"unit": unit, "custom": {
            "drawStyle": style, "spanNulls": False, "lineWidth": 1, "fillOpacity": 80 if style == "bars" else 0,
            "pointSize": 4, "showPoints": "always" if style == "points" else "auto"}}, "overrides": []}
        found["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                            "tooltip": {"mode": "multi", "sort": "none"}}
    elif kind == "table":
        found["fieldConfig"] = {"defaults": {"unit": unit}, "overrides": []}
        found["options"] = {"showHeader": True, "cellHeight": "sm"}
    if time_from is not None:
        found["timeFrom"] = time_from
    found.update(extra)
    return found


def query_variable(name: str, label: str, query: str, *, multi: bool = True) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DS, "query": query, "definition": query,
            "refresh": 1, "multi": multi, "includeAll": multi, "current": {}, "options": [], "sort": 1, "hide": 0,
            "regex": ""}


def datasource_variable() -> dict[str, Any]:
    """`DS_INFLUXDB` as a variable: what `${DS_INFLUXDB}` resolves to in a provisioned dashboard."""
    return {"name": "DS_INFLUXDB", "label": "InfluxDB", "type": "datasource", "query": "influxdb", "current": {},
            "hide": 0, "refresh": 1, "regex": "", "options": []}


def site_station(measurement: str) -> list[dict[str, Any]]:
    return [
        query_variable("site", "Site", f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "site"'),
        query_variable("station", "Station",
                       f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "station" WHERE "site" =~ /^$site$/'),
    ]


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ids and positions: left to right in rows of 24 columns."""
    x = y = row_h = 0
    for index, item in enumerate(panels, start=1):
        w, h = item["gridPos"]["w"], item["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        item["id"] = index
        item["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x, row_h = x + w, max(row_h, h)
    return panels


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]],
              variables: list[dict[str, Any]], *, time_from: str = "now-24h", refresh: str = "1m") -> dict[str, Any]:
    return {
        "__inputs": [{"name": "DS_INFLUXDB", "label": "InfluxDB (sinkwatch)",
                      "description": "InfluxQL data source holding the sinkwatch database", "type": "datasource",
                      "pluginId": "influxdb", "pluginName": "InfluxDB"}],
        "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
                       {"type": "datasource", "id": "influxdb", "name": "InfluxDB", "version": "1.0.0"}],
        "uid": uid, "title": title, "description": description, "tags": ["sinkwatch"], "timezone": "utc",
        "editable": True, "graphTooltip": 1, "refresh": refresh, "time": {"from": time_from, "to": "now"},
        "schemaVersion": 39, "version": 1, "links": [{"title": "sinkwatch", "type": "dashboards", "tags": ["sinkwatch"],
                                                       "asDropdown": True}],
        "annotations": {"list": []}, "templating": {"list": [datasource_variable(), *variables]},
        "panels": layout(panels),
    }


# --- the dashboards ---------------------------------------------------------------------------------------------------


def network() -> dict[str, Any]:
    return dashboard("sinkwatch-network", "sinkwatch network", "Every station's last contact, outboxes, clock and "
                     "alarms (health reports and the central service's alert events).", [
        panel("table", "Stations: last health report",
              "One row per station: the time column is the last contact (when its newest health report was taken), "
              "then its uptime, clock offset and maximum error (16 s = not synchronised), free disk, load and "
              "version. A station missing here has sent no report in the time range.",
              [target("A", 'SELECT last("uptime_s") AS "uptime_s", last("clock_offset_s") AS "clock_offset_s", '
                           'last("clock_max_error_s") AS "clock_max_error_s", last("disk_free_bytes") AS '
                           '"disk_free_bytes", last("load_1m") AS "load_1m", last("daemon_version") AS '
                           f'"daemon_version" FROM "health" WHERE {F} AND $timeFilter GROUP BY "site", "station"',
                      fmt="table")], w=24, h=7),
        panel("table", "Alarms (central service)",
              "The central service's alerts (GET /api/v1/alerts), from its stored state changes of the last 30 "
              "days: firing 1 = firing now, 0 = cleared. The rules: docs/operations.md.",
              [target("A", 'SELECT last("firing") AS "firing", last("value") AS "value", last("message") AS '
                           f'"message" FROM "alerts" WHERE {F} AND $timeFilter GROUP BY "site", "station", "rule", '
                           '"subject"', fmt="table")], w=16, h=7, time_from="30d"),
        panel("alertlist", "Grafana alert rules", "Grafana's own evaluation of the provisioned sinkwatch rules "
              "(deploy/grafana/provisioning/alerting/).", [], w=8, h=7,
              options={"alertListOptions": {"showOptions": "current"}, "maxItems": 20, "sortOrder": 1,
                       "stateFilter": {"firing": True, "pending": True, "noData": True, "error": True},
                       "folder": {"title": ALERT_FOLDER}}),
        panel("table", "Outboxes: what waits for a receipt",
              "Per station and channel the newest backlog: units waiting for the central service's receipt and "
              "the age of the oldest (s).",
              [target("A", 'SELECT last("pending") AS "pending", last("oldest_age_s") AS "oldest_age_s" FROM '
                           f'"health_buffers" WHERE {F} AND $timeFilter GROUP BY "site", "station", "channel"',
                      fmt="table")], w=12),
        panel("timeseries", "Health reports per 10 min",
              "Last contact over time: a station reports every telemetry.interval_s (60 s: 10 per window); zero is "
              "a silent station or uplink. Windows fill in as a backlog drains.",
              [target("A", f'SELECT count("uptime_s") FROM "health" WHERE {F} AND $timeFilter GROUP BY time(10m), '
                           '"station" fill(0)', "$tag_station")], style="bars"),
        panel("timeseries", "Readings waiting on the station",
              "Readings in each station's buffer without receipt (the largest of each interval). A line that keeps "
              "rising is a link or a central service that cannot keep up.",
              [target("A", f'SELECT max("pending") FROM "health_buffers" WHERE "channel" = \'readings\' AND {F} AND '
                           '$timeFilter GROUP BY time($__interval), "station" fill(null)', "$tag_station")]),
        panel("timeseries", "Oldest unsent item",
              "Age of the oldest item without receipt per station and channel (s).",
              [target("A", f'SELECT max("oldest_age_s") FROM "health_buffers" WHERE {F} AND $timeFilter GROUP BY '
                           'time($__interval), "station", "channel" fill(null)', "$tag_station $tag_channel")],
              unit="s"),
        panel("timeseries", "Clock",
              "The offset the station's kernel is still correcting (s) and its maximum error estimate (16 s when "
              "not synchronised).",
              [target("A", f'SELECT mean("clock_offset_s") FROM "health" WHERE {F} AND $timeFilter GROUP BY '
                           'time($__interval), "station" fill(null)', "offset $tag_station"),
               target("B", f'SELECT max("clock_max_error_s") FROM "health" WHERE {F} AND $timeFilter GROUP BY '
                           'time($__interval), "station" fill(null)', "max error $tag_station")], unit="s"),
        panel("timeseries", "Alarms over time",
              "1 while an alert fires (the central service's state changes, carried forward).",
              [target("A", f'SELECT last("firing") FROM "alerts" WHERE {F} AND $timeFilter GROUP BY '
                           'time($__interval), "station", "rule" fill(previous)', "$tag_station $tag_rule")],
              style="line", time_from="7d"),
    ], site_station("health"))


def station_health() -> dict[str, Any]:
    return dashboard("sinkwatch-station-health", "sinkwatch station health", "A station's own figures from its "
                     "health reports: disk, CPU, memory, power, outboxes, sensors.", [
        panel("timeseries", "Disk free", "Share of the buffer's file system that is free.",
              [target("A", 'SELECT mean("disk_free_bytes") / mean("disk_total_bytes") FROM "health" WHERE '
                           f'{F} AND $timeFilter GROUP BY time($__interval), "station" fill(null)', "$tag_station")],
              unit="percentunit", w=8),
        panel("timeseries", "Disk buffer refusals",
              "Readings the station's disk buffer refused and holds in memory (lost if the daemon stops first), and "
              "its failed buffer writes since the daemon started: a full, read-only or failing disk (rule "
              "buffer_unwritable). Reports taken meanwhile arrive when the disk writes again.",
              [target("A", 'SELECT max("readings_held_in_memory") AS "held", max("buffer_write_errors") AS '
                           f'"failed_writes" FROM "health" WHERE {F} AND $timeFilter GROUP BY time($__interval), '
                           '"station" fill(null)', "$tag_station $col")], w=8),
        panel("timeseries", "CPU temperature", "The CPU/SoC thermal zone (degC).",
              [target("A", f'SELECT mean("cpu_temperature_c") FROM "health" WHERE {F} AND $timeFilter GROUP BY '
                           'time($__interval), "station" fill(null)', "$tag_station")], unit="celsius", w=8),
        panel("timeseries", "Supply voltage", "Where a sensor measures it (telemetry.supply_voltage).",
              [target("A", f'SELECT mean("supply_voltage_v") FROM "health" WHERE {F} AND $timeFilter GROUP BY '
                           'time($__interval), "station" fill(null)', "$tag_station")], unit="volt", w=8),
        panel("timeseries", "Load", "1, 5 and 15 minute load average (compare with the cores).",
              [target("A", f'SELECT mean("load_1m") AS "load_1m", mean("load_5m") AS "load_5m", mean("load_15m") AS '
                           f'"load_15m" FROM "health" WHERE {F} AND $timeFilter GROUP BY time($__interval), "station" '
                           'fill(null)', "$tag_station $col")], w=8),
        panel("timeseries", "Daemon CPU", "CPU time of the station daemon over wall time, of one core.",
              [target("A", f'SELECT mean("daemon_cpu_share") FROM "health" WHERE {F} AND $timeFilter GROUP BY '
                           'time($__interval), "station" fill(null)', "$tag_station")], unit="percentunit", w=8),
        panel("timeseries", "Memory", "Memory available on the node and the daemon's resident memory.",
              [target("A", f'SELECT mean("memory_available_bytes") AS "available", mean("daemon_rss_bytes") AS '
                           f'"daemon" FROM "health" WHERE {F} AND $timeFilter GROUP BY time($__interval), "station" '
                           'fill(null)', "$tag_station $col")], unit="bytes", w=8),
        panel("timeseries", "Outbox backlog", "Units waiting for a receipt, per channel.",
              [target("A", f'SELECT max("pending") FROM "health_buffers" WHERE {F} AND $timeFilter GROUP BY '
                           'time($__interval), "station", "channel" fill(null)', "$tag_station $tag_channel")], w=12),
        panel("timeseries", "Uptime", "Seconds since the daemon started: a drop is a restart.",
              [target("A", f'SELECT last("uptime_s") FROM "health" WHERE {F} AND $timeFilter GROUP BY '
                           'time($__interval), "station" fill(null)', "$tag_station")], unit="s", w=12),
        panel("timeseries", "Sensor availability",
              "Share of polls answered (polled sensors) or of the configured rate received (streams) between two "
              "reports.",
              [target("A", f'SELECT mean("availability") FROM "health_sensors" WHERE {F} AND $timeFilter GROUP BY '
                           'time($__interval), "station", "sensor" fill(null)', "$tag_station $tag_sensor")],
              unit="percentunit", w=12),
        panel("timeseries", "Sensor errors by kind",
              "New failed polls or dropped records per interval, by sensor and kind (timeout, crc, no_port, ...).",
              [target("A", 'SELECT non_negative_difference(max("count")) FROM "health_sensor_errors" WHERE '
                           f'{F} AND $timeFilter GROUP BY time($__interval), "station", "sensor", "kind" fill(null)',
                      "$tag_station $tag_sensor $tag_kind")], style="bars", w=12),
        panel("table", "Sensors now", "Each sensor's state in the newest report.",
              [target("A", 'SELECT last("state") AS "state", last("availability") AS "availability", '
                           'last("errors_total") AS "errors_total", last("last_error") AS "last_error" FROM '
                           f'"health_sensors" WHERE {F} AND $timeFilter GROUP BY "station", "sensor"', fmt="table")],
              w=24),
    ], site_station("health"))


def sensor_detail() -> dict[str, Any]:
    sensor_filter = f'{F} AND "sensor" =~ /^$sensor$/'
    series = f'{sensor_filter} AND "variable" =~ /^$variable$/'
    # one station at a time (Grafana selects the first), its sensors all or one: the detail of every sensor of a
    # network at once would be neither readable nor quick; a single sensor as default could be one without recent
    # readings (SHOW TAG VALUES ignores the time range), an empty dashboard
    variables = [query_variable("site", "Site", 'SHOW TAG VALUES FROM "readings" WITH KEY = "site"'),
                 query_variable("station", "Station", 'SHOW TAG VALUES FROM "readings" WITH KEY = "station" WHERE '
                                '"site" =~ /^$site$/', multi=False),
                 query_variable("sensor", "Sensor", 'SHOW TAG VALUES FROM "readings" WITH KEY = "sensor" WHERE '
                                f'{F}'),
                 query_variable("variable", "Variable", 'SHOW TAG VALUES FROM "readings" WITH KEY = "variable" '
                                f'WHERE {sensor_filter}')]
    return dashboard("sinkwatch-sensor", "sinkwatch sensor detail", "One sensor's variables: values, counts, "
                     "quality flags, availability and errors.", [
        panel("timeseries", "Value", "Mean, minimum and maximum per interval of the readings with qc < 2.",
              [target("A", f'SELECT mean("value") AS "mean", min("value") AS "min", max("value") AS "max" FROM '
                           f'"readings" WHERE "qc" < 2 AND {series} AND $timeFilter GROUP BY time($__interval), '
                           '"station", "sensor", "variable" fill(null)', "$tag_sensor $tag_variable $col")], w=24),
        panel("timeseries", "Readings per 10 min", "Every reading counts (qc is on every point, MISSING included).",
              [target("A", f'SELECT count("qc") FROM "readings" WHERE {series} AND $timeFilter GROUP BY time(10m), '
                           '"sensor", "variable" fill(0)', "$tag_sensor $tag_variable")], style="bars", w=12),
        panel("timeseries", "Share flagged (qc > 0)",
              "SUSPECT, BAD and MISSING as a share of the readings (indicator qc(11 - 6qc + qc²)/6, see "
              "dashboards/README.md).",
              [target("A", 'SELECT mean("flagged") FROM (SELECT "qc" * (11 - 6 * "qc" + "qc" * "qc") / 6 AS '
                           f'"flagged" FROM "readings" WHERE {series} AND $timeFilter) WHERE $timeFilter GROUP BY '
                           'time($__interval), "sensor", "variable" fill(null)', "$tag_sensor $tag_variable")],
              unit="percentunit", w=12),
        panel("table", "Latest values", "The newest reading of each variable of the sensor.",
              [target("A", 'SELECT last("value") AS "value", last("qc") AS "qc" FROM "readings" WHERE '
                           f'{sensor_filter} AND $timeFilter GROUP BY "station", "sensor", "variable", "unit"',
                      fmt="table")], w=12),
        panel("timeseries", "Availability and errors (health reports)",
              "The sensor's availability between reports and its error count since the daemon started.",
              [target("A", f'SELECT mean("availability") FROM "health_sensors" WHERE {sensor_filter} AND '
                           '$timeFilter GROUP BY time($__interval), "station", "sensor" fill(null)',
                      "availability $tag_sensor"),
               target("B", f'SELECT max("errors_total") FROM "health_sensors" WHERE {sensor_filter} AND '
                           '$timeFilter GROUP BY time($__interval), "station", "sensor" fill(null)',
                      "errors $tag_sensor")], w=12),
    ], variables)


def ec_quality() -> dict[str, Any]:
    flux = f'{F} AND $timeFilter'
    return dashboard("sinkwatch-ec-quality", "sinkwatch eddy-covariance quality", "Flux quality (Mauder and Foken "
                     "2004 flags), analyzer signal strength, time lags, friction velocity and footprint.", [
        panel("timeseries", "Share of flag-2 periods per day",
              "Share of the day's periods with FC_SSITC_TEST = 2 (not to be used); the indicator q(q - 1)/2 is 1 "
              "for flag 2 and 0 for flags 0 and 1. The central alert flag2_share fires above 50 % over a day.",
              [target("A", 'SELECT mean("flag2") FROM (SELECT "FC_SSITC_TEST" * ("FC_SSITC_TEST" - 1) / 2 AS '
                           f'"flag2" FROM "fluxes" WHERE {flux}) WHERE $timeFilter GROUP BY time(1d), "station" '
                           'fill(null)', "$tag_station")], unit="percentunit", style="bars", time_from="7d"),
        panel("timeseries", "FC by quality flag", "Each period's CO2 flux (umol m-2 s-1) by its flag.",
              [target(ref, f'SELECT mean("FC") FROM "fluxes" WHERE "FC_SSITC_TEST" = {flag} AND {flux} GROUP BY '
                           f'time(30m), "station" fill(none)', f"flag {flag} $tag_station")
               for ref, flag in (("A", 0), ("B", 1), ("C", 2))], style="points"),
        panel("timeseries", "Analyzer signal strength",
              "The gas analyzer's CO2/H2O signal strength (%; an IRGASON's 0..1 is shown as reported). Below 70 % "
              "the optical windows need cleaning.",
              [target("A", f'SELECT mean("value") FROM "readings" WHERE "variable" =~ /^(CO2SS|H2OSS)$/ AND {flux} '
                           'GROUP BY time($__interval), "station", "sensor", "variable" fill(null)',
                      "$tag_station $tag_variable")]),
        panel("timeseries", "Time lags", "The lags the engine applied to CO2 and H2O (s).",
              [target("A", f'SELECT mean("CO2_TLAG") AS "CO2", mean("H2O_TLAG") AS "H2O" FROM "fluxes" WHERE '
                           f'{flux} GROUP BY time(30m), "station" fill(none)', "$tag_station $col")], unit="s",
              style="points"),
        panel("timeseries", "Friction velocity u*", "USTAR (m s-1); night periods below the site's threshold are "
              "removed by the budget's u* filter.",
              [target("A", f'SELECT mean("USTAR") FROM "fluxes" WHERE {flux} GROUP BY time(30m), "station" '
                           'fill(none)', "$tag_station")], unit="velocityms"),
        panel("timeseries", "Footprint", "Upwind distances of the footprint's maximum and of 70 % and 90 % of it "
              "(Kljun et al. 2004 or 2015, as the engine is set, m).",
              [target("A", f'SELECT mean("FETCH_MAX") AS "FETCH_MAX", mean("FETCH_70") AS "FETCH_70", '
                           f'mean("FETCH_90") AS "FETCH_90" FROM "fluxes" WHERE {flux} GROUP BY time(30m), "station" '
                           'fill(none)',
                      "$tag_station $col")], unit="lengthm"),
        panel("timeseries", "Sensible and latent heat", "H and LE (W m-2).",
              [target("A", f'SELECT mean("H") AS "H", mean("LE") AS "LE" FROM "fluxes" WHERE {flux} GROUP BY '
                           'time(30m), "station" fill(none)', "$tag_station $col")], unit="watt", w=24),
    ], site_station("fluxes"))


def soil_stems() -> dict[str, Any]:
    readings = f'"qc" < 2 AND {F} AND $timeFilter'
    product = f'{F} AND $timeFilter'
    return dashboard("sinkwatch-soil-stems", "sinkwatch soil and stems", "The soil CO2 profile, soil temperature "
                     "and water, dendrometers, and the central soil and stems jobs' results.", [
        panel("timeseries", "Soil CO2 profile", "The profile's CO2 (umol mol-1) by depth (sensor).",
              [target("A", f'SELECT mean("value") FROM "readings" WHERE "variable" =~ /^CO2_1_\\d+_\\d+$/ AND '
                           f'{readings} GROUP BY time($__interval), "station", "sensor" fill(null)',
                      "$tag_station $tag_sensor")], unit="ppm"),
        panel("timeseries", "Soil temperature and water", "TS (degC) and SWC (%).",
              [target("A", f'SELECT mean("value") FROM "readings" WHERE "variable" =~ /^(TS|SWC)_/ AND {readings} '
                           'GROUP BY time($__interval), "station", "variable" fill(null)',
                      "$tag_station $tag_variable")]),
        panel("timeseries", "Dendrometers", "Stem radius, circumference or diameter change (um).",
              [target("A", f'SELECT mean("value") FROM "readings" WHERE "variable" =~ /^STEM_[A-Z]+_CHG/ AND '
                           f'{readings} GROUP BY time($__interval), "station", "variable" fill(null)',
                      "$tag_station $tag_variable")], unit="um", w=24),
        panel("timeseries", "Soil CO2 efflux (gradient method)", "FC_SOIL_GRAD of the central soil job per day "
              "(umol m-2 s-1), from its stored runs.",
              [target("A", f'SELECT mean("FC_SOIL_GRAD") FROM "soil" WHERE "table" =~ /^gradient_/ AND {product} '
                           'GROUP BY time(1d), "station", "table" fill(none)', "$tag_station $tag_table")],
              time_from="2y"),
        panel("timeseries", "Chamber fluxes", "Each automated chamber's flux per day (umol m-2 s-1).",
              [target("A", f'SELECT mean(/^FC_SOIL_CH_\\d+$/) FROM "soil" WHERE "table" =~ /^chamber_/ AND {product} '
                           'GROUP BY time(1d), "station", "table" fill(none)', "$tag_station $tag_table")],
              time_from="2y"),
        panel("timeseries", "Stem growth and water deficit", "GRO and TWD per tree (zero-growth concept, um).",
              [target("A", f'SELECT max(/^GRO_/) FROM "stems" WHERE "table" =~ /^tree_/ AND {product} GROUP BY '
                           'time(1d), "station" fill(none)', "$tag_station $col"),
               target("B", f'SELECT max(/^TWD_/) FROM "stems" WHERE "table" =~ /^tree_/ AND {product} GROUP BY '
                           'time(1d), "station" fill(none)', "$tag_station $col")], unit="um", time_from="2y"),
        panel("table", "Stem carbon per plot", "Above-ground carbon increment of the year and its Monte-Carlo "
              "standard deviation (Mg C ha-1), CO2 equivalent.",
              [target("A", 'SELECT last("C_AGB_INC") AS "C_AGB_INC", last("C_AGB_INC_SD") AS "C_AGB_INC_SD", '
                           f'last("CO2E_AGB_INC") AS "CO2E_AGB_INC" FROM "stems" WHERE "table" =~ /^plot_/ AND '
                           f'{product} GROUP BY "station", "year", "table"', fmt="table")], w=24, time_from="2y"),
    ], site_station("readings"), time_from="now-7d")


def carbon_budget() -> dict[str, Any]:
    budget = f'{F} AND $timeFilter'
    return dashboard("sinkwatch-budget", "sinkwatch carbon budget", "The central budget job's runs: cumulative "
                     "NEE, daily and monthly sums, the annual table (gC m-2; negative NEE is uptake).", [
        panel("timeseries", "Cumulative NEE", "Running sum of the daily NEE_F of each station-year and settings "
              "hash (gC m-2).",
              [target("A", f'SELECT cumulative_sum(sum("NEE_F")) FROM "budget" WHERE "resolution" = \'DD\' AND '
                           f'{budget} GROUP BY time(1d), "station", "year", "settings_hash" fill(none)',
                      "$tag_station $tag_year $tag_settings_hash")], w=24),
        panel("timeseries", "Daily NEE, GPP and RECO", "Daily sums (gC m-2 d-1), nighttime partitioning.",
              [target("A", f'SELECT sum("NEE_F") AS "NEE", sum("GPP_NT") AS "GPP", sum("RECO_NT") AS "RECO" FROM '
                           f'"budget" WHERE "resolution" = \'DD\' AND {budget} GROUP BY time(1d), "station" fill(none)',
                      "$tag_station $col")]),
        panel("timeseries", "Monthly NEE", "Monthly sums (gC m-2).",
              [target("A", f'SELECT "NEE_F", "NEE_F_UNC" FROM "budget" WHERE "resolution" = \'MM\' AND {budget}',
                      "$col")], style="bars"),
        panel("table", "Annual budget", "The YY row of every stored run: NEE with its uncertainty, GPP and RECO "
              "(nighttime and daytime partitioning), in gC m-2 and NEE in tCO2e ha-1.",
              [target("A", 'SELECT last("NEE_F") AS "NEE_F", last("NEE_F_UNC") AS "NEE_F_UNC", last("NEE_F_TCO2E") '
                           'AS "NEE_F_TCO2E", last("GPP_NT") AS "GPP_NT", last("RECO_NT") AS "RECO_NT", '
                           'last("GPP_DT") AS "GPP_DT", last("RECO_DT") AS "RECO_DT", last("GAP_FRACTION") AS '
                           f'"GAP_FRACTION" FROM "budget" WHERE "resolution" = \'YY\' AND {budget} GROUP BY '
                           '"station", "year", "settings_hash"', fmt="table")], w=24),
        panel("timeseries", "Half-hourly NEE, measured and gap-filled", "NEE (measured after the u* filter) and "
              "NEE_F (gap-filled), umol m-2 s-1.",
              [target("A", f'SELECT mean("NEE") AS "NEE", mean("NEE_F") AS "NEE_F" FROM "budget" WHERE '
                           f'"resolution" = \'HH\' AND {budget} GROUP BY time($__interval), "station" fill(null)',
                      "$tag_station $col")], w=24),
    ], site_station("budget"), time_from="now-2y", refresh="1h")


DASHBOARDS = {
    "sinkwatch-network.json": network,
    "sinkwatch-station-health.json": station_health,
    "sinkwatch-sensor.json": sensor_detail,
    "sinkwatch-ec-quality.json": ec_quality,
    "sinkwatch-soil-stems.json": soil_stems,
    "sinkwatch-budget.json": carbon_budget,
}


# --- Grafana's alert rules --------------------------------------------------------------------------------------------


def _query(ref: str, query: str, seconds: int) -> dict[str, Any]:
    return {"refId": ref, "relativeTimeRange": {"from": seconds, "to": 0}, "datasourceUid": DATASOURCE_UID,
            "model": {"refId": ref, "rawQuery": True, "resultFormat": "time_series", "query": query,
                      "intervalMs": 60000, "maxDataPoints": 43200}}


def _reduce(ref: str, source: str, reducer: str = "last") -> dict[str, Any]:
    return {"refId": ref, "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
            "model": {"refId": ref, "type": "reduce", "expression": source, "reducer": reducer,
                      "settings": {"mode": "dropNN"}}}


def _math(ref: str, expression: str) -> dict[str, Any]:
    return {"refId": ref, "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
            "model": {"refId": ref, "type": "math", "expression": expression}}


def _rule(uid: str, title: str, summary: str, data: list[dict[str, Any]], *, no_data: str = "OK",
          for_: str = "5m") -> dict[str, Any]:
    return {"uid": uid, "title": title, "condition": data[-1]["refId"], "data": data, "noDataState": no_data,
            "execErrState": "Error", "for": for_, "annotations": {"summary": summary,
                                                                "runbook_url": "docs/operations.md#alert-rules"},
            "labels": {"system": "sinkwatch", "rule": uid.removeprefix("sinkwatch-")}, "isPaused": False}


def alert_rules(config: AlertsConfig | None = None) -> dict[str, Any]:
    """Grafana alerting provisioning (apiVersion 1) with the central service's default thresholds."""
    c = config or AlertsConfig()
    where = "$timeFilter"
    ignore = "|".join(c.sensor_stuck.ignore)
    silent = int(c.station_silent.after_s)
    rules = [
        _rule("sinkwatch-station-silent", "Station silent",
              f"{{{{ $labels.station }}}} sent no health report for {silent} s",
              [_query("A", f'SELECT count("uptime_s") FROM "health" WHERE {where} GROUP BY "site", "station"',
                      silent), _reduce("B", "A"), _math("C", "$B < 1")], no_data="Alerting"),
        _rule("sinkwatch-buffer-growing", "Buffer growing",
              "{{ $labels.station }} {{ $labels.channel }}: the outbox grows and its oldest item is older than "
              f"{int(c.buffer_growing.min_oldest_age_s)} s",
              [_query("A", f'SELECT last("pending") - first("pending") FROM "health_buffers" WHERE {where} GROUP BY '
                           '"site", "station", "channel"', int(c.buffer_growing.window_s)),
               _query("B", f'SELECT last("oldest_age_s") FROM "health_buffers" WHERE {where} GROUP BY "site", '
                           '"station", "channel"', int(c.buffer_growing.window_s)),
               _reduce("C", "A"), _reduce("D", "B"),
               _math("E", f"$C > 0 && $D > {c.buffer_growing.min_oldest_age_s:g}")]),
        _rule("sinkwatch-clock-unsynchronised", "Clock unsynchronised",
              "{{ $labels.station }}: the clock is not synchronised or off by more than "
              f"{c.clock_unsynchronised.max_offset_s:g} s",
              [_query("A", f'SELECT last("clock_max_error_s") FROM "health" WHERE {where} GROUP BY "site", "station"',
                      600),
               _query("B", f'SELECT last("clock_offset_s") FROM "health" WHERE {where} GROUP BY "site", "station"',
                      600),
               _reduce("C", "A"), _reduce("D", "B"),
               _math("E", f"$C >= 16 || abs($D) > {c.clock_unsynchronised.max_offset_s:g}")]),
        _rule("sinkwatch-sensor-stuck", "Sensor stuck",
              "{{ $labels.station }} {{ $labels.sensor }} {{ $labels.variable }} repeats one value",
              [_query("A", f'SELECT spread("value") FROM "readings" WHERE "qc" <= 1 AND "variable" !~ /{ignore}/ '
                           f'AND {where} GROUP BY "site", "station", "sensor", "variable"',
                      int(c.sensor_stuck.window_s)),
               _query("B", f'SELECT count("value") FROM "readings" WHERE "qc" <= 1 AND "variable" !~ /{ignore}/ '
                           f'AND {where} GROUP BY "site", "station", "sensor", "variable"',
                      int(c.sensor_stuck.window_s)),
               _reduce("C", "A"), _reduce("D", "B"),
               _math("E", f"$C <= {c.sensor_stuck.max_spread:g} && $D >= {c.sensor_stuck.min_count}")]),
    ]
    for name, (low, high) in sorted(c.sensor_out_of_range.ranges.items()):
        rules.append(_rule(
            f"sinkwatch-out-of-range-{name.lower().replace('_', '-')}", f"Sensor out of range: {name}",
            f"{{{{ $labels.station }}}} {{{{ $labels.sensor }}}} {name}: the mean lies outside [{low:g}, {high:g}]",
            [_query("A", f'SELECT mean("value") FROM "readings" WHERE "qc" <= 1 AND "variable" =~ '
                         f'/^{name}(_\\d+_\\d+_\\d+)?$/ AND {where} GROUP BY "site", "station", "sensor", "variable", '
                         '"unit"', int(c.sensor_out_of_range.window_s)),
             _reduce("B", "A"), _math("C", f"$B < {low:g} || $B > {high:g}")]))
    flag = c.flag2_share.flags[0]
    rules += [
        _rule("sinkwatch-flag2-share", "Flag-2 share high",
              f"{{{{ $labels.station }}}}: more than {c.flag2_share.max_share:.0%} of the periods have {flag} = 2",
              [_query("A", f'SELECT mean("flag2") FROM (SELECT "{flag}" * ("{flag}" - 1) / 2 AS "flag2" FROM '
                           f'"fluxes" WHERE {where} GROUP BY "site", "station") WHERE {where} GROUP BY "site", '
                           '"station"', int(c.flag2_share.window_s)),
               _query("B", f'SELECT count("{flag}") FROM "fluxes" WHERE {where} GROUP BY "site", "station"',
                      int(c.flag2_share.window_s)),
               _reduce("C", "A"), _reduce("D", "B"),
               _math("E", f"$C > {c.flag2_share.max_share:g} && $D >= {c.flag2_share.min_periods}")]),
        _rule("sinkwatch-signal-strength-low", "Analyzer signal strength low",
              "{{ $labels.station }} {{ $labels.sensor }}: signal strength below "
              f"{c.signal_strength_low.min_percent:g} %: clean the windows",
              [_query("A", 'SELECT mean("value") FROM "readings" WHERE "qc" <= 1 AND "variable" =~ '
                           f'/^({"|".join(c.signal_strength_low.variables)})$/ AND "unit" = \'%\' AND {where} '
                           'GROUP BY "site", "station", "sensor", "variable"', int(c.signal_strength_low.window_s)),
               _reduce("B", "A", "mean"), _math("C", f"$B < {c.signal_strength_low.min_percent:g}")]),
        _rule("sinkwatch-disk-nearly-full", "Disk nearly full",
              "{{ $labels.station }}: less than "
              f"{c.disk_nearly_full.min_free_fraction:.0%} or {c.disk_nearly_full.min_free_bytes / 1e9:g} GB free",
              [_query("A", f'SELECT last("disk_free_bytes") / last("disk_total_bytes") FROM "health" WHERE {where} '
                           'GROUP BY "site", "station"', 600),
               _query("B", f'SELECT last("disk_free_bytes") FROM "health" WHERE {where} GROUP BY "site", "station"',
                      600),
               _reduce("C", "A"), _reduce("D", "B"),
               _math("E", f"$C < {c.disk_nearly_full.min_free_fraction:g} || "
                          f"$D < {c.disk_nearly_full.min_free_bytes}")]),
        _rule("sinkwatch-central-alert", "Central service alert firing",
              "{{ $labels.station }}: the central service's rule {{ $labels.rule }} fires ({{ $labels.subject }})",
              [_query("A", f'SELECT last("firing") FROM "alerts" WHERE {where} GROUP BY "site", "station", "rule", '
                           '"subject"', 30 * 86400),
               _reduce("B", "A"), _math("C", "$B > 0")], for_="0s"),
    ]
    return {"apiVersion": 1, "groups": [{"orgId": 1, "name": "sinkwatch", "folder": ALERT_FOLDER, "interval": "1m",
                                         "rules": rules}]}


ALERT_FILE = ROOT / "deploy" / "grafana" / "provisioning" / "alerting" / "sinkwatch-alerts.yaml"
ALERT_HEADER = ("# Grafana alert rules for sinkwatch, written by dashboards/build.py from the central service's "
                "default\n# thresholds (gateway/central/alerts_config.py): edit there and run the script, not "
                "here.\n")


def rendered() -> dict[Path, str]:
    """Every file this writes, with its text."""
    files = {ROOT / "dashboards" / name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
             for name, build in DASHBOARDS.items()}
    files[ALERT_FILE] = ALERT_HEADER + yaml.safe_dump(alert_rules(), sort_keys=False, width=120,
                                                      allow_unicode=True)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'differs' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
