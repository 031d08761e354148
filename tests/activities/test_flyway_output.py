"""Parsing and classification of Flyway JSON, on documents shaped like the pinned 12.4.0's output."""

from __future__ import annotations

import json

import pytest

from fleetway.activities.database_target import (
    DatabaseTarget,
    TlsSettings,
    Vendor,
    flyway_environment,
    jdbc_url,
)
from fleetway.activities.errors import FlywayReportedFailureError, UnsafeEnvValueError, to_application_error
from fleetway.activities.flyway.output import (
    Action,
    ErrorClass,
    FlywayOutcome,
    classify_failure,
    find_flyway_document,
    outcome_from_document,
    outcome_of_failure,
)
from fleetway.activities.redaction import REDACTED, SHORT_PASSWORD_SENTINEL, redact

SUCCESS = {
    "database": "postgres", "databaseType": "PostgreSQL", "exception": None, "flywayVersion": "12.4.0",
    "initialSchemaVersion": "2", "licenseFailed": False,
    "migrations": [{"category": "Versioned", "version": "3"}, {"category": "Repeatable", "version": ""}],
    "migrationsExecuted": 2, "operation": "migrate", "schemaName": "t1", "success": True,
    "targetSchemaVersion": "3", "totalMigrationTime": 12, "warnings": [],
}  # fmt: skip


def test_document_is_found_among_log_lines_and_unrelated_json() -> None:
    noise = 'SLF4J: no binder\nconfig {maxPoolSize=10}\n{"level":"INFO","success":true}\n[{"operation":"x","success":true}]\n'
    doc = find_flyway_document(noise + json.dumps(SUCCESS, indent=2) + "\ntrailing garbage {")
    assert doc == SUCCESS


def test_object_nested_inside_a_noise_object_is_never_promoted() -> None:
    text = '{"log": {"operation": "migrate", "success": true}}'
    assert find_flyway_document(text) is None


def test_success_document_maps_versions_and_skips_repeatables() -> None:
    outcome = outcome_from_document(Action.MIGRATE, SUCCESS)
    assert outcome.success
    assert (outcome.starting_version, outcome.ending_version) == ("2", "3")
    assert outcome.applied_versions == ["3"]
    assert outcome.duration_ms == 12


def test_noop_migrate_with_null_target_keeps_the_starting_version() -> None:
    doc = {**SUCCESS, "migrations": [], "migrationsExecuted": 0, "targetSchemaVersion": None}
    outcome = outcome_from_document(Action.MIGRATE, doc)
    assert (outcome.starting_version, outcome.ending_version, outcome.applied_versions) == ("2", "2", [])


def test_success_false_without_error_is_a_failure() -> None:
    outcome = outcome_from_document(Action.MIGRATE, {**SUCCESS, "success": False})
    assert not outcome.success
    assert outcome.error_class is ErrorClass.INTERNAL_ERROR


def test_error_envelope_keeps_free_text_out_of_detail() -> None:
    doc = {
        "error": {
            "errorCode": "DB_CONNECTION",
            "sqlState": "08001",
            "message": "Connection to db.internal:5432 refused",
        }
    }
    outcome = outcome_from_document(Action.MIGRATE, doc)
    assert not outcome.success
    assert outcome.error_class is ErrorClass.TARGET_UNREACHABLE
    assert outcome.detail == "DB_CONNECTION (SQLSTATE 08001)"
    assert "db.internal" not in outcome.model_dump_json()


