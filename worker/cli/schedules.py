"""Nightly fleet validation as a Temporal Schedule (and its ``info`` variant for pending drift).

A schedule starts ``MigrateAllWorkflow`` with ``continue_on_error`` (every tenant is checked) on a
cron spec in UTC, skips a run while the previous one is still going (overlap SKIP), and catches up
at most one hour of missed runs after an outage. ``ensure_schedule`` is idempotent: creating an
existing schedule updates it in place, so a pipeline can apply it on every deploy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from fleetway.activities.audit.events import AuditContext
from fleetway.activities.errors import ConfigurationError
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.flyway.output import Action
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput

__all__ = ["DEFAULT_CRON", "ScheduleRequest", "build_schedule", "ensure_schedule", "latest_run_id"]

DEFAULT_CRON: Final = "0 2 * * *"
CATCHUP_WINDOW: Final = timedelta(hours=1)


@dataclass(frozen=True)
class ScheduleRequest:
    """What a fleet-validation schedule runs and when."""

    schedule_id: str
    task_queue: str
    action: Action = Action.VALIDATE
    cron: str = DEFAULT_CRON
    parallelism: int = 8
    principal: str = "fleetway-schedule"
    paused: bool = False
    # Placeholders: a set that uses them is validated with the values its migrations ran with.
    flyway: FlywayOptions = field(default_factory=FlywayOptions)


def build_schedule(request: ScheduleRequest) -> Schedule:
    """The Temporal schedule for ``request`` (runs get ids ``<schedule id>-run-<timestamp>``).

    Raises:
        ConfigurationError: the action is ``migrate`` (schedules only check; pipelines migrate).
    """
    if request.action is Action.MIGRATE:
        raise ConfigurationError("a schedule runs validate or info; migrate is started by a pipeline")
    return Schedule(
        action=ScheduleActionStartWorkflow(
            MigrateAllWorkflow.run,
            MigrateAllInput(
                action=request.action,
                parallelism=request.parallelism,
                continue_on_error=True,
                audit=AuditContext(principal=request.principal),
                flyway=request.flyway,
            ),
            id=f"{request.schedule_id}-run",
            task_queue=request.task_queue,
        ),
        spec=ScheduleSpec(cron_expressions=[request.cron], time_zone_name="UTC"),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
        state=ScheduleState(paused=request.paused, note=f"fleetway {request.action.value} of the fleet"),
    )


async def ensure_schedule(client: Client, request: ScheduleRequest) -> str:
    """Create the schedule, or update it in place when it exists; return ``created`` or ``updated``."""
    schedule = build_schedule(request)
    try:
        await client.create_schedule(request.schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(request.schedule_id).update(replace)
        return "updated"
    return "created"


async def latest_run_id(client: Client, schedule_id: str) -> str | None:
    """The workflow id of the schedule's most recent run, if any."""
    description = await client.get_schedule_handle(schedule_id).describe()
    recent = description.info.recent_actions
    if not recent:
        return None
    action = recent[-1].action
    return getattr(action, "workflow_id", None)
