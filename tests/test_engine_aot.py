"""The ahead-of-time CPU kernel (engine/aot.py, engine/aot_build.py) and the
sieve check that runs beside the first blocks (Sieve.confirm).

Both kernel forms come from the one numba function in engine/cpu_kernel.py;
here they are held to the exact reference and to each other, bit for bit, on
ordinary blocks and on the rare paths (128-bit overflow deferrals, step-bound
deferrals, a full deferral buffer, candidates). A library that is damaged,
stale or fails its self-test must not be used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import aot, cpu, reference, sieve, sieve_file
from engine.cpu import CpuBackend, select_kernel
from engine.params import PRODUCTION, Params
from tests.netutil import ROOT

needs_cc = pytest.mark.skipif(
    not aot.supported() or aot.compiler() is None,
    reason="the ahead-of-time kernel needs Linux and a C compiler (cc) to link it",
)


@pytest.fixture(scope="module")
def aot_kernel() -> cpu.Kernel:
    """The library of this checkout and machine, built into the user cache if absent."""
    if not aot.supported() or aot.compiler() is None:
        pytest.skip("the ahead-of-time kernel needs Linux and a C compiler (cc) to link it")
    return select_kernel("aot")


@pytest.fixture(scope="module")
def jit_kernel() -> cpu.Kernel:
    return select_kernel("jit")


@pytest.fixture(params=[8, 16, 20], scope="module")
def pair(request, aot_kernel, jit_kernel) -> tuple[CpuBackend, CpuBackend]:
    p = Params.custom(sieve_k=request.param)
    return CpuBackend(p, kernel=aot_kernel), CpuBackend(p, kernel=jit_kernel)


def assert_all_agree(pair: tuple[CpuBackend, CpuBackend], lo: int, hi: int) -> None:
    fast_aot, fast_jit = (b.run_block(lo, hi) for b in pair)
    b = pair[0]
    exact = reference.run_block(b.sieve, lo, hi, b.params.exact_step_bound)
    assert fast_aot == exact, ("aot", lo, hi)
    assert fast_jit == exact, ("jit", lo, hi)
    assert fast_aot.leaf() == fast_jit.leaf() == exact.leaf()


def test_the_kernels_are_what_their_names_say(aot_kernel, jit_kernel) -> None:
    assert aot_kernel.name == "aot" and isinstance(aot_kernel, aot.AotKernel)
    assert jit_kernel.name == "jit"


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
def test_fixed_ranges(pair, lo: int, hi: int) -> None:
    assert_all_agree(pair, lo, hi)


@pytest.mark.parametrize("m", [81, 85, 90, 100, 110, 120, 126])
def test_overflow_deferrals(pair, m: int) -> None:
    n = 2**m - 1  # climbs to about 3^m: past 2^128
    assert_all_agree(pair, n - 300, n + 300)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    exponent=st.integers(min_value=2, max_value=126),
    offset=st.integers(min_value=0, max_value=2**20),
    length=st.integers(min_value=1, max_value=5_000),
)
def test_random_ranges(pair, exponent: int, offset: int, length: int) -> None:
    lo = max(1, 2**exponent - offset)
    assert_all_agree(pair, lo, lo + length)


@pytest.mark.parametrize(
    ("step_bound", "exact_step_bound"),
    [(3, 6), (1, 10**5), (5, 10)],  # candidates; deferrals only; a full buffer and resumes
)
def test_step_bound_deferrals_and_candidates(aot_kernel, jit_kernel, step_bound, exact_step_bound):
    p = Params.custom(sieve_k=8, step_bound=step_bound, exact_step_bound=exact_step_bound)
    backends = (CpuBackend(p, kernel=aot_kernel), CpuBackend(p, kernel=jit_kernel))
    lo, hi = 2**71, 2**71 + 6_000
    assert_all_agree(backends, lo, hi)
    if exact_step_bound == 6:
        assert backends[0].run_block(lo, hi).candidates, "tiny bounds must produce candidates"


@settings(max_examples=60, deadline=None)
@given(
    exponent=st.integers(min_value=3, max_value=126),
    offset=st.integers(min_value=0, max_value=2**24),
    length=st.integers(min_value=1, max_value=40_000),
    step_bound=st.sampled_from([1, 3, 20, PRODUCTION.step_bound]),
    rows=st.sampled_from([4, 9, 1024]),
    chunk=st.sampled_from([1, 64, 4096]),
    max_bits=st.integers(min_value=0, max_value=127),
)
def test_raw_kernel_outputs_are_identical(exponent, offset, length, step_bound, rows, chunk,
                                          max_bits) -> None:  # fmt: skip
    # The kernels' raw outputs (counts, maxima, deferred numbers, status, resume
    # offset), not only the evidence: any block maximum so far, tiny buffers.
    if not aot.supported() or aot.compiler() is None:
        pytest.skip("the ahead-of-time kernel needs Linux and a C compiler (cc) to link it")
    s = sieve.load(12)
    lo = max(1, 2**exponent - offset)
    case = {"lo": lo, "length": length, "step_bound": step_bound, "max_value": (1 << max_bits) - 1,
            "max_n": lo, "rows": rows, "chunk": chunk}  # fmt: skip
    calls = [select_kernel(m).bind(s, cpu._KEPT9, cpu._POW3) for m in ("aot", "jit")]
    assert aot.run_case(calls[0], case) == aot.run_case(calls[1], case)


def test_production_golden_vectors_on_both_kernels(aot_kernel, jit_kernel) -> None:
    from tests.test_engine_exact import GOLDEN_2_20, _summary

    lo = 2**71
    for kernel in (aot_kernel, jit_kernel):
        b = CpuBackend(PRODUCTION, kernel=kernel)
        assert _summary(b.run_block(lo, lo + 2**20)) == GOLDEN_2_20, kernel.name


def test_two_threads_give_the_same_blocks(aot_kernel) -> None:
    p = Params.custom(sieve_k=16, block_bits=14)
    b = CpuBackend(p, kernel=aot_kernel)
    ranges = [(2**71 + i * 2**14, 2**71 + (i + 1) * 2**14) for i in range(6)]
    try:
        assert b.run_blocks(ranges, 2) == [b.run_block(lo, hi) for lo, hi in ranges]
    finally:
        b.close()


def test_the_self_test_covers_the_rare_paths(aot_kernel) -> None:
    manifest = json.loads(aot_kernel.path.with_suffix(".json").read_text())
    cases = manifest["self_test"]["cases"]
    outs = [c["out"] for c in cases]
    assert any(o[7] == cpu._DEFER_FULL for o in outs)  # a full buffer, a resume offset
    assert any(c["deferred"] and c["step_bound"] == PRODUCTION.step_bound for c in cases)
    assert all(o[7] == cpu._DONE for o, c in zip(outs, cases, strict=True) if c["rows"] == 1024)
    assert aot.self_test(aot_kernel, manifest["self_test"]) is None


# ------------------------------------------------------------ what is never used


@pytest.fixture
def private_cache(tmp_path, monkeypatch, aot_kernel):
    """A cache folder holding a copy of this machine's library (same key: same path
    scheme, a fresh path for dlopen) and the small sieves; aot's memory reset."""
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path))
    (tmp_path / "kernel").mkdir()
    for suffix in (".so", ".json"):
        shutil.copy(aot_kernel.path.with_suffix(suffix), tmp_path / "kernel")
    aot.forget_loaded()
    yield tmp_path
    aot.forget_loaded()


