"""Following a running rollout from the CLI: a live progress bar, or a live NDJSON feed.

Why a feed and not the result: the result keeps per-tenant outcomes only up to its byte budget
(``workflows/outcome_ledger.py``), while a pipeline reading ``-o ndjson`` wants one line per
tenant, as each finishes. The workflow's ``completions`` query serves each run's recent finishes
by sequence number; the follower pages through it, drains a run that continued-as-new before
moving to the next (a closed run still answers queries: a worker replays it), and reports a
``gap`` line if it ever fell further behind than a run keeps. A ring rollout's feed also prints a
``wave`` line whenever a wave changes state (running, baking until …, awaiting approval, done),
and any rollout a ``server`` line when a server is parked or held and when it is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import Client
from temporalio.service import RPCError

from fleetway.activities.rollouts import TenantOutcome
from fleetway.activities.servers.models import ServerHold
from fleetway.worker.cli.output import OutputFormat, hold_line, tenant_line, wave_line, wave_status
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllResult

__all__ = ["Feed", "follow_rollout"]

_POLL_S = 0.5


class Feed:
    """Prints each finished tenant once, as one ``tenant_complete`` NDJSON line."""

    def __init__(self, client: Client, rollout_id: str, emit: Callable[[str], None] = print) -> None:
        self._client = client
        self._rollout_id = rollout_id
        self._emit = emit
        self._after = 0
        self._run_id = ""
        self.printed: set[str] = set()
        self._wave_states: dict[str, tuple[str, str]] = {}
        self._holds: dict[str, ServerHold] = {}

    async def poll(self) -> None:
        """Print what finished since the last poll, draining a run left by continue-as-new first."""
        latest = (await self._client.get_workflow_handle(self._rollout_id).describe()).run_id
        if self._run_id and latest != self._run_id:
            await self._drain(self._run_id)
        self._run_id = latest
        await self._drain(latest)
        await self._waves(latest)

    async def _waves(self, run_id: str) -> None:
        """A ``wave`` line for each wave whose state changed since the last poll."""
        handle = self._client.get_workflow_handle(self._rollout_id, run_id=run_id)
        progress = await handle.query(MigrateAllWorkflow.progress)
        for index, wave in enumerate(progress.waves, start=1):
            state = (wave.state.value, wave.bake_until)
            if self._wave_states.get(wave.name) != state:
                self._wave_states[wave.name] = state
                self._emit(wave_line(self._rollout_id, index, len(progress.waves), wave))
        holds = {h.server: h for h in progress.servers}
        for server, hold in holds.items():
            seen = self._holds.get(server)
            if seen is None or seen.since != hold.since:
                self._emit(hold_line(self._rollout_id, hold, ended=False))
        for server, hold in self._holds.items():
            if server not in holds:
                self._emit(hold_line(self._rollout_id, hold, ended=True))
        self._holds = holds

    async def _drain(self, run_id: str) -> None:
        handle = self._client.get_workflow_handle(self._rollout_id, run_id=run_id)
        while True:
            page = await handle.query(MigrateAllWorkflow.completions, self._after)
            if page.missed:
                self._emit(json.dumps({"event": "gap", "missed": page.missed}))
            for outcome in page.items:
                self.tenant(outcome)
            self._after = max(self._after, page.first_seq + len(page.items) - 1)
            if not page.items or self._after >= page.last_seq:
                return

    def tenant(self, outcome: TenantOutcome) -> None:
        """Print one tenant's line unless it was printed already."""
        if outcome.tenant_id not in self.printed:
            self.printed.add(outcome.tenant_id)
            self._emit(tenant_line(outcome))


async def follow_rollout(
    client: Client, rollout_id: str, fmt: OutputFormat, console: Console
) -> tuple[MigrateAllResult, set[str]]:
    """Wait for the rollout's result; meanwhile a bar (text on a terminal) or the NDJSON feed.

    Returns the result and the tenants whose lines the feed printed already.
    """
    handle = client.get_workflow_handle(rollout_id, result_type=MigrateAllResult)
    result_task: asyncio.Future[MigrateAllResult] = asyncio.ensure_future(handle.result())
    if fmt is OutputFormat.NDJSON:
        feed = Feed(client, rollout_id)
        while True:
            done = result_task.done()
            # After the result too: the last finishes and any final run. A failed query (a worker
            # busy or restarting) is caught up by the next poll, or by the result's outcomes.
            with contextlib.suppress(RPCError):
                await feed.poll()
            if done:
                break
            await asyncio.wait({result_task}, timeout=_POLL_S)
        return await result_task, feed.printed
    if fmt is OutputFormat.TEXT and console.is_terminal:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(rollout_id, total=None)
            while not result_task.done():
                try:
                    p = await handle.query(MigrateAllWorkflow.progress)
                    completed = sum(p.counts.values())
                    total = None if not p.source_exhausted else completed + len(p.in_flight)
                    status = p.status.value
                    if p.waves:
                        current = next(w for w in p.waves if w.name == p.wave)
                        status += f"; wave {p.wave} {wave_status(current, rollout_id)}"
                    bar.update(task, completed=completed, total=total, description=f"{rollout_id} [{status}]")
                except RPCError:
                    pass
                await asyncio.wait({result_task}, timeout=_POLL_S)
    while not result_task.done():
        # Wait beside the result's long poll, as the other paths do: Ctrl-C cancels this task at once.
        await asyncio.wait({result_task}, timeout=_POLL_S)
    return result_task.result(), set()
