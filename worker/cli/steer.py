"""``fleetway status|pause|resume|set-parallelism|cancel``: read and steer one rollout.

Each is a few lines over the library's :class:`Rollout`; what this module adds is what a terminal
needs: the server's own view when no worker answers a query, and a note when a signal is only
recorded because no worker polls yet.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import typer
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from fleetway.worker.cli.exit_codes import ExitCode, exit_code_for
from fleetway.worker.cli.follow import follow_rollout
from fleetway.worker.cli.output import OutputFormat, render_progress, render_result, render_server_view
from fleetway.worker.cli.runtime import connect_fleetway, run_command, stderr
from fleetway.worker.client.lookup import describe_rollout
from fleetway.worker.config.client import has_pollers

__all__ = ["cancel", "pause", "resume", "set_parallelism", "status"]

_QUERY_TIMEOUT = timedelta(seconds=10)
_CANCEL_WAIT = timedelta(seconds=120)


def status(
    rollout: str,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Follow a running rollout to its end (as an attached migrate does); exit by outcome.",
        ),
    ] = False,
) -> None:
    """Show a rollout's progress, or its result once it has ended.

    A running rollout's progress is a query, which a worker answers: with no worker polling (or
    none answering within 10 s) the server's own view is shown instead, saying why. With
    ``--follow`` (a pipeline that started the rollout ``--detach``ed) it waits for the result.
    """

    async def go() -> ExitCode:
        client = await connect_fleetway()
        handle = client.rollout(rollout)
        described = await describe_rollout(client.temporal, rollout)
        if follow and described.status is WorkflowExecutionStatus.RUNNING:
            result, streamed = await follow_rollout(handle, output, stderr)
            render_result(result, output, streamed=streamed)
            return exit_code_for(result.status)
        if described.status is WorkflowExecutionStatus.COMPLETED:
            result = await handle.result()
            render_result(result, output)
            return exit_code_for(result.status)
        if described.status is WorkflowExecutionStatus.RUNNING:
            reason = ""
            if not await has_pollers(client.temporal, described.task_queue):
                reason = f"no worker polls task queue {described.task_queue!r}"
            else:
                try:
                    progress = await handle.progress(_QUERY_TIMEOUT)
                except RPCError as exc:
                    reason = (
                        f"no worker answered within {_QUERY_TIMEOUT.seconds}s ({exc.status.name.lower()})"
                    )
                else:
                    render_progress(progress, output, rollout)
                    return exit_code_for(progress.status)
            render_server_view(rollout, "running", await described.memo(), output, reason=reason)
            return ExitCode.OK
        state = described.status.name.lower() if described.status else "unknown"
        render_server_view(rollout, state, await described.memo(), output)
        return ExitCode.FAILED

    run_command(go)


def _signal_command(name: str, doc: str) -> Callable[[str], None]:
    def command(rollout: str) -> None:
        async def go() -> ExitCode:
            client = await connect_fleetway()
            handle = client.rollout(rollout)
            polled = await (handle.pause() if name == "pause" else handle.resume())
            stderr.print(f"{name} sent to {rollout}")
            if not polled:
                queue = (await describe_rollout(client.temporal, rollout)).task_queue
                stderr.print(
                    f"no worker polls task queue {queue!r}; the {name} is recorded and takes effect "
                    "when one does"
                )
            return ExitCode.OK

        run_command(go)

    command.__doc__ = doc
    return command


pause = _signal_command("pause", "Hold a rollout's dispatching (in-flight tenants finish).")
resume = _signal_command("resume", "Lift a pause.")


def set_parallelism(rollout: str, parallelism: Annotated[int, typer.Argument(min=1, max=256)]) -> None:
    """Change a running rollout's window size."""

    async def go() -> ExitCode:
        previous = await (await connect_fleetway()).rollout(rollout).set_parallelism(parallelism)
        stderr.print(f"parallelism {previous} -> {parallelism}")
        return ExitCode.OK

    run_command(go)


def cancel(rollout: str, wait: Annotated[bool, typer.Option(help="Wait until it has ended.")] = True) -> None:
    """Cancel a rollout: stop dispatching, cancel every in-flight tenant (its Flyway run is stopped)."""

    async def go() -> ExitCode:
        client = await connect_fleetway()
        queue = (await describe_rollout(client.temporal, rollout)).task_queue
        polled = await has_pollers(client.temporal, queue)
        if wait and polled:
            stderr.print(f"cancel requested; waiting for {rollout}'s in-flight tenants to stop")
        ended = await client.rollout(rollout).cancel(wait=_CANCEL_WAIT if wait and polled else None)
        if not polled:
            stderr.print(
                f"no worker polls task queue {queue!r}; the cancel is recorded and takes effect when one does"
            )
        elif ended is WorkflowExecutionStatus.RUNNING and wait:
            stderr.print(
                f"{rollout} is still stopping after {_CANCEL_WAIT.seconds}s; the cancel stands "
                f"(fleetway status {rollout})"
            )
        else:
            stderr.print(f"{rollout} cancelled")
        return ExitCode.OK

    run_command(go)
