"""The 2^k residue sieve: which numbers the engine iterates, and how many.

A number n is *tested* (iterated) exactly when

    n = 3 (mod 4),  n mod 2^k is a sieve survivor,  n mod 9 in MOD9_KEPT.

Survivors are the residues r = 3 (mod 4), r < 2^k, to which none of the four
rules of docs/PROTOCOL.md §3 applies: D (the class falls below its start
within k steps), J (a smaller residue reaches the same value after k steps
with the same odd steps), P (a value of the first k steps has a smaller
predecessor through the four transport identities) and H (Hercher's
coalescence of x and (x - 1)/2). Each rule names, for every member n of the
class, a smaller number whose trajectory n falls to or meets. This module is
the only definition of that set; the tests check it against a separate
pure-Python generator and check every dropped class by a plain search.

The survivor set is built once with numba (engine/sieve_build.py; a start
that finds the cache never imports numba here) (k = 31: about a minute on two
cores), stored with its jump tables under the user cache directory keyed by k,
and verified on load against a SHA-256 digest (engine/sieve_file.py: on two
threads, and for the CLI beside the first blocks, see Sieve.confirm); a damaged
cache file is rebuilt, never trusted.

For the fast backends it also derives, per survivor, a k-step jump:
T^k(a*2^k + r) = a*3^c + T^k(r), valid when no prefix of the k steps can fall
below the start (3^c_j > 2^j for every j), together with a bound on the
largest 3x+1 value met on the way, so the jump never hides a new maximum.
"""

from __future__ import annotations

import hashlib
import mmap
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import sieve_file
from engine.files import write_atomic
from engine.params import MOD9_KEPT
from engine.sieve_file import CONFIRMED, DigestCheck
from engine.sieve_file import cache_dir as cache_dir  # re-exported: network.doctor

_CACHE_MAGIC = sieve_file.CACHE_MAGIC
_HEADER = sieve_file.HEADER

Progress = Callable[[float], None]

# Marks a survivor whose first k steps may fall below the start for some a:
# the fast path must iterate it step by step.
NO_JUMP = 255


class SieveDamaged(RuntimeError):
    """The sieve file failed its SHA-256 check after its tables were in use.

    Nothing computed from it was returned; the file is removed, so the next
    load builds it again.
    """


@dataclass(frozen=True, slots=True, eq=False)
class Sieve:
    """The survivor set for one k, with its counting tables and jump tables.

    Attributes:
        k: the modulus is 2**k.
        residues: sorted uint32 survivors r < 2**k.
        mod9_counts: mod9_counts[j] = number of survivors with r % 9 == j.
        jump_c, jump_d, amax_c, amax_j: the k-step jump (see module doc).
        bmax: max over all survivors of T^j(r) at odd positions j < k.
        check: the cache file's digest check; `confirm()` waits for it.
    """

    k: int
    residues: np.ndarray
    mod9_counts: np.ndarray
    jump_c: np.ndarray
    jump_d: np.ndarray
    amax_c: np.ndarray
    amax_j: np.ndarray
    bmax: int
    check: DigestCheck = field(default=CONFIRMED, repr=False)

    def confirm(self) -> None:
        """Return once the tables are known to be exactly the cached file's; raise
        SieveDamaged if they are not. Free after the first time.

        A sieve from `load()` is confirmed already; one from `load_unconfirmed()`
        may still be under its check, and whoever computes with it calls this
        before any result leaves (CpuBackend.run_block does).
        """
        if not self.check.ok():
            _discard_damaged(self)
            raise SieveDamaged(
                f"the sieve cache {_cache_path(self.k)} failed its SHA-256 check; nothing "
                "computed from it was used, and it is rebuilt on the next start"
            )

    @property
    def modulus(self) -> int:
        return 1 << self.k

    def __len__(self) -> int:
        return int(self.residues.shape[0])

    def rank(self, residue: int) -> int:
        """How many survivors are below `residue` (0 <= residue <= 2**k)."""
        if residue > 0xFFFF_FFFF:
            return len(self)
        # A uint32 key keeps numpy from converting the whole table to int64
        # (milliseconds per call at k=28; the GPU host path calls this per block).
        return int(np.searchsorted(self.residues, np.uint32(max(0, residue))))

    def contains(self, residue: int) -> bool:
        """True if `residue` (< 2**k) survives the sieve."""
        i = self.rank(residue)
        return i < len(self) and int(self.residues[i]) == residue

    def is_tested(self, n: int) -> bool:
        """True if n belongs to the tested set (see module doc)."""
        return n % 4 == 3 and n % 9 in MOD9_KEPT and self.contains(n % self.modulus)

    def count_tested(self, lo: int, hi: int) -> int:
        """Exact number of tested n in [lo, hi), without iterating any of them."""
        if hi <= lo:
            return 0
        mod = self.modulus
        total = 0
        period = lo - lo % mod
        while period < hi:
            a = max(lo - period, 0)
            b = min(hi - period, mod)
            shift = period % 9
            if a == 0 and b == mod:
                counts = self.mod9_counts
            else:
                i0, i1 = self.rank(a), self.rank(b)
                counts = np.bincount(self.residues[i0:i1] % 9, minlength=9)
            total += sum(int(counts[j]) for j in range(9) if (shift + j) % 9 in MOD9_KEPT)
            period += mod
        return total

    def tested_numbers(self, lo: int, hi: int):
        """Iterate the tested n in [lo, hi) in increasing order (for small ranges)."""
        mod = self.modulus
        period = lo - lo % mod
        while period < hi:
            a = max(lo - period, 0)
            b = min(hi - period, mod)
            i0, i1 = self.rank(a), self.rank(b)
            for r in self.residues[i0:i1].tolist():
                n = period + r
                if n % 9 in MOD9_KEPT:
                    yield n
            period += mod


