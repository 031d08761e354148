"""The MigrateAllWorkflow wire contract: its input, result, progress snapshot and carried state.

Plain JSON on the wire (pydantic), so pipelines in any language can start a rollout with the
Temporal client alone. Every field added later must have a default (histories in flight).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, Field, field_validator, model_validator
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.audit.events import AuditContext
    from fleetway.activities.errors import InvalidInputError, MigrationSetInvalidError
    from fleetway.activities.fleet.selection import check_where
    from fleetway.activities.flyway.options import FlywayOptions, check_version
    from fleetway.activities.flyway.output import Action
    from fleetway.activities.rollouts import Outcome, TenantOutcome
    from fleetway.activities.secrets.providers import validate_tenant_ids
    from fleetway.activities.servers.models import ServerControls, ServerHold
    from fleetway.activities.sets.digest import check_digest
    from fleetway.activities.tenants.waves import WaveSpec, check_waves
    from fleetway.activities.wire import CLIENT_INPUT, WIRE_MODEL

__all__ = [
    "COMPLETIONS_PER_QUERY",
    "MAX_NAMED_BYTES",
    "MAX_REQUEST_BYTES",
    "RECENT_COMPLETIONS_KEPT",
    "Completions",
    "MigrateAllInput",
    "MigrateAllResult",
    "Progress",
    "RolloutCarry",
    "RolloutStatus",
    "TenantDecision",
    "WaveDecision",
    "WaveProgress",
    "WaveState",
]

MAX_EXPLICIT_TENANTS: Final = 10000
# A request travels in every continue-as-new input beside the rollout's state: its named ids (an
# explicit list, waves' tenants) and the whole of it are bounded in encoded bytes, so that input
# stays under 1 MiB at any id length. A larger list belongs in a tenant source (a file, an API).
MAX_NAMED_BYTES: Final = 256 * 1024
MAX_REQUEST_BYTES: Final = 320 * 1024
# The live feed of finished tenants (``completions`` query): the latest ones per run, in memory
# only (never in history or the carry). A follower polling every second at 1,000 tenants/min
# needs ~17; the slack absorbs a slow or briefly disconnected follower.
RECENT_COMPLETIONS_KEPT: Final = 2000
COMPLETIONS_PER_QUERY: Final = 500


class RolloutStatus(StrEnum):
    """How a rollout ended (or stands, in ``progress``). Wire value: never rename a member."""

    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HALTED = "halted"
    QUIESCED = "quiesced"
    CANCELED = "canceled"


class WaveState(StrEnum):
    """Where one wave of a ring rollout stands. Wire value: never rename a member."""

    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    BAKING = "baking"
    DONE = "done"
    HALTED = "halted"  # its failures crossed its threshold
    REJECTED = "rejected"  # an operator refused to start it


class WaveProgress(BaseModel):
    """One wave as it stands: what it selected, how far it got, what it waits for.

    Attributes:
        selection: how the wave selects (``labels tier=internal``, ``next 10%``).
        planned: tenants the plan put in this wave; ``dispatched``: started so far.
        counts: this wave's finished tenants by outcome.
        bake_until: while ``baking``, when the bake ends (ISO 8601, UTC).
        decided_by: the principal who approved (or rejected) the gate, ``<unspecified>`` if none given.
    """

    model_config = WIRE_MODEL

    name: str
    selection: str = ""
    planned: int = 0
    dispatched: int = 0
    counts: dict[Outcome, int] = Field(default_factory=dict)
    state: WaveState = WaveState.PENDING
    gate: bool = False
    bake_s: int = 0
    bake_until: str = ""
    decided_by: str = ""


class WaveDecision(BaseModel):
    """The ``approve``/``reject`` update's input; every field optional (``{}`` is valid).

    Attributes:
        principal: who decides, for the audit trail (empty: ``<unspecified>``, never invented).
        wave: the wave meant; when given, the decision is refused unless that wave is the one waiting
            (an operator acting on a stale screen must not open the wrong ring).
        reason: free text for the audit trail (≤ 500 chars).
    """

    model_config = CLIENT_INPUT

    @classmethod
    def from_client(cls, data: object) -> bool:
        """Always a client's input (see ``activities/wire.py``)."""
        return True

    principal: str = Field(default="", max_length=256)
    wave: str = Field(default="", max_length=64)
    reason: str = Field(default="", max_length=500)


