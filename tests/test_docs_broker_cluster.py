"""docs/scaling.md, "The broker beyond one host: an EMQX cluster", stays true to the code it documents.

No EMQX or VerneMQ runs here: these tests read the section's configuration blocks (emqx.conf, the EMQX ACL file,
vernemq.conf, the VerneMQ ACL block) and check them against what sinkwatch actually subscribes to and publishes
(`gateway.contract.topics`, `Ingestor.subscriptions`, provisioning's ACL block), against docs/asyncapi.yaml, and
against the shipped Mosquitto configuration they claim to be equivalent to (`deploy/mosquitto/`). Whether a broker
accepts the blocks is not tested (documented, not run).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.central.config import ProvisioningSettings
from gateway.central.ingest import Ingestor
from gateway.central.pki import CertificateAuthority
from gateway.central.provision import STATION_READS, STATION_WRITES, acl_block
from gateway.central.workers import SHARED_GROUP
from gateway.contract import topics

ROOT = Path(__file__).resolve().parents[1]
SCALING = ROOT / "docs" / "scaling.md"
ASYNCAPI = ROOT / "docs" / "asyncapi.yaml"
MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "sinkwatch.conf"
MOSQUITTO_ACL = ROOT / "deploy" / "mosquitto" / "sinkwatch.acl"
SECTION = "## The broker beyond one host: an EMQX cluster"
CENTRAL_USER = "sinkwatch-central"

# the values the schemas accept (EMQX v5.8.9 apps/emqx/src/emqx_schema.erl; VerneMQ 2.2.0 "Shared subscriptions")
EMQX_STRATEGIES = {"random", "round_robin", "round_robin_per_group", "sticky", "local", "hash_topic", "hash_clientid"}
VERNEMQ_POLICIES = {"prefer_local", "random", "local_only", "prefer_online_before_local"}

Rules = set[tuple[str, str, str]]  # (user, "read" | "write", topic filter)


# --- reading the documentation ------------------------------------------------------------------------------------

def section_text() -> str:
    text = SCALING.read_text(encoding="utf-8")
    assert text.count(SECTION) == 1, f"docs/scaling.md must have exactly one section {SECTION!r}"
    rest = text.split(SECTION, 1)[1]
    return rest.split("\n## ", 1)[0]


def code_block(language: str) -> str:
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", section_text(), flags=re.S | re.M)
    found = [body for lang, body in blocks if lang == language]
    assert len(found) == 1, f"the section must have exactly one ```{language} block, found {len(found)}"
    return found[0]


def hocon_values(text: str) -> dict[str, str]:
    """The `key = value` lines of a HOCON block by their dotted path; only the subset the section uses (nested
    `name {` blocks, dotted keys; lists spanning lines are kept whole under their key)."""
    values: dict[str, str] = {}
    path: list[str] = []
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "}":
            path.pop()
            continue
        opened = re.fullmatch(r"([\w.]+)\s*\{", line)
        if opened:
            path.append(opened.group(1))
            continue
        assigned = re.fullmatch(r"([\w.]+)\s*=\s*(.+)", line)
        assert assigned, f"cannot read HOCON line {raw!r}"
        key, value = ".".join([*path, assigned.group(1)]), assigned.group(2)
        if value == "[":
            body = []
            for inner in lines:
                if inner.strip() == "]":
                    break
                body.append(inner)
            value = "\n".join(body)
        values[key] = value.strip('"')
    return values


def emqx_conf() -> dict[str, str]:
    return hocon_values(code_block("hocon"))


def vernemq_conf() -> dict[str, str]:
    values = {}
    for line in code_block("ini").splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            values[key] = value
    return values


def emqx_rules() -> tuple[Rules, list[str]]:
    """The EMQX ACL file's rules as (user, read|write, filter), and the rules in order as written."""
    text = code_block("erlang")
    ordered = [line for line in text.splitlines() if line.strip()]
    rules: Rules = set()
    for line in ordered:
        if line == "{deny, all}.":
            continue
        rule = re.fullmatch(r'\{allow, \{username, "([^"]+)"\}, (publish|subscribe), \[(.*)\]\}\.', line)
        assert rule, f"unexpected EMQX ACL rule {line!r}"
        access = {"publish": "write", "subscribe": "read"}[rule.group(2)]
        rules |= {(rule.group(1), access, t) for t in re.findall(r'"([^"]+)"', rule.group(3))}
    return rules, ordered


