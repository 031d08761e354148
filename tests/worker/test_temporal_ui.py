"""Operators steer ring rollouts from the real Temporal UI, in a real browser.

Headless Chromium (Debian's ``chromium``, installed by ``./dev test``) driven by Playwright against
the UI the dev server serves: the rollout's page, its "Send an Update" form (``approve`` with a
JSON payload), its "Send a Signal" form (``quiesce``) and "Request Cancellation". What happened is
judged by the workflow's result, the audit trail and ``flyway_schema_history``. A screenshot of
each rollout page is kept in ``.artifacts/`` (or ``$FLEETWAY_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, Page, async_playwright
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import CancelledError

from fleetway.activities.audit.events import AuditEventType, Emitter
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.dev.stack import PostgresServer, TemporalDevServer
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus, WaveState
from tests.support import history, schema_exists
from tests.workflows.test_waves import ListSink, progress_until, ring_fleet, start, wave_state

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(os.environ.get("FLEETWAY_ARTIFACTS", Path(__file__).resolve().parents[2] / ".artifacts"))

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (./dev test installs it when run as root)",
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # Nothing beyond loopback: no name resolves but 127.0.0.1 (the UI page links fonts and docs
        # elsewhere; Playwright already turns off Chromium's background networking).
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
        )
        try:
            yield launched
        finally:
            await launched.close()


async def open_rollout(browser: Browser, server: TemporalDevServer, rollout_id: str) -> Page:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    await page.route(
        lambda url: not url.startswith(("http://127.0.0.1", "data:", "blob:")), lambda route: route.abort()
    )
    await page.goto(f"{server.ui_url}/{rollout_id}")
    await page.get_by_text("Request Cancellation").locator("visible=true").first.wait_for(timeout=30_000)
    return page


async def open_list(browser: Browser, server: TemporalDevServer, query: str) -> Page:
    """The UI's workflow list filtered by ``query`` (what an operator types in its search box)."""
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.route(
        lambda url: not url.startswith(("http://127.0.0.1", "data:", "blob:")), lambda route: route.abort()
    )
    await page.goto(f"{server.ui_url}?query={quote(query)}")
    return page


async def shown_metadata(page: Page, expected: str) -> str:
    """The text of the page's Markdown panes (the UI renders each in a sandboxed frame)."""
    text = ""
    for _ in range(60):
        frames = [f for f in page.frames if f is not page.main_frame]
        text = "\n".join([await f.locator("body").inner_text() for f in frames])
        if expected in text:
            break
        await page.wait_for_timeout(500)
    return text


async def send_from_the_ui(page: Page, form: str, handler: str, payload: object | None = None) -> str:
    """Use the rollout page's 'Send an Update' / 'Send a Signal' form; returns the handler's description."""
    await page.locator("button:has-text('More Actions'):visible").first.click()
    await page.get_by_text(form).locator("visible=true").first.click()
    dialog = page.locator("[role=dialog]:visible, dialog[open]").first
    await dialog.locator("button[aria-haspopup=true]").first.click()
    option = dialog.locator("li[role=option]").filter(has_text=handler).first
    description = await option.text_content() or ""
    await option.click()
    if payload is not None:
        await dialog.locator("[role=textbox][aria-label=Data]").click()
        await page.keyboard.insert_text(json.dumps(payload))  # no key events: no auto-closed brackets
    submit = dialog.locator("[data-testid=confirm-modal-button]")
    # Leaving the editor re-formats the JSON over several lines and the dialog grows: focus the
    # button first (the editor blurs, the layout settles), then click where the button now is.
    await submit.focus()
    await page.wait_for_timeout(300)
    await submit.click()
    await dialog.wait_for(state="hidden", timeout=15_000)
    return description


async def request_cancellation(page: Page) -> None:
    await page.get_by_text("Request Cancellation").locator("visible=true").first.click()
    dialog = page.locator("[role=dialog]:visible, dialog[open]").first
    await dialog.locator("[data-testid=confirm-modal-button]").click()
    await dialog.wait_for(state="hidden", timeout=15_000)


