"""MQTT topic names: `sinkwatch/v1/<site>/<station>/<channel>`, one builder per channel and one subscription
pattern per channel for the central service.

`site` and `station` are identifiers (`gateway.model.Identifier`), so they can never inject MQTT wildcards.
"""

from __future__ import annotations

TOPIC_ROOT = "sinkwatch/v1"


def readings_topic(site: str, station: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{station}/readings"


def status_topic(site: str, station: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{station}/status"


def fluxes_topic(site: str, station: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{station}/fluxes"


def raw_topic(site: str, station: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{station}/raw"


def health_topic(site: str, station: str) -> str:
    """The station's `StationHealth` reports (gateway/contract/health.py)."""
    return f"{TOPIC_ROOT}/{site}/{station}/health"


def commands_topic(site: str, station: str) -> str:
    """The station's own downlink of `Command`s from the central service (gateway/contract/commands.py)."""
    return f"{TOPIC_ROOT}/{site}/{station}/commands"


def command_results_topic(site: str, station: str) -> str:
    """The station's `CommandResult`s: each step and the outcome of a command."""
    return f"{TOPIC_ROOT}/{site}/{station}/command_results"


def receipts_topic(site: str, station: str) -> str:
    """The station's own downlink: the central service's `Receipt`s for what its store holds."""
    return f"{TOPIC_ROOT}/{site}/{station}/receipts"


READINGS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/readings"
STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/status"
FLUXES_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/fluxes"
RAW_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/raw"
HEALTH_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/health"
RECEIPTS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/receipts"
COMMAND_RESULTS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/+/command_results"


def shared_subscription(group: str, topic_filter: str) -> str:
    """An MQTT v5 shared subscription (MQTT 5.0, section 4.8.2): the broker hands each matching message to one of the
    clients subscribed with the same `group`; the central service's ingest workers share the stations' stream so."""
    if not group or any(char in group for char in "/+#") or group != group.strip():
        raise ValueError(f"shared subscription group {group!r} must be a non-empty name without '/', '+' or '#'")
    return f"$share/{group}/{topic_filter}"


def parse_topic(topic: str) -> tuple[str, str, str]:
    """Split `sinkwatch/v1/<site>/<station>/<kind>`; raise ValueError naming the topic otherwise."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise ValueError(f"topic {topic!r} is not of the form {TOPIC_ROOT}/<site>/<station>/<kind>")
    return parts[2], parts[3], parts[4]
