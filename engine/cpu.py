"""CPU backend: the kernel over 128-bit limbs, one block per call, several on threads.

The public `CpuBackend.run_block()` validates its range, runs the kernel
(engine/cpu_kernel.py), and sends every number the kernel could not finish (a
value that would pass 2**128, or more odd steps than the fast bound) through
the exact reference path. The kernel releases the GIL, so several blocks run
on several cores from plain Python threads while the GUI stays live. Those
threads are the backend's own, at background priority (engine/priority.py).

The kernel comes in two forms with one definition (`select_kernel`): compiled
ahead of time into a small library loaded without numba (engine/aot.py; built
once by engine/aot_build.py where a C compiler is found), or compiled by numba
in this process (the fallback). This module imports neither numba nor the
kernel's module unless the JIT form is used.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from engine import aot, reference
from engine.evidence import BlockEvidence
from engine.params import MOD9_KEPT, Params
from engine.priority import lower_compute_thread
from engine.sieve import Sieve, loaded
from engine.sieve import load as load_sieve

log = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1
_U128_MAX = (1 << 128) - 1
# Blocks that reach this high are left to the exact path entirely.
_FAST_RANGE_LIMIT = 1 << 127
_DEFER_CAPACITY = 1024
# Survivors gathered per pass of the kernel's three-lane loop.
_CHUNK = 4096

# Kernel status codes
_DONE = 0
_DEFER_FULL = 1

_KEPT9 = np.zeros(9, dtype=np.uint8)
_KEPT9[list(MOD9_KEPT)] = 1
_POW3 = np.array([3**i for i in range(41)], dtype=np.uint64)
for _a in (_KEPT9, _POW3):
    _a.setflags(write=False)

# (pos, length, step_bound, block maximum so far, its n, deferred, out, buf): one
# kernel run over [pos, pos + length); see engine.cpu_kernel._run_range for `out`.
KernelCall = Callable[[int, int, int, int, int, np.ndarray, np.ndarray, np.ndarray], None]

KERNEL_MODES = ("auto", "aot", "jit")


class Kernel(Protocol):
    name: str  # "aot" or "jit"

    def bind(self, sieve: Sieve, kept9: np.ndarray, pow3: np.ndarray) -> KernelCall: ...


_selected: dict[str, Kernel] = {}
_select_lock = threading.Lock()


def select_kernel(mode: str | None = None, announce: Callable[[str], None] | None = None) -> Kernel:
    """The kernel this process runs, chosen once per mode.

    `mode` (default $HAILSTONE_KERNEL, else "auto"): "auto" takes the
    ahead-of-time library when a valid one is there, builds it once when it is
    absent and a C compiler is found (a few seconds; `announce` hears about it),
    and otherwise uses numba's JIT; "aot" insists on the library (RuntimeError if
    there can be none); "jit" never looks for it.
    """
    mode = mode or os.environ.get("HAILSTONE_KERNEL") or "auto"
    if mode not in KERNEL_MODES:
        raise ValueError(f"kernel mode must be one of {', '.join(KERNEL_MODES)}, not {mode!r}")
    with _select_lock:
        kernel = _selected.get(mode)
        if kernel is None:
            kernel = _select(mode, announce)
            _selected[mode] = kernel
        return kernel


def _select(mode: str, announce: Callable[[str], None] | None) -> Kernel:
    if mode != "jit":
        kernel = aot.load()
        if kernel is None and aot.worth_building():
            # Absent (the first start), damaged or stale: built once, a few seconds.
            (announce or log.info)(
                "compiling the CPU kernel ahead of time (once; it is cached for later runs)"
            )
            from engine import aot_build

            try:
                aot_build.build()
            except aot_build.AotBuildError as exc:  # noted: later starts do not retry
                log.warning("using numba's JIT kernel: %s", exc)
            else:
                kernel = aot.load(refresh=True)
                if kernel is None:
                    aot.note_unusable(aot.why_not())
        if kernel is not None:
            return kernel
        if mode == "aot":
            raise RuntimeError(f"no ahead-of-time CPU kernel: {aot.why_not()}")
    from engine.cpu_kernel import JitKernel

    return JitKernel()


def _check_range(lo: int, hi: int) -> None:
    if not 1 <= lo < hi:
        raise ValueError("need 1 <= lo < hi")
    if hi - lo >= 1 << 62:
        raise ValueError("a block must be shorter than 2**62 integers")


class CpuBackend:
    """Runs blocks on the CPU; exact fallback through engine.reference.

    Without a `sieve`, the parameter set's sieve is the one in memory, which may
    still be under its digest check where the caller asked for that
    (`sieve.load_unconfirmed`, the CLI's start-up), else a confirmed `load()`.
    Every block waits for the check before its evidence is returned
    (Sieve.confirm), so a damaged file fails the run (SieveDamaged) and nothing
    computed from it leaves. `kernel` defaults to `select_kernel()`.
    """

    name = "cpu"

    def __init__(
        self, params: Params, sieve: Sieve | None = None, kernel: Kernel | None = None
    ) -> None:
        self.params = params
        if sieve is None:
            sieve = loaded(params.sieve_k) or load_sieve(params.sieve_k)
        self.sieve = sieve
        self.kernel = kernel if kernel is not None else select_kernel()
        self._call = self.kernel.bind(self.sieve, _KEPT9, _POW3)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._pool_lock = threading.Lock()

    def warm_up(self) -> None:
        """Compile (or load) the kernel now rather than inside the first timed block."""
        lo = self.params.start
        self.run_block(lo, lo + min(self.params.block_size, 1 << 12))

    def run_block(self, lo: int, hi: int) -> BlockEvidence:
        """Evidence for [lo, hi), bit-identical to engine.reference.run_block."""
        return self.run_blocks([(lo, hi)], 1)[0]

    def run_blocks(self, ranges: Sequence[tuple[int, int]], cores: int) -> list[BlockEvidence]:
        """Several blocks at once, one per thread (the kernel releases the GIL).

        Every block runs on the backend's own threads, at background priority
        (engine/priority.py): the caller's thread keeps its priority for the rest of
        its work (a node's records, the app's window) and waits."""
        for lo, hi in ranges:
            _check_range(lo, hi)
        # At most `cores` blocks at once however large the pool grew: lane i runs
        # blocks i, i + lanes, ... one after another.
        lanes = max(1, min(cores, len(ranges)))
        with self._pool_lock:
            pool = self._pool_for(lanes)
            futures = [pool.submit(self._compute_lane, ranges[i::lanes]) for i in range(lanes)]
        out: list[BlockEvidence | None] = [None] * len(ranges)
        for i, future in enumerate(futures):
            out[i::lanes] = future.result()
        return out  # type: ignore[return-value]  (every slot filled above)

    def _compute_lane(self, ranges: Sequence[tuple[int, int]]) -> list[BlockEvidence]:
        return [self._compute(lo, hi) for lo, hi in ranges]

    def _pool_for(self, threads: int) -> ThreadPoolExecutor:
        """The compute pool, grown to at least `threads` threads (under `_pool_lock`;
        it never shrinks: run_blocks caps what one call runs at once)."""
        if self._pool is None or self._pool_size < threads:
            if self._pool is not None:
                self._pool.shutdown(wait=False)  # (what it runs finishes; nothing is lost)
            self._pool = ThreadPoolExecutor(
                max_workers=threads,
                thread_name_prefix="hailstone-cpu",
                initializer=lower_compute_thread,
            )
            self._pool_size = threads
        return self._pool

    def _compute(self, lo: int, hi: int) -> BlockEvidence:
        """One block's evidence, on a compute thread."""
        if hi > _FAST_RANGE_LIMIT:
            exact = reference.run_block(self.sieve, lo, hi, self.params.exact_step_bound)
            self.sieve.confirm()
            return exact
        acc = reference.EvidenceAccumulator()
        deferred = np.zeros((_DEFER_CAPACITY, 2), dtype=np.uint64)
        out = np.zeros(9, dtype=np.uint64)
        buf = np.empty(_CHUNK, dtype=np.int64)
        pos = lo
        while pos < hi:
            thr = min(acc.max_value, _U128_MAX)
            self._call(pos, hi - pos, self.params.step_bound, thr, acc.max_n, deferred, out, buf)
            fast_n = (int(out[4]) << 64) | int(out[5])
            if fast_n:  # the tie rule lives in offer_max
                acc.offer_max((int(out[2]) << 64) | int(out[3]), fast_n)
            n_def = int(out[6])
            acc.tested += int(out[0]) - n_def
            acc.odd_steps += int(out[1])
            for j in range(n_def):
                n = (int(deferred[j, 0]) << 64) | int(deferred[j, 1])
                acc.add(n, reference.glide(n, self.params.exact_step_bound))
            if int(out[7]) == _DONE:
                break
            pos += int(out[8])
        # Nothing computed from the tables leaves before their file is confirmed.
        self.sieve.confirm()
        return acc.finish(lo, hi)

    def batch_blocks(self, cores: int) -> int:
        """One block per core: a batch lasts one block's time (milliseconds)."""
        return max(1, cores)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool, self._pool_size = self._pool, None, 0
        if pool is not None:
            pool.shutdown(wait=True)