def test_the_copied_library_loads(private_cache) -> None:
    kernel = aot.load()
    assert kernel is not None, aot.why_not()
    assert kernel.path.parent == private_cache / "kernel"


def test_a_damaged_library_is_not_loaded(private_cache) -> None:
    so = next((private_cache / "kernel").glob("cpu-*.so"))
    blob = bytearray(so.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    so.write_bytes(bytes(blob))
    assert aot.load() is None
    assert "damaged" in aot.why_not()


def test_a_library_that_fails_its_self_test_is_not_loaded(private_cache) -> None:
    # A library whose manifest still matches it but whose answers differ: here the
    # recorded answer is changed, which is the same disagreement seen from the other side.
    path = next((private_cache / "kernel").glob("cpu-*.json"))
    manifest = json.loads(path.read_text())
    manifest["self_test"]["cases"][0]["out"][1] += 1
    path.write_text(json.dumps(manifest))
    assert aot.load() is None
    assert "self-test" in aot.why_not()


def test_a_stale_library_is_never_found(private_cache, monkeypatch) -> None:
    key = aot.library_key()
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "-avx2")  # another code generation...
    assert aot.library_key() != key  # ...another key, another file name
    original = aot._module_bytes
    monkeypatch.delenv("NUMBA_CPU_FEATURES")
    monkeypatch.setattr(
        aot,
        "_module_bytes",
        lambda m: original(m) + b"#" if m == "engine.cpu_kernel" else original(m),
    )
    assert aot.library_key() != key  # an edited kernel, likewise
    aot.forget_loaded()
    assert aot.load() is None and aot.why_not() == "absent"


_EXACT_BLOCK = (
    "import sys\n"
    "from engine import cpu, reference\n"
    "from engine.params import Params\n"
    "b = cpu.CpuBackend(Params.custom(sieve_k=8))\n"
    "ev = b.run_block(2**100 - 300, 2**100 + 300)\n"
    "assert ev == reference.run_block(b.sieve, 2**100 - 300, 2**100 + 300, 10**6)\n"
    "print(b.kernel.name)\n"
)


