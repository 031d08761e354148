"""The README's demo command, end to end, with credentials in each real secret store."""

from __future__ import annotations

import os

import pytest

from tests.fleet import fleetway


@pytest.mark.parametrize("backend", ["vault", "aws"])
def test_demo_rollout_with_credentials_in_a_real_secret_store(backend: str) -> None:
    done = fleetway("demo", "--tenants", "4", "--secrets", backend, env=dict(os.environ), timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 tenants: succeeded=4" in done.stdout
    assert ("OpenBao" if backend == "vault" else "AWS Secrets Manager (moto)") in done.stderr
