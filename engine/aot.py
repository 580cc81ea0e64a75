"""The CPU kernel compiled ahead of time: found, checked and loaded without numba.

numba's import and first dispatch cost about 0.35 s of every start, more than
the whole start-up budget of the CLI. engine/aot_build.py therefore has numba
compile the one kernel (engine/cpu_kernel.py) once into a small shared library
with a plain C entry point, and this module loads it with ctypes; numba is not
imported on this path. ctypes releases the GIL during the call, so blocks
still run on several cores from plain threads.

A library is used only when all of this holds, else engine.cpu falls back to
the JIT kernel:
- its name carries the key of what it was built from: the bytes of the
  kernel's modules, numba's and llvmlite's versions, this CPU (model and
  feature flags) and numba's CPU settings, so a stale library is never found;
- its SHA-256 matches the manifest written beside it;
- it loads, and it reproduces, bit for bit, the self-test cases that the JIT
  kernel computed when it was built (normal blocks, 128-bit overflow and
  step-bound deferrals, a full deferral buffer).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import logging
import marshal
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.sieve import Sieve

log = logging.getLogger(__name__)

# Bump when the entry point or the manifest changes shape.
ABI_VERSION = 1
ENTRY = "hailstone_run_range"
# engine.cpu_kernel._run_range's parameters, in order, with their C types: scalars
# as themselves, every array as (pointer, rows). aot_build checks the kernel
# against this list, so the two cannot drift apart.
PARAMS: tuple[tuple[str, str], ...] = (
    ("lo_hi", "u64"), ("lo_lo", "u64"), ("length", "i64"),
    ("residues", "u32[]"), ("jump_c", "u8[]"), ("jump_d", "u64[]"), ("amax_c", "u8[]"),
    ("amax_j", "u8[]"), ("bmax", "u64"), ("k", "i64"), ("step_bound", "u64"),
    ("max_hi", "u64"), ("max_lo", "u64"), ("maxn_hi", "u64"), ("maxn_lo", "u64"),
    ("kept9", "u8[]"), ("pow3", "u64[]"), ("deferred", "u64[,2]"), ("out", "u64[]"),
    ("buf", "i64[]"),
)  # fmt: skip
ARRAY_DTYPES = {"u32[]": np.uint32, "u8[]": np.uint8, "u64[]": np.uint64,
                "i64[]": np.int64, "u64[,2]": np.uint64}  # fmt: skip
# The modules whose text decides what the kernel computes (the key covers them).
SOURCES = ("engine.cpu_kernel", "engine.u128", "engine.cpu", "engine.sieve", "engine.aot",
           "engine.aot_build")  # fmt: skip
_CPUINFO_KEYS = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags",
                 "Features", "CPU implementer", "CPU architecture", "CPU variant", "CPU part",
                 "CPU revision", "isa", "uarch")  # fmt: skip
_NUMBA_CODEGEN_ENV = ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_OPT")
_MASK64 = (1 << 64) - 1

KernelCall = Callable[..., None]


def supported() -> bool:
    """Linux only for now: the library is linked with `cc -shared` and GNU ld's
    version script, and this is the only platform the project tests it on."""
    return sys.platform.startswith("linux")


def compiler() -> str | None:
    """The C compiler that links the library: $CC, else `cc` on PATH."""
    name = os.environ.get("CC") or "cc"
    return shutil.which(name)


def library_dir() -> Path:
    """$HAILSTONE_CACHE_DIR/kernel, else `kernel` under the user cache folder."""
    override = os.environ.get("HAILSTONE_CACHE_DIR")
    if override:
        return Path(override) / "kernel"
    import platformdirs

    return Path(platformdirs.user_cache_dir("hailstone", appauthor=False)) / "kernel"


def library_paths(key: str) -> tuple[Path, Path, Path]:
    """(library, manifest, failure note) for one key."""
    base = library_dir() / f"cpu-{key}"
    return base.with_suffix(".so"), base.with_suffix(".json"), base.with_suffix(".failed")


def _module_bytes(name: str) -> bytes | None:
    """A module's source, or its code object where there is no source (a frozen app)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    try:
        if spec.origin and os.path.isfile(spec.origin):
            return Path(spec.origin).read_bytes()
        code = spec.loader.get_code(name)  # type: ignore[union-attr]
    except (AttributeError, ImportError, OSError):
        return None
    return marshal.dumps(code) if code is not None else None


