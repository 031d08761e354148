r"""A set's migrations as Flyway resolves them: versions, descriptions and Flyway's own checksums.

"Provably current" (``activities/fleet/verdict.py``) compares these with ``flyway_schema_history``,
so each value must be exactly what Flyway would write. The checksum is Flyway's
``ChecksumCalculator`` (9.x to 13.x): the script decoded as UTF-8, read line by line with the line
breaks (``\n``, ``\r``, ``\r\n``) dropped and a BOM removed from the first line, every line's
UTF-8 bytes fed to one CRC32, stored as a signed 32-bit integer. A repeatable's checksum is taken
after placeholder replacement. Pinned against the real binary by tests/activities/test_fleet_verdict.py
(CRLF, BOM, non-ASCII, trailing whitespace, a per-tenant placeholder). Anything this module cannot
reproduce exactly (an undecodable script, an unknown placeholder, a Teams-only prefix) is reported
unknown, never guessed: such a tenant goes to Flyway.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = [
    "NOOP_MIGRATE_CALLBACKS",
    "VALIDATE_CALLBACKS",
    "SetMigration",
    "SetMigrations",
    "flyway_checksum",
    "read_set_migrations",
    "repeatable_checksum",
    "version_key",
]

_LINE_BREAKS: Final = re.compile(r"\r\n|\r|\n")
_VERSIONED: Final = re.compile(r"V([0-9]+(?:[._][0-9]+)*)__(.*)\.sql")
_REPEATABLE: Final = re.compile(r"R__(.*)\.sql")
_TEAMS_ONLY: Final = re.compile(r"[UB][0-9].*\.sql")  # undo and baseline migrations
_PLACEHOLDER: Final = re.compile(r"\$\{([^}]*)\}")
# The SQL callbacks Flyway 12.4.0 runs on a migrate that applies nothing, and on a validate (asked of the
# real binary by tests/activities/test_fleet_verdict.py). A tenant proven current skips them with its run.
NOOP_MIGRATE_CALLBACKS: Final = frozenset({
    "afterConnect", "beforeValidate", "afterValidate", "createSchema", "beforeCreateSchema", "beforeMigrate",
    "afterVersioned", "afterMigrate", "afterMigrateOperationFinish",
})  # fmt: skip
VALIDATE_CALLBACKS: Final = frozenset({"afterConnect", "beforeValidate", "afterValidate"})
# Every event a SQL callback file may name (``<event>[__description].sql``), longest first: Flyway
# matches the longest prefix (``afterMigrateApplied`` before ``afterMigrate``).
_EVENTS: Final = sorted(
    {
        "beforeClean", "afterClean", "afterCleanError", "beforeMigrate", "beforeEachMigrate",
        "beforeEachMigrateStatement", "afterEachMigrateStatement", "afterEachMigrateStatementError",
        "afterEachMigrate", "afterEachMigrateError", "beforeRepeatables", "afterVersioned",
        "afterMigrateApplied", "afterMigrate", "afterMigrateError", "beforeUndo", "beforeEachUndo",
        "beforeEachUndoStatement", "afterEachUndoStatement", "afterEachUndoStatementError", "afterEachUndo",
        "afterEachUndoError", "afterUndo", "afterUndoError", "beforeValidate", "afterValidate",
        "afterValidateError", "beforeBaseline", "afterBaseline", "afterBaselineError", "beforeRepair",
        "afterRepair", "afterRepairError", "beforeInfo", "afterInfo", "afterInfoError",
        "afterMigrateOperationFinish", "afterInfoOperationFinish", "createSchema", "beforeCreateSchema",
        "beforeConnect", "afterConnect",
    },
    key=len,
    reverse=True,
)  # fmt: skip
_DESCRIPTION_MAX: Final = 200


def flyway_checksum(data: bytes) -> int | None:
    """Flyway's checksum of one script's bytes; None when they are not UTF-8 (not reproduced)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return _crc(text)


def _crc(text: str) -> int:
    crc = 0
    for index, line in enumerate(_LINE_BREAKS.split(text)):
        crc = zlib.crc32((line.removeprefix("\ufeff") if index == 0 else line).encode("utf-8"), crc)
    return crc - 2**32 if crc >= 2**31 else crc


