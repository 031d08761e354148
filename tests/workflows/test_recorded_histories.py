"""Committed histories of every workflow replay against the current code: open runs survive a deploy.

Replaying histories recorded in the same test run against the same code cannot catch a
non-deterministic change; these were recorded once, committed under ``tests/histories/`` and
replay in CI against whatever the code is now. A change that would break rollouts already running
(a reordered activity, a dropped ``workflow.patched`` branch, a renamed field without a default)
fails here. Cover: a migrate with a failure across continue-as-new, a cancelled rollout, a
validate with drift, a rerun of failures, a provisioning run, the pre-rollout describe, a ring
rollout (bake, approved gate, halt, continue-as-new inside a wave). ``r40-*`` were recorded on the
previous release (stop 40): the runs it leaves open when this build is deployed, with its patch
markers (now ``deprecate_patch``) and the child input's old field names (docs/operators-guide.md,
"Changing workflow code", says how a patch is added and retired).

After a deliberate change guarded by ``workflow.patched``, record new histories beside these (keep
the old files: they are the runs still open) with
``FLEETWAY_RECORD_HISTORIES=1 ./dev test tests/workflows/test_recorded_histories.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.flyway.output import Action
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.config.client import DATA_CONVERTER
from fleetway.worker.dev.secrets import OpenBaoDevServer
from fleetway.worker.dev.stack import PROJECT_ROOT, PostgresServer
from fleetway.workflows.describe_fleet import DescribeFleetInput, DescribeFleetWorkflow
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, WaveDecision, WaveState
from fleetway.workflows.provision_tenant import DeprovisionTenantWorkflow, ProvisionTenantWorkflow
from fleetway.workflows.tenant_migration import TenantMigrationWorkflow
from fleetway.workflows.wave_plan import WavePlanWorkflow, holder_id
from tests.fleet import make_fleet
from tests.support import copy_migrations
from tests.workflows.test_provisioning import Harness, tenant_id

HISTORIES = PROJECT_ROOT / "tests" / "histories"
_WORKFLOWS = [MigrateAllWorkflow, TenantMigrationWorkflow, DescribeFleetWorkflow, ProvisionTenantWorkflow,
              DeprovisionTenantWorkflow, WavePlanWorkflow]  # fmt: skip
_RECORD = os.environ.get("FLEETWAY_RECORD_HISTORIES") == "1"


def _committed() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


@pytest.mark.parametrize("path", _committed(), ids=lambda p: p.stem)
async def test_a_committed_history_replays_against_the_current_code(path: Path) -> None:
    document = json.loads(path.read_text())
    history = WorkflowHistory.from_json(document["workflow_id"], document["history"])
    await Replayer(workflows=_WORKFLOWS, data_converter=DATA_CONVERTER).replay_workflow(history)


def _with_a_newer_builds_field(payload: dict[str, Any], where: str) -> None:
    """Add a field this build does not know to a JSON payload (at ``where``: "" = its top)."""
    data = json.loads(base64.b64decode(payload["data"]))
    (data[where] if where else data)["field_from_a_newer_build"] = {"any": ["shape"]}
    payload["data"] = base64.b64encode(json.dumps(data).encode()).decode()


async def test_a_history_carrying_fields_of_a_newer_build_replays() -> None:
    """A rolling deploy: an older worker reads a carry and child results a newer one wrote."""
    document = json.loads((HISTORIES / "migrate-failure-continue-as-new-parent-1.json").read_text())
    events = document["history"]["events"]
    (started,) = events[0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"]
    _with_a_newer_builds_field(started, "carry")
    results = [
        e["childWorkflowExecutionCompletedEventAttributes"]["result"]["payloads"][0]
        for e in events
        if "childWorkflowExecutionCompletedEventAttributes" in e
    ]
    assert results  # the run has child results to carry the field
    for result in results:
        _with_a_newer_builds_field(result, "")
    history = WorkflowHistory.from_json(document["workflow_id"], document["history"])
    await Replayer(workflows=_WORKFLOWS, data_converter=DATA_CONVERTER).replay_workflow(history)


def test_the_committed_histories_cover_every_workflow_and_scenario() -> None:
    scenarios = {p.stem.rsplit("-", 1)[0] for p in _committed()}
    assert scenarios >= {
        "migrate-failure-continue-as-new-parent", "migrate-failure-continue-as-new-child-succeeded",
        "migrate-failure-continue-as-new-child-failed", "cancel-parent", "cancel-child",
        "validate-drift-parent", "validate-drift-child", "rerun-failed-parent", "provision", "describe-fleet",
        "ring-waves-held-parent", "wave-plan-holder",
    }  # fmt: skip


async def _runs(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a workflow, following continue-as-new from the first."""
    handle = client.get_workflow_handle(workflow_id)
    first = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
    runs, run_id = [], first
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append(history)
        last = history.events[-1]
        attributes = last.workflow_execution_continued_as_new_event_attributes
        run_id = (
            attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else ""
        )
    return runs


