"""Strict parsing of the API's time parameters; errors name the parameter and show a valid example."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from gateway.central.store.base import TIME_RANGE_TEXT, storable_time

_DURATION_RE = re.compile(r"^([1-9][0-9]{0,8})(s|m|h|d)$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_RFC3339_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)


#: The longest aggregation window: longer ones would only ever hold the whole range in one window.
MAX_EVERY = timedelta(days=36_500)


class ParameterError(ValueError):
    """A request parameter is invalid; `parameter` names it and the message says how to fix it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def parse_duration(text: str, parameter: str = "every") -> timedelta:
    """`10s`, `30m`, `1h`, `1d`: a positive whole number and one unit, nothing else."""
    match = _DURATION_RE.match(text.strip())
    if match is None:
        raise ParameterError(
            parameter, f"{text!r} is not a duration; use a whole number followed by s, m, h or d, e.g. 30m or 1h"
        )
    value = timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})
    if value > MAX_EVERY:
        raise ParameterError(
            parameter, f"{text!r} is longer than the longest window, {format_duration(MAX_EVERY)} (100 years); use a "
            "shorter window, e.g. 365d",
        )
    return value


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_timestamp(text: str, parameter: str) -> datetime:
    """RFC 3339 with a zone (`Z` or `+hh:mm`), returned in UTC; fractions beyond microseconds are truncated."""
    match = _RFC3339_RE.match(text.strip())
    if match is None:
        hint = ""
        if re.match(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)? \d{2}:\d{2}$", text.strip()):
            hint = " (a '+' in a URL query means a space: encode the offset's '+' as %2B)"
        elif re.match(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?$", text.strip()):
            hint = " (it has no time zone: append Z for UTC)"
        raise ParameterError(
            parameter, f"{text!r} is not an RFC 3339 timestamp with a time zone, e.g. 2026-11-25T10:00:00Z{hint}"
        )
    date, clock, fraction, zone = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        value = datetime.fromisoformat(f"{date}T{clock}.{micro}{zone}").astimezone(UTC)
    except ValueError as exc:
        raise ParameterError(parameter, f"{text!r} is not a valid date/time: {exc}") from None
    except OverflowError:  # 9999-12-31T23:59:59-23:59 is in year 10000 in UTC
        value = None
    if value is None or not storable_time(value):  # a query bound outside it could only fail inside the store
        raise ParameterError(
            parameter, f"{text!r} is outside the time range the store can hold, {TIME_RANGE_TEXT}; use a time within "
            "it, e.g. 2026-11-25T10:00:00Z",
        )
    return value
