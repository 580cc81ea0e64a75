"""Backup and restore of a whole profile, safe while the node runs.

A backup is a gzip'd tar file: `hailstone-backup.json` (format, version, time,
and the SHA-256, size and mode of every file), then the files under their
profile-relative paths. What goes in, in this order:

1. `checkpoints/`: read first. The runner stores a unit's work record in the
   ledger *before* it deletes the unit's checkpoint, so a checkpoint copied
   before the ledger can only be for a unit the ledger snapshot either lacks (it
   resumes) or already holds (the node skips a unit it reported). Read the other
   way round, a unit finished in between would be in neither and computed twice.
2. `ledger.sqlite3`: through SQLite's online backup API, one consistent snapshot
   even while the node writes (WAL readers never block the writer).
3. everything else: the encrypted keys as they are (`account.key`, `node.key`,
   `node.secret`), `profile.json`, `records/`, `evidence/` (written before the
   work record that names it, so read after the ledger: a snapshot's work
   record always has its leaves), settings and the app's state files.

Left out: the IPFS repo `ipfs/` (a cache of records the ledger holds, plus a
peer identity that must not run twice), `logs/`, lock files, the ledger's
`-wal`/`-shm` files (the snapshot replaces them) and temporary files.

`restore` checks every path and digest before it writes anything, unpacks into a
temporary folder beside the target and renames it into place, so a bad or
truncated backup changes nothing, and never overwrites an existing profile.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.files import write_atomic
from network.ledger import LEDGER_FILENAME

FORMAT = "hailstone-backup"
VERSION = 1
MANIFEST = "hailstone-backup.json"
CHECKPOINTS = "checkpoints"
# Top-level names never backed up (see the module notes).
EXCLUDED = frozenset({
    "ipfs", "logs", "hailstone.lock",
    f"{LEDGER_FILENAME}-wal", f"{LEDGER_FILENAME}-shm", f"{LEDGER_FILENAME}-journal",
})
# A profile is small (keys, a ledger of records, checkpoints); this bounds what a
# restore unpacks from an untrusted file.
MAX_TOTAL_BYTES = 8 * 1024**3


class BackupError(Exception):
    """A backup or restore failed; `code` is stable, the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class BackupSummary:
    path: Path
    files: int
    bytes: int
    created: float


def _skipped(rel: PurePosixPath) -> bool:
    top = rel.parts[0]
    name = rel.name
    return (
        top in EXCLUDED
        or top == MANIFEST
        or name.startswith(".") and name.endswith(".tmp")  # write_atomic's temporaries
        or name.endswith(".lock")
    )


def _walk(root: Path, under: Path) -> Iterator[Path]:
    """Regular files under `under`, sorted, links and special files skipped."""
    if not under.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(under):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in EXCLUDED]  # not even walked
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                regular = stat.S_ISREG(path.lstat().st_mode)
            except FileNotFoundError:
                continue  # removed while we walked
            if regular:
                yield path


def _ledger_snapshot(src: Path) -> bytes:
    """The ledger as one consistent database file, via SQLite's online backup API."""
    with tempfile.TemporaryDirectory(prefix="hailstone-backup-") as tmp:
        copy = Path(tmp) / LEDGER_FILENAME
        source = sqlite3.connect(src, timeout=30)
        try:
            target = sqlite3.connect(copy)
            try:
                source.backup(target)  # all pages in one step: one read transaction
                target.execute("PRAGMA journal_mode=DELETE")  # a single file, no WAL
            finally:
                target.close()
        finally:
            source.close()
        return copy.read_bytes()


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    data: bytes
    mode: int
    mtime: float


def _collect(data_dir: Path, out: Path, now: float) -> list[_Member]:
    """The profile's files, read in the order the module notes explain."""
    out_resolved = out.resolve()
    members: list[_Member] = []

    def read(path: Path) -> None:
        if path.resolve() == out_resolved:
            return
        rel = PurePosixPath(path.relative_to(data_dir).as_posix())
        if _skipped(rel):
            return
        try:
            data = path.read_bytes()
            st = path.stat()
        except FileNotFoundError:
            return  # removed meanwhile (the checkpoint of a unit that just finished)
        members.append(_Member(str(rel), data, st.st_mode & 0o777, st.st_mtime))

    for path in _walk(data_dir, data_dir / CHECKPOINTS):
        read(path)
    ledger = data_dir / LEDGER_FILENAME
    if ledger.is_file():
        try:
            data = _ledger_snapshot(ledger)
        except sqlite3.Error as exc:
            raise BackupError(
                "ledger", f"cannot read the ledger {ledger}: {exc}; run 'main.py doctor'"
            ) from None
        members.append(_Member(LEDGER_FILENAME, data, 0o600, now))
    for path in _walk(data_dir, data_dir):
        rel = path.relative_to(data_dir)
        if rel.parts[0] != CHECKPOINTS and rel.as_posix() != LEDGER_FILENAME:
            read(path)
    return members


