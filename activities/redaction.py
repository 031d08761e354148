"""Remove a password from text Flyway printed, before anything logs, parses or returns it.

Must not: log, or keep the password beyond the call.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Final

__all__ = ["MIN_REDACTABLE_LENGTH", "REDACTED", "SHORT_PASSWORD_SENTINEL", "redact"]

REDACTED: Final = "[REDACTED]"
MIN_REDACTABLE_LENGTH: Final = 8
_SUPPRESSED = "[REDACTED -- output suppressed: password too short for safe substring redaction]"
SHORT_PASSWORD_SENTINEL: Final = _SUPPRESSED

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _forms(password: str) -> list[str]:
    """Every spelling under which the password can show up in Flyway's output, longest first."""
    forms = {
        password,
        urllib.parse.quote(password, safe=""),
        urllib.parse.quote_plus(password, safe=""),
        json.dumps(password, ensure_ascii=False)[1:-1],
        json.dumps(password)[1:-1],
    }
    return sorted((f for f in forms if f), key=len, reverse=True)


def _replace_all(text: str, forms: list[str]) -> str:
    for form in forms:
        text = text.replace(form, REDACTED)
    return text


def redact(text: str, password: str | None) -> str:
    """Return ``text`` with every raw, URL-encoded and JSON-escaped form of ``password`` masked.

    A non-empty password under :data:`MIN_REDACTABLE_LENGTH` bytes replaces the whole output with
    a sentinel: masking a 3-character substring would both miss encodings and shred the text.
    When ``text`` is one valid JSON document, only string literals are touched, so a numeric
    password such as ``12345678`` cannot corrupt a number like ``"totalMigrationTime": 12345678``.
    """
    if not password:
        return text
    if len(password.encode()) < MIN_REDACTABLE_LENGTH:
        return SHORT_PASSWORD_SENTINEL
    forms = _forms(password)
    try:
        json.loads(text)
    except ValueError:
        return _replace_all(text, forms)
    return _JSON_STRING.sub(lambda m: _replace_all(m.group(0), forms), text)
