"""The tenant feed's rules, as plain Python: pages, a broken source, the read front, the carry."""

from __future__ import annotations

import pytest

from fleetway.activities.tenants.walk import MAX_PAGES
from fleetway.workflows.migrate_all_models import RolloutCarry
from fleetway.workflows.tenant_feed import TenantFeed

pytestmark = pytest.mark.fast


def test_pages_join_the_line_until_the_source_has_no_cursor_left() -> None:
    feed = TenantFeed(RolloutCarry())
    assert feed.needs_page()
    assert feed.accept_page(["a", "b"], "c1") == ""
    assert not feed.needs_page() and list(feed) == ["a", "b"] and feed.cursor == "c1"
    assert (feed.take(), feed.take()) == ("a", "b")
    assert feed.needs_page()
    assert feed.accept_page(["c"], None) == ""
    assert feed.exhausted and feed.pages == 2 and list(feed) == ["c"]
    feed.take()
    assert not feed.needs_page()  # exhausted: nothing more to ask


def test_a_source_that_repeats_a_cursor_or_pages_forever_is_named_and_its_page_still_listed() -> None:
    feed = TenantFeed(RolloutCarry())
    assert feed.accept_page(["a"], "c1") == ""
    assert feed.accept_page(["b"], "c1") == "repeated a cursor (cycle detected)"
    assert list(feed) == ["a", "b"]
    long = TenantFeed(RolloutCarry(pages=MAX_PAGES - 1))
    assert long.accept_page(["x"], "next") == f"exceeded {MAX_PAGES} pages"


def test_a_read_keeps_the_tenants_that_still_need_a_run_first_in_line_counted_read() -> None:
    feed = TenantFeed(RolloutCarry())
    feed.add(["a", "b", "c", "d"], whole=True)
    assert feed.unread_front() and feed.front(3) == ["a", "b", "c"]
    feed.read_front(3, keep=["b"])  # a current, c unselected
    assert list(feed) == ["b", "d"] and feed.read == 1 and not feed.unread_front()
    assert feed.take() == "b" and feed.read == 0 and feed.unread_front()
    feed.put_back("b", read=True)
    assert feed.read == 1 and list(feed) == ["b", "d"]
    assert feed.take_front(1, read=True) == ["b"] and feed.read == 0


def test_what_the_feed_carries_is_what_the_next_run_starts_from() -> None:
    feed = TenantFeed(RolloutCarry())
    feed.accept_page(["a", "b", "c"], "c1")
    feed.read_front(2, keep=["b"])
    carried = RolloutCarry(**feed.carried(["q"], queued_read=True))
    again = TenantFeed(carried)
    assert list(again) == ["q", "b", "c"] and again.read == 2  # the queued one was read too
    assert (again.cursor, again.pages, again.exhausted) == ("c1", 1, False)
    assert again.accept_page(["d"], "c1") == "repeated a cursor (cycle detected)"  # digests carried
