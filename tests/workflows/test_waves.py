"""Ring rollouts on the real stack: label waves, bakes, approval gates, halts, continue-as-new.

``flyway_schema_history`` judges what ran and when: a later wave's first script must be installed
after an earlier wave's last one, and a wave that must not have started has no history at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import CancelledError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from fleetway.activities.audit.events import AuditContext, AuditEvent, AuditEventType, Emitter
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.rollouts import Outcome
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer, TemporalDevServer
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import (
    MigrateAllInput,
    MigrateAllResult,
    Progress,
    RolloutStatus,
    WaveDecision,
    WaveProgress,
    WaveState,
)
from fleetway.workflows.wave_plan import holder_id
from tests.fleet import FLEETWAY, Fleet, make_fleet
from tests.support import history, schema_exists


class ListSink:
    """An audit sink that keeps what it is given (the durable sinks are tested in test_audit)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def verify(self) -> None:
        pass

    def close(self) -> None:
        pass


def ring_fleet(postgres: PostgresServer) -> Fleet:
    """Nine tenants: two internal, three beta, four others (two of them in the EU)."""
    fleet = make_fleet(postgres, 9)
    tiers = ["internal"] * 2 + ["beta"] * 3 + ["standard"] * 4
    fleet.labels = {t: {"tier": tier} for t, tier in zip(fleet.tenants, tiers, strict=True)}
    for tenant in fleet.tenants[5:7]:
        fleet.labels[tenant]["region"] = "eu"
    return fleet


def installed_window(postgres: PostgresServer, tenants: list[str]) -> tuple[datetime, datetime]:
    """The first and last ``installed_on`` over the tenants' schema histories."""
    union = " UNION ALL ".join(f'SELECT installed_on FROM "{t}".flyway_schema_history' for t in tenants)
    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute(f"SELECT min(installed_on), max(installed_on) FROM ({union}) h").fetchone()
    assert row is not None
    return row[0], row[1]


async def start(
    client: Client, fleet: Fleet, request: MigrateAllInput
) -> WorkflowHandle[MigrateAllWorkflow, MigrateAllResult]:
    return (
        await FleetwayClient(client, fleet.task_queue).start(
            request, rollout_id=f"ring-{uuid.uuid4().hex[:8]}"
        )
    ).handle


async def progress_until(
    handle: WorkflowHandle[MigrateAllWorkflow, MigrateAllResult],
    predicate: Callable[[Progress], bool],
    timeout: float = 60,
) -> Progress:
    deadline = asyncio.get_running_loop().time() + timeout
    progress: Progress | None = None
    while True:
        with contextlib.suppress(RPCError):  # not started yet (a CLI still starting it)
            progress = await handle.query(MigrateAllWorkflow.progress)
        if progress is not None and predicate(progress):
            return progress
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"progress never matched; last: {progress}")
        await asyncio.sleep(0.2)


async def timer_seconds(handle: WorkflowHandle[MigrateAllWorkflow, MigrateAllResult]) -> list[int]:
    """Every durable timer the rollout started (its bakes), in seconds, from its history."""
    return [
        e.timer_started_event_attributes.start_to_fire_timeout.seconds
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]


def wave_state(name: str, state: WaveState) -> Callable[[Progress], bool]:
    return lambda p: any(w.name == name and w.state is state for w in p.waves)


THREE_WAVES = [
    WaveSpec(name="internal", labels="tier=internal", bake_s=2, max_failures=0),
    WaveSpec(name="beta", labels="tier in (beta)", gate=True, parallelism=1),
    WaveSpec(name="rest", rest=True),
]