class TenantDecision(BaseModel):
    """An operator's action on one tenant of a running rollout.

    The input of the ``skip_tenant``, ``retry_tenant`` and ``set_tenant_deadline`` updates (the CLI,
    the library or the UI's "Send an Update"); each is audited with its principal and listed in the
    result's ``operator_actions``.

    Attributes:
        deadline_s: ``set_tenant_deadline`` only: the tenant's running Flyway call gives up this many
            seconds from now (never later than the call's own timeout).
    """

    model_config = CLIENT_INPUT

    @classmethod
    def from_client(cls, data: object) -> bool:
        """Always a client's input (see ``activities/wire.py``)."""
        return True

    tenant: str = Field(min_length=1, max_length=128)
    principal: str = Field(default="", max_length=256)
    reason: str = Field(default="", max_length=500)
    deadline_s: int = Field(default=0, ge=0, le=7 * 86400)

    @field_validator("tenant")
    @classmethod
    def _valid_tenant(cls, value: str) -> str:
        return validate_tenant_ids([value], where="in the decision")[0]


class MigrateAllInput(BaseModel):
    """What to roll out, to whom, how fast and how carefully.

    Attributes:
        action: ``migrate`` | ``validate`` | ``info``.
        tenant_source: name of a tenant source configured on the workers (paged).
        tenants: explicit tenant ids; when non-empty the source is not listed.
        rerun_failed_of: a finished rollout id: run exactly the tenants that did not succeed there.
        parallelism: children in flight at once (1..256).
        continue_on_error: false (default) = fail-fast: the first failure stops dispatch; tenants
            already in flight finish their run (only a cancel kills).
        canary_count: run this many tenants first and wait for them before dispatching more.
        max_failure_ratio: when set, failures no longer fail fast; the rollout ends ``halted``
            as soon as failed/completed exceeds it (checked after the canary and continuously).
        secrets_backend: name of the worker-side secret backend holding tenant credentials.
        continue_as_new_after: dispatches per run before continuing as new (history bound).
        drift_check: for validate, also read Flyway ``info`` per tenant so the result carries
            pending/ahead/failed versions for the drift summary (one more Flyway call per tenant).
        retry_budget_s: per tenant, how long infrastructure faults (lost worker, heartbeat
            timeout, refused or dropped connection, database shutting down) are retried, however
            many attempts that takes; failures of the tenant's own scripts are never retried.
        start_paused: start held, as after ``pause``: nothing is dispatched until ``resume``
            (prepare a rollout, then release it).
        migration_set: the digest (``sha256:<64 hex>``) of the migration set every tenant runs;
            a worker without exactly that set (in its folder, cache or set store) refuses the
            tenant retryably (``migration_set_mismatch``). Empty: the rollout pins the set of the
            first worker that answers and names it from then on.
        waves: a ring rollout: ordered waves, each selecting tenants (labels, ids, count, percent,
            rest) with its own parallelism, failure threshold, bake time and approval gate (see
            ``activities/tenants/waves.py``). Empty: one sweep.
        flyway: a target (a wave may set its own), one hotfix version, placeholders, a baseline
            version (``activities/flyway/options.py``); part of the rollout's identity.
        skip_current: migrate and validate read each page's tables first (one bulk read); a tenant
            whose table proves it current (intact, for validate) is reported ``current`` without a
            Flyway run. False: every tenant runs Flyway, as before.
        quiesce_store: the quiesce store the starting client uses (its description, no credential:
            ``fleetway migrate`` names the store of its ``quiesce.dsn``); the rollout is pinned to it and
            a worker reading another store refuses its checks. "": the store of the worker that pins.
        skip_callbacks_when_current: a set with SQL callbacks Flyway runs on every migrate
            (``afterMigrate.sql``, ``beforeMigrate.sql`` ...; on every validate for validate) keeps
            its current tenants running Flyway, so the callbacks reach them as Flyway would; true
            skips them with the run (the callbacks then run only where something is applied).
        where: run only the tenants whose tables show one of these conditions (``behind``,
            ``failed``, ``tampered``, ``ahead``, ``outdated``, ``current``, ``version<V`` ...,
            comma-separated; see ``activities/fleet/selection.py``).
        applied_in: a rollout id: run only the tenants whose table shows a row that rollout applied
            (``applied_version``: that version's row).
        servers: per-server budget, health checks and parking (``ServerControls``); null: none of
            them, one global window as before.
        carry: state carried across continue-as-new; never set by callers.
    """

    model_config = CLIENT_INPUT

    @classmethod
    def from_client(cls, data: object) -> bool:
        """A start from a client; a continue-as-new (``carry`` set) comes from a worker."""
        return not (isinstance(data, dict) and data.get("carry") is not None)

    action: Action = Action.MIGRATE
    tenant_source: str = "default"
    tenants: list[str] = Field(default_factory=list, max_length=MAX_EXPLICIT_TENANTS)
    rerun_failed_of: str = ""
    parallelism: int = Field(default=8, ge=1, le=256)
    continue_on_error: bool = False
    canary_count: int = Field(default=0, ge=0)
    max_failure_ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    audit: AuditContext = AuditContext()
    secrets_backend: str = "default"
    page_size: int = Field(default=200, ge=1, le=1000)
    drift_check: bool = True
    flyway_timeout_s: int = Field(default=600, ge=1)
    heartbeat_timeout_s: int = Field(default=30, ge=2, le=600)
    continue_as_new_after: int = Field(default=500, ge=1)
    retry_budget_s: int = Field(default=900, ge=0, le=7 * 86400)
    start_paused: bool = False
    migration_set: str = ""
    waves: list[WaveSpec] = Field(default_factory=list)
    flyway: FlywayOptions = FlywayOptions()
    skip_current: bool = True
    skip_callbacks_when_current: bool = False
    quiesce_store: str = ""
    where: str = Field(default="", max_length=500)
    applied_in: str = Field(default="", max_length=256)
    applied_version: str = ""
    servers: ServerControls | None = ServerControls()
    carry: RolloutCarry | None = None

    @field_validator("where")
    @classmethod
    def _valid_where(cls, value: str) -> str:
        return check_where(value)

    @field_validator("applied_version")
    @classmethod
    def _valid_applied_version(cls, value: str) -> str:
        return check_version(value, what="applied_version") if value else value

    @field_validator("waves")
    @classmethod
    def _valid_waves(cls, value: list[WaveSpec]) -> list[WaveSpec]:
        check_waves(value)
        return value

    @field_validator("tenants")
    @classmethod
    def _valid_tenant_ids(cls, value: list[str]) -> list[str]:
        ids = validate_tenant_ids(
            value, where="in the rollout's tenants"
        )  # InvalidTenantIdError is a ValueError
        if len(set(ids)) != len(ids):
            raise ValueError("tenants must not repeat an id")
        return ids

    @field_validator("migration_set")
    @classmethod
    def _valid_digest(cls, value: str) -> str:
        if not value:
            return value
        try:
            return check_digest(value)
        except MigrationSetInvalidError as exc:
            raise InvalidInputError(str(exc)) from None

    @model_validator(mode="after")
    def _bounded(self) -> MigrateAllInput:
        named = len(self.tenants) + sum(len(w.tenants) for w in self.waves)
        named_bytes = sum(len(t) + 3 for t in self.tenants) + sum(
            len(t) + 3 for w in self.waves for t in w.tenants
        )
        if named_bytes > MAX_NAMED_BYTES:
            raise InvalidInputError(
                f"the rollout names {named} tenants in {named_bytes} bytes; at most {MAX_NAMED_BYTES} bytes "
                "of ids travel with a rollout: put the list in a tenant source (a file) and select by labels"
            )
        size = len(self.model_copy(update={"carry": None}).model_dump_json())
        if size > MAX_REQUEST_BYTES:
            raise InvalidInputError(
                f"the rollout's request is {size} bytes encoded; at most {MAX_REQUEST_BYTES}"
            )
        return self

    @model_validator(mode="after")
    def _one_selection(self) -> MigrateAllInput:
        if self.tenants and self.rerun_failed_of:
            raise ValueError("give either tenants or rerun_failed_of, not both")
        if self.waves and self.canary_count:
            raise InvalidInputError("give canary_count or waves, not both (a first wave is the canary)")
        _check_options(self.action, self.flyway, self.waves)
        if self.applied_version and not self.applied_in:
            raise InvalidInputError("applied_version narrows applied_in: give the rollout id too")
        return self


