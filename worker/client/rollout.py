"""A handle on one rollout: read it, follow it, steer it.

Every action checks the rollout on the server first and is refused by name when it cannot act
(no such rollout, ended, no worker to answer an update); a signal sent with no worker polling is
recorded and takes effect when one does (``Rollout.pause`` says so in its return value).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError

from fleetway.activities.errors import (
    ApprovalNotPendingError,
    TenantActionRefusedError,
    WorkerUnavailableError,
)
from fleetway.worker.client.events import RolloutEvent, RolloutFeed
from fleetway.worker.client.lookup import describe_rollout, running_rollout
from fleetway.worker.config.client import has_pollers
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import (
    MigrateAllResult,
    Progress,
    TenantDecision,
    WaveDecision,
    WaveProgress,
    WaveState,
)

__all__ = ["Rollout"]

_RPC_TIMEOUT = timedelta(seconds=30)
_POLL_S = 0.5


class Rollout:
    """One rollout by id (its latest run)."""

    def __init__(
        self, client: Client, rollout_id: str, *, handle: WorkflowHandle[Any, MigrateAllResult] | None = None
    ) -> None:
        self._client = client
        self.id = rollout_id
        # The handle a start returned, when there is one (a test environment's skips time on it).
        self._handle: WorkflowHandle[Any, MigrateAllResult] = handle or client.get_workflow_handle(
            rollout_id, result_type=MigrateAllResult
        )

    @property
    def handle(self) -> WorkflowHandle[Any, MigrateAllResult]:
        """The Temporal handle, for what this class does not wrap."""
        return self._handle

    async def status(self) -> WorkflowExecutionStatus:
        """The server's status of the rollout (no worker needed).

        Raises:
            RolloutNotFoundError: no such rollout.
        """
        described = await describe_rollout(self._client, self.id)
        return described.status or WorkflowExecutionStatus.RUNNING

    async def progress(self, timeout: timedelta = timedelta(seconds=10)) -> Progress:
        """A live snapshot (a query: a worker answers it; ended rollouts too)."""
        return await self._handle.query(MigrateAllWorkflow.progress, rpc_timeout=timeout)

    async def result(self) -> MigrateAllResult:
        """Wait for the rollout to end and return its result (across continue-as-new)."""
        return await self._handle.result()

    async def events(self, poll_s: float = _POLL_S) -> AsyncIterator[RolloutEvent]:
        """Each tenant as it finishes, wave and server-hold changes, until the rollout ends.

        A poll that fails (a worker busy or restarting) is caught up by the next one; the last
        poll runs after the end, so every tenant the runs kept is yielded.
        """
        feed = RolloutFeed(self._client, self.id)
        ended: asyncio.Future[MigrateAllResult] = asyncio.ensure_future(self._handle.result())
        try:
            while True:
                done = ended.done()
                with contextlib.suppress(RPCError):
                    for event in await feed.poll():
                        yield event
                if done:
                    return
                await asyncio.wait({ended}, timeout=poll_s)
        finally:
            ended.cancel()

    async def pause(self) -> bool:
        """Hold dispatching (in-flight tenants finish); False: no worker polls yet (it is recorded)."""
        return await self._signal("pause")

    async def resume(self) -> bool:
        """Lift a pause; False: no worker polls yet (it is recorded)."""
        return await self._signal("resume")

    async def cancel(self, *, wait: timedelta | None = None) -> WorkflowExecutionStatus:
        """Cancel: stop dispatching, cancel every in-flight tenant.

        With ``wait``, wait that long for it to end; returns the status then (``RUNNING``: still
        stopping, the cancel stands).
        """
        await running_rollout(self._client, self.id, "cancel")
        await self._handle.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (wait.total_seconds() if wait else 0)
        while True:
            status = await self.status()
            if status is not WorkflowExecutionStatus.RUNNING or loop.time() >= deadline:
                return status
            await asyncio.sleep(0.2)

    async def set_parallelism(self, parallelism: int) -> int:
        """Change the window; returns the previous one."""
        await self._answerable("set-parallelism")
        return await self._handle.execute_update(
            MigrateAllWorkflow.set_parallelism, parallelism, rpc_timeout=_RPC_TIMEOUT
        )

    async def approve(
        self, decision: WaveDecision | None = None, *, wait: timedelta | None = None
    ) -> WaveProgress:
        """Open the wave waiting at its gate (waiting up to ``wait`` for one to get there).

        Raises:
            ApprovalNotPendingError: nothing waits (or another wave than ``decision.wave``).
        """
        return await self._decide("approve", decision or WaveDecision(), wait)

    async def reject(
        self, decision: WaveDecision | None = None, *, wait: timedelta | None = None
    ) -> WaveProgress:
        """Refuse the wave at its gate (or the next one, during a bake): the rollout ends halted."""
        return await self._decide("reject", decision or WaveDecision(), wait)

    async def skip_tenant(self, decision: TenantDecision) -> str:
        """Skip one tenant for the rest of the rollout (a running one is cancelled); audited.

        Raises:
            TenantActionRefusedError: refused (the rollout says why); nothing recorded.
        """
        return await self._tenant_action(MigrateAllWorkflow.skip_tenant, "skip-tenant", decision)

    async def retry_tenant(self, decision: TenantDecision) -> str:
        """Run one failed tenant again now, first in line; its new outcome replaces the failure."""
        return await self._tenant_action(MigrateAllWorkflow.retry_tenant, "retry-tenant", decision)

    async def set_tenant_deadline(self, decision: TenantDecision) -> str:
        """Give one running tenant's Flyway call ``decision.deadline_s`` more seconds, at most."""
        return await self._tenant_action(MigrateAllWorkflow.set_tenant_deadline, "tenant-deadline", decision)

    async def _tenant_action(self, update: Any, verb: str, decision: TenantDecision) -> str:
        await self._answerable(verb)
        try:
            result: str = await self._handle.execute_update(update, decision, rpc_timeout=_RPC_TIMEOUT)
        except WorkflowUpdateFailedError as exc:
            message = str(exc.cause) if exc.cause is not None else str(exc)
            refused = message.removeprefix("ValueError: ").removeprefix("tenant_action_refused: ")
            raise TenantActionRefusedError(refused) from None
        return result

    async def _signal(self, name: str) -> bool:
        described = await running_rollout(self._client, self.id, name)
        await self._handle.signal(name)
        return await has_pollers(self._client, described.task_queue)

    async def _answerable(self, verb: str) -> None:
        described = await running_rollout(self._client, self.id, verb)
        if not await has_pollers(self._client, described.task_queue):  # an update waits for a worker
            raise WorkerUnavailableError(
                f"no worker polls task queue {described.task_queue!r}; {verb} needs one to answer"
            )

    async def _decide(self, verb: str, decision: WaveDecision, wait: timedelta | None) -> WaveProgress:
        await self._answerable(verb)
        if wait:
            await self._gate_reached(verb, wait.total_seconds())
        update = MigrateAllWorkflow.approve if verb == "approve" else MigrateAllWorkflow.reject
        try:
            return await self._handle.execute_update(update, decision, rpc_timeout=_RPC_TIMEOUT)
        except WorkflowUpdateFailedError as exc:
            message = str(exc.cause) if exc.cause is not None else str(exc)
            raise ApprovalNotPendingError(message.removeprefix("approval_not_pending: ")) from None

    async def _gate_reached(self, verb: str, wait_s: float) -> None:
        """Poll until a wave waits for a decision (``reject`` also acts on a bake), up to ``wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        acting = {WaveState.AWAITING_APPROVAL} | ({WaveState.BAKING} if verb == "reject" else set())
        while True:
            progress = await self.progress(_RPC_TIMEOUT)
            if progress.status.value not in ("running", "paused"):
                raise ApprovalNotPendingError(
                    f"the rollout ended ({progress.status.value}) before a wave waited"
                )
            if any(w.state in acting for w in progress.waves):
                return
            # Before dispatching, a ring rollout's waves may still be being planned: only then is
            # "no waves" an answer.
            if not progress.waves and progress.phase not in ("", "pinning", "planning"):
                raise ApprovalNotPendingError("this rollout has no waves, so no gate to decide")
            if loop.time() > deadline:
                raise ApprovalNotPendingError(f"no wave waited for a decision within {wait_s:g}s")
            await asyncio.sleep(_POLL_S)