def _save(name: str, history: WorkflowHistory) -> None:
    HISTORIES.mkdir(exist_ok=True)
    document = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
    (HISTORIES / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n")


@pytest.mark.skipif(not _RECORD, reason="set FLEETWAY_RECORD_HISTORIES=1 to record")
async def test_record_histories(
    client: Client,
    flyway_install: FlywayInstall,
    postgres: PostgresServer,
    openbao: OpenBaoDevServer,
    tmp_path: Path,
) -> None:
    fleet = make_fleet(postgres, 4)
    fleet.break_tenant(fleet.tenants[2])
    async with fleet.worker(client, flyway_install):
        migrated = await client.execute_workflow(
            MigrateAllWorkflow.run,
            MigrateAllInput(parallelism=2, continue_on_error=True, continue_as_new_after=2),
            id=f"rec-migrate-{uuid.uuid4().hex[:6]}", task_queue=fleet.task_queue,
        )  # fmt: skip
        for n, run in enumerate(await _runs(client, migrated.rollout_id)):
            _save(f"migrate-failure-continue-as-new-parent-{n}", run)
        ok, bad = fleet.tenants[0], fleet.tenants[2]
        _save("migrate-failure-continue-as-new-child-succeeded-0",
              await client.get_workflow_handle(f"{migrated.rollout_id}/{ok}").fetch_history())  # fmt: skip
        _save("migrate-failure-continue-as-new-child-failed-0",
              await client.get_workflow_handle(f"{migrated.rollout_id}/{bad}").fetch_history())  # fmt: skip
        rerun = await client.execute_workflow(
            MigrateAllWorkflow.run, MigrateAllInput(rerun_failed_of=migrated.rollout_id, continue_on_error=True),
            id=f"rec-rerun-{uuid.uuid4().hex[:6]}", task_queue=fleet.task_queue,
        )  # fmt: skip
        _save("rerun-failed-parent-0", await client.get_workflow_handle(rerun.rollout_id).fetch_history())
        validated = await client.execute_workflow(
            MigrateAllWorkflow.run, MigrateAllInput(action=Action.VALIDATE, tenants=[ok], continue_on_error=True,
                                                   skip_current=False),  # a child, not the table's word
            id=f"rec-validate-{uuid.uuid4().hex[:6]}", task_queue=fleet.task_queue,
        )  # fmt: skip
        _save(
            "validate-drift-parent-0", await client.get_workflow_handle(validated.rollout_id).fetch_history()
        )
        _save("validate-drift-child-0",
              await client.get_workflow_handle(f"{validated.rollout_id}/{ok}").fetch_history())  # fmt: skip
        described = f"rec-describe-{uuid.uuid4().hex[:6]}"
        await client.execute_workflow(
            DescribeFleetWorkflow.run,
            DescribeFleetInput(list_tenants=True),
            id=described,
            task_queue=fleet.task_queue,
        )
        _save("describe-fleet-0", await client.get_workflow_handle(described).fetch_history())

    slow = make_fleet(postgres, 1)
    slow.locations = copy_migrations(tmp_path / "slow")
    (slow.locations / "V6__slow.sql").write_text("SELECT pg_sleep(60);\n")
    async with slow.worker(client, flyway_install):
        handle = await client.start_workflow(
            MigrateAllWorkflow.run, MigrateAllInput(), id=f"rec-cancel-{uuid.uuid4().hex[:6]}",
            task_queue=slow.task_queue,
        )  # fmt: skip
        for _ in range(300):
            if (await handle.query(MigrateAllWorkflow.progress)).in_flight:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # inside V6's pg_sleep
        await handle.cancel()
        with pytest.raises(Exception):  # noqa: B017 - the rollout ends cancelled
            await handle.result()
        _save("cancel-parent-0", await handle.fetch_history())
        _save(
            "cancel-child-0",
            await client.get_workflow_handle(f"{handle.id}/{slow.tenants[0]}").fetch_history(),
        )

    harness = Harness(client, postgres, openbao, flyway_install)
    async with harness.worker():
        provisioning = await harness.start(tenant_id())
        await provisioning.result()
        _save("provision-0", await provisioning.fetch_history())


@pytest.mark.skipif(not _RECORD, reason="set FLEETWAY_RECORD_HISTORIES=1 to record")
async def test_record_ring_rollout_histories(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    """A ring rollout: a label wave, a bake, a gate approved, a halt, continue-as-new inside a wave."""
    fleet = make_fleet(postgres, 6)
    fleet.labels = {t: {"tier": "internal"} for t in fleet.tenants[:2]}
    fleet.break_tenant(fleet.tenants[5])
    waves = [
        WaveSpec(name="internal", labels="tier=internal", bake_s=1),
        WaveSpec(name="gated", count=2, gate=True),
        WaveSpec(name="rest", rest=True, max_failures=0),
    ]
    async with fleet.worker(client, flyway_install):
        handle = await client.start_workflow(
            MigrateAllWorkflow.run, MigrateAllInput(waves=waves, continue_as_new_after=3),
            id=f"rec-ring-{uuid.uuid4().hex[:6]}", task_queue=fleet.task_queue,
        )  # fmt: skip
        for _ in range(600):
            progress = await handle.query(MigrateAllWorkflow.progress)
            if progress.waves and progress.waves[1].state is WaveState.AWAITING_APPROVAL:
                break
            await asyncio.sleep(0.1)
        await handle.execute_update(MigrateAllWorkflow.approve, WaveDecision(principal="recorder"))
        await handle.result()
        # Named for the plan's holder; the runs planned by one activity went with its retired patch.
        for n, run in enumerate(await _runs(client, handle.id)):
            _save(f"ring-waves-held-parent-{n}", run)
        _save("wave-plan-holder-0", await client.get_workflow_handle(holder_id(handle.id)).fetch_history())
