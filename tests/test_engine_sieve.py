"""The sieve: survivors, counting, the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from engine import sieve
from engine.params import MOD9_KEPT

# The transports of rule P as identities T^t(A*q + B) = C*q + D (docs/PROTOCOL.md §3).
TRANSPORTS = [
    (2, 1, 3, 2, 1),
    (8, 3, 9, 4, 3),
    (64, 7, 81, 10, 6),
    (128, 95, 243, 182, 7),
]  # A, B, C, D, t


def shortcut(x: int) -> int:
    return (3 * x + 1) // 2 if x % 2 else x // 2


def trajectory(x: int, steps: int) -> tuple[list[int], list[int]]:
    """T^j(x) and the odd steps among the first j, for j = 0..steps."""
    xs, cs = [x], [0]
    for _ in range(steps):
        cs.append(cs[-1] + x % 2)
        x = shortcut(x)
        xs.append(x)
    return xs, cs


def predecessors(v: int, odd_budget: int):
    """Every (d, t, P) that words of transports reach from v, using d <= odd_budget."""
    out, todo = [], [(0, 0, v)]
    while todo:
        d, t, x = todo.pop()
        for a, b, c, dd, tt in TRANSPORTS:
            k3 = {3: 1, 9: 2, 81: 4, 243: 5}[c]
            if d + k3 <= odd_budget and x % c == dd:
                p = a * ((x - dd) // c) + b
                out.append((d + k3, t + tt, p))
                todo.append((d + k3, t + tt, p))
    return out


def slow_survivors(k: int) -> list[int]:
    """The sieve of PROTOCOL §3 from its four rules, with plain Python integers.

    Written apart from engine/sieve.py (no tables, no search windows): rule J
    compares every residue of every parity, rule P and H enumerate the
    transport words outright.
    """
    lowest_with = {}  # (odd steps, T^k(x)) -> smallest x < 2^k with them
    for x in range(1 << k):
        xs, cs = trajectory(x, k)
        lowest_with.setdefault((cs[k], xs[k]), x)
    out = []
    for r in range(3, 1 << k, 4):
        xs, cs = trajectory(r, k)
        # D: the class falls below r
        if any(3 ** cs[j] < 2**j and xs[j] < r for j in range(1, k + 1)):
            continue
        # J: a smaller residue has the same value after k steps, same odd steps
        if lowest_with[(cs[k], xs[k])] < r:
            continue
        # P: a smaller predecessor of T^j(n), lifted coefficient at most 2^k
        if any(
            p < r and 3 ** (cs[j] - d) * 2**t <= 2**j
            for j in range(1, k + 1)
            for d, t, p in predecessors(xs[j], cs[j])
        ):
            continue
        # H: odd x = T^j(r), then a odd steps and two even ones within k steps:
        # m = (x - 1)/2 (lift 3^c 2^(k-j-1) h + m) and its predecessors
        dead = False
        for j in range(k):
            a = 0
            while j + a < k and xs[j + a] % 2:
                a += 1
            if a == 0 or j + a + 2 > k or xs[j + a + 1] % 2:
                continue
            m = (xs[j] - 1) // 2
            words = [(0, 0, m), *predecessors(m, cs[j])]
            if any(p < r and 3 ** (cs[j] - d) * 2**t <= 2 ** (j + 1) for d, t, p in words):
                dead = True
                break
        if not dead:
            out.append(r)
    return out


@pytest.mark.parametrize("k", [2, 4, 8, 10, 12, 14])
def test_survivors_match_slow_generator(k: int) -> None:
    assert sieve.build_residues(k).tolist() == sieve.load(k).residues.tolist()
    assert sieve.load(k).residues.tolist() == slow_survivors(k)


def test_transport_identities() -> None:
    for a, b, c, d, t in TRANSPORTS:
        for q in [0, 1, 2, 3, 10, 2**70 + 1]:
            xs, cs = trajectory(a * q + b, t)
            assert xs[t] == c * q + d
            assert 3 ** cs[t] == c  # d of the t steps are odd


def meets_smaller_number(n: int, steps: int, depth: int) -> bool:
    """True if some m < n has a trajectory that meets n's first `steps` values
    within `depth` steps: a plain search backwards through T (no sieve rule)."""
    frontier = set(trajectory(n, steps)[0])
    if min(frontier) < n:
        return True
    for _ in range(depth):
        back = set()
        for v in frontier:
            back.add(2 * v)
            if v % 3 == 2:
                back.add((2 * v - 1) // 3)
        if min(back) < n:
            return True
        frontier = back
    return False


@pytest.mark.parametrize("h", [0, 1, 6, 2**40 + 5])
def test_every_sieved_class_meets_a_smaller_number(h: int) -> None:
    # Soundness of D, J, P and H, checked without them: for each residue the
    # sieve drops, n = h*2^k + r meets the trajectory of a smaller number.
    k = 10
    kept = set(sieve.load(k).residues.tolist())
    for r in range(3, 1 << k, 4):
        if r not in kept:
            assert meets_smaller_number(h * (1 << k) + r, k, 2 * k), r


def test_known_survivor_counts() -> None:
    # Measured, and equal to Barina's h2esieve maps at k = 24 and 28 (PROTOCOL §3).
    assert len(sieve.load(16)) == 1363
    assert len(sieve.load(20)) == 15873
    assert len(sieve.load(24)) == 173181


@pytest.mark.parametrize("k", [8, 12])
def test_count_tested_matches_enumeration(k: int) -> None:
    s = sieve.load(k)
    for lo, hi in [(1, 5000), (2**71 - 777, 2**71 + 3333), (10**30, 10**30 + 9999)]:
        expected = sum(
            1
            for n in range(lo, hi)
            if n % 4 == 3 and n % 9 in MOD9_KEPT and s.contains(n % (1 << k))
        )
        assert s.count_tested(lo, hi) == expected
        assert len(list(s.tested_numbers(lo, hi))) == expected


def test_mod9_rule_is_sound_for_skipped_numbers() -> None:
    # Every skipped residue class is reached from a smaller number, as the docs prove.
    for n in range(3, 20_000, 4):
        if n % 3 == 2:
            m = (2 * n - 1) // 3
            assert m < n and m % 2 == 1 and (3 * m + 1) // 2 == n
        elif n % 9 == 4:
            m = (8 * n - 5) // 9
            x = (3 * m + 1) // 2  # odd
            assert m < n and m % 2 == 1 and x % 2 == 1 and (3 * x + 1) // 2 == 2 * n


def test_jump_tables_agree_with_direct_iteration() -> None:
    k = 12
    s = sieve.load(k)
    for i in range(0, len(s), 7):
        r = int(s.residues[i])
        for a in (0, 1, 5, 2**40 + 3):
            n = a * 2**k + r
            x, c = n, 0
            for _ in range(k):
                if x % 2:
                    x, c = (3 * x + 1) // 2, c + 1
                else:
                    x //= 2
            assert int(s.jump_c[i]) != sieve.NO_JUMP
            assert c == int(s.jump_c[i])
            assert x == a * 3**c + int(s.jump_d[i])


def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path))
    sieve.forget_loaded()
    try:
        good = sieve.load(14).residues.copy()
        path = sieve._cache_path(14)
        assert path.exists()
        blob = bytearray(path.read_bytes())
        blob[-1] ^= 0x40  # flip a bit in the tables
        path.write_bytes(bytes(blob))
        sieve.forget_loaded()
        assert sieve._read_cache(path, 14) is None  # the damage is detected...
        again = sieve.load(14).residues
        assert np.array_equal(again, good)  # ...and the sieve rebuilt, not trusted
        assert sieve._read_cache(path, 14) is not None  # and the cache repaired
        path.write_bytes(b"garbage")
        sieve.forget_loaded()
        assert np.array_equal(sieve.load(14).residues, good)
    finally:
        sieve.forget_loaded()


def test_cache_round_trip_keeps_every_table(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path))
    sieve.forget_loaded()
    try:
        built = sieve.load(16)  # built from scratch and written
        cached = sieve._read_cache(sieve._cache_path(16), 16)
        assert cached is not None and cached.bmax == built.bmax and cached.k == 16
        for name in ("residues", "mod9_counts", "jump_c", "jump_d", "amax_c", "amax_j"):
            a, b = getattr(built, name), getattr(cached, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
            # as the kernel was compiled for: read-only, aligned (numba types both)
            assert not b.flags.writeable and b.flags.aligned, name
        # any header field changed (here: bmax) fails the digest
        path = sieve._cache_path(16)
        blob = bytearray(path.read_bytes())
        blob[16 + 8 + 7] ^= 1
        path.write_bytes(bytes(blob))
        assert sieve._read_cache(path, 16) is None
        assert sieve._read_cache(path, 15) is None  # and a file for another k never loads
    finally:
        sieve.forget_loaded()


def test_the_part_digests_check_the_file_on_two_threads(tmp_path, monkeypatch) -> None:
    from engine import sieve_file

    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(sieve_file, "PART_SIZE", 4096)  # several parts even at k = 16
    sieve.forget_loaded()
    try:
        sieve.load(16)  # built: the file and its part digests are written
        path = sieve._cache_path(16)
        parts = sieve_file.parts_path(path)
        assert parts.exists()

        def check() -> tuple[bool, bool]:
            s = sieve._read_cache(path, 16, confirmed=False)
            assert s is not None
            return s.check.ok(), s.check.used_parts

        assert check() == (True, True)
        parts.unlink()  # an older cache: checked whole, and the parts written then
        assert check() == (True, False)
        assert check() == (True, True)
        blob = bytearray(parts.read_bytes())
        blob[40] ^= 1  # damaged part digests are not used...
        parts.write_bytes(bytes(blob))
        assert check() == (True, False)  # ...the whole file decides, and they are rewritten
        assert check() == (True, True)
        other = sieve_file.parts_path(sieve._cache_path(14))
        sieve.load(14)
        parts.write_bytes(other.read_bytes())  # another file's parts: not used
        assert check() == (True, False)
        data = bytearray(path.read_bytes())
        data[-5000] ^= 0x08  # a damaged table with intact part digests still fails
        path.write_bytes(bytes(data))
        assert check() == (False, True)
    finally:
        sieve.forget_loaded()
