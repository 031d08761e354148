"""The deployment files: the compose stack validates and is wired in order; the worker image's
Dockerfile has the shape a platform team relies on. No container engine needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fleetway.worker.dev.stack import PROJECT_ROOT
from tests.image_recipe import Copy, read_stages

COMPOSE = str(Path(sys.executable).parent / "docker-compose")


def compose_config() -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [COMPOSE, "-f", str(PROJECT_ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True, text=True, check=False, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_compose_file_validates() -> None:
    done = subprocess.run(
        [COMPOSE, "-f", "docker-compose.yml", "config", "--quiet"], capture_output=True, text=True, check=False,
        cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_compose_comes_up_in_order_with_health_checks() -> None:
    services = compose_config()["services"]
    assert set(services) == {
        "temporal-db",
        "temporal",
        "temporal-setup",
        "temporal-ui",
        "tenants-db",
        "fleetway-worker",
    }
    for name in ("temporal-db", "temporal", "tenants-db"):
        assert services[name]["healthcheck"]["test"], name
    assert services["temporal"]["depends_on"]["temporal-db"]["condition"] == "service_healthy"
    assert services["temporal"]["environment"]["DB"] == "postgres12"  # PostgreSQL persistence
    assert services["temporal-ui"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    worker = services["fleetway-worker"]
    assert {k: v["condition"] for k, v in worker["depends_on"].items()} == {
        "temporal": "service_healthy", "temporal-setup": "service_completed_successfully", "tenants-db": "service_healthy",
    }  # fmt: skip
    assert worker["build"]["context"] == str(PROJECT_ROOT)
    assert worker["deploy"]["replicas"] == 2  # horizontal scale on one task queue
    assert worker["stop_signal"] == "SIGTERM"
    assert worker["environment"]["FLEETWAY_TEMPORAL__ADDRESS"] == "temporal:7233"
    for image in (s.get("image", "") for n, s in services.items() if n != "fleetway-worker"):
        assert ":" in image and not image.endswith(":latest"), image  # every image pinned


def test_dockerfile_builds_the_worker_image_layout() -> None:
    """The shape around what tests/test_installed_package.py runs: stages, Java, the user, the entrypoint."""
    wheel, flyway, image = read_stages()
    assert [(s.name, s.image) for s in (wheel, flyway, image)] == [
        ("wheel", "python:3.11.11-slim-bookworm"),
        ("flyway", "maven:3.9.9-eclipse-temurin-17"),
        ("", "python:3.11.11-slim-bookworm"),
    ]
    runs = " ".join(image.runs)
    assert "openjdk-17-jre-headless" in runs  # Java in the runtime image
    assert "util-linux" in runs  # setpriv: Flyway processes die with their worker
    assert [c.sources for c in flyway.copies] == [("worker/flyway/pom.xml",)]  # the pom the wheel ships
    assert Copy(("/opt/flyway/lib/flyway",), "/opt/flyway/lib/flyway", "flyway") in image.copies
    assert Copy(("/src/dist",), "./dist", "wheel") in image.copies  # the wheel, not the source tree
    assert image.env["FLEETWAY_FLYWAY__LIB_DIR"] == "/opt/flyway/lib/flyway"
    assert "FLEETWAY_FLYWAY__LOCATIONS" not in image.env  # no baked-in set: a forgotten one refuses
    assert image.user == "fleetway" and image.runs_after_user == 0  # non-root, after every install step
    assert image.entrypoint == ["fleetway", "worker"]
