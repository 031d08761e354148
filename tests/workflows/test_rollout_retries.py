"""A rollout's calls to other services retry by time (its retry budget), never by a count.

Fast tier: the real workflow code on the real dev server; the tenant source and the pin are
scripted to fail exactly as often as a test needs (a control-plane outage cannot be timed that
finely with a real server).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from fleetway.activities.flyway.output import FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.tenants.static import ListTenantsInput, TenantPage
from fleetway.activities.worker_profile import PinRolloutInput, RolloutPin
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from tests.workflows.scripted import SET, Scripted, scripted_worker

pytestmark = pytest.mark.fast


def _blip(what: str) -> ApplicationError:
    return ApplicationError(
        f"{what} unavailable (HTTP 503)",
        type="tenant_source_unavailable",
        next_retry_delay=timedelta(milliseconds=50),  # the server rounds it up to ~1 s
    )


class _Flaky(Scripted):
    """The pin and the first page fail ``failures`` times each before they answer."""

    def __init__(self, tenants: list[str], *, failures: int) -> None:
        super().__init__(tenants, block=set())
        self.failures = failures

    @activity.defn(name="pin_rollout")
    async def pin_rollout(self, request: PinRolloutInput) -> RolloutPin:
        self.calls.append("pin_rollout")
        if self.calls.count("pin_rollout") <= self.failures:
            raise _blip("set store")
        return RolloutPin(migration_set=SET)

    @activity.defn(name="list_tenants_page")
    async def list_tenants_page(self, request: ListTenantsInput) -> TenantPage:
        self.calls.append("list_tenants_page")
        if self.calls.count("list_tenants_page") <= self.failures:
            raise _blip("tenant source")
        return TenantPage(tenant_ids=self.tenants)


async def test_a_blip_longer_than_any_attempt_count_does_not_fail_the_rollout(client: Client) -> None:
    script = _Flaky(["alpha", "beta"], failures=6)  # more attempts than the old count of 5 allowed
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(), rollout_id=f"blip-{uuid.uuid4().hex[:8]}"
        )
    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    assert script.calls.count("pin_rollout") == 7 and script.calls.count("list_tenants_page") == 7
    assert sorted(o.tenant_id for o in result.outcomes) == ["alpha", "beta"]


async def test_an_outage_longer_than_the_retry_budget_stops_the_rollout_naming_why(client: Client) -> None:
    script = _Flaky(["alpha"], failures=10**6)
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(retry_budget_s=2), rollout_id=f"outage-{uuid.uuid4().hex[:8]}"
        )
    assert result.status is RolloutStatus.FAILED and result.total == 0
    assert result.warnings[-1] == (
        "pinning the rollout's set and backends failed; nothing dispatched "
        "(tenant_source_unavailable: set store unavailable (HTTP 503); retry budget spent)"
    )
    assert script.calls.count("pin_rollout") > 1  # retried until the budget's time was spent


class _ScriptFails(Scripted):
    """Every run fails on the tenant's own SQL: the child then reads the tenant's table."""

    @activity.defn(name="run_flyway")
    async def run_flyway(self, request: FlywayRequest) -> FlywayOutcome:
        self.calls.append(f"run_flyway:{request.tenant_id}")
        raise ApplicationError("syntax error", type="script_failed", non_retryable=True)


@pytest.mark.parametrize(("budget", "read_s"), [(3, 5), (20, 20), (900, 30), (0, 30)])
async def test_the_table_read_after_a_failed_run_is_held_to_the_retry_budget(
    client: Client, budget: int, read_s: int
) -> None:
    """A rollout told to give up on infrastructure in 3 s must not spend 30 s reading a table."""
    script = _ScriptFails(["t1"], block=set())
    async with scripted_worker(client, script) as task_queue:
        rollout = f"read-{uuid.uuid4().hex[:8]}"
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(tenants=["t1"], retry_budget_s=budget, migration_set=SET), rollout_id=rollout
        )
        reads = [
            e.activity_task_scheduled_event_attributes
            async for e in client.get_workflow_handle(f"{rollout}/t1").fetch_history_events()
            if e.HasField("activity_task_scheduled_event_attributes")
            and e.activity_task_scheduled_event_attributes.activity_type.name == "read_schema_history"
        ]
    assert result.outcomes[0].source == "history" and "read_schema_history" in script.calls
    assert [r.schedule_to_close_timeout.ToSeconds() for r in reads] == [read_s]
