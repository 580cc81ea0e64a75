"""Building the sieve's survivor set and jump tables with numba (engine/sieve.py
holds the rules' statement and the cache; only a build, once per k, needs this).

The rules D, J, P and H are stated and proved in docs/PROTOCOL.md §3.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.sieve import NO_JUMP, Progress

# The four transports of the predecessor rule (docs/PROTOCOL.md §3, rule P): for
# every q >= 0, T^t(A*q + B) = 3^d*q + D. A value V = D (mod 3^d) thus has the
# predecessor P = (2^t*V - H)/3^d with H = 2^t*D - 3^d*B, reached t steps earlier,
# d of them odd. Rows: d, t, D, H.
_TRANSPORTS = np.array(
    [
        [1, 1, 2, 1],  # T(2q + 1) = 3q + 2
        [2, 3, 4, 5],  # T^3(8q + 3) = 9q + 4
        [4, 6, 10, 73],  # T^6(64q + 7) = 81q + 10
        [5, 7, 182, 211],  # T^7(128q + 95) = 243q + 182
    ],
    dtype=np.int64,
)
_POW3_64 = np.array([3**i for i in range(41)], dtype=np.uint64)


@njit(cache=True)
def _lower_predecessor(
    v, c, s, r, allow_empty, transports, pow3, stack_v, stack_d, stack_t
):  # pragma: no cover - compiled
    """Rules P and H at one prefix: v is the low part of a value whose lift is
    3^c * 2^(k-s) * h + v. True if some word of transports (total d <= c odd
    steps, t steps; the empty word only if allow_empty) gives a predecessor
    P < r whose lifted coefficient 3^(c-d) * 2^(k-s+t) is at most 2^k.

    Depth-first over words: each push adds d >= 1 (so depth <= c) and at most
    two transports match one value (2 mod 3 and 182 mod 243; 4 mod 9 and
    10 mod 81 exclude them and each other), so the stack holds <= c + 2 <= k + 2
    entries. Values stay below 3^k * 2^7 < 2^64 for k <= 32."""
    stack_v[0] = v
    stack_d[0] = 0
    stack_t[0] = 0
    sp = 1
    while sp > 0:
        sp -= 1
        x = stack_v[sp]
        d = stack_d[sp]
        t = stack_t[sp]
        if (
            (d > 0 or allow_empty)
            and x < r
            and t <= s
            and pow3[c - d] <= (np.uint64(1) << np.uint64(s - t))
        ):
            return True
        for i in range(transports.shape[0]):
            dd = transports[i, 0]
            if d + dd > c:
                continue
            m3 = pow3[dd]
            if x % m3 != np.uint64(transports[i, 2]):
                continue
            tt = transports[i, 1]
            stack_v[sp] = ((x << np.uint64(tt)) - np.uint64(transports[i, 3])) // m3
            stack_d[sp] = d + dd
            stack_t[sp] = t + tt
            sp += 1
    return False


@njit(cache=True, parallel=True)
def _local_rules(k: int, keep: np.ndarray, first: int) -> None:  # pragma: no cover
    """Rules D, P and H for r = 4i + 3, first <= i < first + len(keep) (compiled).

    keep[i - first] becomes True when r survives all three.
    """
    transports = _TRANSPORTS
    pow3 = _POW3_64
    for t in prange(keep.shape[0]):
        r = np.uint64(4) * np.uint64(first + t) + np.uint64(3)
        xs = np.empty(k + 1, dtype=np.uint64)
        cs = np.empty(k + 1, dtype=np.int64)
        d = r
        c = 0
        dead = False
        for j in range(1, k + 1):
            if d & np.uint64(1):
                d = (np.uint64(3) * d + np.uint64(1)) >> np.uint64(1)
                c += 1
            else:
                d >>= np.uint64(1)
            xs[j] = d
            cs[j] = c
            # rule D: the class falls below its start after j steps
            if pow3[c] < (np.uint64(1) << np.uint64(j)) and d < r:
                dead = True
                break
        if not dead:
            stack_v = np.empty(4 * k + 8, dtype=np.uint64)
            stack_d = np.empty(4 * k + 8, dtype=np.int64)
            stack_t = np.empty(4 * k + 8, dtype=np.int64)
            for j in range(1, k + 1):
                if _lower_predecessor(
                    xs[j], cs[j], j, r, False, transports, pow3, stack_v, stack_d, stack_t
                ):
                    dead = True
                    break
        if not dead:
            # rule H: an odd x = T^j(r) whose next steps are a odd ones, then two
            # even ones (all within the k known steps) meets m = (x - 1)/2 after
            # a + 1 steps of m; m's lift is 3^c * 2^(k-j-1) * h + m.
            xs[0] = r
            cs[0] = 0
            for j in range(k - 2):
                x = xs[j]
                if not x & np.uint64(1):
                    continue
                a = 1
                while j + a < k and xs[j + a] & np.uint64(1):
                    a += 1
                if j + a + 2 > k or xs[j + a + 1] & np.uint64(1):
                    continue
                m = (x - np.uint64(1)) >> np.uint64(1)
                if _lower_predecessor(
                    m, cs[j], j + 1, r, True, transports, pow3, stack_v, stack_d, stack_t
                ):
                    dead = True
                    break
        keep[t] = not dead


@njit(cache=True)
def _step_table(m: int):  # pragma: no cover - compiled
    """T^m on every residue x < 2^m: odd steps c[x] and T^m(x) = d[x]."""
    size = 1 << m
    c_out = np.empty(size, dtype=np.uint8)
    d_out = np.empty(size, dtype=np.uint64)
    for x0 in range(size):
        x = np.uint64(x0)
        c = 0
        for _ in range(m):
            if x & np.uint64(1):
                x = (np.uint64(3) * x + np.uint64(1)) >> np.uint64(1)
                c += 1
            else:
                x >>= np.uint64(1)
        c_out[x0] = c
        d_out[x0] = x
    return c_out, d_out


@njit(cache=True, parallel=True)
def _join_rule(
    k: int, residues: np.ndarray, alive: np.ndarray, lo_c, lo_d, hi_c, hi_d
) -> None:  # pragma: no cover
    """Rule J: clear alive[t] when some r' < r = residues[t] has the same
    odd-step count c and the same T^k(r') = T^k(r) (docs/PROTOCOL.md §3).

    Only r' > r - (s_max - s)/3^c can qualify, where T^k(x) = (3^c*x + s)/2^k
    and s <= s_max = 2^(k-c) * (3^c - 2^c); each is checked with two table
    lookups (lo_*: T^m1 on m1 = k // 2 bits, hi_*: T^m2 on the other m2 bits).
    """
    pow3 = _POW3_64
    m1 = k // 2
    m2 = k - m1
    mask1 = (np.uint64(1) << np.uint64(m1)) - np.uint64(1)
    mask2 = (np.uint64(1) << np.uint64(m2)) - np.uint64(1)
    for t in prange(residues.shape[0]):
        r = np.uint64(residues[t])
        x = r
        c = 0
        s = np.uint64(0)
        for j in range(k):
            if x & np.uint64(1):
                x = (np.uint64(3) * x + np.uint64(1)) >> np.uint64(1)
                s = np.uint64(3) * s + (np.uint64(1) << np.uint64(j))
                c += 1
            else:
                x >>= np.uint64(1)
        s_max = (pow3[c] - (np.uint64(1) << np.uint64(c))) << np.uint64(k - c)
        width = (s_max - s) // pow3[c]
        lowest = r - width if width < r else np.uint64(0)
        y = r
        while y > lowest:
            y -= np.uint64(1)
            a = y & mask1
            v = pow3[lo_c[a]] * (y >> np.uint64(m1)) + lo_d[a]
            b = v & mask2
            if lo_c[a] + hi_c[b] == c and pow3[hi_c[b]] * (v >> np.uint64(m2)) + hi_d[b] == x:
                alive[t] = False
                break


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


# Generation runs in this many pieces per rule, with a progress report after each.
_PIECES = 64


def build_residues(k: int, progress: Progress | None = None) -> np.ndarray:
    """The survivors r < 2**k, increasing (uint32), computed from scratch.

    Works in pieces, so memory stays near the size of the result (k = 32: 0.1 GiB
    of survivors); `progress(fraction)` is called after each with the share done.
    """
    if not 2 <= k <= 32:
        raise ValueError("sieve k must be in 2..32")
    n_classes = 1 << (k - 2)
    cuts = np.linspace(0, n_classes, _PIECES + 1).astype(np.int64)
    found = []
    # rules D, P and H take about 2/3 of the time at k = 28..32, rule J the rest
    for p in range(_PIECES):
        first, stop = int(cuts[p]), int(cuts[p + 1])
        keep = np.zeros(stop - first, dtype=np.bool_)
        _local_rules(k, keep, first)
        found.append(((np.flatnonzero(keep) + first) * 4 + 3).astype(np.uint32))
        if progress is not None:
            progress(0.65 * (p + 1) / _PIECES)
    residues = np.concatenate(found)
    del found
    alive = np.ones(len(residues), dtype=np.bool_)
    lo_c, lo_d = _step_table(k // 2)
    hi_c, hi_d = _step_table(k - k // 2)
    cuts = np.linspace(0, len(residues), _PIECES + 1).astype(np.int64)
    for p in range(_PIECES):
        a, b = int(cuts[p]), int(cuts[p + 1])
        _join_rule(k, residues[a:b], alive[a:b], lo_c, lo_d, hi_c, hi_d)
        if progress is not None:
            progress(0.65 + 0.35 * (p + 1) / _PIECES)
    return residues[alive]


def build_jumps(residues: np.ndarray, k: int):
    """Per survivor (c, d, amax_c, amax_j, bmax): see `_build_jumps`."""
    return _build_jumps(residues, k)
