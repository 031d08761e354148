"""The one duration grammar of fleetway: whole seconds, or ``1d``, ``2h``, ``30m``, ``90s`` and combinations.

Used by a wave's ``bake`` and ``fleetway quiesce set --ttl`` alike, so a value that works in one
place works in the other. No fractions (``1.5h`` is written ``1h30m``), no signs.
"""

from __future__ import annotations

import re
from typing import Final

from fleetway.activities.errors import FleetwayError, InvalidInputError

__all__ = ["parse_duration_s"]

_DURATION: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_EXAMPLES: Final = "a number of seconds or like 90s, 30m, 2h, 1d, 1h30m"


def parse_duration_s(
    value: object, *, what: str = "duration", error: type[FleetwayError] = InvalidInputError
) -> int:
    """Seconds from an int or a duration string (see the module docstring).

    Raises:
        FleetwayError: ``error`` (``InvalidInputError`` unless the caller names its own), naming
            ``what`` and the accepted forms, for anything else (``-5``, ``soon``, ``1.5h``, ``true``).
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = value.strip() if isinstance(value, str) else ""
    if text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text) if text else None
    if match is None or not any(match.groups()):
        raise error(f"{what} {str(value)[:40]!a} is not {_EXAMPLES}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
