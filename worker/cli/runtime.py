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
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from fleetway.activities.errors import (
    FleetwayError,
    from_validation_error,
)
from fleetway.worker.cli.exit_codes import ExitCode, exit_code_for_error
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.client import connect
from fleetway.worker.config.settings import Settings, load_settings
from fleetway.worker.config.telemetry import configure_telemetry

__all__ = ["CommandExit", "connect_client", "connect_fleetway", "load_settings", "run_command", "stderr"]

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class CommandExit(Exception):
    """Raised inside a command to end it with ``code`` (no message printed)."""

    def __init__(self, code: ExitCode) -> None:
        self.code = code


async def _as_coroutine(coro_fn: Callable[[], Awaitable[ExitCode]]) -> ExitCode:
    return await coro_fn()


def run_command(coro_fn: Callable[[], Awaitable[ExitCode]], *, service: str = "fleetway-cli") -> None:
    """Run one command; map fleetway errors to one line and their family's exit code, then hard-exit.

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
        code = exit_code_for_error(exc)
    except ValidationError as exc:
        named = from_validation_error(exc)
        stderr.print(f"{named.error_type}: {named}", markup=False)
        code = exit_code_for_error(named)
    except RPCError as exc:
        stderr.print(_rpc_line(exc), markup=False)
        code = _rpc_exit(exc)
    except CommandExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        # Ctrl-C ends this process only: server-side work (a rollout, a provisioning) runs on.
        code = ExitCode.INTERRUPTED
    shutdown_telemetry()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))


def _rpc_exit(exc: RPCError) -> ExitCode:
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return ExitCode.UNAVAILABLE
    if exc.status is RPCStatusCode.NOT_FOUND:
        return ExitCode.NOT_FOUND
    return ExitCode.FAILED


def _rpc_line(exc: RPCError) -> str:
    """One named line for a Temporal RPC failure the command did not handle itself."""
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return f"temporal_unavailable: the Temporal server stopped answering ({exc.message})"
    return f"temporal_error: {exc.status.name.lower()}: {exc.message}"


async def connect_fleetway() -> FleetwayClient:
    """The library's client, from this process's settings."""
    return await FleetwayClient.connect(load_settings())


async def connect_client() -> tuple[Client, Settings]:
    """Settings and a Temporal client built from them."""
    settings = load_settings()
    return await connect(settings.effective_temporal()), settings
