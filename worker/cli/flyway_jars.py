"""``fleetway flyway …``: put the pinned Flyway jar set on this machine, for an installed fleetway.

A worker runs the jars ``flyway.lib_dir`` names and never fetches them; the image carries them from its
build stage. Everywhere else, ``fleetway flyway install DIR`` fetches the same pinned set with Maven.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.runtime import run_command, stderr
from fleetway.worker.flyway.fetch import fetch_flyway, flyway_version, pinned_pom

__all__ = ["flyway_app"]

flyway_app = typer.Typer(no_args_is_help=True, help="The pinned Flyway jar set a worker runs.")


@flyway_app.command("install")
def install(
    folder: Annotated[Path, typer.Argument(help="Where the set goes; the jars land in FOLDER/lib/flyway.")],
) -> None:
    """Fetch the pinned Flyway jars with Maven into FOLDER and print the folder for flyway.lib_dir.

    Needs Maven and a Maven repository it can reach (Maven Central, or your mirror in
    ~/.m2/settings.xml). Running it again with the same pin changes nothing; a new pin replaces the
    set in one step. Use: export FLEETWAY_FLYWAY__LIB_DIR="$(fleetway flyway install DIR)".
    """

    async def go() -> ExitCode:
        lib = fetch_flyway(folder.resolve())
        stderr.print(f"flyway {flyway_version(lib)} ready in {lib}", markup=False)
        print(lib)
        return ExitCode.OK

    run_command(go)


@flyway_app.command("pom")
def pom() -> None:
    """Print the Maven pom that pins the jar set (for an image or a mirror built without fleetway)."""

    async def go() -> ExitCode:
        sys.stdout.write(pinned_pom().read_text())
        return ExitCode.OK

    run_command(go)
