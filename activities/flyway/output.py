"""Flyway's ``-outputType=json`` documents, parsed into a typed outcome, and failures classified.

Pure functions over already-redacted text: no subprocess, no logging, so every rule here is tested
against captured output of the real Flyway (12.4.0) without running it.

Three document shapes arrive (verified on the pinned binary):
1. success (``operation`` + ``success`` / ``validationSuccessful``; ``info`` has neither);
2. partial migrate failure: the migrate document with ``success: false`` plus ``error``;
3. refusal: only ``{"error": {...}}`` (connection refused, validate-on-migrate failed, ...).
Success is decided from the document, never from the exit code alone: without the
``flyway-reports`` jar a failed migrate exits 0, and JSON ``validate`` always exits 0.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, Field, ValidationError

from fleetway.activities.wire import WIRE_MODEL

__all__ = [
    "MARKED_ACTIONS",
    "READ_ONLY_ACTIONS",
    "RETRYABLE_CLASSES",
    "Action",
    "ErrorClass",
    "FlywayOutcome",
    "InfoEntry",
    "ValidationIssue",
    "classify_failure",
    "classify_sql_state",
    "database_message",
    "find_flyway_document",
    "outcome_from_document",
    "outcome_of_failure",
]


class Action(StrEnum):
    """The Flyway verb a run performs. Wire value: never rename a member."""

    MIGRATE = "migrate"
    VALIDATE = "validate"
    INFO = "info"
    BASELINE = "baseline"
    REPAIR = "repair"


# The verbs whose history rows carry a rollout's marker (``installed_by``), read back afterwards.
MARKED_ACTIONS: Final = frozenset({Action.MIGRATE, Action.BASELINE})
# The read-only verbs: their rollouts report drift, never change a tenant.
READ_ONLY_ACTIONS: Final = frozenset({Action.VALIDATE, Action.INFO})


class ErrorClass(StrEnum):
    """go-bricks' published failure taxonomy (ADR-019): additions only, never renames."""

    CHECKSUM_MISMATCH = "checksum_mismatch"
    LOCK_TIMEOUT = "lock_timeout"
    SCHEMA_HISTORY_CORRUPT = "schema_history_corrupt"
    TARGET_NOT_READY = "target_not_ready"
    TARGET_UNREACHABLE = "target_unreachable"
    QUIESCE_BLOCKED = "quiesce_blocked"
    INTERNAL_ERROR = "internal_error"
    SCRIPT_FAILED = "script_failed"  # fleetway's addition: a script's own SQL failed (never retried)
    DEADLINE_EXCEEDED = "deadline_exceeded"  # fleetway's addition: an operator's deadline stopped the call


# Only these can clear by themselves; the rest need a human (edit, repair, fix SQL).
RETRYABLE_CLASSES: Final = frozenset(
    {ErrorClass.LOCK_TIMEOUT, ErrorClass.TARGET_UNREACHABLE, ErrorClass.TARGET_NOT_READY}
)


class ValidationIssue(BaseModel):
    """One migration that failed validation (from ``invalidMigrations``)."""

    model_config = WIRE_MODEL

    version: str
    description: str = ""
    error_code: str


class InfoEntry(BaseModel):
    """One migration as ``info`` reports it: versioned, or repeatable (no version)."""

    model_config = WIRE_MODEL

    version: str
    description: str = ""
    state: str
    category: str = "Versioned"

    @property
    def versioned(self) -> bool:
        """Whether this entry has a version (repeatables and markers have none)."""
        return self.category == "Versioned"


class FlywayOutcome(BaseModel):
    """What one Flyway run did to one target, without any free text from Flyway.

    ``starting_version``/``ending_version`` are the schema version before and after (equal on a
    no-op; Flyway reports a null target then). ``detail`` is built from vetted structured fields
    (error code, script name, line, SQLSTATE), never from Flyway's message. ``db_message`` is the
    database's own primary message for a failed script (``ERROR: syntax error at or near …``):
    one line, at most 300 characters, from already-redacted output, never the DETAIL line that
    can quote row values.
    """

    model_config = WIRE_MODEL

    action: Action
    success: bool
    flyway_version: str = ""
    schema_name: str = ""
    starting_version: str = ""
    ending_version: str = ""
    applied_versions: list[str] = Field(default_factory=list)
    pending_versions: list[str] = Field(default_factory=list)
    migrations_executed: int = 0
    duration_ms: int = 0
    error_code: str = ""
    sql_state: str = ""
    error_class: ErrorClass | None = None
    detail: str = ""
    validation_issues: list[ValidationIssue] = Field(default_factory=list)
    info: list[InfoEntry] = Field(default_factory=list)
    failed_version: str = ""
    attempt: int = 1
    migration_set: str = ""
    db_message: str = ""
    applied_repeatables: list[str] = Field(default_factory=list)
    repaired: list[str] = Field(default_factory=list)
    skipped: str = ""  # why nothing ran (nothing to repair or adopt, a dry run's verdict)


