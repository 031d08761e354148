"""Migration sets: the digest's definition, the set stores (a folder and S3 on moto's server), the cache."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest

from fleetway.activities.errors import (
    MigrationSetInvalidError,
    MigrationSetMismatchError,
    MigrationStoreError,
)
from fleetway.activities.sets.digest import check_digest, parse_manifest, scan_set
from fleetway.activities.sets.store import DirectorySetStore, MigrationSets, S3SetStore, SetCache, push_set
from fleetway.worker.dev.secrets import AWS_TEST_ENV, MotoServer
from tests.support import DEMO_MIGRATIONS, copy_migrations


def _digest_by_shell(folder: Path) -> str:
    """The documented coreutils pipeline, run for real: the definition must not need fleetway."""
    out = subprocess.run(  # noqa: S602 - the documented pipeline, verbatim
        "find -L . -type f ! -path '*/.*' -printf '%P\\n' | LC_ALL=C sort | xargs -r -d '\\n' sha256sum "
        "| sha256sum",
        shell=True, cwd=folder, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return "sha256:" + out.stdout.split()[0]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_set_digest_is_the_documented_sha256sum_pipeline_whatever_the_file_order(tmp_path: Path) -> None:
    files = {"V1__a.sql": "CREATE TABLE a (id int);\n", "sub/V2__b.sql": "SELECT 1;\n", "R__v.sql": "--r\n",
             "V10__c.sql": "SELECT 10;\n", ".gitkeep": "", ".hidden/V3__x.sql": "SELECT 3;\n"}  # fmt: skip
    forward = _tree(tmp_path / "forward", files)
    backward = _tree(tmp_path / "backward", dict(reversed(files.items())))

    manifest, _ = scan_set([forward])

    assert manifest.digest == scan_set([backward])[0].digest == _digest_by_shell(forward)
    assert [e.path for e in manifest.entries] == ["R__v.sql", "V10__c.sql", "V1__a.sql", "sub/V2__b.sql"]
    assert scan_set([DEMO_MIGRATIONS])[0].digest == _digest_by_shell(DEMO_MIGRATIONS)


def test_set_digest_changes_with_a_byte_or_a_name_and_two_folders_form_one_set(tmp_path: Path) -> None:
    base = copy_migrations(tmp_path / "base")
    digest = scan_set([base])[0].digest
    (base / "V5__add_account_status.sql").write_text((base / "V5__add_account_status.sql").read_text() + " ")
    edited = scan_set([base])[0].digest
    (base / "V5__add_account_status.sql").rename(base / "V5__renamed.sql")

    assert len({digest, edited, scan_set([base])[0].digest}) == 3
    first, second = copy_migrations(tmp_path / "a", upto=3), tmp_path / "b"
    second.mkdir()
    for script in DEMO_MIGRATIONS.glob("V[45]__*.sql"):
        (second / script.name).write_text(script.read_text())
    assert scan_set([first, second])[0].digest == scan_set([DEMO_MIGRATIONS])[0].digest
    (second / "V1__create_accounts.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationSetInvalidError, match="is in two migrations folders"):
        scan_set([first, second])


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist"),
        ("file", "is not a folder"),
        ("empty", "holds no .sql script"),
        ("readme-only", "holds no .sql script"),
        ("none", "no migrations folder is configured"),
    ],
)
def test_set_scan_refuses_a_location_that_would_apply_nothing(
    tmp_path: Path, layout: str, message: str
) -> None:
    folder = tmp_path / "scripts"
    if layout == "file":
        folder.write_text("V1__x.sql")
    elif layout in {"empty", "readme-only"}:
        folder.mkdir()
        if layout == "readme-only":
            (folder / "README.md").write_text("scripts go here")
    with pytest.raises(MigrationSetInvalidError, match=message) as err:
        scan_set([] if layout == "none" else [folder])
    assert err.value.error_type == "migration_set_invalid"


def test_check_digest_takes_full_digests_only() -> None:
    hex64 = "ab" * 32
    assert check_digest(hex64) == check_digest(f"sha256:{hex64.upper()}") == f"sha256:{hex64}"
    for bad in ("sha256:abcd", hex64[:12], "md5:" + hex64, "", "sha256:" + "g" * 64):
        with pytest.raises(MigrationSetInvalidError, match="is not sha256:<64 hex digits>"):
            check_digest(bad)


@pytest.mark.parametrize(
    "path",
    ["../../etc/cron.d/x.sql", "/etc/x.sql", ".hidden.sql", "a//b.sql", "a/../b.sql", "a\\b.sql", "a\nb"],
)
def test_manifest_from_a_store_refuses_unsafe_paths(path: str) -> None:
    text = f"{'0' * 64}  {path}\n".encode()
    with pytest.raises(MigrationSetInvalidError, match=r"not a safe relative path|malformed"):
        parse_manifest(text, digest="sha256:" + hashlib.sha256(text).hexdigest())


def test_manifest_from_a_store_must_hash_to_its_digest_and_be_canonical() -> None:
    good = f"{'1' * 64}  V1__a.sql\n{'2' * 64}  V2__b.sql\n".encode()
    swapped = f"{'2' * 64}  V2__b.sql\n{'1' * 64}  V1__a.sql\n".encode()
    with pytest.raises(MigrationSetInvalidError, match="does not hash to it"):
        parse_manifest(good, digest="sha256:" + "0" * 64)
    with pytest.raises(MigrationSetInvalidError, match="canonical order"):
        parse_manifest(swapped, digest="sha256:" + hashlib.sha256(swapped).hexdigest())
    assert len(parse_manifest(good, digest="sha256:" + hashlib.sha256(good).hexdigest()).entries) == 2


async def test_directory_store_push_then_fetch_gives_a_verified_read_only_snapshot(tmp_path: Path) -> None:
    store = DirectorySetStore(tmp_path / "store")
    small = copy_migrations(tmp_path / "v3", upto=3)
    manifest, uploaded = push_set(store, [small])
    again = push_set(store, [small])[1]
    _, grown = push_set(store, [DEMO_MIGRATIONS])
    sets = MigrationSets([], SetCache(tmp_path / "cache"), store)

    resolved = await sets.resolve(manifest.digest)

    assert (uploaded, again, grown) == (3, 0, 2)  # blobs are shared between sets
    assert resolved.path == tmp_path / "cache" / manifest.digest.removeprefix("sha256:")
    assert scan_set([resolved.path])[0].digest == manifest.digest
    assert sorted(p.name for p in resolved.path.iterdir()) == sorted(p.name for p in small.iterdir())
    assert all((p.stat().st_mode & 0o222) == 0 for p in resolved.path.iterdir())


async def test_worker_without_the_set_refuses_retryably_naming_both_digests(tmp_path: Path) -> None:
    own = scan_set([DEMO_MIGRATIONS])[0].digest
    wanted = scan_set([copy_migrations(tmp_path / "v3", upto=3)])[0].digest
    alone = MigrationSets([DEMO_MIGRATIONS], SetCache(tmp_path / "cache"))
    with_store = MigrationSets(
        [DEMO_MIGRATIONS], SetCache(tmp_path / "cache"), DirectorySetStore(tmp_path / "s")
    )

    with pytest.raises(MigrationSetMismatchError) as no_store:
        await alone.resolve(wanted)
    with pytest.raises(MigrationSetMismatchError, match="does not hold it") as not_stored:
        await with_store.resolve(wanted)

    assert no_store.value.retryable and not_stored.value.retryable
    assert (
        wanted in str(no_store.value) and own in str(no_store.value) and "no set store" in str(no_store.value)
    )
    assert not (tmp_path / "cache" / wanted.removeprefix("sha256:")).exists()
    assert (await alone.resolve(own)).digest == own  # its own set it runs, from a snapshot


async def test_tampered_blob_in_the_store_is_refused_and_nothing_is_cached(tmp_path: Path) -> None:
    store = DirectorySetStore(tmp_path / "store")
    manifest, _ = push_set(store, [DEMO_MIGRATIONS])
    victim = manifest.entries[0].sha256
    (tmp_path / "store" / "blobs" / victim).write_text("DROP TABLE accounts;")
    sets = MigrationSets([], SetCache(tmp_path / "cache"), store)

    with pytest.raises(MigrationSetMismatchError, match="does not hash to its line"):
        await sets.resolve(manifest.digest)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # no snapshot, no staging left


class _CountingStore(DirectorySetStore):
    """A real directory store that counts manifest reads (a spy, not a fake: every call is real)."""

    reads = 0

    def read_manifest(self, hex_digest: str) -> bytes | None:
        type(self).reads += 1
        return super().read_manifest(hex_digest)


async def test_concurrent_fetches_of_one_set_share_one_download(tmp_path: Path) -> None:
    store = _CountingStore(tmp_path / "store")
    manifest, _ = push_set(store, [DEMO_MIGRATIONS])
    sets = MigrationSets([], SetCache(tmp_path / "cache"), store)

    resolved = await asyncio.gather(*(sets.resolve(manifest.digest) for _ in range(16)))

    assert {r.path for r in resolved} == {tmp_path / "cache" / manifest.digest.removeprefix("sha256:")}
    assert _CountingStore.reads == 1


@pytest.fixture
def bucket(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)  # the default credential chain, as a deployed worker uses it
    s3 = boto3.client("s3", endpoint_url=moto_server.endpoint_url)
    name = f"sets-{os.urandom(4).hex()}"
    s3.create_bucket(Bucket=name)
    return s3, name


async def test_s3_store_on_moto_push_fetch_and_tamper(
    bucket: Any, moto_server: MotoServer, tmp_path: Path
) -> None:
    s3, name = bucket
    store = S3SetStore(name, prefix="team/sets/", endpoint_url=moto_server.endpoint_url)
    manifest, uploaded = push_set(store, [DEMO_MIGRATIONS])
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"])

    resolved = await MigrationSets([], SetCache(tmp_path / "cache"), store).resolve(manifest.digest)

    assert uploaded == len(manifest.entries) == 5
    assert keys[-1] == "team/sets/sets/" + manifest.digest.removeprefix("sha256:")
    assert all(k.startswith("team/sets/blobs/") for k in keys[:-1])
    assert scan_set([resolved.path])[0].digest == manifest.digest
    s3.put_object(Bucket=name, Key=f"team/sets/blobs/{manifest.entries[1].sha256}", Body=b"DROP SCHEMA x;")
    with pytest.raises(MigrationSetMismatchError, match="does not hash"):
        await MigrationSets([], SetCache(tmp_path / "other"), store).resolve(manifest.digest)
    with pytest.raises(MigrationStoreError, match="NoSuchBucket"):
        S3SetStore("no-such-bucket-here", endpoint_url=moto_server.endpoint_url).read_manifest("0" * 64)
