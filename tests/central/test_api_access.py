"""Who may use the HTTP API (gateway/central/access.py): bearer tokens stored hashed, roles reader < operator <
admin, 401/403 with a message saying why, every refusal counted in /api/v1/health; development mode announced;
CORS closed unless configured; `sinkwatch central token create|list|revoke` on the file the running API reads."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gateway.central.access import AccessControl, TokenStore
from gateway.central.api import DEV_MODE_HEADER, create_app
from gateway.central.config import ApiSettings
from gateway.central.store import SqliteStore
from gateway.cli import app as cli

from .helpers import series, stored

# every route that serves data, with parameters that make it answer 200 on the seeded store (or 404 for a budget
# or product that is not there: access is decided before the route runs either way)
DATA_ROUTES = [
    "/api/v1/stations",
    "/api/v1/series?station=st1&variable=CO2&start=2026-11-25T00:00:00Z&end=2026-11-26T00:00:00Z",
    "/api/v1/fluxes?station=st1&start=2026-11-25T00:00:00Z&end=2026-11-26T00:00:00Z",
    "/api/v1/fluxes/sets?station=st1",
    "/api/v1/budget?station=st1&year=2026",
    "/api/v1/budget/sets?station=st1",
    "/api/v1/soil?station=st1&year=2026",
    "/api/v1/soil/sets?station=st1",
    "/api/v1/stems?station=st1&year=2026",
    "/api/v1/stems/sets?station=st1",
    "/api/v1/report?station=st1&year=2026",
]
# the operators' view of the network: station health reports and alerts
OPERATOR_ROUTES = [
    "/api/v1/alerts",
    "/api/v1/alerts/history?start=2026-11-25T00:00:00Z&end=2026-11-26T00:00:00Z",
    "/api/v1/alerts/rules",
    "/api/v1/station-health",
    "/api/v1/stations/st1/health",
    "/api/v1/stations/st1/health/history?start=2026-11-25T00:00:00Z&end=2026-11-26T00:00:00Z",
]


class Api:
    def __init__(self, client: TestClient, tokens: TokenStore, access: AccessControl) -> None:
        self.client = client
        self.tokens = tokens
        self.access = access
        self.issued = {role: tokens.create(f"{role}-holder", role)[1] for role in ("reader", "operator", "admin")}

    def get(self, path: str, token: str | None = None, **headers: str) -> object:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.get(path, headers=headers)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    store = SqliteStore(tmp_path / "store.sqlite")
    store.write(stored("site1", series("st1", [412.5, 413.0])))
    tokens = TokenStore.in_data_dir(tmp_path / "central")
    access = AccessControl("token", tokens)
    with TestClient(create_app(store, access=access)) as client:
        yield Api(client, tokens, access)
    tokens.close()
    store.close()


def test_every_data_route_is_the_same_path_set_the_app_serves(api: Api) -> None:
    # the list above must cover every route: a new route added without a role check would show up here
    served = set(api.client.get("/openapi.json").json()["paths"])
    listed = {path.split("?")[0].replace("/st1/", "/{station}/") for path in DATA_ROUTES + OPERATOR_ROUTES}
    # the command routes (gateway/central/api_commands.py; sending needs operator, reading reader: tested below)
    commands = {"/api/v1/commands/key", "/api/v1/stations/{station}/commands",
                "/api/v1/stations/{station}/commands/{command_id}"}
    assert served - listed == {"/api/v1/health", "/api/v1/tokens", "/api/v1/tokens/{token_id}", *commands}


def test_command_routes_need_an_operator_token(api: Api) -> None:
    body = {"kind": "check"}
    assert api.client.post("/api/v1/stations/st1/commands", json=body).status_code == 401
    refused = api.client.post("/api/v1/stations/st1/commands", json=body,
                              headers={"Authorization": f"Bearer {api.issued['reader']}"})
    assert refused.status_code == 403 and "needs operator" in refused.json()["detail"]


@pytest.mark.parametrize("path", OPERATOR_ROUTES)
def test_an_operator_route_refuses_a_reader_token(api: Api, path: str) -> None:
    assert api.get(path).status_code == 401  # type: ignore[attr-defined]
    refused = api.get(path, api.issued["reader"])
    assert refused.status_code == 403 and "needs operator" in refused.json()["detail"]  # type: ignore[attr-defined]
    assert api.get(path, api.issued["operator"]).status_code in (200, 404)  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", DATA_ROUTES)
def test_a_data_route_without_a_token_is_401_naming_the_fix(api: Api, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 401, response.text  # type: ignore[attr-defined]
    assert response.headers["WWW-Authenticate"] == "Bearer"  # type: ignore[attr-defined]
    assert "sinkwatch central token create" in response.json()["detail"]  # type: ignore[attr-defined]
    reader = api.get(path, api.issued["reader"])
    assert reader.status_code in (200, 404, 422), reader.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(("header", "kind", "words"), [
    ("Basic dXNlcjpwdw==", "malformed", "must be 'Bearer <token>'"),
    ("Bearer ", "malformed", "must be 'Bearer <token>'"),
    ("Bearer not-a-token", "malformed", "not a sinkwatch API token"),
    ("Bearer swt_0123456789ab_" + "A" * 43, "unknown", "unknown token"),
])
def test_a_wrong_token_is_401_with_the_reason_and_counted_by_kind(api: Api, header: str, kind: str,
                                                                  words: str) -> None:
    response = api.client.get("/api/v1/stations", headers={"Authorization": header})
    assert response.status_code == 401 and words in response.json()["detail"]
    assert api.access.failures[kind] == 1


def test_a_token_with_the_right_id_and_a_wrong_secret_is_unknown(api: Api) -> None:
    real = api.issued["reader"]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    assert api.get("/api/v1/stations", forged).status_code == 401  # type: ignore[attr-defined]
    assert api.access.failures["unknown"] == 1


def test_roles_reader_cannot_administer_operator_sees_counters_admin_manages_tokens(api: Api) -> None:
    reader, operator, admin = (api.issued[r] for r in ("reader", "operator", "admin"))
    for token in (reader, operator):
        response = api.get("/api/v1/tokens", token)
        assert response.status_code == 403, response.text  # type: ignore[attr-defined]
        assert "needs admin" in response.json()["detail"]  # type: ignore[attr-defined]
        created = api.client.post("/api/v1/tokens", json={"name": "x", "role": "admin"},
                                  headers={"Authorization": f"Bearer {token}"})
        assert created.status_code == 403  # a reader cannot mint itself an admin token
    assert api.access.failures["forbidden"] == 4
    # health: open to all, counters only for operator and admin
    assert api.get("/api/v1/health").json()["counters"] is None  # type: ignore[attr-defined]
    assert api.get("/api/v1/health", reader).json()["counters"] is None  # type: ignore[attr-defined]
    security = api.get("/api/v1/health", operator).json()["counters"]["security"]  # type: ignore[attr-defined]
    assert security["mode"] == "token" and security["auth_failures"] == {"forbidden": 4}
    # admin: create, list (never a token or its hash), revoke
    created = api.client.post("/api/v1/tokens", json={"name": "grafana", "role": "reader"},
                              headers={"Authorization": f"Bearer {admin}"})
    assert created.status_code == 201
    new = created.json()["token"]
    assert api.get("/api/v1/stations", new).status_code == 200  # type: ignore[attr-defined]
    listing = api.get("/api/v1/tokens", admin)
    assert [t["name"] for t in listing.json()] == ["reader-holder", "operator-holder", "admin-holder",  # type: ignore[attr-defined]
                                                   "grafana"]
    assert new not in listing.text and all(t not in listing.text for t in api.issued.values())  # type: ignore[attr-defined]
    revoked = api.client.delete(f"/api/v1/tokens/{created.json()['id']}", headers={"Authorization": f"Bearer {admin}"})
    assert revoked.status_code == 200 and revoked.json()["revoked"] is not None
    response = api.get("/api/v1/stations", new)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]  # type: ignore[attr-defined]


def test_a_token_revoked_from_the_command_line_is_refused_by_the_running_api(api: Api, tmp_path: Path) -> None:
    config = tmp_path / "central.yaml"
    config.write_text(f"storage: {{kind: sqlite, path: {tmp_path / 'store.sqlite'}}}\n"
                      f"data_dir: {tmp_path / 'central'}\n", encoding="utf-8")
    runner = CliRunner()
    created = runner.invoke(cli, ["central", "token", "create", "alice", "--role", "reader", "-c", str(config)])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("swt_")
    assert api.get("/api/v1/stations", token).status_code == 200  # type: ignore[attr-defined]
    listed = runner.invoke(cli, ["central", "token", "list", "-c", str(config)])
    assert "alice" in listed.stdout and token not in listed.stdout
    assert runner.invoke(cli, ["central", "token", "revoke", "alice", "-c", str(config)]).exit_code == 0
    assert api.get("/api/v1/stations", token).status_code == 401  # type: ignore[attr-defined]
    again = runner.invoke(cli, ["central", "token", "create", "bob", "--role", "superuser", "-c", str(config)])
    assert again.exit_code == 2 and "reader, operator, admin" in again.output


def test_tokens_are_stored_as_hashes_only(api: Api) -> None:
    data = b"".join(p.read_bytes() for p in api.tokens.path.parent.glob("api-tokens.sqlite*"))
    for token in api.issued.values():
        assert token.encode() not in data and token.split("_", 2)[2].encode() not in data
    assert api.tokens.path.stat().st_mode & 0o077 == 0


def test_a_presented_token_never_appears_in_the_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "swt_0123456789ab_" + "Z" * 43
    api.get("/api/v1/stations", bad)
    api.get("/api/v1/stations", api.issued["reader"])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert bad not in text and api.issued["reader"] not in text


# --- development mode, CORS ------------------------------------------------------------------------------------


def test_development_mode_is_announced_on_every_response(tmp_path: Path) -> None:
    store = SqliteStore(":memory:")
    with TestClient(create_app(store, access=AccessControl.development())) as client:
        for path in ("/api/v1/health", "/api/v1/stations", "/api/v1/nothing-here", "/docs", "/openapi.json"):
            assert client.get(path).headers[DEV_MODE_HEADER] == "development", path
        assert client.get("/api/v1/health").json()["auth"] == "development"
        assert client.get("/openapi.json").json()["info"]["description"].startswith("DEVELOPMENT MODE")
    with TestClient(create_app(store, access=AccessControl("token", TokenStore(":memory:")))) as client:
        response = client.get("/api/v1/health")
        assert DEV_MODE_HEADER not in response.headers and response.json()["auth"] == "token"


def test_development_mode_is_refused_on_a_non_loopback_host() -> None:
    with pytest.raises(ValueError, match=r"api.auth development .* refused on api.host 0\.0\.0\.0"):
        ApiSettings(host="0.0.0.0", auth="development")
    assert ApiSettings().auth == "token"  # the default of `central serve`


def test_cors_is_closed_by_default_and_open_only_to_listed_origins() -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}
    store = SqliteStore(":memory:")
    with TestClient(create_app(store, access=AccessControl.development())) as client:
        assert "access-control-allow-origin" not in client.options("/api/v1/stations", headers=preflight).headers
        assert "access-control-allow-origin" not in client.get("/api/v1/stations",
                                                               headers={"Origin": "https://evil.example"}).headers
    with TestClient(create_app(store, access=AccessControl.development(),
                               cors_origins=["https://grafana.example"])) as client:
        allowed = client.options("/api/v1/stations", headers={**preflight, "Origin": "https://grafana.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://grafana.example"
        assert "access-control-allow-origin" not in client.options("/api/v1/stations", headers=preflight).headers
    with pytest.raises(ValueError, match=r"api\.cors_origins"):
        ApiSettings(cors_origins=["*"])


def test_the_status_page_needs_an_operator_and_a_browser_can_sign_in_with_the_token(api: Api) -> None:
    import base64

    for path in ("/", "/status/main"):
        refused = api.get(path)
        assert refused.status_code == 401  # type: ignore[attr-defined]
        assert refused.headers["WWW-Authenticate"].startswith('Basic realm="sinkwatch status"')  # type: ignore[attr-defined]
        assert "--role operator" in refused.text and "<h2>Alerts</h2>" not in refused.text  # type: ignore[attr-defined]
        reader = api.get(path, api.issued["reader"])
        assert reader.status_code == 403 and "needs operator" in reader.text  # type: ignore[attr-defined]
        assert api.get(path, api.issued["operator"]).status_code == 200  # type: ignore[attr-defined]
        basic = base64.b64encode(f"anyone:{api.issued['operator']}".encode()).decode()
        signed_in = api.client.get(path, headers={"Authorization": f"Basic {basic}"})
        assert signed_in.status_code == 200 and "<h2>Alerts</h2>" in signed_in.text
        wrong = base64.b64encode(b"anyone:not-a-token").decode()
        assert api.client.get(path, headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert api.client.get("/static/status.css").status_code == 200  # code, not data
    assert api.access.failures["missing"] == 2 and api.access.failures["forbidden"] == 2


def test_a_public_status_page_is_served_without_a_token(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    store.write(stored("site1", series("st1", [412.5])))
    tokens = TokenStore.in_data_dir(tmp_path / "central")
    app = create_app(store, access=AccessControl("token", tokens), status_page_public=True)
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
        assert client.get("/api/v1/stations").status_code == 401  # the API itself stays closed
    assert ApiSettings(status_page="public").status_page == "public"
    with pytest.raises(ValueError, match="status_page"):
        ApiSettings(status_page="everyone")  # type: ignore[arg-type]
    tokens.close()
    store.close()
