"""Seeded generator of migration sets and tenant histories shaped like real fleets' (issue 35).

Pure: it writes nothing and runs nothing. A *family* is one application's set as it evolves over a
few releases (its *revisions*) plus a history prefix every member tenant shares (built once on a
template schema by real Flyway, then copied); each *case* is one tenant: the family's prefix, then
its own events (migrates at later revisions, an out-of-order hotfix, a partial target, a baseline,
a repair, hand edits of the table), judged against one revision. The scripts are self-contained
(each creates its own objects, or indexes the ``anchor`` table every tenant schema gets), so a
copied history needs none of the objects the template's scripts made but that table.

What it covers, as issue 35 lists: dozens to hundreds of versioned scripts with dotted versions;
repeatables re-applied many times; placeholders (``${tenant_id}``, fleet-wide, labels, mixed case);
out-of-order hotfixes followed by later versions; baseline rows; failed rows of non-transactional
scripts; callbacks (``afterMigrate``, ``beforeEachMigrate``); CRLF, BOM, non-ASCII and trailing
whitespace; a non-SQL file; scripts deleted from the set; tables edited by hand.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Case", "Event", "Family", "generate"]

# Hand edits of flyway_schema_history a DBA makes; each a template over a row picked by rank.
HAND_EDITS: Final = (
    "delete_row",  # someone deleted a row
    "checksum",  # someone "fixed" a checksum
    "fail_row",  # success flipped to false
    "null_checksum",
    "description",
    "hide_row",  # installed_rank set negative: Flyway no longer sees it
    "respell_version",  # '1.0' for '1'
    "duplicate_repeatable",  # a repeatable's row copied again (re-applied by hand)
    "type_jdbc",  # a row claiming a Java migration
)


@dataclass(frozen=True)
class Event:
    """One thing that happened to a tenant.

    ``kind``: ``migrate`` (at ``revision``, ``target`` and ``out_of_order`` as Flyway's settings),
    ``baseline`` (at ``version``, on a schema holding legacy objects), ``repair`` (at
    ``revision``), or ``edit`` (a hand edit of the table, ``edit`` one of :data:`HAND_EDITS`,
    ``pick`` choosing the row).
    """

    kind: str
    revision: int = 0
    target: str = ""
    out_of_order: bool = False
    version: str = ""
    edit: str = ""
    pick: int = 0


@dataclass(frozen=True)
class Family:
    """One application's set over its releases, and the prefix its tenants share."""

    name: str
    revisions: tuple[dict[str, bytes], ...]
    prefix: tuple[Event, ...]
    region: str  # the fleet-wide placeholder's value
    hotfixes: dict[int, str] = field(default_factory=dict)  # revision → the hotfix version it added


@dataclass(frozen=True)
class Case:
    """One tenant: its family, its own events after the prefix, the revision it is judged against."""

    family: str
    tenant: str
    tier: str  # its ``tier`` label (``${label.tier}``)
    events: tuple[Event, ...]
    judged_at: int
    check_repair: bool = False  # also hold fleetway's repair decision to Flyway's repair (it writes)


def _version_text(parts: tuple[int, ...], rng: random.Random) -> str:
    return rng.choice((".", "_")).join(str(p) for p in parts)


def _versions(rng: random.Random, count: int) -> list[tuple[int, ...]]:
    """``count`` ascending versions shaped like an application's: majors with dotted minors."""
    found: list[tuple[int, ...]] = []
    major = rng.randint(1, 3)
    while len(found) < count:
        found.append((major,))
        for minor in range(1, rng.randint(1, 4)):
            if len(found) < count:
                found.append((major, minor) if rng.random() < 0.8 else (major, minor, rng.randint(1, 3)))
        major += rng.choice((1, 1, 1, 2, 10))
    return found


def _dress(text: str, rng: random.Random) -> bytes:
    """The script's bytes as editors leave them: CRLF, a BOM, trailing whitespace, or plain."""
    style = rng.random()
    if style < 0.15:
        return text.replace("\n", "\r\n").encode()
    if style < 0.25:
        return b"\xef\xbb\xbf" + text.encode()
    if style < 0.35:
        return text.replace(";\n", ";   \n", 1).encode()
    return text.encode()


_WORDS: Final = (
    "accounts",
    "orders",
    "invoices",
    "café_prices",
    "audit",
    "users",
    "plans",
    "größe",
    "events",
)


def _versioned(parts: tuple[int, ...], serial: int, rng: random.Random) -> tuple[str, bytes]:
    desc = f"{rng.choice(_WORDS)}_{serial}"
    name = f"V{_version_text(parts, rng)}__{desc}.sql"
    table = f"t_{serial}"
    roll = rng.random()
    if roll < 0.08:  # non-transactional: Flyway runs it outside a transaction
        body = f"CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_{serial} ON anchor (id);\n"
    elif roll < 0.16:
        body = (
            f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, note text DEFAULT 'Zürich \u2013 東京');\n"
            f"COMMENT ON TABLE {table} IS 'region ${{region}}';\n"
        )
    elif roll < 0.24:
        body = (
            f"CREATE OR REPLACE FUNCTION fn_{serial}(x int) RETURNS int LANGUAGE plpgsql AS $$\n"
            "BEGIN\n  RETURN x + 1; -- a body with ; inside\nEND;\n$$;\n"
        )
    else:
        body = f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, created timestamptz DEFAULT now());\n"
    return name, _dress(body, rng)


