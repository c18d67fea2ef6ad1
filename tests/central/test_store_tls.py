"""InfluxDB over HTTPS (influxd 1.x's https-enabled) with a private CA made here: the store writes and reads
through it, and a certificate from another CA or for another host name fails closed with an error naming the
setting, counted for /health (docs/security.md, "TLS")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.central.store import InfluxStore, StoredReading, StoreUnavailable
from gateway.testing.factories import make_readings
from gateway.testing.services import running_influxd
from gateway.testing.tlsfiles import make_pki

pytestmark = pytest.mark.integration


def _batch() -> list[StoredReading]:
    return [StoredReading(site="hainich", reading=r) for r in make_readings(3, station="st01")]


def test_the_store_writes_and_reads_over_https_with_the_private_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    server = pki.server("influx", ("localhost",))
    with running_influxd(tmp_path / "influx", https=(server.cert, server.key), ca_file=pki.ca_file,
                         host="localhost") as influx:
        assert influx.url.startswith("https://localhost:")
        store = InfluxStore(influx.url, database="tls_test", ca_file=pki.ca_file)
        try:
            assert store.ping()
            batch = _batch()
            assert store.write(batch).written == 3
            first = min(b.reading.time for b in batch)
            points = store.query_series("st01", batch[0].reading.variable, first - timedelta(seconds=1),
                                        first + timedelta(hours=1), None, "mean")
            assert len(points) >= 1
            assert store.tls is not None and store.tls.snapshot()["failures"] == {}
        finally:
            store.close()


@pytest.mark.parametrize("case", ["other_ca", "other_host"])
def test_https_with_a_wrong_ca_or_host_name_fails_closed_naming_the_setting(tmp_path: Path, case: str) -> None:
    pki = make_pki(tmp_path / "pki")
    server = pki.server("influx", ("localhost",))
    other = make_pki(tmp_path / "other", "another CA")
    with running_influxd(tmp_path / "influx", https=(server.cert, server.key), ca_file=pki.ca_file,
                         host="localhost") as influx:
        url = influx.url if case == "other_ca" else influx.url.replace("localhost", "127.0.0.1")
        ca = other.ca_file if case == "other_ca" else pki.ca_file
        store = InfluxStore(url, database="tls_test", ca_file=ca)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                store.write(_batch())
            assert not store.ping()
            assert store.tls is not None
            snapshot = store.tls.snapshot()
        finally:
            store.close()
    message = str(caught.value)
    if case == "other_ca":
        assert "storage.ca_file" in message and str(other.ca_file) in message
        assert snapshot["failures"].get("unknown_ca", 0) >= 1
    else:
        assert "storage.url '127.0.0.1'" in message
        assert snapshot["failures"].get("hostname_mismatch", 0) >= 1