async def test_three_label_waves_with_a_bake_and_a_gate_run_in_order_after_approval(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = ring_fleet(postgres)
    internal, beta, rest = fleet.tenants[:2], fleet.tenants[2:5], fleet.tenants[5:]
    sink = ListSink()
    async with fleet.worker(client, flyway_install, emitter=Emitter(sink)):
        handle = await start(
            client, fleet, MigrateAllInput(waves=THREE_WAVES, audit=AuditContext(principal="ci-pipeline"))
        )
        waiting = await progress_until(handle, wave_state("beta", WaveState.AWAITING_APPROVAL))
        # The gate holds: the first ring ran and baked, the others are untouched.
        assert [w.state for w in waiting.waves] == [
            WaveState.DONE,
            WaveState.AWAITING_APPROVAL,
            WaveState.PENDING,
        ]
        assert [w.planned for w in waiting.waves] == [2, 3, 4]
        assert waiting.wave == "beta"
        assert all(len(history(postgres, t)) == 5 for t in internal)
        assert not any(schema_exists(postgres, t) for t in beta + rest)
        described = await handle.describe()
        memo = await described.memo()
        assert memo["wave"] == {
            "name": "beta",
            "index": 2,
            "of": 3,
            "state": "awaiting_approval",
            "bake_until": "",
        }

        opened = await handle.execute_update(
            MigrateAllWorkflow.approve,
            WaveDecision(principal="alice@example.com", wave="beta", reason="dashboards green"),
        )
        assert opened.name == "beta"
        result = await handle.result()

    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    assert [(w.name, w.state, w.counts) for w in result.waves] == [
        ("internal", WaveState.DONE, {Outcome.SUCCEEDED: 2}),
        ("beta", WaveState.DONE, {Outcome.SUCCEEDED: 3}),
        ("rest", WaveState.DONE, {Outcome.SUCCEEDED: 4}),
    ]
    assert result.waves[1].decided_by == "alice@example.com"
    assert {o.tenant_id: o.wave for o in result.outcomes} == (
        dict.fromkeys(internal, "internal") | dict.fromkeys(beta, "beta") | dict.fromkeys(rest, "rest")
    )
    # The table's own clock: each ring finished before the next began, and the bake sat between.
    first, second, third = (installed_window(postgres, ring) for ring in (internal, beta, rest))
    assert first[1] < second[0] and second[1] < third[0]
    assert (second[0] - first[1]).total_seconds() >= 2
    for tenant in fleet.tenants:
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]
    timers = await timer_seconds(handle)
    assert timers == [2]
    approvals = [e for e in sink.events if e.type is AuditEventType.WAVE_APPROVED]
    assert [(e.principal, e.target, e.attributes) for e in approvals] == [
        (
            "alice@example.com",
            handle.id,
            {"rollout.wave": "beta", "rollout.wave_index": "2", "rollout.reason": "dashboards green"},
        )
    ]


