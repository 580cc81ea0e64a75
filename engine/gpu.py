"""GPU backend: the CUDA kernels of engine/collatz_kernel.cu driven through CuPy.

The evidence is bit-identical to engine.reference.run_block (and so to the
CPU backend): the kernel iterates exactly the sieve's tested set with exact
128-bit arithmetic, reduces each evidence block on the device to one record
(tested, odd steps, deferred count, max value with its smallest n), and hands
back the few numbers it could not finish (a 3x+1 that would pass 2**128, or
more odd steps than params.step_bound). The host runs those through the exact
reference path and merges them with reference.EvidenceAccumulator, whose
offer_max is the protocol's tie rule.

Pipelining: each backend owns two launch slots, each with its own CUDA
stream and buffers. run_blocks() enqueues launch i+1 on one slot before it
waits for launch i on the other, so the GPU computes the next launch while
the host copies back, merges and runs deferred numbers exactly. With a duty
cycle below 1 the slots run one at a time and the host sleeps after each
launch so that the GPU is busy only that share of wall time.

Any CuPy flavour works (cupy-cuda12x, cupy-cuda13x): only `import cupy` is
used. Without CuPy, a driver, or a device, probe() says why and never raises,
logging "no GPU: <reason>" once; engine.job.make_backend then raises
BackendUnavailable with that reason, and the caller falls back to the CPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import reference
from engine.evidence import BlockEvidence
from engine.files import write_atomic
from engine.params import MOD9_KEPT, PRODUCTION, Params
from engine.sieve import Sieve
from engine.sieve import load as load_sieve
from engine.throttle import DutyCycle

log = logging.getLogger(__name__)

KERNEL_SOURCE = Path(__file__).with_name("collatz_kernel.cu")
# The kernels compiled from KERNEL_SOURCE (one place; extern "C", no mangling).
KERNEL_NAMES = ("hs_glide", "hs_reduce")
# NVRTC allows unsigned __int128 in device code only on Linux and only with
# --device-int128; elsewhere (Windows) the kernel's two-limb u128 serves, with
# the same results (the tests run both). Tried in this order.
COMPILE_OPTIONS = (("-std=c++17", "--device-int128"), ("-std=c++17", "-DHS_PORTABLE_U128"))

RECORD_WORDS = 8  # hs_glide/hs_reduce record: tested, odd, deferred, max hi/lo, n hi/lo, jumps
DEFER_WORDS = 3  # deferred entry: n hi, n lo, evidence block index in the launch
DESC_WORDS = 6  # block descriptor: base hi/lo, first survivor index, slots, base mod 9, 0
REDUCE_THREADS = 256  # == HS_REDUCE_THREADS in the kernel source
DEFER_CAPACITY = 1 << 14  # deferred entries per launch before a block is re-run
SLOTS_PER_THREAD = 32  # survivor slots one thread walks per launch (jump needs a history)
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y: evidence blocks per launch
FAST_RANGE_LIMIT = 1 << 127  # ranges reaching this high go to the exact path entirely

_MASK64 = (1 << 64) - 1
_POW3 = np.array([3**i for i in range(41)], dtype=np.uint64)
KEPT9_MASK = sum(1 << j for j in MOD9_KEPT)

# A batch (one Verifier step) lasts about this long on the device: long enough
# that per-batch host costs (a checkpoint's fsync, progress signals) vanish next
# to it, short enough that pause and settings changes apply promptly.
BATCH_SECONDS = 0.25
BATCH_LAUNCHES = (2, 256)  # launches per batch: before any measurement, and at most

TUNING_FILE = "gpu-tuning.json"
_TUNING_FORMAT = 1


class GpuUnavailable(RuntimeError):
    """No usable GPU: `reason` says why in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One CUDA device as probe() found it."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class GpuStatus:
    """What probe() found. `reason` is empty when available."""

    available: bool
    reason: str
    devices: tuple[GpuDevice, ...] = ()
    driver_version: int = 0
    runtime_version: int = 0