def mosquitto_style_rules(text: str) -> Rules:
    """`user X` / `topic read|write T` lines (Mosquitto's ACL format, which VerneMQ's vmq_acl reads too)."""
    rules: Rules = set()
    user = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("user "):
            user = line.split(None, 1)[1]
        elif line.startswith("topic "):
            _, access, topic = line.split()
            rules.add((user, access, topic))
    return rules


def mosquitto_setting(name: str) -> int:
    values = re.findall(rf"^{name}\s+(\d+)\s*$", MOSQUITTO_CONF.read_text(encoding="utf-8"), flags=re.M)
    assert len(values) == 1, f"deploy/mosquitto/sinkwatch.conf must set {name} once"
    return int(values[0])


def example_station(rules: Rules) -> tuple[str, str]:
    """The (site, station) of the one station block of the EMQX ACL."""
    stations = {user for user, _, _ in rules if user != CENTRAL_USER}
    assert len(stations) == 1, f"the EMQX ACL must show exactly one station block, found {sorted(stations)}"
    station = stations.pop()
    sites = {topics.parse_topic(t)[0] for user, _, t in rules if user == station}
    assert len(sites) == 1, f"station {station}'s rules name several sites: {sorted(sites)}"
    return sites.pop(), station


# --- MQTT topic matching ---------------------------------------------------------------------------------------------

def covers(rule: str, wanted: str) -> bool:
    """True when ACL filter `rule` allows every topic that `wanted` (a topic or a subscription filter) can match."""
    r, w = rule.split("/"), wanted.split("/")
    for i, level in enumerate(r):
        if level == "#":
            return True
        if i >= len(w) or w[i] == "#" or (level != "+" and level != w[i]):
            return False
    return len(r) == len(w)


def allowed(rules: Rules, user: str, access: str, wanted: str) -> bool:
    return any(covers(t, wanted) for u, a, t in rules if u == user and a == access)


def real_topic(subscription: str) -> str:
    """What EMQX checks for `$share/<group>/<filter>`: the filter (its emqx_channel.erl, do_check_sub_authzs2)."""
    parts = subscription.split("/", 2)
    return parts[2] if parts[0] == "$share" else subscription


def central_subscriptions() -> list[str]:
    """Every filter the central service subscribes to, from `Ingestor.subscriptions` itself: the one ingestor of
    `central serve`, a shared worker, and `serve --workers`' status client."""
    subscriptions = cast(property, Ingestor.subscriptions).fget
    assert subscriptions is not None
    roles = [SimpleNamespace(role="all", shared_group=None), SimpleNamespace(role="data", shared_group=SHARED_GROUP),
             SimpleNamespace(role="status", shared_group=None)]
    found = [topic for role in roles for topic in subscriptions(role)]
    assert any(t.startswith(f"$share/{SHARED_GROUP}/") for t in found)
    return found


def asyncapi_addresses() -> dict[str, str]:
    spec = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    return {name: channel["address"] for name, channel in spec["channels"].items()}


# --- the tests ------------------------------------------------------------------------------------------------------

def test_packet_size_is_the_shipped_mosquittos() -> None:
    limit = mosquitto_setting("max_packet_size")
    assert int(emqx_conf()["mqtt.max_packet_size"]) == limit
    # VerneMQ announces no limit in CONNACK, so its limit may not be below what stations send through Mosquitto
    vernemq = int(vernemq_conf()["max_message_size"])
    assert vernemq == 0 or vernemq >= limit


