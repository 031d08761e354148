"""One tenant's database connection, as a secret backend resolves it, and its JDBC form per vendor.

A ``DatabaseTarget`` holds a password, so it lives only inside the activity that resolved it: it
never enters workflow history, an activity result, a log line or argv. Must not: do I/O.
"""

from __future__ import annotations

import re
import urllib.parse
from enum import StrEnum
from typing import Final

from psycopg.conninfo import make_conninfo
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from fleetway.activities.errors import UnsafeEnvValueError, UnsafeIdentifierError

__all__ = [
    "PG_IDENTIFIER",
    "DatabaseTarget",
    "TlsSettings",
    "Vendor",
    "check_env_safe",
    "check_pg_identifier",
    "flyway_environment",
    "jdbc_url",
    "libpq_conninfo",
    "server_key",
]

PG_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_HOST: Final = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])$")
_CONTROL: Final = ("\r", "\n", "\x00")


class Vendor(StrEnum):
    """Database vendors fleetway maps to JDBC. Only ``postgresql`` is tested end to end."""

    POSTGRESQL = "postgresql"
    ORACLE = "oracle"


class TlsSettings(BaseModel):
    """TLS for the JDBC connection; file paths are on the worker's filesystem."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


class DatabaseTarget(BaseModel):
    """Where one tenant's migrations run and with which credentials.

    ``schema_name`` selects schema-per-tenant (Flyway's ``-schemas``/``-defaultSchema``); empty
    means the database's default schema (database-per-tenant).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor: Vendor = Vendor.POSTGRESQL
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(min_length=1, max_length=128)
    schema_name: str = ""
    user: str = Field(min_length=1, max_length=128)
    password: SecretStr = SecretStr("")
    tls: TlsSettings = TlsSettings()

    @field_validator("host")
    @classmethod
    def _host_is_a_hostname(cls, value: str) -> str:
        if not _HOST.fullmatch(value):
            raise ValueError("host must be a DNS name or an IP address")
        return value


def server_key(target: DatabaseTarget) -> str:
    """``host:port``: tenants with the same key share a database server (never a login)."""
    return f"{target.host.lower()}:{target.port}"


def check_pg_identifier(value: str, *, field: str) -> str:
    """Return ``value`` if it is a safe unquoted PostgreSQL identifier, else raise.

    Raises:
        UnsafeIdentifierError: the value breaks ``^[A-Za-z_][A-Za-z0-9_]{0,62}$``; the message
            names ``field`` and the rule, and echoes the value escaped (identifiers are not secret).
    """
    if not PG_IDENTIFIER.fullmatch(value):
        raise UnsafeIdentifierError(
            f"{field} {value!r} is not a safe identifier (^[A-Za-z_][A-Za-z0-9_]{{0,62}}$)"
        )
    return value


def check_env_safe(fields: dict[str, str]) -> None:
    """Reject CR, LF or NUL in any value bound for a child process's environment.

    Raises:
        UnsafeEnvValueError: naming the first offending field, never its value.
    """
    for name, value in fields.items():
        if any(c in value for c in _CONTROL):
            raise UnsafeEnvValueError(f"{name} contains a CR, LF or NUL character")


def jdbc_url(target: DatabaseTarget) -> str:
    """Build the JDBC URL for ``target`` (no credentials: those travel as separate variables)."""
    host = f"{target.host}:{target.port}"
    if target.vendor is Vendor.ORACLE:
        # Oracle: the database field is the service name (PDB); the schema is the connecting user.
        return f"jdbc:oracle:thin:@//{host}/{urllib.parse.quote(target.database, safe='')}"
    params = {
        "sslmode": target.tls.mode,
        "sslrootcert": target.tls.ca_file,
        "sslcert": target.tls.cert_file,
        "sslkey": target.tls.key_file,
    }
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    url = f"jdbc:postgresql://{host}/{urllib.parse.quote(target.database, safe='')}"
    return f"{url}?{query}" if query else url


def libpq_conninfo(
    target: DatabaseTarget, *, application_name: str, connect_timeout: int = 10, read_only: bool = True
) -> str:
    """A libpq connection string reaching ``target`` as Flyway does (TLS included).

    Read-only unless asked otherwise: every transaction of the session starts read-only
    (``default_transaction_read_only``), so a read, a health probe or a statement slipped into
    one can change nothing, autocommit or not (psycopg's ``set_read_only`` covers only the
    transactions it begins itself, none in autocommit). Only Flyway's own sessions and the
    cleanup after a failed concurrent index build write.

    Holds the password: pass it straight to the connection call, never log it.
    """
    params = {
        # JDBC wants an IPv6 literal in brackets ([::1]), libpq without them.
        "host": target.host.removeprefix("[").removesuffix("]"),
        "port": str(target.port),
        "dbname": target.database,
        "user": target.user,
        "password": target.password.get_secret_value(),
        "connect_timeout": str(connect_timeout),
        "application_name": application_name,
        "sslmode": target.tls.mode,
        "sslrootcert": target.tls.ca_file,
        "sslcert": target.tls.cert_file,
        "sslkey": target.tls.key_file,
        "options": "-c default_transaction_read_only=on" if read_only else "",
    }
    return make_conninfo(**{k: v for k, v in params.items() if v})


def flyway_environment(target: DatabaseTarget) -> dict[str, str]:
    """The ``FLYWAY_*`` variables that carry the connection to Flyway (never argv).

    Raises:
        UnsafeEnvValueError: a field holds CR, LF or NUL.
        UnsafeIdentifierError: the PostgreSQL schema name is not a safe identifier.
    """
    password = target.password.get_secret_value()
    check_env_safe(
        {
            "host": target.host,
            "database": target.database,
            "schema": target.schema_name,
            "user": target.user,
            "password": password,
            "tls.mode": target.tls.mode,
            "tls.ca_file": target.tls.ca_file,
            "tls.cert_file": target.tls.cert_file,
            "tls.key_file": target.tls.key_file,
        }
    )
    env = {"FLYWAY_URL": jdbc_url(target), "FLYWAY_USER": target.user}
    if password:
        env["FLYWAY_PASSWORD"] = password
    if target.schema_name and target.vendor is Vendor.POSTGRESQL:
        check_pg_identifier(target.schema_name, field="schema")
    return env
