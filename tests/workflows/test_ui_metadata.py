"""What the Temporal UI shows: a rollout's and each tenant's summary and details, bounded in bytes.

Fast tier: the real workflow code on the dev server, started through the library; the UI reads
the same fields (its list shows the summary, a workflow's page the details and the current details
through the built-in ``__temporal_workflow_metadata`` query).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from fleetway.activities.audit.events import AuditContext
from fleetway.activities.rollouts import Outcome, TenantOutcome
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all_models import MigrateAllInput, WaveDecision, WaveState
from fleetway.workflows.ui_text import (
    DETAILS_BYTES,
    SUMMARY_BYTES,
    rollout_summary,
    tenant_now,
    tenant_summary,
)
from tests.workflows.scripted import SET, WAIT, Scripted, scripted_worker

pytestmark = pytest.mark.fast


async def _current_details(client: Client, workflow_id: str) -> str:
    metadata = await client.get_workflow_handle(workflow_id).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return str(metadata.current_details)


async def test_a_rollout_and_its_tenants_say_what_they_are_in_the_ui(client: Client) -> None:
    script = Scripted(["alpha", "beta", "gamma"], block=set())
    script.failing["beta"] = 2  # beta fails in both waves: the one tenant its outcome attribute marks
    request = MigrateAllInput(
        migration_set=SET,
        continue_on_error=True,
        waves=[WaveSpec(name="canary", count=1), WaveSpec(name="rest", rest=True, gate=True)],
        audit=AuditContext(principal="ops@example.com"),
    )
    async with scripted_worker(client, script) as task_queue:
        rollout = await FleetwayClient(client, task_queue).start(
            request, rollout_id=f"ui-{uuid.uuid4().hex[:8]}"
        )
        async with asyncio.timeout(WAIT):  # the canary is done; the rest waits at its gate
            while not any(w.state is WaveState.AWAITING_APPROVAL for w in (await rollout.progress()).waves):
                await asyncio.sleep(0.1)
        at_gate = await _current_details(client, rollout.id)
        described = await rollout.handle.describe()
        summary, details = await described.static_summary(), await described.static_details()
        child = await client.get_workflow_handle(f"{rollout.id}/alpha").describe()
        child_summary, child_details = await child.static_summary(), await child.static_details()
        child_now = await _current_details(client, f"{rollout.id}/alpha")
        await rollout.approve(WaveDecision(principal="ops@example.com"))
        await rollout.result()
        done = await _current_details(client, rollout.id)

    assert summary == f"migrate set {'0' * 12} · source default · 2 waves · by ops@example.com"
    assert "- wave 2 **rest**: the rest, gate" in (details or "")
    assert "wave 2/2 **rest**: awaiting_approval" in at_gate and f"fleetway approve {rollout.id}" in at_gate
    # (The scripted planner puts every tenant in every wave: the real one's split is tested elsewhere.)
    assert "3 done (failed 1, succeeded 2)" in at_gate and "canary: done, 3 of 3 done" in at_gate
    assert child_summary == "alpha · migrate"
    assert f"rollout `{rollout.id}`" in (child_details or "") and "wave **canary**" in (child_details or "")
    assert child_now.startswith("**succeeded**: ∅ → 1")
    # What an operator filters by in the UI's list: a rollout's failed tenants, by wave and set. A
    # success is not marked (an upsert is a billed action per tenant): the filter finds beta alone.
    query = f'FleetwayRollout = "{rollout.id}" AND FleetwayOutcome = "failed" AND FleetwayWave = "canary"'
    async with asyncio.timeout(WAIT):  # visibility is eventually consistent
        while not (found := [w.id async for w in client.list_workflows(query)]):
            await asyncio.sleep(0.2)
    assert found == [f"{rollout.id}/beta"]
    marked = f'FleetwayRollout = "{rollout.id}" AND FleetwayOutcome = "succeeded"'
    assert [w.id async for w in client.list_workflows(marked)] == []
    by_set = [
        w.id async for w in client.list_workflows(f'FleetwaySet = "{SET}" AND WorkflowId = "{rollout.id}"')
    ]
    assert by_set == [rollout.id]
    assert done.startswith("**failed**, phase done: 6 done"), done


def test_every_text_fits_temporals_limits_at_the_longest_inputs() -> None:
    tenant = "t" * 128
    assert len(tenant_summary(tenant, "migrate", "h" * 253 + ":65535").encode()) <= SUMMARY_BYTES
    request = MigrateAllInput(
        tenants=[f"{i:05d}".ljust(128, "x") for i in range(1000)], audit=AuditContext(principal="p" * 1000)
    )
    assert len(rollout_summary(request).encode()) <= SUMMARY_BYTES
    failed = TenantOutcome(tenant_id=tenant, outcome=Outcome.FAILED, message="é" * 300, error_class="x" * 100)
    assert len(tenant_now("", failed).encode()) <= DETAILS_BYTES
