"""Adopting brownfield tenants: a baseline only where the schema is what the reference holds.

Flyway's ``baseline`` (and ``baselineOnMigrate``) records "this schema is at version V" and trusts
it. fleetway first compares the tenant's fingerprint (``activities/postgres/fingerprint.py``) with
the reference tenant's: a schema that differs is refused with the differences named, nothing
written. A tenant already under Flyway, or with an empty schema (a new tenant: its scripts build
it), is not adopted at all.
"""

from __future__ import annotations

from enum import StrEnum

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import SchemaFingerprintMismatchError
from fleetway.activities.postgres.fingerprint import differences, read_fingerprint

__all__ = ["Adoption", "adoption"]


class Adoption(StrEnum):
    """What a tenant needs before its scripts can run."""

    ADOPT = "adopt"  # a legacy schema equal to the reference: baseline it
    NEW = "new"  # no schema or an empty one: its scripts build it
    MANAGED = "managed"  # Flyway's table is there already


async def adoption(
    target: DatabaseTarget, reference: DatabaseTarget, reference_id: str
) -> tuple[Adoption, str]:
    """Whether ``target`` may be baselined, and why (read-only: two catalog reads).

    Raises:
        SchemaFingerprintMismatchError: a legacy schema that differs from the reference (or an
            empty reference), differences listed, bounded.
        SchemaHistoryUnavailableError: a catalog could not be read.
    """
    actual = await read_fingerprint(target)
    if actual.has_history:
        return Adoption.MANAGED, "already under Flyway: nothing to adopt"
    if not actual.exists or actual.empty:
        return Adoption.NEW, "empty schema: nothing to adopt"
    expected = await read_fingerprint(reference)
    if expected.empty:
        raise SchemaFingerprintMismatchError(
            f"reference tenant {reference_id!r} has an empty schema; nothing can be adopted like it"
        )
    if diff := differences(expected, actual):
        raise SchemaFingerprintMismatchError(
            f"schema differs from reference {reference_id!r} ({expected.digest[:19]}): {diff}; "
            "nothing written"
        )
    return Adoption.ADOPT, f"fingerprint {actual.digest[:19]} equals reference {reference_id!r}"
