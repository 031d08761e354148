"""Tenant labels and label selectors: which tenants a ring-rollout wave takes.

A tenant source may return labels with each id (``{"tier": "enterprise", "region": "eu"}``). They
decide who is migrated first, so they are validated like ids: a bounded count, a safe alphabet for
keys and values, and no key that names a credential (labels travel into plans, logs and results,
so a secret must never ride in one). Selectors follow the Kubernetes grammar a platform team
already knows: ``tier=internal``, ``tier!=free``, ``region in (eu,us)``, ``region notin (ap)``,
``canary`` (the key exists), ``!legacy`` (it does not); requirements joined by ``,`` all hold.
Pure: safe to import from workflows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from fleetway.activities.errors import InvalidLabelSelectorError, InvalidTenantLabelError

__all__ = [
    "LABEL_KEY_PATTERN",
    "LABEL_VALUE_PATTERN",
    "MAX_LABELS",
    "LabelSelector",
    "parse_selector",
    "validate_labels",
]

LABEL_KEY_PATTERN: Final = re.compile(r"[a-z0-9](?:[a-z0-9._/-]{0,61}[a-z0-9])?")
LABEL_VALUE_PATTERN: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
MAX_LABELS: Final = 16
MAX_SELECTOR_CHARS: Final = 1000
# Keys that name a credential: a label with such a key is refused, whatever its value.
_SECRET_KEY: Final = re.compile(r"passw|secret|token|credential|api[._-]?key|private[._-]?key|dsn")

Operator = Literal["=", "!=", "in", "notin", "exists", "!exists"]


def validate_labels(raw: object, *, tenant: str, where: str) -> dict[str, str]:
    """One tenant's labels checked: a mapping of at most 16 safe keys to safe values.

    Raises:
        InvalidTenantLabelError: naming the tenant, where the labels came from and the rule.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidTenantLabelError(f"labels of tenant {tenant!r} {where} must be an object of strings")
    if len(raw) > MAX_LABELS:
        raise InvalidTenantLabelError(
            f"tenant {tenant!r} {where} has {len(raw)} labels; at most {MAX_LABELS} are allowed"
        )
    labels: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not LABEL_KEY_PATTERN.fullmatch(key):
            raise InvalidTenantLabelError(
                f"label key {str(key)[:80]!a} of tenant {tenant!r} {where} is invalid; "
                "keys match ^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$"
            )
        if _SECRET_KEY.search(key):
            raise InvalidTenantLabelError(
                f"label key {key!r} of tenant {tenant!r} {where} names a credential; "
                "labels must never carry secrets"
            )
        if not isinstance(value, str) or not LABEL_VALUE_PATTERN.fullmatch(value):
            # The value is not echoed: a rejected value may be exactly the secret that must not leak.
            raise InvalidTenantLabelError(
                f"label {key!r} of tenant {tenant!r} {where} has an invalid value; "
                "values are strings matching ^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
            )
        labels[key] = value
    return labels


@dataclass(frozen=True)
class Requirement:
    """One term of a selector: ``key`` compared by ``op`` with ``values``."""

    key: str
    op: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this term (a missing key never equals a value)."""
        value = labels.get(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "!exists":
            return value is None
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        return value is None or value not in self.values  # "!=" and "notin", as in Kubernetes


@dataclass(frozen=True)
class LabelSelector:
    """A parsed selector: every requirement must hold."""

    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a tenant with ``labels`` is selected."""
        return all(r.matches(labels) for r in self.requirements)


_KEY = r"[a-z0-9](?:[a-z0-9._/-]{0,61}[a-z0-9])?"
_VALUE = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
_EXISTS = re.compile(rf"\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*")
_COMPARE = re.compile(rf"\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*")
_SET = re.compile(rf"\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*")


def _terms(text: str) -> list[str]:
    """Split at commas outside parentheses."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
        if depth not in (0, 1):
            raise InvalidLabelSelectorError(f"label selector {text!a}: unbalanced parentheses")
    if depth:
        raise InvalidLabelSelectorError(f"label selector {text!a}: unbalanced parentheses")
    terms.append(text[start:])
    return terms


def _requirement(term: str, text: str) -> Requirement:
    if match := _SET.fullmatch(term):
        values = [v.strip() for v in match["values"].split(",")]
        bad = [v for v in values if not LABEL_VALUE_PATTERN.fullmatch(v)]
        if bad:
            raise InvalidLabelSelectorError(
                f"label selector {text!a}: {bad[0]!a} in {term.strip()!a} is not a valid value"
            )
        return Requirement(match["key"], "in" if match["op"] == "in" else "notin", frozenset(values))
    if match := _COMPARE.fullmatch(term):
        op: Operator = "!=" if match["op"] == "!=" else "="
        return Requirement(match["key"], op, frozenset({match["value"]}))
    if match := _EXISTS.fullmatch(term):
        return Requirement(match["key"], "!exists" if match["neg"] else "exists")
    raise InvalidLabelSelectorError(
        f"label selector {text!a}: cannot read {term.strip() or '(empty term)'!a}; "
        "terms are key=value, key!=value, key in (a,b), key notin (a,b), key or !key"
    )


def parse_selector(text: str) -> LabelSelector:
    """Parse ``text`` into a :class:`LabelSelector`.

    Raises:
        InvalidLabelSelectorError: empty, too long, unbalanced, or a term that does not parse.
    """
    if not text.strip():
        raise InvalidLabelSelectorError("label selector is empty")
    if len(text) > MAX_SELECTOR_CHARS:
        raise InvalidLabelSelectorError(f"label selector is longer than {MAX_SELECTOR_CHARS} characters")
    return LabelSelector(text.strip(), tuple(_requirement(term, text) for term in _terms(text)))