def _check_options(action: Action, flyway: FlywayOptions, waves: list[WaveSpec]) -> None:
    """Refuse an option where it means nothing for the verb (it would be silently ignored)."""
    if action is not Action.MIGRATE and (
        flyway.target or flyway.out_of_order or any(w.target for w in waves)
    ):
        raise InvalidInputError(f"a target or an out-of-order version applies to migrate, not {action}")
    if flyway.out_of_order and (flyway.target or any(w.target for w in waves)):
        raise InvalidInputError("a hotfix (out_of_order) runs alone: give no target with it")
    adopting = action is Action.BASELINE or (action is Action.MIGRATE and flyway.baseline_reference)
    if (flyway.baseline_version or flyway.baseline_reference) and not adopting:
        raise InvalidInputError(
            f"a baseline version or reference applies to baseline (or migrate), not {action}"
        )
    if action is Action.BASELINE and not flyway.baseline_reference:
        raise InvalidInputError(
            "baseline needs a reference tenant (baseline_reference): an adopted schema must equal it"
        )
    if flyway.dry_run and action is not Action.BASELINE:
        raise InvalidInputError(f"flyway.dry_run applies to baseline, not {action}")


class RolloutCarry(BaseModel):
    """Compact state carried across continue-as-new (all in-flight children drained first)."""

    model_config = WIRE_MODEL

    pending: list[str] = Field(default_factory=list)
    cursor: str | None = None
    source_exhausted: bool = False
    pages: int = 0
    cursor_digests: list[str] = Field(default_factory=list)
    dispatched: int = 0
    counts: dict[Outcome, int] = Field(default_factory=dict)
    outcomes: list[TenantOutcome] = Field(default_factory=list)
    dropped_outcomes: int = 0
    failed_overflow: list[str] = Field(default_factory=list)
    failed_lost: int = 0
    drift: dict[str, int] = Field(default_factory=dict)
    drifted: int = 0
    warnings: list[str] = Field(default_factory=list)
    parallelism: int = 0
    paused: bool = False
    runs: int = 1
    pinned_tenant_source: str = ""
    pinned_secrets: str = ""
    pinned_quiesce: str = ""
    waves: list[WaveProgress] = Field(default_factory=list)
    wave_index: int = 0
    wave_pending: list[list[str]] = Field(default_factory=list)  # rollouts planned before the holder
    plan_holder: str = ""  # the workflow holding the plan's chunks ("": none, or the ids are above)
    wave_chunks: list[tuple[int, int]] = Field(default_factory=list)  # each wave's (first chunk, count)
    next_chunk: int = 0  # the current wave's next chunk to read
    parallelism_set: bool = False
    unplanned: int = 0
    screened: int = 0  # the first pending tenants already read and kept by the selection
    excluded: int = 0
    unreadable: int = 0
    applied_marker: str = ""
    holds: list[ServerHold] = Field(default_factory=list)
    operator_actions: list[str] = Field(default_factory=list)  # at most 50, each ≤ 300 chars
    skipping: list[str] = Field(default_factory=list)  # tenants an operator skipped (≤ 100)
    retries: dict[str, int] = Field(default_factory=dict)  # tenant -> retries an operator asked (≤ 100)


