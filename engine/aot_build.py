"""Builds the ahead-of-time CPU kernel that engine/aot.py loads. Imports numba.

numba compiles engine.cpu_kernel._run_range itself, the same Python function
the JIT path runs, with two differences that make the code self-contained:
no reference counting (`_nrt=False`; the kernel allocates nothing) and no
Python wrappers (no_cpython_wrapper, no_cfunc_wrapper: numba's cfunc wrapper
reports exceptions through the Python C API, which a library loaded without
numba cannot reach). A small entry point in LLVM IR, `hailstone_run_range`,
takes each array as (pointer, rows), builds numba's array structures around
them and calls the kernel by numba's calling convention; it returns 0, or -1
if the kernel raised (it cannot, for valid buffers). The linked module is
emitted as a position-independent object for this CPU, and linked into a
shared library with the system C compiler (`-z defs`: an unresolved symbol
fails the build rather than the load).

Before it is published the library is loaded from its build folder and must
reproduce the self-test cases, which the JIT kernel computes here and which
the manifest keeps for every later load.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine import aot
from engine.files import write_atomic
from engine.params import PRODUCTION

log = logging.getLogger(__name__)

# Self-test cases: (lo, length, step bound, block maximum so far, its n, deferral
# rows, chunk). Jumps refused then taken as the maximum grows; jumps always taken;
# the 64-bit limb boundary; 128-bit overflow deferrals near 2**100; step-bound
# deferrals that fill a small buffer (status DEFER_FULL and a resume offset); short
# chunks.
SELF_TEST_K = 8
SELF_TEST_CASES = (
    (2**71 + 12_345, 3_000, PRODUCTION.step_bound, 0, 0, 1024, 4096),
    (2**71, 1 << 14, PRODUCTION.step_bound, 2**127, 2**71 + 1, 1024, 4096),
    (2**64 - 3_000, 6_000, PRODUCTION.step_bound, 0, 0, 1024, 4096),
    (2**100 - 301, 600, PRODUCTION.step_bound, 0, 0, 1024, 4096),
    (2**71, 4_000, 3, 0, 0, 8, 4096),
    (2**71 + 777, 5_000, PRODUCTION.step_bound, 0, 0, 1024, 64),
)
# Libraries kept in the folder (other keys: other numba versions, an old kernel).
KEEP_LIBRARIES = 4


class AotBuildError(RuntimeError):
    """The library could not be built here; the message says why."""


def build() -> Path:
    """Compile, link, self-test and publish the library for the current key.

    Returns its path. On failure writes the key's `.failed` note (so that later
    starts do not retry until the key changes) and raises AotBuildError.
    """
    if not aot.supported():
        raise AotBuildError(f"not supported on this platform ({sys.platform})")
    cc = aot.compiler()
    if cc is None:
        raise AotBuildError("no C compiler (cc) to link the library")
    key = aot.library_key()
    if key is None:
        raise AotBuildError("no key (kernel sources, numba or llvmlite not found)")
    so, manifest_path, failed = aot.library_paths(key)
    t0 = time.perf_counter()
    try:
        data = _compile_and_link(cc)
        spec = self_test_spec()
        with tempfile.TemporaryDirectory(prefix="hailstone-aot-") as tmp:
            trial = Path(tmp) / "trial.so"  # its own path: dlopen keeps a path once loaded
            trial.write_bytes(data)
            kernel = _open(trial)
            failure = aot.self_test(kernel, spec)
            if failure is not None:
                raise AotBuildError(f"the new library fails its self-test: {failure}")
    except AotBuildError as exc:
        _note_failure(failed, str(exc))
        raise
    except Exception as exc:  # numba, LLVM or the linker refused: note it, use the JIT
        _note_failure(failed, repr(exc))
        raise AotBuildError(f"build failed: {exc!r}") from exc
    manifest = {
        "abi": aot.ABI_VERSION,
        "key": key,
        "sha256": hashlib.sha256(data).hexdigest(),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.perf_counter() - t0, 2),
        "codegen": _codegen_description(),
        "self_test": spec,
    }
    try:
        write_atomic(so, data, mode=0o755)
        write_atomic(manifest_path, json.dumps(manifest).encode())  # last: makes the pair valid
    except OSError as exc:  # a read-only or full cache folder
        _note_failure(failed, f"cannot write the library: {exc}")
        raise AotBuildError(f"cannot write the library: {exc}") from exc
    failed.unlink(missing_ok=True)
    _prune(keep={so.name, manifest_path.name})
    log.info("ahead-of-time CPU kernel built in %.1f s: %s", manifest["build_seconds"], so)
    return so


def _compile_and_link(cc: str) -> bytes:
    obj = compile_object()
    with tempfile.TemporaryDirectory(prefix="hailstone-aot-") as tmp:
        folder = Path(tmp)
        (folder / "kernel.o").write_bytes(obj)
        # Only the entry point is exported; numba's internal symbols stay local.
        (folder / "exports.map").write_text(f"{{ global: {aot.ENTRY}; local: *; }};\n")
        cmd = [cc, "-shared", "-o", str(folder / "kernel.so"), str(folder / "kernel.o"),
               f"-Wl,--version-script={folder / 'exports.map'}", "-Wl,-z,defs",
               "-Wl,-z,noexecstack"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AotBuildError(f"linking failed: {done.stderr.strip()[:500]}")
        return (folder / "kernel.so").read_bytes()


def _numba_types() -> list:
    from numba import types

    kinds = {
        "u64": types.uint64,
        "i64": types.int64,
        "u32[]": types.Array(types.uint32, 1, "C"),
        "u8[]": types.Array(types.uint8, 1, "C"),
        "u64[]": types.Array(types.uint64, 1, "C"),
        "i64[]": types.Array(types.int64, 1, "C"),
        "u64[,2]": types.Array(types.uint64, 2, "C"),
    }
    return [kinds[kind] for _, kind in aot.PARAMS]


def compile_object() -> bytes:
    """The kernel and its C entry point as a native object file for this CPU."""
    import llvmlite.binding as ll
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.core.compiler_lock import global_compiler_lock
    from numba.np.arrayobj import populate_array

    from engine.cpu_kernel import _run_range

    names = list(inspect.signature(_run_range.py_func).parameters)
    if names != [name for name, _ in aot.PARAMS]:
        raise AotBuildError(f"engine.aot.PARAMS does not match the kernel's parameters {names}")
    argtys = tuple(_numba_types())
    kernel = njit(_run_range.py_func, nogil=True, _nrt=False, no_cpython_wrapper=True,
                  no_cfunc_wrapper=True)  # fmt: skip
    kernel.compile(argtys)
    cres = kernel.overloads[argtys]
    ctx = cres.target_context
    codegen = ctx.codegen()
    i64 = ir.IntType(64)
    module = ctx.create_module("hailstone_aot_entry")
    c_args: list[ir.Type] = []
    for t in argtys:
        if isinstance(t, types.Array):
            c_args += [ctx.get_value_type(t.dtype).as_pointer(), i64]
        else:
            c_args.append(ctx.get_value_type(t))
    entry = ir.Function(module, ir.FunctionType(i64, c_args), aot.ENTRY)
    builder = ir.IRBuilder(entry.append_basic_block())
    incoming = iter(entry.args)
    values = []
    for t in argtys:
        if not isinstance(t, types.Array):
            values.append(next(incoming))
            continue
        data, rows = next(incoming), next(incoming)
        itemsize = ctx.get_constant(types.intp, ctx.get_abi_sizeof(ctx.get_data_type(t.dtype)))
        if t.ndim == 1:
            shape, strides = [rows], [itemsize]
        else:  # (rows, 2), C order
            two = ctx.get_constant(types.intp, 2)
            shape, strides = [rows, two], [builder.mul(itemsize, two), itemsize]
        array = ctx.make_array(t)(ctx, builder)
        populate_array(array, data=data, shape=cgutils.pack_array(builder, shape),
                       strides=cgutils.pack_array(builder, strides), itemsize=itemsize,
                       meminfo=None)  # fmt: skip
        values.append(array._getvalue())
    callee = cgutils.get_or_insert_function(
        module,
        ctx.call_conv.get_function_type(cres.signature.return_type, argtys),
        cres.fndesc.llvm_func_name,
    )
    status, _ = ctx.call_conv.call_function(
        builder, callee, cres.signature.return_type, argtys, values
    )
    builder.ret(builder.select(status.is_error, ir.Constant(i64, -1), ir.Constant(i64, 0)))
    with global_compiler_lock:
        library = codegen.create_library("hailstone_aot")
        library.add_ir_module(module)
        library.add_linking_library(cres.library)
        library.finalize()
        final = library._final_module
    undefined = sorted(
        f.name for f in final.functions if f.is_declaration and not f.name.startswith("llvm.")
    )
    undefined += sorted(g.name for g in final.global_variables if g.is_declaration)
    if undefined:  # e.g. numba's runtime: the library could not load without numba
        raise AotBuildError(f"the kernel needs symbols from outside: {undefined[:5]}")
    # numba's JIT target machine is for this CPU but not position-independent,
    # which a shared library must be: the same CPU and features, PIC.
    machine = ll.Target.from_triple(ll.get_process_triple()).create_target_machine(
        cpu=codegen._get_host_cpu_name(),
        features=codegen._get_host_cpu_features(),
        opt=3,
        reloc="pic",
        codemodel="default",
    )
    return machine.emit_object(final)


def _codegen_description() -> dict:
    import llvmlite
    import llvmlite.binding as ll
    import numba

    return {
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "triple": ll.get_process_triple(),
        "cpu": ll.get_host_cpu_name(),
    }


def self_test_spec() -> dict:
    """The self-test tables (the 2**8 sieve) and cases, answered by the JIT kernel."""
    from engine.cpu import _KEPT9, _POW3
    from engine.cpu_kernel import JitKernel
    from engine.sieve import load

    s = load(SELF_TEST_K)
    call = JitKernel().bind(s, _KEPT9, _POW3)
    cases = []
    for lo, length, step_bound, max_value, max_n, rows, chunk in SELF_TEST_CASES:
        case = {"lo": lo, "length": length, "step_bound": step_bound, "max_value": max_value,
                "max_n": max_n, "rows": rows, "chunk": chunk}  # fmt: skip
        case["out"], case["deferred"] = aot.run_case(call, case)
        cases.append(case)
    names = ("residues", "jump_c", "jump_d", "amax_c", "amax_j")
    return {
        "k": s.k,
        "bmax": s.bmax,
        "tables": {name: getattr(s, name).tolist() for name in names},
        "cases": cases,
    }


def _open(path: Path) -> aot.AotKernel:
    import ctypes

    fn = getattr(ctypes.CDLL(str(path)), aot.ENTRY)
    fn.argtypes = aot._argtypes()
    fn.restype = ctypes.c_int64
    return aot.AotKernel(fn, path)


def _note_failure(path: Path, reason: str) -> None:
    log.warning("ahead-of-time CPU kernel not built: %s", reason)
    try:
        write_atomic(path, reason.encode())
    except OSError:
        pass  # a read-only cache: the next start tries again


def _prune(keep: set[str]) -> None:
    """Remove all but the newest KEEP_LIBRARIES libraries (and their manifests), and
    the failure notes of other keys."""
    folder = aot.library_dir()
    try:
        libraries = sorted(folder.glob("cpu-*.so"), key=lambda p: p.stat().st_mtime, reverse=True)
        notes = list(folder.glob("cpu-*.failed"))
    except OSError:
        return
    for note in notes:
        note.unlink(missing_ok=True)  # this key's was removed by the build that succeeded
    for old in libraries[KEEP_LIBRARIES:]:
        if old.name in keep:
            continue
        for path in (old, old.with_suffix(".json"), old.with_suffix(".failed")):
            path.unlink(missing_ok=True)
