"""A failed Flyway attempt, told to the tenant's child so the Temporal UI shows it while it retries.

The server keeps an activity's attempt and last failure to itself (a local activity's, run in the
child's task, not even there), and workflow code cannot ask. So the activity, as it fails an
attempt that will be tried again, signals its child: one signal per failed attempt, none for a run
that succeeds first time. A worker that dies cannot say it; the child then shows the call as
running, and the server's pending-activity view (task-queue path) still has the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client

from fleetway.activities.wire import WIRE_MODEL

__all__ = ["ATTEMPT_FAILED_SIGNAL", "AttemptFailed", "AttemptReporter"]

_log = logging.getLogger(__name__)

ATTEMPT_FAILED_SIGNAL: Final = "flyway_attempt_failed"
_CHILD_TYPES: Final = frozenset({"TenantMigrationWorkflow", "TenantToolboxWorkflow"})
_SIGNAL_TIMEOUT_S: Final = 5.0
_MESSAGE_MAX: Final = 300


class AttemptFailed(BaseModel):
    """One failed attempt of a tenant's Flyway call: which, and why (the error's class and message).

    The message is the activity error's own, already vetted (no secret reaches it).
    """

    model_config = WIRE_MODEL

    attempt: int = Field(ge=1)
    error_class: str = Field(max_length=64)
    message: str = Field(default="", max_length=_MESSAGE_MAX)


class AttemptReporter:
    """Signals a tenant's child that its Flyway call failed an attempt and will be tried again."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def failed(self, error_class: str, message: str) -> None:
        """Tell the running activity's child (only a tenant's child); never fails the activity."""
        info = activity.info()
        if info.workflow_type not in _CHILD_TYPES or not info.workflow_id:
            return
        notice = AttemptFailed(
            attempt=info.attempt, error_class=error_class[:64], message=message[:_MESSAGE_MAX]
        )
        handle = self._client.get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        with contextlib.suppress(Exception):  # the UI's line is not worth a failed or slower attempt
            await asyncio.wait_for(handle.signal(ATTEMPT_FAILED_SIGNAL, notice), _SIGNAL_TIMEOUT_S)
            return
        _log.warning("could not tell the child of a failed attempt", extra={"workflow_id": info.workflow_id})
