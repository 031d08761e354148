"""The toolbox's workflow rules, fast: real workflow code, scripted activities.

Which child type and activity name a run takes (an older build must never take a run with options),
a wave's own target, and the input rules that refuse an option where it has no meaning.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import Client

from fleetway.activities.errors import InvalidFlywayOptionError, from_validation_error
from fleetway.activities.flyway.options import FlywayOptions, versions_up_to
from fleetway.activities.flyway.output import Action
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.cli.flyway_options import flyway_options
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from tests.workflows.scripted import SET, WAIT, Scripted, scripted_worker

pytestmark = pytest.mark.fast


async def test_each_wave_runs_to_its_own_target_under_the_toolbox_names(client: Client) -> None:
    script = Scripted(["a", "b", "c"], block=set())
    waves = [
        WaveSpec(name="ring1", tenants=["a"], target="7"),
        WaveSpec(name="rest", rest=True),
    ]
    request = MigrateAllInput(
        tenants=["a", "b", "c"],
        waves=waves,
        migration_set=SET,
        flyway=FlywayOptions(target="6", placeholders={"region": "eu"}),
    )
    async with scripted_worker(client, script) as task_queue:
        handle = (
            await FleetwayClient(client, task_queue).start(
                request, rollout_id=f"target-{uuid.uuid4().hex[:8]}"
            )
        ).handle
        result = await asyncio.wait_for(handle.result(), WAIT)

    assert result.status is RolloutStatus.SUCCEEDED
    targets = {r.tenant_id: r.flyway.target for r in script.flyway_runs}
    assert targets == {"a": "7", "b": "6", "c": "6"}
    assert all(r.flyway.placeholders == {"region": "eu"} for r in script.flyway_runs)
    assert not [c for c in script.calls if c.startswith("run_flyway:")]  # never the plain name
    assert result.flyway.target == "6"
    memo = await (await handle.describe()).memo()
    assert memo["flyway"] == "target 6, placeholders region"


async def test_a_plain_migrate_keeps_the_names_every_build_has(client: Client) -> None:
    script = Scripted(["a"], block=set())
    async with scripted_worker(client, script) as task_queue:
        handle = (
            await FleetwayClient(client, task_queue).start(
                MigrateAllInput(tenants=["a"], migration_set=SET), rollout_id=f"plain-{uuid.uuid4().hex[:8]}"
            )
        ).handle
        await asyncio.wait_for(handle.result(), WAIT)
    assert "run_flyway:a" in script.calls
    assert not [c for c in script.calls if c.startswith("run_flyway_with_options")]


@pytest.mark.parametrize(
    ("action", "options", "waves", "said"),
    [
        (Action.VALIDATE, {"target": "7"}, [], "applies to migrate"),
        (Action.REPAIR, {"out_of_order": "5.1"}, [], "applies to migrate"),
        (Action.INFO, {}, [WaveSpec(name="w", rest=True, target="3")], "applies to migrate"),
        (Action.MIGRATE, {"baseline_version": "3"}, [], "applies to baseline"),
        (Action.BASELINE, {}, [], "needs a reference tenant"),
        (Action.VALIDATE, {"dry_run": True}, [], "applies to baseline"),
        (Action.MIGRATE, {"out_of_order": "5.1", "target": "9"}, [], "runs alone"),
        (Action.MIGRATE, {"target": "7;drop"}, [], "not a Flyway version"),
        (Action.MIGRATE, {"placeholders": {"tenant_id": "x"}}, [], "set per tenant"),
        (Action.MIGRATE, {"placeholders": {"db_password": "x"}}, [], "names a credential"),
        (Action.MIGRATE, {"placeholders": {"region": "eu west"}}, [], "(not shown)"),
        (Action.MIGRATE, {"taget": "7"}, [], "Extra inputs are not permitted"),
    ],
)
def test_an_option_where_it_has_no_meaning_is_refused_by_name(
    action: Action, options: dict[str, object], waves: list[WaveSpec], said: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        MigrateAllInput.model_validate(
            {"action": action, "flyway": options, "waves": [w.model_dump() for w in waves]}
        )
    said_to_the_operator = str(from_validation_error(refused.value))  # what the CLI prints
    assert said in said_to_the_operator
    assert "eu west" not in said_to_the_operator  # a rejected value is never echoed


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("", ["7.9", "7.10", "8", "10"]),
        ("latest", ["7.9", "7.10", "8", "10"]),
        ("next", ["7.9"]),
        ("current", []),
        ("7.10", ["7.9", "7.10"]),
        ("9", ["7.9", "7.10", "8"]),
    ],
)
def test_a_dry_run_with_a_target_shows_only_what_migrate_would_apply(
    target: str, expected: list[str]
) -> None:
    assert versions_up_to(["7.9", "7.10", "8", "10"], target) == expected


def test_cli_placeholders_merge_a_file_and_flags_and_refuse_a_name_given_twice(tmp_path: Path) -> None:
    (file := tmp_path / "placeholders.json").write_text('{"region": "eu", "plan": "gold"}')
    common: dict[str, Any] = {"target": "", "out_of_order": "", "baseline_version": ""}

    merged = flyway_options(placeholders=["tier=a"], placeholders_file=file, **common)
    assert merged.placeholders == {"region": "eu", "plan": "gold", "tier": "a"}
    with pytest.raises(InvalidFlywayOptionError, match="'region' is given twice"):
        flyway_options(placeholders=["region=us"], placeholders_file=file, **common)
    with pytest.raises(InvalidFlywayOptionError, match="must be written name=value"):
        flyway_options(placeholders=["region"], placeholders_file=None, **common)
