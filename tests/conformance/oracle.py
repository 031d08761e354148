"""Flyway's word and fleetway's word on one tenant, in the same terms, and where they differ.

Flyway's word is what real Flyway says of the tenant with the same set and the same placeholders:
``info`` (each migration's state, the schema version) and ``validate`` as fleetway runs it
(``*:pending,*:future`` ignored, Flyway's own ``validateOnMigrate`` patterns). fleetway's word is its
table read (``TenantState``). Both become a :class:`Word`; :func:`disagreements` lists every field on
which they differ. "unknown" is fleetway's only excuse, and only in the classes :data:`UNKNOWABLE`
names (each documented in docs/rollouts.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from fleetway.activities.errors import FlywayError, FlywayReportedFailureError
from fleetway.activities.fleet.state import TenantState
from fleetway.activities.flyway.checksums import version_key
from fleetway.activities.flyway.output import FlywayOutcome, InfoEntry

__all__ = ["UNKNOWABLE", "Word", "disagreements", "fleetways_word", "flyways_word"]

_MISMATCHES: Final = frozenset({"CHECKSUM_MISMATCH", "DESCRIPTION_MISMATCH", "TYPE_MISMATCH"})
_FAILED: Final = frozenset({"Failed", "Failed (Missing)", "Failed (Future)"})
_AHEAD: Final = frozenset({"Missing", "Future"})
# Why fleetway may answer "unknown" although Flyway answers: the table and the set cannot say.
# Each is named in docs/rollouts.md ("what the table read concludes").
UNKNOWABLE: Final = (
    # A repeatable whose recorded checksum is not its raw one, with a placeholder value only a run
    # has (``${flyway:timestamp}``, ``${flyway:workingDirectory}``): Flyway's answer depends on the run.
    "only a Flyway run has",
)


def _key(entry: InfoEntry) -> str:
    return _canonical(entry.version) if entry.version else f"R {entry.description}"


def _canonical(version: str) -> str:
    return ".".join(map(str, version_key(version))) if version else ""


@dataclass(frozen=True)
class Word:
    """One side's answer about a tenant, canonical (versions as Flyway's numeric identity)."""

    version: str = ""
    failed: frozenset[str] = frozenset()
    tampered: frozenset[str] = frozenset()
    ahead: frozenset[str] = frozenset()
    outdated: frozenset[str] = frozenset()
    pending: frozenset[str] = frozenset()
    ignored: frozenset[str] = frozenset()
    intact: bool = False
    current: bool = False
    refused: str = (
        ""  # Flyway refused to answer at all (an unresolvable set or row), or fleetway said unknown
    )
    lists_cut: bool = False  # fleetway names at most 20 per list: compare the named ones only
    detail: dict[str, object] = field(default_factory=dict, compare=False)


def word_from_json(data: dict[str, Any]) -> Word:
    """A :class:`Word` recorded as JSON (lists for sets), for the fast tier's replays."""

    def listed(name: str) -> frozenset[str]:
        return frozenset(data[name])

    return Word(
        version=str(data["version"]), intact=bool(data["intact"]), current=bool(data["current"]),
        refused=str(data["refused"]), lists_cut=bool(data["lists_cut"]), failed=listed("failed"),
        tampered=listed("tampered"), ahead=listed("ahead"), outdated=listed("outdated"),
        pending=listed("pending"), ignored=listed("ignored"),
    )  # fmt: skip


def flyways_word(info: FlywayOutcome | FlywayError, validate: FlywayOutcome | FlywayError) -> Word:
    """Flyway's answer from its ``info`` and ``validate`` of the tenant (each an outcome or its refusal)."""
    if isinstance(info, FlywayError):
        return Word(refused=f"info: {info.outcome.error_code if info.outcome else info.error_type}")
    entries = info.info
    failed = frozenset(_key(e) for e in entries if e.state in _FAILED)
    issues = (
        validate.outcome.validation_issues
        if isinstance(validate, FlywayReportedFailureError) and validate.outcome
        else []
    )
    valid = isinstance(validate, FlywayOutcome) and validate.success
    outdated = frozenset(e.description for e in entries if e.state == "Outdated")
    pending = frozenset(
        _key(e) for e in entries if e.state == "Pending" and (e.version or e.description not in outdated)
    )
    ahead = frozenset(_key(e) for e in entries if e.state in _AHEAD)
    ignored = frozenset(_key(e) for e in entries if e.state == "Ignored")
    intact = valid and not (failed or ahead or outdated or ignored)
    return Word(
        version=_canonical(info.ending_version),
        failed=failed,
        tampered=frozenset(
            _canonical(i.version) if i.version else f"R {i.description}"
            for i in issues
            if i.error_code in _MISMATCHES
        ),
        ahead=ahead,
        outdated=outdated,
        pending=pending,
        ignored=ignored,
        intact=intact,
        current=intact and not pending,
        detail={
            "states": [(e.version or e.description, e.state) for e in entries if e.state != "Success"],
            "issues": [(i.version, i.error_code) for i in issues],
            "validate": "passed" if valid else getattr(validate, "error_type", "failed"),
        },
    )


def fleetways_word(state: TenantState) -> Word:
    """fleetway's answer: its table read's verdict on the tenant."""

    def keys(items: list[str]) -> frozenset[str]:
        return frozenset(i if i.startswith("R ") else _canonical(i) for i in items)

    cut = any(
        len(x) >= 20 for x in (state.pending, state.failed, state.tampered, state.ahead, state.outdated)
    )
    return Word(
        version=_canonical(state.version),
        failed=keys(state.failed),
        tampered=keys(state.tampered),
        ahead=keys(state.ahead),
        outdated=frozenset(state.outdated),
        pending=keys(state.pending),
        ignored=keys(getattr(state, "ignored", [])),
        intact=state.intact,
        current=state.current,
        refused=state.unknown,
        lists_cut=cut,
        detail={"state": state.state.value, "unknown": state.unknown},
    )


def disagreements(flyway: Word, fleetway: Word) -> list[str]:
    """Every field on which the two differ ([] when fleetway's word is Flyway's)."""
    if flyway.refused:
        return [] if fleetway.refused else [f"Flyway refuses ({flyway.refused}) where fleetway judged"]
    if fleetway.refused:
        if any(excuse in fleetway.refused for excuse in UNKNOWABLE):
            return [] if not fleetway.current and not fleetway.intact else ["unknown yet proven"]
        return [f"fleetway says unknown ({fleetway.refused}) where Flyway answers"]
    found = []
    for name in ("version", "intact", "current"):
        if getattr(flyway, name) != getattr(fleetway, name):
            found.append(f"{name}: flyway {getattr(flyway, name)!r} fleetway {getattr(fleetway, name)!r}")
    for name in ("failed", "tampered", "ahead", "outdated", "pending", "ignored"):
        theirs, ours = getattr(flyway, name), getattr(fleetway, name)
        if theirs != ours and not (fleetway.lists_cut and ours <= theirs and len(ours) >= 20):
            found.append(f"{name}: flyway {sorted(theirs)} fleetway {sorted(ours)}")
    return found