def _looks_like_flyway(doc: dict[str, Any]) -> bool:
    error = doc.get("error")
    if isinstance(error, dict) and isinstance(error.get("errorCode"), str) and error["errorCode"]:
        return True
    operation = doc.get("operation")
    if not isinstance(operation, str) or not operation:
        return False
    return (
        "success" in doc
        or "validationSuccessful" in doc
        or (operation == "info" and "flywayVersion" in doc)
        or (operation == "baseline" and "successfullyBaselined" in doc)
        or (operation == "repair" and "repairActions" in doc)
    )


def find_flyway_document(text: str) -> dict[str, Any] | None:
    """Return the first JSON object in ``text`` that is a Flyway result or error envelope.

    Log lines, SLF4J warnings and unrelated JSON objects around it are skipped; an object nested
    inside a skipped one is never promoted (go-bricks ``parseFlywayJSON`` rules).
    """
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            return None
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            pos = start + 1
            continue
        if isinstance(value, dict) and _looks_like_flyway(value):
            return value
        pos = end


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


_CONNECTION_PATTERNS: Final = (
    "connection refused", "could not connect", "unknown host", "no route to host",
    "connection timed out", "i/o error: connect", "connection attempt failed", "unknownhostexception",
)  # fmt: skip
_LOCK_PATTERNS: Final = (
    "advisory lock", "could not acquire change log lock", "unable to obtain lock",
    "lock acquisition timed out", "lock wait timeout",
)  # fmt: skip
_HISTORY_CODES: Final = frozenset(
    {
        "APPLIED_VERSIONED_MIGRATION_NOT_RESOLVED", "APPLIED_REPEATABLE_MIGRATION_NOT_RESOLVED",
        "TYPE_MISMATCH", "DESCRIPTION_MISMATCH", "NON_EMPTY_SCHEMA_WITHOUT_SCHEMA_HISTORY_TABLE",
        "DUPLICATE_VERSIONED_MIGRATION", "DUPLICATE_REPEATABLE_MIGRATION",
    }
)  # fmt: skip


def classify_failure(
    error_code: str, *, sql_state: str = "", message: str = "", item_codes: tuple[str, ...] = ()
) -> ErrorClass:
    """Map a Flyway failure to the published :class:`ErrorClass`.

    Flyway's ``errorCode`` and SQLSTATE decide first; message patterns (lower-cased, first 16 KiB)
    second, loosely on purpose: a false positive beats an unexplained ``internal_error``.
    """
    msg = message[:16384].lower()
    codes = {error_code, *item_codes}
    if (
        "CHECKSUM_MISMATCH" in codes
        or "checksum mismatch" in msg
        or ("validate failed" in msg and "checksum" in msg)
    ):
        return ErrorClass.CHECKSUM_MISMATCH
    if (
        codes & _HISTORY_CODES
        or "detected failed migration" in msg
        or "detected resolved migration not applied" in msg
        or (
            ("schema history" in msg or "schema_history" in msg)
            and ("corrupt" in msg or "inconsistent" in msg)
        )
    ):
        return ErrorClass.SCHEMA_HISTORY_CORRUPT
    if "FAILED_VERSIONED_MIGRATION" in item_codes or "FAILED_REPEATABLE_MIGRATION" in item_codes:
        return ErrorClass.SCHEMA_HISTORY_CORRUPT  # a failed row left in history (validate's view)
    if by_state := classify_sql_state(sql_state):
        return by_state
    if error_code in _SCRIPT_CODES and sql_state:
        return ErrorClass.SCRIPT_FAILED  # the database said why, and it is not the database's fault
    if any(p in msg for p in _LOCK_PATTERNS):
        return ErrorClass.LOCK_TIMEOUT
    if error_code == "SCHEMA_DOES_NOT_EXIST":
        return ErrorClass.TARGET_NOT_READY
    if error_code == "DB_CONNECTION" or any(p in msg for p in _CONNECTION_PATTERNS):
        return ErrorClass.TARGET_UNREACHABLE
    if error_code in _SCRIPT_CODES:
        return ErrorClass.SCRIPT_FAILED
    return ErrorClass.INTERNAL_ERROR


_SCRIPT_CODES: Final = frozenset({"FAILED_VERSIONED_MIGRATION", "FAILED_REPEATABLE_MIGRATION"})
_DB_MESSAGE: Final = re.compile(r"^Message\s*:\s*(.+)$", re.M)
DB_MESSAGE_MAX: Final = 300