@pytest.mark.parametrize(
    ("code", "sql_state", "message", "items", "expected"),
    [
        (
            "VALIDATE_ERROR",
            "",
            "Validate failed: Migration checksum mismatch for migration version 2",
            (),
            ErrorClass.CHECKSUM_MISMATCH,
        ),
        (
            "VALIDATE_ERROR",
            "",
            "Migrations have failed validation",
            ("CHECKSUM_MISMATCH",),
            ErrorClass.CHECKSUM_MISMATCH,
        ),
        (
            "ERROR",
            "",
            "Number of retries exceeded while attempting to acquire PostgreSQL advisory lock",
            (),
            ErrorClass.LOCK_TIMEOUT,
        ),
        (
            "VALIDATE_ERROR",
            "",
            "Detected failed migration to version 3 (x)",
            (),
            ErrorClass.SCHEMA_HISTORY_CORRUPT,
        ),
        (
            "VALIDATE_ERROR",
            "",
            "",
            ("APPLIED_VERSIONED_MIGRATION_NOT_RESOLVED",),
            ErrorClass.SCHEMA_HISTORY_CORRUPT,
        ),
        ("SCHEMA_DOES_NOT_EXIST", "", "Schema doesn't exist yet", (), ErrorClass.TARGET_NOT_READY),
        ("DB_CONNECTION", "3D000", "database does not exist", (), ErrorClass.TARGET_NOT_READY),
        ("DB_CONNECTION", "28P01", "password authentication failed", (), ErrorClass.TARGET_UNREACHABLE),
        ("DB_CONNECTION", "", "java.net.UnknownHostException: nope", (), ErrorClass.TARGET_UNREACHABLE),
        ("FAILED_VERSIONED_MIGRATION", "42601", "syntax error", (), ErrorClass.SCRIPT_FAILED),
        # A server shutting down under a running migration: the database's fault, retried.
        (
            "DB_CONNECTION",
            "57P01",
            "terminating connection due to administrator command",
            (),
            ErrorClass.TARGET_UNREACHABLE,
        ),
        ("FAILED_VERSIONED_MIGRATION", "57P01", "terminating connection", (), ErrorClass.TARGET_UNREACHABLE),
        (
            "FAILED_VERSIONED_MIGRATION",
            "57P02",
            "crash of another server process",
            (),
            ErrorClass.TARGET_UNREACHABLE,
        ),
        ("DB_CONNECTION", "57P03", "the database system is starting up", (), ErrorClass.TARGET_NOT_READY),
        ("FAILED_VERSIONED_MIGRATION", "08006", "An I/O error occurred", (), ErrorClass.TARGET_UNREACHABLE),
        ("DB_CONNECTION", "53300", "too many clients already", (), ErrorClass.TARGET_NOT_READY),
        ("FAILED_VERSIONED_MIGRATION", "40P01", "deadlock detected", (), ErrorClass.LOCK_TIMEOUT),
        ("FAILED_VERSIONED_MIGRATION", "40001", "could not serialize access", (), ErrorClass.LOCK_TIMEOUT),
        ("DB_CONNECTION", "", "Connection to 127.0.0.1:1 refused", (), ErrorClass.TARGET_UNREACHABLE),
        # The tenant's own SQL: never retried.
        ("FAILED_VERSIONED_MIGRATION", "23505", "duplicate key", (), ErrorClass.SCRIPT_FAILED),
        ("FAILED_VERSIONED_MIGRATION", "22012", "division by zero", (), ErrorClass.SCRIPT_FAILED),
        ("FAILED_VERSIONED_MIGRATION", "P0001", "raise exception", (), ErrorClass.SCRIPT_FAILED),
        ("FAILED_VERSIONED_MIGRATION", "57014", "canceling statement", (), ErrorClass.SCRIPT_FAILED),
        ("FAILED_VERSIONED_MIGRATION", "XX000", "internal error", (), ErrorClass.SCRIPT_FAILED),
        ("FAULT", "", "NullPointerException", (), ErrorClass.INTERNAL_ERROR),
        # go-bricks' free-text rules, each pinned.
        (
            "VALIDATE_ERROR",
            "",
            "Validate failed: 1 migrations contain unresolved or invalid checksums",
            (),
            ErrorClass.CHECKSUM_MISMATCH,
        ),
        (
            "ERROR",
            "",
            "Migration checksum mismatch for migration version 2",
            (),
            ErrorClass.CHECKSUM_MISMATCH,
        ),
        (
            "ERROR",
            "",
            "The schema_history table is in an inconsistent state",
            (),
            ErrorClass.SCHEMA_HISTORY_CORRUPT,
        ),
        ("ERROR", "", "schema history table looks corrupt", (), ErrorClass.SCHEMA_HISTORY_CORRUPT),
        (
            "VALIDATE_ERROR",
            "",
            "Detected resolved migration not applied to database: 5.1",
            (),
            ErrorClass.SCHEMA_HISTORY_CORRUPT,
        ),
        ("ERROR", "", "Could not acquire change log lock", (), ErrorClass.LOCK_TIMEOUT),
        ("ERROR", "", "Unable to obtain lock on the table", (), ErrorClass.LOCK_TIMEOUT),
        ("ERROR", "", "Lock acquisition timed out", (), ErrorClass.LOCK_TIMEOUT),
        ("ERROR", "", "Lock wait timeout exceeded", (), ErrorClass.LOCK_TIMEOUT),
        ("ERROR", "", "Connection refused", (), ErrorClass.TARGET_UNREACHABLE),
        ("ERROR", "", "could not connect to server", (), ErrorClass.TARGET_UNREACHABLE),
        ("ERROR", "", "Unknown host db.internal", (), ErrorClass.TARGET_UNREACHABLE),
        ("ERROR", "", "No route to host", (), ErrorClass.TARGET_UNREACHABLE),
        ("ERROR", "", "Connection timed out", (), ErrorClass.TARGET_UNREACHABLE),
        ("ERROR", "", "I/O error: connect", (), ErrorClass.TARGET_UNREACHABLE),
        # A failed script without a SQLSTATE (a driver-side failure) is still the script's.
        (
            "FAILED_REPEATABLE_MIGRATION",
            "",
            "Failed to execute script R__views.sql",
            (),
            ErrorClass.SCRIPT_FAILED,
        ),
    ],
)
def test_failures_are_classified_by_code_first_and_message_second(
    code: str, sql_state: str, message: str, items: tuple[str, ...], expected: ErrorClass
) -> None:
    assert classify_failure(code, sql_state=sql_state, message=message, item_codes=items) is expected