@dataclass(frozen=True, slots=True)
class Tuning:
    """Launch geometry for one device.

    Attributes:
        threads_per_block: CUDA threads per block of the glide kernel.
        survivors_per_launch: sieve survivors (slots) covered by one launch;
            evidence blocks per launch follow from it.
    """

    threads_per_block: int = 128
    survivors_per_launch: int = 1 << 24

    def __post_init__(self) -> None:
        if not 32 <= self.threads_per_block <= 1024 or self.threads_per_block % 32:
            raise ValueError("threads_per_block must be a multiple of 32 in 32..1024")
        if not 1 <= self.survivors_per_launch <= 1 << 34:
            raise ValueError("survivors_per_launch must be in 1..2**34")


DEFAULT_TUNING = Tuning()
TUNING_CANDIDATES = tuple(
    Tuning(t, s) for t in (64, 128, 256, 512) for s in (1 << 22, 1 << 24, 1 << 26)
)

# ---------------------------------------------------------------- probing

_logged_lock = threading.Lock()
_logged_reasons: set[str] = set()


def _log_unavailable(reason: str) -> None:
    with _logged_lock:
        if reason in _logged_reasons:
            return
        _logged_reasons.add(reason)
    log.info("no GPU: %s", reason)


def probe() -> GpuStatus:
    """Find CUDA devices through CuPy; never raises.

    Unavailable (with a reason) when CuPy is missing or broken, there is no
    driver or it is older than CuPy's CUDA, or no device is visible. The
    reason is logged once as "no GPU: <reason>".
    """
    status = _probe()
    if not status.available:
        _log_unavailable(status.reason)
    return status


def _probe() -> GpuStatus:
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken install raising anything
        return GpuStatus(False, f"CuPy is not installed or does not load ({exc})")
    try:
        runtime = cupy.cuda.runtime
        runtime_version = int(runtime.runtimeGetVersion())
        try:
            driver_version = int(runtime.driverGetVersion())
        except Exception as exc:
            return GpuStatus(False, f"no CUDA driver ({exc})", runtime_version=runtime_version)
        if driver_version == 0:
            return GpuStatus(False, "no CUDA driver is installed", runtime_version=runtime_version)
        if driver_version // 1000 < runtime_version // 1000:
            return GpuStatus(
                False,
                f"the CUDA driver is too old (it supports CUDA {_cuda_text(driver_version)}, "
                f"CuPy needs {_cuda_text(runtime_version)}); update the graphics driver",
                driver_version=driver_version,
                runtime_version=runtime_version,
            )
        try:
            count = int(runtime.getDeviceCount())
        except Exception as exc:
            return GpuStatus(False, f"no CUDA device ({exc})", (), driver_version, runtime_version)
        if count == 0:
            return GpuStatus(
                False, "no CUDA device is visible", (), driver_version, runtime_version
            )
        devices = []
        for i in range(count):
            props = runtime.getDeviceProperties(i)
            name = props["name"]
            if isinstance(name, bytes):
                name = name.decode(errors="replace")
            devices.append(
                GpuDevice(
                    index=i,
                    name=str(name),
                    compute_capability=(int(props["major"]), int(props["minor"])),
                    memory_bytes=int(props["totalGlobalMem"]),
                )
            )
        return GpuStatus(True, "", tuple(devices), driver_version, runtime_version)
    except Exception as exc:  # a probe must never take the engine down
        return GpuStatus(False, f"CUDA could not be queried ({exc})")


