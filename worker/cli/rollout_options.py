"""The rollout verbs' options: one table, and for each verb only the options it uses.

``fleetway info --help`` must not offer ``--out-of-order``: an option a verb ignores is a promise it
breaks. Each option names the verbs it applies to; :func:`signature_for` gives a verb's command
exactly those parameters (typer reads the signature), and :class:`RolloutOptions` holds every
value, each at its default where the verb does not offer it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from fleetway.activities.flyway.output import Action
from fleetway.worker.cli.output import OutputFormat

__all__ = ["RolloutOptions", "signature_for"]

_ALL: Final = frozenset(Action)
_FAST_PATH: Final = frozenset({Action.MIGRATE, Action.VALIDATE})  # the table read first: these two
_DRY_RUN: Final = frozenset({Action.MIGRATE, Action.REPAIR, Action.BASELINE})
_ADOPTS: Final = frozenset({Action.MIGRATE, Action.BASELINE})


@dataclass
class RolloutOptions:
    """Every rollout option's value (the CLI's, before it becomes a ``RolloutRequest``)."""

    tenant: list[str] | None = None
    tenants_file: Path | None = None
    parallelism: int = 8
    continue_on_error: bool = False
    canary: int = 0
    max_failure_ratio: float | None = None
    rerun_failed: str = ""
    principal: str = ""
    git_sha: str = ""
    pipeline_run_id: str = ""
    rollout_id: str = ""
    detach: bool = False
    paused: bool = False
    dry_run: bool = False
    target: str = ""
    out_of_order: str = ""
    placeholder: list[str] | None = None
    placeholders_file: Path | None = None
    baseline_version: str = ""
    baseline_reference: str = ""
    migrations: str = ""
    wave: list[str] | None = None
    wave_plan: Path | None = None
    where: str = ""
    applied_in: str = ""
    applied_version: str = ""
    skip_current: bool = True
    skip_callbacks_when_current: bool = False
    per_server: int | None = None
    server_checks: bool | None = None
    max_lock_waiters: int | None = None
    max_replica_lag_bytes: int | None = None
    replica: list[str] | None = None
    min_free_connections: int | None = None
    health_probe: str = ""
    health_probe_max: float | None = None
    park_limit: str = ""
    output: OutputFormat = OutputFormat.TEXT


# name -> (its typer annotation, the verbs that offer it). Defaults come from RolloutOptions.
_OPTIONS: dict[str, tuple[Any, frozenset[Action]]] = {
    "tenant": (Annotated[list[str] | None, typer.Option("--tenant", help="Tenant id (repeatable).")], _ALL),
    "tenants_file": (
        Annotated[Path | None, typer.Option(help="File of tenant ids (txt, json, yaml).")],
        _ALL,
    ),
    "parallelism": (Annotated[int, typer.Option(min=1, max=256)], _ALL),
    "continue_on_error": (Annotated[bool, typer.Option("--continue-on-error")], _ALL),
    "canary": (Annotated[int, typer.Option(min=0, help="Run N tenants first, then decide.")], _ALL),
    "max_failure_ratio": (Annotated[float | None, typer.Option(min=0.0, max=1.0)], _ALL),
    "rerun_failed": (Annotated[str, typer.Option(help="Re-run the failed tenants of this rollout.")], _ALL),
    "principal": (Annotated[str, typer.Option(envvar="FLEETWAY_PRINCIPAL")], _ALL),
    "git_sha": (Annotated[str, typer.Option(envvar="FLEETWAY_GIT_SHA")], _ALL),
    "pipeline_run_id": (Annotated[str, typer.Option(envvar="FLEETWAY_PIPELINE_RUN_ID")], _ALL),
    "rollout_id": (Annotated[str, typer.Option(help="Workflow id (default: generated).")], _ALL),
    "detach": (Annotated[bool, typer.Option("--detach", help="Start and print the id.")], _ALL),
    "paused": (
        Annotated[bool, typer.Option("--paused", help="Start held: nothing runs until `fleetway resume`.")],
        _ALL,
    ),
    "dry_run": (
        Annotated[
            bool,
            typer.Option("--dry-run", help="Show what migrate would apply, or what repair would change."),
        ],
        _DRY_RUN,
    ),
    "target": (
        Annotated[str, typer.Option("--target", help="Up to this version (V, next, current or latest).")],
        frozenset({Action.MIGRATE}),
    ),
    "out_of_order": (
        Annotated[
            str,
            typer.Option("--out-of-order", help="A hotfix: this one version below a tenant's current one."),
        ],
        frozenset({Action.MIGRATE}),
    ),
    "placeholder": (
        Annotated[
            list[str] | None,
            typer.Option("--placeholder", help="NAME=VALUE for ${NAME} in the scripts (repeatable)."),
        ],
        _ALL,
    ),
    "placeholders_file": (
        Annotated[Path | None, typer.Option(help="Placeholders from a JSON object of names to values.")],
        _ALL,
    ),
    "baseline_version": (
        Annotated[str, typer.Option("--baseline-version", help="The version to record (default 1).")],
        frozenset({Action.BASELINE}),
    ),
    "baseline_reference": (
        Annotated[
            str,
            typer.Option(
                "--baseline-reference", help="Adopt only schemas equal to this tenant's (fingerprint)."
            ),
        ],
        _ADOPTS,
    ),
    "migrations": (
        Annotated[
            str,
            typer.Option(
                "--migrations",
                help="The migration set: a folder (digested here) or a digest pushed to the set store "
                "(default: the configured flyway.locations).",
            ),
        ],
        _ALL,
    ),
    "wave": (
        Annotated[
            list[str] | None,
            typer.Option(
                "--wave",
                help="A ring: 'NAME; labels=SELECTOR|tenants=a,b|count=N|percent=P|rest[; parallelism=N]"
                "[; max-failures=N|max-failure-ratio=R][; bake=30m][; gate]' (repeatable, in order).",
            ),
        ],
        _ALL,
    ),
    "wave_plan": (
        Annotated[Path | None, typer.Option("--wave-plan", help="The waves from a YAML or JSON file.")],
        _ALL,
    ),
    "where": (
        Annotated[
            str,
            typer.Option(
                "--where",
                help="Only tenants whose table shows: behind, failed, tampered, ahead, outdated, current, "
                "version<V (<=, =, >=, >); comma = or.",
            ),
        ],
        _ALL,
    ),
    "applied_in": (
        Annotated[str, typer.Option("--applied-in", help="Only tenants with a row this rollout applied.")],
        _ALL,
    ),
    "applied_version": (
        Annotated[
            str, typer.Option("--applied-version", "--version", help="With --applied-in: that version's row.")
        ],
        _ALL,
    ),
    "skip_current": (
        Annotated[
            bool,
            typer.Option(
                "--skip-current/--no-skip-current",
                help="Read the tables first; a tenant proven current is reported 'current', no Flyway run.",
            ),
        ],
        _FAST_PATH,
    ),
    "skip_callbacks_when_current": (
        Annotated[
            bool,
            typer.Option(
                "--skip-callbacks-when-current",
                help="A tenant proven current skips the every-run callbacks (afterMigrate.sql ...) too.",
            ),
        ],
        _FAST_PATH,
    ),
    "per_server": (
        Annotated[
            int | None,
            typer.Option(
                "--per-server", min=1, max=256, help="Most tenants in flight on one database server."
            ),
        ],
        _ALL,
    ),
    "server_checks": (
        Annotated[
            bool | None,
            typer.Option(
                "--server-checks/--no-server-checks",
                help="Check each server before dispatching to it; park one that does not answer.",
            ),
        ],
        _ALL,
    ),
    "max_lock_waiters": (
        Annotated[
            int | None,
            typer.Option(min=0, help="Hold a server while more sessions than this wait on a lock."),
        ],
        _ALL,
    ),
    "max_replica_lag_bytes": (
        Annotated[
            int | None,
            typer.Option(min=0, help="Hold a primary while a replica's replay is this many bytes behind."),
        ],
        _ALL,
    ),
    "replica": (
        Annotated[
            list[str] | None,
            typer.Option(
                "--replica",
                help="PRIMARY=REPLICA (host:port each): read that server's replica lag on the replica.",
            ),
        ],
        _ALL,
    ),
    "min_free_connections": (
        Annotated[
            int | None,
            typer.Option(min=1, help="Hold a server while fewer client connections than this are free."),
        ],
        _ALL,
    ),
    "health_probe": (
        Annotated[
            str, typer.Option(help="A query returning one number; hold a server while it is over the max.")
        ],
        _ALL,
    ),
    "health_probe_max": (Annotated[float | None, typer.Option(help="The --health-probe's maximum.")], _ALL),
    "park_limit": (
        Annotated[str, typer.Option(help="End a server's tenants unreachable once parked this long (30m).")],
        _ALL,
    ),
    "output": (Annotated[OutputFormat, typer.Option("--output", "-o")], _ALL),
}


def signature_for(action: Action) -> inspect.Signature:
    """The parameters ``action``'s command offers: only the options that apply to it."""
    defaults = {f.name: f.default for f in fields(RolloutOptions)}
    return inspect.Signature(
        [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name], annotation=annotation
            )
            for name, (annotation, verbs) in _OPTIONS.items()
            if action in verbs
        ]
    )
