"""Command-line sub-commands of the engine: `verify`, `bench` and `gpu`.

The contract (docs/ARCHITECTURE.md, "CLI") is relied on by scripts: with
--json exactly one JSON object goes to stdout; bad arguments give one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import operator
import os
import sys

from engine.bench import run_bench
from engine.job import BACKENDS, BackendUnavailable, Verifier, make_backend, parse_devices
from engine.params import PRODUCTION
from engine.sieve import SieveDamaged

# The sieve file failed its check while the run used it: nothing was reported.
FAILED = 1
USAGE_ERROR = 2
# The range holds a number that did not fall below itself within the exact bound: it
# was not verified (a historic finding if it stands), so `verify` must not exit 0.
CANDIDATES_FOUND = 3

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Pow: operator.pow,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.LShift: operator.lshift,
}


class UsageError(ValueError):
    """A bad command-line value; the message is shown as is."""


def parse_integer(text: str) -> int:
    """An integer written in decimal or as a simple expression (2**71+5, 2^71, 1<<40).

    `^` means power, as in the published literature. Only integer literals and
    + - * ** // % << and parentheses are allowed; exponents are capped so a
    typo cannot hang the program.
    """
    source = text.strip().replace("_", "").replace("^", "**")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise UsageError(f"not an integer: {text!r}") from None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow | ast.LShift) and not 0 <= right <= 4096:
                raise UsageError(f"exponent out of range in {text!r}")
            if isinstance(node.op, ast.FloorDiv | ast.Mod) and right == 0:
                raise UsageError(f"division by zero in {text!r}")
            return _BINOPS[type(node.op)](left, right)
        raise UsageError(f"not an integer: {text!r}")

    return ev(tree)


def _default_cores() -> int:
    return max(1, os.cpu_count() or 1)


def add_gpu_devices_argument(parser: argparse.ArgumentParser) -> None:
    """--gpu-devices LIST, as verify, bench and node take it (parse with parse_devices)."""
    parser.add_argument(
        "--gpu-devices",
        default="",
        metavar="LIST",
        help="GPUs to use, by index, comma-separated (default: all)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    v = subparsers.add_parser(
        "verify",
        help="verify a range of integers and print its evidence",
        description="Verify every integer in [START, END) and print the evidence. "
        "START and END are integers or expressions such as 2**71+5; END is exclusive.",
    )
    v.add_argument("start", metavar="START")
    v.add_argument("end", metavar="END", nargs="?")
    v.add_argument("--count", metavar="N", help="verify N integers from START (instead of END)")
    v.add_argument("--backend", default="cpu", help="reference, cpu or gpu (default cpu)")
    v.add_argument("--cores", type=int, default=None, help="CPU threads (default: all)")
    add_gpu_devices_argument(v)
    v.add_argument(
        "--exact-step-bound",
        type=int,
        default=PRODUCTION.exact_step_bound,
        metavar="N",
        help="odd steps before a number is a candidate (default: the protocol's 2^22)",
    )
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.set_defaults(func=cmd_verify)

    b = subparsers.add_parser(
        "bench",
        help="measure throughput at 2^71 in numbers per second",
        description="Throughput at 2^71 in numbers per second, counting every integer of the "
        "range covered. Warms up before timing.",
    )
    b.add_argument("--backend", default="cpu", help="cpu or gpu (default cpu)")
    b.add_argument("--cores", type=int, default=None, help="CPU threads (default: all)")
    add_gpu_devices_argument(b)
    b.add_argument("--seconds", type=float, default=10.0, help="timed duration (default 10)")
    b.add_argument("--tune", action="store_true", help="GPU: re-run the auto-tuning first")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=cmd_bench)

    g = subparsers.add_parser(
        "gpu",
        help="say whether a GPU can be used here, and why not",
        description="Probe CUDA through CuPy, list the devices with their cached tuning, "
        "and compile the kernel with NVRTC (no device needed for that part).",
    )
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.set_defaults(func=cmd_gpu)


def cmd_gpu(args: argparse.Namespace) -> int:
    """Exit 0 when a GPU can compute here, 1 when not (the output says why)."""
    from engine import gpu

    status = gpu.probe()
    compiled = gpu.check_compile()
    devices = []
    for d in status.devices:
        tuning = gpu.load_tuning(d.name, status.driver_version)
        devices.append(
            {
                "index": d.index,
                "name": d.name,
                "compute_capability": f"{d.compute_capability[0]}.{d.compute_capability[1]}",
                "memory_bytes": d.memory_bytes,
                "tuning": None
                if tuning is None
                else {
                    "threads_per_block": tuning.threads_per_block,
                    "survivors_per_launch": tuning.survivors_per_launch,
                },
            }
        )
    out = {
        "available": status.available and compiled.ok,
        "reason": status.reason or ("" if compiled.ok else "the kernel does not compile"),
        "driver_version": status.driver_version,
        "runtime_version": status.runtime_version,
        "devices": devices,
        "kernel_compiles": compiled.ok,
        "compile_options": list(compiled.options),
        "compiler": compiled.detail,
    }
    if args.json:
        print(json.dumps(out))
    else:
        why = f" ({out['reason']})" if out["reason"] else ""
        print(f"GPU usable: {'yes' if out['available'] else 'no'}{why}")
        for d in devices:
            tuned = d["tuning"] or "not calibrated yet"
            print(f"  GPU {d['index']}: {d['name']} (sm {d['compute_capability']}), {tuned}")
        print(f"kernel compiles: {'yes' if compiled.ok else 'no'} ({compiled.detail})")
    return 0 if out["available"] else 1


def prepare(backend: str, k: int) -> None:
    """Open the sieve and make the kernel ready, overlapping what can overlap.

    The sieve file's SHA-256 check (about 0.18 s at k = 31) runs on a thread
    of its own, started by main.py before numpy loaded (else here). For the CPU
    backend the sieve is taken at once and the kernel loaded meanwhile: the
    ahead-of-time library (milliseconds, no numba) or numba's JIT kernel (about
    0.35 s: numba's import, then its first dispatch on another thread); blocks
    may be computed before the check ends, but their evidence waits for it
    (Sieve.confirm). Other backends wait for the check here.
    """
    if backend != "cpu":
        load_sieve_with_progress(k)
        return
    load_sieve_with_progress(k, confirmed=False)
    from engine.cpu import select_kernel

    try:
        kernel = select_kernel(
            announce=lambda m: print(f"hailstone: {m}", file=sys.stderr, flush=True)
        )
    except ValueError as exc:  # a bad HAILSTONE_KERNEL
        raise UsageError(f"HAILSTONE_KERNEL: {exc}") from exc
    except RuntimeError as exc:  # HAILSTONE_KERNEL=aot where there can be no library
        raise BackendUnavailable(str(exc)) from exc
    if kernel.name == "jit":
        from engine.cpu_kernel import load_kernel_in_background

        load_kernel_in_background()


def load_sieve_with_progress(k: int, *, confirmed: bool = True) -> None:
    """Load the sieve now; if it has to be built (the first run: about a minute at
    k = 31), say so on stderr, with a percentage on a terminal. Without
    `confirmed` the file's digest check may still be running on return."""
    from engine import sieve

    tty = sys.stderr.isatty()
    started = False

    def show(fraction: float) -> None:
        nonlocal started
        if not started:
            started = True
            print(f"hailstone: building the 2^{k} sieve (once; it is cached for later runs)",
                  file=sys.stderr, flush=True)  # fmt: skip
        if tty:
            print(f"\r  {fraction:4.0%}", end="", file=sys.stderr, flush=True)

    (sieve.load if confirmed else sieve.load_unconfirmed)(k, progress=show)
    if started and tty:
        print(file=sys.stderr)