def create_backup(data_dir: Path, out: Path, *, clock=time.time) -> BackupSummary:
    """Write a backup of the profile `data_dir` to `out` (atomically, owner-only).

    Raises:
        BackupError: no_profile, ledger (the ledger could not be read), write.
    """
    data_dir = Path(data_dir)
    out = Path(out)
    if not (data_dir / "account.key").is_file():
        raise BackupError("no_profile", f"{data_dir} holds no Hailstone profile (no account.key)")
    created = clock()
    members = _collect(data_dir, out, created)
    manifest = {
        m.name: {"sha256": hashlib.sha256(m.data).hexdigest(), "size": len(m.data),
                 "mode": m.mode}
        for m in members
    }
    head = json.dumps(
        {"format": FORMAT, "version": VERSION, "created": created, "files": manifest},
        indent=1, sort_keys=True,
    ).encode("utf-8")
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as tar:
        # The manifest first: a restore reads it before any file.
        for m in [_Member(MANIFEST, head, 0o600, created), *members]:
            info = tarfile.TarInfo(m.name)
            info.size = len(m.data)
            info.mode = m.mode
            info.mtime = int(m.mtime)
            tar.addfile(info, io.BytesIO(m.data))
    try:
        write_atomic(out, payload.getvalue(), mode=0o600)
    except OSError as exc:
        raise BackupError("write", f"cannot write {out}: {exc.strerror or exc}") from None
    return BackupSummary(out, len(members), sum(len(m.data) for m in members), created)


def _read_members(path: Path) -> tuple[dict, dict[str, bytes]]:
    """The manifest and the files of a backup (in memory), or BackupError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BackupError("unreadable", f"cannot read {path}: {exc.strerror or exc}") from None
    files: dict[str, bytes] = {}
    manifest = None
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for member in tar:
                if member.name == MANIFEST and manifest is None:
                    manifest = json.loads(tar.extractfile(member).read())
                    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                        raise BackupError("not_a_backup", f"{path} is not a Hailstone backup")
                    if manifest.get("version") != VERSION:
                        raise BackupError(
                            "version",
                            f"{path} is a version {manifest.get('version')} backup; this "
                            f"Hailstone reads version {VERSION}: update Hailstone first",
                        )
                    continue
                if manifest is None:
                    raise BackupError("not_a_backup", f"{path} is not a Hailstone backup")
                if not member.isfile():
                    raise BackupError("unsafe", f"{path}: {member.name!r} is not a plain file")
                _check_path(path, member.name)
                total += member.size
                if total > MAX_TOTAL_BYTES:
                    raise BackupError("too_large", f"{path} unpacks to more than 8 GiB")
                files[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BackupError("damaged", f"{path} is damaged or truncated ({exc})") from None
    if manifest is None:
        raise BackupError("not_a_backup", f"{path} is not a Hailstone backup")
    expected = manifest.get("files", {})
    if set(expected) != set(files):
        missing = sorted(set(expected) - set(files))[:3]
        raise BackupError("damaged", f"{path} is incomplete (missing {', '.join(missing)} ...)")
    for name, entry in expected.items():
        if hashlib.sha256(files[name]).hexdigest() != entry.get("sha256"):
            raise BackupError("damaged", f"{path}: {name} does not match its checksum")
    return manifest, files


def _check_path(backup: Path, name: str) -> None:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or "\\" in name:
        raise BackupError("unsafe", f"{backup}: refusing the path {name!r}")


def restore_backup(backup: Path, data_dir: Path) -> BackupSummary:
    """Unpack `backup` as the profile `data_dir`, which must not hold a profile yet.

    Raises:
        BackupError: exists, not_a_backup, version, damaged, unsafe, too_large,
            unreadable, write. Nothing is written unless the whole backup checks out.
    """
    backup = Path(backup)
    data_dir = Path(data_dir)
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(
            "exists",
            f"{data_dir} is not empty: restore into a new folder (--data-dir), or move "
            "the old profile away first",
        )
    manifest, files = _read_members(backup)
    if "account.key" not in files:
        raise BackupError("not_a_backup", f"{backup} holds no account key")
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=data_dir.parent))
    except OSError as exc:
        raise BackupError("write", f"cannot create {data_dir}: {exc.strerror or exc}") from None
    try:
        os.chmod(staging, 0o700)
        for name, data in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.chmod(target, manifest["files"][name].get("mode", 0o600) & 0o777)
        if data_dir.exists():
            data_dir.rmdir()  # empty (checked above)
        os.replace(staging, data_dir)
    except OSError as exc:
        _remove_tree(staging)
        raise BackupError("write", f"cannot restore into {data_dir}: {exc.strerror or exc}") from None
    total = sum(len(d) for d in files.values())
    return BackupSummary(data_dir, len(files), total, float(manifest.get("created", 0)))


def _remove_tree(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            Path(dirpath, name).unlink(missing_ok=True)
        for name in dirnames:
            Path(dirpath, name).rmdir()
    path.rmdir()
