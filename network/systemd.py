"""systemd units for `main.py node`: rendered here, installed by `main.py service install`.

One definition: `render_unit` writes both the system unit (a dedicated
`hailstone` user, the profile in `StateDirectory=`, hardened) and the user unit
(the person's own profile, started with their session or with lingering). The
files in packaging/systemd/ are this function's output for the release build's
paths; a test keeps them equal and runs `systemd-analyze verify` on both.

Why each setting is there:
- `KillSignal=SIGTERM` + `TimeoutStopSec=`: the node stops between batches (a
  block takes milliseconds, a GPU batch 0.25 s) and keeps the unit's checkpoint;
  30 s covers closing IPFS and the ledger with room to spare.
- `Restart=on-failure`: a crash or a failed start retries after `RestartSec=`; a
  clean stop (exit 0) stays stopped.
- `Nice=19`, `IOSchedulingClass=idle`: a volunteer's work yields to everything else.
- `ProtectSystem=strict`: the whole file system is read-only except the state,
  cache and runtime folders systemd makes for the unit. numba's kernel cache and
  the sieve cache go to `CacheDirectory=` (`NUMBA_CACHE_DIR`, `HAILSTONE_CACHE_DIR`).
- No `MemoryDenyWriteExecute=`: numba compiles kernels at run time (W+X pages).
- `PrivateDevices=` only without a GPU: CUDA needs /dev/nvidia*.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "hailstone.service"
SYSTEM_USER = "hailstone"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
STOP_TIMEOUT_S = 30


@dataclass(frozen=True, slots=True)
class UnitOptions:
    """What the unit runs.

    Attributes:
        command: the program and its fixed arguments (the frozen `hailstone`, or
            a venv's python with main.py).
        user: True for a user unit, False for the system unit.
        data_dir: the profile (user unit; the system unit uses StateDirectory).
        backend: cpu or gpu.
        metrics: the --metrics address, or None for no endpoint.
        extra: more `node` arguments, as given.
    """

    command: tuple[str, ...]
    user: bool = False
    data_dir: str | None = None
    backend: str = "cpu"
    metrics: str | None = "127.0.0.1:9464"
    extra: tuple[str, ...] = ()


def this_command() -> tuple[str, ...]:
    """How to start this Hailstone: the frozen executable, else python + main.py."""
    if getattr(sys, "frozen", False):
        return (sys.executable,)
    main = Path(__file__).resolve().parent.parent / "main.py"
    return (sys.executable, str(main))


def _quote(arg: str) -> str:
    # systemd's ExecStart= splits like a shell but expands $ and % itself.
    return shlex.quote(arg).replace("%", "%%").replace("$", "$$")


def render_unit(o: UnitOptions) -> str:
    """The unit file's text."""
    if o.user:
        data_dir = o.data_dir or "%h/.local/share/hailstone"
        data_arg, status = data_dir, "%t/hailstone/status.json"
    else:
        data_arg, status = "%S/hailstone", "%t/hailstone/status.json"
    args = [*o.command, "node", "--data-dir", data_arg, "--status-file", status,
            "--backend", o.backend, "--log-level", "info"]
    if o.metrics:
        args += ["--metrics", o.metrics]
    args += list(o.extra)
    # %-specifiers of our own (%S, %t, %h) stay unquoted so systemd expands them.
    exec_start = " ".join(a if a.startswith(("%S/", "%t/", "%h/")) else _quote(a) for a in args)
    home_is_read = any(part.startswith("/home/") or part.startswith("/root/") for part in o.command)
    lines = [
        "# Hailstone volunteer node (Collatz verification); rendered by 'main.py service install'.",
        "[Unit]",
        "Description=Hailstone node: verifies the Collatz conjecture beyond 2^71",
        "Documentation=man:systemd.exec(5)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        "RestartSec=10",
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "Nice=19",
        "IOSchedulingClass=idle",
        "Environment=PYTHONUNBUFFERED=1",
        "Environment=NUMBA_CACHE_DIR=%C/hailstone/numba",
        "Environment=HAILSTONE_CACHE_DIR=%C/hailstone",
        "CacheDirectory=hailstone",
        "RuntimeDirectory=hailstone",
        "NoNewPrivileges=yes",
    ]
    if not o.user:
        lines += [
            f"User={SYSTEM_USER}",
            f"Group={SYSTEM_USER}",
            "StateDirectory=hailstone",
            "StateDirectoryMode=0700",
            "UMask=0077",
            "ProtectSystem=strict",
            # A venv under /home must stay readable; otherwise hide /home entirely.
            f"ProtectHome={'read-only' if home_is_read else 'yes'}",
            "PrivateTmp=yes",
            f"PrivateDevices={'no' if o.backend == 'gpu' else 'yes'}",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
            "RestrictNamespaces=yes",
            "RestrictRealtime=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
            "CapabilityBoundingSet=",
            "SystemCallArchitectures=native",
        ]
    lines += [
        "",
        "[Install]",
        f"WantedBy={'default.target' if o.user else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)


def unit_path(user: bool, *, root: Path = Path("/"), home: Path | None = None) -> Path:
    """Where the unit file goes (under `root` for packagers and tests)."""
    if user:
        base = home if home is not None else Path.home()
        return base / ".config" / "systemd" / "user" / UNIT_NAME
    return root / SYSTEM_UNIT_DIR.relative_to("/") / UNIT_NAME
