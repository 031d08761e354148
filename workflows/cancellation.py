"""How a cancel looks inside workflow code, in one place.

A workflow cancelled while it awaits an activity or a child does not see ``asyncio.CancelledError``:
the SDK hands it an ``ActivityError`` (or ``ChildWorkflowError``) whose cause is Temporal's
``CancelledError``. Code that catches those errors to report a failure must let a cancel through,
or the cancel is lost and the workflow goes on (or ends ``failed`` instead of ``CANCELED``).
"""

from __future__ import annotations

import asyncio

from temporalio.exceptions import is_cancelled_exception

__all__ = ["reraise_cancel"]


def reraise_cancel(err: BaseException) -> None:
    """Raise ``asyncio.CancelledError`` when ``err`` is Temporal's form of a cancel; else return.

    Call it first in every ``except ActivityError``/``ChildWorkflowError``/``FailureError`` block.
    """
    if is_cancelled_exception(err):
        raise asyncio.CancelledError from None
