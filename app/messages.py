"""Error codes -> one sentence that says what happened and what to do next.

Every message shown to the user goes through `show()` in the app, which also
logs it; tracebacks only ever go to the log file.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """A user-visible message: code, severity ("info" | "warning" | "error"), text."""

    code: str
    severity: str
    text: str


_TEXTS: dict[str, tuple[str, str]] = {
    "no_gpu": (
        "warning",
        "No usable GPU was found ({detail}); Hailstone computes on the CPU instead. "
        "Install the NVIDIA driver and CuPy to use the GPU.",
    ),
    "gpu_failed": (
        "warning",
        "The GPU stopped with an error ({detail}); Hailstone switched to the CPU. "
        "Update the graphics driver, then turn the GPU on again in Preferences.",
    ),
    "ipfs_unreachable": (
        "error",
        "The IPFS node at {detail} cannot be reached; start IPFS Desktop or your kubo "
        "daemon, or choose the embedded node in Preferences.",
    ),
    "wrong_passphrase": (
        "error",
        "That passphrase does not unlock the account; check Caps Lock and try again.",
    ),
    "account_failed": (
        "error",
        "The account could not be set up: {detail}. Correct it and press Next again.",
    ),
    "disk_full": (
        "error",
        "The disk holding {detail} is full, so Hailstone paused; free some space, then "
        "press Resume.",
    ),
    "port_busy": (
        "error",
        "Port {detail} is busy; close the other IPFS program or pick another port in Preferences.",
    ),
    "engine_failed": (
        "error",
        "Computing stopped with an error ({detail}); details are in the event log. "
        "Press Resume to try again.",
    ),
    "settings_invalid": (
        "warning",
        "A saved setting was not valid and was reset to its default ({detail}); check Preferences.",
    ),
    "network_failed": (
        "error",
        "The network node could not start ({detail}); Hailstone computes in solo mode and "
        "keeps results on this computer. Check the Network settings in Preferences, then "
        "restart Hailstone.",
    ),
    "network_solo": (
        "info",
        "Network: not connected (solo mode); results are kept on this computer.",
    ),
    "settings_not_saved": (
        "error",
        "The setting could not be saved ({detail}); the old value stays in effect. Free some "
        "disk space or check that the data folder is writable, then try again.",
    ),
    "autostart_failed": (
        "warning",
        "Start at login could not be changed ({detail}); check that your login items or "
        "autostart folder are writable, then try again in Preferences.",
    ),
    "account_error": (
        "error",
        "The account operation did not complete ({detail}); nothing was changed. Check the "
        "passphrase or the file, then try again.",
    ),
    "node_key_locked": (
        "warning",
        "This computer's node key could not be opened ({detail}); enter the account "
        "passphrase to authorise this computer again.",
    ),
    "unexpected_error": (
        "error",
        "Something unexpected went wrong ({detail}); Hailstone keeps running. The details "
        "are in the log file; please include it when you report the problem.",
    ),
    "dispute_against_you": (
        "warning",
        "A block of your unit {detail} was recomputed by another volunteer and did not match "
        "your result, so the unit is disputed and your report no longer counts. Faulty "
        "hardware is the usual cause (overclocking, heat); check it, and see the unit in History.",
    ),
    "new_version": (
        "info",
        "{detail}. Install it when convenient: your profile, results and settings stay; "
        "this version keeps computing meanwhile.",
    ),
    "candidate": (
        "warning",
        "A number in unit {detail} did not fall below itself within the step bound; it was "
        "re-checked exactly and is recorded for review. Please keep the event log.",
    ),
}

CODES = tuple(_TEXTS)


def message(code: str, detail: str = "") -> Message:
    """The message for `code`, with `detail` filled in where the sentence names it."""
    severity, template = _TEXTS.get(
        code, ("error", "Something went wrong ({detail}); details are in the event log.")
    )
    detail = detail or "unknown"
    return Message(code, severity, template.format(detail=detail))


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """(code, detail) for an exception raised while computing or saving."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return "disk_full", str(exc.filename or "the data folder")
        if exc.errno == errno.EADDRINUSE:
            return "port_busy", str(exc.filename or "4001")
    if getattr(exc, "reason", None) == "disk_full":  # network.ledger.LedgerError
        return "disk_full", "the data folder"
    name = type(exc).__name__
    if name == "BackendUnavailable":
        text = str(exc)
        return "no_gpu", text.removeprefix("no GPU: ")
    return "engine_failed", f"{name}: {exc}"


def gpu_reason_in_words(reason: str) -> str:
    """Why there is no GPU, for a volunteer (the probe's technical reason is for the log).

    The GPU probe speaks to developers ("CuPy is not installed or does not load (No
    module named 'cupy')"); the wizard and Preferences say what it means and what to do.
    """
    r = reason.lower()
    if "driver is too old" in r:
        return "the graphics driver is too old for GPU computing; update the NVIDIA driver"
    if r.startswith("cupy") or "no module named" in r or "gpu support is not installed" in r:
        return (
            "GPU support is not installed. It needs an NVIDIA graphics card and its driver; "
            "with a driver present, scripts/app.sh (or the installer) adds it by itself"
        )
    if "no cuda driver" in r:
        return "no NVIDIA graphics driver was found (GPU computing needs an NVIDIA card)"
    if "no cuda device" in r or "no device" in r:
        return "the NVIDIA driver is installed but sees no graphics card"
    return "the graphics card could not be used for computing (details in the log)"