def test_queues_and_windows_match_the_code_and_mosquitto() -> None:
    conf = emqx_conf()
    # a worker asks for Receive Maximum = 2 groups (Ingestor.start); EMQX grants the smaller of that and max_inflight
    max_group = inspect.signature(Ingestor).parameters["max_group"].default
    assert int(conf["mqtt.max_inflight"]) == 2 * max_group
    queued = mosquitto_setting("max_queued_messages")
    assert int(conf["mqtt.max_mqueue_len"]) == queued
    vernemq = vernemq_conf()
    assert int(vernemq["max_online_messages"]) == queued
    assert int(vernemq["max_offline_messages"]) == queued


def test_emqx_acl_is_the_mosquitto_acl_and_provisionings_block() -> None:
    rules, ordered = emqx_rules()
    site, station = example_station(rules)
    central = {r for r in mosquitto_style_rules(MOSQUITTO_ACL.read_text(encoding="utf-8")) if r[0] == CENTRAL_USER}
    assert central, "deploy/mosquitto/sinkwatch.acl has no rules for the central user"
    provisioned = mosquitto_style_rules("\n".join(acl_block(site, station)))
    assert rules == central | provisioned
    # what no rule allows is refused: the file ends with {deny, all} and no_match denies too
    assert ordered[-1] == "{deny, all}."
    conf = emqx_conf()
    assert conf["authorization.no_match"] == "deny"
    # a refused PUBLISH must come back as PUBACK 0x87 (the station keeps the item), not as a disconnect
    assert conf["authorization.deny_action"] == "ignore"


def test_stations_may_use_exactly_their_asyncapi_channels() -> None:
    rules, _ = emqx_rules()
    site, station = example_station(rules)
    addresses = asyncapi_addresses()
    assert set(STATION_WRITES) | set(STATION_READS) == set(addresses), "a channel of docs/asyncapi.yaml has no ACL"
    for channel, address in addresses.items():
        topic = address.format(site=site, station=station)
        built = getattr(topics, f"{channel}_topic")(site, station)
        assert topic == built, f"docs/asyncapi.yaml's {channel} is not what gateway.contract.topics builds"
        access = "write" if channel in STATION_WRITES else "read"
        assert allowed(rules, station, access, topic), f"the EMQX ACL does not let {station} {access} {topic}"
        other = "read" if access == "write" else "write"
        assert not allowed(rules, station, other, topic), f"the EMQX ACL lets {station} {other} {topic}"
        # its own site and station only
        for elsewhere in (address.format(site=site + "x", station=station),
                          address.format(site=site, station=station + "x")):
            assert not allowed(rules, station, access, elsewhere), f"{station} may {access} {elsewhere}"


def test_the_central_service_may_do_what_its_code_does() -> None:
    rules, _ = emqx_rules()
    site, station = example_station(rules)
    vmq = mosquitto_style_rules(code_block("text"))
    assert {u for u, _, _ in vmq} == {CENTRAL_USER}
    for subscription in central_subscriptions():
        # EMQX checks the real topic of a shared subscription; VerneMQ's vmq_acl the whole filter, $share included
        assert allowed(rules, CENTRAL_USER, "read", real_topic(subscription)), f"EMQX refuses {subscription}"
        assert allowed(vmq, CENTRAL_USER, "read", subscription), f"VerneMQ refuses {subscription}"
    for topic in (topics.receipts_topic(site, station), topics.commands_topic(site, station)):
        assert allowed(rules, CENTRAL_USER, "write", topic)
        assert allowed(vmq, CENTRAL_USER, "write", topic)
    for topic in (topics.readings_topic(site, station), topics.status_topic(site, station)):
        assert not allowed(rules, CENTRAL_USER, "write", topic), f"the central user may write {topic}"
        assert not allowed(vmq, CENTRAL_USER, "write", topic), f"the central user may write {topic}"
    # the VerneMQ block is the Mosquitto ACL's central block plus the $share line
    mosquitto = {r for r in mosquitto_style_rules(MOSQUITTO_ACL.read_text(encoding="utf-8")) if r[0] == CENTRAL_USER}
    assert mosquitto <= vmq
    assert all(t.startswith(f"$share/{SHARED_GROUP}/") for _, _, t in vmq - mosquitto)


