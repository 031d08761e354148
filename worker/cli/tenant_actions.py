"""``fleetway skip-tenant|retry-tenant|tenant-deadline``: one tenant handled alone, the rest run on.

Each sends the rollout's update of the same name through the library (the Temporal UI's "Send
Update" sends the same), audited with ``--principal``. The workflow refuses what cannot be done (a
retry of a tenant that has not failed, a deadline for one not running): the refusal records
nothing and comes back as one ``tenant_action_refused`` line (exit 5).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated

import typer

from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.output import OutputFormat
from fleetway.worker.cli.runtime import connect_fleetway, run_command, stderr
from fleetway.workflows.migrate_all_models import TenantDecision

__all__ = ["retry_tenant", "skip_tenant", "tenant_deadline"]

_Principal = Annotated[str, typer.Option(envvar="FLEETWAY_PRINCIPAL", help="Who acts (audited).")]
_Reason = Annotated[str, typer.Option(help="Why (audited, and shown in the result).")]
_Output = Annotated[OutputFormat, typer.Option("--output", "-o")]


def _send(verb: str, rollout: str, decision: TenantDecision, output: OutputFormat) -> None:
    async def go() -> ExitCode:
        if not decision.principal:
            stderr.print(f"warning: no --principal; the audit trail says <unspecified> for {verb}")
        handle = (await connect_fleetway()).rollout(rollout)
        act = {
            "skip-tenant": handle.skip_tenant,
            "retry-tenant": handle.retry_tenant,
            "tenant-deadline": handle.set_tenant_deadline,
        }[verb]
        said = await act(decision)
        if output is OutputFormat.TEXT:
            print(f"{verb} {decision.tenant} in {rollout}: {said}")
        else:
            print(json.dumps({"event": verb, "rollout_id": rollout, "tenant": decision.tenant, "said": said}))
        return ExitCode.OK

    run_command(go)


def _command(verb: str, doc: str) -> Callable[..., None]:
    def command(
        rollout: str,
        tenant: str,
        principal: _Principal = "",
        reason: _Reason = "",
        output: _Output = OutputFormat.TEXT,
    ) -> None:
        _send(verb, rollout, TenantDecision(tenant=tenant, principal=principal, reason=reason), output)

    command.__doc__ = doc
    return command


skip_tenant = _command(
    "skip-tenant",
    "Skip one tenant for the rest of a rollout (a running one is cancelled); reported skipped.",
)
retry_tenant = _command(
    "retry-tenant",
    "Run one failed tenant again now, first in line; its new outcome replaces the failure.",
)


def tenant_deadline(  # noqa: PLR0917 - typer maps each option to a parameter
    rollout: str,
    tenant: str,
    seconds: Annotated[
        int, typer.Argument(min=1, max=604_800, help="Seconds from now; past them the call is cancelled.")
    ],
    principal: _Principal = "",
    reason: _Reason = "",
    output: _Output = OutputFormat.TEXT,
) -> None:
    """Give one running tenant's Flyway call a new deadline; past it, that tenant alone fails."""
    decision = TenantDecision(tenant=tenant, deadline_s=seconds, principal=principal, reason=reason)
    _send("tenant-deadline", rollout, decision, output)
