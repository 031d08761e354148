"""Following a running rollout from the CLI: a live progress bar, or a live NDJSON feed.

The feed is the library's (``Rollout.events``: each tenant once, as it finishes, waves and server
holds as they change); this module only renders it: one ``tenant_complete``, ``wave``, ``server``
or ``gap`` line per event. On a terminal without ``-o ndjson`` a bar shows the progress query.
"""

from __future__ import annotations

import asyncio
import json

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.service import RPCError

from fleetway.worker.cli.output import OutputFormat, hold_line, tenant_line, wave_line, wave_status
from fleetway.worker.client.events import FeedGap, RolloutEvent, ServerHeld, TenantFinished, WaveChanged
from fleetway.worker.client.rollout import Rollout
from fleetway.workflows.migrate_all_models import MigrateAllResult

__all__ = ["event_line", "follow_rollout"]

_POLL_S = 0.5


def event_line(rollout_id: str, event: RolloutEvent) -> str:
    """One NDJSON line for one event of the feed."""
    if isinstance(event, TenantFinished):
        return tenant_line(event.outcome)
    if isinstance(event, WaveChanged):
        return wave_line(rollout_id, event.index, event.of, event.wave)
    if isinstance(event, ServerHeld):
        return hold_line(rollout_id, event.hold, ended=event.released)
    assert isinstance(event, FeedGap)  # noqa: S101 - the union's last member
    return json.dumps({"event": "gap", "missed": event.missed})


async def follow_rollout(
    rollout: Rollout, fmt: OutputFormat, console: Console
) -> tuple[MigrateAllResult, set[str]]:
    """Wait for the rollout's result; meanwhile a bar (text on a terminal) or the NDJSON feed.

    Returns the result and the tenants whose lines the feed printed already.
    """
    if fmt is OutputFormat.NDJSON:
        printed: set[str] = set()
        async for event in rollout.events(_POLL_S):
            print(event_line(rollout.id, event), flush=True)
            if isinstance(event, TenantFinished):
                printed.add(event.outcome.tenant_id)
        return await rollout.result(), printed
    result_task: asyncio.Future[MigrateAllResult] = asyncio.ensure_future(rollout.result())
    if fmt is OutputFormat.TEXT and console.is_terminal:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(rollout.id, total=None)
            while not result_task.done():
                try:
                    p = await rollout.progress()
                    completed = sum(p.counts.values())
                    total = None if not p.source_exhausted else completed + len(p.in_flight)
                    status = p.status.value
                    if p.waves:
                        current = next(w for w in p.waves if w.name == p.wave)
                        status += f"; wave {p.wave} {wave_status(current, rollout.id)}"
                    bar.update(task, completed=completed, total=total, description=f"{rollout.id} [{status}]")
                except RPCError:
                    pass
                await asyncio.wait({result_task}, timeout=_POLL_S)
    while not result_task.done():
        # Wait beside the result's long poll, as the other paths do: Ctrl-C cancels this task at once.
        await asyncio.wait({result_task}, timeout=_POLL_S)
    return result_task.result(), set()
