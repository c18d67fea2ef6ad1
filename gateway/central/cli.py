"""`sinkwatch central ...` commands (mounted by gateway/cli.py as a sub-app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway.central.config import SAMPLE_CONFIG_PATH, load_central_config
from gateway.configfile import ConfigError
from gateway.logs import setup_logging

app = typer.Typer(help="Central service: ingest readings from MQTT into storage and serve them over HTTP.",
                  no_args_is_help=True)


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="central config file (see sample-config)")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log debug messages")] = False,
) -> None:
    """Run the ingestor and the HTTP API until Ctrl-C / SIGTERM."""
    try:
        settings = load_central_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    setup_logging("DEBUG" if verbose else None)
    from gateway.central.service import run_central  # after validation: no I/O before the config is known good

    run_central(
        settings,
        ready_callback=lambda port: typer.echo(f"API listening on http://{settings.api.host}:{port} (docs at /docs)"),
    )


@app.command("sample-config")
def sample_config() -> None:
    """Print a documented sample config to start from."""
    typer.echo(SAMPLE_CONFIG_PATH.read_text(encoding="utf-8"), nl=False)


def openapi_document() -> dict[str, object]:
    """The HTTP contract as served at /openapi.json (the store is never touched to produce it)."""
    from gateway.central.api import create_app
    from gateway.central.store import SqliteStore

    return create_app(SqliteStore(":memory:")).openapi()


@app.command()
def openapi() -> None:
    """Print the HTTP API's OpenAPI document (docs/openapi.json is this output)."""
    import json

    typer.echo(json.dumps(openapi_document(), indent=2, sort_keys=True))
