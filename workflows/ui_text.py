"""What the Temporal UI shows of a rollout and of each tenant: summaries and details, bounded in bytes.

The UI lists workflows by id; with these it says what each is at a glance: a rollout's verb, set,
source, waves and principal (its static summary and details, set at start), and as it runs its
phase, wave, counts, holds, the gate it waits at and the bake left (its current details); a
tenant's id, verb and server, and the Flyway call under way or how it ended. Temporal bounds a
summary to 200 bytes and details to 20 KB; every text here is cut to fit, on a character boundary.
Pure (workflow code): built from the request and the rollout's state, never from a clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.rollouts import TenantOutcome
    from fleetway.workflows.migrate_all_models import MigrateAllInput, WaveState

if TYPE_CHECKING:
    from fleetway.workflows.rollout_state import RolloutState

__all__ = [
    "DETAILS_BYTES",
    "SUMMARY_BYTES",
    "fit",
    "rollout_details",
    "rollout_now",
    "rollout_summary",
    "tenant_now",
    "tenant_summary",
]

SUMMARY_BYTES: Final = 200
DETAILS_BYTES: Final = 20_000
_LEFT, _RIGHT = "\u2039", "\u203a"  # what the UI shows for < and >
_LISTED: Final = 20  # waves, holds named in the current details


def fit(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes (an ellipsis marks the cut).

    The UI renders it as Markdown, where ``<unspecified>`` or a database message's ``<...>`` would be
    taken for HTML and vanish: angle brackets are shown as single guillemets (U+2039, U+203A).
    """
    data = text.replace("<", _LEFT).replace(">", _RIGHT).encode()
    if len(data) <= limit:
        return data.decode()
    return data[: limit - 3].decode(errors="ignore") + "…"


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "the worker's set"


def rollout_summary(request: MigrateAllInput) -> str:
    """One line: verb, set, whom, how, who asked (the UI's list shows it beside the id)."""
    if request.tenants:
        whom = f"{len(request.tenants)} named tenants"
    elif request.rerun_failed_of:
        whom = f"the failed of {request.rerun_failed_of}"
    else:
        whom = f"source {request.tenant_source}"
    how = f"{len(request.waves)} waves" if request.waves else f"parallelism {request.parallelism}"
    who = request.audit.principal.strip() or "<unspecified>"
    return fit(
        f"{request.action.value} set {_short(request.migration_set)} · {whom} · {how} · by {who}",
        SUMMARY_BYTES,
    )


def rollout_details(request: MigrateAllInput) -> str:
    """Markdown: the request as an operator reads it (set, source, waves, options, audit context)."""
    lines = [
        f"**{request.action.value}** of migration set `{request.migration_set or 'pinned at start'}`",
        f"- tenants: {rollout_summary(request).split(' · ')[1]}",
        f"- principal: {request.audit.principal or '<unspecified>'}"
        + (f", git {request.audit.git_sha}" if request.audit.git_sha else "")
        + (f", pipeline run {request.audit.pipeline_run_id}" if request.audit.pipeline_run_id else ""),
        f"- parallelism {request.parallelism}, continue on error: {request.continue_on_error}",
    ]
    if described := request.flyway.describe():
        lines.append(f"- flyway: {described}")
    if request.where:
        lines.append(f"- only tenants whose table shows: {request.where}")
    for index, wave in enumerate(request.waves[:_LISTED], start=1):
        extras = [f"bake {wave.bake_s}s" if wave.bake_s else "", "gate" if wave.gate else ""]
        lines.append(
            f"- wave {index} **{wave.name}**: {wave.selection()}" + "".join(f", {e}" for e in extras if e)
        )
    return fit("\n".join(lines), DETAILS_BYTES)


def rollout_now(state: RolloutState) -> str:
    """Markdown: where the rollout stands (phase, wave, counts, holds, the gate or bake it waits at)."""
    if state.phase.value == "done":
        status = state.status().value
    else:
        status = state.stop.value if state.stop else ("paused" if state.paused else "running")
    counts = ", ".join(
        f"{k.value} {v}" for k, v in sorted(state.ledger.counts.items(), key=lambda kv: kv[0].value)
    )
    lines = [
        f"**{status}**, phase {state.phase.value}: {state.ledger.completed} done ({counts or 'none yet'}), "
        f"{len(state.in_flight)} in flight, window {state.window()}",
    ]
    waves = state.waves
    if waves:
        current = waves.current
        lines.append(f"- wave {waves.index + 1}/{len(waves.waves)} **{current.name}**: {current.state.value}")
        if current.state is WaveState.AWAITING_APPROVAL:
            lines.append(f"- waiting for an approval: `fleetway approve {workflow.info().workflow_id}`")
        if current.state is WaveState.BAKING and current.bake_until:
            lines.append(f"- baking until {current.bake_until}")
        for wave in waves.waves[:_LISTED]:
            done = sum(wave.counts.values())
            lines.append(f"  - {wave.name}: {wave.state.value}, {done} of {wave.planned} done")
    holds = state.servers.holds.values() if state.servers is not None else []
    for hold in list(holds)[:_LISTED]:
        lines.append(f"- server {hold.server} {hold.kind.value} since {hold.since}: {hold.why}")
    if state.warnings:
        lines.append(f"- last warning: {state.warnings[-1]}")
    return fit("\n".join(lines), DETAILS_BYTES)


def tenant_summary(tenant_id: str, action: str, server: str = "") -> str:
    """One line: the tenant, the verb and, when known, its database server."""
    return fit(f"{tenant_id} · {action}" + (f" · {server}" if server else ""), SUMMARY_BYTES)


def tenant_now(doing: str, outcome: TenantOutcome | None = None) -> str:
    """Markdown: the Flyway call under way, or how the tenant ended."""
    if outcome is None:
        return fit(doing, DETAILS_BYTES)
    versions = f"{outcome.version_before or '∅'} → {outcome.version_after or '∅'}"
    line = f"**{outcome.outcome.value}**: {versions}"
    if outcome.error_class:
        line += f", {outcome.error_class}"
    if outcome.message:
        line += f"\n\n{outcome.message}"
    return fit(line, DETAILS_BYTES)
