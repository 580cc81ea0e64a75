"""Compute at background priority: the lowest CPU priority the OS gives a thread.

A volunteer's machine is theirs first: the engine's threads take only the CPU
that nothing else wants (BOINC does the same), so the desktop, the app's own
window and the node's network loop are served at once even when every core
computes. The node's networking matters most: a claim or a record answered late
is a unit computed twice by someone else.

HAILSTONE_COMPUTE_PRIORITY=normal keeps them at normal priority.

Per thread, not per process: only the engine's compute threads are lowered
(Linux: a thread's nice value; Windows: THREAD_PRIORITY_IDLE; macOS: the
utility QoS class). Lowering is one-way for an unprivileged process, so it is
done on threads that do nothing else (CpuBackend's pool).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

# The lowest priority of a Unix nice value (the highest number).
NICE_LOWEST = 19
# "normal" keeps compute at the priority of the rest of the program: for a machine
# given over to computing, and for bench/swarm.py, whose tens of nodes share two
# cores, so one node's compute would wait behind every other node's network loop
# (which no real deployment has: there each node's network competes only with its
# own compute).
PRIORITY_ENV = "HAILSTONE_COMPUTE_PRIORITY"
PRIORITIES = ("background", "normal")
_THREAD_PRIORITY_IDLE = -15  # Windows: SetThreadPriority's lowest normal level
_QOS_CLASS_UTILITY = 0x11  # macOS: long-running work the user does not wait on


def compute_priority() -> str:
    """"background" (the default) or "normal", from HAILSTONE_COMPUTE_PRIORITY."""
    value = os.environ.get(PRIORITY_ENV, "").strip().lower() or "background"
    if value not in PRIORITIES:
        log.warning("%s=%s is not one of %s: computing at background priority",
                    PRIORITY_ENV, value, ", ".join(PRIORITIES))
        return "background"
    return value


def lower_compute_thread() -> bool:
    """A compute thread's start: lowered unless the compute priority is "normal"."""
    return compute_priority() == "background" and lower_this_thread()


def lower_this_thread() -> bool:
    """Put the calling thread at background priority; False where the OS refused or
    has no such call (the thread then computes at normal priority, which is only
    less polite, never wrong)."""
    try:
        if sys.platform.startswith("linux"):
            # On Linux a thread has a nice value of its own, named by its thread id.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE_LOWEST)
            return True
        if sys.platform == "win32":
            kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
            return bool(kernel32.SetThreadPriority(kernel32.GetCurrentThread(), _THREAD_PRIORITY_IDLE))
        if sys.platform == "darwin":
            libc = ctypes.CDLL(None)
            return libc.pthread_set_qos_class_self_np(_QOS_CLASS_UTILITY, 0) == 0
    except (OSError, AttributeError) as exc:
        log.info("cannot lower the compute thread's priority: %s", exc)
    return False


def thread_nice() -> int | None:
    """The calling thread's nice value where the OS has one per thread (Linux), else
    None (tests, diagnostics)."""
    if not sys.platform.startswith("linux"):
        return None
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
