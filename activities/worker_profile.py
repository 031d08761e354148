"""What a worker will do with a rollout: its task queue, tenant source, secret backend and sets.

``fleetway`` asks a worker (``describe_worker``, through ``DescribeFleetWorkflow``) before it
starts a rollout and prints the answer, so what the CLI shows is what the workers will use, not
the CLI's own settings. Descriptions never hold a credential: only kinds, URLs without user
info, paths and digests.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from activities.errors import FleetwayError
from activities.migration_store import MigrationSets

__all__ = ["WorkerProfile", "WorkerProfileActivities", "describe"]


def describe(backend: object) -> str:
    """A backend's ``description`` (where it reads from), or its class name when it has none."""
    text = getattr(backend, "description", "")
    return text if isinstance(text, str) and text else type(backend).__name__


class WorkerProfile(BaseModel):
    """One worker's configuration as a rollout sees it.

    Attributes:
        identity: the worker's Temporal identity (``pid@host``).
        migration_set: the digest of the worker's own migrations folder ("" when it has none
            usable; ``migration_set_problem`` says why).
        set_store: where the worker fetches sets it lacks ("" without a store).
        can_run_set: whether it can run the set the question named (None: none named).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

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

    model_config = ConfigDict(frozen=True, extra="forbid")

    migration_set: str = ""


class WorkerProfileActivities:
    """Answers ``describe_worker`` from the worker's wiring (static) and its folder (read now)."""

    def __init__(self, profile: WorkerProfile, sets: MigrationSets) -> None:
        self._profile = profile
        self._sets = sets

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
