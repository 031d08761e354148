"""FleetwayClient: start rollouts, find them, ask the workers and read the fleet, from Python.

What ``fleetway migrate`` does before it starts a rollout is here, once, for every caller: the
request is validated (a typed model), a rerun of a running rollout is refused, the quiesce store
this client's settings name is pinned, and the rollout id is Temporal's idempotency key — the same
id started again joins the running rollout (``join=True``) or is refused by name, and an ended
rollout's id is never reused (its children's ids would answer for it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from temporalio.client import Client, WorkflowFailureError
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from fleetway.activities.errors import InvalidInputError, WorkerUnavailableError
from fleetway.activities.fleet.report import FleetReport
from fleetway.activities.fleet.state import ReadFleetInput
from fleetway.worker.client.lookup import refuse_rerun_of_running, refuse_reused_rollout_id
from fleetway.worker.client.rollout import Rollout
from fleetway.worker.config.backends import quiesce_store_named
from fleetway.worker.config.client import connect, has_pollers
from fleetway.worker.config.settings import Settings, load_settings
from fleetway.workflows.describe_fleet import DescribeFleetInput, DescribeFleetWorkflow, FleetDescription
from fleetway.workflows.fleet_state import FleetStateWorkflow
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult
from fleetway.workflows.ui_text import rollout_details, rollout_summary

__all__ = ["FleetwayClient"]

_DESCRIBE_TIMEOUT = timedelta(seconds=20)
_LIST_TIMEOUT = timedelta(minutes=10)
_FLEET_READ_TIMEOUT = timedelta(minutes=30)


class FleetwayClient:
    """A Temporal client bound to the task queue fleetway's workers poll (and, optionally, settings)."""

    def __init__(self, temporal: Client, task_queue: str, *, settings: Settings | None = None) -> None:
        self.temporal = temporal
        self.task_queue = task_queue
        self._settings = settings

    @classmethod
    async def connect(
        cls,
        settings: Settings | None = None,
        *,
        address: str | None = None,
        namespace: str | None = None,
        task_queue: str | None = None,
    ) -> FleetwayClient:
        """Connect as the CLI does; an argument given overrides its setting.

        ``settings``: default, from the environment and ``FLEETWAY_CONFIG``.

        Raises:
            TemporalUnavailableError: the server cannot be reached.
            ConfigurationError: the settings are invalid (named by field, never by value).
        """
        settings = settings or load_settings()
        temporal = settings.effective_temporal()
        changes = {k: v for k, v in (("address", address), ("namespace", namespace)) if v is not None}
        if task_queue is not None:
            changes["task_queue"] = task_queue
        temporal = temporal.model_copy(update=changes)
        return cls(await connect(temporal), temporal.task_queue, settings=settings)

    @property
    def settings(self) -> Settings:
        """The settings this client was connected with (from the environment when none were given)."""
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def rollout(self, rollout_id: str) -> Rollout:
        """A handle on an existing rollout (nothing is checked until it is used)."""
        return Rollout(self.temporal, rollout_id)

    async def start(self, request: MigrateAllInput, *, rollout_id: str = "", join: bool = False) -> Rollout:
        """Start a rollout; with ``join``, the same id still running is joined instead of refused.

        Raises:
            RolloutIdReusedError: the id names a rollout that ended, or (without ``join``) runs.
            InvalidInputError: a rerun of a rollout still running (its failures are not final).
            RolloutNotFoundError: a rerun of a rollout that does not exist.
        """
        if not request.quiesce_store and self._settings is not None:
            # The store this client's ``quiesce set`` writes: workers reading another refuse the checks.
            request = request.model_copy(update={"quiesce_store": quiesce_store_named(self._settings)})
        await refuse_rerun_of_running(self.temporal, request.rerun_failed_of)
        rollout_id = rollout_id or f"rollout-{request.action.value}-{uuid.uuid4().hex[:10]}"
        # A join says USE_EXISTING; else UNSPECIFIED, which the server takes as FAIL (and which the
        # time-skipping test server, knowing no conflict policy, accepts).
        conflict = WorkflowIDConflictPolicy.USE_EXISTING if join else WorkflowIDConflictPolicy.UNSPECIFIED
        try:
            handle = await self.temporal.start_workflow(
                MigrateAllWorkflow.run,
                request,
                id=rollout_id,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=conflict,
                # What the Temporal UI's list and the rollout's page show at a glance.
                static_summary=rollout_summary(request),
                static_details=rollout_details(request),
                # No search attribute here: a start naming one the namespace lacks is refused, and a
                # new namespace has them only once a worker registered them (the rollout sets them).
            )
        except WorkflowAlreadyStartedError:
            await refuse_reused_rollout_id(self.temporal, rollout_id)  # names the run and its state
            raise
        return Rollout(self.temporal, rollout_id, handle=handle)

    async def run(self, request: MigrateAllInput, *, rollout_id: str = "") -> MigrateAllResult:
        """Start a rollout and wait for its result (a pipeline step, a test)."""
        return await (await self.start(request, rollout_id=rollout_id)).result()

    async def workers(
        self, *, list_tenants: bool = False, migration_set: str = "", wait_s: float = 5.0
    ) -> FleetDescription:
        """What a worker on the task queue will use (and, asked, its tenant list).

        A worker still starting gets ``wait_s`` seconds to poll.

        Raises:
            WorkerUnavailableError: no worker polls the task queue, or none answered in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not await has_pollers(self.temporal, self.task_queue):
            if loop.time() >= deadline:
                raise WorkerUnavailableError(
                    f"no worker polls task queue {self.task_queue!r} (start one with: fleetway worker)"
                )
            await asyncio.sleep(0.5)
        timeout = _LIST_TIMEOUT if list_tenants else _DESCRIBE_TIMEOUT
        try:
            return await self.temporal.execute_workflow(
                DescribeFleetWorkflow.run,
                DescribeFleetInput(list_tenants=list_tenants, migration_set=migration_set),
                id=f"describe-fleet-{uuid.uuid4().hex[:10]}",
                task_queue=self.task_queue,
                execution_timeout=timeout,
            )
        except WorkflowFailureError:
            raise WorkerUnavailableError(
                f"no worker on task queue {self.task_queue!r} answered within {timeout.total_seconds():.0f}s"
            ) from None

    async def read_fleet(self, request: ReadFleetInput | None = None) -> FleetReport:
        """Every selected tenant's ``flyway_schema_history``, read in bulk on a worker, as a picture."""
        return await self.temporal.execute_workflow(
            FleetStateWorkflow.run,
            request or ReadFleetInput(),
            id=f"fleet-state-{uuid.uuid4().hex[:12]}",
            task_queue=self.task_queue,
            execution_timeout=_FLEET_READ_TIMEOUT,
        )

    async def wait_at_least(
        self,
        version: str,
        *,
        timeout: timedelta,
        interval: timedelta = timedelta(seconds=10),
        request: ReadFleetInput | None = None,
        on_read: Callable[[FleetReport], None] | None = None,
    ) -> FleetReport:
        """Read the fleet until every selected tenant reaches ``version`` or ``timeout`` passes.

        Returns the last read: ``laggard_count == 0`` means the gate is open.

        Raises:
            InvalidInputError: no tenant matched (a selector typo must never open a gate).
        """
        asked = (request or ReadFleetInput()).model_copy(update={"at_least": version})
        deadline = time.monotonic() + timeout.total_seconds()
        pause = max(1.0, interval.total_seconds())
        while True:
            read = await self.read_fleet(asked)
            if read.total == 0:
                raise InvalidInputError(
                    f"no tenant matches {asked.selector or 'the tenant source'}; nothing to wait for"
                )
            if on_read is not None:
                on_read(read)
            if read.laggard_count == 0 or time.monotonic() + pause > deadline:
                return read
            await asyncio.sleep(pause)
