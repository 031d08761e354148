"""Rendering rollouts for people (rich tables) and pipelines (JSON, NDJSON) — data on stdout only."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Set
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

from fleetway.activities.flyway.output import Action
from fleetway.activities.rollouts import Outcome, TenantOutcome
from fleetway.activities.servers.models import ServerHold
from fleetway.workflows.migrate_all_models import (
    MigrateAllResult,
    Progress,
    WaveProgress,
    WaveState,
)

__all__ = [
    "OutputFormat",
    "hold_line",
    "hold_row",
    "render_progress",
    "render_result",
    "render_server_view",
    "tenant_line",
    "wave_line",
    "wave_status",
]


class OutputFormat(StrEnum):
    """``--output`` values."""

    TEXT = "text"
    JSON = "json"
    NDJSON = "ndjson"


def _versions(o: TenantOutcome, *, dry_run: bool, action: Action) -> str:
    if dry_run and action is Action.VALIDATE:  # repair --dry-run: what repair would change
        fixes = [f"remove failed {v}" for v in o.failed_versions] + [f"realign {v}" for v in o.tampered]
        return f"would {', '.join(fixes)}" if fixes else "nothing to repair"
    if dry_run:
        return f"would apply {', '.join(o.pending)}" if o.pending else "up to date"
    if o.repaired:
        return "; ".join(o.repaired)
    if o.outcome is Outcome.CURRENT:  # proven from the table: no Flyway run
        lag = f", {len(o.pending)} pending" if o.pending else ""
        return f"v{o.version_after or '∅'} (table read{lag})"
    if o.outcome is not Outcome.SUCCEEDED:
        # What a failed or cancelled tenant holds now (the message names what this rollout applied).
        return f"at v{o.version_after}" if o.version_after else ""
    before = o.version_before or "∅"
    repeated = f"; R {', '.join(o.repeatables)} re-applied" if o.repeatables else ""
    if o.applied:
        return f"v{before} → v{o.version_after} ({o.applied} applied){repeated}"
    return f"v{o.version_after or '∅'} ({repeated[2:] if repeated else 'no-op'})"


def wave_status(wave: WaveProgress, rollout_id: str) -> str:
    """What a wave is doing, in words: ``baking until …``, ``awaiting approval (fleetway approve …)``."""
    if wave.state is WaveState.BAKING:
        return f"baking until {wave.bake_until}"
    if wave.state is WaveState.AWAITING_APPROVAL:
        return f"awaiting approval (fleetway approve {rollout_id} | fleetway reject {rollout_id})"
    return wave.state.value.replace("_", " ")


def _wave_row(index: int, wave: WaveProgress, of: int, rollout_id: str) -> str:
    counts = ", ".join(f"{k.value}={v}" for k, v in sorted(wave.counts.items())) or "none finished"
    decided = f"; decided by {wave.decided_by}" if wave.decided_by else ""
    return (
        f"  wave {index}/{of} {wave.name} [{wave.selection}]: {wave_status(wave, rollout_id)}; "
        f"{wave.dispatched}/{wave.planned} dispatched; {counts}{decided}"
    )


def wave_line(rollout_id: str, index: int, of: int, wave: WaveProgress) -> str:
    """One wave's NDJSON line (``wave``): emitted by the live feed whenever a wave changes state."""
    return json.dumps(
        {"event": "wave", "rollout_id": rollout_id, "index": index, "of": of, **wave.model_dump(mode="json")}
    )


def hold_row(hold: ServerHold) -> str:
    """A parked or held server, in words (``status``, the result)."""
    return f"  server {hold.server} {hold.kind.value} since {hold.since} ({hold.why}); {hold.queued} waiting"


def hold_line(rollout_id: str, hold: ServerHold, *, ended: bool) -> str:
    """A server hold's NDJSON line (``server``): when it starts, and when it ends (``ended``)."""
    return json.dumps(
        {"event": "server", "rollout_id": rollout_id, "ended": ended, **hold.model_dump(mode="json")}
    )


