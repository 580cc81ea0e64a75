"""The sieve: survivors, counting, the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from engine import sieve
from engine.params import MOD9_KEPT


def brute_force_survivors(k: int) -> list[int]:
    out = []
    for r in range(3, 1 << k, 4):
        d, c, dead = r, 0, False
        for j in range(1, k + 1):
            if d % 2:
                d, c = (3 * d + 1) // 2, c + 1
            else:
                d //= 2
            if 3**c < 2**j and d < r:
                dead = True
                break
        if not dead:
            out.append(r)
    return out


@pytest.mark.parametrize("k", [2, 4, 8, 12, 14])
def test_survivors_match_brute_force(k: int) -> None:
    assert sieve.load(k).residues.tolist() == brute_force_survivors(k)


def test_known_survivor_counts() -> None:
    # Counts for 2^k sieves as published (and as the C baseline prints).
    assert len(sieve.load(20)) == 27328
    assert len(sieve.load(24)) == 286581


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
        path = tmp_path / "sieve-k14.bin"
        assert path.exists()
        blob = bytearray(path.read_bytes())
        blob[-1] ^= 0x40  # flip a bit in the bitmap
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