async def test_a_halt_in_the_first_wave_leaves_the_later_waves_untouched(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = ring_fleet(postgres)
    fleet.break_tenant(fleet.tenants[1])  # an internal tenant fails for good
    async with fleet.worker(client, flyway_install):
        handle = await start(client, fleet, MigrateAllInput(waves=THREE_WAVES))
        result = await handle.result()

    assert result.status is RolloutStatus.HALTED
    assert result.halted_wave == "internal"
    assert [w.state for w in result.waves] == [WaveState.HALTED, WaveState.PENDING, WaveState.PENDING]
    assert result.waves[0].counts == {Outcome.SUCCEEDED: 1, Outcome.FAILED: 1}
    assert any("wave 'internal' crossed its failure threshold (1 of 2 failed)" in w for w in result.warnings)
    assert len(history(postgres, fleet.tenants[0])) == 5
    assert not any(schema_exists(postgres, t) for t in fleet.tenants[2:])


async def test_reject_at_a_gate_halts_the_rollout_and_is_audited(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = ring_fleet(postgres)
    sink = ListSink()
    async with fleet.worker(client, flyway_install, emitter=Emitter(sink)):
        handle = await start(client, fleet, MigrateAllInput(waves=THREE_WAVES))
        # A decision with nothing waiting is refused, and changes nothing.
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(MigrateAllWorkflow.approve, WaveDecision())
        assert "approval_not_pending" in str(refused.value.cause)
        await progress_until(handle, wave_state("beta", WaveState.AWAITING_APPROVAL))
        with pytest.raises(WorkflowUpdateFailedError) as wrong:
            await handle.execute_update(MigrateAllWorkflow.approve, WaveDecision(wave="rest"))
        assert "wave 'rest' is not the one waiting ('beta' is)" in str(wrong.value.cause)
        await handle.execute_update(MigrateAllWorkflow.reject, WaveDecision(principal="bob", reason="p99 up"))
        result = await handle.result()

    assert result.status is RolloutStatus.HALTED
    assert result.halted_wave == "beta"
    assert [w.state for w in result.waves] == [WaveState.DONE, WaveState.REJECTED, WaveState.PENDING]
    assert result.waves[1].decided_by == "bob"
    assert any("wave 'beta' rejected by bob: p99 up" in w for w in result.warnings)
    assert not any(schema_exists(postgres, t) for t in fleet.tenants[2:])
    assert [(e.type, e.principal) for e in sink.events if e.type.value.startswith("rollout.")] == [
        (AuditEventType.WAVE_REJECTED, "bob")
    ]


async def test_continue_as_new_inside_a_wave_runs_every_tenant_once_in_its_wave(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 10)
    waves = [
        WaveSpec(name="first", count=6, parallelism=2),
        WaveSpec(name="second", rest=True, parallelism=3),
    ]
    async with fleet.worker(client, flyway_install):
        handle = await start(client, fleet, MigrateAllInput(waves=waves, continue_as_new_after=4))
        result = await handle.result()

    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    assert result.runs >= 3  # 4 + 2|... dispatches per run: the first wave spans two runs
    assert [(w.name, w.planned, w.dispatched, w.counts) for w in result.waves] == [
        ("first", 6, 6, {Outcome.SUCCEEDED: 6}),
        ("second", 4, 4, {Outcome.SUCCEEDED: 4}),
    ]
    assert {o.tenant_id: o.wave for o in result.outcomes} == (
        dict.fromkeys(fleet.tenants[:6], "first") | dict.fromkeys(fleet.tenants[6:], "second")
    )
    for tenant in fleet.tenants:
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]
    first, second = (
        installed_window(postgres, fleet.tenants[:6]),
        installed_window(postgres, fleet.tenants[6:]),
    )
    assert first[1] < second[0]


async def test_bakes_of_hours_and_days_pass_on_the_time_skipping_server(
    skipping_env: WorkflowEnvironment, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    """Bakes are durable timers: six hours and a day pass here in seconds, each in full.

    Gates are tested on the dev server: this server cannot deliver a workflow update (the call
    fails with "update ... not found" or hangs; sdk-java#1903, sdk-python#826), and a gate is no
    timer: however long it waits, its history holds nothing until the decision.
    """
    client = skipping_env.client
    fleet = ring_fleet(postgres)
    waves = [
        WaveSpec(name="internal", labels="tier=internal", bake_s="6h"),
        WaveSpec(name="beta", labels="tier=beta", bake_s="1d", parallelism=1),
        WaveSpec(name="rest", rest=True),
    ]
    async with fleet.worker(client, flyway_install):
        started = await skipping_env.get_current_time()
        handle = await start(client, fleet, MigrateAllInput(waves=waves))
        result = await handle.result()
        ended = await skipping_env.get_current_time()

    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    assert [w.counts for w in result.waves] == [{Outcome.SUCCEEDED: n} for n in (2, 3, 4)]
    assert ended - started >= timedelta(hours=30)  # both bakes ran their full course
    timers = await timer_seconds(handle)
    assert timers == [6 * 3600, 86400]
    first, second, third = (
        installed_window(postgres, ring)
        for ring in (fleet.tenants[:2], fleet.tenants[2:5], fleet.tenants[5:])
    )
    assert first[1] < second[0] and second[1] < third[0]


async def test_a_worker_killed_during_a_bake_is_replaced_and_the_bake_is_not_restarted(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = ring_fleet(postgres)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    first = subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True)
    second: subprocess.Popen[bytes] | None = None
    try:
        waves = [
            WaveSpec(name="internal", labels="tier=internal", bake_s=8),
            WaveSpec(name="others", rest=True),
        ]
        handle = await start(client, fleet, MigrateAllInput(waves=waves))
        baking = await progress_until(handle, wave_state("internal", WaveState.BAKING), timeout=90)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        await asyncio.sleep(2)  # the bake's timer fires on the server whether or not a worker lives
        second = subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True)
        result = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    assert baking.waves[0].bake_until  # when the bake ends was visible while it ran
    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    assert [w.counts for w in result.waves] == [{Outcome.SUCCEEDED: 2}, {Outcome.SUCCEEDED: 7}]
    timers = await timer_seconds(handle)
    assert timers == [8]  # one bake, replayed by the new worker, never started again
    internal, others = (
        installed_window(postgres, fleet.tenants[:2]),
        installed_window(postgres, fleet.tenants[2:]),
    )
    assert (others[0] - internal[1]).total_seconds() >= 8
    for tenant in fleet.tenants:
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]