def tenant_line(outcome: TenantOutcome) -> str:
    """One tenant's NDJSON line (``tenant_complete``), as the live feed and the final result print it."""
    return json.dumps({"event": "tenant_complete", **outcome.model_dump(mode="json")})


def render_result(
    result: MigrateAllResult, fmt: OutputFormat, *, dry_run: bool = False, streamed: Set[str] = frozenset()
) -> None:
    """Print the final result: a table, one JSON document, or one line per tenant plus a summary.

    ``streamed``: tenants whose NDJSON lines the live feed printed already (not printed again).
    """
    if fmt is OutputFormat.JSON:
        print(result.model_dump_json(indent=2))
    elif fmt is OutputFormat.NDJSON:
        for o in result.outcomes:
            if o.tenant_id not in streamed:
                print(tenant_line(o))
        print(json.dumps(_summary(result)))
    else:
        _render_text(result, dry_run=dry_run)


def _summary(result: MigrateAllResult) -> dict[str, object]:
    """The NDJSON stream's last line."""
    summary: dict[str, object] = {
        "event": "summary",
        "rollout_id": result.rollout_id,
        "action": result.action.value,
        "status": result.status.value,
        "total": result.total,
        "counts": {k.value: v for k, v in result.counts.items()},
        "truncated": result.truncated,
        "failed_overflow": result.failed_overflow,
        "failed_lost": result.failed_lost,
        "warnings": result.warnings,
        "migration_set": result.migration_set,
        "servers": [h.model_dump(mode="json") for h in result.servers],
        "flyway": result.flyway.model_dump(mode="json", exclude_defaults=True),
    }
    if result.where or result.applied_in:
        summary |= {"where": result.where, "applied_in": result.applied_in, "excluded": result.excluded}
        summary["unreadable"] = result.unreadable
    if result.waves:
        summary["waves"] = [w.model_dump(mode="json") for w in result.waves]
        summary["halted_wave"] = result.halted_wave
        summary["unplanned"] = result.unplanned
    return summary


def _outcomes_table(result: MigrateAllResult, *, dry_run: bool) -> Table:
    table = Table(title=f"{result.action.value} {result.rollout_id}: {result.status.value}")
    order = {w.name: i for i, w in enumerate(result.waves)}
    servers = len({o.server for o in result.outcomes}) > 1  # a column only where it tells apart
    for column in (
        ("wave",) * bool(result.waves)
        + ("tenant",)
        + ("server",) * servers
        + (
            "outcome",
            "schema",
            "duration",
            "error",
        )
    ):
        table.add_column(column)
    for o in sorted(result.outcomes, key=lambda o: (order.get(o.wave, 0), o.tenant_id)):
        error = (
            f"{o.error_class}: {o.message}"
            if o.error_class
            else ("" if o.outcome in {Outcome.SUCCEEDED, Outcome.CURRENT} else o.message)
        )
        cells = (
            o.tenant_id,
            *((o.server or "?",) if servers else ()),
            o.outcome.value,
            _versions(o, dry_run=dry_run, action=result.action),
            f"{o.duration_ms / 1000:.2f}s",
            error,
        )
        table.add_row(*((o.wave,) if result.waves else ()), *cells)
    return table


def _print_waves(result: MigrateAllResult, *, dry_run: bool) -> None:
    print("wave plan:" if dry_run else "waves:")
    for i, wave in enumerate(result.waves, start=1):
        print(_wave_row(i, wave, len(result.waves), result.rollout_id))
    if result.halted_wave:
        print(f"halted at wave {result.halted_wave!r}; later waves were not started")
    if result.unplanned:
        print(f"{result.unplanned} listed tenants are in no wave (not run)")


