"""The README's demo command, end to end, with credentials in each real secret store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.fleet import FLEETWAY, fleetway
from worker.devstack import PROJECT_ROOT


@pytest.mark.parametrize("backend", ["vault", "aws"])
def test_demo_rollout_with_credentials_in_a_real_secret_store(backend: str) -> None:
    env = dict(os.environ) | {"FLEETWAY_LOG_LEVEL": "DEBUG"}  # nothing may log a secret, at any level
    done = fleetway("demo", "--tenants", "4", "--secrets", backend, env=env, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 tenants: succeeded=4" in done.stdout
    assert ("OpenBao" if backend == "vault" else "AWS Secrets Manager (moto)") in done.stderr
    assert "SecretString" not in done.stderr and "password" not in done.stderr.lower()
    assert not (PROJECT_ROOT / ".fleetway" / "demo" / "vault-token").exists()
    assert not (PROJECT_ROOT / ".fleetway" / "demo" / "secrets.json").exists()


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (PostgreSQL, the Temporal server, worker, migrate)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sigint_ignored", [False, True])
def test_sigterm_mid_demo_stops_every_server_it_started(sigint_ignored: bool) -> None:
    """``sigint_ignored``: as a background job of a non-interactive shell starts it (SIGINT = SIG_IGN)."""
    # `trap '' INT` then exec: the demo inherits SIGINT ignored, under the same pid.
    ignore = "trap '' INT; " if sigint_ignored else ""
    proc = subprocess.Popen(
        ["sh", "-c", f'{ignore}exec "{FLEETWAY}" demo --tenants 4'], env=dict(os.environ),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    started: set[int] = set()
    try:
        assert proc.stderr is not None
        ui_url, postmaster = "", 0
        for line in proc.stderr:  # the stack is up and the rollout is starting
            if line.startswith("PostgreSQL: "):  # its own server, by pid: never by a name pattern
                postmaster = int(line.rsplit("(pid ", 1)[1].rstrip(")\n"))
            if line.startswith("Temporal UI: "):
                ui_url = line.split(": ", 1)[1].strip()
            if line.startswith("task queue "):  # the CLI's summary: the worker polls, migrate runs
                break
        assert ui_url and postmaster, "the demo never printed its PostgreSQL pid and Temporal UI address"
        started = _descendants(proc.pid) | {postmaster}
        assert len(started) >= 3  # PostgreSQL, the Temporal server and the worker at least

        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=90)  # EOF only once no process of the demo holds stderr
        code = proc.returncode
        leftovers = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in started if _alive(pid)]
    finally:  # a failing test must not leak the servers either
        for pid in [proc.pid, *started]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    assert code == 130, rest[-3000:]  # interrupted, like Ctrl-C
    assert not leftovers, leftovers
    port = urllib.parse.urlsplit(ui_url).port
    assert port
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # the Temporal UI is gone too
