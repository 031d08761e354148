"""How models on Temporal's wire treat fields they do not know: two rules, named once.

A rolling deploy runs two worker builds on one task queue: an old worker reads what a new one
wrote (an activity result, a child's input, a continue-as-new carry). Those models ignore a field
they do not know, so a new field never fails a rollout. What a person or a pipeline sends (a
rollout's start input, an approval) is strict: a misspelt field is refused by name, not ignored.
Fields are only ever added, with defaults (see docs/decisions.md), so ignoring is safe.
"""

from __future__ import annotations

import typing
from typing import Any, Final

from pydantic import ConfigDict

__all__ = ["CLIENT_INPUT", "WIRE_MODEL", "sent_by_a_client"]

WIRE_MODEL: Final = ConfigDict(frozen=True, extra="ignore")
"""Written by one worker build and read by another: unknown fields are ignored."""

CLIENT_INPUT: Final = ConfigDict(frozen=True, extra="forbid")
"""Sent by a client (CLI, pipeline, UI): unknown fields are refused with a named error."""


def sent_by_a_client(hint: Any, data: Any) -> bool:
    """Whether ``data``, decoded as ``hint``, is a client's input rather than another worker's payload.

    A model sent by clients says so with a ``from_client(data)`` classmethod (a rollout's input is
    a client's unless it carries continue-as-new state). A client's bad input fails its workflow at
    once with a named error; a worker's payload this build cannot read fails only the task, which
    Temporal retries until a worker that understands it takes it.
    """
    for candidate in (hint, *typing.get_args(hint)):
        check = getattr(candidate, "from_client", None)
        if callable(check) and check(data):
            return True
    return False
