"""`sinkwatch central ...` commands (mounted by gateway/cli.py as a sub-app)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from gateway.central.config import SAMPLE_CONFIG_PATH, load_central_config
from gateway.configfile import ConfigError

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
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gateway.central.service import run_central  # after validation: no I/O before the config is known good

    run_central(
        settings,
        ready_callback=lambda port: typer.echo(f"API listening on http://{settings.api.host}:{port} (docs at /docs)"),
    )


@app.command("sample-config")
def sample_config() -> None:
    """Print a documented sample config to start from."""
    typer.echo(SAMPLE_CONFIG_PATH.read_text(encoding="utf-8"), nl=False)
