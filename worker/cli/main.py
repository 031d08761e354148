"""The ``fleetway`` CLI: the command tree, one module per command family, over the library.

Each command parses, calls the library (``fleetway.worker.client``, ``from fleetway import ...``)
and renders through ``output.py``. Exit codes by the error's family (``ExitCode``): 0 ok, 1 failed,
2 bad input or configuration, 3 quiesced or paused, 4 not found, 5 refused, 6 unavailable, 130
Ctrl-C (the rollout runs on). Processes end with ``os._exit`` (temporalio/sdk-python#300).
"""

from __future__ import annotations

import typer

from fleetway.activities.flyway.output import Action
from fleetway.worker.cli.audit import audit_app
from fleetway.worker.cli.fleet import fleet, wait
from fleetway.worker.cli.flyway_jars import flyway_app
from fleetway.worker.cli.local import demo, show_settings, worker
from fleetway.worker.cli.provision import deprovision, provision
from fleetway.worker.cli.quiesce import quiesce
from fleetway.worker.cli.rollout import rollout_command
from fleetway.worker.cli.schedule import drift, schedule_app
from fleetway.worker.cli.sets import migrations_app
from fleetway.worker.cli.steer import cancel, pause, resume, set_parallelism, status
from fleetway.worker.cli.tenant_actions import retry_tenant, skip_tenant, tenant_deadline
from fleetway.worker.cli.tenants import list_tenants
from fleetway.worker.cli.waves import approve, reject

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Durable multi-tenant Flyway rollouts on Temporal.",
    epilog=(
        "Configuration: environment variables FLEETWAY_<SECTION>__<KEY> (e.g. FLEETWAY_TEMPORAL__ADDRESS), "
        "a TOML file named by FLEETWAY_CONFIG, or the defaults; TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE "
        "are honoured. 'fleetway settings' prints what is in effect and where each value came from."
    ),
)
# What each command reads from the settings (shown under its --help).
_CONNECTS = "Reads temporal.address, temporal.namespace, temporal.task_queue (see 'fleetway settings')."
_ROLLOUT = (
    "Reads temporal.address, temporal.task_queue, and flyway.locations (or --migrations); the worker on "
    "that task queue supplies the tenant source (tenants.*) and the secret backend (secrets.*). "
    "See 'fleetway settings'."
)
_WORKER = (
    "Reads every section: temporal.* (where to poll), flyway.engine, flyway.locations, sets.* (migration "
    "sets), tenants.* (the tenant source), secrets.* (credentials), quiesce.*, audit.*, worker.*. "
    "See 'fleetway settings'."
)
_QUIESCE = (
    "Reads quiesce.dsn and quiesce.table (the flag's shared store; unset: refused) and audit.* (the flip is "
    "audited). See 'fleetway settings'."
)
_LIST = (
    "Asks the worker on temporal.task_queue; with --local reads tenants.* itself. See 'fleetway settings'."
)

for _action in Action:
    app.command(name=_action.value, epilog=_ROLLOUT)(rollout_command(_action))
app.command(epilog=_WORKER)(worker)
app.command(epilog=_CONNECTS)(status)
app.command(name="pause", epilog=_CONNECTS)(pause)
app.command(name="resume", epilog=_CONNECTS)(resume)
app.command(name="set-parallelism", epilog=_CONNECTS)(set_parallelism)
app.command(epilog=_CONNECTS)(cancel)
app.command(epilog=_QUIESCE)(quiesce)
app.command(name="list-tenants", epilog=_LIST)(list_tenants)
app.command(name="settings")(show_settings)
app.command()(demo)
app.command(name="approve", epilog=_CONNECTS)(approve)
app.command(name="reject", epilog=_CONNECTS)(reject)
app.command(name="skip-tenant", epilog=_CONNECTS)(skip_tenant)
app.command(name="retry-tenant", epilog=_CONNECTS)(retry_tenant)
app.command(name="tenant-deadline", epilog=_CONNECTS)(tenant_deadline)
app.command()(provision)
app.command(epilog=_CONNECTS)(fleet)
app.command(epilog=_CONNECTS)(wait)
app.command()(deprovision)
app.command()(drift)
app.add_typer(schedule_app, name="schedule")
app.add_typer(migrations_app, name="migrations")
app.add_typer(flyway_app, name="flyway")
app.add_typer(audit_app, name="audit")


def main() -> None:
    """Console-script entry point."""
    app()
