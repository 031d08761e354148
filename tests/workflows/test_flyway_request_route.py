"""One request from the rollout to the engine: the run a rollout builds is what the activity gets.

Fast: the real workflow code on the dev server with scripted activities. The child's recorded
input and the activity's request are compared as values, and a child input recorded before the
request existed (a committed history) is read into the same shape.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import pytest
from temporalio.client import Client

from fleetway.activities.fleet.state import TenantState
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.flyway.schema_history import history_marker
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PROJECT_ROOT
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from fleetway.workflows.tenant_migration import TenantMigrationInput
from tests.workflows.scripted import SET, WAIT, Scripted, scripted_worker

pytestmark = pytest.mark.fast


async def _child_input(client: Client, child_id: str) -> TenantMigrationInput:
    history = await client.get_workflow_handle(child_id).fetch_history()
    (payload,) = history.events[0].workflow_execution_started_event_attributes.input.payloads
    decoded = client.data_converter.payload_converter.from_payload(payload, TenantMigrationInput)
    assert isinstance(decoded, TenantMigrationInput)
    return decoded


@pytest.mark.parametrize("action", [Action.MIGRATE, Action.VALIDATE])
async def test_the_activity_gets_the_request_the_rollout_built_unchanged(
    client: Client, action: Action
) -> None:
    script = Scripted(["a", "b"], block=set())
    # Not intact: the table read cannot settle them, so each runs Flyway (validate included).
    script.states = {t: TenantState(tenant_id=t, pending=["1"], pending_count=1, intact=False) for t in "ab"}
    options = (
        FlywayOptions(target="7", placeholders={"region": "eu"})
        if action is Action.MIGRATE
        else FlywayOptions()
    )
    request = MigrateAllInput(
        action=action,
        tenants=["a", "b"],
        migration_set=SET,
        flyway_timeout_s=420,
        retry_budget_s=33,
        flyway=options,
    )
    rollout_id = f"route-{uuid.uuid4().hex[:8]}"
    async with scripted_worker(client, script) as task_queue:
        handle = (await FleetwayClient(client, task_queue).start(request, rollout_id=rollout_id)).handle
        result = await asyncio.wait_for(handle.result(), WAIT)
        first_run = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
        children = {t: await _child_input(client, f"{rollout_id}/{t}") for t in ("a", "b")}

    assert result.status is RolloutStatus.SUCCEEDED
    received = {r.tenant_id: r for r in script.flyway_runs}
    assert received == {t: child.run for t, child in children.items()}  # carried unchanged
    marked = action is Action.MIGRATE
    assert received["a"] == FlywayRequest(
        action=action,
        tenant_id="a",
        installed_by=history_marker(rollout_id, first_run) if marked else "",
        migration_set=SET,
        timeout_s=420,
        retry_budget_s=33,
        with_info=action is Action.VALIDATE,  # the drift read folded into validate
        flyway=options,
    )


def test_a_child_input_recorded_before_the_request_existed_is_read_into_it() -> None:
    document = json.loads((PROJECT_ROOT / "tests/histories/r40-validate-drift-child-0.json").read_text())
    started = document["history"]["events"][0]["workflowExecutionStartedEventAttributes"]
    (payload,) = started["input"]["payloads"]
    flat = json.loads(base64.b64decode(payload["data"]))
    assert "run" not in flat and flat["flyway_timeout_s"] == 600 and flat["drift_check"] is True

    child = TenantMigrationInput.model_validate(flat)

    assert child.run == FlywayRequest(
        action=Action.VALIDATE,
        tenant_id=flat["tenant_id"],
        migration_set=flat["migration_set"],
        pinned_secrets=flat["pinned_secrets"],
        timeout_s=600,
        retry_budget_s=900,
        with_info=True,
    )
    assert (child.max_attempts, child.heartbeat_timeout_s) == (5, 30)
    old_migrate = flat | {"action": "validate", "drift_check": False, "installed_by": "fleetway:r"}
    assert TenantMigrationInput.model_validate(old_migrate).run.with_info is False
    assert TenantMigrationInput.model_validate(old_migrate).run.installed_by == ""  # as the child blanked it
    assert (
        TenantMigrationInput.model_validate(
            flat | {"action": "migrate", "installed_by": "m"}
        ).run.installed_by
        == "m"
    )


def test_a_child_without_its_runs_budget_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"run\.timeout_s"):
        TenantMigrationInput(run=FlywayRequest(action=Action.MIGRATE, tenant_id="a"))