def _from_residues(k: int, residues: np.ndarray) -> Sieve:
    from engine.sieve_build import build_jumps

    mod9_counts = np.bincount(residues % 9, minlength=9).astype(np.int64)
    jump_c, jump_d, amax_c, amax_j, bmax_each = build_jumps(residues, k)
    bmax = int(bmax_each.max()) if len(bmax_each) else 0
    for arr in (residues, mod9_counts, jump_c, jump_d, amax_c, amax_j):
        arr.setflags(write=False)
    return Sieve(
        k=k,
        residues=residues,
        mod9_counts=mod9_counts,
        jump_c=jump_c,
        jump_d=jump_d,
        amax_c=amax_c,
        amax_j=amax_j,
        bmax=bmax,
    )


def build_residues(k: int, progress: Progress | None = None) -> np.ndarray:
    """The survivors r < 2**k, increasing (uint32), computed from scratch
    (engine.sieve_build, which loads numba: only a build needs it)."""
    from engine.sieve_build import build_residues as build

    return build(k, progress)


def _cache_path(k: int) -> Path:
    return sieve_file.cache_path(k)


# The cache holds the survivors and their jump tables ready to use, so a start
# maps one file and hashes it (about 0.18 s at k = 31) instead of deriving the
# tables again (a few hundred ms). The u64 table comes first so that every
# array is aligned in the file as in memory.
_ARRAYS = (("jump_d", np.uint64), ("residues", np.uint32), ("jump_c", np.uint8),
           ("amax_c", np.uint8), ("amax_j", np.uint8))  # fmt: skip


def _write_cache(path: Path, sieve: Sieve) -> None:
    head = _HEADER.pack(
        _CACHE_MAGIC, sieve.k, 0, len(sieve), sieve.bmax, *sieve.mod9_counts.tolist()
    )
    body = b"".join(
        np.ascontiguousarray(getattr(sieve, name), dtype=np.dtype(dt).newbyteorder("<")).tobytes()
        for name, dt in _ARRAYS
    )
    data = head + hashlib.sha256(head + body).digest() + body
    write_atomic(path, data)
    sieve_file.write_parts(path, data)  # so that a start checks it on two threads


def _read_cache(path: Path, k: int, *, confirmed: bool = True) -> Sieve | None:
    """The cached sieve, or None if missing or not right.

    The file is mapped, not copied (the tables are 198 MiB at k = 31): the
    arrays are read-only views of the mapping, which lives as long as they do.
    With `confirmed` the digest is checked before the sieve is returned (None
    if it fails); without, the check runs on a thread and the sieve's
    `confirm()` reports it. A check `sieve_file.start_early` began is reused.
    """
    early = sieve_file.take(path)
    if early is not None:
        mm, check = early
    else:
        mm = sieve_file.open_mapped(path)
        if mm is None:
            return None
        check = None
    layout = _parse_header(mm, k)
    if layout is None:
        if check is None:
            mm.close()  # so that a rebuild may replace the file (Windows)
        return None  # (a running check keeps the mapping until it ends)
    if check is None:
        check = DigestCheck(mm, path)
    if confirmed and not check.ok():
        mm.close()
        return None
    return _from_mapping(mm, k, layout, check)


