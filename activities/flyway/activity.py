"""The ``run_flyway`` activity: resolve the tenant's target and set, run the engine, report the outcome.

Credentials are resolved here, inside the activity, from a backend reference; the workflow sees
the tenant id and the backend's name only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from temporalio import activity

from fleetway.activities.database_target import DatabaseTarget, Vendor
from fleetway.activities.errors import (
    FleetwayError,
    FlywayError,
    FlywayReportedFailureError,
    InvalidTenantIdError,
    OutOfOrderRefusedError,
    RepairRefusedError,
    SchemaHistoryUnavailableError,
    to_application_error,
)
from fleetway.activities.fleet.verdict import repair_needed
from fleetway.activities.flyway.adoption import Adoption, adoption
from fleetway.activities.flyway.attempts import AttemptReporter
from fleetway.activities.flyway.checksums import read_set_migrations
from fleetway.activities.flyway.contract import FlywayEngine, placeholder_values
from fleetway.activities.flyway.options import (
    FlywayOptions,
    label_placeholders,
    uses_labels,
)
from fleetway.activities.flyway.output import Action, FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.flyway.states import FlywayRefuses
from fleetway.activities.heartbeats import heartbeating
from fleetway.activities.postgres.bulk_history import read_histories
from fleetway.activities.postgres.indexes import concurrent_index_names, drop_invalid_indexes
from fleetway.activities.secrets.providers import SecretsProvider, provider_for, validate_tenant_id
from fleetway.activities.sets.store import MigrationSets
from fleetway.activities.tenants.label_lookup import LabelLookup

__all__ = ["FlywayActivities"]

_AUTH_SQLSTATE_PREFIX: Final = "28"
# One Flyway verb for this run's tenant, with the run's placeholders, set and budget.
_RunVerb = Callable[[Action, DatabaseTarget], Awaitable[FlywayOutcome]]


class FlywayActivities:
    """The Flyway activity, bound to a runner, the worker's secret backends and its migration sets.

    Without ``sets`` (library use, tests of one engine) runs use the runner's own locations and
    report no set digest.
    """

    def __init__(
        self,
        runner: FlywayEngine,
        secrets: Mapping[str, SecretsProvider],
        *,
        sets: MigrationSets | None = None,
        labels: LabelLookup | None = None,
        max_local_runs: int = 0,
        attempts: AttemptReporter | None = None,
    ) -> None:
        self._runner = runner
        self._attempts = attempts  # tells the tenant's child of a failed attempt (the UI shows it)
        # A task-queue activity waits for a worker slot on the server; a local one runs where its
        # workflow task ran, so this bounds the Flyway runs a worker makes at once (0: no bound).
        self._local_runs = asyncio.Semaphore(max_local_runs) if max_local_runs else None
        self._secrets = dict(secrets)
        self._sets = sets
        self._labels = labels
        self._sets_using_labels: dict[str, bool] = {}  # by set digest: a set's files never change

    @activity.defn(name="run_flyway")
    async def run_flyway(self, request: FlywayRequest) -> FlywayOutcome:
        """Run a plain migrate, validate or info (see :meth:`run_flyway_with_options`)."""
        return await self.run_flyway_with_options(request)

    @activity.defn(name="run_flyway_with_options")
    async def run_flyway_with_options(self, request: FlywayRequest) -> FlywayOutcome:
        """Resolve the tenant's target, run Flyway, heartbeat throughout, map errors.

        Registered under a second name for runs with options or the baseline and repair verbs:
        a worker of an older build has no such activity, so it fails the attempt (retried until
        a current worker takes it) instead of ignoring a target it does not know.

        The migration set is resolved first (a worker without it refuses before it touches the
        secret store or the database). A Flyway authentication failure invalidates the cached
        secret and retries once with a fresh read, so a rotated password is picked up mid-rollout.
        The outcome carries the attempt number and the set's digest: the workflow trusts a
        single first attempt's report and reads the schema history after any other.
        """
        info = activity.info()
        ran = ""
        try:
            tenant_id = _canonical_tenant_id(request.tenant_id)
            async with self._local_slot(), heartbeating():
                locations: tuple[Path, ...] | None = None
                if self._sets is not None:
                    resolved = await (
                        self._sets.resolve(request.migration_set)
                        if request.migration_set
                        else self._sets.local()
                    )
                    ran, locations = resolved.digest, (resolved.path,)
                outcome = await self._run(request, tenant_id, locations, ran)
        except FleetwayError as exc:  # the only conversion point; library code just raises
            if isinstance(exc, FlywayError) and exc.outcome is not None:
                exc.outcome = exc.outcome.model_copy(update={"attempt": info.attempt, "migration_set": ran})
            error = to_application_error(exc, final_reason=_budget_spent(request, info))
            if self._attempts is not None and not error.non_retryable:
                await self._attempts.failed(error.type or "", error.message)
            raise error from None
        return outcome.model_copy(update={"attempt": info.attempt, "migration_set": ran})

    @contextlib.asynccontextmanager
    async def _local_slot(self) -> AsyncIterator[None]:
        """One of the worker's Flyway slots, for a run in a workflow task (a local activity)."""
        if self._local_runs is None or not activity.info().is_local:
            yield
            return
        async with self._local_runs:
            yield

    @staticmethod
    async def _validate_with_info(run_verb: _RunVerb, target: DatabaseTarget) -> FlywayOutcome:
        """Validate, then info on the same target: one attempt, one credential resolve.

        A validate failure still gets the info entries (the drift summary needs both); an info
        failure after a passed validate is the run's failure, as a second activity's would be.
        """
        try:
            validated = await run_verb(Action.VALIDATE, target)
        except FlywayReportedFailureError as exc:
            if exc.outcome is not None:
                with contextlib.suppress(FleetwayError):
                    exc.outcome = exc.outcome.model_copy(update=await _info_fields(run_verb, target))
            raise
        return validated.model_copy(update=await _info_fields(run_verb, target))

    async def _run(
        self, request: FlywayRequest, tenant_id: str, locations: tuple[Path, ...] | None, digest: str = ""
    ) -> FlywayOutcome:
        provider = provider_for(self._secrets, request.secrets_backend, pinned=request.pinned_secrets)
        labelled = await self._label_placeholders(request, tenant_id, locations, digest)

        # Every call this run makes for the tenant (the verb, and the validate and info that decide a
        # repair or guard a hotfix) gets the same placeholders: Flyway fills them into repeatables'
        # checksums and refuses a script whose placeholder has no value.
        async def run_verb(verb: Action, on: DatabaseTarget) -> FlywayOutcome:
            return await self._runner.run(request, on, verb=verb, locations=locations, labels=labelled)

        run = functools.partial(run_verb, request.action)
        target = await provider.resolve(tenant_id)
        if request.with_info and request.action is Action.VALIDATE:
            return await self._validate_with_info(run_verb, target)
        values = placeholder_values(tenant_id, target, request.flyway.placeholders, labelled)
        repairs = request.action is Action.REPAIR
        if repairs and not await self._needs_repair(run_verb, target, locations, values):
            return FlywayOutcome(action=Action.REPAIR, success=True, skipped="nothing to repair")
        if request.action is Action.MIGRATE and request.flyway.out_of_order:
            await self._check_hotfix(run_verb, target, request.flyway)
        if request.flyway.baseline_reference and request.action in {Action.BASELINE, Action.MIGRATE}:
            reference = await provider.resolve(request.flyway.baseline_reference)
            baseline = functools.partial(run_verb, Action.BASELINE)
            if (verdict := await self._adopt(request, target, reference, baseline)) is not None:
                return verdict
        try:
            return await self._cleaning_up(request.action, target, locations, functools.partial(run, target))
        except FlywayReportedFailureError as exc:
            if exc.outcome is None or not exc.outcome.sql_state.startswith(_AUTH_SQLSTATE_PREFIX):
                raise
            activity.logger.warning(
                "flyway authentication failed; re-reading secret", extra={"tenant_id": tenant_id}
            )
            provider.invalidate(tenant_id)
            return await run(await provider.resolve(tenant_id))

    async def _cleaning_up(
        self,
        action: Action,
        target: DatabaseTarget,
        locations: tuple[Path, ...] | None,
        call: Callable[[], Awaitable[FlywayOutcome]],
    ) -> FlywayOutcome:
        """Run ``call``; after a failed, timed-out or cancelled migrate, drop what concurrent builds left.

        The invalid indexes a ``CREATE INDEX CONCURRENTLY`` of the set leaves in the tenant's schema
        (``postgres/indexes.py``); the set is scanned only after a failure.
        """
        if action is not Action.MIGRATE or not locations or target.vendor is not Vendor.POSTGRESQL:
            return await call()
        try:
            return await call()
        except (FlywayError, asyncio.CancelledError):
            found = [await asyncio.to_thread(concurrent_index_names, p) for p in locations]
            names = frozenset[str]().union(*found)
            if names:
                dropped = await asyncio.shield(drop_invalid_indexes(target, names))
                if dropped:
                    activity.logger.warning(
                        "dropped the invalid indexes a failed concurrent build left",
                        extra={"indexes": dropped[:10]},
                    )
            raise

    async def _adopt(
        self,
        request: FlywayRequest,
        target: DatabaseTarget,
        reference: DatabaseTarget,
        baseline: Callable[[DatabaseTarget], Awaitable[FlywayOutcome]],
    ) -> FlywayOutcome | None:
        """Check a tenant against the reference and baseline it where it is a legacy copy.

        Returns the outcome when nothing more runs (a skip, a dry run's verdict, the baseline
        itself); None when the migrate goes on (after the safe ``baselineOnMigrate``).
        """
        verdict, why = await adoption(target, reference, request.flyway.baseline_reference)
        if request.action is Action.BASELINE and verdict is not Adoption.ADOPT:
            return FlywayOutcome(action=Action.BASELINE, success=True, skipped=why)
        if request.flyway.dry_run:
            version = request.flyway.baseline_version or "1"
            return FlywayOutcome(
                action=request.action, success=True, skipped=f"would baseline at {version}: {why}"
            )
        if request.action is Action.MIGRATE and verdict is Adoption.ADOPT:
            # The safe baselineOnMigrate: the checked legacy schema is baselined, then migrated.
            await baseline(target)
        return None

    async def _label_placeholders(
        self, request: FlywayRequest, tenant_id: str, locations: tuple[Path, ...] | None, digest: str
    ) -> dict[str, str]:
        """``label.KEY`` → the tenant's label, for each such placeholder the set uses ({} for none).

        Raises:
            PlaceholderMissingError: the tenant lacks a label a script uses (before anything runs).
        """
        if not locations or self._labels is None:
            return {}
        folder = locations[0]
        used = self._sets_using_labels.get(digest) if digest else None
        if used is None:
            used = await asyncio.to_thread(uses_labels, folder)
            if digest:
                self._sets_using_labels[digest] = used
        if not used:
            return {}
        labels = await self._labels.labels(request.tenant_source, tenant_id)
        return await asyncio.to_thread(label_placeholders, folder, labels, tenant=tenant_id)

    async def _needs_repair(
        self,
        run_verb: _RunVerb,
        target: DatabaseTarget,
        locations: tuple[Path, ...] | None,
        values: Mapping[str, str],
    ) -> bool:
        """Whether Flyway's repair would change the table; a tenant with nothing to repair is never locked.

        On PostgreSQL the table itself is read and held to Flyway's repair rules (``repair_plan``):
        validate cannot see what repair realigns (a NULL checksum, a row below a baseline). Elsewhere,
        or when the table read cannot decide, Flyway's validate and info decide (read-only).

        Raises:
            RepairRefusedError: the set lacks versions the tenant applied (repair would mark them
                deleted): the wrong set, or an older one.
        """
        if target.vendor is Vendor.POSTGRESQL and locations and len(locations) == 1:
            with contextlib.suppress(FlywayRefuses, SchemaHistoryUnavailableError):
                history = (await read_histories({"tenant": target}))["tenant"]
                migrations = await asyncio.to_thread(read_set_migrations, locations[0])
                plan = repair_needed(history, migrations, values)
                if plan.mark_deleted:
                    raise RepairRefusedError(_refusal(plan.mark_deleted))
                if not plan.undecided:
                    return bool(plan)
        try:
            outcome = await self._validate_with_info(run_verb, target)
        except FlywayReportedFailureError as exc:
            if exc.outcome is None:
                raise
            _check_repairable(exc.outcome)
            return bool(exc.outcome.validation_issues) or _failed_rows(exc.outcome)
        _check_repairable(outcome)
        return _failed_rows(outcome)

    @staticmethod
    async def _check_hotfix(run_verb: _RunVerb, target: DatabaseTarget, options: FlywayOptions) -> None:
        """Refuse a hotfix run that would apply any out-of-order version but the named one.

        Flyway's ``outOfOrder`` applies every script below the current version that never ran
        (info calls them ``Ignored``); a hotfix names one, so any other is refused, nothing applied.
        """
        info = await run_verb(Action.INFO, target)
        others = [e.version for e in info.info if e.versioned and e.state == "Ignored"]
        others = [v for v in others if v != options.out_of_order]
        if others:
            raise OutOfOrderRefusedError(
                f"hotfix {options.out_of_order} refused: out-of-order versions {', '.join(others[:10])} "
                "would be applied too; nothing was applied"
            )