@functools.lru_cache(maxsize=4096)
def version_key(version: str) -> tuple[int, ...]:
    """Flyway's version identity: numeric parts, trailing zeros dropped (``1.0`` is ``1``).

    Cached: a fleet read parses the same few versions in every tenant's table (15 calls a tenant).
    """
    parts = [int(p) for p in re.split(r"[._]", version)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _description(raw: str) -> str:
    text = raw.replace("_", " ")
    return text if len(text) <= _DESCRIPTION_MAX else text[: _DESCRIPTION_MAX - 3] + "..."


@dataclass(frozen=True)
class SetMigration:
    """One migration of the set.

    Attributes:
        version: Flyway's version text (``1.2``), "" for a repeatable.
        checksum: the raw script's checksum (None: not reproducible).
        placeholders: the ``${…}`` names a repeatable uses (its checksum depends on their values).
        text: a repeatable's decoded text when it uses placeholders, to check per tenant.
    """

    version: str
    description: str
    script: str
    checksum: int | None
    placeholders: frozenset[str] = frozenset()
    text: str = ""


@dataclass(frozen=True)
class SetMigrations:
    """The set's versioned migrations (by :func:`version_key`) and repeatables (by description).

    ``unknown`` says why the set cannot be judged at all ("" when it can).
    """

    versioned: dict[tuple[int, ...], SetMigration] = field(default_factory=dict)
    repeatables: dict[str, SetMigration] = field(default_factory=dict)
    unknown: str = ""
    callbacks: tuple[tuple[str, str], ...] = ()  # (event, file) of each SQL callback

    def callbacks_on(self, events: frozenset[str]) -> list[str]:
        """The callback files that run on any of ``events`` (e.g. :data:`NOOP_MIGRATE_CALLBACKS`)."""
        return [name for event, name in self.callbacks if event in events]

    @property
    def label_placeholders(self) -> bool:
        """Whether a repeatable's checksum depends on a tenant's ``${label.KEY}`` values."""
        return any(
            name.lower().startswith("label.") for m in self.repeatables.values() for name in m.placeholders
        )

    @property
    def latest(self) -> tuple[int, ...]:
        """The highest version of the set (``()`` when it has none)."""
        return max(self.versioned, default=())


def read_set_migrations(folder: Path) -> SetMigrations:
    """Resolve ``folder`` (a verified set snapshot) as Flyway's SQL resolver does. Blocking."""
    versioned: dict[tuple[int, ...], SetMigration] = {}
    repeatables: dict[str, SetMigration] = {}
    callbacks: list[tuple[str, str]] = []
    for path in sorted(folder.rglob("*.sql")):
        name = path.name
        data = path.read_bytes()
        checksum = flyway_checksum(data)
        if match := _VERSIONED.fullmatch(name):
            version = match.group(1).replace("_", ".")
            key = version_key(version)
            if key in versioned:
                return SetMigrations(unknown=f"version {version} appears twice in the set")
            versioned[key] = SetMigration(version, _description(match.group(2)), name, checksum)
        elif match := _REPEATABLE.fullmatch(name):
            description = _description(match.group(1))
            if description in repeatables:  # Flyway refuses the set; never pick one of the two
                return SetMigrations(unknown=f"repeatable {description!r} appears twice in the set")
            text = data.decode("utf-8", errors="replace")
            used = frozenset(_PLACEHOLDER.findall(text))
            if text.count("${") != len(_PLACEHOLDER.findall(text)):
                used |= {"${ unterminated"}  # Flyway reads to the end of the file: never reproduced
            repeatables[description] = SetMigration(
                "", description, name, checksum, used, text if used and checksum is not None else ""
            )
        elif _TEAMS_ONLY.fullmatch(name):
            return SetMigrations(unknown=f"{name} uses a prefix this reader does not model")
        elif event := _callback_event(name):
            callbacks.append((event, name))
        # Anything else is not a migration (Flyway skips names it cannot parse).
    return SetMigrations(versioned=versioned, repeatables=repeatables, callbacks=tuple(callbacks))


def _callback_event(name: str) -> str:
    """The event a SQL callback file runs on ("" for none): ``afterMigrate.sql``, ``afterMigrate__x.sql``."""
    stem = name.removesuffix(".sql")
    for event in _EVENTS:
        if stem == event or stem.startswith(event + "__"):
            return event
    return ""


def repeatable_checksum(migration: SetMigration, values: Mapping[str, str]) -> int | None:
    """The checksum Flyway records for a repeatable with these placeholder values (None: unknown).

    Names match case-insensitively, as Flyway's (``${Tenant_Id}`` is ``tenant_id``);
    ``${flyway:filename}`` is the script's own name. A value the caller does not have (a run's
    ``${flyway:timestamp}``, a placeholder nobody set) leaves the checksum unknown, never guessed.
    """
    if not migration.placeholders:
        return migration.checksum
    known = {k.lower(): v for k, v in values.items()} | {"flyway:filename": migration.script}
    if not migration.text or not {p.lower() for p in migration.placeholders} <= known.keys():
        return None
    return _crc(_PLACEHOLDER.sub(lambda m: known[m.group(1).lower()], migration.text))
