"""Finding a rollout on the server, and refusing a start or an action that would mislead.

Every refusal is named and happens before anything is started or sent: a reused id (it would
answer for the earlier rollout), a rerun of a rollout whose failures are not final yet, an action
on a rollout that has ended.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from fleetway.activities.errors import (
    InvalidInputError,
    RolloutIdReusedError,
    RolloutNotFoundError,
    RolloutNotRunningError,
)

__all__ = ["describe_rollout", "refuse_rerun_of_running", "refuse_reused_rollout_id", "running_rollout"]


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
    """Refuse a rerun of a rollout still running ("": no rerun asked): its list is not final.

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
    """The description of a running rollout.

    Raises:
        RolloutNotFoundError: no such rollout.
        RolloutNotRunningError: it has ended (``verb`` acts on running rollouts only).
    """
    described = await describe_rollout(client, rollout)
    if described.status is not WorkflowExecutionStatus.RUNNING:
        state = described.status.name.lower() if described.status else "unknown"
        raise RolloutNotRunningError(
            f"rollout {rollout!r} has ended ({state}); {verb} acts on running rollouts only"
        )
    return described
