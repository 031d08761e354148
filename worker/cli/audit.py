"""``fleetway audit init``: create the audit trail's table once, with an owner's credentials.

Workers write the trail with a login that may only INSERT and SELECT; they never run DDL and check
at start that they may insert. This is the one step that creates the table, its index and the
triggers that keep it append-only, and grants the writers' role what they need.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fleetway.activities.audit.sinks import PostgresAuditSink
from fleetway.activities.errors import ConfigurationError
from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.runtime import load_settings, run_command, stderr

__all__ = ["audit_app"]

audit_app = typer.Typer(no_args_is_help=True, help="The durable audit trail's table.")


@audit_app.command("init")
def init(
    grant_to: Annotated[
        str, typer.Option("--grant-to", help="The role workers' audit.dsn logs in as: INSERT, SELECT.")
    ] = "",
) -> None:
    """Create the audit table (idempotent) with audit.dsn, which must be an owner's login for this step.

    Run it once per deployment (or after changing audit.table) with FLEETWAY_AUDIT__DSN pointing at a
    login that may create tables; workers then use a login with INSERT and SELECT only.
    """

    async def go() -> ExitCode:
        settings = load_settings()
        if settings.audit.dsn is None:
            raise ConfigurationError("audit init needs audit.dsn (FLEETWAY_AUDIT__DSN): the owner's login")
        PostgresAuditSink(settings.audit.dsn.get_secret_value(), table=settings.audit.table).install(
            grant_to=grant_to
        )
        granted = f"; {grant_to} may INSERT and SELECT" if grant_to else ""
        stderr.print(f"audit table {settings.audit.table} ready (append-only){granted}", markup=False)
        return ExitCode.OK

    run_command(go)
