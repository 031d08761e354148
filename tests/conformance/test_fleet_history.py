"""A fleet through an application's history, on the real stack (issue 35): 24 tenants on a generated set of
85 versioned scripts and 4 repeatables, three releases after the first (a repeatable edited twice, an
out-of-order hotfix, a new version). After each release: the rollout, then a no-op validate and migrate
that prove every tenant current in one read, and the fleet picture and the release gate, each held to
what real Flyway's ``info`` says of every tenant."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from pathlib import Path

from temporalio.client import Client

from fleetway.activities.errors import FlywayError
from fleetway.activities.fleet.report import FleetReport
from fleetway.activities.fleet.state import ReadFleetInput
from fleetway.activities.flyway.checksums import version_key
from fleetway.activities.flyway.contract import FlywayInstall, FlywaySettings
from fleetway.activities.flyway.jvm_engine import JvmFlywayEngine
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.flyway.output import Action, FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.rollouts import Outcome, OutcomeSource
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult
from tests.conformance.generator import _first_revision, _Release
from tests.conformance.oracle import Word, flyways_word
from tests.conformance.run import at_least
from tests.fleet import Fleet, make_fleet

_PLACEHOLDERS = FlywayOptions(placeholders={"region": "eu"})


def _release_history(seed: int) -> list[tuple[str, dict[str, bytes], str]]:
    """The set's releases: (what changed, the scripts, the hotfix version it brings or "")."""
    rng = random.Random(seed)  # noqa: S311 - a seeded test set, not a secret
    first = {n: d for n, d in _first_revision(rng, 85, 4).items() if "Migrate" not in n}  # no callbacks
    releases = [("first release", first, "")]
    edited = _Release(first, 1, 5000, rng)
    repeatable = sorted(n for n in first if n.startswith("R__"))[0]
    for revision in (1, 2):  # the same view or function edited twice
        edited = _Release(edited.scripts, revision, 5000 + revision * 10, rng)
        edited.scripts[repeatable] = edited.scripts[repeatable] + f"-- release {revision}\n".encode()
        releases.append((f"{repeatable} edited", dict(edited.scripts), ""))
    hotfix = _Release(edited.scripts, 3, 6000, rng)
    while not hotfix.hotfix:
        hotfix.hotfix_below_the_top()
    releases.append((f"hotfix {hotfix.hotfix} out of order", dict(hotfix.scripts), hotfix.hotfix))
    newer = _Release(hotfix.scripts, 4, 7000, rng)
    newer.new_versions()
    releases.append(("a new version", dict(newer.scripts), ""))
    return releases


def _write(folder: Path, scripts: dict[str, bytes]) -> Path:
    for name, data in scripts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


async def _rollout(client: Client, fleet: Fleet, **fields: object) -> MigrateAllResult:
    return await FleetwayClient(client, fleet.task_queue).run(
        MigrateAllInput(**({"parallelism": 8, "flyway": _PLACEHOLDERS} | fields)),
        rollout_id=f"history-{uuid.uuid4().hex[:8]}",
    )


async def test_a_fleet_through_three_releases_is_proven_current_and_pictured_as_flyway_sees_it(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    fleet = make_fleet(postgres, 24)
    fleet.labels = {t: {"tier": "gold" if i % 3 else "internal"} for i, t in enumerate(fleet.tenants)}
    oracle = JvmFlywayEngine(flyway_install, FlywaySettings(), max_threads=8)
    releases = _release_history(35)
    assert sum(1 for n in releases[0][1] if n.rsplit("/", 1)[-1].startswith("V")) >= 80
    assert sum(1 for n in releases[0][1] if n.startswith("R__")) >= 3
    for number, (change, scripts, hotfix) in enumerate(releases):
        folder = _write(tmp_path / f"r{number}", scripts)
        fleet.locations = folder
        async with fleet.worker(client, flyway_install, engine="jvm"):
            options = FlywayOptions(placeholders={"region": "eu"}, out_of_order=hotfix)
            shipped = await _rollout(client, fleet, flyway=options)
            assert shipped.counts == {Outcome.SUCCEEDED: 24}, (change, shipped.counts, shipped.warnings)
            for action in (Action.VALIDATE, Action.MIGRATE):  # nothing to do: proven in one read
                noop = await _rollout(client, fleet, action=action)
                assert noop.counts == {Outcome.CURRENT: 24}, (change, action, noop.counts, noop.warnings)
                assert {o.source for o in noop.outcomes} == {OutcomeSource.HISTORY}
            top = max((m for m in scripts if m.rsplit("/", 1)[-1].startswith("V")), key=_version_of)
            gate = ".".join(map(str, _version_of(top)))
            report: FleetReport = await FleetwayClient(client, fleet.task_queue).read_fleet(
                ReadFleetInput(at_least=gate, placeholders={"region": "eu"})
            )

        words = await asyncio.gather(*(_flyways_word(oracle, fleet, t, folder) for t in fleet.tenants))
        assert report.states == {"current": 24}, (change, report.states, report.named)
        assert report.versions == dict(Counter(w.version for w in words)), change
        flyway_laggards = sorted(
            t for t, w in zip(fleet.tenants, words, strict=True) if not at_least(w, gate)
        )
        assert report.laggard_count == len(flyway_laggards) == 0, (change, report.laggards)
        assert all(w.current for w in words), change


def _version_of(name: str) -> tuple[int, ...]:
    base = name.rsplit("/", 1)[-1]
    return version_key(base[1 : base.index("__")])


async def _flyways_word(oracle: JvmFlywayEngine, fleet: Fleet, tenant: str, folder: Path) -> Word:
    async def answer(action: Action) -> FlywayOutcome | FlywayError:
        try:
            return await oracle.run(
                FlywayRequest(action=action, flyway=_PLACEHOLDERS, tenant_id=tenant),
                fleet.target(tenant),
                locations=(folder,),
                labels={f"label.{k}": v for k, v in fleet.labels[tenant].items()},
            )
        except FlywayError as exc:
            return exc

    return flyways_word(await answer(Action.INFO), await answer(Action.VALIDATE))
