"""What users install is what these tests test: the wheel, built and installed by the Dockerfile's own
steps (``tests/image_recipe.py``), run from a folder outside the repository, so nothing of the source
tree can be imported by accident."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import zipfile
from pathlib import Path

import typer
from temporalio.client import Client

from fleetway.worker.cli.main import app
from fleetway.worker.config.client import has_pollers
from fleetway.worker.dev.stack import PROJECT_ROOT, PostgresServer, TemporalDevServer
from fleetway.worker.flyway.fetch import LIB_SUBDIR
from tests.fleet import make_fleet
from tests.image_recipe import Image
from tests.support import DEMO_MIGRATIONS, history
from tests.test_layout import ROOMS

# Walks the installed CLI's command tree in the installed Python and asks each command for --help.
_HELP_EVERY_COMMAND = """
import json, typer
from typer.testing import CliRunner
from fleetway.worker.cli.main import app

def paths(command, prefix):
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from paths(sub, [*prefix, name])

runner = CliRunner()
answers = {}
for path in paths(typer.main.get_command(app), []):
    done = runner.invoke(app, [*path, "--help"], prog_name="fleetway")
    usage = next((line.strip() for line in done.output.splitlines() if "Usage:" in line), "")
    answers[" ".join(path)] = [done.exit_code, usage, repr(done.exception)]
print(json.dumps(answers))
"""


def _outside_env(image: Image, **extra: str) -> dict[str, str]:
    """The process environment of a user of the installed package: its bin first, no trace of the tree."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("FLEETWAY_", "PYTHON", "VIRTUAL_ENV", "PG"))
    }
    return env | {"PATH": image.path()} | extra


def _run(
    image: Image, *argv: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(image.bin / argv[0]), *argv[1:]], cwd=cwd, env=env or _outside_env(image),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _source_modules() -> set[str]:
    """Each module as the wheel names it: worker/public/ is the root package ``fleetway`` itself."""
    public = PROJECT_ROOT / "worker" / "public"
    return {
        "fleetway/" + str(path.relative_to(public if path.is_relative_to(public) else PROJECT_ROOT))
        for room in ROOMS
        for path in (PROJECT_ROOT / room).rglob("*.py")
        if "__pycache__" not in path.parts
    }


def test_the_wheel_holds_every_module_of_the_three_rooms_and_the_pinned_pom(installed_image: Image) -> None:
    (wheel,) = installed_image.wheels
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    modules = {name for name in names if name.endswith(".py")}
    assert modules == _source_modules()  # found, not listed: a new subpackage cannot be left out
    assert (
        "fleetway/activities/fleet/verdict.py" in modules
        and "fleetway/activities/servers/health.py" in modules
    )
    assert "fleetway/worker/flyway/pom.xml" in names
    assert not any(name.startswith(("tests/", "bench/", "fleetway/tests")) for name in names)