_PLACEHOLDER_STYLES: Final = (
    "${tenant_id}",
    "${Tenant_Id}",
    "${region}",
    "${label.tier}",
    "${TENANT_SCHEMA}",
    "",
)


def _repeatable(name: str, revision: int, rng: random.Random) -> bytes:
    used = rng.choice(_PLACEHOLDER_STYLES)
    label = f"'{used}'::text" if used else "'none'::text"
    if rng.random() < 0.5:
        body = f"CREATE OR REPLACE VIEW v_{name} AS SELECT {revision} AS rev, {label} AS who;\n"
    else:
        body = (
            f"CREATE OR REPLACE FUNCTION rf_{name}() RETURNS text LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n  RETURN {label} || ' r{revision}';\nEND;\n$$;\n"
        )
    return _dress(body, rng)


def _first_revision(rng: random.Random, versions: int, repeatables: int) -> dict[str, bytes]:
    scripts: dict[str, bytes] = {}
    for serial, parts in enumerate(_versions(rng, versions), start=1):
        name, data = _versioned(parts, serial, rng)
        if serial == 1:  # the table the non-transactional scripts index
            data = b"CREATE TABLE IF NOT EXISTS anchor (id bigint);\n"
        folder = rng.choice(("", "", "", "core/", "core/2024/"))
        scripts[folder + name] = data
    for index in range(repeatables):
        scripts[f"R__{rng.choice(('report', 'rollup', 'summary', 'stats'))}_{index}.sql"] = _repeatable(
            str(index), 0, rng
        )
    if rng.random() < 0.4:
        scripts["afterMigrate.sql"] = b"SELECT 1;\n"
    if rng.random() < 0.3:
        scripts["beforeEachMigrate.sql"] = b"SELECT 1;\n"
    if rng.random() < 0.5:
        scripts["README.md"] = b"# not a migration\n"
    return scripts


def _version_of(name: str) -> tuple[int, ...] | None:
    base = name.rsplit("/", 1)[-1]
    if not base.startswith("V"):
        return None
    return tuple(int(p) for p in base[1 : base.index("__")].replace("_", ".").split("."))


class _Release:
    """One release's changes to a set: each method is one kind of change applications make."""

    def __init__(self, scripts: dict[str, bytes], revision: int, serial: int, rng: random.Random) -> None:
        self.scripts = dict(scripts)
        self.revision, self.serial, self.rng = revision, serial, rng
        self.hotfix = ""

    @property
    def versions(self) -> list[tuple[int, ...]]:
        return sorted(v for v in map(_version_of, self.scripts) if v)

    def _add(self, parts: tuple[int, ...]) -> None:
        name, data = _versioned(parts, self.serial, self.rng)
        self.scripts[name] = data
        self.serial += 1

    def edit_repeatable(self) -> None:
        """A view or function edited: every migrate re-applies it."""
        repeatables = [n for n in self.scripts if n.rsplit("/", 1)[-1].startswith("R__")]
        if repeatables:
            name = self.rng.choice(repeatables)
            self.scripts[name] = _repeatable(
                name.split("_")[-1].removesuffix(".sql"), self.revision, self.rng
            )

    def new_versions(self) -> None:
        top = self.versions[-1]
        for step in range(self.rng.randint(1, 3)):
            self._add((top[0] + 1 + step,))

    def hotfix_below_the_top(self) -> None:
        """An out-of-order hotfix: a version below the highest, added after it shipped."""
        versions = self.versions
        if len(versions) < 3:
            return
        low = versions[self.rng.randrange(len(versions) - 1)]
        parts = (*low, 9) if len(low) < 3 else (*low[:2], low[2] + 7)
        if parts not in versions and parts < versions[-1]:
            self._add(parts)
            self.hotfix = ".".join(map(str, parts))

    def non_transactional(self) -> None:
        """A ``CREATE INDEX CONCURRENTLY`` script; one that fails leaves a failed row."""
        version = self.versions[-1][0] + 1
        body = (
            f"CREATE INDEX CONCURRENTLY ix_{self.serial} ON no_such_table (id);\n"
            if self.rng.random() < 0.6
            else f"CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_{self.serial} ON anchor (id);\n"
        )
        self.scripts[f"V{version}__concurrent_{self.serial}.sql"] = body.encode()
        self.serial += 1

    def tamper(self) -> None:
        """An applied script edited after release, or renamed (a new description)."""
        name = self.rng.choice([n for n in self.scripts if _version_of(n)])
        if self.rng.random() < 0.5:
            self.scripts[name] = self.scripts[name] + b"-- edited after release\n"
            return
        folder, _, base = name.rpartition("/")
        renamed = base[: base.index("__")] + "__renamed_" + base[base.index("__") + 2 :]
        self.scripts[(folder + "/" if folder else "") + renamed] = self.scripts.pop(name)

    def delete_script(self) -> None:
        name = self.rng.choice([n for n in self.scripts if _version_of(n) or "R__" in n])
        del self.scripts[name]

    def change_callback(self) -> None:
        self.scripts["afterMigrate.sql"] = (
            b"SELECT 2;\n" if "afterMigrate.sql" in self.scripts else b"SELECT 1;\n"
        )


