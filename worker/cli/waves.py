"""``fleetway approve`` / ``fleetway reject``: an operator's decision at a ring rollout's gate.

Each sends the workflow's ``approve``/``reject`` update and prints the wave it decided. The
workflow refuses a decision with nothing waiting, or naming another wave than the waiting one
(``--wave``, for an operator acting on a stale screen): that refusal records nothing and comes
back as one ``approval_not_pending`` line.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

import typer
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from fleetway.activities.errors import ApprovalNotPendingError, WorkerUnavailableError
from fleetway.worker.cli.output import ExitCode, OutputFormat
from fleetway.worker.cli.runtime import connect_client, run_command, running_rollout, stderr
from fleetway.worker.config.client import has_pollers
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllResult, WaveDecision, WaveProgress, WaveState

__all__ = ["approve", "reject"]

_UPDATE_TIMEOUT = timedelta(seconds=30)
_WAIT_POLL_S = 0.5


async def _wait_for_a_gate(handle: WorkflowHandle[Any, MigrateAllResult], verb: str, wait_s: float) -> None:
    """Poll until a wave waits for a decision (``reject`` also acts on a bake); bounded by ``wait_s``.

    Raises:
        ApprovalNotPendingError: none did within ``wait_s``, or the rollout ended meanwhile.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    acting = {WaveState.AWAITING_APPROVAL} | ({WaveState.BAKING} if verb == "reject" else set())
    while True:
        progress = await handle.query(MigrateAllWorkflow.progress, rpc_timeout=_UPDATE_TIMEOUT)
        if progress.status.value not in ("running", "paused"):
            raise ApprovalNotPendingError(f"the rollout ended ({progress.status.value}) before a wave waited")
        if any(w.state in acting for w in progress.waves):
            return
        if not progress.waves:
            raise ApprovalNotPendingError("this rollout has no waves, so no gate to decide")
        if loop.time() > deadline:
            raise ApprovalNotPendingError(f"no wave waited for a decision within {wait_s:g}s")
        await asyncio.sleep(_WAIT_POLL_S)


async def _decide(rollout: str, verb: str, decision: WaveDecision, wait_s: float) -> WaveProgress:
    client, _ = await connect_client()
    described = await running_rollout(client, rollout, verb)
    if not await has_pollers(client, described.task_queue):  # an update waits for a worker's answer
        raise WorkerUnavailableError(
            f"no worker polls task queue {described.task_queue!r}; {verb} needs one to answer"
        )
    handle = client.get_workflow_handle(rollout, result_type=MigrateAllResult)
    if wait_s > 0:
        await _wait_for_a_gate(handle, verb, wait_s)
    update = MigrateAllWorkflow.approve if verb == "approve" else MigrateAllWorkflow.reject
    try:
        return await handle.execute_update(update, decision, rpc_timeout=_UPDATE_TIMEOUT)
    except WorkflowUpdateFailedError as exc:
        message = str(exc.cause) if exc.cause is not None else str(exc)
        raise ApprovalNotPendingError(message.removeprefix("approval_not_pending: ")) from None


def _command(verb: str, doc: str) -> Callable[..., None]:
    def command(  # noqa: PLR0917 - typer maps each option to a parameter
        rollout: str,
        wave: Annotated[
            str, typer.Option(help="The wave you mean; refused unless it is the one waiting.")
        ] = "",
        principal: Annotated[
            str, typer.Option(envvar="FLEETWAY_PRINCIPAL", help="Who decides (audited).")
        ] = "",
        reason: Annotated[str, typer.Option(help="Why (audited).")] = "",
        wait: Annotated[
            float,
            typer.Option(
                "--wait",
                min=0,
                help="Wait up to this many seconds for a wave to reach its gate (a pipeline step).",
            ),
        ] = 0,
        output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
    ) -> None:
        async def go() -> ExitCode:
            decision = WaveDecision(principal=principal, wave=wave, reason=reason)
            if not principal:
                stderr.print(f"warning: no --principal; the audit trail says <unspecified> {verb}d")
            decided = await _decide(rollout, verb, decision, wait)
            if output is OutputFormat.TEXT:
                print(f"{verb}d wave {decided.name!r} of {rollout} ({decided.planned} tenants)")
            else:
                print(
                    json.dumps(
                        {"event": f"wave_{verb}d", "rollout_id": rollout, **decided.model_dump(mode="json")}
                    )
                )
            return ExitCode.OK

        run_command(go)

    command.__doc__ = doc
    return command


approve = _command(
    "approve", "Open the wave waiting at its approval gate (a ring rollout); audited with --principal."
)
reject = _command(
    "reject",
    "Refuse the wave waiting at its gate (or the next one, during a bake): the rollout ends halted.",
)
