"""The live NDJSON feed: one line per tenant as each finishes, across continue-as-new, past the
result's byte budget, and honest (a ``gap`` line) when a follower fell behind."""

from __future__ import annotations

import json
import uuid

import pytest
from rich.console import Console
from temporalio.client import Client

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.worker.cli.follow import follow_rollout
from fleetway.worker.cli.output import OutputFormat, render_result
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer
from fleetway.workflows import outcome_ledger, rollout_state
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult, RolloutStatus
from tests.fleet import make_fleet


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


async def test_feed_prints_each_tenant_once_across_continue_as_new_and_past_the_result_budget(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(outcome_ledger, "SUCCESS_BUDGET", 1)  # the result keeps no success at all
    fleet = make_fleet(postgres, 9)
    rollout_id = f"feed-{uuid.uuid4().hex[:8]}"
    async with fleet.worker(client, flyway_install):
        rollout = await FleetwayClient(client, fleet.task_queue).start(
            MigrateAllInput(parallelism=2, continue_as_new_after=3), rollout_id=rollout_id
        )
        result, streamed = await follow_rollout(rollout, OutputFormat.NDJSON, Console())
        render_result(result, OutputFormat.NDJSON, streamed=streamed)

    assert result.status is RolloutStatus.SUCCEEDED and result.runs >= 3
    assert result.outcomes == [] and result.truncated  # the result alone could not list them
    lines = _lines(capsys.readouterr().out)
    assert [line["event"] for line in lines] == ["tenant_complete"] * 9 + ["summary"]
    assert sorted(str(line["tenant_id"]) for line in lines[:9]) == fleet.tenants


async def test_a_late_follower_gets_a_gap_line_then_the_rest_from_the_result(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(rollout_state, "RECENT_COMPLETIONS_KEPT", 2)
    fleet = make_fleet(postgres, 5)
    rollout_id = f"late-{uuid.uuid4().hex[:8]}"
    async with fleet.worker(client, flyway_install):
        fleetway = FleetwayClient(client, fleet.task_queue)
        await fleetway.run(MigrateAllInput(parallelism=1), rollout_id=rollout_id)
        # Attach only now: the run holds its last 2 finishes, so 3 are missed by the feed.
        result, streamed = await follow_rollout(fleetway.rollout(rollout_id), OutputFormat.NDJSON, Console())
        render_result(result, OutputFormat.NDJSON, streamed=streamed)

    assert isinstance(result, MigrateAllResult)
    lines = _lines(capsys.readouterr().out)
    assert lines[0] == {"event": "gap", "missed": 3}
    tenants = [str(line["tenant_id"]) for line in lines if line["event"] == "tenant_complete"]
    assert len(streamed) == 2
    assert sorted(tenants) == fleet.tenants  # the feed's 2, then the result's other 3; none twice
    assert lines[-1]["event"] == "summary"
