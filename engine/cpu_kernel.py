"""The CPU kernel: one numba function over a range, 128-bit values as two limbs.

This is the only definition of the CPU kernel. engine.cpu runs it in one of
two forms: compiled ahead of time into a small shared library that needs no
numba (engine/aot_build.py builds it from this function, engine/aot.py loads
it), or just in time by numba from here, with numba's cache (the fallback).
Importing this module imports numba (about 0.2 s), so engine.cpu imports it
only when the JIT form is used.

Speed comes from the sieve (engine/sieve.py), the mod-9 rule, and a k-step
jump over the first k steps of each survivor: one multiply-add replaces about
18 odd steps. The jump is taken only when a precomputed bound proves that none
of the skipped 3x+1 values can beat the block's current maximum; otherwise the
number is iterated step by step, so the evidence is exactly that of the
reference.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from numba import njit

from engine.cpu import (
    _CHUNK,
    _DEFER_CAPACITY,
    _DEFER_FULL,
    _DONE,
    _KEPT9,
    _MASK64,
    _POW3,
    KernelCall,
)
from engine.sieve import NO_JUMP, Sieve
from engine.u128 import mul_add_64, strip_twos, triple_plus_one


@njit(nogil=True, cache=True)
def _run_range(
    lo_hi,
    lo_lo,
    length,
    residues,
    jump_c,
    jump_d,
    amax_c,
    amax_j,
    bmax,
    k,
    step_bound,
    max_hi,
    max_lo,
    maxn_hi,
    maxn_lo,
    kept9,
    pow3,
    deferred,
    out,
    buf,
):  # pragma: no cover - compiled; tested through CpuBackend against the reference
    """Fast path over [lo, lo + length) (lo as two limbs, length < 2**62).

    Three numbers are in flight at once (lanes a, b and c), so the CPU overlaps
    their dependency chains (tzcnt -> 128-bit shift -> 3x+1): two lanes measured
    +31 % on one core over one, a third +4 % more, a fourth and fifth lost again
    (registers run out). The lanes' code is written out three times on purpose:
    moving the step or the lane start into helper functions measured 20-40 %
    slower (numba's tuple returns and the extra dispatch stay in the hot loop). Lanes finish out of order, so
    the maximum follows the explicit tie rule (larger value, or equal value and
    smaller n), each lane tracks its own peak from the block maximum at its
    start, and a jump is taken only when its bound is strictly below that
    maximum. A deferred number's partial peak is dropped: the exact path decides.

    out receives: tested, odd_steps, max_hi, max_lo, maxn_hi, maxn_lo,
    number deferred, status, resume offset (numbers before it are done).
    """
    u0 = np.uint64(0)
    u1 = np.uint64(1)
    lim_hi = np.uint64(0x5555555555555555)
    lim_lo = np.uint64(0x5555555555555554)
    kk = np.uint64(k)
    mod_mask = (u1 << kk) - u1
    tested = u0
    odd_total = u0
    n_def = 0
    cap = deferred.shape[0] - 3  # room for every lane to defer while draining
    status = _DONE
    resume = length
    first_off = np.int64(lo_lo & mod_mask)
    p_lo = lo_lo - np.uint64(first_off)
    p_hi = lo_hi
    end_off = np.int64(length) + first_off
    period = 0
    done = False
    while not done:
        base_off = np.int64(period) << np.int64(k)
        a_off = first_off - base_off
        if a_off < 0:
            a_off = 0
        b_off = end_off - base_off
        if b_off > (np.int64(1) << np.int64(k)):
            b_off = np.int64(1) << np.int64(k)
        else:
            done = True
        i0 = np.searchsorted(residues, np.uint32(a_off))
        i1 = (
            np.searchsorted(residues, np.uint32(b_off))
            if b_off < (np.int64(1) << np.int64(k))
            else residues.shape[0]
        )
        p9 = ((p_hi % np.uint64(9)) * np.uint64(7) + p_lo % np.uint64(9)) % np.uint64(9)
        a_fits = (p_hi >> kk) == 0
        a_lo = (p_lo >> kk) | (p_hi << (np.uint64(64) - kk))
        chunk = buf.shape[0]
        for cs in range(i0, i1, chunk):
            if n_def >= cap:
                # no room to defer: let the caller empty the buffer, then resume here
                status = _DEFER_FULL
                resume = np.int64(residues[cs]) + base_off - first_off
                break
            # the kept survivors of this chunk, gathered without a branch
            m = 0
            for t in range(cs, min(cs + chunk, i1)):
                buf[m] = t
                m += kept9[(p9 + np.uint64(residues[t]) % np.uint64(9)) % np.uint64(9)]
            pos = 0
            a_on = False
            b_on = False
            c_on = False
            loading = True
            an_hi = u0
            an_lo = u0
            ax_hi = u0
            ax_lo = u0
            a_st = u0
            apk_hi = u0
            apk_lo = u0
            a_set = False
            bn_hi = u0
            bn_lo = u0
            bx_hi = u0
            bx_lo = u0
            b_st = u0
            bpk_hi = u0
            bpk_lo = u0
            b_set = False
            cn_hi = u0
            cn_lo = u0
            cx_hi = u0
            cx_lo = u0
            c_st = u0
            cpk_hi = u0
            cpk_lo = u0
            c_set = False
            while True:
                if not a_on and loading and pos < m:
                    t = buf[pos]
                    pos += 1
                    r = np.uint64(residues[t])
                    an_lo = p_lo + r
                    an_hi = p_hi + (u1 if an_lo < p_lo else u0)
                    ax_hi = an_hi
                    ax_lo = an_lo
                    a_st = u0
                    c = jump_c[t]
                    if c != NO_JUMP and a_fits:
                        coef = pow3[amax_c[t]] << (kk - np.uint64(amax_j[t]))
                        g_hi, g_lo = mul_add_64(a_lo, coef, bmax)
                        g_hi, g_lo = triple_plus_one(g_hi, g_lo)
                        if g_hi < max_hi or (g_hi == max_hi and g_lo < max_lo):
                            ax_hi, ax_lo = mul_add_64(a_lo, pow3[c], jump_d[t])
                            a_st = np.uint64(c)
                    apk_hi = max_hi
                    apk_lo = max_lo
                    a_set = False
                    a_on = True
                if not b_on and loading and pos < m:
                    t = buf[pos]
                    pos += 1
                    r = np.uint64(residues[t])
                    bn_lo = p_lo + r
                    bn_hi = p_hi + (u1 if bn_lo < p_lo else u0)
                    bx_hi = bn_hi
                    bx_lo = bn_lo
                    b_st = u0
                    c = jump_c[t]
                    if c != NO_JUMP and a_fits:
                        coef = pow3[amax_c[t]] << (kk - np.uint64(amax_j[t]))
                        g_hi, g_lo = mul_add_64(a_lo, coef, bmax)
                        g_hi, g_lo = triple_plus_one(g_hi, g_lo)
                        if g_hi < max_hi or (g_hi == max_hi and g_lo < max_lo):
                            bx_hi, bx_lo = mul_add_64(a_lo, pow3[c], jump_d[t])
                            b_st = np.uint64(c)
                    bpk_hi = max_hi
                    bpk_lo = max_lo
                    b_set = False
                    b_on = True
                if not c_on and loading and pos < m:
                    t = buf[pos]
                    pos += 1
                    r = np.uint64(residues[t])
                    cn_lo = p_lo + r
                    cn_hi = p_hi + (u1 if cn_lo < p_lo else u0)
                    cx_hi = cn_hi
                    cx_lo = cn_lo
                    c_st = u0
                    c = jump_c[t]
                    if c != NO_JUMP and a_fits:
                        coef = pow3[amax_c[t]] << (kk - np.uint64(amax_j[t]))
                        g_hi, g_lo = mul_add_64(a_lo, coef, bmax)
                        g_hi, g_lo = triple_plus_one(g_hi, g_lo)
                        if g_hi < max_hi or (g_hi == max_hi and g_lo < max_lo):
                            cx_hi, cx_lo = mul_add_64(a_lo, pow3[c], jump_d[t])
                            c_st = np.uint64(c)
                    cpk_hi = max_hi
                    cpk_lo = max_lo
                    c_set = False
                    c_on = True
                if not a_on and not b_on and not c_on:
                    break
                if a_on:
                    ax_hi, ax_lo = strip_twos(ax_hi, ax_lo)
                    if ax_hi < an_hi or (ax_hi == an_hi and ax_lo < an_lo):
                        a_on = False
                        tested += u1
                        odd_total += a_st
                        if a_set and (
                            apk_hi > max_hi
                            or (apk_hi == max_hi and apk_lo > max_lo)
                            or (
                                apk_hi == max_hi
                                and apk_lo == max_lo
                                and (an_hi < maxn_hi or (an_hi == maxn_hi and an_lo < maxn_lo))
                            )
                        ):
                            max_hi = apk_hi
                            max_lo = apk_lo
                            maxn_hi = an_hi
                            maxn_lo = an_lo
                    elif (
                        a_st >= step_bound or ax_hi > lim_hi or (ax_hi == lim_hi and ax_lo > lim_lo)
                    ):
                        a_on = False
                        tested += u1
                        deferred[n_def, 0] = an_hi
                        deferred[n_def, 1] = an_lo
                        n_def += 1
                        if n_def >= cap:
                            loading = False
                    else:
                        ax_hi, ax_lo = triple_plus_one(ax_hi, ax_lo)
                        a_st += u1
                        if ax_hi > apk_hi or (ax_hi == apk_hi and ax_lo >= apk_lo):
                            apk_hi = ax_hi
                            apk_lo = ax_lo
                            a_set = True
                if b_on:
                    bx_hi, bx_lo = strip_twos(bx_hi, bx_lo)
                    if bx_hi < bn_hi or (bx_hi == bn_hi and bx_lo < bn_lo):
                        b_on = False
                        tested += u1
                        odd_total += b_st
                        if b_set and (
                            bpk_hi > max_hi
                            or (bpk_hi == max_hi and bpk_lo > max_lo)
                            or (
                                bpk_hi == max_hi
                                and bpk_lo == max_lo
                                and (bn_hi < maxn_hi or (bn_hi == maxn_hi and bn_lo < maxn_lo))
                            )
                        ):
                            max_hi = bpk_hi
                            max_lo = bpk_lo
                            maxn_hi = bn_hi
                            maxn_lo = bn_lo
                    elif (
                        b_st >= step_bound or bx_hi > lim_hi or (bx_hi == lim_hi and bx_lo > lim_lo)
                    ):
                        b_on = False
                        tested += u1
                        deferred[n_def, 0] = bn_hi
                        deferred[n_def, 1] = bn_lo
                        n_def += 1
                        if n_def >= cap:
                            loading = False
                    else:
                        bx_hi, bx_lo = triple_plus_one(bx_hi, bx_lo)
                        b_st += u1
                        if bx_hi > bpk_hi or (bx_hi == bpk_hi and bx_lo >= bpk_lo):
                            bpk_hi = bx_hi
                            bpk_lo = bx_lo
                            b_set = True
                if c_on:
                    cx_hi, cx_lo = strip_twos(cx_hi, cx_lo)
                    if cx_hi < cn_hi or (cx_hi == cn_hi and cx_lo < cn_lo):
                        c_on = False
                        tested += u1
                        odd_total += c_st
                        if c_set and (
                            cpk_hi > max_hi
                            or (cpk_hi == max_hi and cpk_lo > max_lo)
                            or (
                                cpk_hi == max_hi
                                and cpk_lo == max_lo
                                and (cn_hi < maxn_hi or (cn_hi == maxn_hi and cn_lo < maxn_lo))
                            )
                        ):
                            max_hi = cpk_hi
                            max_lo = cpk_lo
                            maxn_hi = cn_hi
                            maxn_lo = cn_lo
                    elif (
                        c_st >= step_bound or cx_hi > lim_hi or (cx_hi == lim_hi and cx_lo > lim_lo)
                    ):
                        c_on = False
                        tested += u1
                        deferred[n_def, 0] = cn_hi
                        deferred[n_def, 1] = cn_lo
                        n_def += 1
                        if n_def >= cap:
                            loading = False
                    else:
                        cx_hi, cx_lo = triple_plus_one(cx_hi, cx_lo)
                        c_st += u1
                        if cx_hi > cpk_hi or (cx_hi == cpk_hi and cx_lo >= cpk_lo):
                            cpk_hi = cx_hi
                            cpk_lo = cx_lo
                            c_set = True
            if not loading and pos < m:
                status = _DEFER_FULL
                resume = np.int64(residues[buf[pos]]) + base_off - first_off
                break
        if status == _DEFER_FULL:
            break
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


def load_kernel_in_background() -> threading.Thread:
    """Load the kernel from numba's cache on a thread of its own, now.

    Numba's first call in a process spends about 0.12 s setting up its typing
    registries; started before the sieve is read, that overlaps with reading and
    hashing the sieve file on a second core (CLI start-up). A later call of the
    kernel waits for this one through numba's compiler lock, then reuses it.
    """
    thread = threading.Thread(target=_load_kernel, name="hailstone-kernel-load", daemon=True)
    thread.start()
    return thread


def _load_kernel() -> None:
    # Argument types exactly as in run_block (read-only aligned tables), so the
    # overload loaded here is the one run_block calls; an empty range does no work.
    def table(dtype) -> np.ndarray:
        a = np.zeros(1, dtype=dtype)
        a.setflags(write=False)
        return a

    try:
        _run_range(
            np.uint64(0), np.uint64(0), np.int64(0), table(np.uint32), table(np.uint8),
            table(np.uint64), table(np.uint8), table(np.uint8), np.uint64(0), 2,
            np.uint64(1), np.uint64(0), np.uint64(0), np.uint64(0), np.uint64(0), _KEPT9,
            _POW3, np.zeros((_DEFER_CAPACITY, 2), dtype=np.uint64),
            np.zeros(9, dtype=np.uint64), np.empty(_CHUNK, dtype=np.int64),
        )  # fmt: skip
    except Exception:  # noqa: BLE001 - only a head start: the first block loads it anyway
        logging.getLogger(__name__).debug("kernel pre-load failed", exc_info=True)


class JitKernel:
    """The kernel as numba compiles it in this process (or loads it from numba's cache)."""

    name = "jit"

    def bind(self, sieve: Sieve, kept9: np.ndarray, pow3: np.ndarray) -> KernelCall:
        """A call over `sieve`'s tables with the signature engine.cpu.KernelCall."""
        s = sieve

        def call(pos, length, step_bound, thr, max_n, deferred, out, buf) -> None:
            _run_range(
                np.uint64(pos >> 64), np.uint64(pos & _MASK64), np.int64(length), s.residues,
                s.jump_c, s.jump_d, s.amax_c, s.amax_j, np.uint64(s.bmax), s.k,
                np.uint64(step_bound), np.uint64(thr >> 64), np.uint64(thr & _MASK64),
                np.uint64(max_n >> 64), np.uint64(max_n & _MASK64), kept9, pow3, deferred,
                out, buf,
            )  # fmt: skip

        return call
