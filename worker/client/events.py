"""A running rollout as a stream of typed events: each tenant as it finishes, waves, server holds.

Why a feed and not the result: the result keeps per-tenant outcomes only up to its byte budget
(``workflows/outcome_ledger.py``), while a pipeline wants every tenant, as each finishes. The
workflow's ``completions`` query serves each run's recent finishes by sequence number; the feed
pages through it, drains a run that continued as new before moving to the next (a closed run
still answers queries: a worker replays it), and yields a :class:`FeedGap` if it ever fell further
behind than a run keeps. It also yields a :class:`WaveChanged` whenever a wave changes state and
a :class:`ServerHeld` when a server is parked or held, and again when it is released.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from fleetway.activities.rollouts import TenantOutcome
from fleetway.activities.servers.models import ServerHold
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import WaveProgress

__all__ = ["FeedGap", "RolloutEvent", "RolloutFeed", "ServerHeld", "TenantFinished", "WaveChanged"]


@dataclass(frozen=True)
class TenantFinished:
    """One tenant's outcome, once per tenant."""

    outcome: TenantOutcome


@dataclass(frozen=True)
class WaveChanged:
    """A wave's state changed (running, baking until …, awaiting approval, done, halted)."""

    index: int  # 1-based
    of: int
    wave: WaveProgress


@dataclass(frozen=True)
class ServerHeld:
    """A server was parked or held (``released`` False), or released from it (True)."""

    hold: ServerHold
    released: bool


@dataclass(frozen=True)
class FeedGap:
    """The feed fell further behind than a run keeps: ``missed`` tenants are in the result only."""

    missed: int


RolloutEvent = TenantFinished | WaveChanged | ServerHeld | FeedGap


class RolloutFeed:
    """Polls a rollout and returns what happened since the last poll, each tenant once."""

    def __init__(self, client: Client, rollout_id: str) -> None:
        self._client = client
        self._rollout_id = rollout_id
        self._after = 0
        self._run_id = ""
        self.seen: set[str] = set()
        self._wave_states: dict[str, tuple[str, str]] = {}
        self._holds: dict[str, ServerHold] = {}

    async def poll(self) -> list[RolloutEvent]:
        """What finished since the last poll, then the waves and holds that changed.

        A run left by continue-as-new is drained first.

        Raises:
            RPCError: a query failed (a worker busy or restarting); the next poll catches up.
        """
        events: list[RolloutEvent] = []
        latest = (await self._client.get_workflow_handle(self._rollout_id).describe()).run_id
        if self._run_id and latest != self._run_id:
            events += await self._drain(self._run_id)
        self._run_id = latest
        events += await self._drain(latest)
        events += await self._changes(latest)
        return events

    async def _drain(self, run_id: str) -> list[RolloutEvent]:
        handle = self._client.get_workflow_handle(self._rollout_id, run_id=run_id)
        events: list[RolloutEvent] = []
        while True:
            page = await handle.query(MigrateAllWorkflow.completions, self._after)
            if page.missed:
                events.append(FeedGap(page.missed))
            for outcome in page.items:
                if outcome.tenant_id not in self.seen:
                    self.seen.add(outcome.tenant_id)
                    events.append(TenantFinished(outcome))
            self._after = max(self._after, page.first_seq + len(page.items) - 1)
            if not page.items or self._after >= page.last_seq:
                return events

    async def _changes(self, run_id: str) -> list[RolloutEvent]:
        handle = self._client.get_workflow_handle(self._rollout_id, run_id=run_id)
        progress = await handle.query(MigrateAllWorkflow.progress)
        events: list[RolloutEvent] = []
        for index, wave in enumerate(progress.waves, start=1):
            state = (wave.state.value, wave.bake_until)
            if self._wave_states.get(wave.name) != state:
                self._wave_states[wave.name] = state
                events.append(WaveChanged(index, len(progress.waves), wave))
        holds = {h.server: h for h in progress.servers}
        for server, hold in holds.items():
            seen = self._holds.get(server)
            if seen is None or seen.since != hold.since:
                events.append(ServerHeld(hold, released=False))
        events += [ServerHeld(hold, released=True) for s, hold in self._holds.items() if s not in holds]
        self._holds = holds
        return events
