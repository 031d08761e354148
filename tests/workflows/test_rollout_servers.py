"""Dispatch by server: turns across servers, the per-server budget, a parked or held server, the
park limit, a check that cannot work, and holds carried across continue-as-new.

The real workflow code with scripted activities (server keys and checks scripted per server);
holds and the park limit run on the time-skipping server. The real-stack tests
(``tests/test_servers.py``) stop a real PostgreSQL server, hold a real lock, pause a real replica.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from fleetway.activities.fleet.state import TenantState
from fleetway.activities.flyway.output import FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.rollouts import Outcome
from fleetway.activities.servers.models import HealthState, HoldKind, ServerControls, ServerHealth
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from fleetway.workflows.rollout_state import RolloutState
from fleetway.workflows.server_book import ServerBook
from tests.workflows.scripted import SET, Scripted, scripted_worker

pytestmark = pytest.mark.fast

A, B = "10.0.0.1:5432", "10.0.0.2:5432"
_DOWN = ServerHealth(state=HealthState.UNREACHABLE, why="does not answer: OperationalError (SQLSTATE none)")
_LOCKS = ServerHealth(state=HealthState.OVER, why="3 sessions wait on locks (max 0)", lock_waiters=3)


def _on_servers(tenants: dict[str, str]) -> Scripted:
    script = Scripted(list(tenants), block=set())
    script.server_of = dict(tenants)
    return script


def _runs(script: Scripted) -> list[str]:
    return [c.split(":", 1)[1] for c in script.calls if c.startswith("run_flyway:")]


# ---- the book alone -------------------------------------------------------------------------


def test_the_book_serves_servers_in_turn_within_their_budgets() -> None:
    book = ServerBook(ServerControls(per_server=1), [])
    for tenant in ("b1", "b2", "b3"):
        book.enqueue(tenant, B)
    for tenant in ("a1", "a2"):
        book.enqueue(tenant, A)
    first = book.pick()
    assert first == ("b1", B)
    book.started("b1")
    assert book.pick() == ("a1", A)  # B is at its budget of 1, and A's turn came anyway
    book.started("a1")
    assert book.pick() is None and not book.pickable()
    assert book.finished("b1") == B
    assert book.pick() == ("b2", B)
    book.put_back("b2")  # not dispatched after all: first in B's queue again
    assert book.drain() == ["b2", "b3", "a2"] and book.queued() == 0


def test_the_park_limit_is_the_retry_budget_unless_set() -> None:
    assert RolloutState(MigrateAllInput(retry_budget_s=20)).servers.park_limit_s == 20  # type: ignore[union-attr]
    assert RolloutState(MigrateAllInput()).servers.park_limit_s == 900  # type: ignore[union-attr]
    set_here = MigrateAllInput(retry_budget_s=20, servers=ServerControls(park_limit_s=60))
    assert RolloutState(set_here).servers.park_limit_s == 60  # type: ignore[union-attr]
    assert RolloutState(MigrateAllInput(servers=None)).servers is None


def test_a_hold_stops_a_server_until_released_and_the_limit_abandons_only_parked_ones() -> None:
    book = ServerBook(ServerControls(park_limit_s=60), [])
    book.enqueue("b1", B)
    book.enqueue("a1", A)
    assert book.check_due(B, 0.0)
    hold = book.found(B, _DOWN, 100.0)
    assert hold is not None and hold.kind is HoldKind.PARKED and hold.since_s == 100.0
    assert book.found(B, _DOWN, 101.0) is None  # already parked: one hold, one audit event
    assert book.pick() == ("a1", A)
    assert book.pick() is None
    assert not book.over_limit(B, 159.0) and book.over_limit(B, 160.0)
    assert book.view()[0].queued == 1
    assert book.abandon(B) == ["b1"] and book.queued() == 0
    held = ServerBook(ServerControls(park_limit_s=60), [])
    held.found(A, _LOCKS, 0.0)
    assert not held.over_limit(A, 10_000.0)  # a held server answers: it waits, it is not given up
    assert held.release(A, 5.0) is not None and not held.check_due(A, 6.0)


# ---- the rollout ------------------------------------------------------------------------------


async def test_a_source_ordered_by_server_is_served_in_turn(client: Client) -> None:
    tenants = {f"b{i}": B for i in range(1, 5)} | {f"a{i}": A for i in range(1, 5)}
    script = _on_servers(tenants)
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(tenants=list(tenants), parallelism=1, migration_set=SET),
            rollout_id=f"turns-{uuid.uuid4().hex[:8]}",
        )
    assert result.counts == {Outcome.SUCCEEDED: 8}
    assert _runs(script) == ["b1", "a1", "b2", "a2", "b3", "a3", "b4", "a4"]
    assert {o.tenant_id: o.server for o in result.outcomes} == tenants
    assert Counter(script.checks) == {A: 1, B: 1}  # each checked once: fit for check_every_s


class _Counting(Scripted):
    """Each run takes a moment; the most runs seen at once per server."""

    def __init__(self, tenants: dict[str, str]) -> None:
        super().__init__(list(tenants), block=set())
        self.server_of = dict(tenants)
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    @activity.defn(name="run_flyway")
    async def run_flyway(self, request: FlywayRequest) -> FlywayOutcome:
        server = self.server_of[request.tenant_id]
        self.now[server] += 1
        self.most[server] = max(self.most[server], self.now[server])
        try:
            await asyncio.sleep(0.5)
        finally:
            self.now[server] -= 1
        return FlywayOutcome(action=request.action, success=True, applied_versions=["1"], ending_version="1")


async def test_the_per_server_budget_holds_whatever_the_window(client: Client) -> None:
    tenants = {f"a{i}": A for i in range(6)} | {"b0": B, "b1": B}
    script = _Counting(tenants)
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(
                tenants=list(tenants), parallelism=8, migration_set=SET, servers=ServerControls(per_server=2)
            ),
            rollout_id=f"budget-{uuid.uuid4().hex[:8]}",
        )
    assert result.counts == {Outcome.SUCCEEDED: 8}
    assert script.most == {A: 2, B: 2}


async def test_a_held_server_waits_while_the_others_run_and_is_audited(
    skipping_env: WorkflowEnvironment,
) -> None:
    tenants = {"b1": B, "b2": B, "a1": A, "a2": A}
    script = _on_servers(tenants)
    script.health[B] = [_LOCKS, _LOCKS, _LOCKS]
    client = skipping_env.client
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(tenants=list(tenants), parallelism=4, migration_set=SET),
            rollout_id=f"held-{uuid.uuid4().hex[:8]}",
        )
    assert result.status is RolloutStatus.SUCCEEDED and result.servers == []
    runs = _runs(script)
    assert set(runs[:2]) == {"a1", "a2"} and set(runs[2:]) == {"b1", "b2"}
    audits = [c for c in script.calls if c.startswith("emit_audit:rollout.server")]
    assert audits == ["emit_audit:rollout.server_held", "emit_audit:rollout.server_released"]
    assert script.checks.count(B) == 4  # the held check, two more while held, the one that released it


async def test_a_server_parked_past_the_limit_ends_its_tenants_undispatched(
    skipping_env: WorkflowEnvironment,
) -> None:
    tenants = {"b1": B, "a1": A, "b2": B, "a2": A}
    script = _on_servers(tenants)
    script.health[B] = [_DOWN] * 100
    client = skipping_env.client
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(
                tenants=list(tenants),
                parallelism=4,
                migration_set=SET,
                servers=ServerControls(park_limit_s=120),
            ),
            rollout_id=f"parked-{uuid.uuid4().hex[:8]}",
        )
    assert sorted(_runs(script)) == ["a1", "a2"]  # B's tenants were never dispatched
    by_tenant = {o.tenant_id: o for o in result.outcomes}
    assert {t: by_tenant[t].outcome for t in tenants} == {
        "a1": Outcome.SUCCEEDED, "a2": Outcome.SUCCEEDED, "b1": Outcome.FAILED, "b2": Outcome.FAILED,
    }  # fmt: skip
    for tenant in ("b1", "b2"):
        assert by_tenant[tenant].error_class == "target_unreachable"
        assert by_tenant[tenant].message.startswith(f"not dispatched: server {B} parked since ")
        assert "past the park limit of 120s" in by_tenant[tenant].message
    assert result.status is RolloutStatus.FAILED  # honest: two tenants did not migrate
    (hold,) = result.servers
    assert hold.server == B and hold.kind is HoldKind.PARKED and "does not answer" in hold.why


async def test_a_check_that_cannot_work_stops_the_rollout_with_its_reason(client: Client) -> None:
    script = _on_servers({"a1": A, "a2": A})
    script.health[A] = [ServerHealth(state=HealthState.BROKEN, why="health probe failed (SQLSTATE 42601)")]
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(tenants=["a1", "a2"], migration_set=SET),
            rollout_id=f"broken-{uuid.uuid4().hex[:8]}",
        )
    assert result.status is RolloutStatus.FAILED and _runs(script) == []
    assert any(
        w == f"server check on {A} cannot work: health probe failed (SQLSTATE 42601); dispatch stopped"
        for w in result.warnings
    ), result.warnings


async def test_a_hold_is_carried_across_continue_as_new(skipping_env: WorkflowEnvironment) -> None:
    tenants = {"a1": A, "b1": B, "a2": A, "a3": A}
    script = _on_servers(tenants)
    script.health[B] = [_DOWN] * 4
    client = skipping_env.client
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(tenants=list(tenants), parallelism=1, continue_as_new_after=1, migration_set=SET),
            rollout_id=f"carried-{uuid.uuid4().hex[:8]}",
        )
    assert result.counts == {Outcome.SUCCEEDED: 4} and result.runs >= 3
    assert _runs(script)[-1] == "b1" and sorted(_runs(script)) == ["a1", "a2", "a3", "b1"]
    # Parked once: the later runs kept the hold (and its watcher) instead of parking again.
    audits = [c for c in script.calls if c.startswith("emit_audit:rollout.server")]
    assert audits == ["emit_audit:rollout.server_held", "emit_audit:rollout.server_released"]


async def test_the_screening_read_gives_the_keys_and_the_activity_only_fills_gaps(client: Client) -> None:
    script = _on_servers({"a1": A, "b1": B, "x1": B})
    for tenant in ("a1", "b1"):  # the read resolved these two; x1's secret it could not resolve
        script.states[tenant] = TenantState(
            tenant_id=tenant, server=script.server_of[tenant], pending=["1"], pending_count=1, intact=True
        )
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(tenants=["a1", "b1", "x1"], migration_set=SET),
            rollout_id=f"read-keys-{uuid.uuid4().hex[:8]}",
        )
    assert {o.tenant_id: o.server for o in result.outcomes} == {"a1": A, "b1": B, "x1": B}
    assert script.keyed == [["x1"]] and len(script.screens) == 1


def test_the_queues_are_refilled_in_whole_chunks_not_one_tenant_per_dispatch() -> None:
    """Measured at 10,000 tenants: topping the queues up after every dispatch ran one server_keys
    activity per tenant (+5 history events each, 28 % more wall)."""
    tenants = [f"t{i:05d}" for i in range(6000)]
    # No table read before dispatch (nothing to prove current): the line is keyed as listed.
    request = MigrateAllInput(tenants=tenants, parallelism=8, migration_set=SET, skip_current=False)
    state = RolloutState(request)
    book = state.servers
    assert book is not None
    state.listed(tenants)
    chunks, order = [], []
    while state.has_pending():
        if chunk := state.key_chunk():
            chunks.append(len(chunk))
            for tenant in chunk:
                book.enqueue(tenant, A if int(tenant[1:]) % 2 else B)
        picked = book.pick()
        assert picked is not None
        state.dispatch(picked[0])
        order.append(picked[0])
        state.finished(picked[0])
    assert chunks == [1000] * 6 and sorted(order) == tenants


class _RefusedOnce(Scripted):
    """``b1``'s run finds its server gone (as Flyway reports a refused connection)."""

    @activity.defn(name="run_flyway")
    async def run_flyway(self, request: FlywayRequest) -> FlywayOutcome:
        if request.tenant_id == "b1":
            self.calls.append("run_flyway:b1")
            raise ApplicationError("connection refused", type="target_unreachable", non_retryable=True)
        return await super().run_flyway(request)


