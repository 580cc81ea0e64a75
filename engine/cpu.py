"""CPU backend: numba kernels over 128-bit limbs, one block per call.

The public `CpuBackend.run_block()` validates its range, runs the private
kernel, and sends every number the kernel could not finish (a value that would
pass 2**128, or more odd steps than the fast bound) through the exact
reference path. The kernel is compiled with nogil=True, so several blocks run
on several cores from plain Python threads while the GUI stays live.

Speed comes from the sieve (engine/sieve.py, k = 28 in production), the mod-9
rule, and a k-step jump over the first k steps of each survivor: one
multiply-add replaces about 18 odd steps. The jump is taken only when a
precomputed bound proves that none of the skipped 3x+1 values can beat the
block's current maximum; otherwise the number is iterated step by step, so
the evidence is exactly that of the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from engine import reference
from engine.evidence import BlockEvidence
from engine.params import MOD9_KEPT, Params
from engine.sieve import NO_JUMP, Sieve
from engine.sieve import load as load_sieve
from engine.u128 import mul_add_64, strip_twos, triple_plus_one

_MASK64 = (1 << 64) - 1
_U128_MAX = (1 << 128) - 1
# Blocks that reach this high are left to the exact path entirely.
_FAST_RANGE_LIMIT = 1 << 127
_DEFER_CAPACITY = 1024

# Kernel status codes
_DONE = 0
_DEFER_FULL = 1

_KEPT9 = np.zeros(9, dtype=np.uint8)
_KEPT9[list(MOD9_KEPT)] = 1
_POW3 = np.array([3**i for i in range(41)], dtype=np.uint64)


@njit(nogil=True, cache=True)
def _run_range(
    lo_hi, lo_lo, length, residues, jump_c, jump_d, amax_c, amax_j, bmax, k,
    step_bound, max_hi, max_lo, maxn_hi, maxn_lo, kept9, pow3, deferred, out,
):  # pragma: no cover - compiled; tested through CpuBackend against the reference
    """Fast path over [lo, lo + length) (lo as two limbs, length < 2**62).

    out receives: tested, odd_steps, max_hi, max_lo, maxn_hi, maxn_lo,
    number deferred, status, resume offset (numbers before it are done).
    """
    u1 = np.uint64(1)
    lim_hi = np.uint64(0x5555555555555555)  # (2**128 - 2) // 3: 3x+1 fits in 128 bits
    lim_lo = np.uint64(0x5555555555555554)
    kk = np.uint64(k)
    mod_mask = (u1 << kk) - u1
    tested = np.uint64(0)
    odd_total = np.uint64(0)
    n_def = 0
    status = 0
    resume = length

    first_off = np.int64(lo_lo & mod_mask)  # lo - period base
    p_lo = lo_lo - np.uint64(first_off)
    p_hi = lo_hi
    end_off = np.int64(length) + first_off  # hi - first period base
    period = 0
    done = False
    while not done:
        base_off = np.int64(period) << np.int64(k)  # this period's base, relative to the first
        a_off = first_off - base_off
        if a_off < 0:
            a_off = 0
        b_off = end_off - base_off
        if b_off > (np.int64(1) << np.int64(k)):
            b_off = np.int64(1) << np.int64(k)
        else:
            done = True
        i0 = np.searchsorted(residues, np.uint32(a_off))
        i1 = np.searchsorted(residues, np.uint32(b_off)) if b_off < (np.int64(1) << np.int64(k)) else residues.shape[0]
        p9 = ((p_hi % np.uint64(9)) * np.uint64(7) + p_lo % np.uint64(9)) % np.uint64(9)
        a_fits = (p_hi >> kk) == 0
        a_lo = (p_lo >> kk) | (p_hi << (np.uint64(64) - kk))
        for i in range(i0, i1):
            r = np.uint64(residues[i])
            if kept9[(p9 + r % np.uint64(9)) % np.uint64(9)] == 0:
                continue
            n_lo = p_lo + r
            n_hi = p_hi + (u1 if n_lo < p_lo else np.uint64(0))
            x_hi = n_hi
            x_lo = n_lo
            steps = np.uint64(0)
            c = jump_c[i]
            if c != NO_JUMP and a_fits:
                coef = pow3[amax_c[i]] << (kk - np.uint64(amax_j[i]))
                b_hi, b_lo = mul_add_64(a_lo, coef, bmax)
                b_hi, b_lo = triple_plus_one(b_hi, b_lo)
                if b_hi < max_hi or (b_hi == max_hi and b_lo <= max_lo):
                    x_hi, x_lo = mul_add_64(a_lo, pow3[c], jump_d[i])
                    steps = np.uint64(c)
            # The maximum before this number: restored if the number is deferred, so a
            # partial trajectory (say, of a candidate) never leaks into the evidence.
            keep_hi = max_hi
            keep_lo = max_lo
            keep_nhi = maxn_hi
            keep_nlo = maxn_lo
            deferred_here = False
            while True:
                x_hi, x_lo = strip_twos(x_hi, x_lo)
                if x_hi < n_hi or (x_hi == n_hi and x_lo < n_lo):
                    break
                if steps >= step_bound or x_hi > lim_hi or (x_hi == lim_hi and x_lo > lim_lo):
                    deferred_here = True
                    break
                x_hi, x_lo = triple_plus_one(x_hi, x_lo)
                steps += u1
                if x_hi > max_hi or (x_hi == max_hi and x_lo > max_lo):
                    max_hi = x_hi
                    max_lo = x_lo
                    maxn_hi = n_hi
                    maxn_lo = n_lo
            if deferred_here:
                max_hi = keep_hi
                max_lo = keep_lo
                maxn_hi = keep_nhi
                maxn_lo = keep_nlo
                if n_def == deferred.shape[0]:
                    status = 1
                    resume = np.int64(r) + base_off - first_off
                    done = True
                    break
                deferred[n_def, 0] = n_hi
                deferred[n_def, 1] = n_lo
                n_def += 1
            else:
                odd_total += steps
            tested += u1
        # next period: base += 2**k
        new_lo = p_lo + (u1 << kk)
        if new_lo < p_lo:
            p_hi += u1
        p_lo = new_lo
        period += 1
    out[0] = tested
    out[1] = odd_total
    out[2] = max_hi
    out[3] = max_lo
    out[4] = maxn_hi
    out[5] = maxn_lo
    out[6] = np.uint64(n_def)
    out[7] = np.uint64(status)
    out[8] = np.uint64(resume)


class CpuBackend:
    """Runs blocks on the CPU with numba; exact fallback through engine.reference."""

    name = "cpu"

    def __init__(self, params: Params, sieve: Sieve | None = None) -> None:
        self.params = params
        self.sieve = sieve if sieve is not None else load_sieve(params.sieve_k)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0

    def warm_up(self) -> None:
        """Compile (or load) the kernel now rather than inside the first timed block."""
        lo = self.params.start
        self.run_block(lo, lo + min(self.params.block_size, 1 << 12))

    def run_block(self, lo: int, hi: int) -> BlockEvidence:
        """Evidence for [lo, hi), bit-identical to engine.reference.run_block."""
        if not 1 <= lo < hi:
            raise ValueError("need 1 <= lo < hi")
        if hi - lo >= 1 << 62:
            raise ValueError("a block must be shorter than 2**62 integers")
        if hi > _FAST_RANGE_LIMIT:
            return reference.run_block(self.sieve, lo, hi, self.params.exact_step_bound)
        s = self.sieve
        acc = reference.EvidenceAccumulator()
        deferred = np.zeros((_DEFER_CAPACITY, 2), dtype=np.uint64)
        out = np.zeros(9, dtype=np.uint64)
        pos = lo
        while pos < hi:
            thr = min(acc.max_value, _U128_MAX)
            _run_range(
                np.uint64(pos >> 64), np.uint64(pos & _MASK64), np.int64(hi - pos),
                s.residues, s.jump_c, s.jump_d, s.amax_c, s.amax_j, np.uint64(s.bmax), s.k,
                np.uint64(self.params.step_bound),
                np.uint64(thr >> 64), np.uint64(thr & _MASK64),
                np.uint64(acc.max_n >> 64), np.uint64(acc.max_n & _MASK64),
                _KEPT9, _POW3, deferred, out,
            )
            fast_max = (int(out[2]) << 64) | int(out[3])
            if fast_max > thr:
                acc.offer_max(fast_max, (int(out[4]) << 64) | int(out[5]))
            n_def = int(out[6])
            acc.tested += int(out[0]) - n_def
            acc.odd_steps += int(out[1])
            for j in range(n_def):
                n = (int(deferred[j, 0]) << 64) | int(deferred[j, 1])
                acc.add(n, reference.glide(n, self.params.exact_step_bound))
            if int(out[7]) == _DONE:
                break
            pos += int(out[8])
        return acc.finish(lo, hi)

    def run_blocks(self, ranges: Sequence[tuple[int, int]], cores: int) -> list[BlockEvidence]:
        """Several blocks at once, one per thread (the kernel releases the GIL)."""
        if cores <= 1 or len(ranges) <= 1:
            return [self.run_block(lo, hi) for lo, hi in ranges]
        if self._pool is None or self._pool_size != cores:
            self.close()
            self._pool = ThreadPoolExecutor(max_workers=cores, thread_name_prefix="hailstone-cpu")
            self._pool_size = cores
        return list(self._pool.map(lambda r: self.run_block(*r), ranges))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            self._pool_size = 0
