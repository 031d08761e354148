"""TenantMigrationWorkflow: one tenant's Flyway run, retried for transient classes, then audited.

Deterministic orchestration only. The Flyway activity resolves the tenant's credentials itself,
so history holds the tenant id and the backend name, never a secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import suppress
from datetime import timedelta
from typing import Any, Final

from pydantic import BaseModel, Field, model_validator
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.audit.events import (
        UNSPECIFIED_PRINCIPAL,
        AuditActivities,
        AuditContext,
        AuditEvent,
        AuditEventType,
        AuditOutcome,
    )
    from fleetway.activities.errors import (
        AuditNotWritableError,
        MigrationSetMismatchError,
        WorkerConfigMismatchError,
    )
    from fleetway.activities.flyway.activity import FlywayActivities
    from fleetway.activities.flyway.attempts import ATTEMPT_FAILED_SIGNAL, AttemptFailed
    from fleetway.activities.flyway.output import (
        MARKED_ACTIONS,
        RETRYABLE_CLASSES,
        Action,
        ErrorClass,
        FlywayOutcome,
        outcome_of_failure,
    )
    from fleetway.activities.flyway.request import FlywayRequest
    from fleetway.activities.rollouts import Outcome, OutcomeSource, TenantOutcome
    from fleetway.activities.wire import WIRE_MODEL
    from fleetway.workflows.activity_failures import any_failure_reason, reraise_cancel
    from fleetway.workflows.attributes import OUTCOME_ATTRIBUTE
    from fleetway.workflows.schema_truth import reconciled
    from fleetway.workflows.ui_text import tenant_now

__all__ = [
    "IN_TASK_MAX_S",
    "IN_TASK_TIMEOUT",
    "TenantMigrationInput",
    "TenantMigrationWorkflow",
    "TenantToolboxWorkflow",
]

_NON_RETRYABLE = [c.value for c in ErrorClass if c not in RETRYABLE_CLASSES]
# Refusals another worker need not make (it has the named set, the pinned secret backend or tenant
# source): in the task they would retry on this worker only, so the call moves to the task queue
# instead, where a worker configured as the rollout pinned takes it.
_MOVES_ON: Final = (MigrationSetMismatchError.error_type, WorkerConfigMismatchError.error_type)
_MESSAGE_MAX = 300


class TenantMigrationInput(BaseModel):
    """One tenant's child: the Flyway run its rollout built, and how the child carries it out.

    Attributes:
        run: the tenant's Flyway run, handed unchanged to the activity and the engine.
        audit: who asked (the audit event's principal, git sha, pipeline run).
        max_attempts: attempts when ``run.retry_budget_s`` is 0 (no budget by time).
        heartbeat_timeout_s: the Flyway activity's heartbeat timeout.
        flyway_in_task: run Flyway as a local activity inside the child's workflow task (no
            activity task, no second workflow task); the child is then started with a short
            workflow-task timeout (``IN_TASK_TIMEOUT``), which bounds how late a lost worker is
            noticed and a cancel reaches Flyway. False in histories written before it existed.
    """

    model_config = WIRE_MODEL

    run: FlywayRequest
    audit: AuditContext = AuditContext()
    max_attempts: int = Field(default=5, ge=1, le=50)
    heartbeat_timeout_s: int = Field(default=30, ge=2, le=600)
    flyway_in_task: bool = False

    @model_validator(mode="before")
    @classmethod
    def _lift_flat_fields(cls, data: Any) -> Any:
        """Read a child input recorded before ``run`` existed: the run's fields were at the top.

        Two were named differently then (``flyway_timeout_s``, and ``drift_check`` for
        ``with_info``), and the child blanked the marker of unmarked verbs itself. Kept while a
        committed or open history carries that shape.
        """
        if not isinstance(data, dict) or "run" in data or "action" not in data:
            return data
        flat = dict(data)
        run = {name: flat.pop(name) for name in _RUN_FIELDS if name in flat}
        action = Action(run["action"])
        run["timeout_s"] = flat.pop("flyway_timeout_s", _OLD_DEFAULT_TIMEOUT_S)
        run["with_info"] = action is Action.VALIDATE and bool(flat.pop("drift_check", True))
        if action not in MARKED_ACTIONS:
            run["installed_by"] = ""
        return flat | {"run": run}

    @model_validator(mode="after")
    def _budgeted(self) -> TenantMigrationInput:
        if self.run.timeout_s < 1:
            raise ValueError("run.timeout_s: a tenant's child needs its run's budget (>= 1 s)")
        return self


# The fields a child input carried at its top before ``run``, under the names they keep.
_RUN_FIELDS: Final = ("action", "tenant_id", "secrets_backend", "installed_by", "retry_budget_s",
                      "migration_set", "pinned_secrets", "flyway", "tenant_source")  # fmt: skip
_OLD_DEFAULT_TIMEOUT_S: Final = 600


IN_TASK_TIMEOUT: Final = timedelta(seconds=3)
"""The workflow-task timeout of a child running Flyway in its task: the SDK renews the task at
80 % of it (2.4 s) while Flyway runs, and a cancel or a lost worker is seen at the next renewal."""

IN_TASK_MAX_S: Final = 1800
"""Runs allowed longer go to a task-queue activity: every renewal writes three history events
(2,250 in 30 min), while an activity's heartbeats write none."""