def _fail(message: str) -> int:
    print(f"hailstone: {message}", file=sys.stderr)
    return USAGE_ERROR


def _check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r} (choose {', '.join(BACKENDS)})")


def _cores(value: int | None) -> int:
    if value is None:
        return _default_cores()
    if value < 1:
        raise UsageError("--cores must be at least 1")
    return value


def _devices(text: str) -> tuple[int, ...]:
    try:
        return parse_devices(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        start = parse_integer(args.start)
        if args.end is not None and args.count is not None:
            raise UsageError("give END or --count, not both")
        if args.count is not None:
            count = parse_integer(args.count)
            if count < 1:
                raise UsageError("--count must be at least 1")
            end = start + count
        elif args.end is not None:
            end = parse_integer(args.end)
        else:
            end = start + 1
        if start < 1:
            raise UsageError("START must be at least 1")
        if end <= start:
            raise UsageError("END must be greater than START")
        _check_backend(args.backend)
        cores = _cores(args.cores)
        if args.exact_step_bound < 1:
            raise UsageError("--exact-step-bound must be at least 1")
        params = dataclasses.replace(
            PRODUCTION,
            step_bound=min(PRODUCTION.step_bound, args.exact_step_bound),
            exact_step_bound=args.exact_step_bound,
        )
        devices = _devices(args.gpu_devices)
        prepare(args.backend, params.sieve_k)
        backend = make_backend(args.backend, params, devices=devices)
    except (UsageError, BackendUnavailable) as exc:
        return _fail(str(exc))
    try:
        job = Verifier(params, start, end, backend, cores=cores)
        total = job.blocks_total
        show_progress = not args.json and sys.stderr.isatty() and total > 1
        for step in job.run():
            if show_progress:
                print(f"\r{step.blocks_done}/{total} blocks", end="", file=sys.stderr)
        if show_progress:
            print(file=sys.stderr)
        result = job.result()
    except KeyboardInterrupt:
        print("hailstone: interrupted", file=sys.stderr)
        return 130
    except SieveDamaged as exc:  # nothing was printed or kept from the damaged tables
        print(f"hailstone: {exc}", file=sys.stderr)
        return FAILED
    finally:
        backend.close()
    out = result.to_json()
    out["candidates_found"] = len(result.candidates)
    if args.json:
        print(json.dumps(out))
    else:
        width = max(len(k) for k in out)
        for key, value in out.items():
            print(f"{key:<{width}}  {value}")
    if result.candidates:
        print(
            f"hailstone: NOT VERIFIED: {len(result.candidates)} candidate(s) did not fall below "
            f"themselves within {params.exact_step_bound} odd steps: "
            + ", ".join(str(c) for c in result.candidates[:5])
            + (" ..." if len(result.candidates) > 5 else ""),
            file=sys.stderr,
        )
        return CANDIDATES_FOUND
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        if args.backend not in ("cpu", "gpu"):
            raise UsageError(f"unknown backend {args.backend!r} for bench (choose cpu or gpu)")
        cores = _cores(args.cores)
        if args.seconds <= 0:
            raise UsageError("--seconds must be positive")
        devices = _devices(args.gpu_devices)
        if args.tune:
            if args.backend != "gpu":
                raise UsageError("--tune applies to the GPU backend only")
            from engine import gpu

            status = gpu.probe()
            if not status.available:
                raise BackendUnavailable(f"no GPU: {status.reason}")
            for device in gpu.available_devices():
                if devices and device.index not in devices:
                    continue
                tuning = gpu.autotune(device.index, PRODUCTION)  # measures and caches
                if not args.json:
                    print(f"GPU {device.index} ({device.name}): {tuning}", file=sys.stderr)
        prepare(args.backend, PRODUCTION.sieve_k)
        result = run_bench(args.backend, cores, args.seconds, devices=devices)
    except (UsageError, BackendUnavailable) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("hailstone: interrupted", file=sys.stderr)
        return 130
    except SieveDamaged as exc:
        print(f"hailstone: {exc}", file=sys.stderr)
        return FAILED
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        where = ", ".join(result.devices) if result.devices else f"{result.cores} core(s)"
        print(
            f"{result.backend}, {where}: {result.numbers_per_second:.4g} numbers/s "
            f"at 2^71 ({result.numbers} integers in {result.seconds:.2f} s)"
        )
    return 0
