"""The sieve cache file and its SHA-256 check, without numpy.

Hashing the production file (198 MiB at k = 31) takes about 0.18 s, the
largest single cost of a CLI start. This module needs only the standard
library, so `main.py verify` starts the check on a thread first thing
(`start_early`), while numpy and the rest of the engine import on the main
thread; engine.sieve then adopts the mapping and the running check (`take`).

`DigestCheck.ok()` is the only way to learn the verdict: engine.sieve makes
every result computed from a sieve wait for it (Sieve.confirm), so tables may
be used while they are still being checked, but nothing derived from a damaged
file ever leaves the engine.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import threading
from pathlib import Path

CACHE_MAGIC = b"HSSIEVE2"
# magic, k, 0, survivor count, bmax, survivors per residue mod 9; then the SHA-256
# of header and tables, then the tables (see engine.sieve._ARRAYS)
HEADER = struct.Struct(">8sIIQQ9Q")  # the second I is zero: it aligns the tables to 8
DIGEST_SIZE = 32


def cache_dir() -> Path:
    """Where sieve files live: $HAILSTONE_CACHE_DIR, else the user cache dir."""
    override = os.environ.get("HAILSTONE_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("hailstone", appauthor=False)) / "sieve"


def cache_path(k: int) -> Path:
    return cache_dir() / f"sieve-k{k}.bin"


class DigestCheck:
    """The file's stored digest against one computed on a thread of its own.

    hashlib releases the GIL while it hashes a large buffer, so the check runs
    on a second core beside whatever the caller does meanwhile.
    """

    def __init__(self, mm: mmap.mmap | None) -> None:
        self._ok: bool | None = None if mm is not None else True
        self._done = threading.Event()
        self._cleanup_claimed = False
        self._claim_lock = threading.Lock()
        if mm is None:  # nothing to check: a sieve built in this process
            self._done.set()
            return
        self._thread = threading.Thread(
            target=self._run, args=(mm,), name="hailstone-sieve-digest", daemon=True
        )
        self._thread.start()

    def _run(self, mm: mmap.mmap) -> None:
        try:
            start = HEADER.size + DIGEST_SIZE
            with memoryview(mm) as blob:
                h = hashlib.sha256(blob[: HEADER.size])
                h.update(blob[start:])
                self._ok = h.digest() == blob[HEADER.size : start]
        except (ValueError, BufferError, OSError):  # a mapping closed or too short
            self._ok = False
        finally:
            self._done.set()

    def ok(self) -> bool:
        """Wait for the verdict: True when the file is exactly what was written."""
        self._done.wait()
        return bool(self._ok)

    def done(self) -> bool:
        return self._done.is_set()

    def claim_cleanup(self) -> bool:
        """True for the first caller only: who removes a failed file does it once."""
        with self._claim_lock:
            first = not self._cleanup_claimed
            self._cleanup_claimed = True
            return first


CONFIRMED = DigestCheck(None)


def open_mapped(path: Path) -> mmap.mmap | None:
    """The file mapped read-only, or None when it is missing or too short to hold a sieve."""
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size < HEADER.size + DIGEST_SIZE:
                return None
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None


_early: dict[Path, tuple[mmap.mmap, DigestCheck]] = {}
_early_lock = threading.Lock()


def start_early(k: int) -> None:
    """Map the cached 2**k sieve and start checking its digest now, if it is there.

    The first `take(path)` receives the mapping and the running check; a file
    that is missing is simply left to engine.sieve (which builds it).
    """
    path = cache_path(k)
    with _early_lock:
        if path in _early:
            return
        mm = open_mapped(path)
        if mm is None:
            return
        _early[path] = (mm, DigestCheck(mm))


def start_early_production() -> None:
    """`start_early` for the production sieve (main.py, before verify and bench)."""
    from engine.params import PRODUCTION

    start_early(PRODUCTION.sieve_k)


def take(path: Path) -> tuple[mmap.mmap, DigestCheck] | None:
    """The mapping and check `start_early` began for `path`, once; else None."""
    with _early_lock:
        return _early.pop(path, None)
