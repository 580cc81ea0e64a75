"""The fast CPU backend against the exact reference, and known facts."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import reference
from engine.cpu import CpuBackend
from engine.params import PRODUCTION, Params
from engine.sieve import load

# Roosendaal's path records: the maximum of a path record is always reached before
# its trajectory first falls below it, so the glide maximum equals the published one.
PATH_RECORDS = [
    (27, 9232),
    (77031, 21933016),
    (63728127, 966616035460),
    (319804831, 1414236446719942480),
    (1410123943, 7125885122794452160),
    (8528817511, 18144594937356598024),
    (12327829503, 20722398914405051728),
    (23035537407, 68838156641548227040),
    (1980976057694848447, 64024667322193133530165877294264738020),
]


@pytest.fixture(scope="module", params=[8, 16, 20])
def backend(request) -> CpuBackend:
    return CpuBackend(Params.custom(sieve_k=request.param))


def assert_same(backend: CpuBackend, lo: int, hi: int) -> None:
    fast = backend.run_block(lo, hi)
    exact = reference.run_block(backend.sieve, lo, hi, backend.params.exact_step_bound)
    assert fast == exact, (lo, hi)
    assert fast.leaf() == exact.leaf()


@pytest.mark.parametrize(("n", "peak"), PATH_RECORDS)
def test_path_record_maxima(n: int, peak: int) -> None:
    g = reference.glide(n, 10**6)
    assert g.fell and g.max_value == peak


@pytest.mark.parametrize(("n", "peak"), PATH_RECORDS[1:])
def test_singleton_reports_own_glide_maximum(n: int, peak: int) -> None:
    # k = 2 keeps every n = 3 (mod 4); PRODUCTION's sieve would skip some records.
    p = Params.custom(sieve_k=2)
    b = CpuBackend(p)
    ev = b.run_block(n, n + 1)
    if b.sieve.is_tested(n):
        assert (ev.tested, ev.max_value, ev.max_n) == (1, peak, n)
    else:
        assert (ev.tested, ev.max_value) == (0, 0)


def test_27_reaches_9232() -> None:
    b = CpuBackend(Params.custom(sieve_k=2))
    ev = b.run_block(27, 28)
    assert (ev.tested, ev.odd_steps, ev.max_value, ev.max_n) == (1, 37, 9232, 27)


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        (1, 20_000),
        (2**64 - 6_000, 2**64 + 6_000),  # the limb boundary
        (2**71, 2**71 + 2**15),
        (2**71 + 12_345, 2**71 + 54_321),  # unaligned
        (2**127 - 3_000, 2**127 + 3_000),  # the edge of the fast range
    ],
)
def test_fixed_ranges(backend: CpuBackend, lo: int, hi: int) -> None:
    assert_same(backend, lo, hi)


@pytest.mark.parametrize("m", range(3, 101))
def test_mersenne_neighbourhoods_take_the_overflow_path(backend: CpuBackend, m: int) -> None:
    n = 2**m - 1  # climbs to about 3^m: past 2^128 for m >= 81
    assert_same(backend, max(1, n - 300), n + 300)


def test_overflow_is_counted() -> None:
    b = CpuBackend(Params.custom(sieve_k=2))
    n = 2**100 - 1
    ev = b.run_block(n, n + 1)
    g = reference.glide(n, 10**6)
    assert g.overflowed and g.max_value >= 2**128
    assert (ev.tested, ev.overflows, ev.max_value, ev.odd_steps) == (1, 1, g.max_value, g.odd_steps)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    exponent=st.integers(min_value=2, max_value=126),
    offset=st.integers(min_value=0, max_value=2**20),
    length=st.integers(min_value=1, max_value=5_000),
)
def test_random_ranges(backend: CpuBackend, exponent: int, offset: int, length: int) -> None:
    lo = max(1, 2**exponent - offset)
    assert_same(backend, lo, lo + length)


def test_small_step_bounds_make_candidates_and_stay_exact() -> None:
    # With tiny bounds, ordinary numbers stand in for candidates: the fast path must
    # hand them over, and the exact path must report them, never count them as passed.
    p = Params.custom(sieve_k=8, step_bound=3, exact_step_bound=6)
    b = CpuBackend(p)
    lo, hi = 2**71, 2**71 + 4_000
    fast = b.run_block(lo, hi)
    exact = reference.run_block(b.sieve, lo, hi, p.exact_step_bound)
    assert fast == exact
    assert fast.candidates, "tiny bounds must produce candidates"
    for c in fast.candidates:
        assert not reference.glide(c, p.exact_step_bound).fell
    assert fast.tested == b.sieve.count_tested(lo, hi)


def test_candidates_are_rechecked_with_the_larger_bound() -> None:
    # step_bound small, exact bound generous: everything defers, nothing is a candidate.
    p = Params.custom(sieve_k=8, step_bound=1, exact_step_bound=10**5)
    b = CpuBackend(p)
    ev = b.run_block(2**71, 2**71 + 3_000)
    assert ev.candidates == ()
    assert ev == reference.run_block(b.sieve, 2**71, 2**71 + 3_000, p.exact_step_bound)


def test_production_block_matches_reference_on_a_slice() -> None:
    b = CpuBackend(PRODUCTION)
    lo = PRODUCTION.start + 5 * PRODUCTION.block_size + 777
    assert_same(b, lo, lo + 2**18)


def test_tested_count_is_predicted_by_the_sieve(backend: CpuBackend) -> None:
    lo = 2**71 + 1234
    ev = backend.run_block(lo, lo + 50_000)
    assert ev.tested == backend.sieve.count_tested(lo, lo + 50_000)


def test_production_unit_count_prediction_is_consistent() -> None:
    s = load(PRODUCTION.sieve_k)
    lo, hi = PRODUCTION.unit_range(3)
    per_block = sum(
        s.count_tested(b, b + PRODUCTION.block_size) for b in range(lo, hi, PRODUCTION.block_size)
    )
    assert s.count_tested(lo, hi) == per_block


def test_deferred_number_peak_does_not_leak_into_the_block_maximum() -> None:
    # A number handed to the exact path that turns out to be a candidate must leave
    # no trace of its partial trajectory in the maximum (found by the GPU host test).
    p = Params.custom(step_bound=5, exact_step_bound=10, sieve_k=8, block_bits=8)
    b = CpuBackend(p)
    lo = 2**71
    for i in range(8):
        assert_same(b, lo + 256 * i, lo + 256 * (i + 1))


# Golden vectors of protocol version 2 (docs/PROTOCOL.md §3): what a second
# implementation must reproduce for the production sieve (k = 31).
GOLDEN_2_20 = (3514, 107704, 2685594504468343348356163288, 2**71 + 665215, 0,
               "bc7a883e071ed359b0dcf5c8834bab51021e032cc4b00064c4706128553376b5")  # fmt: skip
GOLDEN_2_28 = (915988, 28523823, 229170731047990217445726621412, 2**71 + 257403391, 0,
               "dcce8f56d8aafaace9e55d30ca73706bf2f94d81b36f465521b9ab8dfc30bdfd")  # fmt: skip


def _summary(ev) -> tuple:
    return (ev.tested, ev.odd_steps, ev.max_value, ev.max_n, ev.overflows, ev.leaf().hex())


def test_production_golden_vectors() -> None:
    s = load(PRODUCTION.sieve_k)
    assert (s.k, len(s)) == (31, 13187416)
    lo = 2**71
    assert s.count_tested(lo, lo + 2**40) == 3751086323  # the first production unit
    exact = reference.run_block(s, lo, lo + 2**20, PRODUCTION.exact_step_bound)
    assert _summary(exact) == GOLDEN_2_20
    b = CpuBackend(PRODUCTION)
    assert _summary(b.run_block(lo, lo + 2**20)) == GOLDEN_2_20
    assert _summary(b.run_block(lo, lo + 2**28)) == GOLDEN_2_28


def test_kernel_preload_loads_the_overload_run_block_uses() -> None:
    # In a fresh interpreter: after the background pre-load, a block adds no second
    # signature (the pre-load typed its arguments exactly as run_block does).
    import subprocess
    import sys

    code = (
        "from engine import cpu, cpu_kernel\n"
        "from engine.params import Params\n"
        "cpu_kernel.load_kernel_in_background().join()\n"
        "sigs = cpu_kernel._run_range.signatures\n"
        "assert len(sigs) == 1, sigs\n"
        "b = cpu.CpuBackend(Params.custom(sieve_k=8), kernel=cpu.select_kernel('jit'))\n"
        "b.run_block(2**71, 2**71 + 5000)\n"
        "assert len(cpu_kernel._run_range.signatures) == 1, cpu_kernel._run_range.signatures\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
