"""A Flyway CLI run's scratch folder (its HOME and placeholders) outlives no run: a worker killed mid-run
leaves its folders, and the next worker to start sweeps them, never a live run's."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywayInstall, FlywaySettings
from fleetway.activities.flyway.scratch import scratch_folder

# A run in another process, killed as a worker is (SIGKILL): nothing of its own cleans up.
_KILLED_RUN = """
import sys, time
from fleetway.activities.flyway.scratch import scratch_folder
with scratch_folder() as folder:
    (folder / "placeholders.toml").write_text("[flyway.placeholders]\\nregion = 'eu'\\n")
    print(folder, flush=True)
    time.sleep(600)
"""


def test_a_restarted_worker_sweeps_what_killed_runs_left_and_never_a_live_runs_folder(
    flyway_install: FlywayInstall,
) -> None:
    killed: list[Path] = []
    for _ in range(3):
        run = subprocess.Popen([sys.executable, "-c", _KILLED_RUN], stdout=subprocess.PIPE, text=True)
        assert run.stdout is not None
        killed.append(Path(run.stdout.readline().strip()))
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
        run.stdout.close()
    assert all(folder.exists() for folder in killed)  # left behind, placeholders and all

    with scratch_folder() as live:  # a run of this worker, in flight
        FlywayRunner(flyway_install, FlywaySettings())  # a worker's CLI engine starting up
        assert live.exists()
        assert not any(folder.exists() for folder in killed)
    assert not live.exists()  # a finished run removes its own
