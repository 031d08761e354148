"""The fleet read page by page (and a page's tables over two connections): the same picture as one page.

Real PostgreSQL and tables real Flyway wrote; the activity runs in Temporal's activity environment.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.fleet import activity as fleet_activity
from fleetway.activities.fleet.activity import FleetStateActivities
from fleetway.activities.fleet.report import FleetReport
from fleetway.activities.fleet.state import ReadFleetInput
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywayInstall, FlywaySettings
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.secrets.providers import StaticSecretsProvider
from fleetway.activities.sets.store import MigrationSets, SetCache
from fleetway.activities.tenants.static import StaticTenantLister
from fleetway.worker.dev.stack import PostgresServer
from tests.support import DEMO_MIGRATIONS


def _target(postgres: PostgresServer, schema: str) -> DatabaseTarget:
    return DatabaseTarget(
        host="127.0.0.1", port=postgres.port, database="postgres", schema_name=schema,
        user="postgres", password=postgres.superuser_password,
    )  # fmt: skip


async def test_a_fleet_read_in_pages_pictures_the_fleet_as_one_page_does(
    flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"pg{uuid.uuid4().hex[:6]}"
    tenants = [f"{prefix}_{i}" for i in range(7)]
    targets = {t: _target(postgres, t) for t in tenants}
    engine = FlywayRunner(flyway_install, FlywaySettings(locations=(DEMO_MIGRATIONS,)))
    for number, tenant in enumerate(tenants[:5]):  # 0, 2, 4 current; 1, 3 behind; 5, 6 never migrated
        options = FlywayOptions(target="3") if number % 2 else FlywayOptions()
        await engine.run(
            FlywayRequest(action=Action.MIGRATE, tenant_id=tenant, flyway=options), targets[tenant]
        )
    reader = FleetStateActivities(
        {"default": StaticSecretsProvider(targets)},
        MigrationSets([DEMO_MIGRATIONS], SetCache(tmp_path / "cache")),
        {"default": StaticTenantLister(tenants)},
    )

    async def picture(page: int) -> FleetReport:
        monkeypatch.setattr(fleet_activity, "_READ_PAGE", page)
        report = await ActivityEnvironment().run(reader.read_fleet, ReadFleetInput(at_least="5"))
        assert isinstance(report, FleetReport)
        return report

    paged, whole = await picture(3), await picture(1000)  # three pages (3, 3, 1), then one

    assert paged.model_dump(exclude={"read_at"}) == whole.model_dump(exclude={"read_at"})
    assert paged.total == 7 and paged.states["current"] == 3
    assert paged.laggard_count == 4  # the two behind and the two never migrated
