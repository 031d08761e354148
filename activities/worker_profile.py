"""What a worker will do with a rollout: its task queue, tenant source, secret backend and sets.

``fleetway`` asks a worker (``describe_worker``, through ``DescribeFleetWorkflow``) before it
starts a rollout and prints the answer, so what the CLI shows is what the workers will use, not
the CLI's own settings. Descriptions never hold a credential: only kinds, URLs without user
info, paths and digests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from pydantic import BaseModel, Field
from temporalio import activity

from fleetway.activities.backend_identity import check_backend, describe
from fleetway.activities.errors import (
    ConfigurationError,
    FleetwayError,
    MigrationSetMismatchError,
    to_application_error,
)
from fleetway.activities.flyway.options import check_placeholders
from fleetway.activities.secrets.providers import SecretsProvider, provider_for
from fleetway.activities.sets.store import MigrationSets
from fleetway.activities.tenants.static import TenantLister
from fleetway.activities.wire import WIRE_MODEL

__all__ = ["DescribeWorkerInput", "PinRolloutInput", "RolloutPin", "WorkerProfile", "WorkerProfileActivities"]

_log = logging.getLogger(__name__)


class WorkerProfile(BaseModel):
    """One worker's configuration as a rollout sees it.

    Attributes:
        identity: the worker's Temporal identity (``pid@host``).
        migration_set: the digest of the worker's own migrations folder ("" when it has none
            usable; ``migration_set_problem`` says why).
        set_store: where the worker fetches sets it lacks ("" without a store).
        can_run_set: whether it can run the set the question named (None: none named).
    """

    model_config = WIRE_MODEL

    task_queue: str
    identity: str = ""
    engine: str = ""
    tenant_source: str = ""
    secrets_backend: str = ""
    migration_set: str = ""
    migration_set_problem: str = ""
    set_store: str = ""
    can_run_set: bool | None = None


class DescribeWorkerInput(BaseModel):
    """The question: optionally, a set digest the worker should say whether it can run."""

    model_config = WIRE_MODEL

    migration_set: str = ""


class PinRolloutInput(BaseModel):
    """What a starting rollout names: a set digest ("" = this worker's) and its backends' names.

    ``placeholders``: the names the rollout sets; the set's scripts may use no other (besides the
    per-tenant ones and Flyway's built-ins), checked here before any tenant runs.
    """

    model_config = WIRE_MODEL

    migration_set: str = ""
    tenant_source: str = "default"  # "": the rollout lists no source (explicit tenants)
    secrets_backend: str = "default"
    placeholders: list[str] = Field(default_factory=list)
    quiesce_store: str = ""  # the store the starting client named ("": this worker's)


class RolloutPin(BaseModel):
    """What a rollout runs with from its start on: the set, and its backends' descriptions."""

    model_config = WIRE_MODEL

    migration_set: str
    tenant_source: str = ""
    secrets_backend: str = ""
    quiesce_store: str = ""


class WorkerProfileActivities:
    """Answers ``describe_worker`` and ``pin_rollout`` from the worker's wiring and its folder."""

    def __init__(
        self,
        profile: WorkerProfile,
        sets: MigrationSets,
        *,
        sources: Mapping[str, TenantLister],
        secrets: Mapping[str, SecretsProvider],
        quiesce: object | None = None,
    ) -> None:
        self._profile = profile
        self._sets = sets
        self._sources = dict(sources)
        self._secrets = dict(secrets)
        self._quiesce = quiesce  # the worker's quiesce store (its description is what gets pinned)

    @activity.defn(name="pin_rollout")
    async def pin_rollout(self, request: PinRolloutInput) -> RolloutPin:
        """Pin a starting rollout to this worker's backends, and to its own set when none is named.

        A rollout started without a digest (an older pipeline, a hand-written input) still runs one
        set across the fleet: the one this worker has, not whichever each worker has. Only workers
        whose tenant source and secret backend are described like this one's serve it afterwards.
        The quiesce store is pinned too: the one the starting client named (what its ``fleetway
        quiesce set`` writes) or else this worker's; a worker reading another store refuses here.
        """
        try:
            if self._quiesce is not None:
                check_backend("quiesce store", "default", self._quiesce, request.quiesce_store)
            source = self._sources.get(request.tenant_source) if request.tenant_source else None
            if source is None and request.tenant_source:
                raise ConfigurationError(f"tenant source {request.tenant_source!r} is not configured")
            secrets = provider_for(self._secrets, request.secrets_backend)
            digest = request.migration_set or (await self._sets.local()).digest
            await self._check_placeholders(digest, request.placeholders)
        except FleetwayError as exc:
            raise to_application_error(exc) from None
        return RolloutPin(
            migration_set=digest,
            tenant_source=describe(source) if source is not None else "",
            secrets_backend=describe(secrets),
            quiesce_store=describe(self._quiesce) if self._quiesce is not None else "",
        )

    async def _check_placeholders(self, digest: str, names: list[str]) -> None:
        """Refuse a set whose scripts use a placeholder the rollout does not set.

        A worker that cannot produce the named set (a rolling deploy of sets) pins as before and
        leaves the set to the workers that have it; the tenants' runs then refuse or fail by name.
        """
        try:
            resolved = await self._sets.resolve(digest)
        except MigrationSetMismatchError:
            _log.warning("placeholders unchecked: this worker cannot produce set %s", digest)
            return
        await asyncio.to_thread(check_placeholders, resolved.path, dict.fromkeys(names, ""))

    @activity.defn(name="describe_worker")
    async def describe_worker(self, request: DescribeWorkerInput) -> WorkerProfile:
        """This worker's profile, with the digest of its migrations folder as it is now."""
        digest, problem = "", ""
        can_run: bool | None = None
        if request.migration_set:
            try:
                can_run = await asyncio.to_thread(self._sets.can_run, request.migration_set)
            except FleetwayError:
                can_run = False
        try:
            digest = (await asyncio.to_thread(self._sets.local_manifest)).digest
        except FleetwayError as exc:
            problem = f"{exc.error_type}: {exc}"
        return self._profile.model_copy(
            update={
                "migration_set": digest,
                "migration_set_problem": problem,
                "set_store": self._sets.store_description,
                "can_run_set": can_run,
            }
        )
