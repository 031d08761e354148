"""Put the pinned Flyway jar set on a machine: Maven fetches what ``pom.xml`` (beside this module) pins.

A worker never fetches Flyway: it runs the jars ``flyway.lib_dir`` names. This module is how those jars
get there, the same way everywhere: ``fleetway flyway install DIR`` for an installed package, the dev
stack's cache for a source checkout, and the image's build stage, whose ``mvn`` line
``tests/test_installed_package.py`` holds equal to :func:`maven_fetch_argv`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Final

from fleetway.activities.errors import PrerequisiteMissingError

__all__ = ["LIB_SUBDIR", "fetch_flyway", "flyway_version", "maven_fetch_argv", "pinned_pom", "pom_digest"]

# Flyway computes its install folder from the jars' place (``lib/flyway/../..``): the jars sit in the
# official layout's lib folder, so that folder is the caller's DIR and never a stray ``conf/`` elsewhere.
LIB_SUBDIR: Final = Path("lib") / "flyway"
_STAMP: Final = ".fleetway-flyway"  # the digest of the pom a complete fetch came from


def pinned_pom() -> Path:
    """The pom that pins every jar of the set (Flyway 12.4.0, its PostgreSQL and Oracle drivers)."""
    return Path(str(resources.files(__package__) / "pom.xml"))


def pom_digest() -> str:
    """A short digest of the pinned pom: a fetched set is reused only while the pin is the same."""
    return hashlib.sha256(pinned_pom().read_bytes()).hexdigest()[:16]


def maven_fetch_argv(pom: Path, lib_dir: Path) -> list[str]:
    """The ``mvn`` command that copies the pom's runtime jars, and only those, into ``lib_dir``."""
    return [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib_dir}",
        "-DincludeScope=runtime",
    ]


def fetch_flyway(root: Path) -> Path:
    """Fetch the pinned jar set into ``root/lib/flyway`` (once per pin) and return that folder.

    The jars arrive in a sibling folder first and replace the old set in one rename, so a fetch
    that fails or is interrupted never leaves a half set where a worker would load it. Only
    ``root/lib/flyway`` and a stamp file in ``root`` are touched.

    Raises:
        PrerequisiteMissingError: Maven is not installed, or it could not fetch the jars.
    """
    lib = root / LIB_SUBDIR
    stamp = root / _STAMP
    digest = pom_digest()
    if lib.is_dir() and stamp.is_file() and stamp.read_text().strip() == digest:
        return lib
    if shutil.which("mvn") is None:
        raise PrerequisiteMissingError(
            "mvn not found: the pinned Flyway jar set is fetched with Maven (apt-get install -y maven)"
        )
    partial = lib.with_name(lib.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    argv = maven_fetch_argv(pinned_pom(), partial)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise PrerequisiteMissingError(f"mvn could not fetch Flyway (exit {proc.returncode}): {tail}")
    stamp.unlink(missing_ok=True)
    shutil.rmtree(lib, ignore_errors=True)
    partial.rename(lib)
    stamp.write_text(digest + "\n")
    return lib


def flyway_version(lib_dir: Path) -> str:
    """The Flyway version of a fetched set, read from its ``flyway-core`` jar's name."""
    core = next(lib_dir.glob("flyway-core-*.jar"))
    return core.name.removeprefix("flyway-core-").removesuffix(".jar")