# How often each change comes in a release (weights).
_CHANGES: Final = (
    (40, _Release.edit_repeatable), (35, _Release.new_versions), (10, _Release.hotfix_below_the_top),
    (4, _Release.non_transactional), (4, _Release.tamper), (3, _Release.delete_script),
    (4, _Release.change_callback),
)  # fmt: skip


def _next_revision(
    scripts: dict[str, bytes], revision: int, serial: int, rng: random.Random
) -> tuple[dict[str, bytes], str]:
    """The set one release later; returns it and the hotfix version it added ("" if none)."""
    release = _Release(scripts, revision, serial, rng)
    for _ in range(rng.randint(1, 3)):
        change = rng.choices([c for _, c in _CHANGES], weights=[w for w, _ in _CHANGES])[0]
        change(release)
    return release.scripts, release.hotfix


def _tail(rng: random.Random, family: Family, hotfix_revision: int | None) -> list[Event]:
    """A tenant's own events after the shared prefix."""
    last = len(family.revisions) - 1
    events: list[Event] = []
    revision = family.prefix[-1].revision if family.prefix else 0
    for _ in range(rng.randint(0, 4)):
        roll = rng.random()
        if roll < 0.45 and revision < last:
            revision = rng.randint(revision + 1, last)
            events.append(Event("migrate", revision=revision))
        elif roll < 0.55:
            events.append(Event("migrate", revision=revision))  # re-run: repeatables re-applied
        elif roll < 0.62 and hotfix_revision is not None and hotfix_revision <= last:
            revision = max(revision, hotfix_revision)
            events.append(Event("migrate", revision=revision, out_of_order=True, target="current"))
        elif roll < 0.68:
            events.append(Event("migrate", revision=rng.randint(revision, last), target="next"))
        elif roll < 0.74:
            events.append(Event("repair", revision=rng.randint(0, last)))
        else:
            events.append(Event("edit", edit=rng.choice(HAND_EDITS), pick=rng.randrange(1000)))
    if rng.random() < 0.6 and revision < last:
        events.append(Event("migrate", revision=last))
    return events


def _versioned_scripts(family: Family) -> int:
    return sum(1 for name in family.revisions[0] if name.rsplit("/", 1)[-1].startswith("V"))


def generate(seed: int, *, families: int, members: int) -> tuple[list[Family], list[Case]]:
    """``families`` applications of ``members`` tenants each; the same seed, the same fleet."""
    rng = random.Random(seed)  # noqa: S311 - a seeded generator of test fleets, not a secret
    made: list[Family] = []
    cases: list[Case] = []
    for f in range(families):
        # What the coverage list needs but one family in ten or seven draws: the last family is
        # made so when no earlier one was (a seed must never pass or fail on luck).
        last = f == families - 1
        big = rng.random() < 0.15 or (last and not any(_versioned_scripts(m) >= 60 for m in made))
        scripts = _first_revision(rng, rng.randint(60, 120) if big else rng.randint(6, 30), rng.randint(1, 5))
        revisions = [scripts]
        hotfixes: dict[int, str] = {}
        for r in range(1, rng.randint(2, 5)):
            scripts, hotfix = _next_revision(scripts, r, 1000 * r, rng)
            revisions.append(scripts)
            if hotfix:
                hotfixes[r] = hotfix
        prefix_at = rng.randint(0, len(revisions) - 1)
        prefix = (Event("migrate", revision=0),) + (
            (Event("migrate", revision=prefix_at),) if prefix_at else ()
        )
        brownfield = any(m.prefix[0].kind == "baseline" for m in made)
        if rng.random() < 0.1 or (last and not brownfield):  # a brownfield fleet: baselined, then migrated
            first = min(v for v in map(_version_of, revisions[0]) if v)
            prefix = (Event("baseline", version=".".join(map(str, first))), *prefix[1:])
        family = Family(
            f"fam{f:02d}", tuple(revisions), prefix, rng.choice(("eu", "us-east", "ap")), hotfixes
        )
        made.append(family)
        hotfix_revision = min(hotfixes, default=None)
        for m in range(members):
            events = _tail(rng, family, hotfix_revision)
            judged = len(revisions) - 1 if rng.random() < 0.92 else rng.randrange(len(revisions))
            cases.append(
                Case(family.name, f"{family.name}_m{m:02d}", rng.choice(("internal", "gold")), tuple(events), judged,
                     check_repair=rng.random() < 0.35)
            )  # fmt: skip
    return made, cases
