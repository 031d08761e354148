"""What every ``fleetway`` command shares: settings loading, the client, and the run/exit wrapper.

Commands live in ``worker/cli.py`` and ``worker/cli_provision.py``; both run through
:func:`run_command`, which maps fleetway errors to one line and exit code 2, flushes telemetry, and ends
the process with ``os._exit`` (temporalio/sdk-python#300).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from rich.console import Console
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from fleetway.activities.errors import (
    ConfigurationError,
    FleetwayError,
    InvalidInputError,
    RolloutIdReusedError,
    RolloutNotFoundError,
    RolloutNotRunningError,
    from_validation_error,
)
from fleetway.worker.cli.output import ExitCode
from fleetway.worker.config.client import connect
from fleetway.worker.config.settings import Settings
from fleetway.worker.config.telemetry import configure_telemetry

__all__ = [
    "CommandExit",
    "connect_client",
    "describe_rollout",
    "load_settings",
    "refuse_rerun_of_running",
    "refuse_reused_rollout_id",
    "run_command",
    "running_rollout",
    "stderr",
]

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class CommandExit(Exception):
    """Raised inside a command to end it with ``code`` (no message printed)."""

    def __init__(self, code: ExitCode) -> None:
        self.code = code


def load_settings() -> Settings:
    """Settings from env/TOML; invalid ones become a ConfigurationError naming fields, never values."""
    try:
        return Settings()
    except ValidationError as exc:
        fields = ", ".join(sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()}))
        raise ConfigurationError(f"invalid settings: {fields}") from None


async def _as_coroutine(coro_fn: Callable[[], Awaitable[ExitCode]]) -> ExitCode:
    return await coro_fn()


def run_command(coro_fn: Callable[[], Awaitable[ExitCode]], *, service: str = "fleetway-cli") -> None:
    """Run one command; map fleetway errors to one line and exit code 2, then hard-exit.

    Telemetry is flushed before the hard exit (``os._exit`` skips atexit handlers).
    """
    logging.basicConfig(level=os.environ.get("FLEETWAY_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    if service == "fleetway-cli" and "FLEETWAY_LOG_LEVEL" not in os.environ:
        # The core's retry warnings (one per attempt while a server is away) are not the answer:
        # the command ends with one named line instead. FLEETWAY_LOG_LEVEL brings them back.
        logging.getLogger("temporalio.core").setLevel(logging.ERROR)
    shutdown_telemetry = configure_telemetry(service)
    try:
        code: ExitCode = asyncio.run(_as_coroutine(coro_fn))
    except FleetwayError as exc:
        stderr.print(f"{exc.error_type}: {exc}", markup=False)
        code = ExitCode.USAGE
    except ValidationError as exc:
        named = from_validation_error(exc)
        stderr.print(f"{named.error_type}: {named}", markup=False)
        code = ExitCode.USAGE
    except RPCError as exc:
        stderr.print(_rpc_line(exc), markup=False)
        code = ExitCode.USAGE
    except CommandExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        # Ctrl-C ends this process only: server-side work (a rollout, a provisioning) runs on.
        code = ExitCode.INTERRUPTED
    shutdown_telemetry()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))


def _rpc_line(exc: RPCError) -> str:
    """One named line for a Temporal RPC failure the command did not handle itself."""
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return f"temporal_unavailable: the Temporal server stopped answering ({exc.message})"
    return f"temporal_error: {exc.status.name.lower()}: {exc.message}"


async def connect_client() -> tuple[Client, Settings]:
    """Settings and a Temporal client built from them."""
    settings = load_settings()
    return await connect(settings.effective_temporal()), settings


async def describe_rollout(client: Client, rollout: str) -> WorkflowExecutionDescription:
    """The rollout as the server knows it (no worker needed).

    Raises:
        RolloutNotFoundError: no workflow with that id in the namespace.
    """
    try:
        return await client.get_workflow_handle(rollout).describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise RolloutNotFoundError(f"no rollout {rollout!r} in namespace {client.namespace!r}") from None
        raise


async def refuse_rerun_of_running(client: Client, rollout: str) -> None:
    """Refuse ``--rerun-failed`` of a rollout still running ("": no rerun asked): its list is not final.

    Raises:
        InvalidInputError: the rollout is running (nothing is started).
        RolloutNotFoundError: no such rollout.
    """
    if rollout and (await describe_rollout(client, rollout)).status is WorkflowExecutionStatus.RUNNING:
        raise InvalidInputError(
            f"rollout {rollout!r} is still running: its failed tenants are not final; rerun them once "
            "it ends (or cancel it first); nothing started"
        )


async def refuse_reused_rollout_id(client: Client, rollout: str) -> None:
    """Refuse an id that already names a rollout in the namespace, running or ended.

    A reused id would answer for the earlier rollout: its children's ids exist, so every tenant
    would be reported "already run" and the rollout "succeeded" with nothing run.

    Raises:
        RolloutIdReusedError: a workflow with that id exists (named with its run and state).
    """
    try:
        described = await describe_rollout(client, rollout)
    except RolloutNotFoundError:
        return
    state = described.status.name.lower() if described.status else "unknown"
    if described.status is WorkflowExecutionStatus.RUNNING:
        advice = f"follow it (fleetway status {rollout} --follow) or cancel it (fleetway cancel {rollout})"
    else:
        advice = f"choose a new --rollout-id (failed tenants again: --rerun-failed {rollout})"
    raise RolloutIdReusedError(
        f"rollout id {rollout!r} is already used by run {described.run_id} ({state}); {advice}; "
        "nothing was started"
    )


async def running_rollout(client: Client, rollout: str, verb: str) -> WorkflowExecutionDescription:
    """The description of a running rollout; named errors for a missing or ended one."""
    described = await describe_rollout(client, rollout)
    if described.status is not WorkflowExecutionStatus.RUNNING:
        state = described.status.name.lower() if described.status else "unknown"
        raise RolloutNotRunningError(
            f"rollout {rollout!r} has ended ({state}); {verb} acts on running rollouts only"
        )
    return described