async def test_pause_set_parallelism_quiesce_and_cancel_steer_a_ring_rollout(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 6)
    waves = [WaveSpec(name="first", count=3, parallelism=3), WaveSpec(name="gated", rest=True, gate=True)]
    async with fleet.worker(client, flyway_install):
        quiesced = await start(client, fleet, MigrateAllInput(waves=waves, start_paused=True))
        held = await progress_until(
            quiesced, lambda p: bool(p.waves) and p.waves[0].state is WaveState.RUNNING
        )
        assert (held.paused, held.dispatched, held.parallelism) == (True, 0, 3)  # the wave's own window
        assert await quiesced.execute_update(MigrateAllWorkflow.set_parallelism, 1) == 3
        await quiesced.signal(MigrateAllWorkflow.resume)
        await progress_until(quiesced, wave_state("gated", WaveState.AWAITING_APPROVAL))
        await quiesced.signal(MigrateAllWorkflow.quiesce)
        stopped = await quiesced.result()

        cancelled = await start(client, fleet, MigrateAllInput(waves=waves))
        await progress_until(cancelled, wave_state("gated", WaveState.AWAITING_APPROVAL))
        await cancelled.cancel()
        with pytest.raises(WorkflowFailureError) as ended:
            await cancelled.result()

    assert stopped.status is RolloutStatus.QUIESCED
    assert [w.state for w in stopped.waves] == [WaveState.DONE, WaveState.AWAITING_APPROVAL]
    assert not any(schema_exists(postgres, t) for t in fleet.tenants[3:])
    # set_parallelism overrode the wave's window of 3: the three ran one after another.
    windows = sorted(installed_window(postgres, [t]) for t in fleet.tenants[:3])
    assert windows[0][1] < windows[1][0] and windows[1][1] < windows[2][0]
    assert isinstance(ended.value.cause, CancelledError)


async def test_rerun_failed_with_waves_runs_exactly_the_failed_tenants_in_their_waves(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = ring_fleet(postgres)
    broken = [fleet.tenants[3], fleet.tenants[7]]  # one beta, one standard
    for tenant in broken:
        fleet.break_tenant(tenant)
    waves = [
        WaveSpec(name="internal", labels="tier=internal"),
        WaveSpec(name="beta", labels="tier=beta", max_failures=1),
        WaveSpec(name="rest", rest=True, max_failure_ratio=0.5),
    ]
    async with fleet.worker(client, flyway_install):
        first = await (await start(client, fleet, MigrateAllInput(waves=waves))).result()
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            for tenant in broken:
                conn.execute(f'DROP SCHEMA "{tenant}" CASCADE')
        rerun = await (
            await start(client, fleet, MigrateAllInput(waves=waves, rerun_failed_of=first.rollout_id))
        ).result()

    assert first.status is RolloutStatus.FAILED  # under every threshold: the rollout ran to its end
    assert [w.counts.get(Outcome.FAILED, 0) for w in first.waves] == [0, 1, 1]
    assert rerun.status is RolloutStatus.SUCCEEDED, rerun.warnings
    assert [(w.name, w.planned) for w in rerun.waves] == [("internal", 0), ("beta", 1), ("rest", 1)]
    assert {o.tenant_id: o.wave for o in rerun.outcomes} == {broken[0]: "beta", broken[1]: "rest"}
    for tenant in fleet.tenants:
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]


