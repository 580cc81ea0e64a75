"""Start at login: Windows Run key, macOS LaunchAgent, Linux autostart .desktop.

`set_enabled(True)` registers the current program (frozen build or
`python main.py`) as `gui --minimized --data-dir DIR [--params NAME]`, so a
login start opens the same profile; `False` removes the entry. Paths can be
redirected for tests (`config_home`, `home`).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from engine.files import write_atomic

APP_ID = "hailstone"


def command_line(data_dir: Path | None = None, params: str | None = None) -> list[str]:
    """The command that starts this installation minimised on the profile `data_dir`.

    `--minimized` belongs to the `gui` sub-command, so both forms name it (the
    frozen build's executable is main.py's parser too).
    """
    if getattr(sys, "frozen", False):
        cmd = [sys.executable, "gui", "--minimized"]
    else:
        main = Path(__file__).resolve().parent.parent / "main.py"
        cmd = [sys.executable, str(main), "gui", "--minimized"]
    if data_dir is not None:
        cmd += ["--data-dir", str(Path(data_dir).resolve())]
    if params is not None:
        cmd += ["--params", params]
    return cmd


def linux_entry_path(config_home: Path | None = None) -> Path:
    base = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return Path(base) / "autostart" / f"{APP_ID}.desktop"


def _write(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def set_enabled(
    enabled: bool,
    *,
    data_dir: Path | None = None,
    params: str | None = None,
    config_home: Path | None = None,
    home: Path | None = None,
) -> Path | str:
    """Register or remove the login entry; returns where it lives.

    Args:
        enabled: register (True) or remove (False).
        data_dir: the profile the login start opens (None: the default folder).
        params: a parameter set name to pass as --params, if this run chose one.
        config_home, home: redirect the entry's folder (tests).

    Raises:
        OSError: when the entry cannot be written (the caller shows a message).
    """
    cmd = command_line(data_dir, params)
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import winreg

        key_path = r"Software\Microsoft\Windows\CurrentVersion\Run"
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key_path, 0, winreg.KEY_SET_VALUE) as key:
            if enabled:
                winreg.SetValueEx(
                    key, "Hailstone", 0, winreg.REG_SZ, " ".join(f'"{c}"' for c in cmd)
                )
            else:
                try:
                    winreg.DeleteValue(key, "Hailstone")
                except FileNotFoundError:
                    pass
        return "HKCU\\" + key_path
    if sys.platform == "darwin":  # pragma: no cover - macOS only
        path = (home or Path.home()) / "Library" / "LaunchAgents" / "org.hailstone.app.plist"
        if enabled:
            args = "".join(f"    <string>{c}</string>\n" for c in cmd)
            _write(
                path,
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" '
                '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
                '<plist version="1.0"><dict>\n'
                "  <key>Label</key><string>org.hailstone.app</string>\n"
                f"  <key>ProgramArguments</key><array>\n{args}  </array>\n"
                "  <key>RunAtLoad</key><true/>\n</dict></plist>\n",
            )
        else:
            path.unlink(missing_ok=True)
        return path
    path = linux_entry_path(config_home)
    if enabled:
        _write(
            path,
            "[Desktop Entry]\nType=Application\nName=Hailstone\n"
            "Comment=Verify the Collatz conjecture beyond 2^71\n"
            f"Exec={shlex.join(cmd)}\nIcon=hailstone\nTerminal=false\n"
            "X-GNOME-Autostart-enabled=true\n",
        )
    else:
        path.unlink(missing_ok=True)
    return path


def is_enabled(*, config_home: Path | None = None) -> bool:
    if sys.platform.startswith("linux"):
        return linux_entry_path(config_home).exists()
    return False  # pragma: no cover