async def test_a_tenant_failing_for_its_server_has_the_server_checked_before_the_next_dispatch(
    skipping_env: WorkflowEnvironment,
) -> None:
    """The server was fit when first checked and its next check is 5 minutes away by the clock;
    a tenant failing ``target_unreachable`` makes the next dispatch there wait for a check."""
    tenants = {"b1": B, "b2": B}
    script = _RefusedOnce(list(tenants), block=set())
    script.server_of = dict(tenants)
    script.health[B] = [ServerHealth(state=HealthState.OK), _DOWN]  # fit, then gone, then fit
    client = skipping_env.client
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(
                tenants=list(tenants),
                parallelism=1,
                continue_on_error=True,
                migration_set=SET,
                servers=ServerControls(check_every_s=300),
            ),
            rollout_id=f"recheck-{uuid.uuid4().hex[:8]}",
        )
    by_tenant = {o.tenant_id: o for o in result.outcomes}
    assert by_tenant["b1"].error_class == "target_unreachable"
    assert by_tenant["b2"].outcome is Outcome.SUCCEEDED
    assert script.checks == [B, B, B]  # the first, the recheck that parked it, the one that released it
    audits = [c for c in script.calls if c.startswith("emit_audit:rollout.server")]
    assert audits == ["emit_audit:rollout.server_held", "emit_audit:rollout.server_released"]
