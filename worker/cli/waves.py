"""``fleetway approve`` / ``fleetway reject``: an operator's decision at a ring rollout's gate.

Each sends the workflow's ``approve``/``reject`` update through the library (``Rollout.approve``)
and prints the wave it decided. The workflow refuses a decision with nothing waiting, or naming
another wave than the waiting one (``--wave``, for an operator acting on a stale screen): that
refusal records nothing and comes back as one ``approval_not_pending`` line (exit 5).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import typer

from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.output import OutputFormat
from fleetway.worker.cli.runtime import connect_fleetway, run_command, stderr
from fleetway.workflows.migrate_all_models import WaveDecision

__all__ = ["approve", "reject"]


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
            handle = (await connect_fleetway()).rollout(rollout)
            decide = handle.approve if verb == "approve" else handle.reject
            decided = await decide(decision, wait=timedelta(seconds=wait) if wait else None)
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