# How long the schema history read after an unclean run may take: the retry budget, within these.
_READ_MIN_S: Final = 5
_READ_MAX_S: Final = 30

# Events of a child's first workflow task: started, task scheduled, task started. A Flyway call
# that resolves later crossed a renewal or followed a lost task, and its report is checked.
_FIRST_TASK_EVENTS: Final = 3


def _partial(err: ActivityError) -> FlywayOutcome | None:
    """The outcome a failed Flyway activity carried (what it did before failing)."""
    cause = err.cause
    return outcome_of_failure(cause.details) if isinstance(cause, ApplicationError) else None


def _from_failure(tenant_id: str, err: ActivityError) -> TenantOutcome:
    cause = err.cause
    error_class, message, partial = ErrorClass.INTERNAL_ERROR.value, "activity failed", _partial(err)
    if isinstance(cause, ApplicationError):
        error_class = cause.type or error_class
        message = cause.message
    elif cause is not None:
        message = type(cause).__name__
    return TenantOutcome(
        tenant_id=tenant_id,
        outcome=Outcome.FAILED,
        version_before=partial.starting_version if partial else "",
        version_after=partial.ending_version if partial else "",
        applied=len(partial.applied_versions) if partial else 0,
        applied_versions=partial.applied_versions[:50] if partial else [],
        failed_at=partial.failed_version if partial else "",
        attempts=partial.attempt if partial else 0,
        source=OutcomeSource.FLYWAY if partial else None,
        migration_set=partial.migration_set if partial else "",
        db_message=partial.db_message if partial else "",
        tampered=[i.version for i in partial.validation_issues if "CHECKSUM" in i.error_code][:50]
        if partial
        else [],
        error_class=error_class,
        message=message[:_MESSAGE_MAX],
    )


def _with_info(outcome: TenantOutcome, flyway: FlywayOutcome | None) -> TenantOutcome:
    """The drift fields from the info entries a folded validate carried (unchanged without them)."""
    if flyway is None:
        return outcome
    return outcome.model_copy(
        update={
            "pending": flyway.pending_versions[:50],
            "ahead": [e.version for e in flyway.info if e.state == "Future"][:50],
            "failed_versions": [
                e.version or f"R {e.description}" for e in flyway.info if e.state == "Failed"
            ][:50],
            "outdated_repeatables": [
                e.description for e in flyway.info if not e.versioned and e.state == "Outdated"
            ][:50],
            "version_after": outcome.version_after or flyway.ending_version,
        }
    )