def test_the_installed_fleetway_loads_from_site_packages_in_a_folder_outside_the_tree(
    installed_image: Image, tmp_path: Path
) -> None:
    done = _run(
        installed_image, "python", "-c",
        "import fleetway.worker.process.run, fleetway.worker.cli.main as cli; print(cli.__file__)",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    library = _run(
        installed_image, "python", "-c",
        "import fleetway; from fleetway import FleetwayClient, RolloutRequest; print(fleetway.__file__)",
        cwd=tmp_path,
    )  # fmt: skip
    assert library.returncode == 0, library.stderr
    assert library.stdout.strip().endswith("site-packages/fleetway/__init__.py")
    assert Path(done.stdout.strip()).is_relative_to(installed_image.python / "lib")
    assert not Path(done.stdout.strip()).is_relative_to(PROJECT_ROOT)


def test_every_installed_command_answers_help_from_any_folder(installed_image: Image, tmp_path: Path) -> None:
    top = _run(installed_image, "fleetway", "--help", cwd=tmp_path)
    assert top.returncode == 0 and "Usage: fleetway" in top.stdout, top.stderr
    done = _run(installed_image, "python", "-c", _HELP_EVERY_COMMAND, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)

    def tree(command: object, prefix: list[str]) -> list[str]:
        found = [" ".join(prefix)]
        for name, sub in getattr(command, "commands", {}).items():
            found += tree(sub, [*prefix, name])
        return found

    assert sorted(answers) == sorted(tree(typer.main.get_command(app), []))  # every command of the tree
    assert {"migrate", "worker", "demo", "flyway install", "schedule create"} <= set(answers)
    broken = {
        path: answer
        for path, answer in answers.items()
        if answer[0] != 0 or not answer[1].startswith(f"Usage: fleetway {path}".rstrip())
    }
    assert not broken


def test_dev_only_commands_of_an_installed_fleetway_answer_with_one_line(
    installed_image: Image, tmp_path: Path
) -> None:
    for argv in (["fleetway", "demo"], ["python", "-m", "fleetway.worker.dev.stack", "lib-dir"]):
        done = _run(installed_image, *argv, cwd=tmp_path)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("prerequisite_missing: ") and "source checkout" in line, line
        assert "fleetway flyway install" in line
    assert not any(tmp_path.iterdir())  # nothing fetched, nothing started


def test_fleetway_flyway_install_puts_the_image_jar_set_in_a_folder_and_again_changes_nothing(
    installed_image: Image, tmp_path: Path
) -> None:
    first = _run(installed_image, "fleetway", "flyway", "install", "jars", cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr
    lib = Path(first.stdout.strip())
    assert lib == tmp_path / "jars" / LIB_SUBDIR
    image_lib = Path(installed_image.env()["FLEETWAY_FLYWAY__LIB_DIR"])
    assert sorted(p.name for p in lib.iterdir()) == sorted(p.name for p in image_lib.iterdir())
    assert "flyway-core-12.4.0.jar" in {p.name for p in lib.iterdir()}
    assert "flyway 12.4.0 ready in" in first.stderr
    marker = lib / "flyway-core-12.4.0.jar"
    before = marker.stat().st_mtime_ns
    again = _run(installed_image, "fleetway", "flyway", "install", "jars", cwd=tmp_path, timeout=600)
    assert again.returncode == 0 and Path(again.stdout.strip()) == lib
    assert marker.stat().st_mtime_ns == before  # the same pin: nothing fetched again
    pom = _run(installed_image, "fleetway", "flyway", "pom", cwd=tmp_path)
    assert pom.stdout == (PROJECT_ROOT / "worker" / "flyway" / "pom.xml").read_text()


async def test_the_image_worker_migrates_a_fleet_run_by_the_installed_cli(
    installed_image: Image, client: Client, postgres: PostgresServer, temporal_server: TemporalDevServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The image's ENTRYPOINT with the image's ENV, and the installed CLI, from outside the tree."""
    fleet = make_fleet(postgres, 3)
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for script in DEMO_MIGRATIONS.glob("V*.sql"):
        (migrations / script.name).write_text(script.read_text())
    secrets = tmp_path / "secrets.json"
    logins = {t: fleet.target(t).model_dump(mode="json") | {"password": postgres.superuser_password}
              for t in fleet.tenants}  # fmt: skip
    secrets.write_text(json.dumps({"tenants": logins}))
    env = _outside_env(
        installed_image,
        **installed_image.env(),
        FLEETWAY_TEMPORAL__ADDRESS=temporal_server.address,
        FLEETWAY_TEMPORAL__TASK_QUEUE=fleet.task_queue,
        FLEETWAY_SECRETS__FILE=str(secrets),
        FLEETWAY_TENANTS__TENANTS=json.dumps(fleet.tenants),
        FLEETWAY_FLYWAY__LOCATIONS=json.dumps([str(migrations)]),
        FLEETWAY_WORKER__GRACEFUL_SHUTDOWN_S="0",
    )
    settings = _run(installed_image, "fleetway", "settings", "-o", "json", cwd=tmp_path, env=env)
    assert settings.returncode == 0, settings.stderr
    lib_dir = next(row for row in json.loads(settings.stdout) if row["key"] == "flyway.lib_dir")
    assert lib_dir["value"] == installed_image.env()["FLEETWAY_FLYWAY__LIB_DIR"]

    entrypoint = installed_image.stage.entrypoint
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [str(installed_image.bin / entrypoint[0]), *entrypoint[1:]], cwd=tmp_path, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        for _ in range(600):
            if await has_pollers(client, fleet.task_queue) or worker.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert worker.poll() is None, log.read_text()
        done = await asyncio.to_thread(
            _run, installed_image, "fleetway", "migrate", "--principal", "ci", "--parallelism", "3",
            cwd=tmp_path, env=env, timeout=170,
        )  # fmt: skip
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    assert done.returncode == 0, f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    for tenant in fleet.tenants:
        assert history(postgres, tenant) == [(str(v), True) for v in range(1, 6)]
