"""A bad station config gets one clear message naming the file, the key and the problem, before any I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.configfile import ConfigError
from gateway.edge.cli import app
from gateway.edge.config import load_station_config

GOOD = {
    "site": "hainich",
    "station": "tower01",
    "mqtt": {"host": "127.0.0.1", "port": 1883},
    "buffer": {"path": "/var/lib/sinkwatch/never-opened.sqlite"},
    "sensors": [{"name": "co2_a", "driver": "gmp252", "port": "/dev/ttyUSB0"}],
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def with_changes(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {k: (list(v) if isinstance(v, list) else v) for k, v in GOOD.items()}
    data.update(changes)
    return data


def test_good_config_loads_with_typed_driver_config(tmp_path: Path) -> None:
    config = load_station_config(write(tmp_path, GOOD))
    assert (config.site, config.station) == ("hainich", "tower01")
    [(driver_class, sensor)] = config.sensors
    assert driver_class.__name__ == "GMP252Driver"
    assert sensor.name == "co2_a"
    assert getattr(sensor, "address") == 240  # the driver's default, from its own Config model  # noqa: B009


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("site: [unclosed", "not valid YAML at line 1"),
        ("", "config file is empty"),
        ("- a\n- b\n", "expected a mapping"),
        (with_changes(station="tower 01"), "  station: 'tower 01' is not a valid identifier"),
        (with_changes(sensors=[{"name": "x", "driver": "nosuch", "port": "/dev/x"}]),
         "sensors[0].driver: unknown driver 'nosuch'; known drivers: "),
        (with_changes(sensors=[{"name": "x", "driver": "gmp252", "port": "/dev/x", "adress": 3}]),
         "sensors[0].adress: unknown key"),
        (with_changes(sensors=[{"name": "x", "driver": "gmp252", "port": "/dev/x", "address": 300}]),
         "sensors[0].address: Input should be less than or equal to 247"),
        (with_changes(sensors=[{"name": "x", "driver": "gmp252"}]), "sensors[0].port: required key is missing"),
        (with_changes(sensors=[{"name": "x", "driver": "gmp252", "port": "/dev/a"},
                               {"name": "x", "driver": "gmp252", "port": "/dev/b"}]),
         "sensors[1].name: 'x' is already the name of sensors[0]; give every sensor its own name"),
        (with_changes(mqtt={"port": 99999}), "mqtt.port: Input should be less than or equal to 65535"),
        (with_changes(buffer={}), "buffer.path: required key is missing"),
    ],
)
def test_bad_config_names_file_key_and_problem(tmp_path: Path, data: object, expected: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load_station_config(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert expected in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_station_config(tmp_path / "nope.yaml")


def test_cli_reports_config_error_and_exits_2_without_touching_the_buffer(tmp_path: Path) -> None:
    buffer_path = tmp_path / "buffer.sqlite"
    path = write(tmp_path, with_changes(buffer={"path": str(buffer_path)}, mqtt={"host": "x", "prot": 1}))
    result = CliRunner().invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 2
    assert "mqtt.prot: unknown key" in result.output
    assert not buffer_path.exists()


def test_cli_validate_accepts_the_driver_sample_inside_a_station(tmp_path: Path) -> None:
    sample = yaml.safe_load((Path(__file__).parents[2] / "drivers/gmp252/sample.yaml").read_text())
    path = write(tmp_path, with_changes(sensors=[sample]))
    result = CliRunner().invoke(app, ["validate", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 sensor," in result.output


def test_a_duplicate_key_is_refused_with_file_line_and_key(tmp_path: Path) -> None:
    text = ("site: hainich\nstation: tower01\nbuffer:\n  path: /var/lib/sinkwatch/b.sqlite\nsensors:\n"
            "  - name: co2_a\n    driver: gmp252\n    port: /dev/ttyUSB0\n    address: 1\n    address: 2\n")
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_station_config(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: duplicate key at line 10")
    assert "'address' appears twice" in message and "first at line 9" in message


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf")])
def test_a_polling_interval_must_be_a_positive_number(tmp_path: Path, interval: float) -> None:
    path = write(tmp_path, with_changes(sensors=[{"name": "co2_a", "driver": "gmp252", "port": "/dev/ttyUSB0",
                                                  "interval_s": interval}]))
    with pytest.raises(ConfigError, match=r"sensors\[0\]\.interval_s: Input should be"):
        load_station_config(path)


@pytest.mark.parametrize(("interval", "expected"), [(0.01, "greater than or equal to 0.02"),
                                                    (1.5, "less than or equal to 1")])
def test_the_stream_read_interval_is_bounded(tmp_path: Path, interval: float, expected: str) -> None:
    path = write(tmp_path, with_changes(streams={"read_interval_s": interval}))
    with pytest.raises(ConfigError, match=rf"streams\.read_interval_s: Input should be {expected}"):
        load_station_config(path)


def test_the_stream_read_interval_reaches_the_runners(tmp_path: Path) -> None:
    from gateway.edge.streams.group import StreamGroup

    config = load_station_config(write(tmp_path, with_changes(
        streams={"read_interval_s": 0.5}, sensors=[{"name": "csat", "driver": "csat3b", "port": "tcp://127.0.0.1:9"}],
        buffer={"path": str(tmp_path / "buffer.sqlite")})))
    assert load_station_config(write(tmp_path, GOOD)).streams.read_interval_s == 1.0  # the default
    group = StreamGroup(config, sink=lambda readings: None)
    assert [r.settings.read_interval_s for r in group.runners] == [0.5]


@pytest.mark.parametrize("spelling", ["by-id/usb-FTDI_FT232R_A9XK1-if00-port0", "/ttyUSB0", "by-id/../ttyUSB0"])
def test_one_port_spelled_two_ways_is_refused(tmp_path: Path, spelling: str) -> None:
    # a stand-in for /dev: the adapter's node and its by-id link
    dev = tmp_path / "dev"
    (dev / "by-id").mkdir(parents=True)
    (dev / "ttyUSB0").touch()
    (dev / "by-id" / "usb-FTDI_FT232R_A9XK1-if00-port0").symlink_to(dev / "ttyUSB0")
    other = f"{dev}/{spelling}"  # "/ttyUSB0" makes dev//ttyUSB0
    sensors = [{"name": "co2_a", "driver": "gmp252", "port": str(dev / "ttyUSB0"), "address": 1},
               {"name": "co2_b", "driver": "gmp252", "port": other, "address": 1}]

    with pytest.raises(ConfigError) as caught:
        load_station_config(write(tmp_path, with_changes(sensors=sensors)))

    message = str(caught.value)
    assert "sensors[1].port: sensors[0] (co2_a)" in message
    assert f"which is the same device ({dev / 'ttyUSB0'})" in message
    assert "spell the port the same way" in message


def test_one_port_spelled_one_way_is_one_line_with_its_checks(tmp_path: Path) -> None:
    sensors = [{"name": "co2_a", "driver": "gmp252", "port": "/dev/ttyUSB0", "address": 1},
               {"name": "co2_b", "driver": "gmp252", "port": "/dev/ttyUSB0", "address": 1}]
    with pytest.raises(ConfigError, match="both use address 1 on /dev/ttyUSB0"):
        load_station_config(write(tmp_path, with_changes(sensors=sensors)))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_changes(sensors=[{"name": "x", "driver": "gmp252", "port": "/dev/x", "intervall_s": 10}]),
         "sensors[0].intervall_s: unknown key; did you mean interval_s?"),
        (with_changes(mqtt={"host": "x", "prot": 1883}), "mqtt.prot: unknown key; did you mean port?"),
        (with_changes(bufer={"path": "b.sqlite"}), "bufer: unknown key; did you mean buffer?"),
        (with_changes(telemetry={"supply_voltage": {"sensor": "x", "variabel": "V"}}),
         "telemetry.supply_voltage.variabel: unknown key; did you mean variable?"),
        (with_changes(sensors=[{"name": "x", "driver": "gmp252", "port": "/dev/x", "zzzz": 1}]),
         "sensors[0].zzzz: unknown key; the keys here are address, baudrate, bytesize, driver, interval_s, name,"),
    ],
)
def test_a_misspelt_key_names_the_key_it_likely_means(tmp_path: Path, data: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_station_config(write(tmp_path, data))
    assert expected in str(caught.value)


def test_a_folder_given_as_the_config_says_so_and_lists_its_yaml_files(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    result = CliRunner().invoke(app, ["validate", "-c", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path}: is a folder, not a config file" in result.output
    assert "station.yaml" in result.output
    assert "Traceback" not in result.output


def test_a_relative_signing_key_that_is_missing_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "etc"
    config.mkdir()
    monkeypatch.chdir(tmp_path)
    path = write(config, with_changes(signing_key="station.key"))
    with pytest.raises(ConfigError) as caught:
        load_station_config(path)
    assert "signing_key: station.key: no such key file" in str(caught.value)
    assert f"current directory, {tmp_path}" in str(caught.value)


@pytest.mark.parametrize("where", ["folder", "missing_parent"])
def test_run_with_a_buffer_that_cannot_be_opened_names_the_key_without_a_traceback(
    tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    buffer_path = tmp_path if where == "folder" else blocker / "buffer.sqlite"
    path = write(tmp_path, with_changes(buffer={"path": str(buffer_path)}))
    result = CliRunner().invoke(app, ["run", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}: buffer.path: cannot open the buffer {buffer_path}" in result.output
    assert "set buffer.path to a file (not a folder)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("port", ["tcp://127.0.0.1:99999", "tcp://127.0.0.1", "tcp://:4001"])
def test_a_streaming_instrument_tcp_port_is_checked_before_the_daemon_runs(tmp_path: Path, port: str) -> None:
    path = write(tmp_path, with_changes(sensors=[{"name": "sonic", "driver": "windmaster", "port": port}]))
    with pytest.raises(ConfigError) as caught:
        load_station_config(path)
    assert f"sensors[0].port: {port!r} is not tcp://HOST:PORT with a port 1..65535" in str(caught.value)


def test_a_file_that_is_not_utf8_names_the_line_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_bytes(yaml.safe_dump(GOOD).encode() + "# café\n".encode("latin-1"))
    lines = path.read_bytes().count(b"\n")
    with pytest.raises(ConfigError) as caught:
        load_station_config(path)
    assert f"not UTF-8 text (line {lines}, byte " in str(caught.value)
    assert "is 0xe9); save the file as UTF-8" in str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("interval_s: yes", "sensors[0].interval_s: must be a number, not true"),
    ("interval_s: true", "sensors[0].interval_s: must be a number, not true"),
    ("address: on", "sensors[0].address: must be a number, not true"),
    ("timeout_s: off", "sensors[0].timeout_s: must be a number, not false"),
])
def test_a_boolean_for_a_number_is_refused_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    """Hostile inputs by hand (docs/reliability.md): pydantic took `interval_s: yes` as a poll every second."""
    config = ("site: s\nstation: t\nmqtt: {host: b}\nbuffer: {path: /never/opened.sqlite}\n"
              f"sensors: [{{name: a, driver: gmp252, port: /dev/x, {text}}}]\n")
    with pytest.raises(ConfigError) as caught:
        load_station_config(write(tmp_path, config))
    assert expected in str(caught.value) and "write the number" in str(caught.value)


def test_a_boolean_for_the_broker_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mqtt.port: must be a number, not true"):
        load_station_config(write(tmp_path, with_changes(mqtt={"host": "b", "port": True})))


def test_a_boolean_where_a_boolean_belongs_is_still_one(tmp_path: Path) -> None:
    config = load_station_config(write(tmp_path, with_changes(
        sensors=[{"name": "a", "driver": "gmp252", "port": "/dev/x", "read_temperature": False}])))
    assert getattr(config.sensors[0][1], "read_temperature") is False  # noqa: B009


def test_a_device_given_as_the_config_is_refused_not_read_forever() -> None:
    """Hostile inputs by hand (docs/reliability.md): `station validate -c /dev/zero` read until memory ran out."""
    with pytest.raises(ConfigError, match=r"/dev/zero: cannot read config file: longer than 16 MiB"):
        load_station_config("/dev/zero")


# --- first-day walkthrough (docs/reliability.md): messages a new user met --------------------------------------

@pytest.mark.parametrize(("data", "expected"), [
    ("site: hainich\n\tstation: tower01\n",
     "found character '\\t' that cannot start any token (a tab: YAML indents with spaces only; replace the tab "
     "with spaces)"),
    ("# only a comment\n", "config file is empty (or holds only comments); start from `sinkwatch station "
                           "sample-config`"),
    (with_changes(sensors=[{"name": "x", "driver": "gmp25", "port": "/dev/x"}]),
     "sensors[0].driver: unknown driver 'gmp25'; did you mean gmp252? known drivers: "),
])
def test_a_new_users_mistake_is_named_with_its_fix(tmp_path: Path, data: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_station_config(write(tmp_path, data))
    assert expected in str(caught.value)


@pytest.mark.parametrize(("port", "expected"), [
    ("ttyUSB0", "sensors[0].port: 'ttyUSB0' is not a device path: give the whole path without spaces around it, "
                "e.g. /dev/ttyUSB0,"),
    ("/dev/ttyUSB0 ", "sensors[0].port: '/dev/ttyUSB0 ' is not a device path"),
    ("COM3", "e.g. /dev/ttyUSB0 (COM ports are Windows names)"),
    ("http://192.0.2.10:502", "sensors[0].port: 'http://192.0.2.10:502': a serial device is a path"),
])
def test_a_port_that_is_no_device_path_is_refused(tmp_path: Path, port: str, expected: str) -> None:
    """First-day walkthrough (docs/reliability.md): validate said ok, and the port was opened relative to the
    daemon's folder (or with the space in its name) and never found."""
    with pytest.raises(ConfigError) as caught:
        load_station_config(write(tmp_path, with_changes(sensors=[{"name": "x", "driver": "gmp252", "port": port}])))
    assert expected in str(caught.value)


