"""The settings page's table (``docs/settings.md``), generated from the ``Settings`` model.

``python -m fleetway.worker.config.settings_table`` prints it; a test fails when the page's copy
differs, so every setting is documented with its real default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from fleetway.worker.config.settings import Settings

__all__ = ["settings_rows", "settings_table"]


def _default(field: Any) -> str:
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None or value is PydanticUndefined:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, list):
        return f"`{json.dumps([str(v) for v in value])}`" if value else "`[]`"
    return f"`{value}`"


def settings_rows(
    model: type[BaseModel] = Settings, env: str = "FLEETWAY_", toml: str = ""
) -> list[tuple[str, ...]]:
    """(environment variable, TOML key, default, meaning) for every leaf setting."""
    rows: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        if field.validation_alias is not None:
            continue  # the TEMPORAL_* aliases, documented on the fields they feed
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += settings_rows(annotation, f"{env}{name.upper()}__", f"{toml}{name}.")
        else:
            rows.append(
                (f"`{env}{name.upper()}`", f"`{toml}{name}`", _default(field), field.description or "")
            )
    return rows


def settings_table() -> str:
    """The Markdown table."""
    lines = ["| environment variable | TOML key | default | meaning |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in settings_rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