def _package_version(name: str) -> bytes | None:
    """numba's or llvmlite's version, without importing it: its _version.py
    (which names the exact revision), else the installed distribution's metadata."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "_version.py"
            try:
                return candidate.read_bytes()
            except OSError:
                continue
    try:
        from importlib import metadata

        return metadata.version(name).encode()
    except Exception:  # noqa: BLE001 - any failure means: no key, no library
        return None


def cpu_fingerprint() -> bytes:
    """This CPU as numba's code generation sees it: architecture, model and feature
    flags (/proc/cpuinfo, first processor) and numba's CPU overrides."""
    parts = [sys.platform, os.uname().machine]
    parts += [f"{v}={os.environ.get(v, '')}" for v in _NUMBA_CODEGEN_ENV]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                if key.strip() in _CPUINFO_KEYS:
                    parts.append(f"{key.strip()}={value.strip()}")
    except OSError:
        pass
    return "\n".join(parts).encode()


def library_key() -> str | None:
    """The key of the library this process may use, or None when one cannot be had."""
    h = hashlib.sha256(f"hailstone-aot-{ABI_VERSION}".encode())
    for part in [*(_module_bytes(m) for m in SOURCES), _package_version("numba"),
                 _package_version("llvmlite"), cpu_fingerprint()]:  # fmt: skip
        if part is None:
            return None
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:32]


class AotKernel:
    """The kernel in a loaded library; `bind` gives the call engine.cpu uses."""

    name = "aot"

    def __init__(self, function: ctypes._CFuncPtr, path: Path) -> None:
        self._fn = function
        self.path = path

    def bind(self, sieve: Sieve, kept9: np.ndarray, pow3: np.ndarray) -> KernelCall:
        """A call over `sieve`'s tables: (pos, length, step_bound, thr, max_n,
        deferred, out, buf), as engine.cpu_kernel.JitKernel's."""
        keep = []  # the arrays whose addresses the call holds live as long as it

        def pointer(a: np.ndarray, dtype: type) -> tuple[int, int]:
            a = np.ascontiguousarray(a, dtype=dtype)
            keep.append(a)
            return a.ctypes.data, a.shape[0]

        tables = []
        for name in ("residues", "jump_c", "jump_d", "amax_c", "amax_j"):
            tables += pointer(getattr(sieve, name), ARRAY_DTYPES[dict(PARAMS)[name]])
        kept9_p = pointer(kept9, np.uint8)
        pow3_p = pointer(pow3, np.uint64)
        bmax, k = sieve.bmax, sieve.k
        fn = self._fn

        def call(pos, length, step_bound, thr, max_n, deferred, out, buf) -> None:
            if not (deferred.flags.c_contiguous and out.flags.c_contiguous
                    and buf.flags.c_contiguous and deferred.dtype == np.uint64
                    and out.dtype == np.uint64 and buf.dtype == np.int64
                    and deferred.ndim == 2 and deferred.shape[1] == 2 and out.shape[0] >= 9):  # fmt: skip
                raise ValueError("kernel buffers of the wrong type or layout")
            status = fn(
                pos >> 64, pos & _MASK64, length, *tables, bmax, k, step_bound, thr >> 64,
                thr & _MASK64, max_n >> 64, max_n & _MASK64, *kept9_p, *pow3_p,
                deferred.ctypes.data, deferred.shape[0], out.ctypes.data, out.shape[0],
                buf.ctypes.data, buf.shape[0],
            )  # fmt: skip
            if status != 0:
                raise RuntimeError(f"the ahead-of-time kernel failed (status {status})")

        call.keep = keep  # type: ignore[attr-defined]
        return call


def _argtypes() -> list:
    out: list = []
    for _, kind in PARAMS:
        if kind == "u64":
            out.append(ctypes.c_uint64)
        elif kind == "i64":
            out.append(ctypes.c_int64)
        else:
            out += [ctypes.c_void_p, ctypes.c_int64]
    return out


def self_test(kernel: AotKernel, spec: dict) -> str | None:
    """Run the manifest's cases; None when every output matches, else what differed."""
    from engine.cpu import _KEPT9, _POW3

    t = spec["tables"]
    sieve = Sieve(
        k=spec["k"],
        residues=np.array(t["residues"], dtype=np.uint32),
        mod9_counts=np.zeros(9, dtype=np.int64),
        jump_c=np.array(t["jump_c"], dtype=np.uint8),
        jump_d=np.array(t["jump_d"], dtype=np.uint64),
        amax_c=np.array(t["amax_c"], dtype=np.uint8),
        amax_j=np.array(t["amax_j"], dtype=np.uint8),
        bmax=spec["bmax"],
    )
    call = kernel.bind(sieve, _KEPT9, _POW3)
    for i, case in enumerate(spec["cases"]):
        out, deferred = run_case(call, case)
        if out != case["out"] or deferred != case["deferred"]:
            return f"self-test case {i} differs"
    return None


