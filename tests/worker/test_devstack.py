"""The embedded stack's prerequisite check, on this machine with programs taken off the PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fleetway.worker.dev.stack import PROJECT_ROOT


def test_missing_java_and_maven_give_one_message_naming_each_install_command(tmp_path: Path) -> None:
    # A PATH holding nothing: java and mvn are really absent for this process (no fake).
    env = {**os.environ, "PATH": str(tmp_path / "empty-bin")}
    done = subprocess.run(
        [sys.executable, "-m", "fleetway.worker.dev.stack", "setup"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one message, no traceback
    assert lines[0].startswith("prerequisite_missing: missing prerequisites: ")
    assert "java (apt-get install -y openjdk-17-jre-headless)" in lines[0]
    assert "mvn (apt-get install -y maven)" in lines[0]
    assert "./dev setup" in lines[0]
    # PostgreSQL and the temporal CLI are present here, so they are not blamed.
    assert "postgresql" not in lines[0] and "temporal" not in lines[0]
