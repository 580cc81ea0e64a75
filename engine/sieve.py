"""The 2^k residue sieve: which numbers the engine iterates, and how many.

A number n is *tested* (iterated) exactly when

    n = 3 (mod 4),  n mod 2^k is a sieve survivor,  n mod 9 in MOD9_KEPT.

Survivors are the residues r = 3 (mod 4), r < 2^k, for which no j in 1..k has
3^c_j < 2^j and T^j(r) < r (T the shortcut map, c_j its odd steps among the
first j). Such a class a*2^k + r falls below its start within j steps for
every a >= 0, so it is proved without iterating (docs/PROTOCOL.md has the
proof). This module is the only definition of that set.

The survivor set is built once with numba, stored compactly (one bit per
r = 3 mod 4) under the user cache directory keyed by k, and verified on load
against a SHA-256 digest; a damaged cache file is rebuilt, never trusted.

For the fast backends it also derives, per survivor, a k-step jump:
T^k(a*2^k + r) = a*3^c + T^k(r), valid when no prefix of the k steps can fall
below the start (3^c_j > 2^j for every j), together with a bound on the
largest 3x+1 value met on the way, so the jump never hides a new maximum.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit, prange

from engine.files import write_atomic
from engine.params import MOD9_KEPT

_CACHE_MAGIC = b"HSSIEVE1"
_HEADER = struct.Struct(">8sIQ32s")  # magic, k, survivor count, sha256(bitmap)

# Marks a survivor whose first k steps may fall below the start for some a:
# the fast path must iterate it step by step.
NO_JUMP = 255


def cache_dir() -> Path:
    """Where sieve files live: $HAILSTONE_CACHE_DIR, else the user cache dir."""
    override = os.environ.get("HAILSTONE_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("hailstone", appauthor=False)) / "sieve"


@njit(cache=True, parallel=True)
def _build_bitmap(k: int) -> np.ndarray:  # pragma: no cover - compiled
    # Bit i stands for r = 4i + 3.
    n_classes = 1 << (k - 2)
    keep = np.zeros(n_classes, dtype=np.bool_)
    for i in prange(n_classes):
        r = np.uint64(4 * i + 3)
        d = r
        pow3 = np.uint64(1)
        dead = False
        for j in range(1, k + 1):
            if d & np.uint64(1):
                d = (np.uint64(3) * d + np.uint64(1)) >> np.uint64(1)
                pow3 *= np.uint64(3)
            else:
                d >>= np.uint64(1)
            if pow3 < (np.uint64(1) << np.uint64(j)) and d < r:
                dead = True
                break
        keep[i] = not dead
    return keep


@njit(cache=True, parallel=True)
def _build_jumps(residues: np.ndarray, k: int):  # pragma: no cover - compiled
    """Per survivor: c (odd steps in k steps, NO_JUMP if not jumpable),
    d = T^k(r), and (amax_c, amax_j) with amax = 3^amax_c * 2^(k - amax_j) the
    largest coefficient of a in T^j(n) over the odd positions j < k."""
    m = residues.shape[0]
    c_out = np.empty(m, dtype=np.uint8)
    d_out = np.empty(m, dtype=np.uint64)
    ac_out = np.zeros(m, dtype=np.uint8)
    aj_out = np.zeros(m, dtype=np.uint8)
    bmax_all = np.zeros(m, dtype=np.uint64)
    for i in prange(m):
        d = np.uint64(residues[i])
        c = 0
        pow3 = np.uint64(1)
        ok = True
        best = np.uint64(0)
        best_c = 0
        best_j = 0
        bmax = np.uint64(0)
        for j in range(k):
            # state: d = T^j(r), pow3 = 3^c_j
            if d & np.uint64(1):
                coef = pow3 << np.uint64(k - j)
                if coef > best:
                    best = coef
                    best_c = c
                    best_j = j
                if d > bmax:
                    bmax = d
                d = (np.uint64(3) * d + np.uint64(1)) >> np.uint64(1)
                pow3 *= np.uint64(3)
                c += 1
            else:
                d >>= np.uint64(1)
            if pow3 <= (np.uint64(1) << np.uint64(j + 1)):
                ok = False
        c_out[i] = c if ok else NO_JUMP
        d_out[i] = d
        ac_out[i] = best_c
        aj_out[i] = best_j
        bmax_all[i] = bmax
    return c_out, d_out, ac_out, aj_out, bmax_all


@dataclass(frozen=True, slots=True, eq=False)
class Sieve:
    """The survivor set for one k, with its counting tables and jump tables.

    Attributes:
        k: the modulus is 2**k.
        residues: sorted uint32 survivors r < 2**k.
        mod9_counts: mod9_counts[j] = number of survivors with r % 9 == j.
        jump_c, jump_d, amax_c, amax_j: the k-step jump (see module doc).
        bmax: max over all survivors of T^j(r) at odd positions j < k.
    """

    k: int
    residues: np.ndarray
    mod9_counts: np.ndarray
    jump_c: np.ndarray
    jump_d: np.ndarray
    amax_c: np.ndarray
    amax_j: np.ndarray
    bmax: int

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


def _from_bitmap(k: int, keep: np.ndarray) -> Sieve:
    residues = (np.flatnonzero(keep).astype(np.uint64) * 4 + 3).astype(np.uint32)
    mod9_counts = np.bincount(residues % 9, minlength=9).astype(np.int64)
    jump_c, jump_d, amax_c, amax_j, bmax_each = _build_jumps(residues, k)
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


def build_bitmap(k: int) -> np.ndarray:
    """Survivor bitmap for r = 4i + 3 < 2**k, computed from scratch."""
    if not 2 <= k <= 32:
        raise ValueError("sieve k must be in 2..32")
    return _build_bitmap(k)


def _cache_path(k: int) -> Path:
    return cache_dir() / f"sieve-k{k}.bin"


def _write_cache(path: Path, k: int, keep: np.ndarray) -> None:
    packed = np.packbits(keep, bitorder="little").tobytes()
    header = _HEADER.pack(_CACHE_MAGIC, k, int(keep.sum()), hashlib.sha256(packed).digest())
    write_atomic(path, header + packed)


def _read_cache(path: Path, k: int) -> np.ndarray | None:
    """The cached bitmap, or None if missing or not exactly right."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    n_classes = 1 << (k - 2)
    if len(blob) != _HEADER.size + (n_classes + 7) // 8:
        return None
    magic, k_file, count, digest = _HEADER.unpack_from(blob)
    packed = blob[_HEADER.size :]
    if magic != _CACHE_MAGIC or k_file != k or hashlib.sha256(packed).digest() != digest:
        return None
    keep = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=n_classes, bitorder="little")
    keep = keep.astype(np.bool_)
    if int(keep.sum()) != count:
        return None
    return keep


_loaded: dict[int, Sieve] = {}
_lock = threading.Lock()


def load(k: int) -> Sieve:
    """The sieve for 2**k: from memory, else the verified cache, else built."""
    with _lock:
        sieve = _loaded.get(k)
        if sieve is not None:
            return sieve
        path = _cache_path(k)
        keep = _read_cache(path, k)
        if keep is None:
            keep = build_bitmap(k)
            try:
                _write_cache(path, k, keep)
            except OSError:
                pass  # a read-only or full cache dir only costs a rebuild next time
        sieve = _from_bitmap(k, keep)
        _loaded[k] = sieve
        return sieve


def forget_loaded() -> None:
    """Drop in-memory sieves (tests use this to exercise the disk cache)."""
    with _lock:
        _loaded.clear()
