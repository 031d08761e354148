"""``fleetway worker|settings|demo``: what runs on this machine rather than asks the server.

``worker`` is the only command that loads the worker process (its engines, the JVM bridge) and
``demo`` the only one that loads the dev stack: every other command stays light.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from fleetway.activities.errors import ConfigurationError
from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.output import OutputFormat
from fleetway.worker.cli.runtime import load_settings, run_command
from fleetway.worker.config.effective import effective_settings

__all__ = ["demo", "show_settings", "worker"]


def worker(
    engine: Annotated[
        str, typer.Option(help="Flyway engine: auto, cli or jvm (default: flyway.engine).")
    ] = "",
) -> None:
    """Run a worker: registers every workflow and activity; SIGTERM shuts down gracefully."""
    from fleetway.worker.process.run import run_worker  # noqa: PLC0415 - only this command loads it

    async def go() -> ExitCode:
        settings = load_settings()
        if engine:
            if engine not in ("auto", "cli", "jvm"):
                raise ConfigurationError(f"--engine must be auto, cli or jvm, not {engine!r}")
            settings = settings.model_copy(
                update={"flyway": settings.flyway.model_copy(update={"engine": engine})}
            )
        await run_worker(settings)
        return ExitCode.OK

    run_command(go, service="fleetway-worker")


def show_settings(
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
) -> None:
    """Print every setting this process would run with, and where each came from.

    Sources, highest first: the environment (FLEETWAY_<SECTION>__<KEY>; TEMPORAL_ADDRESS and
    TEMPORAL_NAMESPACE for the Temporal section), the TOML file named by FLEETWAY_CONFIG, the
    default. Secrets show as set or unset, never their value.
    """

    async def go() -> ExitCode:
        rows = effective_settings(load_settings())
        if output is OutputFormat.TEXT:
            # Plain aligned columns, never wrapped: greppable, and pasteable into a ticket.
            width = min(56, max(len(f"{row.key} = {row.value}") for row in rows))
            for row in rows:
                print(f"{row.key} = {row.value}".ljust(width), f" # {row.source}; {row.env}")
        else:
            print(json.dumps([asdict(row) for row in rows]))
        return ExitCode.OK

    run_command(go)


def demo(
    tenants: Annotated[int, typer.Option(min=1, max=500, help="How many demo tenants.")] = 24,
    hold: Annotated[bool, typer.Option("--hold", help="Keep the stack up afterwards until Ctrl-C.")] = False,
    secrets: Annotated[
        str,
        typer.Option(help="Where the demo keeps tenant credentials: file, vault (OpenBao) or aws (moto)."),
    ] = "file",
) -> None:
    """Start the embedded stack and migrate a fleet of demo tenants end to end through the CLI."""
    from fleetway.worker.dev.demo import run_demo  # noqa: PLC0415 - only this command needs the dev stack

    if secrets not in ("file", "vault", "aws"):
        raise typer.BadParameter("--secrets must be file, vault or aws")
    run_command(lambda: run_demo(tenants=tenants, hold=hold, secrets_backend=secrets))  # type: ignore[arg-type]
