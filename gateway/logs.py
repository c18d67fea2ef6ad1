"""One logging format for every sinkwatch process."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("SINKWATCH_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # paho and uvicorn are chatty at INFO about things our own logs already say
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # pymodbus logs every failed transaction at ERROR; drivers turn those into DeviceErrors that the daemon
    # counts and logs once per state change, so pymodbus's own lines would only repeat them on every poll
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # httpx logs every request at INFO ("HTTP Request: POST .../write 204"): one line per stored batch and per API
    # query, thousands an hour for one station. The store reports what matters itself (outage, back), once each.
    for chatty in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)


# HTTP client libraries under the InfluxDB store; their failures reach us as exceptions, which we log on change.
QUIET_LIBRARY_LOGGERS = ("httpx", "httpcore", "urllib3", "influxdb_client")