class RerunList(BaseModel):
    """The ``rerun_tenants`` query's answer: a rollout's failed and cancelled tenants, running or not.

    What ``--rerun-failed`` runs again when the rollout has no result (cancelled, terminated):
    ``lost`` counts the failures it could not even name (a rerun of it is then refused).
    """

    model_config = WIRE_MODEL

    tenants: list[str] = Field(default_factory=list)
    lost: int = 0


class Progress(BaseModel):
    """Live snapshot returned by the ``progress`` query."""

    model_config = WIRE_MODEL

    status: RolloutStatus
    dispatched: int
    counts: dict[Outcome, int]
    in_flight: list[str]
    failed: list[TenantOutcome]
    parallelism: int
    paused: bool
    source_exhausted: bool
    run: int
    history_marker: str = ""
    migration_set: str = ""
    pinned_tenant_source: str = ""
    pinned_secrets: str = ""
    pinned_quiesce: str = ""
    waves: list[WaveProgress] = Field(default_factory=list)
    wave: str = ""
    phase: str = ""  # pinning, planning, dispatching, draining, at_gate, baking, done
    excluded: int = 0
    servers: list[ServerHold] = Field(default_factory=list)  # parked or held now


class Completions(BaseModel):
    """A page of the live feed: tenants that finished after sequence number ``after``.

    Sequence numbers count finished tenants across the whole rollout (1 = the first to finish),
    continuing across continue-as-new; each run serves only its own finishes.

    Attributes:
        items: outcomes with sequence numbers ``first_seq`` .. ``first_seq + len(items) - 1``.
        last_seq: the newest sequence number this run has finished.
        missed: finishes after ``after`` that this run no longer holds (the follower fell behind).
    """

    model_config = WIRE_MODEL

    items: list[TenantOutcome]
    first_seq: int
    last_seq: int
    missed: int = 0