def test_a_sections_own_check_names_its_key_once(tmp_path: Path) -> None:
    """`mqtt: mqtt.password_file: ... not found` named the section twice and gave no fix."""
    missing = tmp_path / "mqtt-password"
    with pytest.raises(ConfigError) as caught:
        load_station_config(write(tmp_path, with_changes(mqtt={"host": "b", "password_file": str(missing)})))
    lines = str(caught.value).splitlines()
    assert lines[1] == (f"  mqtt.password_file: {missing} not found; write the secret into that file (mode 0600, "
                        "owned by the service's user), or set mqtt.password_file to the file that holds it")


def test_the_keys_allowed_are_listed_once_for_several_unknown_keys(tmp_path: Path) -> None:
    """A processing-settings file given as metadata (or the reverse) listed the ~100 allowed keys once per key."""
    sensor = {"name": "x", "driver": "gmp252", "port": "/dev/x", "zzzz": 1, "yyyy": 2}
    with pytest.raises(ConfigError) as caught:
        load_station_config(write(tmp_path, with_changes(sensors=[sensor])))
    message = str(caught.value)
    assert message.count("the keys here are address, baudrate") == 1
    assert "unknown key (the keys allowed here are listed above)" in message


def test_sample_config_prints_a_station_config_that_validates(tmp_path: Path) -> None:
    printed = CliRunner().invoke(app, ["sample-config"])
    assert printed.exit_code == 0, printed.output
    path = tmp_path / "station.yaml"
    path.write_text(printed.output, encoding="utf-8")
    config = load_station_config(path)
    assert [s.driver for _, s in config.sensors] == ["gmp252"]
    checked = CliRunner().invoke(app, ["validate", "-c", str(path)])
    assert checked.exit_code == 0 and ": ok — station hainich/tower01, 1 sensor," in checked.output


@pytest.mark.parametrize("driver", ["gmp252", "windmaster", "firmware_bridge"])
def test_sample_config_prints_a_drivers_documented_sensor_entry(driver: str) -> None:
    repository = Path(__file__).resolve().parents[2]
    folder = repository / "firmware_bridge" if driver == "firmware_bridge" else repository / "drivers" / driver
    printed = CliRunner().invoke(app, ["sample-config", "--driver", driver])
    assert printed.exit_code == 0, printed.output
    assert printed.output == (folder / "sample.yaml").read_text(encoding="utf-8")
    assert f"driver: {driver}" in printed.output


def test_sample_config_of_an_unknown_driver_names_the_one_meant() -> None:
    printed = CliRunner().invoke(app, ["sample-config", "--driver", "windmastr"])
    assert printed.exit_code == 2
    assert "unknown driver 'windmastr'; did you mean windmaster? known drivers: chamber," in printed.output
