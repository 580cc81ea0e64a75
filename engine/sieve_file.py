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


# The digests of the file's 16 MiB parts, kept beside it (`<file>.parts`), let two
# threads check it at once: 0.17 s of hashing becomes about 0.09 s on two cores.
PARTS_MAGIC = b"HSPARTS1"
PART_SIZE = 16 << 20
_PARTS_HEAD = struct.Struct(">8sQQ32s")  # magic, file size, part size, the file's digest
HASH_THREADS = 2


def parts_path(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def _bounds(size: int, part_size: int) -> list[tuple[int, int]]:
    return [(a, min(a + part_size, size)) for a in range(0, size, part_size)]


def read_parts(path: Path, blob) -> tuple[list[bytes], int] | None:
    """The part digests recorded for this very file (same size, same stored digest),
    or None when there are none or they are not exactly right."""
    try:
        data = parts_path(path).read_bytes()
    except OSError:
        return None
    body, tail = data[:-DIGEST_SIZE], data[-DIGEST_SIZE:]
    if len(body) < _PARTS_HEAD.size or hashlib.sha256(body).digest() != tail:
        return None
    magic, size, part_size, digest = _PARTS_HEAD.unpack_from(body)
    stored = bytes(blob[HEADER.size : HEADER.size + DIGEST_SIZE])
    if magic != PARTS_MAGIC or size != len(blob) or part_size < 1 or digest != stored:
        return None
    count = len(_bounds(size, part_size))
    digests = body[_PARTS_HEAD.size :]
    if len(digests) != count * DIGEST_SIZE:
        return None
    return [digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE] for i in range(count)], part_size


def part_digests(blob) -> list[bytes]:
    """SHA-256 of each PART_SIZE piece of `blob`."""
    with memoryview(blob) as view:
        return [hashlib.sha256(view[a:e]).digest() for a, e in _bounds(len(view), PART_SIZE)]


def write_parts(path: Path, blob, digests: list[bytes] | None = None) -> None:
    """Record the part digests of `blob` (the file's bytes, already checked whole)."""
    from engine.files import write_atomic

    digests = part_digests(blob) if digests is None else digests
    stored = bytes(blob[HEADER.size : HEADER.size + DIGEST_SIZE])
    body = _PARTS_HEAD.pack(PARTS_MAGIC, len(blob), PART_SIZE, stored) + b"".join(digests)
    try:
        write_atomic(parts_path(path), body + hashlib.sha256(body).digest())
    except OSError:
        pass  # a read-only cache: the next start checks the file whole again


class DigestCheck:
    """The file's stored digest against one computed on threads of their own.

    hashlib releases the GIL while it hashes a large buffer, so the check runs
    beside whatever the caller does meanwhile. With the part digests of this
    very file beside it (`read_parts`) the parts are checked on HASH_THREADS
    threads; else the file is hashed whole (the stored digest) while a second
    thread computes the part digests, which are written once the whole passes.
    """

    def __init__(self, mm: mmap.mmap | None, path: Path | None = None) -> None:
        self._ok: bool | None = None if mm is not None else True
        self._done = threading.Event()
        self._cleanup_claimed = False
        self._claim_lock = threading.Lock()
        self.used_parts = False
        if mm is None:  # nothing to check: a sieve built in this process
            self._done.set()
            return
        self._thread = threading.Thread(
            target=self._run, args=(mm, path), name="hailstone-sieve-digest", daemon=True
        )
        self._thread.start()

    def _run(self, mm: mmap.mmap, path: Path | None) -> None:
        try:
            parts = read_parts(path, mm) if path is not None else None
            if parts is not None:
                self.used_parts = True
                self._ok = _check_parts(mm, *parts)
            else:
                self._ok = _check_whole(mm, path)
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


def _on_threads(jobs: list) -> list:
    """Run the callables, all but the first on threads of their own; their results."""
    results: list = [None] * len(jobs)

    def run(i: int) -> None:
        results[i] = jobs[i]()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, len(jobs))]
    for t in threads:
        t.start()
    run(0)
    for t in threads:
        t.join()
    return results


def _check_parts(mm: mmap.mmap, digests: list[bytes], part_size: int) -> bool:
    bounds = _bounds(len(mm), part_size)
    threads = max(1, min(HASH_THREADS, len(bounds), os.cpu_count() or 1))

    def check(j: int):
        def job() -> bool:
            with memoryview(mm) as view:
                return all(
                    hashlib.sha256(view[a:e]).digest() == digests[i]
                    for i, (a, e) in list(enumerate(bounds))[j::threads]
                )

        return job

    return all(_on_threads([check(j) for j in range(threads)]))


def _check_whole(mm: mmap.mmap, path: Path | None) -> bool:
    def whole() -> bool:
        start = HEADER.size + DIGEST_SIZE
        with memoryview(mm) as blob:
            h = hashlib.sha256(blob[: HEADER.size])
            h.update(blob[start:])
            return h.digest() == blob[HEADER.size : start]

    if path is None:
        return whole()
    ok, digests = _on_threads([whole, lambda: part_digests(mm)])
    if ok:
        write_parts(path, mm, digests)
    return ok


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
        _early[path] = (mm, DigestCheck(mm, path))


def start_early_production() -> None:
    """`start_early` for the production sieve (main.py, before verify and bench)."""
    from engine.params import PRODUCTION

    start_early(PRODUCTION.sieve_k)


def take(path: Path) -> tuple[mmap.mmap, DigestCheck] | None:
    """The mapping and check `start_early` began for `path`, once; else None."""
    with _early_lock:
        return _early.pop(path, None)