# The verbs that change a tenant's history: each tenant's outcome is an audit event.
_AUDITED: Final = frozenset({Action.MIGRATE, Action.BASELINE, Action.REPAIR})


def _toolbox_attributes(request: TenantMigrationInput, outcome: TenantOutcome) -> dict[str, str]:
    """The audit attributes of the verb and its options (none for a plain migrate)."""
    attributes: dict[str, str] = {}
    if request.run.action is not Action.MIGRATE:
        attributes["migration.action"] = request.run.action.value
    if described := request.run.flyway.describe():
        attributes["migration.options"] = described
    if request.run.flyway.target:
        attributes["migration.target"] = request.run.flyway.target
    if outcome.repeatables:
        attributes["migration.repeatables"] = ",".join(outcome.repeatables)
    if outcome.repaired:
        attributes["migration.repaired"] = "; ".join(outcome.repaired)
    return attributes


def _retry_options(request: TenantMigrationInput, *, in_task: bool = False) -> dict[str, Any]:
    """The Flyway activity's retries: by time budget (infrastructure faults), never by count.

    Unlimited attempts inside ``schedule_to_close`` = budget + one full run, so an attempt that
    starts just before the budget ends still gets its whole timeout; the activity itself turns a
    retryable failure final once the budget is spent. Short backoff (≤ 15 s): a database back
    after an outage is used within seconds. Tenant-fault classes are never retried. In the task
    (a local activity) the SDK does not enforce ``schedule_to_close`` between retries (measured):
    the activity's own budget check is what ends them there.
    """
    non_retryable = [*_NON_RETRYABLE, *_MOVES_ON] if in_task else _NON_RETRYABLE
    if request.run.retry_budget_s <= 0:
        return {
            "retry_policy": RetryPolicy(
                initial_interval=timedelta(seconds=2),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=60),
                maximum_attempts=request.max_attempts,
                non_retryable_error_types=non_retryable,
            )
        }
    return {
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=15),
            maximum_attempts=0,
            non_retryable_error_types=non_retryable,
        ),
        "schedule_to_close_timeout": timedelta(
            seconds=request.run.retry_budget_s + request.run.timeout_s + 60
        ),
    }


def _wrapped(activity_type: str, err: FailureError) -> ActivityError:
    """A local activity's failure (it comes unwrapped) as a task-queue activity's; raise it from ``err``."""
    return ActivityError(
        f"local activity failed: {err}",
        scheduled_event_id=0,
        started_event_id=0,
        identity="",
        activity_type=activity_type,
        activity_id="",
        retry_state=None,
    )


async def _run_flyway(request: TenantMigrationInput) -> FlywayOutcome:
    """The Flyway call, in the child's workflow task or as a task-queue activity.

    A call in the task that this worker refuses as "not this worker" (it lacks the named set, or
    its secret backend or tenant source is not the pinned one) moves to the task queue: retried in
    the task it would wait for this worker, while another is configured as the rollout needs.
    """
    # Under its second name when an older build must not run it (see the activity).
    current = request.run.needs_current_build
    method = FlywayActivities.run_flyway_with_options if current else FlywayActivities.run_flyway
    timeout = timedelta(seconds=request.run.timeout_s + 60)
    # Cancellation must reach the JVM: wait until the activity confirms it killed it.
    cancel = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
    if request.flyway_in_task:
        try:
            return await workflow.execute_local_activity_method(
                method,
                request.run,
                start_to_close_timeout=timeout,
                cancellation_type=cancel,
                **_retry_options(request, in_task=True),
            )
        except ActivityError:
            raise
        except ApplicationError as err:
            if err.type not in _MOVES_ON:
                raise _wrapped(method.__name__, err) from err
        except FailureError as err:
            raise _wrapped(method.__name__, err) from err
    return await workflow.execute_activity_method(
        method,
        request.run,
        start_to_close_timeout=timeout,
        heartbeat_timeout=timedelta(seconds=request.heartbeat_timeout_s),
        cancellation_type=cancel,
        **_retry_options(request),
    )


