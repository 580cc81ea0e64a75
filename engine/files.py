"""Durable file replacement, the one implementation every layer uses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(
    path: str | os.PathLike[str], data: bytes, mode: int = 0o644, *, durable: bool = True
) -> None:
    """Replace `path` with `data`: temporary file, fsync, rename, fsync the folder.

    Readers see the old content or the new, never a mix; after a crash the file
    is one or the other. The temporary file is private (0600) until it is
    complete, so a secret is never readable by others, not even briefly.

    `durable=False` skips both fsyncs (two disk flushes, about 3 ms here and far
    more on a busy disk): still all-or-nothing for readers and across a killed
    process, but a power loss may leave the file empty or short. Only for files
    that can be made again and whose reader notices a damaged one (IPFS blocks,
    checked against their hash; the status file, rewritten every second).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not durable:
        return
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(dir_fd)
