"""The rollout commands' Flyway options: ``--target``, ``--out-of-order``, placeholders, baseline.

Placeholders come from ``--placeholder NAME=VALUE`` flags and a plain JSON object file; a name
given in both is refused rather than one silently winning. Every value is validated by
``activities/flyway/options.py`` before anything connects.
"""

from __future__ import annotations

import json
from pathlib import Path

from fleetway.activities.errors import InvalidFlywayOptionError
from fleetway.activities.flyway.options import FlywayOptions, parse_placeholders, versions_up_to
from fleetway.workflows.migrate_all_models import MigrateAllResult

__all__ = ["flyway_options", "held_at", "load_placeholders_file"]

_MAX_FILE_BYTES = 64 * 1024


def load_placeholders_file(path: Path) -> list[tuple[str, str]]:
    """``{"region": "eu", "plan": "gold"}`` as (name, value) pairs (values checked by the caller).

    Raises:
        InvalidFlywayOptionError: unreadable, too large, not JSON, or not an object of strings.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidFlywayOptionError(f"placeholders file {str(path)!r}: {exc.strerror}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise InvalidFlywayOptionError(f"placeholders file {str(path)!r} exceeds {_MAX_FILE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidFlywayOptionError(f"placeholders file {str(path)!r} is not JSON") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InvalidFlywayOptionError(
            f"placeholders file {str(path)!r} must hold one object of names to string values"
        )
    return [(str(k), v) for k, v in data.items()]


def flyway_options(
    *,
    target: str,
    out_of_order: str,
    placeholders: list[str],
    placeholders_file: Path | None,
    baseline_version: str,
    baseline_reference: str = "",
    dry_run: bool = False,
) -> FlywayOptions:
    """The options of one rollout command, validated.

    Raises:
        InvalidFlywayOptionError: a malformed version, placeholder or file (nothing started).
    """
    from_file = load_placeholders_file(placeholders_file) if placeholders_file else []
    return FlywayOptions(
        target=target,
        out_of_order=out_of_order,
        placeholders=parse_placeholders([*from_file, *placeholders]),
        baseline_version=baseline_version,
        baseline_reference=baseline_reference,
        dry_run=dry_run,
    )


def held_at(result: MigrateAllResult, target: str) -> MigrateAllResult:
    """A dry run's result with each tenant's pending versions cut at ``target`` (what would apply)."""
    outcomes = [o.model_copy(update={"pending": versions_up_to(o.pending, target)}) for o in result.outcomes]
    return result.model_copy(update={"outcomes": outcomes})