# Not sandboxed: the sandbox re-imports modules for every run, and a rollout starts one per tenant
# (docs/speed.md). The import allow-list test and the committed histories hold what it would check.
# Outcomes the child's search attribute leaves unmarked (most of a fleet, most nights).
_UNREMARKABLE: Final = frozenset({Outcome.SUCCEEDED, Outcome.CURRENT})


@workflow.defn(name="TenantMigrationWorkflow", sandboxed=False)
class TenantMigrationWorkflow:
    """Runs Flyway for one tenant and records a ``migration.applied`` event for migrate."""

    def __init__(self) -> None:
        self._deadline: Any = None  # an operator's deadline for the running call (a workflow.now())
        self._deadline_passed = False
        self._doing = ""  # the Flyway call under way, as its current details say ("": none)

    @workflow.signal(
        name=ATTEMPT_FAILED_SIGNAL,
        description="From the worker: an attempt of the running Flyway call failed and is tried again.",
    )
    def attempt_failed(self, notice: AttemptFailed) -> None:
        """Show the failed attempt under the running call (late, after the call ended: ignored)."""
        if self._doing:
            said = f"**{notice.error_class}**" + (f": {notice.message}" if notice.message else "")
            workflow.set_current_details(
                tenant_now(
                    f"{self._doing}, attempt {notice.attempt + 1}\n\nattempt {notice.attempt} failed: {said}"
                )
            )

    @workflow.signal(
        name="set_deadline", description="The running Flyway call gives up this many seconds from now."
    )
    def set_deadline(self, seconds: int) -> None:
        """Bound the call (the rollout's ``set_tenant_deadline`` sends it); never past its own timeout."""
        self._deadline = workflow.now() + timedelta(seconds=max(0, seconds))

    async def _bounded(self, call: Coroutine[Any, Any, FlywayOutcome]) -> FlywayOutcome:
        """Await ``call``; an operator's deadline, once passed, cancels it (``_deadline_passed``).

        A cancel of the child reaches the call as it did when the call was awaited directly.
        """
        task = asyncio.ensure_future(call)
        try:
            while not task.done():
                deadline = self._deadline
                if deadline is None:
                    await workflow.wait_condition(lambda: task.done() or self._deadline is not None)
                    continue
                left = (deadline - workflow.now()).total_seconds()
                if left <= 0:
                    self._deadline_passed = True
                    task.cancel()
                    break
                with suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda given=deadline: task.done() or self._deadline != given,  # type: ignore[misc]
                        timeout=timedelta(seconds=left),
                    )
        except asyncio.CancelledError:
            task.cancel()  # the child is cancelled: so is its call (its cancel is then awaited)
        return await task

    @workflow.run
    async def run(self, request: TenantMigrationInput) -> TenantOutcome:
        """Return the tenant's outcome; a Flyway failure is a result, not an exception.

        A cancelled run is checked against the schema history and audited before the child ends
        as cancelled.
        """
        started = workflow.now()
        # Validate with the drift read folds info into the same activity (one credential resolve).
        folded = request.run.action is Action.VALIDATE and request.run.with_info
        marker = request.run.installed_by if request.run.action in MARKED_ACTIONS else ""
        where = "in the child's task" if request.flyway_in_task else "as an activity"
        self._doing = f"running Flyway **{request.run.action.value}** {where}"
        workflow.set_current_details(tenant_now(self._doing))
        try:
            try:
                flyway = await self._bounded(_run_flyway(request))
            finally:
                self._doing = ""
            outcome = TenantOutcome(
                tenant_id=request.run.tenant_id,
                outcome=Outcome.SUCCEEDED,
                version_before=flyway.starting_version,
                version_after=flyway.ending_version,
                applied=len(flyway.applied_versions),
                applied_versions=flyway.applied_versions[:50],
                pending=flyway.pending_versions[:50],
                duration_ms=flyway.duration_ms,
                attempts=flyway.attempt,
                source=OutcomeSource.FLYWAY,
                migration_set=flyway.migration_set,
                repeatables=flyway.applied_repeatables[:50],
                repaired=flyway.repaired[:50],
            )
            if flyway.skipped:  # nothing to repair or adopt, or a dry run's verdict
                skipped = {"outcome": Outcome.SKIPPED, "message": flyway.skipped[:_MESSAGE_MAX]}
                outcome = outcome.model_copy(update=skipped)
            if folded:
                outcome = _with_info(outcome, flyway)
            lost = (
                request.flyway_in_task and workflow.info().get_current_history_length() > _FIRST_TASK_EVENTS
            )
            if marker and (flyway.attempt > 1 or lost):
                # An earlier attempt may have applied scripts and lost its report: ask the table.
                outcome = await self._checked(request, outcome, marker)
        except ActivityError as err:
            outcome = await self._after_error(request, err, folded=folded, marker=marker, started=started)
        duration = workflow.now() - started
        outcome = outcome.model_copy(
            update={
                "duration_ms": int(duration.total_seconds() * 1000),
                "migration_set": outcome.migration_set or request.run.migration_set,
            }
        )
        if request.run.action in _AUDITED and (unrecorded := await self._audit(request, outcome, started)):
            message = f"{outcome.message}; {unrecorded}" if outcome.message else unrecorded
            reason = unrecorded.removeprefix("audit event not recorded (").removesuffix(")")
            refused = reason.split(":", 1)[0] in _AUDIT_CONFIGURATION
            outcome = outcome.model_copy(
                update={
                    "message": message[:_MESSAGE_MAX],
                    "audit_refused": reason[:_MESSAGE_MAX] if refused else "",
                }
            )
        workflow.set_current_details(tenant_now("", outcome))
        if outcome.outcome not in _UNREMARKABLE:
            # What an operator filters by: FleetwayRollout = R AND FleetwayOutcome = failed. Only the
            # exceptions are marked: an upsert (and the patch's marker) is a billed action per tenant.
            workflow.deprecate_patch("child-outcome-attribute")
            workflow.upsert_search_attributes([OUTCOME_ATTRIBUTE.value_set(outcome.outcome.value)])
        return outcome

    async def _after_error(
        self,
        request: TenantMigrationInput,
        err: ActivityError,
        *,
        folded: bool,
        marker: str,
        started: Any,  # workflow.now() (datetime, which workflow modules do not import)
    ) -> TenantOutcome:
        """The outcome of a call that failed; a cancel is audited with what it left, then re-raised."""
        cancelled = isinstance(err.cause, CancelledError)
        if cancelled and not self._deadline_passed:
            # The activity confirmed its Flyway is gone; say what it left, then end cancelled.
            if marker:
                canceled = TenantOutcome(
                    tenant_id=request.run.tenant_id,
                    outcome=Outcome.CANCELED,
                    message="cancelled",
                    migration_set=request.run.migration_set,
                )
                await self._audit(request, await self._checked(request, canceled, marker), started)
            raise asyncio.CancelledError from None
        if cancelled:  # an operator's deadline ended the call: this tenant failed, nothing was cancelled
            outcome = TenantOutcome(
                tenant_id=request.run.tenant_id,
                outcome=Outcome.FAILED,
                error_class=ErrorClass.DEADLINE_EXCEEDED.value,
                message="the deadline an operator gave its Flyway call passed; the call was stopped",
                migration_set=request.run.migration_set,
            )
        else:
            outcome = _from_failure(request.run.tenant_id, err)
            if folded:
                outcome = _with_info(outcome, _partial(err))
        return await self._checked(request, outcome, marker) if marker else outcome

    @staticmethod
    async def _checked(request: TenantMigrationInput, outcome: TenantOutcome, marker: str) -> TenantOutcome:
        # The read gets 30 s, or the retry budget when that is shorter (a rollout asked to give up
        # on infrastructure in 3 s must not then spend 30 s on a table it cannot reach).
        budget = request.run.retry_budget_s
        return await reconciled(
            outcome,
            secrets_backend=request.run.secrets_backend,
            marker=marker,
            pinned_secrets=request.run.pinned_secrets,
            timeout_s=max(_READ_MIN_S, min(_READ_MAX_S, budget)) if budget > 0 else _READ_MAX_S,
        )

    async def _audit(self, request: TenantMigrationInput, outcome: TenantOutcome, started: Any) -> str:
        """Record the tenant's ``migration.applied`` event; "" when recorded, else why not."""
        info = workflow.info()
        succeeded = outcome.outcome is Outcome.SUCCEEDED
        audit_outcome = {
            Outcome.SUCCEEDED: AuditOutcome.SUCCESS,
            Outcome.CANCELED: AuditOutcome.CANCELED,
            Outcome.SKIPPED: AuditOutcome.SKIPPED,
        }
        attributes = {
            "migration.applied_count": str(outcome.applied),
            "migration.from": outcome.version_before,
        }
        if outcome.source is not None:
            attributes |= {
                "migration.applied_versions": ",".join(outcome.applied_versions),
                "migration.failed_at": outcome.failed_at,
                "migration.attempts": str(outcome.attempts),
                "migration.source": outcome.source.value,
            }
        if outcome.migration_set:
            attributes["migration.set"] = outcome.migration_set
        if outcome.db_message:
            attributes["migration.db_message"] = outcome.db_message
        attributes |= _toolbox_attributes(request, outcome)
        event = AuditEvent(
            # One event per tenant outcome: a retried emit carries the same id, so sinks dedupe it.
            event_id=f"{info.workflow_id}/{info.run_id}/migration.applied",
            # migration.applied for every verb that changes the history; the verb says which.
            type=AuditEventType.MIGRATION_APPLIED,
            target=request.run.tenant_id,
            principal=request.audit.principal or UNSPECIFIED_PRINCIPAL,
            started_at=started,
            completed_at=workflow.now(),
            outcome=audit_outcome.get(outcome.outcome, AuditOutcome.FAILED),
            version=outcome.version_after,
            error_class="" if succeeded else outcome.error_class,
            git_sha=request.audit.git_sha,
            pipeline_run_id=request.audit.pipeline_run_id,
            attributes=attributes,
        )
        # The event is written to the sink inside the activity: a sink outage or a lost worker is
        # retried, by time (the tenant's retry budget), and sinks dedupe on event_id.
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=30),
            "schedule_to_close_timeout": timedelta(seconds=request.run.retry_budget_s or 300),
            "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=0),
        }
        try:
            # A local activity: no task-queue round trip per tenant; a write retried after a lost
            # worker is deduplicated by the sink.
            await workflow.execute_local_activity_method(AuditActivities.emit_audit, event, **options)
        except FailureError as err:  # a local activity's final failure arrives unwrapped
            reraise_cancel(err)
            # The sink stayed down for the whole budget: the tenant's outcome stands, and says so.
            return f"audit event not recorded ({any_failure_reason(err)})"
        return ""


# The sink refuses for good (its table or grant): the rollout stops at once instead of auditing nothing.
_AUDIT_CONFIGURATION: Final = frozenset({AuditNotWritableError.error_type})


@workflow.defn(name="TenantToolboxWorkflow", sandboxed=False)
class TenantToolboxWorkflow(TenantMigrationWorkflow):
    """The same run under a type older builds lack: a run with options, a baseline, a repair.

    An older worker would decode the input without the options it does not know and migrate to
    the latest version; this type is not registered there, so its task waits for a current one.
    """

    @workflow.run
    async def run(self, request: TenantMigrationInput) -> TenantOutcome:
        """See :meth:`TenantMigrationWorkflow.run`."""
        return await super().run(request)
