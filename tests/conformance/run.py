"""One conformance run: generate a fleet, build it on the real stack, ask Flyway and fleetway about
every tenant, and report each disagreement with its case and the seed that makes it again.

Per tenant: the table read's verdict against Flyway's ``info`` and ``validate``; ``wait --at-least``
against Flyway's versions; a tenant proven current migrated by Flyway (it must apply nothing); and,
for about a third of the tenants, fleetway's repair decision against what Flyway's repair does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from fleetway.activities.errors import FlywayError, RepairRefusedError
from fleetway.activities.fleet.activity import FleetStateActivities
from fleetway.activities.fleet.report import FleetTally
from fleetway.activities.fleet.state import TenantState
from fleetway.activities.flyway.activity import FlywayActivities
from fleetway.activities.flyway.checksums import SetMigrations, read_set_migrations, version_key
from fleetway.activities.flyway.contract import FlywayEngine
from fleetway.activities.flyway.output import Action, FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.postgres.bulk_history import TenantHistory
from fleetway.activities.secrets.providers import StaticSecretsProvider
from fleetway.activities.tenants.label_lookup import LabelLookup
from fleetway.activities.tenants.static import StaticTenantLister
from fleetway.worker.dev.stack import PostgresServer
from tests.conformance.builder import FleetOnDisk, Tenant
from tests.conformance.generator import Case, Family, generate
from tests.conformance.oracle import Word, disagreements, fleetways_word, flyways_word

__all__ = ["Finding", "Report", "at_least", "conformance_run", "gate_agrees"]


@dataclass
class Finding:
    """One tenant where the two words differ."""

    case: Case
    problems: list[str]
    flyway: Word
    fleetway: Word
    notes: list[str]

    def render(self, seed: int) -> str:
        """The case, what Flyway and fleetway said, and the seed that builds it again."""
        events = [(e.kind, e.revision, e.target, e.out_of_order, e.edit) for e in self.case.events]
        return (
            f"seed {seed} {self.case.tenant} (family {self.case.family}, judged at r{self.case.judged_at}, "
            f"events {events}, refused on the way {self.notes}): {'; '.join(self.problems)}\n"
            f"  flyway   {self.flyway.detail}\n  fleetway {self.fleetway.detail}"
        )


@dataclass
class Report:
    """What a run compared, what it covered, and what it found."""

    seed: int
    cases: int = 0
    findings: list[Finding] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    repairs: Counter[str] = field(default_factory=Counter)
    covered: Counter[str] = field(default_factory=Counter)
    migrate_checks: int = 0
    recorded: list[dict[str, Any]] | None = None

    def summary(self) -> str:
        return (
            f"conformance seed {self.seed}: {self.cases} tenants, {len(self.findings)} disagreements, "
            f"{self.migrate_checks} proven-current tenants migrated by Flyway to nothing; "
            f"verdicts {dict(sorted(self.verdicts.items()))}; repair {dict(sorted(self.repairs.items()))}"
        )


async def _answer(call: Any) -> FlywayOutcome | FlywayError:
    try:
        return await call  # type: ignore[no-any-return]
    except FlywayError as exc:
        return exc


def at_least(word: Word, version: str) -> bool:
    """A release gate's question answered from Flyway's word: at ``version`` or later, nothing below missing."""
    wanted = version_key(version)
    below = [v for v in word.pending | word.ignored if not v.startswith("R ") and version_key(v) <= wanted]
    return bool(word.version) and version_key(word.version) >= wanted and not word.failed and not below


def gate_agrees(state: TenantState, flyway: Word, migrations: SetMigrations) -> list[str]:
    """``wait --at-least`` (through the fleet tally) against Flyway's answer, at each third of the set."""
    versions = sorted({m.version for m in migrations.versioned.values()}, key=version_key)
    problems = []
    for gate_at in {versions[i * (len(versions) - 1) // 2] for i in range(3)} if versions else ():
        tally = FleetTally(at_least=gate_at)
        tally.add(state, {})
        laggard = state.tenant_id in tally.report(read_at="", migration_set="", latest="").laggards
        if laggard == at_least(flyway, gate_at):
            problems.append(
                f"wait --at-least {gate_at}: fleetway says laggard={laggard}, Flyway's info disagrees"
            )
    return problems


def _cover(report: Report, flyway: Word) -> None:
    states = [s for _, s in flyway.detail.get("states", [])]  # type: ignore[attr-defined]
    report.covered.update(f"state {s}" for s in set(states))
    superseded = Counter(name for name, s in flyway.detail.get("states", []) if s == "Superseded")  # type: ignore[attr-defined]
    if any(n >= 2 for n in superseded.values()):
        report.covered["a repeatable applied 3+ times"] += 1
    report.covered.update(f"issue {code}" for _, code in flyway.detail.get("issues", []))  # type: ignore[attr-defined]


async def _judge_case(
    fleet: FleetOnDisk, family: Family, case: Case, tenant: Tenant, report: Report, gate: asyncio.Semaphore
) -> None:
    folder = fleet.folder(family, case.judged_at)
    async with gate:
        info = await _answer(fleet.flyway(Action.INFO, tenant, folder))
        validate = await _answer(fleet.flyway(Action.VALIDATE, tenant, folder))
        labels = StaticTenantLister([tenant.tenant_id], {tenant.tenant_id: {"tier": tenant.tier}})
        reader = FleetStateActivities(
            {"default": StaticSecretsProvider({tenant.tenant_id: tenant.target})}, None,
            {"default": labels}, labels=LabelLookup({"default": labels}),
        )  # fmt: skip
        migrations = await asyncio.to_thread(read_set_migrations, folder)
        states, histories = await reader._read(
            [tenant.tenant_id],
            "default",
            "",
            migrations,
            tenant.options.placeholders,
            tenant_source="default",
        )
    state = states[0]
    theirs, ours = flyways_word(info, validate), fleetways_word(state)
    problems = disagreements(theirs, ours)
    if not theirs.refused and not ours.refused:
        problems += gate_agrees(state, theirs, migrations)
    if ours.current:  # proven current: Flyway's migrate must apply nothing
        async with gate:
            migrated = await _answer(fleet.flyway(Action.MIGRATE, tenant, folder))
        report.migrate_checks += 1
        if isinstance(migrated, FlywayError) or migrated.applied_versions or migrated.applied_repeatables:
            problems.append(f"proven current, yet Flyway's migrate: {_said(migrated)}")
    if case.check_repair:
        problems += await _repair_agrees(fleet, tenant, folder, report, gate)
    report.cases += 1
    report.verdicts[state.state.value] += 1
    _cover(report, theirs)
    if report.recorded is not None and not problems:
        report.recorded.append(_recording(folder, histories[tenant.tenant_id], tenant, theirs))
    if problems:
        report.findings.append(Finding(case, problems, theirs, ours, fleet.notes.get(tenant.tenant_id, [])))


def _recording(folder: Path, history: TenantHistory, tenant: Tenant, flyway: Word) -> dict[str, Any]:
    """A case as the fast tier replays it: the set's files, the table's rows, Flyway's word."""
    files = {
        str(p.relative_to(folder)): base64.b64encode(p.read_bytes()).decode()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    word = {
        k: sorted(v) if isinstance(v, frozenset) else v for k, v in asdict(flyway).items() if k != "detail"
    }
    return {
        "tenant": tenant.tenant_id,
        "values": tenant.options.placeholders
        | tenant.labels
        | {
            "tenant_id": tenant.tenant_id,
            "tenant_schema": tenant.schema,
            "flyway:defaultSchema": tenant.schema,
            "flyway:user": tenant.target.user,
            "flyway:database": tenant.target.database,
            "flyway:table": "flyway_schema_history",
        },
        "files": files,
        "table_exists": history.table_exists,
        "rows": [list(r) for r in history.rows],
        "flyway": word,
    }


def _table(fleet: FleetOnDisk, schema: str) -> list[tuple[object, ...]]:
    with psycopg.connect(fleet.postgres.dsn) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".flyway_schema_history',)).fetchone()
        if not exists or not exists[0]:
            return []
        return conn.execute(
            sql.SQL(
                "SELECT installed_rank, version, description, type, checksum, success FROM {} "
                "ORDER BY installed_rank"
            ).format(sql.Identifier(schema, "flyway_schema_history"))
        ).fetchall()


async def _repair_agrees(
    fleet: FleetOnDisk, tenant: Tenant, folder: Path, report: Report, gate: asyncio.Semaphore
) -> list[str]:
    """fleetway's repair decision (the activity's own path) against what Flyway's repair does.

    "Nothing to repair" must leave Flyway's own repair nothing to change; a refusal (the set lacks
    applied versions) is fleetway's rule, counted; a repair fleetway runs is Flyway's anyway.
    """
    labels = StaticTenantLister([tenant.tenant_id], {tenant.tenant_id: {"tier": tenant.tier}})
    activities = FlywayActivities(
        fleet.engine, {"default": StaticSecretsProvider({tenant.tenant_id: tenant.target})},
        labels=LabelLookup({"default": labels}),
    )  # fmt: skip
    request = FlywayRequest(action=Action.REPAIR, tenant_id=tenant.tenant_id, flyway=tenant.options)
    async with gate:
        try:
            decided = await activities._run(request, tenant.tenant_id, (folder,))
        except RepairRefusedError:
            report.repairs["refused"] += 1
            return []
        except FlywayError as exc:
            report.repairs["failed"] += 1
            return [f"fleetway's repair failed: {exc.error_type}"]
        if decided.skipped != "nothing to repair":
            report.repairs["repaired"] += 1
            return [] if decided.repaired else ["fleetway ran a repair Flyway found nothing to do in"]
        report.repairs["nothing to repair"] += 1
        before = await asyncio.to_thread(_table, fleet, tenant.schema)
        repaired = await _answer(fleet.flyway(Action.REPAIR, tenant, folder))
        after = await asyncio.to_thread(_table, fleet, tenant.schema)
    if before != after:
        changed = sorted(set(after) ^ set(before), key=repr)[:4]
        return [f"nothing to repair, yet Flyway's repair changed {changed} ({_said(repaired)})"]
    return []


def _said(outcome: FlywayOutcome | FlywayError) -> str:
    if isinstance(outcome, FlywayError):
        return outcome.error_type
    return json.dumps({"applied": outcome.applied_versions, "repeatables": outcome.applied_repeatables})


def _cover_sets(report: Report, families: list[Family]) -> None:
    """What the generated sets hold (issue 35's list), counted once per family."""
    for family in families:
        names = {n for revision in family.revisions for n in revision}
        data = b"".join(d for revision in family.revisions for d in revision.values())
        versioned = max(sum(1 for n in r if n.rsplit("/", 1)[-1].startswith("V")) for r in family.revisions)
        marks = {
            "a set of 60+ versioned scripts": versioned >= 60,
            "dotted versions": any(n.rsplit("/", 1)[-1].startswith("V") and "." in n.split("__")[0] for n in names),
            "${tenant_id}": b"${tenant_id}" in data, "${Tenant_Id} (mixed case)": b"${Tenant_Id}" in data,
            "a fleet-wide placeholder": b"${region}" in data, "a label placeholder": b"${label.tier}" in data,
            "afterMigrate callback": "afterMigrate.sql" in names,
            "beforeEachMigrate callback": "beforeEachMigrate.sql" in names,
            "CRLF": b"\r\n" in data, "BOM": b"\xef\xbb\xbf" in data, "non-ASCII": "Zürich".encode() in data,
            "trailing whitespace": b";   \n" in data, "a non-SQL file": "README.md" in names,
            "a non-transactional script": b"CONCURRENTLY" in data,
            "an out-of-order hotfix": bool(family.hotfixes),
            "a baseline": any(e.kind == "baseline" for e in family.prefix),
        }  # fmt: skip
        report.covered.update(name for name, present in marks.items() if present)


async def conformance_run(
    postgres: PostgresServer,
    engine: FlywayEngine,
    work: Path,
    *,
    seed: int,
    families: int,
    members: int,
    record: bool = False,
) -> Report:
    """Generate with ``seed``, build, judge every tenant; the schemas are dropped afterwards."""
    made, cases = generate(seed, families=families, members=members)
    fleet = FleetOnDisk(postgres, engine, work, run=f"c{uuid.uuid4().hex[:6]}")
    fleet.write(made)
    report = Report(seed, recorded=[] if record else None)
    _cover_sets(report, made)
    report.covered.update(f"hand edit {e.edit}" for c in cases for e in c.events if e.kind == "edit")
    gate = asyncio.Semaphore(4)
    try:
        for family in made:
            members_of = [c for c in cases if c.family == family.name]
            tenants = await fleet.build_family(family, members_of, gate)
            await asyncio.gather(
                *(_judge_case(fleet, family, c, tenants[c.tenant], report, gate) for c in members_of)
            )
    finally:
        await asyncio.to_thread(fleet.drop_schemas)
    return report