def database_message(flyway_message: str) -> str:
    """The database's primary message from Flyway's failed-script text ("" when there is none).

    Only the ``Message :`` line: PostgreSQL's DETAIL/WHERE lines follow it indented and may quote
    row values. Control characters are dropped; the text is cut at :data:`DB_MESSAGE_MAX`.
    """
    match = _DB_MESSAGE.search(flyway_message)
    if match is None:
        return ""
    line = "".join(c for c in match.group(1) if c.isprintable()).strip()
    return line if len(line) <= DB_MESSAGE_MAX else line[: DB_MESSAGE_MAX - 1] + "…"


# SQLSTATEs that say "the database, not the script": retried within the tenant's retry budget.
# Everything else a script can raise (22 data, 23 integrity, 42 syntax/privilege, P0 raise, 0A,
# 25, 2B, 57014 query_canceled, 58 system, XX internal) is the tenant's own failure: not retried.
_STATE_CLASSES: Final = (
    ("08", ErrorClass.TARGET_UNREACHABLE),  # connection exception: refused, broken, lost
    ("28", ErrorClass.TARGET_UNREACHABLE),  # authentication: the secret is re-read first
    ("57P01", ErrorClass.TARGET_UNREACHABLE),  # admin_shutdown (server stopping, backend killed)
    ("57P02", ErrorClass.TARGET_UNREACHABLE),  # crash_shutdown (another backend crashed)
    ("57P05", ErrorClass.TARGET_UNREACHABLE),  # idle_session_timeout
    ("57P03", ErrorClass.TARGET_NOT_READY),  # cannot_connect_now (starting up, recovering)
    ("53", ErrorClass.TARGET_NOT_READY),  # insufficient resources: connections, memory, disk
    ("3D000", ErrorClass.TARGET_NOT_READY),  # database does not exist (yet)
    ("3F000", ErrorClass.TARGET_NOT_READY),  # schema does not exist (yet)
    ("55P03", ErrorClass.LOCK_TIMEOUT),  # lock_not_available
    ("40P01", ErrorClass.LOCK_TIMEOUT),  # deadlock_detected: the transaction was rolled back
    ("40001", ErrorClass.LOCK_TIMEOUT),  # serialization_failure: rolled back, safe to re-run
)


def classify_sql_state(sql_state: str) -> ErrorClass | None:
    """The published class of an infrastructure SQLSTATE, or None for the tenant's own failures."""
    for prefix, error_class in _STATE_CLASSES:
        if sql_state.startswith(prefix):
            return error_class
    return None


def _script_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _script_version(path: str) -> str:
    """``V3_1__add_x.sql`` → ``3.1``; "" for anything else (repeatables, no path)."""
    match = _VERSIONED_SCRIPT.match(_script_name(path))
    return match.group(1).replace("_", ".") if match else ""


_VERSIONED_SCRIPT: Final = re.compile(r"^V([0-9][0-9._]*?)__")


def _failure_detail(error_code: str, error: dict[str, Any]) -> str:
    parts = [error_code or "UNKNOWN"]
    if path := _text(error.get("path")):
        parts.append(f"in {_script_name(path)}")
    if line := _text(error.get("lineNumber")):
        parts.append(f"line {line}")
    if sql_state := _text(error.get("sqlState")):
        parts.append(f"(SQLSTATE {sql_state})")
    return " ".join(parts)


def outcome_from_document(action: Action, doc: dict[str, Any]) -> FlywayOutcome:
    """Turn one Flyway JSON document into a :class:`FlywayOutcome` (success decided here)."""
    common: dict[str, Any] = {
        "action": action,
        "flyway_version": _text(doc.get("flywayVersion")),
        "schema_name": _text(doc.get("schemaName")),
    }
    error = doc.get("error")
    if isinstance(error, dict):
        code = _text(error.get("errorCode"))
        sql_state = _text(error.get("sqlState"))
        message = _text(error.get("message")) + " " + _text(doc.get("exception"))
        cause = error.get("cause")
        while isinstance(cause, dict):
            message += " " + _text(cause.get("message"))
            cause = cause.get("cause")
        applied = [_text(m.get("version")) for m in doc.get("migrations") or [] if isinstance(m, dict)]
        starting = _text(doc.get("initialSchemaVersion"))
        return FlywayOutcome(
            **common,
            success=False,
            starting_version=starting,
            ending_version=next((v for v in reversed(applied) if v), starting),
            applied_versions=[v for v in applied if v],
            migrations_executed=_int(doc.get("migrationsExecuted")),
            error_code=code,
            sql_state=sql_state,
            error_class=classify_failure(code, sql_state=sql_state, message=message),
            detail=_failure_detail(code, error),
            failed_version=_script_version(_text(error.get("path"))),
            db_message=database_message(_text(error.get("message"))) if code in _SCRIPT_CODES else "",
        )
    if action is Action.VALIDATE:
        return _validate_outcome(common, doc)
    if action is Action.INFO:
        return _info_outcome(common, doc)
    if action is Action.BASELINE:
        return _baseline_outcome(common, doc)
    if action is Action.REPAIR:
        return _repair_outcome(common, doc)
    migrations = [m for m in doc.get("migrations") or [] if isinstance(m, dict)]
    applied = [_text(m.get("version")) for m in migrations]
    starting = _text(doc.get("initialSchemaVersion"))
    success = doc.get("success") is True
    return FlywayOutcome(
        **common,
        success=success,
        starting_version=starting,
        ending_version=_text(doc.get("targetSchemaVersion")) or starting,
        applied_versions=[v for v in applied if v],
        applied_repeatables=[
            _text(m.get("description")) for m in migrations if _text(m.get("category")) == "Repeatable"
        ],
        migrations_executed=_int(doc.get("migrationsExecuted")),
        duration_ms=_int(doc.get("totalMigrationTime")),
        error_class=None if success else ErrorClass.INTERNAL_ERROR,
        detail="" if success else "migrate reported success=false without an error",
    )


