"""Secret payload shapes (fleetway, go-bricks canonical, AWS RDS rotation) and malformed input."""

from __future__ import annotations

import json

import pytest

from fleetway.activities.database_target import Vendor
from fleetway.activities.errors import SecretMalformedError
from fleetway.activities.secrets.payload import decode_secret, parse_target

PASSWORD = "s3cret-Payload-Value"


def test_rds_rotation_shape() -> None:
    payload = {"engine": "aurora-postgresql", "host": "db.internal", "port": 5433, "username": "app",
               "password": PASSWORD, "dbname": "tenants", "dbInstanceIdentifier": "ignored"}  # fmt: skip
    target = parse_target(payload, secret_name="n")
    assert (target.vendor, target.host, target.port, target.database, target.user) == (
        Vendor.POSTGRESQL, "db.internal", 5433, "tenants", "app"
    )  # fmt: skip
    assert target.password.get_secret_value() == PASSWORD


def test_go_bricks_canonical_shape_and_canonical_wins() -> None:
    payload = {"type": "postgresql", "engine": "oracle", "host": "h", "port": "6432", "database": "d",
               "dbname": "other", "username": "u", "password": PASSWORD,
               "postgresql": {"schema": "tenant_a"}, "tls": {"mode": "verify-full", "ca": "/ca.pem"}}  # fmt: skip
    target = parse_target(payload, secret_name="n")
    assert (target.vendor, target.port, target.database, target.schema_name) == (
        Vendor.POSTGRESQL, 6432, "d", "tenant_a"
    )  # fmt: skip
    assert (target.tls.mode, target.tls.ca_file) == ("verify-full", "/ca.pem")


def test_fleetway_shape() -> None:
    payload = {"vendor": "postgresql", "host": "h", "database": "d", "schema_name": "s", "user": "u"}
    assert parse_target(payload, secret_name="n").schema_name == "s"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"host": "h", "database": "d", "password": PASSWORD}, "bad or missing user"),
        (
            {"engine": "mysql", "host": "h", "dbname": "d", "username": "u", "password": PASSWORD},
            "unsupported engine",
        ),
        (
            {"host": "h", "port": "5432x", "database": "d", "user": "u", "password": PASSWORD},
            "port must be a number",
        ),
        (
            {"host": "h", "port": [1], "database": "d", "user": "u", "password": PASSWORD},
            "bad or missing port",
        ),
        (
            {"host": "h", "database": "d", "user": "u", "password": PASSWORD + "\n"},
            "field password contains CR, LF",
        ),
        ({"host": "h", "database": "d\x00", "user": "u", "password": PASSWORD}, "field database contains"),
        (
            {"host": "h", "database": "d", "user": "u", "tls": {"ca": "/x\r"}, "password": PASSWORD},
            "tls.ca_file",
        ),
        (
            {"host": "h", "database": "d", "user": "u", "tls": "require", "password": PASSWORD},
            "tls must be an object",
        ),
        ({"host": "bad host!", "database": "d", "user": "u", "password": PASSWORD}, "bad or missing host"),
        ([PASSWORD], "must be a JSON object"),
    ],
)
def test_malformed_payloads_are_named_without_the_value(payload: object, message: str) -> None:
    with pytest.raises(SecretMalformedError, match=message) as err:
        parse_target(payload, secret_name="fleetway/migrate/t1")
    assert PASSWORD not in str(err.value)
    assert "fleetway/migrate/t1" in str(err.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "is empty"),
        ("   ", "is empty"),
        (b"\xff\xfe", "not UTF-8"),
        ('{"password": "' + PASSWORD, "not valid JSON"),
        (json.dumps([PASSWORD]), "must be a JSON object"),
    ],
)
def test_undecodable_secrets(raw: str | bytes, message: str) -> None:
    with pytest.raises(SecretMalformedError, match=message) as err:
        decode_secret(raw, secret_name="n")
    assert PASSWORD not in str(err.value)