def test_every_shared_subscription_named_is_the_workers() -> None:
    # every `$share/<group>/sinkwatch/...` (examples of other topics, like EMQX's `$share/g/t/#`, are not ours)
    named = re.findall(r"\$share/([^/\s`]+)/(" + re.escape(topics.TOPIC_ROOT) + r"/[^\s`]*)", section_text())
    assert named, "the section names the workers' shared subscription"
    workers = {s for s in central_subscriptions() if s.startswith("$share/")}
    for group, rest in named:
        assert group == SHARED_GROUP, f"the section names group {group!r}; workers use {SHARED_GROUP!r}"
        subscription = f"$share/{group}/{rest}"
        # a worker's filter, the documented pattern with <channel>, or an ACL filter covering them all
        if "<channel>" in rest:
            assert rest.replace("<channel>", "readings") in {real_topic(w) for w in workers}
        else:
            assert subscription in workers or all(covers(subscription, w) for w in workers), subscription


def test_listeners_are_the_contracts_ports_and_certificate_identity() -> None:
    conf, vernemq = emqx_conf(), vernemq_conf()
    provisioning = ProvisioningSettings()
    spec = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    ports = {int(p) for p in spec["servers"]["broker"]["variables"]["port"]["enum"]}
    emqx_password = int(conf["listeners.ssl.default.bind"].rsplit(":", 1)[1])
    emqx_cert = int(conf["listeners.ssl.stations.bind"].rsplit(":", 1)[1])
    vmq_password = int(vernemq["listener.ssl.default"].rsplit(":", 1)[1])
    vmq_cert = int(vernemq["listener.ssl.stations"].rsplit(":", 1)[1])
    assert emqx_password == vmq_password == provisioning.broker_port
    assert emqx_cert == vmq_cert == provisioning.broker_cert_port
    assert {emqx_password, emqx_cert} <= ports
    # the certificate listener requires a certificate and takes its common name as the user name
    assert conf["listeners.ssl.stations.ssl_options.verify"] == "verify_peer"
    assert conf["listeners.ssl.stations.ssl_options.fail_if_no_peer_cert"] == "true"
    assert conf["listeners.ssl.stations.enable_authn"] == "false"
    assert conf["listeners.ssl.default.ssl_options.verify"] == "verify_none"
    assert conf["mqtt.peer_cert_as_username"] == "cn"
    assert vernemq["listener.ssl.stations.require_certificate"] == "on"
    assert vernemq["listener.ssl.stations.use_identity_as_username"] == "on"
    assert conf["mqtt.shared_subscription_strategy"] in EMQX_STRATEGIES
    assert vernemq["shared_subscription_policy"] in VERNEMQ_POLICIES


def test_a_station_certificates_common_name_is_its_acl_user(tmp_path: Path) -> None:
    """`peer_cert_as_username = cn` / `use_identity_as_username` make the CN the user the ACL names: provisioning's
    certificate must carry the station id as CN, and nothing else as CN."""
    rules, _ = emqx_rules()
    _, station = example_station(rules)
    issued = CertificateAuthority.create(tmp_path / "ca").issue_client(station)
    subject = x509.load_pem_x509_certificate(issued.cert_pem).subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [station]


@pytest.mark.parametrize(("rule", "wanted", "expected"), [
    ("sinkwatch/v1/#", "sinkwatch/v1/+/+/readings", True),
    ("sinkwatch/v1/+/+/receipts", "sinkwatch/v1/a/b/receipts", True),
    ("sinkwatch/v1/a/b/readings", "sinkwatch/v1/+/b/readings", False),
    ("sinkwatch/v1/a/b/readings", "sinkwatch/v1/a/b/readings/x", False),
    ("sinkwatch/v1/+/+/readings", "sinkwatch/v1/#", False),
])
def test_the_matching_used_here(rule: str, wanted: str, expected: bool) -> None:
    assert covers(rule, wanted) is expected
