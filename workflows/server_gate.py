"""Dispatch by server: key a page's tenants, pick a server in turn, check it, watch a held one.

Workflow code over the pure ``ServerBook``. A server that does not answer is parked and probed
with backoff; one over a threshold (lock waiters, replica lag, the rollout's probe) is held the same
way; both are audited when they start and end. A server parked past the rollout's limit ends its
undispatched tenants ``target_unreachable``; the rest of the fleet goes on meanwhile.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.audit.events import (
        UNSPECIFIED_PRINCIPAL,
        AuditActivities,
        AuditEvent,
        AuditEventType,
        AuditOutcome,
    )
    from fleetway.activities.flyway.output import ErrorClass
    from fleetway.activities.rollouts import Outcome, TenantOutcome
    from fleetway.activities.servers.activity import ServerActivities
    from fleetway.activities.servers.models import (
        CheckServerInput,
        HealthState,
        ServerHealth,
        ServerHold,
        ServerKeysInput,
    )
    from fleetway.workflows.activity_failures import (
        any_failure_reason,
        by_time,
        failure_reason,
        reraise_cancel,
    )
    from fleetway.workflows.rollout_state import RolloutState
    from fleetway.workflows.server_book import UNKNOWN_SERVER, ServerBook

__all__ = ["NOT_NOW", "ServerGate"]

_SERVER_TROUBLE = frozenset({ErrorClass.TARGET_UNREACHABLE.value, ErrorClass.TARGET_NOT_READY.value})
NOT_NOW = ""  # no tenant may go now (its servers are busy or held): wait, then ask again


def _now_s() -> float:
    return workflow.now().timestamp()


class ServerGate:
    """The rollout's per-server dispatch: ``next`` picks, ``close`` stops the watchers."""

    def __init__(self, state: RolloutState, book: ServerBook) -> None:
        self._state, self._book = state, book
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    def resume(self) -> None:
        """Watch the holds a previous run carried."""
        for server in list(self._book.holds):
            self._watch(server, announce=False)

    async def close(self, *, cancel: bool = False) -> None:
        """Stop every watcher and wait for them (before returning or continuing as new).

        A watcher finishes the check or audit it is in (a hold's audit event is never cut off);
        ``cancel`` (the rollout is cancelled) stops them at once.
        """
        self._closing = True
        if cancel:
            for task in self._watchers.values():
                task.cancel()
        await workflow.wait_condition(lambda: not self._watchers)

    async def next(self) -> str | None:
        """A tenant to dispatch now; ``NOT_NOW``: every waiting one's server must wait; None: none left."""
        state, book = self._state, self._book
        if chunk := state.key_chunk():
            await self._key(chunk)
        picked = book.pick()
        if picked is None:
            return NOT_NOW if book.queued() or not state.feed.exhausted or state.feed else None
        tenant, server = picked
        if not book.check_due(server, _now_s()):
            return tenant
        health = await self._check(server, tenant)
        if health.state is HealthState.BROKEN:
            book.put_back(tenant)
            state.fail(f"server check on {server} cannot work: {health.why}; dispatch stopped")
            return None
        now = workflow.now()
        if book.found(server, health, now.timestamp(), now.isoformat(timespec="seconds")) is not None:
            book.put_back(tenant)
            self._watch(server, announce=True)
            return NOT_NOW
        return tenant

    def failed_on(self, outcome: TenantOutcome) -> None:
        """A tenant failed for its server's sake: check that server before its next dispatch."""
        if outcome.error_class in _SERVER_TROUBLE:
            self._book.recheck(outcome.server)

    async def _key(self, chunk: list[str]) -> None:
        state, book = self._state, self._book
        # The screening read already resolved most tenants: only the others need the activity.
        known = state.servers_read_for(chunk)
        unknown = [t for t in chunk if t not in known]
        keys = await self._keys(unknown) if unknown else []
        now = _now_s()
        resolved = known | dict(zip(unknown, keys, strict=True))
        for tenant in chunk:
            server = resolved[tenant]
            if book.over_limit(server, now):
                self._unsent(tenant, server)
            else:
                book.enqueue(tenant, server)

    async def _keys(self, chunk: list[str]) -> list[str]:
        state = self._state
        try:
            keys: list[str] = await workflow.execute_activity_method(
                ServerActivities.server_keys,
                ServerKeysInput(
                    tenant_ids=chunk,
                    secrets_backend=state.request.secrets_backend,
                    pinned_secrets=state.secrets_pin,
                ),
                **by_time(state.request, timedelta(minutes=2)),
            )
        except ActivityError as err:
            reraise_cancel(err)
            state.warn(
                f"server keys unread, tenants dispatched without per-server limits ({failure_reason(err)})"
            )
            keys = [UNKNOWN_SERVER] * len(chunk)
        if len(keys) != len(chunk):
            state.warn("server keys answered for other tenants; dispatched without per-server limits")
            keys = [UNKNOWN_SERVER] * len(chunk)
        return keys

    async def _check(self, server: str, tenant: str) -> ServerHealth:
        """One check (in the workflow task); a check that fails itself lets the dispatch go."""
        state = self._state
        try:
            return await workflow.execute_local_activity_method(
                ServerActivities.check_server,
                CheckServerInput(
                    server=server,
                    tenant_id=tenant,
                    secrets_backend=state.request.secrets_backend,
                    pinned_secrets=state.secrets_pin,
                    controls=state.request.servers,
                ),
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=RetryPolicy(maximum_attempts=2),
            )
        except FailureError as err:  # a local activity's failure arrives unwrapped
            reraise_cancel(err)
            # Fail-open, as the quiesce check: a broken check must not freeze the fleet.
            state.warn(f"server check failed, dispatched unchecked ({any_failure_reason(err)})")
            return ServerHealth(state=HealthState.OK, why="check failed")

    def _watch(self, server: str, *, announce: bool) -> None:
        if server not in self._watchers:
            task = asyncio.create_task(self._watching(server, announce=announce))
            self._watchers[server] = task

    async def _watching(self, server: str, *, announce: bool) -> None:
        """Probe a held server with backoff until it is fit, the limit passes, or the rollout stops."""
        book, state = self._book, self._state
        try:
            if announce:
                await self._audit(book.holds[server], AuditEventType.SERVER_HELD)
            delay, ceiling = 1.0, max(5.0, 3.0 * book.controls.check_every_s)
            while server in book.holds and state.stop is None and not self._closing:
                with suppress(TimeoutError):  # the wait ran its course: check again
                    await workflow.wait_condition(lambda: self._closing, timeout=timedelta(seconds=delay))
                if self._closing:
                    return
                delay = min(delay * 2, ceiling)
                if book.over_limit(server, _now_s()):
                    for tenant in book.abandon(server):
                        self._unsent(tenant, server)
                    return
                reference = book.reference(server)
                if reference is None:
                    continue  # nothing of this rollout waits for it now
                health = await self._check(server, reference)
                if health.state is HealthState.BROKEN:
                    state.fail(f"server check on {server} cannot work: {health.why}; dispatch stopped")
                    return
                if health.state is HealthState.OK and (hold := book.release(server, _now_s())):
                    await self._audit(hold, AuditEventType.SERVER_RELEASED)
                    return
        finally:
            self._watchers.pop(server, None)

    def _unsent(self, tenant: str, server: str) -> None:
        hold = self._book.holds[server]
        self._state.record_unsent(
            TenantOutcome(
                tenant_id=tenant,
                outcome=Outcome.FAILED,
                error_class=ErrorClass.TARGET_UNREACHABLE.value,
                server=server,
                message=f"not dispatched: server {server} parked since {hold.since} ({hold.why}), "
                f"past the park limit of {self._book.park_limit_s}s"[:300],
            )
        )

    async def _audit(self, hold: ServerHold, kind: AuditEventType) -> None:
        """Record a hold starting or ending (its event id makes a retry idempotent)."""
        state, info = self._state, workflow.info()
        number = self._book.holds_started[hold.server]
        event = AuditEvent(
            event_id=f"{info.workflow_id}/server/{hold.server}/{number}/{kind.value}",
            type=kind,
            target=hold.server,
            principal=state.request.audit.principal or UNSPECIFIED_PRINCIPAL,
            completed_at=workflow.now(),
            outcome=AuditOutcome.SUCCESS,
            git_sha=state.request.audit.git_sha,
            pipeline_run_id=state.request.audit.pipeline_run_id,
            attributes={
                "rollout.id": info.workflow_id,
                "server.hold": hold.kind.value,
                "server.reason": hold.why,
                "server.since": hold.since,
            },
        )
        try:
            await workflow.execute_activity_method(
                AuditActivities.emit_audit, event, **by_time(state.request, timedelta(seconds=30))
            )
        except ActivityError as err:
            reraise_cancel(err)
            state.warn(f"audit of server {hold.server} {kind.value} failed ({failure_reason(err)})")
