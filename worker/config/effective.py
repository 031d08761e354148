"""What a process would run with: every setting's effective value and where it came from.

``fleetway settings`` prints it. A value comes from the environment (``FLEETWAY_<SECTION>__<KEY>``,
or ``TEMPORAL_ADDRESS``/``TEMPORAL_NAMESPACE`` for the Temporal section), from the TOML file named
by ``$FLEETWAY_CONFIG``, or is the default, in that order of precedence (``Settings``' own). Secret
fields (``SecretStr``) show as ``set``/``unset``, never a character of the value, so the output can
be pasted into a ticket.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from fleetway.worker.config.settings import Settings

__all__ = ["SettingRow", "effective_settings"]

# The standard Temporal variables override the section's keys (Settings.effective_temporal).
_TEMPORAL_ALIASES = {"temporal.address": "TEMPORAL_ADDRESS", "temporal.namespace": "TEMPORAL_NAMESPACE"}


@dataclass(frozen=True)
class SettingRow:
    """One leaf setting: its TOML key, environment variable, shown value and source."""

    key: str
    env: str
    value: str
    source: str


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "set (hidden)"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "[]"
    return str(value)


def _toml_keys(path: Path) -> set[str]:
    """Dotted keys present in the TOML file (an unreadable file was already refused by Settings)."""
    keys: set[str] = set()

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for name, value in table.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{name}.")
            keys.add(f"{prefix}{name}")

    walk(tomllib.loads(path.read_text()), "")
    return keys


def effective_settings(settings: Settings, env: Mapping[str, str] | None = None) -> list[SettingRow]:
    """A row per leaf setting of ``settings`` (loaded from ``env``, default ``os.environ``)."""
    env = os.environ if env is None else env
    upper_env = {k.upper(): k for k in env}
    config = env.get("FLEETWAY_CONFIG")
    in_file = _toml_keys(Path(config)) if config else set()
    effective_temporal = settings.effective_temporal()
    rows: list[SettingRow] = []

    def walk(model: BaseModel, key_prefix: str, env_prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            if field.validation_alias is not None:
                continue  # TEMPORAL_* aliases: reported on the temporal.* rows they feed
            value = getattr(model, name)
            key, var = f"{key_prefix}{name}", f"{env_prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                walk(value, f"{key}.", f"{var}__")
                continue
            alias = _TEMPORAL_ALIASES.get(key)
            if alias and alias in upper_env and env[upper_env[alias]]:
                value, source = getattr(effective_temporal, name), f"environment ({alias})"
            elif var in upper_env:
                source = f"environment ({upper_env[var]})"
            elif key in in_file or any(k.startswith(f"{key}.") for k in in_file):
                source = f"file ({config})"
            else:
                source = "default"
            rows.append(SettingRow(key=key, env=var, value=_shown(value), source=source))

    walk(settings, "", "FLEETWAY_")
    return rows
