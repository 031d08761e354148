"""Static tenant sources and tenants files: validation, duplicates, paging."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetway.activities.errors import InvalidTenantIdError, TenantSourceError
from fleetway.activities.tenants.static import StaticTenantLister, load_tenants_file


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("t.txt", "# fleet\nacme\n  globex  \n\n"),
        ("t.json", '{"tenants": ["acme", "globex"]}'),
        ("t.yaml", "- acme\n- globex\n"),
    ],
)
def test_tenants_file_is_read_in_each_format_and_trimmed(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    assert load_tenants_file(tmp_path / name) == ["acme", "globex"]


def test_tenants_file_with_an_invalid_id_names_it_escaped(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("acme\nbad/id\n")
    with pytest.raises(InvalidTenantIdError, match="'bad/id'"):
        load_tenants_file(tmp_path / "t.txt")


def test_tenants_file_of_the_wrong_shape_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"tenants": [1, 2]}')
    with pytest.raises(TenantSourceError):
        load_tenants_file(tmp_path / "t.json")
    with pytest.raises(TenantSourceError):
        load_tenants_file(tmp_path / "missing.txt")


async def test_static_lister_reports_duplicates_and_pages_to_the_end() -> None:
    with pytest.raises(TenantSourceError, match="acme"):
        StaticTenantLister(["acme", "globex", "acme"])
    lister = StaticTenantLister([f"t{i}" for i in range(5)])
    first = await lister.list_page(None, 2)
    second = await lister.list_page(first.next_cursor, 2)
    last = await lister.list_page(second.next_cursor, 2)
    assert (first.tenant_ids, second.tenant_ids, last.tenant_ids) == (["t0", "t1"], ["t2", "t3"], ["t4"])
    assert last.next_cursor is None
