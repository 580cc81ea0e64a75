"""The GPU kernel's arithmetic without a GPU, and the GPU backend's CPU-side parts.

engine/collatz_kernel.cu is compiled with g++ as plain C++ (through
engine/gpu_host_shim.h), loaded with ctypes and driven exactly as GpuBackend
drives it (same descriptors, geometry helpers and merge); every block must
equal engine.reference.run_block. The CPU-side tests (probe, errors, tuning
cache, duty cycle) run everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import gpu, reference
from engine.evidence import merkle_root
from engine.job import BackendUnavailable, make_backend
from engine.params import Params
from engine.sieve import load as load_sieve

ROOT = Path(__file__).resolve().parents[1]
KERNEL = ROOT / "engine" / "collatz_kernel.cu"
SHIM = ROOT / "engine" / "gpu_host_shim.h"
CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")

_u64p = ctypes.POINTER(ctypes.c_uint64)
_u32p = ctypes.POINTER(ctypes.c_uint32)
_u8p = ctypes.POINTER(ctypes.c_uint8)
_u64, _u32 = ctypes.c_uint64, ctypes.c_uint32


# The kernel's two builds of u128: the compiler's unsigned __int128 (Linux), and
# two 64-bit limbs (-DHS_PORTABLE_U128, for NVRTC on Windows). Both must agree
# with the reference, so every host test runs on each.
U128_BUILDS = {"int128": [], "two-limb": ["-DHS_PORTABLE_U128"]}


@pytest.fixture(scope="module", params=sorted(U128_BUILDS))
def host_lib(request, tmp_path_factory):
    if CXX is None:
        pytest.skip(
            "no C++ compiler (g++, c++ or clang++) on PATH to build the kernel for the host"
        )
    out = tmp_path_factory.mktemp("kernel") / f"libhs_host_{request.param}.so"
    cmd = [
        CXX, "-O2", "-std=c++17", "-DHAILSTONE_HOST_BUILD", *U128_BUILDS[request.param],
        "-include", str(SHIM), "-x", "c++", "-shared", "-fPIC", "-pthread", str(KERNEL),
        "-o", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(out))
    fn = lib.hs_host_launch
    fn.restype = ctypes.c_int
    fn.argtypes = [
        _u32p, _u8p, _u64p, _u8p, _u8p, _u64p,
        _u64, _u32, _u64, _u32, _u32, _u32,
        _u64p, _u32, _u32, _u32, _u64p, _u64p, _u64p, _u64, _u32, _u64p,
    ]  # fmt: skip
    return lib


def _ptr(a: np.ndarray, typ):
    return a.ctypes.data_as(typ)


class HostRunner:
    """Runs launches through the host build the way GpuBackend runs them on a GPU."""

    def __init__(self, lib, params: Params, tpb: int = 32, reduce_threads: int = 8,
                 defer_cap: int = gpu.DEFER_CAPACITY) -> None:  # fmt: skip
        self.lib = lib
        self.params = params
        self.sieve = load_sieve(params.sieve_k)
        self.tpb = tpb
        self.reduce_threads = reduce_threads
        self.defer_cap = defer_cap
        s = self.sieve
        # Keep contiguous copies alive for the duration of the calls.
        self.tables = [np.ascontiguousarray(a) for a in
                       (s.residues, s.jump_c, s.jump_d, s.amax_c, s.amax_j, gpu._POW3)]  # fmt: skip
        self.const = gpu.kernel_constants(params, s)
        self.reruns = 0
        self.jumps = 0

    def launch(self, ranges, defer_cap: int):
        desc = gpu.block_descriptors(self.sieve, ranges)
        gx = gpu.grid_x(int(desc[:, 3].max()), self.tpb)
        e = len(ranges)
        records = np.zeros(e * gx * self.tpb * gpu.RECORD_WORDS, dtype=np.uint64)
        deferred = np.zeros((defer_cap, gpu.DEFER_WORDS), dtype=np.uint64)
        count = np.zeros(1, dtype=np.uint64)
        out = np.zeros((e, gpu.RECORD_WORDS), dtype=np.uint64)
        res, jc, jd, ac, aj, p3 = self.tables
        c = self.const
        rc = self.lib.hs_host_launch(
            _ptr(res, _u32p), _ptr(jc, _u8p), _ptr(jd, _u64p), _ptr(ac, _u8p), _ptr(aj, _u8p),
            _ptr(p3, _u64p), c["survivors"], c["k"], c["bmax"], c["step_bound"],
            c["pow2k_mod9"], c["kept9_mask"], _ptr(desc, _u64p), e, gx, self.tpb,
            _ptr(records, _u64p), _ptr(deferred, _u64p), _ptr(count, _u64p), defer_cap,
            self.reduce_threads, _ptr(out, _u64p),
        )  # fmt: skip
        assert rc == 0
        self.jumps += int(out[:, 7].sum())
        stored = min(int(count[0]), defer_cap)
        return out, deferred[:stored], int(count[0])

    def run_blocks(self, ranges):
        out, deferred, count = self.launch(ranges, self.defer_cap)
        evidence, rerun = gpu.merge_launch(self.params, ranges, out, deferred)
        if rerun:
            self.reruns += 1
            sub = [ranges[j] for j in rerun]
            out, deferred, _ = self.launch(sub, max(count, 1))
            again, still = gpu.merge_launch(self.params, sub, out, deferred)
            assert not still
            for j, ev in zip(rerun, again, strict=True):
                evidence[j] = ev
        return evidence


def _check(runner: HostRunner, ranges) -> list:
    got = runner.run_blocks(ranges)
    want = [reference.run_block(runner.sieve, lo, hi, runner.params.exact_step_bound)
            for lo, hi in ranges]  # fmt: skip
    for g, w in zip(got, want, strict=True):
        assert g == w, (g, w)
    assert merkle_root([g.leaf() for g in got]) == merkle_root([w.leaf() for w in want])
    return got


def _split(lo: int, hi: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, hi)) for a in range(lo, hi, size)]


@pytest.mark.parametrize("k", [8, 16, 20])
def test_small_n_from_one(host_lib, k):
    runner = HostRunner(host_lib, Params.custom(sieve_k=k))
    got = _check(runner, _split(1, 1 << 14, 1 << 11))
    assert sum(b.tested for b in got) == runner.sieve.count_tested(1, 1 << 14)


@pytest.mark.parametrize("k", [8, 16, 20])
def test_across_the_64_bit_limb(host_lib, k):
    runner = HostRunner(host_lib, Params.custom(sieve_k=k))
    edge = 1 << 64
    got = _check(runner, _split(edge - (1 << 13), edge + (1 << 13), 1 << 12))
    assert got[1].hi == edge and got[2].lo == edge


@pytest.mark.parametrize("k", [8, 16, 20])
def test_at_2_to_71(host_lib, k):
    runner = HostRunner(host_lib, Params.custom(sieve_k=k))
    start = 1 << 71
    size = 1 << 15 if k < 20 else 1 << 20
    ranges = _split(start, start + 2 * size, size)
    got = _check(runner, ranges)
    assert all(b.tested > 0 for b in got)
    assert runner.jumps > 0  # the k-step jump was taken, and changed nothing


def test_production_sieve_against_the_cpu_backend(host_lib):
    # The production tables (k = 31, blocks of 2^28 = an eighth of a period): the kernel's
    # leaves equal the CPU backend's on whole production blocks, and the reference on
    # a smaller one.
    from engine.cpu import CpuBackend
    from engine.params import PRODUCTION

    runner = HostRunner(host_lib, PRODUCTION)
    start, size = 1 << 71, PRODUCTION.block_size
    _check(runner, [(start, start + (1 << 18))])
    ranges = _split(start + 3 * size, start + 5 * size, size)  # the period's end and the next
    got = runner.run_blocks(ranges)
    assert got == CpuBackend(PRODUCTION).run_blocks(ranges, 1)
    assert runner.jumps > 0


def test_blocks_spanning_several_sieve_periods(host_lib):
    runner = HostRunner(host_lib, Params.custom(sieve_k=8))
    start = (1 << 71) - 700  # not aligned to 2**8: partial first and last periods
    _check(runner, _split(start, start + 3000, 1500))


@pytest.mark.parametrize("k", [8, 16])
def test_mersenne_numbers_overflow_path(host_lib, k):
    runner = HostRunner(host_lib, Params.custom(sieve_k=k))
    ranges = [(max(1, (1 << m) - 64), (1 << m) + 64) for m in range(2, 101)]
    got = _check(runner, ranges)
    assert sum(b.overflows for b in got) > 0  # 2**m - 1 near m = 100 passes 2**128


@pytest.mark.parametrize("k", [8, 16, 20])
def test_small_step_bounds_defer_and_find_candidates(host_lib, k):
    params = Params.custom(sieve_k=k, step_bound=5, exact_step_bound=10)
    runner = HostRunner(host_lib, params)
    start = 1 << 71
    got = _check(runner, _split(start, start + (1 << 13), 1 << 11) + _split(1, 1 << 12, 1 << 10))
    assert sum(len(b.candidates) for b in got) > 0


def test_full_deferred_buffer_reruns_the_block(host_lib):
    params = Params.custom(sieve_k=8, step_bound=5, exact_step_bound=10)
    runner = HostRunner(host_lib, params, defer_cap=3)
    start = 1 << 71
    _check(runner, _split(start, start + (1 << 12), 1 << 10))
    assert runner.reruns > 0


def test_geometry_does_not_change_results(host_lib):
    params = Params.custom(sieve_k=16)
    ranges = _split(1 << 71, (1 << 71) + (1 << 16), 1 << 14)
    a = HostRunner(host_lib, params, tpb=32, reduce_threads=1).run_blocks(ranges)
    b = HostRunner(host_lib, params, tpb=64, reduce_threads=16).run_blocks(ranges)
    assert a == b


def test_bad_geometry_is_refused(host_lib):
    runner = HostRunner(host_lib, Params.custom(sieve_k=8), reduce_threads=3)
    with pytest.raises(AssertionError):
        runner.launch([(1 << 71, (1 << 71) + 256)], 16)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("build", sorted(U128_BUILDS))
def test_nvcc_compiles_the_kernel_to_ptx(tmp_path, build):
    out = tmp_path / "collatz_kernel.ptx"
    proc = subprocess.run(
        ["nvcc", "-std=c++17", "-arch=sm_80", *U128_BUILDS[build], "--ptx", str(KERNEL),
         "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ptx = out.read_text()
    for name in gpu.KERNEL_NAMES:
        assert f".entry {name}(" in ptx


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # no CuPy, or CuPy without an NVRTC library
        pytest.skip(f"NVRTC is not available ({exc}); scripts/test.sh installs it on Linux")
    return nvrtc


@pytest.mark.parametrize("options", gpu.COMPILE_OPTIONS, ids=["int128", "two-limb"])
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_nvrtc_compiles_the_kernel_as_cupy_does(arch, options):
    """CuPy's RawModule compiles with NVRTC, which differs from nvcc (no system
    headers; 128-bit integers only on Linux with --device-int128): compile the
    real source with each of the backend's option sets on the NVRTC that CuPy
    loads. The two-limb set has no --device-int128, as on Windows."""
    nvrtc = _nvrtc()
    prog = nvrtc.createProgram(KERNEL.read_text(), KERNEL.name, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [*options, f"-arch={arch}"])
        except nvrtc.NVRTCError as exc:
            pytest.fail(f"NVRTC rejected the kernel ({exc}):\n{nvrtc.getProgramLog(prog)}")
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    for name in gpu.KERNEL_NAMES:
        assert f".entry {name}(" in ptx


def test_check_compile_reports_the_option_set_that_compiled():
    _nvrtc()
    check = gpu.check_compile()
    assert check.ok, check.detail
    assert check.options == gpu.COMPILE_OPTIONS[0] and check.detail.startswith("NVRTC ")


def test_kernel_source_keeps_constants_in_step_with_python():
    src = KERNEL.read_text()
    assert f"#define HS_REDUCE_THREADS {gpu.REDUCE_THREADS}" in src
    assert f"#define HS_RECORD_WORDS {gpu.RECORD_WORDS}" in src
    assert f"#define HS_DEFER_WORDS {gpu.DEFER_WORDS}" in src
    device_part = src.split("#ifdef HAILSTONE_HOST_BUILD")[0]
    assert not [ln for ln in device_part.splitlines() if ln.startswith("#include")]  # NVRTC


# ------------------------------------------------------------- CPU-side parts


def test_probe_never_raises_and_explains(caplog):
    with caplog.at_level(logging.INFO, logger="engine.gpu"):
        status = gpu.probe()
        gpu.probe()
    if status.available:
        pytest.skip("a GPU is available here; tests/test_gpu.py covers it")
    assert status.reason
    assert status.devices == ()
    assert gpu.available_devices() == []
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert "CuPy" in status.reason
    with pytest.raises(gpu.GpuUnavailable) as info:
        gpu.GpuBackend(Params.custom())
    assert info.value.reason == status.reason
    with pytest.raises(BackendUnavailable) as refused:
        make_backend("gpu", Params.custom(), devices=())
    assert str(refused.value) == f"no GPU: {status.reason}"
    with pytest.raises(gpu.GpuUnavailable):
        gpu.autotune(0, Params.custom(), seconds=1.0)
    with pytest.raises(gpu.GpuUnavailable):
        gpu.ensure_tuned(0)


def test_no_gpu_is_logged_once(caplog):
    gpu._logged_reasons.clear()
    with caplog.at_level(logging.INFO, logger="engine.gpu"):
        status = gpu.probe()
        gpu.probe()
        with contextlib.suppress(BackendUnavailable):
            make_backend("gpu", Params.custom())
    if status.available:
        pytest.skip("a GPU is available here")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("no GPU: ")]
    assert lines == [f"no GPU: {status.reason}"]


def test_tuning_cache_round_trip(tmp_path):
    path = tmp_path / "gpu-tuning.json"
    assert gpu.load_tuning("NVIDIA H100", 13000, path) is None
    t1 = gpu.Tuning(256, 1 << 22)
    t2 = gpu.Tuning(64, 1 << 20)
    gpu.save_tuning("NVIDIA H100", 13000, t1, 6.1e11, path)
    gpu.save_tuning("NVIDIA RTX 2080", 12040, t2, path=path)
    assert gpu.load_tuning("NVIDIA H100", 13000, path) == t1
    assert gpu.load_tuning("NVIDIA RTX 2080", 12040, path) == t2
    assert gpu.load_tuning("NVIDIA H100", 12040, path) is None  # new driver: re-tune
    gpu.save_tuning("NVIDIA H100", 13000, t2, path=path)  # re-run on request replaces
    assert gpu.load_tuning("NVIDIA H100", 13000, path) == t2
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_damaged_tuning_cache_is_ignored(tmp_path):
    path = tmp_path / "gpu-tuning.json"
    path.write_text("{not json")
    assert gpu.load_tuning("X", 1, path) is None
    path.write_text(json.dumps({"format": 1, "entries": {gpu.tuning_key("X", 1): {
        "threads_per_block": 33, "survivors_per_launch": 5}}}))  # fmt: skip
    assert gpu.load_tuning("X", 1, path) is None
    gpu.save_tuning("X", 1, gpu.Tuning(), path=path)  # rewrites it whole
    assert gpu.load_tuning("X", 1, path) == gpu.Tuning()


def test_tuning_cache_honours_the_cache_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path))
    assert gpu.tuning_cache_path() == tmp_path / gpu.TUNING_FILE


def test_tuning_validates():
    with pytest.raises(ValueError):
        gpu.Tuning(100, 1 << 20)
    with pytest.raises(ValueError):
        gpu.Tuning(128, 0)
    assert all(isinstance(c, gpu.Tuning) for c in gpu.TUNING_CANDIDATES)


def test_duty_cycle_sleeps_its_share():
    duty = gpu.DutyCycle()
    assert duty.rest_after(2.0) == 0.0
    duty.set_share(gpu.check_duty(0.25))
    assert duty.rest_after(1.0) == pytest.approx(3.0)  # busy 1 s of every 4
    duty.set_share(gpu.check_duty(0.5))
    assert duty.rest_after(0.01) == pytest.approx(0.01)
    assert gpu.rest_after_launch(duty, 0.002) == pytest.approx(0.002)
    for bad in (0.0, 0.01, 1.5, -1, float("nan")):
        with pytest.raises(ValueError):
            gpu.check_duty(bad)


def test_launch_planning():
    sieve = load_sieve(8)
    lo = (1 << 71) + 5
    desc = gpu.block_descriptors(sieve, [(lo, lo + 1000)])
    base = (int(desc[0, 0]) << 64) | int(desc[0, 1])
    assert base % 256 == 0 and base <= lo < base + 256
    # Slots are exactly the survivors of the range, whatever their mod 9.
    want = sum(1 for n in range(lo, lo + 1000) if sieve.contains(n % 256))
    assert int(desc[0, 3]) == want
    assert int(desc[0, 4]) == base % 9
    assert gpu.grid_x(0, 128) == 1
    assert gpu.grid_x(128 * gpu.SLOTS_PER_THREAD + 1, 128) == 2
    assert gpu.blocks_per_launch(1 << 20, gpu.Tuning(128, 1 << 22)) == 4
    assert gpu.blocks_per_launch(1, gpu.Tuning(128, 1 << 30)) == gpu.MAX_GRID_Y


@settings(max_examples=60, deadline=None)
@given(
    k=st.sampled_from([2, 8, 12]),
    spans=st.lists(
        st.tuples(st.integers(1, 1 << 80), st.integers(1, 5000)), min_size=1, max_size=6
    ),
)
def test_launch_planning_counts_every_survivor_of_each_range(k, spans):
    """Several ranges in one vectorised call, each counted the slow way."""
    sieve = load_sieve(k)
    ranges = [(lo, lo + size) for lo, size in spans]
    desc = gpu.block_descriptors(sieve, ranges)
    for row, (lo, hi) in enumerate(ranges):
        base = (int(desc[row, 0]) << 64) | int(desc[row, 1])
        assert base % sieve.modulus == 0 and base <= lo < base + sieve.modulus
        assert int(desc[row, 2]) == sieve.rank(lo - base)
        assert int(desc[row, 3]) == sum(1 for n in range(lo, hi) if sieve.contains(n % sieve.modulus))
        assert int(desc[row, 4]) == base % 9


def _tested_ancestor(x: int, sieve) -> int:
    """A tested y < x whose trajectory passes through odd x before falling below y."""
    frontier = [x]
    for _ in range(12):
        nxt = []
        for v in frontier:
            for s in (1, 2, 3):
                w = v * (1 << s) - 1
                if w % 3 == 0 and (w // 3) % 2 == 1:
                    nxt.append(w // 3)
        for y in nxt:
            if y < x and sieve.is_tested(y) and reference.glide(y, 1 << 16).fell:
                # y reaches x before falling below itself (every value on the way is >= y)
                path, v = [], y
                while v != x and len(path) < 64:
                    v = 3 * v + 1
                    v >>= (v & -v).bit_length() - 1
                    path.append(v)
                if v == x and min(path) >= y:
                    return y
        frontier = nxt
    raise AssertionError("no tested ancestor found")


def test_boundary_trajectories(host_lib):
    """3x+1 with 64+ trailing zeros (the high-limb strip) and x next to the 2**128 guard."""
    runner = HostRunner(host_lib, Params.custom(sieve_k=2))
    guard = ((1 << 128) - 1) // 3  # 3 * guard + 1 == 2**128: larger odd x must defer
    # Odd values on trajectories of smaller tested numbers (guard itself and
    # guard + 2 have no smaller ancestor: 3x+1 is a power of two, or x = 0 mod 3).
    targets = [
        guard - 2,
        guard + 4,
        ((1 << 64) * 1027 - 1) // 3,
        ((1 << 64) * 1072 - 1) // 3,
    ]  # 1072 = 16 * 67
    starts = [_tested_ancestor(x, runner.sieve) for x in targets]
    starts += [n for n in (guard + 2, guard + 6) if runner.sieve.is_tested(n)]  # defer at once
    got = _check(runner, [(y, y + 1) for y in starts])
    assert all(b.tested == 1 for b in got)
    assert got[1].overflows == 1 and got[4].overflows == 1