def _in_cache(cache, code: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HAILSTONE_CACHE_DIR": str(cache), "HAILSTONE_KERNEL": "auto",
           "PYTHONPATH": str(ROOT), **env}  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)  # fmt: skip


def test_auto_uses_the_jit_when_a_damaged_library_cannot_be_rebuilt(private_cache) -> None:
    so = next((private_cache / "kernel").glob("cpu-*.so"))
    so.write_bytes(b"\x7fELF not really")
    out = _in_cache(private_cache, _EXACT_BLOCK, CC=str(private_cache / "no-compiler"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "jit"
    assert so.read_bytes() == b"\x7fELF not really"  # left alone


@needs_cc
def test_auto_rebuilds_a_damaged_library(private_cache) -> None:
    so = next((private_cache / "kernel").glob("cpu-*.so"))
    so.write_bytes(b"\x7fELF not really")
    out = _in_cache(private_cache, _EXACT_BLOCK)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "aot"
    assert so.read_bytes().startswith(b"\x7fELF") and len(so.read_bytes()) > 1000


@needs_cc
def test_a_fresh_cache_builds_the_library_once_and_never_imports_numba_after(tmp_path) -> None:
    env = {**os.environ, "HAILSTONE_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("HAILSTONE_KERNEL", None)
    # The first start builds the sieve (numba) and the library.
    first = "from engine import cpu\nfrom engine.params import Params\nprint(cpu.CpuBackend(Params.custom(sieve_k=8)).kernel.name)\n"
    out = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "aot"
    assert len(list((tmp_path / "kernel").glob("cpu-*.so"))) == 1
    again = (
        "import sys\nfrom engine import cpu\nfrom engine.params import Params\n"
        "b = cpu.CpuBackend(Params.custom(sieve_k=8))\n"
        "b.run_blocks([(2**71, 2**71 + 4096), (2**71 + 4096, 2**71 + 8192)], 2)\n"
        "print(b.kernel.name, 'numba' in sys.modules, 'llvmlite' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", again], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["aot", "False", "False"]


def test_a_build_that_failed_is_noted_and_not_retried(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert not aot.can_build()
    from engine import aot_build

    monkeypatch.setattr(aot, "compiler", lambda: "/bin/false")  # a compiler that fails
    aot.forget_loaded()
    try:
        with pytest.raises(aot_build.AotBuildError):
            aot_build.build()
        assert aot.build_failed_before()
        assert aot.load() is None and "failed before" in aot.why_not()
    finally:
        aot.forget_loaded()


# ----------------------------------------------- the sieve checked beside the work


class HeldCheck:
    """A digest check that answers only when the test says so."""

    def __init__(self, verdict: bool) -> None:
        self.verdict = verdict
        self.asked = threading.Event()
        self.release = threading.Event()
        self.cleaned = False

    def ok(self) -> bool:
        self.asked.set()
        self.release.wait()
        return self.verdict

    def done(self) -> bool:
        return self.release.is_set()

    def claim_cleanup(self) -> bool:
        first, self.cleaned = not self.cleaned, True
        return first


def _with_check(s: sieve.Sieve, check: HeldCheck) -> sieve.Sieve:
    return sieve.Sieve(k=s.k, residues=s.residues, mod9_counts=s.mod9_counts, jump_c=s.jump_c,
                       jump_d=s.jump_d, amax_c=s.amax_c, amax_j=s.amax_j, bmax=s.bmax,
                       check=check)  # fmt: skip


@pytest.mark.parametrize("mode", ["aot", "jit"])
def test_no_evidence_leaves_before_the_sieve_is_confirmed(mode, tmp_path, monkeypatch) -> None:
    if mode == "aot" and (not aot.supported() or aot.compiler() is None):
        pytest.skip("the ahead-of-time kernel needs Linux and a C compiler (cc) to link it")
    good = sieve.load(12)
    check = HeldCheck(verdict=True)
    b = CpuBackend(
        Params.custom(sieve_k=12), sieve=_with_check(good, check), kernel=select_kernel(mode)
    )
    results = []
    worker = threading.Thread(target=lambda: results.append(b.run_block(2**71, 2**71 + 50_000)))
    worker.start()
    check.asked.wait()  # the block is computed and now waits for the verdict
    assert results == []
    check.release.set()
    worker.join()
    assert results == [reference.run_block(good, 2**71, 2**71 + 50_000, b.params.exact_step_bound)]


def test_a_damaged_sieve_fails_the_block_and_its_file_goes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path))
    sieve.forget_loaded()
    try:
        sieve.load(12)  # built and written
        path = sieve._cache_path(12)
        blob = bytearray(path.read_bytes())
        blob[-1] ^= 0x01  # a bit of the tables
        path.write_bytes(bytes(blob))
        sieve.forget_loaded()
        pending = sieve.load_unconfirmed(12)  # the header is fine: taken at once
        b = CpuBackend(Params.custom(sieve_k=12), kernel=select_kernel("jit"))
        assert b.sieve is pending
        with pytest.raises(sieve.SieveDamaged):
            b.run_block(2**71, 2**71 + 10_000)
        assert not path.exists()  # so the next start builds it again
        with pytest.raises(sieve.SieveDamaged):
            b.run_blocks([(2**71, 2**71 + 100), (2**71 + 100, 2**71 + 200)], 2)
        b.close()
        rebuilt = sieve.load(12)  # load() never returns a damaged sieve
        assert rebuilt is not pending and rebuilt.check.ok()
    finally:
        sieve.forget_loaded()


def test_the_early_check_is_adopted_by_the_load(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(tmp_path))
    sieve.forget_loaded()
    try:
        sieve.load(12)
        sieve.forget_loaded()
        sieve_file.start_early(12)
        path = sieve._cache_path(12)
        started = sieve_file._early[path][1]
        s = sieve.load_unconfirmed(12)
        assert s.check is started and path not in sieve_file._early
        s.confirm()
    finally:
        sieve.forget_loaded()


def _verify_cli(cache, *args: str, kernel: str = "auto") -> subprocess.CompletedProcess:
    env = {**os.environ, "HAILSTONE_KERNEL": kernel}
    if cache is not None:
        env["HAILSTONE_CACHE_DIR"] = str(cache)
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "verify", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def production_sieve_ready() -> None:
    if not sieve.ready(PRODUCTION.sieve_k):
        pytest.skip("the production sieve is not cached here (building it takes a minute)")


def test_cli_roots_agree_between_kernels(production_sieve_ready, aot_kernel) -> None:
    args = ("2**100-2**16", "--count", "2**17", "--json")  # overflow deferrals among them
    outs = [_verify_cli(None, *args, kernel=k) for k in ("aot", "jit")]
    for out in outs:
        assert out.returncode == 0, out.stderr
    a, j = (json.loads(o.stdout) for o in outs)
    assert a["backend"] == j["backend"] == "cpu"
    assert a["overflows"] > 0
    for key in ("tested", "odd_steps", "max_value", "max_n", "overflows", "root"):
        assert a[key] == j[key], key


def test_cli_with_a_damaged_production_sieve_fails_and_prints_nothing(
    production_sieve_ready, aot_kernel, tmp_path
) -> None:
    src = sieve._cache_path(PRODUCTION.sieve_k)
    shutil.copy(src, tmp_path / src.name)
    (tmp_path / "kernel").mkdir()
    for suffix in (".so", ".json"):
        shutil.copy(aot_kernel.path.with_suffix(suffix), tmp_path / "kernel")
    with open(tmp_path / src.name, "r+b") as f:
        f.seek(-12345, os.SEEK_END)
        byte = f.read(1)
        f.seek(-12345, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x20]))
    out = _verify_cli(tmp_path, "2**71", "--count", "1000", "--json")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert "failed its SHA-256 check" in out.stderr
    assert not (tmp_path / src.name).exists()


