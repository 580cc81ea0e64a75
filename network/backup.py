"""Backup and restore of a whole profile, safe while the node runs.

A backup is a gzip'd tar file: the files under their profile-relative paths,
then `hailstone-backup.json` (format, version, time, and the SHA-256, size and
mode of every file). Both ways stream: one file in memory at a time. What goes
in, in this order:

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

`restore` unpacks into a private folder beside the target, checks every path
and digest against the manifest, and only then renames the folder into place:
a bad or truncated backup changes nothing, and an existing profile is never
overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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


def _ledger_snapshot(src: Path, dst: Path) -> None:
    """Copy the ledger to `dst` as one consistent database file, via SQLite's
    online backup API (the node may write meanwhile)."""
    source = sqlite3.connect(src, timeout=30)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)  # all pages in one step: one read transaction
            target.execute("PRAGMA journal_mode=DELETE")  # a single file, no WAL
        finally:
            target.close()
    finally:
        source.close()


class _Writer:
    """Adds files to the tar stream and keeps the manifest of what it added."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.files: dict[str, dict] = {}

    def add(self, name: str, path: Path, mode: int | None = None) -> None:
        # One read of the whole file: a checkpoint appended meanwhile is copied as a
        # consistent prefix (the checkpoint reader ignores a torn last line).
        try:
            data = path.read_bytes()
            st = path.stat()
        except FileNotFoundError:
            return  # removed meanwhile (the checkpoint of a unit that just finished)
        self._add(name, data, st.st_mode & 0o777 if mode is None else mode, st.st_mtime)

    def add_large(self, name: str, path: Path, mode: int) -> None:
        """A file nothing else writes (the ledger snapshot), streamed in chunks."""
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        info = tarfile.TarInfo(name)
        info.size = path.stat().st_size
        info.mode = mode
        info.mtime = int(path.stat().st_mtime)
        with path.open("rb") as f:
            self.tar.addfile(info, f)
        self.files[name] = {"sha256": digest.hexdigest(), "size": info.size, "mode": mode}

    def _add(self, name: str, data: bytes, mode: int, mtime: float) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.mtime = int(mtime)
        self.tar.addfile(info, io.BytesIO(data))
        self.files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "mode": mode}


