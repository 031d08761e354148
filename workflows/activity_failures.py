"""How an activity's failure looks inside workflow code: a cancel to let through, a reason to report.

A workflow cancelled while it awaits an activity or a child does not see ``asyncio.CancelledError``:
the SDK hands it an ``ActivityError`` (or ``ChildWorkflowError``) whose cause is Temporal's
``CancelledError``. Code that catches those errors to report a failure must let a cancel through,
or the cancel is lost and the workflow goes on (or ends ``failed`` instead of ``CANCELED``). What
it reports is the published type and vetted message of the last attempt's failure.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    RetryState,
    is_cancelled_exception,
)
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from fleetway.workflows.migrate_all_models import MigrateAllInput

__all__ = ["any_failure_reason", "by_time", "failure_reason", "failure_type", "reraise_cancel"]


def by_time(request: MigrateAllInput, start_to_close: timedelta) -> dict[str, Any]:
    """Retry options for a call to another service (tenant source, set store, Temporal): by time.

    A control-plane blip must not fail a rollout that ran for hours: unlimited attempts, backoff up
    to 30 s, for the rollout's retry budget (5 minutes when it is 0); a non-retryable error still
    fails at once.
    """
    budget = timedelta(seconds=request.retry_budget_s or 300)
    return {
        "start_to_close_timeout": min(start_to_close, budget),
        "schedule_to_close_timeout": budget,
        "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=0),
    }


def reraise_cancel(err: BaseException) -> None:
    """Raise ``asyncio.CancelledError`` when ``err`` is Temporal's form of a cancel; else return.

    Call it first in every ``except ActivityError``/``ChildWorkflowError``/``FailureError`` block.
    """
    if is_cancelled_exception(err):
        raise asyncio.CancelledError from None


def any_failure_reason(err: FailureError) -> str:
    """:func:`failure_reason` for a failure that may be a local activity's (those come unwrapped)."""
    if isinstance(err, ActivityError):
        return failure_reason(err)
    if isinstance(err, ApplicationError):
        return f"{err.type}: {err.message}"
    return f"activity failed ({type(err).__name__})"


def failure_type(err: ActivityError) -> str:
    """The last attempt's ``error_type`` ("" when it was no ``ApplicationError``)."""
    cause = err.cause
    if isinstance(cause, ActivityTimeoutError) and isinstance(cause.cause, ApplicationError):
        cause = cause.cause
    return str(cause.type or "") if isinstance(cause, ApplicationError) else ""


def failure_reason(err: ActivityError) -> str:
    """``<error type>: <message>`` of the last attempt, and whether the retry budget ran out.

    Out of time mid-attempt, the server keeps the last attempt's failure as the timeout's cause.
    """
    cause = err.cause
    if isinstance(cause, ActivityTimeoutError) and isinstance(cause.cause, ApplicationError):
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        reason = f"{cause.type}: {cause.message}"
    else:
        reason = f"activity failed ({type(cause).__name__})"
    return reason + ("; retry budget spent" if err.retry_state is RetryState.TIMEOUT else "")