def _render_text(result: MigrateAllResult, *, dry_run: bool) -> None:
    console = Console(no_color=None, highlight=False)
    console.print(_outcomes_table(result, dry_run=dry_run))
    if result.waves:
        _print_waves(result, dry_run=dry_run)
    if result.servers:
        print("servers not released at the end:")
    for hold in result.servers:
        print(hold_row(hold))
    counts = ", ".join(f"{k.value}={v}" for k, v in sorted(result.counts.items()))
    console.print(
        f"{result.total} tenants: {counts or 'none'}" + (" (outcomes truncated)" if result.truncated else "")
    )
    if current := result.counts.get(Outcome.CURRENT):
        console.print(f"{current} proven current from flyway_schema_history (no Flyway run)")
    if result.where or result.applied_in:
        chose = " and ".join(
            part for part in (f"where {result.where}" if result.where else "", _applied(result)) if part
        )
        unread = f" ({result.unreadable} unreadable)" if result.unreadable else ""
        console.print(f"selected {chose}: {result.excluded} listed tenants left out{unread}")
    if result.migration_set:
        console.print(f"migration set {result.migration_set}")
    if described := result.flyway.describe():
        console.print(f"flyway options: {described}")
    said = [o for o in sorted(result.outcomes, key=lambda o: o.tenant_id) if o.db_message]
    for o in said[:_DB_MESSAGES_SHOWN]:  # whole lines: a table cell wraps or cuts them
        print(f"{o.tenant_id} V{o.failed_at or '?'}: {o.db_message}")
    if result.failed_overflow or result.failed_lost:
        shown = ", ".join(result.failed_overflow[:20]) + (" …" if len(result.failed_overflow) > 20 else "")
        console.print(
            f"{len(result.failed_overflow) + result.failed_lost} more failed tenants not shown in detail"
            + (f": {shown}" if shown else "")
            + (" (ids: --output json)" if len(result.failed_overflow) > 20 else "")
        )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)


_DB_MESSAGES_SHOWN = 20


def _applied(result: MigrateAllResult) -> str:
    return f"applied in {result.applied_in}" if result.applied_in else ""


def render_server_view(
    rollout_id: str, state: str, memo: Mapping[str, Any], fmt: OutputFormat, *, reason: str = ""
) -> None:
    """What the server alone knows of a rollout (its state and memo), when no worker can answer."""
    if fmt is not OutputFormat.TEXT:
        document = {"event": "server_view", "rollout_id": rollout_id, "status": state, "memo": dict(memo)}
        print(json.dumps(document | ({"progress_unavailable": reason} if reason else {}), default=str))
        return
    counts = memo.get("counts")
    shown = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) if isinstance(counts, dict) else ""
    line = f"{rollout_id}: {state}" + (f"; {shown}" if shown else "")
    if memo.get("migration_set"):
        line += f"; set {memo['migration_set']}"
    wave = memo.get("wave")
    if isinstance(wave, dict) and state == "running":
        line += f"; wave {wave.get('index')}/{wave.get('of')} {wave.get('name')} {wave.get('state')}"
        if wave.get("bake_until"):
            line += f" until {wave['bake_until']}"
    print(line + (f" (progress unavailable: {reason})" if reason else ""))


def render_progress(progress: Progress, fmt: OutputFormat, rollout_id: str) -> None:
    """Print a progress snapshot (``fleetway status`` of a running rollout)."""
    if fmt is not OutputFormat.TEXT:
        print(json.dumps({"event": "progress", "rollout_id": rollout_id, **progress.model_dump(mode="json")}))
        return
    counts = ", ".join(f"{k.value}={v}" for k, v in sorted(progress.counts.items())) or "none completed"
    print(
        f"{rollout_id}: {progress.status.value}"
        + (f" ({progress.phase.replace('_', ' ')})" if progress.phase else "")
        + f"; dispatched {progress.dispatched}; {counts}; "
        f"in flight {len(progress.in_flight)}; parallelism {progress.parallelism}"
        + (f"; set {progress.migration_set}" if progress.migration_set else "")
    )
    for i, wave in enumerate(progress.waves, start=1):
        print(_wave_row(i, wave, len(progress.waves), rollout_id))
    for hold in progress.servers:
        print(hold_row(hold))
    for o in progress.failed:
        print(f"  - {o.tenant_id}: {o.outcome.value} {o.error_class} {o.message}".rstrip())
