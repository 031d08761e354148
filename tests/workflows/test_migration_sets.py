"""A rollout runs exactly the set it names: mixed workers on one queue, a redeploy mid-rollout, a store.

``flyway_schema_history`` is the judge: which versions each tenant got, never only our own result.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.rollouts import Outcome
from fleetway.activities.sets.digest import scan_set
from fleetway.activities.sets.store import DirectorySetStore, S3SetStore, push_set
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.settings import SetsConfig
from fleetway.worker.dev.secrets import AWS_TEST_ENV, MotoServer
from fleetway.worker.dev.stack import PostgresServer
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult, RolloutStatus
from tests.fleet import Fleet, make_fleet, separate_client
from tests.support import DEMO_MIGRATIONS, copy_migrations, history, schema_exists


async def _start(
    client: Client, fleet: Fleet, request: MigrateAllInput
) -> WorkflowHandle[Any, MigrateAllResult]:
    return (
        await FleetwayClient(client, fleet.task_queue).start(
            request, rollout_id=f"rollout-{uuid.uuid4().hex[:8]}"
        )
    ).handle


async def _refused_attempts(client: Client, rollout_id: str, tenants: list[str]) -> list[str]:
    """Messages of the last failure of each in-flight tenant's Flyway activity (refusals so far)."""
    messages = []
    for tenant in tenants:
        try:
            described = await client.get_workflow_handle(f"{rollout_id}/{tenant}").describe()
        except RPCError:  # not dispatched yet
            continue
        for pending in described.raw_description.pending_activities:
            if pending.attempt > 1:
                failure = pending.last_failure
                messages.append(f"{failure.application_failure_info.type}: {failure.message}")
    return messages


async def _refused_reads(client: Client, rollout_id: str) -> list[str]:
    """The rollout's own refused calls so far (the table read before dispatch)."""
    described = await client.get_workflow_handle(rollout_id).describe()
    return [
        f"{p.last_failure.application_failure_info.type}: {p.last_failure.message}"
        for p in described.raw_description.pending_activities
        if p.attempt > 1
    ]


def _versions(postgres: PostgresServer, tenant: str) -> list[str]:
    return [v for v, ok in history(postgres, tenant) if ok]


