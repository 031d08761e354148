"""Wave plans from the command line: ``--wave`` flags and ``--wave-plan`` files (YAML or JSON).

Both end as the same ``WaveSpec`` list the workflow input carries (plain JSON, see
``activities/tenants/waves.py``), so a pipeline may use whichever it likes, or write the workflow
input itself. Every mistake is named with where it is (``--wave 2``, ``waves[1] ('beta')``), and
all of a file's mistakes are listed at once, so one edit fixes them.

A ``--wave`` is ``;``-separated fields: the wave's name, then ``key=value`` fields or flags::

    --wave 'internal; labels=tier=internal; bake=30m; max-failures=0'
    --wave 'beta; labels=tier in (beta,early); gate; parallelism=4'
    --wave 'canary; percent=5; max-failure-ratio=0.2'
    --wave 'everyone; rest'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from fleetway.activities.errors import InvalidWavePlanError, from_validation_error
from fleetway.activities.tenants.waves import WaveSpec, check_waves

__all__ = ["load_wave_plan", "parse_wave_flag", "plan_only", "plan_servers", "waves_from_options"]

# --wave field → WaveSpec field; None: a flag (no value).
_FIELDS: Final[dict[str, tuple[str, bool]]] = {
    "labels": ("labels", True),
    "tenants": ("tenants", True),
    "count": ("count", True),
    "percent": ("percent", True),
    "rest": ("rest", False),
    "parallelism": ("parallelism", True),
    "max-failures": ("max_failures", True),
    "max-failure-ratio": ("max_failure_ratio", True),
    "bake": ("bake_s", True),
    "gate": ("gate", False),
    "target": ("target", True),
}
_MAX_MISTAKES_SHOWN: Final = 10


def _mistake(exc: ValidationError) -> str:
    return str(from_validation_error(exc))


def parse_wave_flag(text: str, *, position: int = 1) -> WaveSpec:
    """One ``--wave`` value as a :class:`WaveSpec`.

    Raises:
        InvalidWavePlanError: naming the flag's position and what is wrong.
    """
    where = f"--wave {position}"
    name, *fields = (part.strip() for part in text.split(";"))
    if not name:
        raise InvalidWavePlanError(
            f"{where}: starts with the wave's name, e.g. 'internal; labels=tier=internal'"
        )
    raw: dict[str, object] = {"name": name}
    for field in fields:
        if not field:
            continue
        key, sep, value = field.partition("=")
        key = key.strip()
        if key not in _FIELDS:
            raise InvalidWavePlanError(
                f"{where} ({name!r}): unknown field {key!r}; fields: {', '.join(_FIELDS)}"
            )
        target, takes_value = _FIELDS[key]
        if takes_value and not sep:
            raise InvalidWavePlanError(f"{where} ({name!r}): {key} needs a value ({key}=...)")
        if not takes_value and sep:
            raise InvalidWavePlanError(f"{where} ({name!r}): {key} is a flag and takes no value")
        if target in raw:
            raise InvalidWavePlanError(f"{where} ({name!r}): {key} is given twice")
        if key == "tenants":
            raw[target] = [t.strip() for t in value.split(",") if t.strip()]
        else:
            raw[target] = value.strip() if takes_value else True
    try:
        return WaveSpec.model_validate(raw)
    except ValidationError as exc:
        raise InvalidWavePlanError(f"{where} ({name!r}): {_mistake(exc)}") from None


def load_wave_plan(path: Path) -> list[WaveSpec]:
    """Waves from a YAML or JSON file: a list of waves, or ``{"waves": [...], "servers": {...}}``.

    Each wave is an object with the ``WaveSpec`` fields (``bake`` is accepted for ``bake_s``).

    Raises:
        InvalidWavePlanError: unreadable, not YAML/JSON, not a list of objects, or the waves'
            mistakes (all of them, each with its index and name).
    """
    where = f"wave plan {str(path)!r}"
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidWavePlanError(f"cannot read {where}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise InvalidWavePlanError(f"{where} is not valid {kind}") from None
    if isinstance(data, dict) and "waves" in data and set(data) <= {"waves", "servers"}:
        data = data["waves"]
    if not isinstance(data, list) or not data or not all(isinstance(w, dict) for w in data):
        raise InvalidWavePlanError(f'{where} must hold a non-empty list of waves, or {{"waves": [...]}}')
    waves: list[WaveSpec] = []
    mistakes: list[str] = []
    for index, raw in enumerate(data):
        entry = dict(raw)
        if "bake" in entry and "bake_s" not in entry:
            entry["bake_s"] = entry.pop("bake")
        try:
            waves.append(WaveSpec.model_validate(entry))
        except ValidationError as exc:
            mistakes.append(f"waves[{index}] ({str(raw.get('name', '?'))[:40]!r}): {_mistake(exc)}")
    if mistakes:
        more = len(mistakes) - _MAX_MISTAKES_SHOWN
        raise InvalidWavePlanError(
            f"{where}: "
            + "; ".join(mistakes[:_MAX_MISTAKES_SHOWN])
            + (f"; and {more} more" if more > 0 else "")
        )
    try:
        check_waves(waves)
    except InvalidWavePlanError as exc:
        raise InvalidWavePlanError(f"{where}: {exc}") from None
    return waves


def waves_from_options(flags: list[str], plan: Path | None) -> list[WaveSpec]:
    """The waves given by ``--wave`` flags or a ``--wave-plan`` file (not both).

    Raises:
        InvalidWavePlanError: both given, or anything :func:`parse_wave_flag` / :func:`load_wave_plan` names.
    """
    if flags and plan is not None:
        raise InvalidWavePlanError("give --wave flags or --wave-plan, not both")
    if plan is not None:
        return load_wave_plan(plan)
    waves = [parse_wave_flag(text, position=i) for i, text in enumerate(flags, start=1)]
    check_waves(waves)
    return waves


def plan_only(wave: WaveSpec) -> WaveSpec:
    """The wave as ``--dry-run`` runs it: the same selection and window, no gate, bake or halt."""
    return wave.model_copy(
        update={"gate": False, "bake_s": 0, "max_failures": None, "max_failure_ratio": None, "target": ""}
    )


def plan_servers(path: Path | None) -> dict[str, Any]:
    """The plan file's ``servers`` object (per-server controls), {} when it has none.

    Raises:
        InvalidWavePlanError: ``servers`` is not an object (its fields are checked with the rest).
    """
    if path is None:
        return {}
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    servers = data.get("servers", {}) if isinstance(data, dict) else {}
    if not isinstance(servers, dict):
        raise InvalidWavePlanError(f"wave plan {str(path)!r}: servers must be an object")
    return dict(servers)