def run_case(call: KernelCall, case: dict) -> tuple[list[int], list[list[int]]]:
    """One self-test case through a bound kernel: (out, deferred rows used)."""
    deferred = np.zeros((case["rows"], 2), dtype=np.uint64)
    out = np.zeros(9, dtype=np.uint64)
    buf = np.empty(case["chunk"], dtype=np.int64)
    call(case["lo"], case["length"], case["step_bound"], case["max_value"], case["max_n"],
         deferred, out, buf)  # fmt: skip
    n_def = int(out[6])
    return [int(x) for x in out], [[int(a), int(b)] for a, b in deferred[:n_def].tolist()]


# why_not() for the two cases where a (re)build would not help.
FAILED_BEFORE = "a build for this key failed before"
ABSENT = "absent"
_NOT_HERE = ("not supported on", "no key")

_lock = threading.Lock()
_loaded: AotKernel | None = None
_why_not = "not looked for yet"


def load(*, refresh: bool = False) -> AotKernel | None:
    """The checked library for this process, loaded once; None (see `why_not`) if
    there is none that may be used."""
    global _loaded, _why_not
    with _lock:
        if _loaded is not None or (not refresh and _why_not != "not looked for yet"):
            return _loaded
        try:
            _loaded, _why_not = _load()
        except Exception as exc:  # noqa: BLE001 - anything wrong here means: use the JIT
            _loaded, _why_not = None, f"failed to load: {exc!r}"
        if _loaded is None:
            log.info("ahead-of-time CPU kernel not used: %s", _why_not)
        return _loaded


def why_not() -> str:
    """Why `load` found no usable library ("" when it did)."""
    return "" if _loaded is not None else _why_not


def _load() -> tuple[AotKernel | None, str]:
    if not supported():
        return None, f"not supported on {sys.platform}"
    key = library_key()
    if key is None:
        return None, "no key (kernel sources, numba or llvmlite not found)"
    so, manifest_path, failed = library_paths(key)
    if failed.exists():
        return None, f"{FAILED_BEFORE}: {failed}"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, ABSENT
    except (OSError, ValueError) as exc:
        return None, f"unreadable manifest: {exc}"
    if manifest.get("abi") != ABI_VERSION or manifest.get("key") != key:
        return None, "manifest of another build"
    try:
        data = so.read_bytes()
    except OSError as exc:
        return None, f"unreadable library: {exc}"
    if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        return None, "damaged (SHA-256 differs from the manifest)"
    try:
        lib = ctypes.CDLL(str(so))
        fn = getattr(lib, ENTRY)
    except (OSError, AttributeError) as exc:
        return None, f"does not load: {exc}"
    fn.argtypes = _argtypes()
    fn.restype = ctypes.c_int64
    kernel = AotKernel(fn, so)
    failure = self_test(kernel, manifest["self_test"])
    if failure is not None:
        return None, failure
    return kernel, ""


def can_build() -> bool:
    """True when this process could build a library: platform, key, a C compiler and
    a cache folder it may write (else every start would compile in vain)."""
    return (
        supported()
        and compiler() is not None
        and _writable(library_dir())
        and library_key() is not None
    )


def _writable(folder: Path) -> bool:
    """True when `folder` is, or could be created as, a folder this process may write."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def worth_building() -> bool:
    """True when the last `load` found nothing usable that a build could replace:
    absent, damaged, stale manifest, does not load, fails its self-test; not
    after a failed build for this key, nor where there can be no library."""
    reason = why_not()
    return (
        bool(reason)
        and not reason.startswith(FAILED_BEFORE)
        and not reason.startswith(_NOT_HERE)
        and can_build()
    )


def note_unusable(reason: str) -> None:
    """Record that a library just built for this key cannot be used (say, a cache
    folder mounted noexec), so later starts use the JIT without building again."""
    key = library_key()
    if key is None:
        return
    try:
        from engine.files import write_atomic

        write_atomic(library_paths(key)[2], reason.encode())
    except OSError:
        pass


def build_failed_before() -> bool:
    """True when a build for the current key failed (not retried until the key changes)."""
    key = library_key()
    return key is not None and library_paths(key)[2].exists()


def forget_loaded() -> None:
    """Look again on the next `load` (tests)."""
    global _loaded, _why_not
    with _lock:
        _loaded, _why_not = None, "not looked for yet"