async def test_a_ten_thousand_tenant_ring_rollout_stays_within_its_history_and_payload_bounds(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    """The plan of 10,000 labelled tenants, held beside the rollout, measured on the server.

    One tenant is real (the first wave); the other 9,999 wait behind a gate and are never
    dispatched, so no database is needed for them: what is measured is what the plan costs.
    """
    fleet = make_fleet(postgres, 1)
    real = fleet.tenants[0]
    others = [f"{real}-{i:05d}" for i in range(9_999)]
    fleet.tenants = [real, *others]
    fleet.labels = {
        t: {"tier": "internal" if i % 100 == 0 else "standard", "region": "eu"} for i, t in enumerate(others)
    }
    waves = [
        WaveSpec(name="first", tenants=[real]),
        WaveSpec(name="internal", labels="tier=internal", gate=True),
        WaveSpec(name="rest", rest=True),
    ]
    async with fleet.worker(client, flyway_install):
        handle = await start(client, fleet, MigrateAllInput(waves=waves, continue_as_new_after=1))
        waiting = await progress_until(
            handle, wave_state("internal", WaveState.AWAITING_APPROVAL), timeout=120
        )
        described = await handle.describe()
        first_run = await client.get_workflow_handle(
            handle.id, run_id=described.raw_description.workflow_execution_info.first_run_id
        ).describe()
        second_input = 0
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                second_input = sum(
                    len(p.data) for p in event.workflow_execution_started_event_attributes.input.payloads
                )
        await handle.execute_update(MigrateAllWorkflow.reject, WaveDecision(principal="bench"))
        result = await handle.result()

    assert waiting.run == 2 and [w.planned for w in waiting.waves] == [1, 100, 9899]
    first_info = first_run.raw_description.workflow_execution_info
    second_info = described.raw_description.workflow_execution_info
    print(
        f"\n10,000-tenant wave plan: run 1 {first_info.history_length} events / {first_info.history_size_bytes} B; "
        f"continue-as-new input {second_input} B; run 2 {second_info.history_length} events / "
        f"{second_info.history_size_bytes} B; result {len(result.model_dump_json())} B"
    )
    # The ids live in the plan's holder (ids only, no labels, ~20 bytes a tenant, in chunks); the
    # rollout keeps the summary and reads a chunk as a wave needs it: none is read at the gate.
    assert first_info.history_size_bytes < 40_000
    assert second_input < 10_000 and second_info.history_size_bytes < 20_000
    assert first_info.history_length < 80 and second_info.history_length < 40
    holder = await client.get_workflow_handle(holder_id(handle.id)).describe()
    holder_info = holder.raw_description.workflow_execution_info
    assert 200_000 < holder_info.history_size_bytes < 400_000  # 10,000 ids, once
    assert result.status is RolloutStatus.HALTED and result.halted_wave == "internal"
    assert len(history(postgres, real)) == 5


async def test_reject_during_a_bake_refuses_the_next_wave_and_ends_the_bake(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 4)
    waves = [WaveSpec(name="first", count=2, bake_s="1h"), WaveSpec(name="rest", rest=True)]
    sink = ListSink()
    async with fleet.worker(client, flyway_install, emitter=Emitter(sink)):
        handle = await start(client, fleet, MigrateAllInput(waves=waves))
        await progress_until(handle, wave_state("first", WaveState.BAKING))
        with pytest.raises(WorkflowUpdateFailedError) as refused:  # approve has nothing to open during a bake
            await handle.execute_update(MigrateAllWorkflow.approve, WaveDecision())
        assert "no wave is waiting for approval (wave 'first' is baking)" in str(refused.value.cause)
        rejected = await handle.execute_update(
            MigrateAllWorkflow.reject, WaveDecision(wave="rest", principal="sre")
        )
        result = await asyncio.wait_for(handle.result(), timeout=30)  # not an hour: the bake ends at once

    assert rejected.name == "rest"
    assert result.status is RolloutStatus.HALTED and result.halted_wave == "rest"
    assert [(w.state, w.decided_by) for w in result.waves] == [
        (WaveState.DONE, ""),
        (WaveState.REJECTED, "sre"),
    ]
    assert not any(schema_exists(postgres, t) for t in fleet.tenants[2:])
    assert [
        (e.type, e.attributes["rollout.wave"]) for e in sink.events if e.type.value.startswith("rollout.")
    ] == [(AuditEventType.WAVE_REJECTED, "rest")]


async def test_a_gate_on_the_first_wave_opens_with_an_approve_that_carries_no_input(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    """What the UI sends when its Data field is left empty: no payload at all; the principal stays unspecified."""
    fleet = make_fleet(postgres, 2)
    sink = ListSink()
    async with fleet.worker(client, flyway_install, emitter=Emitter(sink)):
        handle = await start(
            client, fleet, MigrateAllInput(waves=[WaveSpec(name="all", rest=True, gate=True)])
        )
        waiting = await progress_until(handle, wave_state("all", WaveState.AWAITING_APPROVAL))
        assert waiting.dispatched == 0 and not any(schema_exists(postgres, t) for t in fleet.tenants)
        await handle.execute_update("approve", result_type=WaveProgress)
        result = await handle.result()

    assert result.status is RolloutStatus.SUCCEEDED
    assert result.waves[0].decided_by == "<unspecified>"
    assert [e.principal for e in sink.events if e.type is AuditEventType.WAVE_APPROVED] == ["<unspecified>"]