def test_redaction_covers_raw_url_encoded_and_json_escaped_forms() -> None:
    pw = 'p@ss w/"rd+1'
    text = (
        f"raw {pw} url {'p%40ss%20w%2F%22rd%2B1'} plus {'p%40ss+w%2F%22rd%2B1'} json {json.dumps(pw)[1:-1]}"
    )
    out = redact(text, pw)
    assert out.count(REDACTED) == 4
    assert "rd+1" not in out and "rd%2B1" not in out


def test_numeric_password_is_masked_in_strings_but_never_corrupts_json_numbers() -> None:
    doc = json.dumps({"totalMigrationTime": 12345678, "error": {"errorCode": "X", "message": "pw 12345678"}})
    out = json.loads(redact(doc, "12345678"))
    assert out["totalMigrationTime"] == 12345678
    assert out["error"]["message"] == f"pw {REDACTED}"


def test_short_password_suppresses_the_whole_output() -> None:
    assert redact("anything pw1 here", "pw1") == SHORT_PASSWORD_SENTINEL
    assert redact("nothing to hide", "") == "nothing to hide"


def test_oracle_target_maps_to_a_thin_url_and_postgres_carries_tls_parameters() -> None:
    oracle = DatabaseTarget(
        vendor=Vendor.ORACLE,
        host="ora.example",
        port=1521,
        database="PDB1",
        user="app",
        password="longenough",
    )
    assert jdbc_url(oracle) == "jdbc:oracle:thin:@//ora.example:1521/PDB1"
    pg = DatabaseTarget(
        host="db", database="app", user="u", tls=TlsSettings(mode="verify-full", ca_file="/ca.pem")
    )
    assert jdbc_url(pg) == "jdbc:postgresql://db:5432/app?sslmode=verify-full&sslrootcert=%2Fca.pem"
    env = flyway_environment(oracle)
    assert env == {"FLYWAY_URL": jdbc_url(oracle), "FLYWAY_USER": "app", "FLYWAY_PASSWORD": "longenough"}


@pytest.mark.parametrize("field", ["database", "user", "schema_name"])
def test_control_characters_in_any_connection_field_are_rejected_naming_the_field(field: str) -> None:
    target = DatabaseTarget.model_validate({"host": "db", "database": "app", "user": "u", field: "a\nb"})
    with pytest.raises(UnsafeEnvValueError):
        flyway_environment(target)


def test_host_that_could_smuggle_url_parameters_is_rejected() -> None:
    with pytest.raises(ValueError, match="host"):
        DatabaseTarget(host="db/app?socketFactory=evil", database="app", user="u")


def test_a_failed_script_names_its_version() -> None:
    doc = {
        "error": {"errorCode": "FAILED_VERSIONED_MIGRATION", "sqlState": "42601",
                  "path": "/m/V3_1__add_index.sql", "message": "x"},
        "initialSchemaVersion": "2", "migrations": [{"version": "3"}],
    }  # fmt: skip
    outcome = outcome_from_document(Action.MIGRATE, doc)
    assert outcome.failed_version == "3.1"
    assert outcome.ending_version == "3"
    repeatable = {"error": {"errorCode": "FAILED_REPEATABLE_MIGRATION", "path": "/m/R__views.sql"}}
    assert outcome_from_document(Action.MIGRATE, repeatable).failed_version == ""


def test_a_failed_run_s_outcome_survives_the_trip_through_the_activity_error() -> None:
    """What Flyway did before failing reaches the workflow, whatever else the details hold."""
    outcome = FlywayOutcome(
        action=Action.MIGRATE, success=False, applied_versions=["1", "2"], failed_version="3"
    )
    error = to_application_error(
        FlywayReportedFailureError("failed", error_class=ErrorClass.SCRIPT_FAILED, outcome=outcome)
    )
    assert outcome_of_failure(error.details) == outcome
    assert outcome_of_failure(["script_failed", {"not": "an outcome"}]) is None
    assert outcome_of_failure([]) is None
