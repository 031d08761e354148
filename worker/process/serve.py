"""Keep a worker serving through a Temporal outage: a fatal poll error rebuilds it, a stop ends it.

The SDK retries most poll errors by itself, but some end the worker: one did while a killed
Temporal server restarted, and a namespace that does not exist yet does at start. A worker process
that then exits leaves every rollout on its task queue waiting for a supervisor; rebuilding the
worker in place keeps the warm JVM and the rollouts moving. Only a worker that keeps failing gives up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from temporalio.client import Client
from temporalio.service import ServiceClient
from temporalio.worker import Worker

from fleetway.activities.errors import WorkerFailedError

__all__ = ["serve", "serving"]

_log = logging.getLogger(__name__)


def _causes(err: BaseException) -> str:
    """The error and its causes in one line (the SDK wraps a poll error in a bare RuntimeError)."""
    said, seen = [], set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        said.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " <- ".join(said)[:1000]


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait for the event up to ``seconds``; True when it was set."""
    with suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
    return event.is_set()


async def _rebuilt(worker: Worker) -> Worker:
    """A worker of the same config on a new connection.

    Not on the old one: a worker that failed before it started (its namespace unanswered) stays
    registered with its client, and the SDK refuses a second worker for the same task queue there.
    """
    config = worker.config()
    client = config["client"]
    connection = client.config()
    connection["service_client"] = await ServiceClient.connect(client.service_client.config)
    config["client"] = Client(**connection)
    return Worker(**config)


async def serve(
    worker: Worker,
    stop: asyncio.Event,
    *,
    give_up_after: int = 10,
    healthy_s: float = 60.0,
    max_delay_s: float = 30.0,
) -> None:
    """Run ``worker`` until ``stop`` is set; when it fails, run a new one of the same config.

    The new worker shares the first one's activity instances (the warm JVM, the secrets clients)
    and opens only a new Temporal connection. A worker that ran ``healthy_s`` before failing starts
    the count again; ``give_up_after`` failures in a row (with waits of 1, 2, 4 … ``max_delay_s``
    seconds between them) raise.

    Raises:
        WorkerFailedError: the worker failed ``give_up_after`` times in a row.
    """
    loop = asyncio.get_running_loop()
    failures, delay = 0, 1.0
    current: Worker | None = worker
    while True:
        started = loop.time()
        try:
            current = current or await _rebuilt(worker)
        except RuntimeError as failed:  # no connection yet: the server is still away
            err: BaseException | None = failed
        else:
            err = await _run(current, stop)
        if err is None:
            return
        current = None
        if loop.time() - started >= healthy_s:
            failures, delay = 0, 1.0
        failures += 1
        if failures >= give_up_after:
            raise WorkerFailedError(
                f"the worker failed {failures} times in a row; last: {_causes(err)}"
            ) from err
        _log.error("worker failed (%s); rebuilding it in %.0fs", _causes(err), delay)
        if await _wait(stop, delay):
            return
        delay = min(delay * 2, max_delay_s)


async def _run(worker: Worker, stop: asyncio.Event) -> BaseException | None:
    """Run the worker until it fails (its error) or ``stop`` is set (None, once it has shut down)."""
    running = asyncio.create_task(worker.run())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        stopping.cancel()
        await worker.shutdown()
        raise
    if stopping.done():
        await worker.shutdown()
        await running  # a failure racing the stop still surfaces
        return None
    stopping.cancel()
    return running.exception() or RuntimeError("the worker stopped by itself")


@asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[None]:
    """``serve`` the worker while the block runs (tests and embedding applications)."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(worker, stop))
    try:
        yield
    finally:
        stop.set()
        await task
