"""Nothing fleetway runs for the demo, the tests or the benchmark talks beyond loopback.

Judged by the kernel's view: ``strace`` records every ``connect``/``sendto``/``sendmsg`` of the
demo and every process it starts (PostgreSQL, the Temporal dev server and UI, the worker, its
Flyway runs on either engine, the CLI). Skipped where strace is not installed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fleet import FLEETWAY

_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("engine", ["auto", "cli"])
def test_the_demo_on_either_engine_makes_no_traffic_beyond_loopback(engine: str, tmp_path: Path) -> None:
    log = tmp_path / "strace.log"
    env = dict(os.environ) | {"FLEETWAY_FLYWAY__ENGINE": engine}
    done = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(log),
         FLEETWAY, "demo", "--tenants", "2"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 tenants: succeeded=2" in done.stdout
    peers = [a or b for line in log.read_text().splitlines() for a, b in _ADDRESS.findall(line)]
    assert len(peers) > 20  # the stack did talk (to itself): the trace saw it
    outside = sorted({p for p in peers if not ipaddress.ip_address(p.removeprefix("::ffff:")).is_loopback})
    assert outside == [], f"traffic beyond loopback: {outside}"
