"""Heartbeats while an activity works: how a long call shows it is alive and hears a cancel.

A task-queue activity with a heartbeat timeout must beat within it or be retried elsewhere; its
cancellation arrives only in a heartbeat's reply. A local activity has none (its workflow task
beats): there, nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity

__all__ = ["heartbeating"]


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat at a third of this activity's heartbeat timeout (at most every 2 s) meanwhile.

    The interval follows the timeout the workflow chose: a fixed interval at or above a short
    timeout (2 s is allowed) lets the server time a healthy run out and retry it. Heartbeats
    also carry cancellation to this activity (the Flyway engines turn it into killing Flyway).
    """
    if activity.info().is_local:  # a local activity has no heartbeat: its workflow task beats
        yield
        return
    timeout = activity.info().heartbeat_timeout
    interval = min(2.0, timeout.total_seconds() / 3) if timeout else 2.0

    async def beat() -> None:
        while True:  # the first beat after one interval: most runs end before it (no extra RPC)
            await asyncio.sleep(interval)
            activity.heartbeat()

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
