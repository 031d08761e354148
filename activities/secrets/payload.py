"""Secret payloads → :class:`DatabaseTarget`: one parser for every backend.

Accepts three shapes, so teams can adopt fleetway without rewriting their secrets:

- fleetway's own (``vendor``, ``host``, ``port``, ``database``, ``schema_name``, ``user``,
  ``password``, ``tls{mode,ca_file,cert_file,key_file}``);
- go-bricks' canonical ``DatabaseConfig`` (``type``, ``username``, ``postgresql.schema``,
  ``tls{mode,ca,cert,key}``);
- the AWS RDS rotation shape (``engine``, ``host``, ``port``, ``username``, ``password``, ``dbname``).

When two spellings of one field are present the canonical one wins (go-bricks). Unknown keys are
ignored (RDS secrets carry e.g. ``dbInstanceIdentifier``). Must not: put a payload value in an error
message; every error names fields only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from pydantic import ValidationError

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import SecretMalformedError

__all__ = ["decode_secret", "parse_target", "target_payload"]

_ENGINES: Final = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "aurora-postgresql": "postgresql",
    "oracle": "oracle",
    "oracle-ee": "oracle",
    "oracle-se2": "oracle",
    "oracle-se": "oracle",
}
# target field -> spellings, canonical first.
_ALIASES: Final = {
    "vendor": ("vendor", "type", "engine"),
    "host": ("host",),
    "port": ("port",),
    "database": ("database", "dbname"),
    "schema_name": ("schema_name", "schema"),
    "user": ("user", "username"),
    "password": ("password",),
}
_TLS_ALIASES: Final = {
    "mode": ("mode",),
    "ca_file": ("ca_file", "ca"),
    "cert_file": ("cert_file", "cert"),
    "key_file": ("key_file", "key"),
}
_CONTROL: Final = frozenset("\r\n\x00")


def decode_secret(raw: str | bytes, *, secret_name: str) -> dict[str, object]:
    """Decode a secret string or binary into a JSON object.

    Raises:
        SecretMalformedError: empty, not UTF-8, not JSON, or not an object.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise SecretMalformedError(f"secret {secret_name!r} is not UTF-8 text") from None
    if not raw.strip():
        raise SecretMalformedError(f"secret {secret_name!r} is empty")
    try:
        document = json.loads(raw)
    except ValueError:
        raise SecretMalformedError(f"secret {secret_name!r} is not valid JSON") from None
    if not isinstance(document, dict):
        raise SecretMalformedError(f"secret {secret_name!r} must be a JSON object")
    return document


def _pick(payload: Mapping[str, object], spellings: tuple[str, ...]) -> object:
    for key in spellings:
        value = payload.get(key)
        if value not in (None, ""):
            return value
    return None


def _normalise(payload: Mapping[str, object], secret_name: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for field, spellings in _ALIASES.items():
        value = _pick(payload, spellings)
        if value is not None:
            out[field] = value
    postgresql = payload.get("postgresql")
    if "schema_name" not in out and isinstance(postgresql, Mapping):
        schema = postgresql.get("schema")
        if schema not in (None, ""):
            out["schema_name"] = schema
    vendor = out.get("vendor")
    if isinstance(vendor, str):
        engine = _ENGINES.get(vendor.strip().lower())
        if engine is None:
            raise SecretMalformedError(
                f"secret {secret_name!r}: unsupported engine/type (use postgresql or oracle)"
            )
        out["vendor"] = engine
    port = out.get("port")
    if isinstance(port, str):
        if not port.strip().isdigit():
            raise SecretMalformedError(f"secret {secret_name!r}: port must be a number")
        out["port"] = int(port)
    tls = payload.get("tls")
    if tls is not None:
        if not isinstance(tls, Mapping):
            raise SecretMalformedError(f"secret {secret_name!r}: tls must be an object")
        tls_fields = {f: v for f, s in _TLS_ALIASES.items() if (v := _pick(tls, s)) is not None}
        _reject_control(tls_fields, secret_name, prefix="tls.")
        out["tls"] = tls_fields
    _reject_control(out, secret_name, prefix="")
    return out


def _reject_control(fields: Mapping[str, object], secret_name: str, *, prefix: str) -> None:
    for field, value in fields.items():
        if isinstance(value, str) and _CONTROL.intersection(value):
            raise SecretMalformedError(
                f"secret {secret_name!r}: field {prefix}{field} contains CR, LF or NUL"
            )


def parse_target(payload: object, *, secret_name: str) -> DatabaseTarget:
    """Validate a decoded payload (any accepted shape) into a :class:`DatabaseTarget`.

    Raises:
        SecretMalformedError: naming the secret and the offending fields, never a value.
    """
    if not isinstance(payload, Mapping):
        raise SecretMalformedError(f"secret {secret_name!r} must be a JSON object")
    try:
        return DatabaseTarget.model_validate(_normalise(payload, secret_name))
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "(root)" for err in exc.errors()})
        raise SecretMalformedError(
            f"secret {secret_name!r} is not a valid database target: bad or missing {', '.join(fields)}"
        ) from None


def target_payload(target: DatabaseTarget) -> dict[str, object]:
    """The fleetway-shape payload a backend stores for ``target`` (password included: store only)."""
    payload = target.model_dump(mode="json", exclude={"password"})
    payload["password"] = target.password.get_secret_value()
    return payload