def _validate_outcome(common: dict[str, Any], doc: dict[str, Any]) -> FlywayOutcome:
    issues = [
        ValidationIssue(
            version=_text(m.get("version")),
            description=_text(m.get("description")),
            error_code=_text((m.get("errorDetails") or {}).get("errorCode")),
        )
        for m in doc.get("invalidMigrations") or []
        if isinstance(m, dict)
    ]
    if doc.get("validationSuccessful") is True:
        return FlywayOutcome(**common, success=True)
    raw_details = doc.get("errorDetails")
    details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    code = _text(details.get("errorCode"))
    message = _text(details.get("errorMessage")) + " " + _text(doc.get("allErrorMessages"))
    item_codes = tuple(i.error_code for i in issues)
    versions = ", ".join(f"{i.version or '(repeatable)'}:{i.error_code}" for i in issues)
    return FlywayOutcome(
        **common,
        success=False,
        error_code=code,
        error_class=classify_failure(code, message=message, item_codes=item_codes),
        detail=f"{code or 'VALIDATE_ERROR'}" + (f" [{versions}]" if versions else ""),
        validation_issues=issues,
    )


def _info_outcome(common: dict[str, Any], doc: dict[str, Any]) -> FlywayOutcome:
    entries = [
        InfoEntry(
            version=_text(m.get("version")),
            description=_text(m.get("description")),
            state=_text(m.get("state")),
            category=_text(m.get("category")),
        )
        # Every entry, Flyway's own rows too (a baseline or a delete marker: category ""), so the
        # schema's whole story is there; consumers select by state and category.
        for m in doc.get("migrations") or []
        if isinstance(m, dict)
    ]
    current = _text(doc.get("schemaVersion"))
    return FlywayOutcome(
        **common,
        success=True,
        starting_version=current,
        ending_version=current,
        pending_versions=[e.version for e in entries if e.versioned and e.state == "Pending"],
        info=entries,
    )


def _baseline_outcome(common: dict[str, Any], doc: dict[str, Any]) -> FlywayOutcome:
    success = doc.get("successfullyBaselined") is True
    version = _text(doc.get("baselineVersion"))
    return FlywayOutcome(
        **common,
        success=success,
        ending_version=version if success else "",
        applied_versions=[version] if success and version else [],
        error_class=None if success else ErrorClass.INTERNAL_ERROR,
        detail="" if success else "baseline reported successfullyBaselined=false",
    )


_REPAIR_LISTS: Final = (
    ("migrationsRemoved", "removed failed"),
    ("migrationsAligned", "realigned"),
    ("migrationsDeleted", "marked deleted"),
)


def _repair_outcome(common: dict[str, Any], doc: dict[str, Any]) -> FlywayOutcome:
    """What ``repair`` changed, one line per history row (``removed failed 4``, ``realigned R views``)."""
    repaired = [
        f"{said} {_text(m.get('version')) or 'R ' + _text(m.get('description'))}"
        for key, said in _REPAIR_LISTS
        for m in doc.get(key) or []
        if isinstance(m, dict)
    ]
    return FlywayOutcome(**common, success=True, repaired=repaired)


def outcome_of_failure(details: Sequence[object]) -> FlywayOutcome | None:
    """The outcome a failed Flyway activity carried in its ``ApplicationError`` details, if any.

    The details are written by ``activities.errors.to_application_error``: the error type, then
    the outcome as a JSON object. Found by shape, not position; a detail that is not an outcome
    is skipped.
    """
    for detail in details:
        if isinstance(detail, dict):
            with contextlib.suppress(ValidationError):
                return FlywayOutcome.model_validate(detail)
    return None
