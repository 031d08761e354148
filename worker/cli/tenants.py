"""``fleetway list-tenants``: the tenants a rollout would target, as a worker's source lists them.

By default a worker answers (its source is the one rollouts use; its answer is bounded in bytes,
the total says how many more); ``--local`` walks this CLI's own source, retried as a rollout
retries it (a 5xx or a 429 is asked again, its Retry-After honoured).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from fleetway.activities.errors import TenantSourceError
from fleetway.activities.tenants.walk import TenantListing, list_all_tenants
from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.output import OutputFormat
from fleetway.worker.cli.runtime import connect_fleetway, load_settings, run_command, stderr
from fleetway.worker.config.backends import tenant_lister

__all__ = ["list_tenants"]

_LOCAL_LIST_RETRY_S = 300  # how long ``list-tenants --local`` rides out an unavailable source


async def _from_worker() -> TenantListing:
    fleet = await (await connect_fleetway()).workers(list_tenants=True)
    stderr.print(f"tenant source {fleet.worker.tenant_source} (worker {fleet.worker.identity})", markup=False)
    if fleet.error:
        raise TenantSourceError(f"the worker could not list its tenant source: {fleet.error}")
    if fleet.truncated:
        stderr.print(
            f"warning: only the first {len(fleet.tenants)} of {fleet.total} tenants are shown "
            "(one answer's bytes); --local lists them all",
            markup=False,
        )
    return TenantListing(tenant_ids=fleet.tenants, duplicates=fleet.duplicates, pages=fleet.pages)


async def _local() -> TenantListing:
    def retrying(exc: TenantSourceError, wait: float) -> None:
        stderr.print(f"{exc.error_type}: {exc}; asking again in {wait:g}s", markup=False)

    return await list_all_tenants(
        tenant_lister(load_settings()), page_size=500, retry_for_s=_LOCAL_LIST_RETRY_S, on_retry=retrying
    )


def list_tenants(
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
    local: Annotated[
        bool, typer.Option("--local", help="List from this CLI's settings instead of asking a worker.")
    ] = False,
) -> None:
    """Print the tenants a rollout would target: a worker's tenant source, every page."""

    async def go() -> ExitCode:
        listing = await (_local() if local else _from_worker())
        if listing.duplicates:
            shown = ", ".join(sorted(set(listing.duplicates))[:20])
            stderr.print(
                f"warning: the source returned duplicate tenant ids (listed once): {shown}", markup=False
            )
        if output is OutputFormat.TEXT:
            print("\n".join(listing.tenant_ids))
        else:
            data = {"tenants": listing.tenant_ids, "duplicates": listing.duplicates, "pages": listing.pages}
            print(json.dumps(data))
        return ExitCode.OK

    run_command(go)