_UNKNOWN_TO_THE_SET: Final = frozenset({"Missing", "Failed (Missing)", "Future", "Failed (Future)"})


def _refusal(unknown: list[str]) -> str:
    return (
        f"repair refused: the set lacks applied versions {', '.join(unknown[:10])}, which repair "
        "would mark deleted; repair with the set the tenant ran (--migrations DIGEST); nothing changed"
    )


def _check_repairable(outcome: FlywayOutcome) -> None:
    unknown = [e.version or f"R {e.description}" for e in outcome.info if e.state in _UNKNOWN_TO_THE_SET]
    if unknown:
        raise RepairRefusedError(_refusal(unknown))


def _failed_rows(outcome: FlywayOutcome) -> bool:
    return any(e.state == "Failed" for e in outcome.info)


async def _info_fields(run_verb: _RunVerb, target: DatabaseTarget) -> dict[str, object]:
    """``info``'s entries and pending versions, for merging into a validate outcome."""
    info = await run_verb(Action.INFO, target)
    return {
        "info": info.info,
        "pending_versions": info.pending_versions,
        "ending_version": info.ending_version,
    }


def _canonical_tenant_id(raw: str) -> str:
    """The request's tenant id, checked; one with surrounding blanks is refused, not trimmed.

    The request reaches the engine unchanged (its ``${tenant_id}`` placeholder included), so the
    id it carries must already be the one the tenant source listed.

    Raises:
        InvalidTenantIdError: the id does not match ``^[A-Za-z0-9_-]{1,128}$`` as it stands.
    """
    if validate_tenant_id(raw) != raw:
        raise InvalidTenantIdError(f"tenant id {raw[:140]!a} is invalid: surrounding blanks")
    return raw


def _budget_spent(request: FlywayRequest, info: activity.Info) -> str:
    """Why a retryable failure is final now ("" while the tenant's retry budget lasts).

    The budget is time since the first attempt was scheduled, not a count: a 20 s outage costs
    the same whether it produced three refused connections or thirty.
    """
    if request.retry_budget_s <= 0:
        return ""
    elapsed = (datetime.now(UTC) - info.scheduled_time).total_seconds()
    if elapsed < request.retry_budget_s:
        return ""
    return f"retry budget of {request.retry_budget_s}s spent after {info.attempt} attempts"
