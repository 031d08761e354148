"""The README's walkthrough, followed literally: its ``sh`` blocks run in order in one shell (as a
reader types them into one terminal) against a real PostgreSQL and Temporal, with the ``fleetway``
the worker image installs (the Dockerfile's steps, ``tests/image_recipe.py``) first on the PATH; then
each tenant's ``flyway_schema_history`` is the judge. Its ``env`` block names exactly what the test
provides; its ``bash`` block, the install, is the image's own install step."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import psycopg

from fleetway.worker.dev.stack import PROJECT_ROOT, PostgresServer, TemporalDevServer
from tests.image_recipe import Image, read_stages
from tests.support import history

README = PROJECT_ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def walkthrough() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("## Your own fleet in ten minutes") : text.index("## Documentation")]
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(section)]


def _worker_alive(pid: int) -> bool:
    try:
        return b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _stop_worker(pid: int) -> None:
    """SIGTERM the walkthrough's own worker (checked by its command line) and wait until it is gone."""
    if _worker_alive(pid):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _worker_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _worker_alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_the_readme_stays_a_front_door() -> None:
    assert len(README.read_text().splitlines()) <= 250
    kinds = [kind for kind, _ in walkthrough()]
    assert set(kinds) == {"bash", "env", "sh"} and kinds.count("sh") >= 4 and kinds.count("bash") == 1


def test_the_readme_installs_fleetway_the_way_the_image_does() -> None:
    (install,) = [body for kind, body in walkthrough() if kind == "bash"]
    (readme_pip,) = [line.split("#")[0].split() for line in install.splitlines() if line.startswith("pip ")]
    image_pips = [run.split() for run in read_stages()[-1].runs if run.startswith("pip ")]
    assert image_pips == [
        ["pip", "install", "--no-cache-dir", "-c", "constraints.txt", "dist/fleetway-*.whl"]
    ]
    # The same pins; `pip install .` builds the wheel the image's first stage builds, then installs it.
    assert readme_pip == ["pip", "install", "-c", "constraints.txt", "."]


def test_the_walkthrough_migrates_three_tenants_of_your_own(
    installed_image: Image, postgres: PostgresServer, temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    (env_block,) = [body for kind, body in walkthrough() if kind == "env"]
    names = [line.split("=", 1)[0] for line in env_block.splitlines() if line.strip()]
    given = {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres.port),
        "PGDATABASE": "postgres",
        "PGUSER": "postgres",
        "PGPASSWORD": postgres.superuser_password,
        "FLEETWAY_TEMPORAL__ADDRESS": temporal_server.address,
    }
    assert sorted(names) == sorted(given)  # the reader sets exactly these, nothing else is needed
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLEETWAY_", "PG", "TEMPORAL_", "PYTHON", "VIRTUAL_ENV"))
    }
    env |= given | {"PATH": installed_image.path()}  # the activated install
    script = "\n".join(body for kind, body in walkthrough() if kind == "sh")
    pidfile = tmp_path / "my-fleet" / "worker.pid"
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=170, check=False,
        )  # fmt: skip
    finally:  # the walkthrough's worker, by the pid it wrote: stopped even when a step failed
        if pidfile.exists():
            _stop_worker(int(pidfile.read_text()))

    assert done.returncode == 0, f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    for tenant in ("acme", "globex", "initech"):
        assert history(postgres, tenant) == [("1", True), ("2", True), ("3", True)]
        assert f"{tenant} at version 3 all succeeded" in done.stdout
    # The ring: acme (internal) got V3 first, the others only after the bake and the approval.
    with psycopg.connect(postgres.dsn) as conn:
        v3: dict[str, datetime] = dict(
            conn.execute(
                " UNION ALL ".join(
                    f"SELECT '{t}', installed_on FROM \"{t}\".flyway_schema_history WHERE version = '3'"
                    for t in ("acme", "globex", "initech")
                )
            ).fetchall()
        )
    assert (min(v3["globex"], v3["initech"]) - v3["acme"]).total_seconds() >= 5
    assert "approved wave 'everyone'" in done.stdout
    # The release gate read the tables, and the picture was drawn from the same read.
    assert "all 3 tenants at v3 or later" in done.stdout
    assert "schema fleet ready" in done.stdout and (tmp_path / "my-fleet" / "fleet.html").exists()
    assert "3 proven current from flyway_schema_history" in done.stdout  # validate ran no Flyway
    assert "secrets.file = " in done.stdout  # `fleetway settings` showed what the reader set
    assert postgres.superuser_password not in done.stdout + done.stderr
