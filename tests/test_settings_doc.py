"""Every setting is documented: the settings page's table (docs/settings.md) is exactly what the Settings model generates
(field docstrings and real defaults), and every environment variable the model accepts is in it."""

from __future__ import annotations

import os

from fleetway.worker.config.settings import Settings
from fleetway.worker.config.settings_table import settings_rows, settings_table
from fleetway.worker.dev.stack import PROJECT_ROOT


def test_the_settings_page_table_is_the_generated_one() -> None:
    readme = PROJECT_ROOT.joinpath("docs", "settings.md").read_text()
    start = readme.index("\n", readme.index("<!-- settings-table:start")) + 1
    end = readme.index("<!-- settings-table:end -->")
    assert readme[start:end] == settings_table(), "run: python -m fleetway.worker.config.settings_table"


def test_every_row_is_a_working_environment_variable() -> None:
    rows = settings_rows()
    assert len(rows) > 50 and all(meaning for *_, meaning in rows)
    saved = dict(os.environ)
    try:  # each documented name really sets its setting
        os.environ["FLEETWAY_WORKER__MAX_CONCURRENT_ACTIVITIES"] = "3"
        os.environ["FLEETWAY_SECRETS__VAULT__MOUNT"] = "kv-fleet"
        os.environ["TEMPORAL_ADDRESS"] = "temporal.internal:7233"
        settings = Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert settings.worker.max_concurrent_activities == 3
    assert settings.secrets.vault.mount == "kv-fleet"
    assert settings.effective_temporal().address == "temporal.internal:7233"
    assert "`FLEETWAY_WORKER__MAX_CONCURRENT_ACTIVITIES`" in settings_table()