def test_self_test_tables_are_the_small_sieve(aot_kernel) -> None:
    spec = json.loads(aot_kernel.path.with_suffix(".json").read_text())["self_test"]
    s = sieve.load(spec["k"])
    assert spec["bmax"] == s.bmax
    for name, values in spec["tables"].items():
        assert np.array_equal(np.array(values, dtype=getattr(s, name).dtype), getattr(s, name))


def test_cli_verify_with_the_library_never_imports_numba(
    production_sieve_ready, aot_kernel
) -> None:
    code = (
        "import sys\nimport main\n"
        "code = main.main(['verify', '2**71', '--count', '2**16', '--json'])\n"
        "print(code, 'numba' in sys.modules, 'llvmlite' in sys.modules)\n"
    )
    env = {**os.environ, "HAILSTONE_KERNEL": "auto", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    result, last = out.stdout.splitlines()
    assert json.loads(result)["tested"] > 0
    assert last.split() == ["0", "False", "False"]


def test_no_build_is_tried_where_the_cache_cannot_be_written(tmp_path, monkeypatch) -> None:
    blocked = tmp_path / "cache"
    blocked.mkdir()
    (blocked / "kernel").write_text("a file where the folder would be")
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(blocked))
    aot.forget_loaded()
    try:
        assert aot.load() is None
        assert not aot.can_build() and not aot.worth_building()
    finally:
        aot.forget_loaded()
