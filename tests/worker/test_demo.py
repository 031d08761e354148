"""The README's demo command, end to end, with credentials in each real secret store."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import urllib.parse
from pathlib import Path

import psycopg
import pytest

from fleetway.worker.dev.stack import PROJECT_ROOT
from tests.fleet import FLEETWAY, fleetway


@pytest.mark.parametrize("backend", ["vault", "aws"])
def test_demo_rollout_with_credentials_in_a_real_secret_store(backend: str) -> None:
    env = dict(os.environ) | {"FLEETWAY_LOG_LEVEL": "DEBUG"}  # nothing may log a secret, at any level
    done = fleetway("demo", "--tenants", "4", "--secrets", backend, env=env, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 tenants: succeeded=4" in done.stdout
    assert ("OpenBao" if backend == "vault" else "AWS Secrets Manager (moto)") in done.stderr
    assert "SecretString" not in done.stderr and "password" not in done.stderr.lower()
    assert "no quiesce store" not in done.stderr  # the demo's worker reads the stack's own flag store
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


def _reap(proc: subprocess.Popen[str], started: set[int]) -> None:
    """SIGKILL whatever of the demo (its own pids, never a name pattern) is still alive, and reap it."""
    for pid in [proc.pid, *started]:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


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
        _reap(proc, started)

    assert code == 130, rest[-3000:]  # interrupted, like Ctrl-C
    assert not leftovers, leftovers
    port = urllib.parse.urlsplit(ui_url).port
    assert port
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # the Temporal UI is gone too


def test_demo_hold_prints_every_address_a_user_needs_and_they_work() -> None:
    """``--hold`` names the Temporal frontend, the UI, PostgreSQL and where its password is, and
    the export lines point a user's own CLI at the stack; the password file goes with the stack."""
    proc = subprocess.Popen(
        [FLEETWAY, "demo", "--tenants", "2", "--hold"], env=dict(os.environ),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    exports: dict[str, str] = {}
    started: set[int] = set()
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("PostgreSQL: "):
                started.add(int(line.rsplit("(pid ", 1)[1].rstrip(")\n")))
            if line.startswith("  export "):
                for pair in shlex.split(line.strip()[len("export ") :]):
                    name, value = pair.split("=", 1)
                    exports[name] = value
            if line.startswith("  export PGHOST="):
                break
        text = "".join(seen)
        assert "Temporal frontend: 127.0.0.1:" in text and "Temporal UI:       http://" in text, text[-3000:]
        started |= _descendants(proc.pid)
        password_file = Path(re.search(r"password in (\S+)\)", text).group(1))  # type: ignore[union-attr]
        password = password_file.read_text()
        assert password not in text  # the file holds it, the terminal never shows it
        assert password_file.stat().st_mode & 0o777 == 0o600

        # The printed settings reach the held stack: its Temporal (the demo's rollout is there) and
        # its PostgreSQL (the demo tenants' schemas are there).
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWAY_")} | {
            k: v for k, v in exports.items() if k.startswith("FLEETWAY_")
        }
        assert env["FLEETWAY_TEMPORAL__TASK_QUEUE"] != "fleetway"
        listed = fleetway("settings", "-o", "json", env=env)
        assert listed.returncode == 0, listed.stderr
        address = {r["key"]: r["value"] for r in json.loads(listed.stdout)}["temporal.address"]
        assert address == exports["FLEETWAY_TEMPORAL__ADDRESS"]
        with socket.create_connection(("127.0.0.1", int(address.rsplit(":", 1)[1])), timeout=5):
            pass
        dsn = f"host=127.0.0.1 port={exports['PGPORT']} user=postgres dbname=postgres password={password}"
        with psycopg.connect(dsn) as conn:
            schemas = conn.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'demo_tenant_%'"
            ).fetchone()
        assert schemas == (2,)

        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=90)
    finally:
        _reap(proc, started)

    assert not password_file.exists()  # credentials of a stack that is gone
