"""``fleetway fleet`` and ``fleetway wait``: the fleet's state from its tables, without a rollout.

Both ask a worker (``FleetStateWorkflow``: credentials stay there) for one bulk read of every
selected tenant's ``flyway_schema_history``. ``fleet`` draws it (counts, a version histogram, a
heat strip, per server and label; ``-o json``; ``--report`` writes an HTML or SVG file); ``wait``
polls until every selected tenant shows a version (exit 0) or the timeout passes (exit 1, the
laggards named), so a pipeline gates an application release on the schema fleet itself.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fleetway.activities.durations import parse_duration_s
from fleetway.activities.errors import InvalidInputError
from fleetway.activities.fleet.report import FleetReport
from fleetway.activities.fleet.state import FleetState, ReadFleetInput
from fleetway.activities.flyway.options import check_version, parse_placeholders
from fleetway.activities.tenants.labels import parse_selector
from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.cli.fleet_picture import COLOURS, write_report
from fleetway.worker.cli.output import OutputFormat
from fleetway.worker.cli.runtime import connect_fleetway, load_settings, run_command, stderr
from fleetway.worker.cli.sets import named_set
from fleetway.worker.client.connection import FleetwayClient

__all__ = ["fleet", "wait"]

_BAR = 40


async def _prepared(
    migrations: str, labels: str, at_least: str = "", placeholders: list[str] | None = None
) -> tuple[FleetwayClient, ReadFleetInput]:
    if labels:
        parse_selector(labels)  # a typo is refused here, before any worker is asked
    if at_least:
        check_version(at_least, what="--at-least")
    values = parse_placeholders(placeholders or [])
    named = named_set(migrations, load_settings()) if migrations else None
    client = await connect_fleetway()
    await client.workers(migration_set=named.digest if named else "", wait_s=10)
    request = ReadFleetInput(
        migration_set=named.digest if named else "", selector=labels, at_least=at_least, placeholders=values
    )
    return client, request


def _render(report: FleetReport) -> None:
    console = Console(highlight=False)
    console.print(
        f"fleet: {report.total} tenants{f' matching {report.selector}' if report.selector else ''}; "
        f"set {report.migration_set or '?'} (latest v{report.latest or '∅'}); tables read at {report.read_at}"
    )
    states = "  ".join(
        f"[{COLOURS[FleetState(k)]}]■[/] {k} {n}" for k, n in report.states.items()
    )  # worst first
    console.print(states or "no tenants")
    if report.strip:
        strip = "".join(f"[{COLOURS[FleetState(k)]}]█[/]" for k in report.strip)
        console.print(f"heat strip (source order, {report.total / len(report.strip):.0f}/cell): {strip}")
    peak = max(report.versions.values(), default=1)
    histogram = Table(title="tenants per version", show_edge=False)
    for column in ("version", "tenants", ""):
        histogram.add_column(column, justify="right" if column == "tenants" else "left")
    for version, count in report.versions.items():
        marker = "green" if version == report.latest else "yellow"
        bar = "█" * max(1, round(_BAR * count / peak))
        histogram.add_row(f"v{version}" if version else "none", str(count), f"[{marker}]{bar}[/]")
    console.print(histogram)
    for title, groups in (("by server", report.servers), ("by label", report.labels)):
        if not groups:
            continue
        table = Table(title=title, show_edge=False)
        table.add_column(title.removeprefix("by "))
        kinds = [k for k in report.states]
        for kind in kinds:
            table.add_column(kind, justify="right")
        for group, counts in list(groups.items())[:30]:
            table.add_row(group, *(str(counts.get(k, 0) or "") for k in kinds))
        console.print(table)
    for kind, tenants in report.named.items():
        more = report.states.get(kind, 0) - len(tenants)
        console.print(f"{kind}: {', '.join(tenants)}{f' … and {more} more' if more > 0 else ''}")


# Repeatables' checksums include the placeholders their runs had: the picture needs the same values.
PlaceholderOption = Annotated[
    list[str] | None, typer.Option("--placeholder", help="NAME=VALUE the rollouts pass (repeatable).")
]


def fleet(
    migrations: Annotated[
        str, typer.Option("--migrations", help="The set to judge against: a folder or a digest.")
    ] = "",
    labels: Annotated[str, typer.Option("--labels", help="Only tenants matching this label selector.")] = "",
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the picture to FILE (.html or .svg).")
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
    placeholder: PlaceholderOption = None,
) -> None:
    """Show the fleet's state as its tables hold it: per version, behind, failed, tampered, ahead."""

    async def go() -> ExitCode:
        if report is not None and report.suffix not in {".html", ".svg"}:
            raise InvalidInputError("--report names an .html or .svg file")
        client, request = await _prepared(migrations, labels, placeholders=placeholder)
        read = await client.read_fleet(request)
        if report is not None:
            write_report(read, report)
            stderr.print(f"wrote {report}", markup=False)
        if output is OutputFormat.TEXT:
            _render(read)
        else:
            print(read.model_dump_json(indent=2 if output is OutputFormat.JSON else None))
        return ExitCode.OK

    run_command(go)


def wait(  # noqa: PLR0917 - typer maps each option to a parameter
    at_least: Annotated[str, typer.Option("--at-least", help="The version every tenant must show.")],
    labels: Annotated[str, typer.Option("--labels", help="Only tenants matching this label selector.")] = "",
    timeout: Annotated[str, typer.Option("--timeout", help="Give up after this long (30m, 1h).")] = "30m",
    interval: Annotated[str, typer.Option("--interval", help="Between reads (10s).")] = "10s",
    output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TEXT,
    placeholder: PlaceholderOption = None,
) -> None:
    """Wait until every selected tenant's table shows --at-least V or later (exit 0), else exit 1.

    At V or later means: Flyway's version at least V, no failed row, and nothing at or below V left
    unapplied (pending, or ignored below an out-of-order hotfix).
    """

    async def go() -> ExitCode:
        limit = parse_duration_s(timeout, what="--timeout")
        pause = max(1, parse_duration_s(interval, what="--interval"))
        client, request = await _prepared("", labels, at_least, placeholder)

        def told(read: FleetReport) -> None:
            if read.laggard_count:
                stderr.print(
                    f"{read.laggard_count} of {read.total} tenants below v{at_least}; next read in {pause}s"
                )

        # A selector that matches no one is refused (exit 2): a typo must not open a release gate.
        read = await client.wait_at_least(
            at_least, timeout=timedelta(seconds=limit), interval=timedelta(seconds=pause), request=request,
            on_read=told,
        )  # fmt: skip
        done = read.laggard_count == 0
        if output is not OutputFormat.TEXT:
            print(read.model_dump_json())
        elif done:
            print(f"all {read.total} tenants at v{at_least} or later (tables read at {read.read_at})")
        else:
            more = read.laggard_count - len(read.laggards)
            print(
                f"timed out: {read.laggard_count} of {read.total} tenants below v{at_least}: "
                + ", ".join(read.laggards)
                + (f" … and {more} more" if more > 0 else "")
            )
        return ExitCode.OK if done else ExitCode.FAILED

    run_command(go)
