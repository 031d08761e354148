"""The generated fleet made real: each family's revisions as folders, its prefix run by real Flyway on a
template schema, each case's history copied from it and taken on by real Flyway and hand edits.

Every Flyway call gets what a rollout's would: the fleet-wide placeholder, the tenant's id and
schema, its ``label.tier`` (the engines' own ``flyway_configuration``). A call Flyway refuses is part
of the history being built (a failed row, a validate-on-migrate refusal), never a harness error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import FlywayError
from fleetway.activities.flyway.contract import FlywayEngine
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.flyway.output import Action, FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.worker.dev.stack import PostgresServer
from tests.conformance.generator import Case, Event, Family

_HISTORY = "flyway_schema_history"


@dataclass(frozen=True)
class Tenant:
    """A case's tenant on the real server: its schema, target and what every Flyway call gets."""

    tenant_id: str
    schema: str
    target: DatabaseTarget
    region: str
    tier: str

    @property
    def options(self) -> FlywayOptions:
        return FlywayOptions(placeholders={"region": self.region})

    @property
    def labels(self) -> dict[str, str]:
        return {"label.tier": self.tier}


@dataclass
class FleetOnDisk:
    """The generated fleet on the server and on disk, ready to be judged."""

    postgres: PostgresServer
    engine: FlywayEngine
    work: Path
    run: str  # a prefix every schema of this run shares
    folders: dict[tuple[str, int], Path] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)  # tenant → what Flyway refused on the way

    def tenant(self, family: Family, tenant_id: str, tier: str) -> Tenant:
        schema = f"{self.run}_{tenant_id}".lower()
        target = DatabaseTarget(
            host="127.0.0.1", port=self.postgres.port, database="postgres", schema_name=schema,
            user="postgres", password=self.postgres.superuser_password,
        )  # fmt: skip
        return Tenant(tenant_id, schema, target, family.region, tier)

    def folder(self, family: Family, revision: int) -> Path:
        return self.folders[family.name, revision]

    def write(self, families: list[Family]) -> None:
        for family in families:
            for number, scripts in enumerate(family.revisions):
                root = self.work / family.name / f"r{number}"
                for name, data in scripts.items():
                    (root / name).parent.mkdir(parents=True, exist_ok=True)
                    (root / name).write_bytes(data)
                self.folders[family.name, number] = root

    async def flyway(self, action: Action, tenant: Tenant, folder: Path, **options: object) -> FlywayOutcome:
        """One Flyway call for ``tenant`` with the rollout's placeholders; raises Flyway's refusal."""
        opts = tenant.options.model_copy(update=options) if options else tenant.options
        return await self.engine.run(
            FlywayRequest(action=action, flyway=opts, tenant_id=tenant.tenant_id),
            tenant.target,
            locations=(folder,),
            labels=tenant.labels,
        )

    async def _event(self, family: Family, tenant: Tenant, event: Event) -> None:
        try:
            if event.kind == "migrate":
                await self.flyway(
                    Action.MIGRATE, tenant, self.folder(family, event.revision),
                    **({"target": event.target} if event.target and not event.out_of_order else {}),
                    **({"out_of_order": family.hotfixes[min(family.hotfixes)]} if event.out_of_order else {}),
                )  # fmt: skip
            elif event.kind == "baseline":
                await self.flyway(
                    Action.BASELINE, tenant, self.folder(family, 0), baseline_version=event.version
                )
            elif event.kind == "repair":
                await self.flyway(Action.REPAIR, tenant, self.folder(family, event.revision))
            else:
                await asyncio.to_thread(self._hand_edit, tenant.schema, event)
        except FlywayError as exc:
            self.notes.setdefault(tenant.tenant_id, []).append(f"{event.kind}: {exc.error_type}")

    def _hand_edit(self, schema: str, event: Event) -> None:
        table = sql.Identifier(schema, _HISTORY)
        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".{_HISTORY}',)).fetchone()
            if not exists or not exists[0]:
                return
            ranks = [
                r[0]
                for r in conn.execute(
                    sql.SQL(
                        "SELECT installed_rank FROM {} WHERE installed_rank > 0 AND type <> 'SCHEMA' "
                        "ORDER BY installed_rank"
                    ).format(table)
                ).fetchall()
            ]
            if not ranks:
                return
            rank = ranks[event.pick % len(ranks)]
            statements = {
                "delete_row": "DELETE FROM {t} WHERE installed_rank = %(r)s",
                "checksum": "UPDATE {t} SET checksum = coalesce(checksum, 0) + 7 WHERE installed_rank = %(r)s",
                "fail_row": "UPDATE {t} SET success = false WHERE installed_rank = %(r)s",
                "null_checksum": "UPDATE {t} SET checksum = NULL WHERE installed_rank = %(r)s",
                "description": "UPDATE {t} SET description = description || ' edited' WHERE installed_rank = %(r)s",
                "hide_row": "UPDATE {t} SET installed_rank = -installed_rank WHERE installed_rank = %(r)s",
                "respell_version": "UPDATE {t} SET version = version || '.0' "
                "WHERE installed_rank = %(r)s AND version IS NOT NULL",
                "duplicate_repeatable": "INSERT INTO {t} SELECT (SELECT max(installed_rank) + 1 FROM {t}), "
                "version, description, type, script, checksum, installed_by, now(), execution_time, success "
                "FROM {t} WHERE installed_rank = (SELECT max(installed_rank) FROM {t} WHERE version IS NULL "
                "AND type = 'SQL')",
                "type_jdbc": "UPDATE {t} SET type = 'JDBC' WHERE installed_rank = %(r)s",
            }
            conn.execute(sql.SQL(statements[event.edit]).format(t=table), {"r": rank})

    def _fresh_schema(self, schema: str, *, copy_from: str = "", legacy: bool = False) -> None:
        """The tenant's schema: empty, or holding ``anchor`` (a legacy schema, or a copied history)."""
        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            if legacy or copy_from:
                conn.execute(sql.SQL("CREATE TABLE {} (id bigint)").format(sql.Identifier(schema, "anchor")))
            if copy_from:
                source, table = sql.Identifier(copy_from, _HISTORY), sql.Identifier(schema, _HISTORY)
                exists = conn.execute("SELECT to_regclass(%s)", (f'"{copy_from}".{_HISTORY}',)).fetchone()
                if exists and exists[0]:
                    conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(table, source))
                    conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(table, source))

    async def build_family(
        self, family: Family, cases: list[Case], gate: asyncio.Semaphore
    ) -> dict[str, Tenant]:
        """The family's template, then every case's own history; returns tenants by id."""
        template = self.tenant(family, f"{family.name}_tpl", "internal")
        legacy = bool(family.prefix) and family.prefix[0].kind == "baseline"
        await asyncio.to_thread(self._fresh_schema, template.schema, legacy=legacy)
        for event in family.prefix:
            await self._event(family, template, event)

        async def member(case: Case) -> Tenant:
            async with gate:
                tenant = self.tenant(family, case.tenant, case.tier)
                await asyncio.to_thread(self._fresh_schema, tenant.schema, copy_from=template.schema)
                for event in case.events:
                    await self._event(family, tenant, event)
                return tenant

        built = await asyncio.gather(*(member(c) for c in cases))
        return {t.tenant_id: t for t in built}

    def drop_schemas(self) -> None:
        with psycopg.connect(self.postgres.dsn, autocommit=True) as conn:
            names = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{self.run}\\_%",)
            ).fetchall()
            for (name,) in names:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
