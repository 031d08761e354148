r"""A migration set's identity: the digest over its scripts' names and bytes, and its manifest.

A set is a folder's files as Flyway would read them. Its identity is defined here, once, so the
CLI, the workers and the set store agree on it across machines and file orders:

1. Files: every regular file (or symlink to one) under the folder, recursively, whose path has
   no component starting with ``.`` (``.git``, ``.DS_Store`` are not part of a set).
   Paths are relative to the folder, ``/``-separated, UTF-8, without control characters or
   backslashes.
2. Manifest: one line per file, sorted by the path's UTF-8 bytes:
   ``<sha256 of the file's bytes, lowercase hex><two spaces><path>\n``.
3. Digest: ``sha256:`` + the lowercase hex SHA-256 of the manifest's bytes.

The manifest is exactly what ``sha256sum`` prints, so the digest can be checked without
fleetway (``tests/activities/test_migration_set.py`` asserts the two agree)::

    cd DIR && find -L . -type f ! -path '*/.*' -printf '%P\n' | LC_ALL=C sort \
      | xargs -r -d '\n' sha256sum | sha256sum

A set holds at least one ``.sql`` file: an empty or missing folder is a configuration error,
never a run that "succeeds" with nothing applied. Several folders form one set (Flyway merges
its locations); the same relative path in two of them is refused. Pure library code: no
Temporal, and no state between calls.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetway.activities.errors import MigrationSetInvalidError

__all__ = [
    "DIGEST_PATTERN",
    "MAX_SET_BYTES",
    "MAX_SET_FILES",
    "Manifest",
    "ManifestEntry",
    "check_digest",
    "check_set_path",
    "looks_like_digest",
    "parse_manifest",
    "scan_set",
]

DIGEST_PATTERN: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_UNSAFE_CHARS: Final = re.compile(r"[\x00-\x1f\x7f\\]")
# Bounds that keep a hostile store (or a mistaken folder) from filling a worker's disk.
MAX_SET_FILES: Final = 10_000
MAX_SET_BYTES: Final = 256 * 1024 * 1024
_READ_CHUNK: Final = 1024 * 1024


def looks_like_digest(text: str) -> bool:
    """Whether ``text`` is a full set digest (``sha256:`` + 64 hex digits, or the bare 64)."""
    return bool(DIGEST_PATTERN.match(text) or _HEX64.match(text))


def check_digest(text: str) -> str:
    """``text`` as a canonical digest (``sha256:<hex>``; the bare 64 hex digits are accepted).

    Raises:
        MigrationSetInvalidError: not a full SHA-256 digest (prefixes are ambiguous: refused).
    """
    value = text.strip().lower()
    if _HEX64.match(value):
        value = f"sha256:{value}"
    if not DIGEST_PATTERN.match(value):
        raise MigrationSetInvalidError(f"migration set digest {text[:80]!a} is not sha256:<64 hex digits>")
    return value


def check_set_path(path: str) -> str:
    """A relative file path inside a set, vetted (a manifest from a store is not trusted).

    Raises:
        MigrationSetInvalidError: empty, absolute, a ``.``/``..``/dot component, a backslash or a
            control character.
    """
    parts = path.split("/")
    if (
        not path
        or len(path) > 1000
        or _UNSAFE_CHARS.search(path)
        or any(not p or p.startswith(".") for p in parts)
    ):
        raise MigrationSetInvalidError(f"migration set path {path[:120]!a} is not a safe relative path")
    return path


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a set: its vetted relative path and the SHA-256 (hex) of its bytes."""

    path: str
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A set's files in digest order; ``text`` is the digest's preimage (see the module docstring)."""

    entries: tuple[ManifestEntry, ...]

    @property
    def text(self) -> str:
        """The manifest as ``sha256sum`` prints it."""
        return "".join(f"{e.sha256}  {e.path}\n" for e in self.entries)

    @property
    def digest(self) -> str:
        """``sha256:`` + the SHA-256 of :attr:`text`."""
        return "sha256:" + hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def scripts(self) -> int:
        """How many ``.sql`` files the set holds."""
        return sum(1 for e in self.entries if e.path.endswith(".sql"))


def _sorted_entries(entries: Sequence[ManifestEntry]) -> tuple[ManifestEntry, ...]:
    return tuple(sorted(entries, key=lambda e: e.path.encode()))


def parse_manifest(text: bytes, *, digest: str) -> Manifest:
    """A manifest fetched from a store, verified against the digest it was fetched by.

    Raises:
        MigrationSetInvalidError: the bytes do not hash to ``digest``, a line is malformed, a path
            is unsafe or repeated, the order is not canonical, or the set is empty or too large.
    """
    if "sha256:" + hashlib.sha256(text).hexdigest() != digest:
        raise MigrationSetInvalidError(f"the manifest fetched for {digest} does not hash to it")
    try:
        lines = text.decode().splitlines()
    except UnicodeDecodeError:
        raise MigrationSetInvalidError(f"the manifest of {digest} is not UTF-8") from None
    entries: list[ManifestEntry] = []
    for number, line in enumerate(lines, start=1):
        sha, sep, path = line.partition("  ")
        if not sep or not _HEX64.match(sha):
            raise MigrationSetInvalidError(f"the manifest of {digest} has a malformed line {number}")
        entries.append(ManifestEntry(check_set_path(path), sha))
    manifest = Manifest(_sorted_entries(entries))
    if manifest.entries != tuple(entries) or len({e.path for e in entries}) != len(entries):
        raise MigrationSetInvalidError(
            f"the manifest of {digest} is not in canonical order or repeats a path"
        )
    _check_bounds(manifest, what=digest)
    return manifest


def _check_bounds(manifest: Manifest, *, what: str) -> None:
    if len(manifest.entries) > MAX_SET_FILES:
        raise MigrationSetInvalidError(f"migration set {what} has over {MAX_SET_FILES} files")
    if not manifest.scripts:
        raise MigrationSetInvalidError(
            f"migration set {what} holds no .sql script (an empty set would apply nothing and report success)"
        )


def _file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _walk(root: Path) -> dict[str, Path]:
    """Relative path → file, for one folder (dot-paths skipped, symlinks followed, bounded)."""
    found: dict[str, Path] = {}
    seen_dirs: set[tuple[int, int]] = set()
    for current, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(current)
        if (stat.st_dev, stat.st_ino) in seen_dirs:  # a symlink loop: walk each folder once
            dirs.clear()
            continue
        seen_dirs.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = Path(current, name)
            if not path.is_file():
                continue  # sockets, fifos, dangling symlinks: never part of a set
            found[check_set_path(path.relative_to(root).as_posix())] = path
            if len(found) > MAX_SET_FILES:
                raise MigrationSetInvalidError(
                    f"migrations folder {str(root)!r} has over {MAX_SET_FILES} files"
                )
    return found


def scan_set(locations: Sequence[Path]) -> tuple[Manifest, Mapping[str, Path]]:
    """The set the folders hold: its manifest and where each of its files is on disk.

    Raises:
        MigrationSetInvalidError: no folder given; a folder is missing, not a folder or unreadable;
            a file cannot be read; two folders hold the same relative path; the set is empty or
            exceeds :data:`MAX_SET_FILES` / :data:`MAX_SET_BYTES`; a path is unsafe.
    """
    if not locations:
        raise MigrationSetInvalidError(
            "no migrations folder is configured: set flyway.locations (FLEETWAY_FLYWAY__LOCATIONS, "
            'a JSON list such as ["/srv/migrations"]) or a set store (sets.store); there is no default'
        )
    files: dict[str, Path] = {}
    for location in locations:
        if not location.is_dir():
            problem = "does not exist" if not location.exists() else "is not a folder"
            raise MigrationSetInvalidError(f"migrations folder {str(location)!r} {problem}")
        if not os.access(location, os.R_OK | os.X_OK):
            raise MigrationSetInvalidError(f"migrations folder {str(location)!r} is not readable")
        try:
            walked = _walk(location)
        except OSError as exc:
            raise MigrationSetInvalidError(
                f"migrations folder {str(location)!r} cannot be read: {exc.strerror}"
            ) from None
        for relative, path in walked.items():
            if relative in files:
                raise MigrationSetInvalidError(
                    f"{relative!r} is in two migrations folders ({str(files[relative].parent)!r} and "
                    f"{str(location)!r}); a set holds each path once"
                )
            files[relative] = path
    entries, total = [], 0
    for relative, path in files.items():
        try:
            sha, size = _file_sha256(path)
        except OSError as exc:
            raise MigrationSetInvalidError(
                f"migration script {str(path)!r} cannot be read: {exc.strerror}"
            ) from None
        total += size
        if total > MAX_SET_BYTES:
            raise MigrationSetInvalidError(f"migration set exceeds {MAX_SET_BYTES // (1024 * 1024)} MiB")
        entries.append(ManifestEntry(relative, sha))
    manifest = Manifest(_sorted_entries(entries))
    _check_bounds(manifest, what=", ".join(repr(str(p)) for p in locations))
    return manifest, files