def _cuda_text(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def find_device(index: int) -> tuple[GpuStatus, GpuDevice]:
    """The probe's status and device `index`; raises GpuUnavailable saying why not."""
    status = probe()
    if not status.available:
        raise GpuUnavailable(status.reason)
    for d in status.devices:
        if d.index == index:
            return status, d
    raise GpuUnavailable(
        f"there is no GPU number {index} (found {len(status.devices)} device(s))"
    )


def available_devices() -> list[GpuDevice]:
    """The usable CUDA devices (empty when there is no GPU)."""
    return list(probe().devices)


# ------------------------------------------------- launch planning (pure numpy)
# Shared by GpuBackend and the host build of the kernel in the tests, so the
# tests cover this logic too.


def kernel_constants(params: Params, sieve: Sieve) -> dict[str, int]:
    """The scalar kernel arguments for a parameter set and its sieve."""
    return {
        "survivors": len(sieve),
        "k": sieve.k,
        "bmax": int(sieve.bmax),
        "step_bound": min(params.step_bound, (1 << 32) - 1),
        "pow2k_mod9": pow(2, sieve.k, 9),
        "kept9_mask": KEPT9_MASK,
    }


def block_descriptors(sieve: Sieve, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """One hs_glide descriptor row per range (see DESC_WORDS).

    The slots of [lo, hi) are the survivor indices g in [i0, i0 + slots) of
    the periods counted from base = lo rounded down to 2**k. The two
    survivor-table searches run as one vectorised call per launch (this runs
    on the host for every block the GPU computes).
    """
    mod = sieve.modulus
    count = len(sieve)
    rows = len(ranges)
    bases = [lo - lo % mod for lo, _ in ranges]
    ends = [divmod(hi - base, mod) for (_, hi), base in zip(ranges, bases, strict=True)]
    # Offsets within a period: lo - base < 2**k and the end remainder < 2**k,
    # so both fit the table's uint32 and need no conversion of the table.
    keys = np.empty(2 * rows, dtype=np.uint32)
    keys[0::2] = [lo - base for (lo, _), base in zip(ranges, bases, strict=True)]
    keys[1::2] = [rem for _, rem in ends]
    ranks = np.searchsorted(sieve.residues, keys).tolist()
    desc = np.zeros((rows, DESC_WORDS), dtype=np.uint64)
    for row, base in enumerate(bases):
        i0 = ranks[2 * row]
        end = ends[row][0] * count + ranks[2 * row + 1]
        desc[row, :5] = (base >> 64, base & _MASK64, i0, end - i0, base % 9)
    return desc


def grid_x(max_slots: int, threads_per_block: int) -> int:
    """CUDA blocks per evidence block so that each thread walks ~SLOTS_PER_THREAD slots."""
    return max(1, math.ceil(max_slots / (threads_per_block * SLOTS_PER_THREAD)))


def blocks_per_launch(slots_per_block: int, tuning: Tuning) -> int:
    """Evidence blocks per launch for a tuning (at least 1, at most gridDim.y)."""
    return max(1, min(MAX_GRID_Y, tuning.survivors_per_launch // max(1, slots_per_block)))


def batch_size(per_launch: int, block_size: int, rate: float) -> int:
    """Blocks per batch: whole launches of `per_launch` blocks filling BATCH_SECONDS at `rate`.

    `rate` is the measured integers per second (0 when not yet measured:
    then the fewest launches, BATCH_LAUNCHES[0]).
    """
    fewest, most = BATCH_LAUNCHES
    launches = fewest
    if rate > 0:
        launches = int(rate * BATCH_SECONDS // (per_launch * block_size))
    return per_launch * min(most, max(fewest, launches))


def merge_launch(
    params: Params,
    ranges: Sequence[tuple[int, int]],
    out: np.ndarray,
    deferred: np.ndarray,
) -> tuple[list[BlockEvidence | None], list[int]]:
    """Turn one launch's device records into evidence.

    Args:
        params: the parameter set (exact_step_bound for deferred numbers).
        ranges: the launch's evidence blocks, in descriptor order.
        out: hs_reduce output, shape (E, RECORD_WORDS).
        deferred: the stored deferred entries, shape (m, DEFER_WORDS).

    Return:
        (evidence per range, or None where the deferred buffer dropped
        entries of that block; the indices of those blocks, to be re-run).
    """
    by_block: dict[int, list[int]] = {}
    for n_hi, n_lo, e in deferred.tolist():
        by_block.setdefault(int(e), []).append((int(n_hi) << 64) | int(n_lo))
    results: list[BlockEvidence | None] = []
    rerun: list[int] = []
    for e, ((lo, hi), rec) in enumerate(zip(ranges, out.tolist(), strict=False)):
        numbers = sorted(by_block.get(e, ()))
        if len(numbers) != rec[2]:
            results.append(None)
            rerun.append(e)
            continue
        if not numbers:
            # The common case: the device finished every number, so its record
            # is the evidence, exactly as the accumulator below would make it.
            peak = (rec[3] << 64) | rec[4]
            peak_n = (rec[5] << 64) | rec[6] if peak else 0
            results.append(BlockEvidence(lo, hi, rec[0], rec[1], peak, peak_n, 0))
            continue
        acc = reference.EvidenceAccumulator()
        acc.tested = rec[0]
        acc.odd_steps = rec[1]
        acc.offer_max((rec[3] << 64) | rec[4], (rec[5] << 64) | rec[6])
        for n in numbers:
            acc.add(n, reference.glide(n, params.exact_step_bound))
        results.append(acc.finish(lo, hi))
    return results, rerun


def check_range(lo: int, hi: int) -> None:
    """The same range rules as CpuBackend.run_block."""
    if not 1 <= lo < hi:
        raise ValueError("need 1 <= lo < hi")
    if hi - lo >= 1 << 62:
        raise ValueError("a block must be shorter than 2**62 integers")


# ----------------------------------------------------------- duty cycle


# Below this a GPU mostly idles between launches: refuse rather than crawl.
MIN_DUTY = 0.05


def check_duty(fraction: float) -> float:
    """The GPU's busy share, validated (MIN_DUTY..1.0)."""
    if not (isinstance(fraction, int | float) and MIN_DUTY <= fraction <= 1.0):
        raise ValueError(f"duty cycle must be a fraction in {MIN_DUTY}..1.0")
    return float(fraction)


def rest_after_launch(duty: DutyCycle, busy_s: float) -> float:
    """Sleep the rest the duty cycle asks for after `busy_s` of device work; returns it."""
    pause = duty.rest_after(busy_s)
    if pause > 0:
        time.sleep(pause)
    return pause


# ------------------------------------------------------------- tuning cache


def tuning_cache_path() -> Path:
    """$HAILSTONE_CACHE_DIR/gpu-tuning.json, else under the user cache dir."""
    override = os.environ.get("HAILSTONE_CACHE_DIR")
    if override:
        return Path(override) / TUNING_FILE
    import platformdirs

    return Path(platformdirs.user_cache_dir("hailstone", appauthor=False)) / TUNING_FILE


def tuning_key(device_name: str, driver_version: int) -> str:
    return f"{device_name} | driver {driver_version}"


def _read_tuning_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _TUNING_FORMAT:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def load_tuning(device_name: str, driver_version: int, path: Path | None = None) -> Tuning | None:
    """The cached tuning for this device and driver, or None (missing or damaged)."""
    entry = _read_tuning_file(path or tuning_cache_path()).get(
        tuning_key(device_name, driver_version)
    )
    if not isinstance(entry, dict):
        return None
    try:
        return Tuning(int(entry["threads_per_block"]), int(entry["survivors_per_launch"]))
    except (KeyError, TypeError, ValueError):
        return None


def save_tuning(
    device_name: str,
    driver_version: int,
    tuning: Tuning,
    numbers_per_second: float = 0.0,
    path: Path | None = None,
) -> Path:
    """Store a tuning (atomically), keeping other devices' entries."""
    path = path or tuning_cache_path()
    entries = _read_tuning_file(path)
    entries[tuning_key(device_name, driver_version)] = {
        "threads_per_block": tuning.threads_per_block,
        "survivors_per_launch": tuning.survivors_per_launch,
        "numbers_per_second": float(numbers_per_second),
        "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    doc = {"format": _TUNING_FORMAT, "entries": entries}
    write_atomic(path, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8"))
    return path


# ------------------------------------------------------------------ backend


def _compile(cupy):
    """{name: RawKernel} for KERNEL_NAMES, trying COMPILE_OPTIONS in order."""
    code = KERNEL_SOURCE.read_text(encoding="utf-8")
    errors = []
    for options in COMPILE_OPTIONS:
        try:
            module = cupy.RawModule(code=code, options=options)
            return {name: module.get_function(name) for name in KERNEL_NAMES}
        except Exception as exc:  # CompileException, or NVRTC missing
            errors.append(f"{' '.join(options)}: {exc}")
    raise GpuUnavailable("the GPU kernel did not compile (" + "; ".join(errors)[:2000] + ")")


@dataclass(frozen=True, slots=True)
class CompileCheck:
    """Whether NVRTC compiles the kernel here; needs CuPy and NVRTC, no device.

    `options` is the option set that compiled (empty when none did); `detail`
    says which NVRTC was used, or why nothing compiled.
    """

    ok: bool
    options: tuple[str, ...]
    detail: str


def check_compile(arch: str = "compute_80") -> CompileCheck:
    """Compile KERNEL_SOURCE with NVRTC as the backend would, without a GPU.

    Tries COMPILE_OPTIONS in order, like _compile(); never raises. For `main.py
    gpu` (why is my GPU not used?) and the packaging smoke test.
    """
    try:
        from cupy_backends.cuda.libs import nvrtc

        major, minor = nvrtc.getVersion()
    except Exception as exc:  # no CuPy, or no NVRTC library next to it
        return CompileCheck(False, (), f"NVRTC is not available ({exc})")
    code = KERNEL_SOURCE.read_text(encoding="utf-8")
    errors = []
    for options in COMPILE_OPTIONS:
        prog = nvrtc.createProgram(code, KERNEL_SOURCE.name, [], [])
        try:
            nvrtc.compileProgram(prog, [*options, f"-arch={arch}"])
            ptx = nvrtc.getPTX(prog)
            ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
            missing = [n for n in KERNEL_NAMES if f".entry {n}(" not in ptx]
            if missing:
                errors.append(f"{' '.join(options)}: no entry {', '.join(missing)}")
                continue
            return CompileCheck(True, options, f"NVRTC {major}.{minor}")
        except Exception as exc:
            try:
                log_text = nvrtc.getProgramLog(prog).strip().splitlines()
            except Exception:
                log_text = []
            first = log_text[0] if log_text else ""
            errors.append(f"{' '.join(options)}: {exc} {first}".strip())
        finally:
            nvrtc.destroyProgram(prog)
    return CompileCheck(False, (), f"NVRTC {major}.{minor}: " + "; ".join(errors))


class _Slot:
    """One launch in flight: a stream and its own device/host buffers."""

    def __init__(self, cupy, max_blocks: int, max_threads: int, defer_cap: int) -> None:
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.desc = cupy.zeros((max_blocks, DESC_WORDS), dtype=cupy.uint64)
        self.records = cupy.zeros(max_blocks * max_threads * RECORD_WORDS, dtype=cupy.uint64)
        self.out = cupy.zeros((max_blocks, RECORD_WORDS), dtype=cupy.uint64)
        self.deferred = cupy.zeros((defer_cap, DEFER_WORDS), dtype=cupy.uint64)
        self.count = cupy.zeros(1, dtype=cupy.uint64)
        self.defer_cap = defer_cap
        self.start = cupy.cuda.Event()
        self.end = cupy.cuda.Event()
        self.pending: tuple[list[int], list[tuple[int, int]]] | None = None


class GpuBackend:
    """Runs evidence blocks on one CUDA device; same surface as CpuBackend."""

    name = "gpu"

    def __init__(
        self,
        params: Params,
        device: int = 0,
        tuning: Tuning | None = None,
        sieve: Sieve | None = None,
    ) -> None:
        status, found = find_device(device)
        import cupy

        self._cp = cupy
        self.params = params
        self.device = found
        self.driver_version = status.driver_version
        self.sieve = sieve if sieve is not None else load_sieve(params.sieve_k)
        self.duty = DutyCycle(1.0)
        self.tuning = tuning or load_tuning(self.device.name, self.driver_version) or DEFAULT_TUNING
        self._const = kernel_constants(params, self.sieve)
        # Survivor slots in one full block, for sizing launches and batches.
        self._block_slots = max(1, params.block_size * len(self.sieve) // self.sieve.modulus)
        self._rate = 0.0  # integers per wall-clock second of run_blocks, smoothed
        self._slots: list[_Slot] = []
        # Counters for bench/diagnostics: launches, deferred numbers, re-runs, jumps taken.
        self.stats = {"launches": 0, "deferred": 0, "reruns": 0, "jumps": 0}
        self._slot_shape: tuple[int, int] = (0, 0)
        s = self.sieve
        with cupy.cuda.Device(device):
            self._kernels = _compile(cupy)
            # Uploaded once; read-only on the device.
            self._tables = tuple(
                cupy.asarray(np.ascontiguousarray(a))
                for a in (s.residues, s.jump_c, s.jump_d, s.amax_c, s.amax_j, _POW3)
            )

    # -- public surface, as CpuBackend

    def warm_up(self) -> None:
        """Compile, allocate and run one small block before anything is timed."""
        lo = self.params.start
        self.run_block(lo, lo + min(self.params.block_size, 1 << 12))

    def run_block(self, lo: int, hi: int) -> BlockEvidence:
        """Evidence for [lo, hi), bit-identical to engine.reference.run_block."""
        return self.run_blocks([(lo, hi)], 1)[0]

    def run_blocks(self, ranges: Sequence[tuple[int, int]], cores: int = 1) -> list[BlockEvidence]:
        """Evidence for several ranges, pipelined over two streams.

        `cores` is accepted for CpuBackend compatibility; host work here is
        small (deferred numbers only) and runs on the calling thread.
        """
        del cores
        for lo, hi in ranges:
            check_range(lo, hi)
        results: list[BlockEvidence | None] = [None] * len(ranges)
        fast: list[int] = []
        for i, (lo, hi) in enumerate(ranges):
            if hi > FAST_RANGE_LIMIT:
                results[i] = reference.run_block(self.sieve, lo, hi, self.params.exact_step_bound)
            else:
                fast.append(i)
        t0 = time.perf_counter()
        with self._cp.cuda.Device(self.device.index):
            self._run_pipelined(ranges, fast, results)
        wall = time.perf_counter() - t0
        if fast and wall > 0:
            # Wall time, not event time: launches on the two streams overlap,
            # and a batch is meant to last BATCH_SECONDS of the caller's time.
            rate = sum(ranges[i][1] - ranges[i][0] for i in fast) / wall
            self._rate = rate if not self._rate else 0.7 * self._rate + 0.3 * rate
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def batch_blocks(self, cores: int) -> int:
        """Blocks per batch: whole launches filling about BATCH_SECONDS at the measured speed.

        Two launches until the first launch has been timed, so the two
        streams overlap from the start; `cores` does not apply to a GPU.
        """
        del cores
        return batch_size(self.launch_blocks, self.params.block_size, self._rate)

    @property
    def launch_blocks(self) -> int:
        """Full evidence blocks per launch under the current tuning."""
        return blocks_per_launch(self._block_slots, self.tuning)

    @property
    def numbers_per_second(self) -> float:
        """The measured speed, by wall time of run_blocks (0 before the first)."""
        return self._rate

    def set_duty_cycle(self, fraction: float) -> None:
        """Keep the GPU busy at most this share (MIN_DUTY..1.0) of wall time."""
        self.duty.set_share(check_duty(fraction))

    def set_tuning(self, tuning: Tuning) -> None:
        self.tuning = tuning

    def close(self) -> None:
        """Wait for work in flight and free device buffers."""
        for slot in self._slots:
            slot.stream.synchronize()
        self._slots = []
        self._slot_shape = (0, 0)

    # -- internals

    def _groups(self, ranges, indices) -> list[list[int]]:
        if not indices:
            return []
        slots = int(block_descriptors(self.sieve, [ranges[indices[0]]])[0, 3])
        size = blocks_per_launch(slots, self.tuning)
        return [indices[i : i + size] for i in range(0, len(indices), size)]

    def _ensure_slots(self, max_blocks: int, max_threads: int) -> None:
        want = (max_blocks, max_threads)
        if self._slots and self._slot_shape[0] >= want[0] and self._slot_shape[1] >= want[1]:
            return
        self.close()
        shape = (max(want[0], self._slot_shape[0]), max(want[1], self._slot_shape[1]))
        self._slots = [_Slot(self._cp, *shape, DEFER_CAPACITY) for _ in range(2)]
        self._slot_shape = shape

    def _run_pipelined(self, ranges, indices, results) -> None:
        groups = self._groups(ranges, indices)
        if not groups:
            return
        plans = []
        for group in groups:
            sub = [ranges[i] for i in group]
            desc = block_descriptors(self.sieve, sub)
            gx = grid_x(int(desc[:, 3].max()), self.tuning.threads_per_block)
            plans.append((group, sub, desc, gx))
        self._ensure_slots(
            max(len(p[0]) for p in plans), max(p[3] for p in plans) * self.tuning.threads_per_block
        )
        # Two launches in flight at full duty; one when throttled, so the
        # sleep is real idle time rather than time the other stream uses.
        depth = 2 if self.duty.share >= 1.0 else 1
        in_flight: deque[_Slot] = deque()
        for n, plan in enumerate(plans):
            slot = self._slots[n % 2]
            if len(in_flight) >= depth or slot in in_flight:
                self._collect(in_flight.popleft(), results)
            self._enqueue(slot, *plan)
            in_flight.append(slot)
        while in_flight:
            self._collect(in_flight.popleft(), results)

    def _enqueue(self, slot: _Slot, group, sub, desc, gx) -> None:
        c = self._const
        tpb = self.tuning.threads_per_block
        e = len(sub)
        glide, reduce_ = self._kernels["hs_glide"], self._kernels["hs_reduce"]
        with slot.stream:
            slot.start.record(slot.stream)
            slot.desc[:e].set(desc, stream=slot.stream)
            slot.count.fill(0)
            glide(
                (gx, e),
                (tpb,),
                (
                    *self._tables,
                    np.uint64(c["survivors"]),
                    np.uint32(c["k"]),
                    np.uint64(c["bmax"]),
                    np.uint32(c["step_bound"]),
                    np.uint32(c["pow2k_mod9"]),
                    np.uint32(c["kept9_mask"]),
                    slot.desc,
                    slot.records,
                    slot.deferred,
                    slot.count,
                    np.uint64(slot.defer_cap),
                ),
            )
            reduce_((e,), (REDUCE_THREADS,), (slot.records, np.uint64(gx * tpb), slot.out))
            slot.end.record(slot.stream)
        slot.pending = (group, sub)

    def _collect(self, slot: _Slot, results) -> None:
        cp = self._cp
        group, sub = slot.pending
        slot.pending = None
        with slot.stream:
            out = slot.out[: len(sub)].get(stream=slot.stream)
            count = int(slot.count.get(stream=slot.stream)[0])
            stored = min(count, slot.defer_cap)
            deferred = (
                slot.deferred[:stored].get(stream=slot.stream)
                if stored
                else np.zeros((0, DEFER_WORDS), np.uint64)
            )
        slot.stream.synchronize()
        busy_s = cp.cuda.get_elapsed_time(slot.start, slot.end) / 1000.0
        self.stats["launches"] += 1
        self.stats["deferred"] += count
        self.stats["jumps"] += int(out[:, 7].sum())
        evidence, rerun = merge_launch(self.params, sub, out, deferred)
        for i, ev in zip(group, evidence, strict=True):
            if ev is not None:
                results[i] = ev
        if rerun:
            # The deferred buffer was too small: run those blocks again with
            # room for every deferred number this launch reported.
            self.stats["reruns"] += 1
            self._rerun([group[j] for j in rerun], [sub[j] for j in rerun], count, results)
        rest_after_launch(self.duty, busy_s)

    def _rerun(self, group, sub, capacity, results) -> None:
        desc = block_descriptors(self.sieve, sub)
        tpb = self.tuning.threads_per_block
        gx = grid_x(int(desc[:, 3].max()), tpb)
        slot = _Slot(self._cp, len(sub), gx * tpb, max(capacity, DEFER_CAPACITY))
        self._enqueue(slot, group, sub, desc, gx)
        self._collect(slot, results)


# ------------------------------------------------------------------- tuning


def autotune(
    device: int = 0,
    params: Params = PRODUCTION,
    seconds: float = 10.0,
    *,
    candidates: Sequence[Tuning] = TUNING_CANDIDATES,
    save: bool = True,
    cache_path: Path | None = None,
) -> Tuning:
    """Pick the fastest tuning for a device by a short calibration, and cache it.

    Each candidate runs whole launches of consecutive blocks from
    params.start for about seconds / len(candidates); the rate counts every
    integer of the range. Raises GpuUnavailable without a GPU.
    """
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    backend = GpuBackend(params, device=device, tuning=DEFAULT_TUNING)
    try:
        backend.warm_up()
        share = seconds / max(1, len(candidates))
        best, best_rate = DEFAULT_TUNING, -1.0
        lo = params.start
        size = params.block_size
        for cand in candidates:
            backend.set_tuning(cand)
            # Four launches per call, so the two streams overlap as in real runs.
            n_blocks = 4 * backend.launch_blocks
            ranges = [(lo + i * size, lo + (i + 1) * size) for i in range(n_blocks)]
            try:
                backend.run_blocks(ranges[:1])  # allocate this geometry's buffers
                done = 0
                t0 = time.perf_counter()
                while True:
                    backend.run_blocks(ranges)
                    done += n_blocks * size
                    elapsed = time.perf_counter() - t0
                    if elapsed >= share:
                        break
            except Exception as exc:  # out of device memory, say: not this geometry
                log.warning("gpu tune %s failed (%s); skipping it", cand, exc)
                backend.close()  # frees this geometry's buffers
                continue
            rate = done / elapsed
            log.info("gpu tune %s: %.3g numbers/s", cand, rate)
            if rate > best_rate:
                best, best_rate = cand, rate
        if best_rate < 0:
            raise GpuUnavailable("no launch geometry ran on this GPU")
        if save:
            save_tuning(backend.device.name, backend.driver_version, best, best_rate, cache_path)
        return best
    finally:
        backend.close()


# The first use of a device without a cached tuning calibrates it this long.
AUTO_TUNE_SECONDS = 4.0


def ensure_tuned(
    device: int, params: Params = PRODUCTION, seconds: float = AUTO_TUNE_SECONDS
) -> Tuning:
    """The device's cached tuning; without one, a short calibration first (cached).

    Raises GpuUnavailable without a GPU or when no geometry runs.
    """
    status, found = find_device(device)
    cached = load_tuning(found.name, status.driver_version)
    if cached is not None:
        return cached
    log.warning("calibrating GPU %d (%s) once, for about %.0f s", device, found.name, seconds)
    return autotune(device, params, seconds)
