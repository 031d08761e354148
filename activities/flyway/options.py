"""What a rollout asks of Flyway beyond the verb: a target, one hotfix, placeholders, a baseline.

One wire model flows unchanged from the rollout's input through each tenant's child to the
engines, so both engines apply the same options and the rollout's result names them. Every value
is validated here, before anything starts: they reach Flyway's command line, so they hold no
secret and no character a shell or Flyway's own parsing could read twice. Pure: workflows import it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from pydantic import BaseModel, Field, field_validator

from fleetway.activities.errors import InvalidFlywayOptionError, PlaceholderMissingError
from fleetway.activities.flyway.output import Action
from fleetway.activities.secrets.providers import validate_tenant_id
from fleetway.activities.tenants.labels import LABEL_VALUE_PATTERN
from fleetway.activities.wire import CLIENT_INPUT

__all__ = [
    "LABEL_PREFIX",
    "MAX_PLACEHOLDERS",
    "TENANT_PLACEHOLDERS",
    "FlywayOptions",
    "check_placeholders",
    "check_version",
    "label_placeholders",
    "needs_current_build",
    "parse_placeholders",
    "placeholders_used",
    "uses_labels",
    "versions_up_to",
]

VERSION_PATTERN: Final = re.compile(r"[0-9]{1,18}(?:[._][0-9]{1,18}){0,7}")
TARGET_KEYWORDS: Final = frozenset({"current", "next", "latest"})
PLACEHOLDER_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
MAX_PLACEHOLDERS: Final = 32
# Set by the activity for each tenant; a rollout cannot set them (one value cannot fit a fleet).
TENANT_PLACEHOLDERS: Final = frozenset({"tenant_id", "tenant_schema"})
# ``${label.KEY}``: the tenant's label KEY in the rollout's tenant source, also set per tenant.
LABEL_PREFIX: Final = "label."
# Flyway's default prefix and suffix; ``${flyway:…}`` names are Flyway's built-ins, left alone.
_USED: Final = re.compile(r"\$\{([^}\s]{1,200})\}")
_SECRET_NAME: Final = re.compile(r"passw|secret|token|credential|api_?key|private_?key|dsn")
_MISSING_SHOWN: Final = 10


def check_version(value: str, *, what: str) -> str:
    """A Flyway version as typed (``7``, ``7.1``, ``2024_01``), or :class:`InvalidFlywayOptionError`."""
    if not VERSION_PATTERN.fullmatch(value):
        raise InvalidFlywayOptionError(
            f"{what} {value[:40]!a} is not a Flyway version (digits separated by '.' or '_')"
        )
    return value


class FlywayOptions(BaseModel):
    """Flyway options one rollout applies to every tenant (a wave may set its own target).

    Attributes:
        target: migrate up to this version and no further; ``current`` (apply nothing new),
            ``next`` (one version a run) or ``latest``. Empty: every pending version.
        out_of_order: a hotfix: the one version below a tenant's current version that this
            rollout may apply (Flyway's ``outOfOrder``, guarded: a tenant with any other
            out-of-order script pending is refused, nothing applied).
        placeholders: ``${name}`` values for every tenant (lower-case names, label-like values).
            ``tenant_id`` and ``tenant_schema`` are set per tenant by the worker.
        baseline_version: the version ``baseline`` records for an adopted schema (default 1).
        baseline_reference: the tenant whose schema an adopted tenant's must equal (fingerprint,
            ``activities/postgres/fingerprint.py``); required by ``baseline``. With ``migrate``: the
            safe ``baselineOnMigrate``, a legacy tenant is checked and baselined, then migrated.
        dry_run: ``baseline`` only: check each tenant against the reference, write nothing.
    """

    # Strict on every wire, not only a client's: a worker that would ignore an option it does not
    # know (a newer build's) must refuse the payload instead; Temporal retries it elsewhere.
    model_config = CLIENT_INPUT

    target: str = ""
    out_of_order: str = ""
    placeholders: dict[str, str] = Field(default_factory=dict)
    baseline_version: str = ""
    baseline_reference: str = ""
    dry_run: bool = False

    @field_validator("baseline_reference")
    @classmethod
    def _valid_reference(cls, value: str) -> str:
        return validate_tenant_id(value) if value else value

    @field_validator("target")
    @classmethod
    def _valid_target(cls, value: str) -> str:
        if value and value not in TARGET_KEYWORDS:
            check_version(value, what="target")
        return value

    @field_validator("out_of_order")
    @classmethod
    def _valid_hotfix(cls, value: str) -> str:
        return check_version(value, what="out-of-order version") if value else value

    @field_validator("baseline_version")
    @classmethod
    def _valid_baseline(cls, value: str) -> str:
        return check_version(value, what="baseline version") if value else value

    @field_validator("placeholders")
    @classmethod
    def _valid_placeholders(cls, value: dict[str, str]) -> dict[str, str]:
        return parse_placeholders(value.items())

    @property
    def is_default(self) -> bool:
        """True when a run with these options is a plain run (what builds before them did)."""
        return self == FlywayOptions()

    def describe(self) -> str:
        """One line for results and audit events (``target 7, out-of-order 5.1, 2 placeholders``)."""
        parts = []
        if self.target:
            parts.append(f"target {self.target}")
        if self.out_of_order:
            parts.append(f"out-of-order {self.out_of_order}")
        if self.placeholders:
            parts.append(f"placeholders {','.join(sorted(self.placeholders))}")
        if self.baseline_version or self.baseline_reference:
            parts.append(f"baseline {self.baseline_version or '1'} like {self.baseline_reference or '?'}")
        if self.dry_run:
            parts.append("dry run")
        return ", ".join(parts)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.split(r"[._]", version))


def versions_up_to(pending: list[str], target: str) -> list[str]:
    """The pending versions a migrate with ``target`` would apply (what a dry run shows).

    ``pending`` in Flyway's order; a version target keeps those at or below it (Flyway's numeric
    comparison: ``7.10`` is above ``7.9``), ``next`` the first, ``current`` none, ``latest`` or "" all.
    """
    if target in {"", "latest"}:
        return list(pending)
    if target == "current":
        return []
    if target == "next":
        return list(pending[:1])
    limit = _version_key(target)
    return [v for v in pending if VERSION_PATTERN.fullmatch(v) and _version_key(v) <= limit]


def needs_current_build(action: Action, options: FlywayOptions) -> bool:
    """Whether a run must go to names only current builds register (docs/decisions.md 18).

    An older build would decode the run without the options it does not know, or cannot run the
    verb at all: a run with options, a baseline or a repair.
    """
    return not options.is_default or action in {Action.BASELINE, Action.REPAIR}


def parse_placeholders(pairs: Iterable[tuple[str, str] | str]) -> dict[str, str]:
    """Placeholders from ``(name, value)`` pairs or ``name=value`` strings, each validated.

    Raises:
        InvalidFlywayOptionError: a malformed pair, an invalid or reserved name, a name that
            reads like a credential, an unsafe value (never echoed), a repeated name, too many.
    """
    result: dict[str, str] = {}
    for pair in pairs:
        if isinstance(pair, str):
            name, sep, value = pair.partition("=")
            if not sep:
                raise InvalidFlywayOptionError(f"placeholder {pair[:40]!a} must be written name=value")
        else:
            name, value = pair
        if not PLACEHOLDER_NAME.fullmatch(name):
            raise InvalidFlywayOptionError(
                f"placeholder name {name[:40]!a} is invalid; names match ^[a-z][a-z0-9_]{{0,62}}$"
            )
        if name in TENANT_PLACEHOLDERS:
            raise InvalidFlywayOptionError(f"placeholder {name!r} is set per tenant by the worker")
        if _SECRET_NAME.search(name):
            raise InvalidFlywayOptionError(
                f"placeholder {name!r} names a credential; placeholders are never secrets"
            )
        if not isinstance(value, str) or not LABEL_VALUE_PATTERN.fullmatch(value):
            raise InvalidFlywayOptionError(
                f"value of placeholder {name!r} is invalid (not shown); values match "
                "^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
            )
        if name in result:
            raise InvalidFlywayOptionError(f"placeholder {name!r} is given twice")
        result[name] = value
    if len(result) > MAX_PLACEHOLDERS:
        raise InvalidFlywayOptionError(f"{len(result)} placeholders given; at most {MAX_PLACEHOLDERS}")
    return result


def placeholders_used(folder: Path) -> dict[str, str]:
    """Every ``${name}`` the set's SQL files use (Flyway built-ins excluded): name → first script.

    Names are lower-cased: Flyway matches them case-insensitively (``${Tenant_Id}`` is ``tenant_id``).
    """
    used: dict[str, str] = {}
    for script in sorted(folder.rglob("*.sql")):
        text = script.read_text(encoding="utf-8", errors="replace")
        for name in _USED.findall(text):
            if not name.lower().startswith("flyway:"):
                used.setdefault(name.lower(), script.name)
    return used


def check_placeholders(folder: Path, provided: Mapping[str, str]) -> None:
    """Refuse a set that uses a placeholder nobody sets, before any tenant runs.

    Flyway would fail the first tenant whose run reaches that script (and, for a
    non-transactional script, leave a failed row); here the whole rollout stops first.

    Raises:
        PlaceholderMissingError: naming each unset placeholder and one script that uses it.
    """
    known = set(provided) | TENANT_PLACEHOLDERS
    missing = {
        name: script
        for name, script in placeholders_used(folder).items()
        if name not in known and not name.startswith(LABEL_PREFIX)  # labels: checked per tenant
    }
    if missing:
        shown = ", ".join(f"${{{n}}} in {s}" for n, s in sorted(missing.items())[:_MISSING_SHOWN])
        more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
        raise PlaceholderMissingError(
            f"the set uses placeholders nobody set: {shown}{more}; "
            "give them with --placeholder name=value (nothing ran)"
        )


def uses_labels(folder: Path) -> bool:
    """Whether any script of the set uses a ``${label.KEY}`` placeholder."""
    return any(name.startswith(LABEL_PREFIX) for name in placeholders_used(folder))


def label_placeholders(folder: Path, labels: Mapping[str, str], *, tenant: str) -> dict[str, str]:
    """The ``label.KEY`` placeholders the set uses, valued from one tenant's labels.

    Raises:
        PlaceholderMissingError: the tenant has no label a script uses (nothing ran).
    """
    used = {n: s for n, s in placeholders_used(folder).items() if n.startswith(LABEL_PREFIX)}
    missing = sorted(n for n in used if n.removeprefix(LABEL_PREFIX) not in labels)
    if missing:
        shown = ", ".join(f"${{{n}}} in {used[n]}" for n in missing[:_MISSING_SHOWN])
        raise PlaceholderMissingError(
            f"tenant {tenant!r} has no label for {shown} in its tenant source (nothing ran)"
        )
    return {n: labels[n.removeprefix(LABEL_PREFIX)] for n in used}