async def test_mixed_workers_on_one_queue_run_only_the_named_set(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    """A rolling deploy: one worker has V1..V3, the other V1..V5; the rollout names V1..V5."""
    fleet = make_fleet(postgres, 12)
    old = copy_migrations(tmp_path / "old", upto=3)
    named = scan_set([DEMO_MIGRATIONS])[0].digest
    old_worker = fleet.worker(
        client, flyway_install, locations=[old], sets=SetsConfig(cache=tmp_path / "c-old")
    )
    new_worker = fleet.worker(
        await separate_client(client), flyway_install, sets=SetsConfig(cache=tmp_path / "c-new")
    )
    async with old_worker:
        handle = await _start(client, fleet, MigrateAllInput(parallelism=4, migration_set=named))
        refusals: list[str] = []
        for _ in range(200):  # only the old worker polls: the table read, which needs the set, is refused
            refusals = await _refused_attempts(client, handle.id, fleet.tenants[:4])
            refusals += await _refused_reads(client, handle.id)
            if refusals:
                break
            await asyncio.sleep(0.1)
        touched = [t for t in fleet.tenants if schema_exists(postgres, t)]
        async with new_worker:
            result = await handle.result()

    assert refusals and touched == []
    assert all(
        m.startswith("migration_set_mismatch: this worker cannot run migration set " + named)
        for m in refusals
    )
    assert result.status is RolloutStatus.SUCCEEDED and result.migration_set == named
    assert {(o.outcome, o.version_after, o.migration_set) for o in result.outcomes} == {
        (Outcome.SUCCEEDED, "5", named)
    }
    for tenant in fleet.tenants:
        assert _versions(postgres, tenant) == ["1", "2", "3", "4", "5"]
    assert not (tmp_path / "c-old" / named.removeprefix("sha256:")).exists()


async def test_a_set_no_worker_has_ends_each_tenant_migration_set_mismatch_and_touches_nothing(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    fleet = make_fleet(postgres, 3)
    nobody = scan_set([copy_migrations(tmp_path / "v2", upto=2)])[0].digest
    own = scan_set([DEMO_MIGRATIONS])[0].digest
    async with fleet.worker(client, flyway_install, sets=SetsConfig(cache=tmp_path / "cache")):
        handle = await _start(
            client, fleet,
            MigrateAllInput(migration_set=nobody, retry_budget_s=3, continue_on_error=True, parallelism=3),
        )  # fmt: skip
        result = await handle.result()

    assert result.status is RolloutStatus.FAILED and result.counts == {Outcome.FAILED: 3}
    for outcome in result.outcomes:
        assert (outcome.error_class, outcome.migration_set, outcome.applied) == (
            "migration_set_mismatch",
            nobody,
            0,
        )
        assert (
            nobody in outcome.message
            and own in outcome.message
            and "retry budget of 3s spent" in outcome.message
        )
    assert not any(schema_exists(postgres, t) for t in fleet.tenants)


@pytest.fixture
def s3_store(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> SetsConfig:
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)  # the default credential chain, as a deployed worker uses it
    bucket = f"sets-{os.urandom(4).hex()}"
    boto3.client("s3", endpoint_url=moto_server.endpoint_url).create_bucket(Bucket=bucket)
    return SetsConfig(store="s3", bucket=bucket, endpoint_url=moto_server.endpoint_url)


async def test_worker_redeployed_mid_rollout_with_a_newer_set_fetches_the_named_one_from_s3(
    client: Client,
    flyway_install: FlywayInstall,
    postgres: PostgresServer,
    tmp_path: Path,
    s3_store: SetsConfig,
) -> None:
    fleet = make_fleet(postgres, 8)
    release = copy_migrations(tmp_path / "release", upto=3)
    (release / "V3__index_orders.sql").write_text(
        (release / "V3__index_orders.sql").read_text() + "\nSELECT pg_sleep(0.3);\n"
    )
    assert s3_store.bucket is not None
    store = S3SetStore(s3_store.bucket, endpoint_url=s3_store.endpoint_url)
    named = push_set(store, [release])[0].digest
    before = fleet.worker(
        client,
        flyway_install,
        locations=[release],
        sets=s3_store.model_copy(update={"cache": tmp_path / "c1"}),
    )
    async with before:
        handle = await _start(client, fleet, MigrateAllInput(parallelism=2, migration_set=named))
        for _ in range(300):
            if sum((await handle.query(MigrateAllWorkflow.progress)).counts.values()) >= 2:
                break
            await asyncio.sleep(0.1)
    # The redeployed worker's image holds the next release (V1..V5) and an empty cache.
    after = fleet.worker(client, flyway_install, sets=s3_store.model_copy(update={"cache": tmp_path / "c2"}))
    async with after:
        result = await handle.result()

    assert result.status is RolloutStatus.SUCCEEDED
    assert {(o.version_after, o.migration_set) for o in result.outcomes} == {("3", named)}
    for tenant in fleet.tenants:
        assert _versions(postgres, tenant) == ["1", "2", "3"]
    assert scan_set([tmp_path / "c2" / named.removeprefix("sha256:")])[0].digest == named  # fetched, verified


async def test_a_rollout_naming_no_set_pins_the_workers_and_refuses_when_it_has_none(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    fleet = make_fleet(postgres, 3)
    scripts = copy_migrations(tmp_path / "scripts")
    own = scan_set([scripts])[0].digest
    async with fleet.worker(
        client, flyway_install, locations=[scripts], sets=SetsConfig(cache=tmp_path / "c")
    ):
        pinned = await (await _start(client, fleet, MigrateAllInput())).result()
        for script in scripts.iterdir():  # the folder empties under a running worker
            script.unlink()
        handle = await _start(client, fleet, MigrateAllInput())
        refused = await handle.result()
        memo = await (await client.get_workflow_handle(pinned.rollout_id).describe()).memo()

    assert pinned.status is RolloutStatus.SUCCEEDED and pinned.migration_set == own == memo["migration_set"]
    assert {o.migration_set for o in pinned.outcomes} == {own}
    assert refused.status is RolloutStatus.FAILED and refused.total == 0
    assert refused.warnings[-1].startswith(
        "pinning the rollout's set and backends failed; nothing dispatched"
    )
    assert "migration_set_invalid" in refused.warnings[-1] and "holds no .sql script" in refused.warnings[-1]


def test_directory_store_is_shared_by_push_and_workers(tmp_path: Path) -> None:
    """The set store layout is the same for a folder and S3 (sets/<hex>, blobs/<sha>)."""
    manifest, _ = push_set(DirectorySetStore(tmp_path), [DEMO_MIGRATIONS])
    assert (tmp_path / "sets" / manifest.digest.removeprefix("sha256:")).read_text() == manifest.text
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == sorted(
        e.sha256 for e in manifest.entries
    )


async def test_a_worker_configured_otherwise_cannot_serve_a_pinned_rollout(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    """The issue's demo trap: another deployment's worker on the same queue, with its own tenants and secrets."""
    ours, theirs = make_fleet(postgres, 3), make_fleet(postgres, 2)
    theirs.task_queue = ours.task_queue
    cache = SetsConfig(cache=tmp_path / "c")
    async with ours.worker(client, flyway_install, sets=cache):
        listed = await _start(client, ours, MigrateAllInput(start_paused=True, retry_budget_s=3))
        explicit = await _start(
            client, ours, MigrateAllInput(tenants=ours.tenants[:1], retry_budget_s=3, start_paused=True)
        )
        for handle in (listed, explicit):
            for _ in range(100):
                if (await handle.query(MigrateAllWorkflow.progress)).pinned_tenant_source:
                    break
                await asyncio.sleep(0.1)
    async with theirs.worker(client, flyway_install, sets=cache):
        for handle in (listed, explicit):
            await handle.signal(MigrateAllWorkflow.resume)
        listed_result, explicit_result = await listed.result(), await explicit.result()

    assert listed_result.pinned_tenant_source.startswith("static: 3 tenants")
    assert listed_result.pinned_secrets == "static: 3 tenants in memory"
    assert listed_result.status is RolloutStatus.FAILED and listed_result.total == 0
    warning = listed_result.warnings[-1]
    assert "tenant listing failed" in warning and "worker_config_mismatch" in warning
    assert "retry budget spent" in warning  # retried by time (3 s here), not by a count
    assert "'static: 2 tenants" in warning and "pinned to 'static: 3 tenants" in warning
    (refused,) = explicit_result.outcomes
    assert refused.error_class == "worker_config_mismatch" and "retry budget of 3s spent" in refused.message
    assert not any(schema_exists(postgres, t) for t in ours.tenants + theirs.tenants)
