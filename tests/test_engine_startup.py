"""Start-up: a start that finds the sieve cache reads it without loading numba,
so the CLI can read the file while numba loads (engine.commands.prepare)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.netutil import ROOT


def _run(code: str, cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HAILSTONE_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_a_cached_sieve_loads_without_numba_and_a_build_uses_it(tmp_path) -> None:
    load = "import sys; from engine import sieve; s = sieve.load(12); print(len(s), 'numba' in sys.modules)"
    first = _run(load, str(tmp_path))
    assert first.returncode == 0, first.stderr
    count, built_with_numba = first.stdout.split()
    assert built_with_numba == "True"  # no cache yet: built by engine.sieve_build
    again = _run(load, str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == [count, "False"]


def test_prepare_raises_what_reading_the_sieve_raised(tmp_path) -> None:
    code = (
        "from engine.commands import prepare\n"
        "try:\n    prepare('reference', 40)\n"
        "except ValueError as exc:\n    print('refused:', exc)\n"
    )
    out = _run(code, str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused: sieve k must be in 2..32")


def test_the_early_sieve_check_starts_before_numpy_is_imported(tmp_path) -> None:
    # main.py starts it first thing for verify and bench; engine/__init__ must stay lazy.
    _run("from engine import sieve; sieve.load(12)", str(tmp_path))  # build the cache
    code = (
        "import sys\n"
        "from engine import sieve_file\n"
        "sieve_file.start_early(12)\n"
        "started = sieve_file._early[sieve_file.cache_path(12)][1]\n"
        "print('numpy' in sys.modules, started.ok())\n"
    )
    out = _run(code, str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
