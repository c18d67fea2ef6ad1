"""/api/v1/health answers while the database is frozen (SIGSTOP: connections accepted, never answered), from a
short ping and the last known answer, instead of waiting out the store's 10 s request timeout."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.central.access import AccessControl
from gateway.central.api import HEALTH_CACHE_S, create_app
from gateway.central.store import InfluxStore
from gateway.testing.services import InfluxInstance

from .helpers import series, stored

# these tests are about data, not access: the API is built in development mode, explicitly
DEV = AccessControl.development()

# Not a speed figure: a liveness bound, far above the 1 s ping and far below the 10 s the old health check waited.
ANSWER_WITHIN_S = 5.0


def ask(client: TestClient, answers: list[dict[str, Any]]) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.append(client.get("/api/v1/health").json()), daemon=True)
    thread.start()
    return thread


@pytest.mark.integration
def test_health_answers_while_influxdb_is_frozen(influxd: InfluxInstance) -> None:
    store = InfluxStore(influxd.url, database="health", timeout_s=10)
    store.write(stored("site1", series("st1", [1.0])))
    with TestClient(create_app(store, access=DEV)) as client:
        assert client.get("/api/v1/health").json()["storage_reachable"] is True
        influxd.freeze()
        try:
            time.sleep(HEALTH_CACHE_S)  # past the age of the last answer ("reachable"), so health must ping again
            answers: list[dict[str, Any]] = []
            askers = [ask(client, answers) for _ in range(3)]  # a monitoring system asking again meanwhile
            deadline = time.monotonic() + ANSWER_WITHIN_S
            for thread in askers:
                thread.join(max(0.0, deadline - time.monotonic()))
            frozen_answers = list(answers)
            still_waiting = sum(thread.is_alive() for thread in askers)
        finally:
            influxd.thaw()
        for thread in askers:
            thread.join(15)
        assert still_waiting == 0, "health waited for the frozen database"
        assert [(a["status"], a["storage_reachable"]) for a in frozen_answers] == [("degraded", False)] * 3
        # thawed: the next check past the cache's age sees it again
        for _ in range(100):
            if client.get("/api/v1/health").json()["storage_reachable"]:
                break
            threading.Event().wait(0.1)
        assert client.get("/api/v1/health").json()["status"] == "ok"
    store.close()
