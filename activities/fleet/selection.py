"""``--where``: choosing a rollout's tenants by what their tables show (issue 25).

A condition is one of ``behind``, ``failed``, ``tampered``, ``ahead``, ``outdated``, ``ignored``, ``current``,
or a version comparison ``version<V`` (also ``<=``, ``=``, ``>=``, ``>``); several, separated by
commas, select a tenant when any holds. A tenant with no history has version "" (below every V).
Pure; validated when a rollout starts, so a typo is refused before anything runs.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Final

from fleetway.activities.errors import InvalidInputError
from fleetway.activities.fleet.state import FleetState, TenantState
from fleetway.activities.flyway.checksums import version_key

__all__ = ["WHERE_WORDS", "check_where", "selects"]

WHERE_WORDS: Final = ("behind", "failed", "tampered", "ahead", "outdated", "ignored", "current")
_COMPARISON: Final = re.compile(r"version\s*(<=|>=|<|>|=)\s*([0-9]+(?:[._][0-9]+)*)")
_Key = tuple[int, ...]
_OPERATORS: Final[dict[str, Callable[[_Key, _Key], bool]]] = {
    "<": operator.lt, "<=": operator.le, "=": operator.eq, ">=": operator.ge, ">": operator.gt,
}  # fmt: skip


def _condition(term: str) -> Callable[[TenantState], bool]:
    if term in WHERE_WORDS:
        return {
            "behind": lambda s: s.pending_count > 0,
            "failed": lambda s: bool(s.failed),
            "tampered": lambda s: bool(s.tampered),
            "ahead": lambda s: bool(s.ahead),
            "outdated": lambda s: bool(s.outdated),
            "ignored": lambda s: bool(s.ignored),
            "current": lambda s: s.state is FleetState.CURRENT,
        }[term]
    if match := _COMPARISON.fullmatch(term):
        compare, limit = _OPERATORS[match.group(1)], version_key(match.group(2))
        return lambda s: compare(version_key(s.version) if s.version else (), limit)
    raise InvalidInputError(
        f"--where term {term[:40]!a} is not one of {', '.join(WHERE_WORDS)} or version<V, <=, =, >=, >"
    )


def check_where(where: str) -> str:
    """``where`` normalized (terms stripped), or :class:`InvalidInputError` naming the bad term."""
    terms = [t.strip() for t in where.split(",") if t.strip()]
    for term in terms:
        _condition(term)
    return ",".join(terms)


def selects(where: str, state: TenantState) -> bool:
    """Whether ``state`` satisfies any condition of ``where`` ("" selects everyone, read or not)."""
    terms = [t for t in where.split(",") if t]
    if not terms:
        return True
    if state.unreadable:
        return False  # a selection never takes a tenant on a guess
    return any(_condition(t)(state) for t in terms)
