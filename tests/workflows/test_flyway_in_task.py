"""Where a tenant's Flyway call runs: inside the child's workflow task (a local activity) for runs
allowed up to 30 minutes, as a task-queue activity beyond; a call that did not resolve inside the
child's first workflow task is checked against the schema history; a cancel still reaches it.

The real workflow code on the dev server with scripted activities (no PostgreSQL, no Flyway);
the real-stack tests (worker SIGKILL, the kill loop, cancel mid-script) prove the whole.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError

from fleetway.activities.audit.events import AuditActivities, AuditEvent, Emitter
from fleetway.activities.errors import AuditSinkError
from fleetway.activities.rollouts import Outcome, OutcomeSource
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from fleetway.workflows.tenant_migration import IN_TASK_MAX_S, IN_TASK_TIMEOUT
from tests.support import activity_calls
from tests.workflows.scripted import WAIT, Scripted, scripted_worker

pytestmark = pytest.mark.fast


async def _child_events(client: Client, rollout_id: str, tenant: str) -> list[Any]:
    return [e async for e in client.get_workflow_handle(f"{rollout_id}/{tenant}").fetch_history_events()]


@pytest.mark.parametrize(("flyway_timeout_s", "in_task"), [(600, True), (IN_TASK_MAX_S + 1, False)])
async def test_flyway_runs_in_the_childs_task_unless_the_run_may_be_long(
    client: Client, flyway_timeout_s: int, in_task: bool
) -> None:
    script = Scripted(["alpha"], block=set())
    rollout_id = f"in-task-{uuid.uuid4().hex[:8]}"
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(flyway_timeout_s=flyway_timeout_s), rollout_id=rollout_id
        )
        events = await _child_events(client, rollout_id, "alpha")

    assert result.counts == {Outcome.SUCCEEDED: 1}
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    markers = [e for e in events if e.HasField("marker_recorded_event_attributes")]
    task_timeout = events[0].workflow_execution_started_event_attributes.workflow_task_timeout
    tasks = [e for e in events if e.HasField("workflow_task_completed_event_attributes")]
    if in_task:
        # No activity task: Flyway and the audit event are markers of the child's only task.
        assert scheduled == []
        assert len(markers) == 2 and len(tasks) == 1
        assert activity_calls(events) == ["run_flyway", "emit_audit"]
        assert task_timeout.ToTimedelta() == IN_TASK_TIMEOUT
    else:
        assert scheduled == ["run_flyway"]
        assert len(markers) == 1  # the audit event
        assert task_timeout.ToTimedelta() > IN_TASK_TIMEOUT
    assert result.outcomes[0].source is OutcomeSource.FLYWAY


async def test_a_call_that_outlived_the_first_task_is_checked_against_the_table(client: Client) -> None:
    # alpha's Flyway call spans a renewal of the child's task (renewed at 80 % of 3 s); beta's
    # resolves inside the first task. After a lost worker the call resolves in a later task too.
    script = Scripted(["alpha", "beta"], block=set(), slow={"run_flyway:alpha": 4.0})
    rollout_id = f"in-task-{uuid.uuid4().hex[:8]}"
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(MigrateAllInput(), rollout_id=rollout_id)
        alpha = await _child_events(client, rollout_id, "alpha")

    assert result.status is RolloutStatus.SUCCEEDED
    sources = {o.tenant_id: o.source for o in result.outcomes}
    assert sources == {"alpha": OutcomeSource.HISTORY, "beta": OutcomeSource.FLYWAY}
    assert script.calls.count("read_schema_history") == 1
    renewals = [e for e in alpha if e.HasField("workflow_task_completed_event_attributes")]
    assert len(renewals) >= 2
    assert not any(e.HasField("workflow_task_timed_out_event_attributes") for e in alpha)


async def test_a_cancel_reaches_the_call_in_the_task_within_the_task_renewal(client: Client) -> None:
    script = Scripted(["alpha"], block={"run_flyway:alpha"})
    rollout_id = f"in-task-{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    async with scripted_worker(client, script) as task_queue:
        handle = (
            await FleetwayClient(client, task_queue).start(MigrateAllInput(), rollout_id=rollout_id)
        ).handle
        await asyncio.wait_for(script.started["run_flyway:alpha"].wait(), WAIT)
        await asyncio.sleep(0.5)  # inside the child's first task, before its first renewal
        await handle.cancel()
        cancelled_at = loop.time()
        async with asyncio.timeout(WAIT):
            while "run_flyway:alpha" not in script.cancelled:
                await asyncio.sleep(0.02)
        reached_after = loop.time() - cancelled_at
        with pytest.raises(WorkflowFailureError):  # the rollout ends cancelled
            await asyncio.wait_for(handle.result(), WAIT)

    # At the child's next task renewal (2.4 s) plus the parent's and the child's task.
    assert reached_after < 5.0


class _SinkDown(Scripted):
    """The real ``emit_audit`` over an emitter whose sink is always down (the sink's own outage is
    covered on the real stack; here it must last longer than the budget, which a test cannot wait)."""

    def __init__(self, tenants: list[str]) -> None:
        super().__init__(tenants, block=set())
        self.audit_attempts = 0

        outer = self

        class _Down(Emitter):
            async def record(self, event: AuditEvent) -> None:
                outer.audit_attempts += 1
                raise AuditSinkError("audit sink unavailable")

        self._audit = AuditActivities(_Down())

    @activity.defn(name="emit_audit")
    async def emit_audit(self, event: AuditEvent) -> None:
        await self._audit.emit_audit(event)


async def test_an_audit_sink_down_past_the_budget_ends_the_emit_not_the_tenant(client: Client) -> None:
    """A local activity's retries ignore ``schedule_to_close``: the emit itself must end them."""
    script = _SinkDown(["alpha"])
    async with scripted_worker(client, script) as task_queue:
        result = await asyncio.wait_for(
            FleetwayClient(client, task_queue).run(
                MigrateAllInput(retry_budget_s=3), rollout_id=f"audit-down-{uuid.uuid4().hex[:8]}"
            ),
            timeout=60,
        )
    (outcome,) = result.outcomes
    assert outcome.outcome is Outcome.SUCCEEDED  # the run stands; the trail says what it lacks
    assert "audit event not recorded (audit_sink_error: audit sink unavailable; audit retried for" in (
        outcome.message
    ), outcome.message
    assert script.audit_attempts >= 2