def create_backup(data_dir: Path, out: Path, *, clock=time.time) -> BackupSummary:
    """Write a backup of the profile `data_dir` to `out` (atomically, owner-only).

    Files stream into a temporary file beside `out` (one file in memory at a
    time); the manifest with every file's SHA-256 comes last.

    Raises:
        BackupError: no_profile, ledger (the ledger could not be read), write.
    """
    data_dir = Path(data_dir)
    out = Path(out)
    if not (data_dir / "account.key").is_file():
        raise BackupError("no_profile", f"{data_dir} holds no Hailstone profile (no account.key)")
    created = clock()
    out_resolved = out.resolve()

    def wanted(path: Path) -> str | None:
        rel = PurePosixPath(path.relative_to(data_dir).as_posix())
        return None if path.resolve() == out_resolved or _skipped(rel) else str(rel)

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        raise BackupError("write", f"cannot write {out}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, tempfile.TemporaryDirectory(
            prefix="hailstone-backup-"
        ) as scratch:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                w = _Writer(tar)
                # The order matters: see the module notes.
                for path in _walk(data_dir, data_dir / CHECKPOINTS):
                    if (name := wanted(path)) is not None:
                        w.add(name, path)
                ledger = data_dir / LEDGER_FILENAME
                if ledger.is_file():
                    snapshot = Path(scratch) / LEDGER_FILENAME
                    try:
                        _ledger_snapshot(ledger, snapshot)
                    except sqlite3.Error as exc:
                        raise BackupError(
                            "ledger",
                            f"cannot read the ledger {ledger}: {exc}; run 'main.py doctor'",
                        ) from None
                    w.add_large(LEDGER_FILENAME, snapshot, 0o600)
                for path in _walk(data_dir, data_dir):
                    rel = path.relative_to(data_dir)
                    if rel.parts[0] == CHECKPOINTS or rel.as_posix() == LEDGER_FILENAME:
                        continue
                    if (name := wanted(path)) is not None:
                        w.add(name, path)
                head = json.dumps(
                    {"format": FORMAT, "version": VERSION, "created": created, "files": w.files},
                    indent=1, sort_keys=True,
                ).encode("utf-8")
                w._add(MANIFEST, head, 0o600, created)
                del w.files[MANIFEST]
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, out)
        _fsync_dir(out.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError("write", f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BackupSummary(out, len(w.files), sum(e["size"] for e in w.files.values()), created)


def _check_path(backup: Path, name: str) -> None:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or "\\" in name:
        raise BackupError("unsafe", f"{backup}: refusing the path {name!r}")
    if rel.parts[0] in EXCLUDED:
        raise BackupError("unsafe", f"{backup}: {name!r} has no place in a profile backup")


def _unpack(backup: Path, staging: Path) -> tuple[dict, dict[str, str]]:
    """Stream the backup's files into `staging`; returns the manifest and the
    SHA-256 of what was written. Raises BackupError."""
    manifest = None
    written: dict[str, str] = {}
    total = 0
    try:
        with tarfile.open(backup, mode="r:gz") as tar:
            for member in tar:
                if manifest is not None:
                    raise BackupError("damaged", f"{backup}: files after the manifest")
                if member.name == MANIFEST:
                    manifest = json.loads(tar.extractfile(member).read())
                    continue
                if not member.isfile():
                    raise BackupError("unsafe", f"{backup}: {member.name!r} is not a plain file")
                _check_path(backup, member.name)
                if member.name in written:
                    raise BackupError("unsafe", f"{backup}: {member.name!r} appears twice")
                total += member.size
                if total > MAX_TOTAL_BYTES:
                    raise BackupError("too_large", f"{backup} unpacks to more than 8 GiB")
                target = staging / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                src = tar.extractfile(member)
                with target.open("xb") as f:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        f.write(chunk)
                written[member.name] = digest.hexdigest()
    except (tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
        raise BackupError("damaged", f"{backup} is damaged or truncated ({exc})") from None
    except FileNotFoundError:
        raise BackupError("unreadable", f"cannot read {backup}: no such file") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("not_a_backup", f"{backup} is not a Hailstone backup (or is truncated)")
    if manifest.get("version") != VERSION:
        raise BackupError(
            "version",
            f"{backup} is a version {manifest.get('version')} backup; this Hailstone reads "
            f"version {VERSION}: update Hailstone first",
        )
    return manifest, written


def restore_backup(backup: Path, data_dir: Path) -> BackupSummary:
    """Unpack `backup` as the profile `data_dir`, which must be empty or missing.

    Everything goes into a private staging folder first and is checked against the
    manifest (every path and SHA-256); only then does it move into place. The
    staging folder is a sibling that is renamed to `data_dir` when `data_dir` does
    not exist, and a hidden folder inside it when it exists (a volume's mount
    point, or /var/lib/hailstone made by the system unit: the parent may not be
    writable, and a mount point cannot be replaced). A bad, truncated or foreign
    file leaves nothing behind.

    Raises:
        BackupError: exists, not_a_backup, version, damaged, unsafe, too_large,
            unreadable, write.
    """
    backup = Path(backup)
    data_dir = Path(data_dir)
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(
            "exists",
            f"{data_dir} is not empty: restore into a new folder (--data-dir), or move "
            "the old profile away first",
        )
    if not backup.is_file():
        raise BackupError("unreadable", f"cannot read {backup}: no such file")
    inside = data_dir.exists()
    try:
        if inside:
            staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
        else:
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(
                tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=data_dir.parent)
            )
    except OSError as exc:
        raise BackupError("write", f"cannot create {data_dir}: {exc.strerror or exc}") from None
    try:
        manifest, written = _unpack(backup, staging)
        expected = manifest.get("files", {})
        if set(expected) != set(written):
            missing = sorted(set(expected) ^ set(written))[:3]
            raise BackupError("damaged", f"{backup} does not match its manifest "
                              f"({', '.join(missing)} ...)")
        for name, entry in expected.items():
            if written[name] != entry.get("sha256"):
                raise BackupError("damaged", f"{backup}: {name} does not match its checksum")
        if "account.key" not in written:
            raise BackupError("not_a_backup", f"{backup} holds no account key")
        for name, entry in expected.items():
            os.chmod(staging / name, int(entry.get("mode", 0o600)) & 0o777)
        if inside:
            # Renames within one folder: the checked files, then the empty staging folder.
            for entry in sorted(staging.iterdir()):
                os.replace(entry, data_dir / entry.name)
            staging.rmdir()
            with contextlib.suppress(OSError):  # a mount point may refuse; its owner chose
                os.chmod(data_dir, 0o700)
            _fsync_dir(data_dir)
        else:
            os.chmod(staging, 0o700)
            os.replace(staging, data_dir)
            _fsync_dir(data_dir.parent)
    except OSError as exc:
        _cleanup(staging, data_dir if inside else None)
        raise BackupError("write", f"cannot restore into {data_dir}: {exc.strerror or exc}") from None
    except BaseException:
        _cleanup(staging, data_dir if inside else None)
        raise
    total = sum(int(e.get("size", 0)) for e in expected.values())
    return BackupSummary(data_dir, len(written), total, float(manifest.get("created", 0)))


def _cleanup(staging: Path, target: Path | None) -> None:
    """Remove what a failed restore wrote: the staging folder and, when restoring
    into an existing (empty) folder, whatever had moved into it already."""
    if staging.exists():
        _remove_tree(staging)
    if target is not None:
        for entry in target.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                _remove_tree(entry)
            else:
                entry.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            Path(dirpath, name).unlink(missing_ok=True)
        for name in dirnames:
            Path(dirpath, name).rmdir()
    path.rmdir()