def _parse_header(mm: mmap.mmap, k: int) -> tuple[int, int, list[int]] | None:
    """(survivor count, bmax, counts mod 9) when the header and size fit k, else None."""
    magic, k_file, zero, count, bmax, *mod9 = _HEADER.unpack_from(mm)
    if magic != _CACHE_MAGIC or k_file != k or zero or count > 1 << max(0, k - 2):
        return None
    size = (
        _HEADER.size
        + sieve_file.DIGEST_SIZE
        + count * sum(np.dtype(dt).itemsize for _, dt in _ARRAYS)
    )
    return (count, bmax, mod9) if len(mm) == size else None


def _from_mapping(
    mm: mmap.mmap, k: int, layout: tuple[int, int, list[int]], check: DigestCheck
) -> Sieve:
    count, bmax, mod9 = layout
    arrays = {}
    offset = _HEADER.size + sieve_file.DIGEST_SIZE
    for name, dt in _ARRAYS:
        arrays[name] = np.frombuffer(mm, dtype=np.dtype(dt).newbyteorder("<"), count=count,
                                     offset=offset).astype(dt, copy=False)  # fmt: skip
        offset += count * np.dtype(dt).itemsize
    mod9_counts = np.array(mod9, dtype=np.int64)
    mod9_counts.setflags(write=False)
    return Sieve(k=k, mod9_counts=mod9_counts, bmax=bmax, check=check, **arrays)


_loaded: dict[int, Sieve] = {}
_lock = threading.Lock()


def load(k: int, progress: Progress | None = None) -> Sieve:
    """The sieve for 2**k: from memory, else the verified cache, else built
    (seconds to a minute, once; `progress(fraction)` hears about it).

    The sieve returned is confirmed: a damaged cache file is rebuilt, never used.
    """
    while True:
        sieve = _load(k, progress, confirmed=True)
        try:
            sieve.confirm()
        except SieveDamaged:
            continue  # an unconfirmed one from memory failed: it and its file are gone
        return sieve


def load_unconfirmed(k: int, progress: Progress | None = None) -> Sieve:
    """Like `load`, but a cached file's digest may still be under check: the caller
    calls `confirm()` before anything computed from the sieve leaves it.

    This lets the CPU backend compute while the 198 MiB file is hashed on
    another core (CLI start-up); SieveDamaged then fails the run instead.
    """
    return _load(k, progress, confirmed=False)


def loaded(k: int) -> Sieve | None:
    """The sieve for 2**k already in memory, perhaps still under its check; else None."""
    with _lock:
        return _loaded.get(k)


def _load(k: int, progress: Progress | None, *, confirmed: bool) -> Sieve:
    with _lock:
        sieve = _loaded.get(k)
        if sieve is not None:
            return sieve
        path = _cache_path(k)
        sieve = _read_cache(path, k, confirmed=confirmed)
        if sieve is None:
            sieve = _from_residues(k, build_residues(k, progress))
            try:
                _write_cache(path, sieve)
            except OSError:
                pass  # a read-only or full cache dir only costs a rebuild next time
        _loaded[k] = sieve
        return sieve


def _discard_damaged(sieve: Sieve) -> None:
    """Forget a sieve whose file failed its check, and remove the file (once), so
    that the next load builds it again rather than failing again."""
    with _lock:
        if _loaded.get(sieve.k) is sieve:
            del _loaded[sieve.k]
        if sieve.check.claim_cleanup():
            _cache_path(sieve.k).unlink(missing_ok=True)
            sieve_file.parts_path(_cache_path(sieve.k)).unlink(missing_ok=True)


def ready(k: int) -> bool:
    """True when `load(k)` will not have to build: loaded, or a cache file of the
    right size is there (its digest is checked by `load`, not here)."""
    with _lock:
        if k in _loaded:
            return True
    try:
        with _cache_path(k).open("rb") as f:
            header = f.read(_HEADER.size)
    except OSError:
        return False
    if len(header) != _HEADER.size:
        return False
    magic, k_file, _zero, count, *_ = _HEADER.unpack(header)
    size = _HEADER.size + 32 + count * sum(np.dtype(dt).itemsize for _, dt in _ARRAYS)
    return magic == _CACHE_MAGIC and k_file == k and _cache_path(k).stat().st_size == size


def forget_loaded() -> None:
    """Drop in-memory sieves (tests use this to exercise the disk cache)."""
    with _lock:
        _loaded.clear()
