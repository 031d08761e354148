"""Where a worker gets the migration set a rollout names: its own folder, its cache, or a set store.

Flyway never reads a folder that can change under it. Every run uses an immutable snapshot in the
worker's cache, ``<cache>/<hex digest>/``, created once per digest by an atomic rename after its
content was verified against the digest. A snapshot comes from the worker's own migrations
folder (when that folder's digest is the one named) or from a set store:

- layout (a directory or an S3 bucket/prefix): ``sets/<hex>`` holds the manifest (the digest's
  preimage, see ``activities/sets/digest.py``), ``blobs/<sha256 hex>`` each file's bytes. Blobs
  are shared between sets (pushing V1..V6 after V1..V5 uploads one script), and the manifest is
  written last, so a manifest in the store means its set is complete;
- a fetch verifies the manifest against the digest and every blob against its line, then the
  whole folder again before the rename. Concurrent fetches of one digest in a worker share one
  download; two workers racing on one cache folder both verify and the rename picks one.

Must not: run Flyway on anything but a verified snapshot; trust a path or a size from a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from fleetway.activities.errors import (
    MigrationSetInvalidError,
    MigrationSetMismatchError,
    MigrationStoreError,
)
from fleetway.activities.sets.digest import (
    MAX_SET_BYTES,
    Manifest,
    ManifestEntry,
    check_digest,
    parse_manifest,
    scan_set,
)

__all__ = [
    "DirectorySetStore",
    "MigrationSetStore",
    "MigrationSets",
    "ResolvedSet",
    "S3SetStore",
    "SetCache",
    "push_set",
]

_log = logging.getLogger(__name__)
_MAX_MANIFEST_BYTES: Final = 2 * 1024 * 1024


class MigrationSetStore(Protocol):
    """Content-addressed storage of sets (blocking calls; callers run them in a thread)."""

    @property
    def description(self) -> str:
        """Where the store is, without credentials (``dir:/srv/sets``, ``s3://bucket/prefix``)."""
        ...

    def read_manifest(self, hex_digest: str) -> bytes | None:
        """The manifest stored for a set, or None when the store does not have it."""
        ...

    def read_blob(self, sha256: str) -> bytes:
        """A file's bytes by their SHA-256 (hex)."""
        ...

    def has_blob(self, sha256: str) -> bool:
        """Whether the store already holds these bytes."""
        ...

    def write_blob(self, sha256: str, data: bytes) -> None:
        """Store a file's bytes under their SHA-256."""
        ...

    def write_manifest(self, hex_digest: str, data: bytes) -> None:
        """Store a set's manifest (last: its presence means the set is complete)."""
        ...


def _hex(digest: str) -> str:
    return check_digest(digest).removeprefix("sha256:")


class DirectorySetStore:
    """A set store in a plain folder (a shared volume, an NFS mount, a test's tmp dir)."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    @property
    def description(self) -> str:
        """``dir:<absolute folder>``."""
        return f"dir:{self._root}"

    def _read(self, path: Path, limit: int) -> bytes | None:
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise MigrationStoreError(
                f"set store {self.description} cannot read {path.name}: {exc.strerror}"
            ) from None
        if len(data) > limit:
            raise MigrationStoreError(f"set store {self.description}: {path.name} exceeds {limit} bytes")
        return data

    def read_manifest(self, hex_digest: str) -> bytes | None:
        """See :class:`MigrationSetStore`."""
        return self._read(self._root / "sets" / hex_digest, _MAX_MANIFEST_BYTES)

    def read_blob(self, sha256: str) -> bytes:
        """See :class:`MigrationSetStore`."""
        data = self._read(self._root / "blobs" / sha256, MAX_SET_BYTES)
        if data is None:
            raise MigrationStoreError(f"set store {self.description} lacks blob {sha256}")
        return data

    def has_blob(self, sha256: str) -> bool:
        """See :class:`MigrationSetStore`."""
        return (self._root / "blobs" / sha256).is_file()

    def _write(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            partial.write_bytes(data)
            os.replace(partial, path)
        except OSError as exc:
            raise MigrationStoreError(
                f"set store {self.description} cannot write {path.name}: {exc.strerror}"
            ) from None

    def write_blob(self, sha256: str, data: bytes) -> None:
        """See :class:`MigrationSetStore`."""
        self._write(self._root / "blobs" / sha256, data)

    def write_manifest(self, hex_digest: str, data: bytes) -> None:
        """See :class:`MigrationSetStore`."""
        self._write(self._root / "sets" / hex_digest, data)


class S3SetStore:
    """A set store in an S3 bucket under a prefix, through boto3 (credentials: the AWS chain)."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "fleetway/sets/",
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
    ) -> None:
        import boto3  # noqa: PLC0415 - only the S3 store needs boto3 at construction

        if prefix and not prefix.endswith("/"):
            raise MigrationSetInvalidError(f"set store prefix {prefix!r} must end with '/'")
        session = boto3.Session(profile_name=profile, region_name=region)
        self._client: Any = session.client("s3", endpoint_url=endpoint_url)
        self._bucket = bucket
        self._prefix = prefix

    @property
    def description(self) -> str:
        """``s3://<bucket>/<prefix>``."""
        return f"s3://{self._bucket}/{self._prefix}"

    def _failure(self, exc: Exception, what: str) -> MigrationStoreError:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        return MigrationStoreError(f"set store {self.description}: {what} failed ({code})")

    def _get(self, key: str, limit: int) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self._prefix + key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise self._failure(exc, f"reading {key}") from None
        except BotoCoreError as exc:
            raise self._failure(exc, f"reading {key}") from None
        if int(response.get("ContentLength", 0)) > limit:
            raise MigrationStoreError(f"set store {self.description}: {key} exceeds {limit} bytes")
        data: bytes = response["Body"].read(limit + 1)
        if len(data) > limit:
            raise MigrationStoreError(f"set store {self.description}: {key} exceeds {limit} bytes")
        return data

    def read_manifest(self, hex_digest: str) -> bytes | None:
        """See :class:`MigrationSetStore`."""
        return self._get(f"sets/{hex_digest}", _MAX_MANIFEST_BYTES)

    def read_blob(self, sha256: str) -> bytes:
        """See :class:`MigrationSetStore`."""
        data = self._get(f"blobs/{sha256}", MAX_SET_BYTES)
        if data is None:
            raise MigrationStoreError(f"set store {self.description} lacks blob {sha256}")
        return data

    def has_blob(self, sha256: str) -> bool:
        """See :class:`MigrationSetStore`."""
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            self._client.head_object(Bucket=self._bucket, Key=f"{self._prefix}blobs/{sha256}")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return False
            raise self._failure(exc, "checking a blob") from None
        except BotoCoreError as exc:
            raise self._failure(exc, "checking a blob") from None
        return True

    def _put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            self._client.put_object(Bucket=self._bucket, Key=self._prefix + key, Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._failure(exc, f"writing {key}") from None

    def write_blob(self, sha256: str, data: bytes) -> None:
        """See :class:`MigrationSetStore`."""
        self._put(f"blobs/{sha256}", data)

    def write_manifest(self, hex_digest: str, data: bytes) -> None:
        """See :class:`MigrationSetStore`."""
        self._put(f"sets/{hex_digest}", data)


def push_set(store: MigrationSetStore, locations: list[Path]) -> tuple[Manifest, int]:
    """Upload the set the folders hold; returns its manifest and how many blobs were new.

    Blobs first, the manifest last, so a reader never sees a manifest whose files are missing.
    Each file is re-hashed as it is read for upload: a file changed since the scan is refused.

    Raises:
        MigrationSetInvalidError: as :func:`scan_set`, or a file changed while it was pushed.
        MigrationStoreError: the store refused a write.
    """
    manifest, files = scan_set(locations)
    uploaded = 0
    for entry in manifest.entries:
        if store.has_blob(entry.sha256):
            continue
        data = files[entry.path].read_bytes()
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise MigrationSetInvalidError(f"{entry.path!r} changed while the set was pushed; push again")
        store.write_blob(entry.sha256, data)
        uploaded += 1
    store.write_manifest(manifest.digest.removeprefix("sha256:"), manifest.text.encode())
    return manifest, uploaded


@dataclass(frozen=True)
class ResolvedSet:
    """A verified snapshot: the digest and the folder Flyway reads it from."""

    digest: str
    path: Path


class SetCache:
    """The worker's digest-keyed snapshots (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        root = root.resolve()
        if "," in str(root):  # Flyway splits locations on commas: refused for both engines alike
            raise MigrationSetInvalidError(f"set cache folder {str(root)!r} must not contain a comma")
        self._root = root

    @property
    def root(self) -> Path:
        """The cache folder."""
        return self._root

    def get(self, digest: str) -> ResolvedSet | None:
        """The snapshot of ``digest`` if this cache holds it."""
        path = self._root / _hex(digest)
        return ResolvedSet(digest, path) if path.is_dir() else None

    def install(
        self, manifest: Manifest, read: Callable[[ManifestEntry], bytes], *, source: str
    ) -> ResolvedSet:
        """Write a snapshot of ``manifest`` with ``read``'s bytes, verify it, rename it in.

        Blocking (run it in a thread). ``source`` names where the bytes come from, for errors.

        Raises:
            MigrationSetMismatchError: a file no longer hashes to its manifest line (a local
                folder changed while it was copied, or a store returned other bytes).
            MigrationStoreError: the store failed.
        """
        digest = manifest.digest
        existing = self.get(digest)
        if existing is not None:
            return existing
        self._root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self._root))
        try:
            for entry in manifest.entries:
                data = read(entry)
                if hashlib.sha256(data).hexdigest() != entry.sha256:
                    raise MigrationSetMismatchError(
                        f"{entry.path!r} from {source} does not hash to its line in set {digest}"
                    )
                target = staging / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                target.chmod(0o444)
            copied, _ = scan_set([staging])
            if copied.digest != digest:  # the last word: what Flyway will read hashes to the name
                raise MigrationSetMismatchError(
                    f"the snapshot of {digest} from {source} hashes to {copied.digest}"
                )
            with contextlib.suppress(OSError):  # another worker renamed its (equal) snapshot first
                staging.rename(self._root / _hex(digest))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        resolved = self.get(digest)
        if resolved is None:
            raise MigrationStoreError(f"the snapshot of {digest} could not be placed in {self._root}")
        return resolved


def _reader(files: Mapping[str, Path]) -> Callable[[ManifestEntry], bytes]:
    def read(entry: ManifestEntry) -> bytes:
        try:
            return files[entry.path].read_bytes()
        except OSError as exc:
            raise MigrationSetInvalidError(
                f"migration script {entry.path!r} cannot be read: {exc.strerror}"
            ) from None

    return read


class MigrationSets:
    """Resolves the set a run names to a verified snapshot on this worker (one per worker).

    Args:
        locations: the worker's own migrations folders (may be empty for a store-only worker).
        cache: where snapshots live.
        store: where sets this worker lacks are fetched from (None: own folder only).
    """

    def __init__(
        self, locations: list[Path], cache: SetCache, store: MigrationSetStore | None = None
    ) -> None:
        self._locations = [p.resolve() for p in locations]
        self._cache = cache
        self._store = store
        self._inflight: dict[str, asyncio.Future[ResolvedSet]] = {}

    @property
    def store_description(self) -> str:
        """Where sets are fetched from ("" without a store)."""
        return self._store.description if self._store else ""

    @property
    def locations(self) -> list[Path]:
        """The worker's own migrations folders."""
        return list(self._locations)

    def local_manifest(self) -> Manifest:
        """The set the worker's own folders hold now (blocking).

        Raises:
            MigrationSetInvalidError: see :func:`scan_set`.
        """
        return scan_set(self._locations)[0]

    def can_run(self, digest: str) -> bool:
        """Whether :meth:`resolve` would find ``digest`` now (cache, own folder, store); blocking."""
        digest = check_digest(digest)
        if self._cache.get(digest) is not None:
            return True
        with contextlib.suppress(MigrationSetInvalidError):
            if self._locations and scan_set(self._locations)[0].digest == digest:
                return True
        with contextlib.suppress(MigrationStoreError):
            return self._store is not None and self._store.read_manifest(_hex(digest)) is not None
        return False

    async def local(self) -> ResolvedSet:
        """The worker's own set, snapshotted: what a rollout that names no set runs."""
        manifest, files = await asyncio.to_thread(scan_set, self._locations)
        return await self._coalesced(
            manifest.digest,
            lambda: self._cache.install(manifest, _reader(files), source="the worker's migrations folder"),
        )

    async def resolve(self, digest: str) -> ResolvedSet:
        """The snapshot of ``digest``: from the cache, the worker's own folder, or the store.

        Raises:
            MigrationSetMismatchError: neither the worker's folder nor its store has the set.
            MigrationStoreError: the store failed or returned something that fails verification.
        """
        digest = check_digest(digest)
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        return await self._coalesced(digest, lambda: self._build(digest))

    def _build(self, digest: str) -> ResolvedSet:
        """In a thread: snapshot the worker's own set if it is ``digest``, else fetch it."""
        own = "none"
        if self._locations:
            try:
                manifest, files = scan_set(self._locations)
            except MigrationSetInvalidError as exc:
                own = f"none ({exc})"
            else:
                if manifest.digest == digest:
                    return self._cache.install(
                        manifest, _reader(files), source="the worker's migrations folder"
                    )
                own = manifest.digest
        if self._store is None:
            raise MigrationSetMismatchError(
                f"this worker cannot run migration set {digest}: its own set is {own} and it has no set store"
            )
        raw = self._store.read_manifest(_hex(digest))
        if raw is None:
            raise MigrationSetMismatchError(
                f"this worker cannot run migration set {digest}: its own set is {own} and set store "
                f"{self._store.description} does not hold it"
            )
        try:
            manifest = parse_manifest(raw, digest=digest)
        except MigrationSetInvalidError as exc:
            raise MigrationStoreError(f"set store {self._store.description}: {exc}") from None
        _log.info("fetching migration set", extra={"digest": digest, "files": len(manifest.entries)})
        store = self._store
        return self._cache.install(manifest, lambda e: store.read_blob(e.sha256), source=store.description)

    async def _coalesced(self, key: str, build: Callable[[], ResolvedSet]) -> ResolvedSet:
        """One build per digest at a time in this worker; concurrent callers share its result."""
        running = self._inflight.get(key)
        if running is None:
            running = asyncio.ensure_future(asyncio.to_thread(build))
            self._inflight[key] = running
            running.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(running)