class MigrateAllResult(BaseModel):
    """The rollout's end: counts, the failures, and per-tenant outcomes (bounded in bytes).

    Attributes:
        counts: every finished tenant, by outcome.
        failed: the kept non-successes in detail (also in ``outcomes``).
        outcomes: kept per-tenant outcomes in completion order, failures included.
        failed_overflow: failed or cancelled tenants whose detail did not fit (ids only).
        failed_lost: failed or cancelled tenants not even named (a rerun of this rollout is refused).
        truncated: some tenant is counted but not kept in detail.
        drift: drift kinds over every tenant (validate/info); ``drifted``: tenants with any drift.
        retry_budget_s: the per-tenant retry budget the rollout ran with.
        history_marker: ``installed_by`` of every script this rollout applied (migrate), so
            ``flyway_schema_history`` shows which rows are this rollout's.
        migration_set: the digest of the set every tenant of this rollout ran.
        pinned_tenant_source / pinned_secrets: the descriptions of the tenant source and secret
            backend the rollout was pinned to at its start; only workers configured alike served it.
        waves: each wave of a ring rollout as it ended; ``halted_wave`` the one that halted it
            (its failures, or a rejected gate); ``unplanned`` listed tenants no wave selected.
        flyway: the options the rollout ran with (target, hotfix, placeholders, baseline).
        excluded: listed tenants the ``where``/``applied_in`` selection left out (not run);
            ``unreadable``: of those, tenants whose table could not be read to decide.
        operator_actions: each tenant an operator skipped, retried or gave a new deadline, by whom.
    """

    model_config = WIRE_MODEL

    rollout_id: str
    action: Action
    status: RolloutStatus
    total: int
    counts: dict[Outcome, int]
    failed: list[TenantOutcome]
    outcomes: list[TenantOutcome]
    truncated: bool = False
    warnings: list[str] = Field(default_factory=list)
    operator_actions: list[str] = Field(default_factory=list)
    runs: int = 1
    failed_overflow: list[str] = Field(default_factory=list)
    failed_lost: int = 0
    drift: dict[str, int] = Field(default_factory=dict)
    drifted: int = 0
    retry_budget_s: int = 0
    history_marker: str = ""
    migration_set: str = ""
    pinned_tenant_source: str = ""
    pinned_secrets: str = ""
    pinned_quiesce: str = ""
    waves: list[WaveProgress] = Field(default_factory=list)
    halted_wave: str = ""
    unplanned: int = 0
    flyway: FlywayOptions = FlywayOptions()
    excluded: int = 0
    unreadable: int = 0
    where: str = ""
    applied_in: str = ""
    servers: list[ServerHold] = Field(default_factory=list)  # still parked or held at the end


MigrateAllInput.model_rebuild()