async def test_operators_approve_quiesce_and_cancel_ring_rollouts_from_the_temporal_ui(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, browser: Browser,
) -> None:  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fleet = ring_fleet(postgres)
    internal, beta, rest = fleet.tenants[:2], fleet.tenants[2:5], fleet.tenants[5:]
    waves = [
        WaveSpec(name="internal", labels="tier=internal"),
        WaveSpec(name="beta", labels="tier=beta", gate=True),
        WaveSpec(name="rest", rest=True, gate=True),
    ]
    sink = ListSink()
    async with fleet.worker(client, flyway_install, emitter=Emitter(sink)):
        # 1. approve the gated wave from the Update form, then cancel the rollout from the UI.
        handle = await start(client, fleet, MigrateAllInput(waves=waves))
        await progress_until(handle, wave_state("beta", WaveState.AWAITING_APPROVAL))
        listing = await open_list(browser, temporal_server, f'FleetwayRollout = "{handle.id}"')
        await listing.get_by_text(f"{handle.id}/{internal[0]}").first.wait_for(timeout=30_000)
        await listing.screenshot(path=str(ARTIFACTS / "temporal-ui-rollout-tenants.png"), full_page=True)
        page = await open_rollout(browser, temporal_server, handle.id)
        # The timeline names each tenant's child by its summary; the "User Metadata" tab shows what the
        # rollout is (its summary) and where it stands (its current details: the gate it waits at).
        await page.get_by_text(f"{internal[0]} · migrate").first.wait_for(timeout=30_000)
        await page.get_by_text("User Metadata").locator("visible=true").first.click()
        metadata = await shown_metadata(page, f"fleetway approve {handle.id}")
        await page.screenshot(path=str(ARTIFACTS / "temporal-ui-rollout-at-its-gate.png"), full_page=True)
        described = await send_from_the_ui(
            page,
            "Send an Update",
            "approve",
            {"principal": "ui-operator@example.com", "wave": "beta", "reason": "approved in the Temporal UI"},
        )
        await progress_until(handle, wave_state("rest", WaveState.AWAITING_APPROVAL))
        await request_cancellation(page)
        with pytest.raises(WorkflowFailureError) as cancelled:
            await handle.result()
        await page.reload()
        await page.get_by_text("Canceled").locator("visible=true").first.wait_for(timeout=30_000)
        await page.screenshot(path=str(ARTIFACTS / "temporal-ui-ring-rollout-cancelled.png"), full_page=True)

        # 2. quiesce a second rollout at its gate from the Signal form.
        second = await start(client, fleet, MigrateAllInput(waves=waves))
        await progress_until(second, wave_state("beta", WaveState.AWAITING_APPROVAL))
        page = await open_rollout(browser, temporal_server, second.id)
        skipped = {"tenant": rest[0], "principal": "ui-operator@example.com", "reason": "offboarding"}
        await send_from_the_ui(page, "Send an Update", "skip_tenant", skipped)
        await send_from_the_ui(page, "Send a Signal", "quiesce")
        quiesced = await second.result()
        await page.reload()
        await page.screenshot(path=str(ARTIFACTS / "temporal-ui-ring-rollout-quiesced.png"), full_page=True)

    # What the rollout is, and where it stands, as the "User Metadata" tab showed it at the gate.
    said = "migrate set the worker\u2019s set · source default · 3 waves · by \u2039unspecified\u203a"
    assert said in metadata  # (the UI typesets the apostrophe; angle brackets would vanish as HTML)
    assert "wave 3 rest: the rest, gate" in metadata
    assert "beta: awaiting_approval" in metadata and f"fleetway approve {handle.id}" in metadata
    assert "Open the wave that waits at its approval gate" in described  # the UI lists our description
    assert isinstance(cancelled.value.cause, CancelledError)
    approvals = [e for e in sink.events if e.type is AuditEventType.WAVE_APPROVED]
    assert [(e.principal, e.target, e.attributes.get("rollout.wave")) for e in approvals] == [
        ("ui-operator@example.com", handle.id, "beta")
    ]
    assert approvals[0].attributes["rollout.reason"] == "approved in the Temporal UI"
    for tenant in internal + beta:  # the approved ring ran, the cancelled gate held the rest
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]
    assert not any(schema_exists(postgres, t) for t in rest)
    assert quiesced.status is RolloutStatus.QUIESCED
    assert quiesced.operator_actions == [f"{rest[0]} skipped by ui-operator@example.com: offboarding"]
    assert [(e.principal, e.target) for e in sink.events if e.type is AuditEventType.TENANT_SKIPPED] == [
        ("ui-operator@example.com", rest[0])
    ]
    assert [w.state for w in quiesced.waves] == [
        WaveState.DONE,
        WaveState.AWAITING_APPROVAL,
        WaveState.PENDING,
    ]
    assert (ARTIFACTS / "temporal-ui-ring-rollout-cancelled.png").stat().st_size > 10_000
