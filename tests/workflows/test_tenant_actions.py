"""One tenant handled alone while the rest of the rollout runs: skip, retry now, a new deadline.

Fast tier: the real workflow code on the dev server with scripted activities, the actions sent as
the CLI, the library and the Temporal UI send them (the rollout's updates); each is audited with
its principal and listed in the result's ``operator_actions``.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest
from temporalio.client import Client

from fleetway.activities.errors import TenantActionRefusedError
from fleetway.activities.rollouts import Outcome
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import TemporalDevServer
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus, TenantDecision
from tests.fleet import fleetway
from tests.workflows.scripted import SET, WAIT, Scripted, scripted_worker

pytestmark = pytest.mark.fast


def _request(tenants: list[str], *, parallelism: int = 1, continue_on_error: bool = False) -> MigrateAllInput:
    return MigrateAllInput(
        migration_set=SET, tenants=tenants, parallelism=parallelism, continue_on_error=continue_on_error
    )


async def _runs_of(script: Scripted, tenant: str, times: int) -> None:
    while [r.tenant_id for r in script.flyway_runs].count(tenant) < times:
        await asyncio.sleep(0.05)


async def test_a_waiting_tenant_skipped_never_runs_and_a_running_one_is_cancelled_then_skipped(
    client: Client,
) -> None:
    script = Scripted([], block={"run_flyway:a"})  # a runs until cancelled; b, c wait (parallelism 1)
    async with scripted_worker(client, script) as queue:
        rollout = await FleetwayClient(client, queue).start(
            _request(["a", "b", "c"]), rollout_id=f"skip-{uuid.uuid4().hex[:8]}"
        )
        await asyncio.wait_for(script.started["run_flyway:a"].wait(), WAIT)
        waiting = await rollout.skip_tenant(
            TenantDecision(tenant="b", principal="ops", reason="tenant offboarding")
        )
        running = await rollout.skip_tenant(TenantDecision(tenant="a", principal="ops"))
        result = await asyncio.wait_for(rollout.result(), WAIT)
    assert "will not run" in waiting and "cancelled" in running
    by = {o.tenant_id: o for o in result.outcomes}
    assert (by["a"].outcome, by["b"].outcome, by["c"].outcome) == (
        Outcome.SKIPPED,
        Outcome.SKIPPED,
        Outcome.SUCCEEDED,
    )
    assert by["b"].message == "b skipped by ops: tenant offboarding"
    assert [r.tenant_id for r in script.flyway_runs] == ["a", "c"]  # b never ran
    assert result.operator_actions == ["b skipped by ops: tenant offboarding", "a skipped by ops"]
    assert script.calls.count("emit_audit:rollout.tenant_skipped") == 2
    assert result.status is RolloutStatus.SUCCEEDED  # skipped by decision is not a failure


async def test_a_failed_tenant_retried_now_runs_again_and_its_new_outcome_counts(client: Client) -> None:
    script = Scripted([], block={"run_flyway:z"})  # z holds the rollout open while a is retried
    script.failing["a"] = 1  # a's first run fails; its retry succeeds
    async with scripted_worker(client, script) as queue:
        rollout = await FleetwayClient(client, queue).start(
            _request(["a", "z", "b"], parallelism=2, continue_on_error=True),
            rollout_id=f"retry-{uuid.uuid4().hex[:8]}",
        )
        await asyncio.wait_for(script.started["run_flyway:z"].wait(), WAIT)
        await asyncio.wait_for(script.started["run_flyway:b"].wait(), WAIT)  # a failed; all dispatched
        with pytest.raises(TenantActionRefusedError) as refused:
            await rollout.retry_tenant(TenantDecision(tenant="z", principal="ops"))  # running, not failed
        said = await rollout.retry_tenant(TenantDecision(tenant="a", principal="ops", reason="lock released"))
        await asyncio.wait_for(_runs_of(script, "a", 2), WAIT)  # ran again while z drains
        await rollout.skip_tenant(TenantDecision(tenant="z", principal="ops"))  # releases the worker
        result = await asyncio.wait_for(rollout.result(), WAIT)
    assert "'z' has not failed" in str(refused.value)
    assert said == "retry 1 of a is first in line"
    by = {o.tenant_id: o for o in result.outcomes}
    assert by["a"].outcome is Outcome.SUCCEEDED and result.counts.get(Outcome.FAILED, 0) == 0
    assert [r.tenant_id for r in script.flyway_runs].count("a") == 2
    retried = await client.get_workflow_handle(f"{rollout.id}/a#retry1").describe()
    assert retried.status is not None and retried.status.name == "COMPLETED"  # its own child
    assert "a retried by ops (retry 1): lock released" in result.operator_actions
    assert script.calls.count("emit_audit:rollout.tenant_retried") == 1
    assert result.status is RolloutStatus.SUCCEEDED


async def test_a_stuck_tenants_call_given_a_deadline_fails_alone_by_name(client: Client) -> None:
    script = Scripted([], block={"run_flyway:a"})  # a's call never returns by itself
    async with scripted_worker(client, script) as queue:
        rollout = await FleetwayClient(client, queue).start(
            _request(["a", "b"], parallelism=2, continue_on_error=True),
            rollout_id=f"dl-{uuid.uuid4().hex[:8]}",
        )
        await asyncio.wait_for(script.started["run_flyway:a"].wait(), WAIT)
        said = await rollout.set_tenant_deadline(TenantDecision(tenant="a", deadline_s=1, principal="ops"))
        with pytest.raises(TenantActionRefusedError) as refused:
            await rollout.set_tenant_deadline(TenantDecision(tenant="nobody", deadline_s=5))
        result = await asyncio.wait_for(rollout.result(), WAIT)
    assert "'nobody' is not running" in str(refused.value)
    assert said == "a's call gives up in 1s unless it ends first"
    by = {o.tenant_id: o for o in result.outcomes}
    assert (by["a"].outcome, by["a"].error_class) == (Outcome.FAILED, "deadline_exceeded")
    assert by["b"].outcome is Outcome.SUCCEEDED
    assert "run_flyway:a" in script.cancelled  # the call itself was stopped
    assert result.operator_actions == ["a given 1s more by ops"]
    assert script.calls.count("emit_audit:rollout.tenant_deadline") == 1


async def test_the_cli_acts_on_one_tenant_and_a_refusal_is_one_named_line_with_exit_five(
    client: Client, temporal_server: TemporalDevServer
) -> None:
    script = Scripted([], block={"run_flyway:a"})
    async with scripted_worker(client, script) as queue:
        env = {**os.environ, "FLEETWAY_TEMPORAL__ADDRESS": temporal_server.address}
        env["FLEETWAY_TEMPORAL__TASK_QUEUE"] = queue
        rollout = await FleetwayClient(client, queue).start(
            _request(["a", "b"]), rollout_id=f"cli-{uuid.uuid4().hex[:8]}"
        )
        await asyncio.wait_for(script.started["run_flyway:a"].wait(), WAIT)
        refused = await asyncio.to_thread(fleetway, "retry-tenant", rollout.id, "b", env=env)
        deadline = await asyncio.to_thread(
            fleetway, "tenant-deadline", rollout.id, "a", "600", "--principal", "ops", env=env
        )
        skipped = await asyncio.to_thread(
            fleetway, "skip-tenant", rollout.id, "a", "--principal", "ops", "--reason", "stuck", "-o", "json",
            env=env,
        )  # fmt: skip
        result = await asyncio.wait_for(rollout.result(), WAIT)
    assert refused.returncode == 5, refused.stderr
    assert refused.stderr.splitlines()[-1].startswith("tenant_action_refused: 'b' has not failed")
    assert "no --principal" in refused.stderr  # the audit trail would say <unspecified>
    assert deadline.returncode == 0 and "a's call gives up in 600s" in deadline.stdout
    assert skipped.returncode == 0, skipped.stderr
    said = json.loads(skipped.stdout)
    assert (said["event"], said["tenant"]) == ("skip-tenant", "a") and "cancelled" in said["said"]
    assert result.operator_actions == ["a given 600s more by ops", "a skipped by ops: stuck"]
    by = {o.tenant_id: o.outcome for o in result.outcomes}
    assert by == {"a": Outcome.SKIPPED, "b": Outcome.SUCCEEDED}
