"""Where a profile lives by default: one place for the desktop app and the CLI.

The desktop app used to keep its profile where Qt's `QStandardPaths`
(AppDataLocation, organisation and application "Hailstone") put it, for example
`~/.local/share/Hailstone/Hailstone`, while the CLI used platformdirs'
`~/.local/share/hailstone`; an account made in the app was then invisible to
`account export`. Both now call `default_data_dir()`, which is platformdirs'
user data folder for "hailstone", and the first call of a process moves an old
GUI profile there when the new folder holds no profile yet. Qt-free, so the
headless node and the CLI run the same migration.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

APP_NAME = "hailstone"
# Any of these makes a folder a profile that must not be merged into or overwritten.
PROFILE_MARKERS = ("account.key", "settings.json", "app_state.json", "ledger.sqlite3")


@dataclass(frozen=True, slots=True)
class Migration:
    """What `migrate_legacy_profile` did.

    Attributes:
        moved: entries moved from the old folder (empty when nothing moved).
        legacy: the old folder looked at.
        note: one sentence for the user and the log ("" when there was nothing to do).
    """

    moved: tuple[str, ...]
    legacy: Path
    note: str = ""


def legacy_gui_data_dir() -> Path:
    """The folder QStandardPaths' AppDataLocation gave the old app ("Hailstone"/"Hailstone").

    Qt builds it as <user data base>/<organisation>/<application>: on Linux
    $XDG_DATA_HOME (or ~/.local/share), on macOS ~/Library/Application Support, on
    Windows the roaming %APPDATA%.
    """
    import platformdirs

    base = Path(platformdirs.user_data_dir(roaming=True))
    return base / "Hailstone" / "Hailstone"


def _in_use(folder: Path) -> bool:
    """Whether a running app holds the old profile (its Qt lock file names a live PID).

    POSIX only: a stale lock from a crash names a dead process and does not count.
    (On Windows, os.kill(pid, 0) would send CTRL_C_EVENT, so no check is made there.)
    """
    lock = folder / "hailstone.lock"
    if os.name != "posix" or not lock.is_file():
        return False
    try:
        pid = int(lock.read_text(encoding="utf-8", errors="replace").split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return pid != os.getpid()


def _has_profile(folder: Path) -> bool:
    return any((folder / name).exists() for name in PROFILE_MARKERS)


def migrate_legacy_profile(new: Path, legacy: Path) -> Migration:
    """Move an old GUI profile from `legacy` into `new` when `new` holds no profile.

    Entry by entry with os.replace (a rename on one file system, shutil.move
    across), so on a case-insensitive disk, where `legacy` may lie inside `new`
    (`.../hailstone/Hailstone`), the entries simply move up one level. A `new`
    that already holds a profile is never touched: the old folder stays and the
    note says where it is.
    """
    new, legacy = Path(new), Path(legacy)
    if not legacy.is_dir() or not _has_profile(legacy):
        return Migration((), legacy)
    try:
        if new.resolve() == legacy.resolve():
            return Migration((), legacy)
    except OSError:
        pass
    if _in_use(legacy):
        note = (
            f"An older Hailstone is still running on {legacy}; quit it, and the profile "
            f"moves to {new} at the next start."
        )
        log.warning("%s", note)
        return Migration((), legacy, note)
    if new.is_dir() and _has_profile(new):
        note = (
            f"An older Hailstone profile is still in {legacy}; the profile in {new} is used. "
            "Move the old one by hand if you need it."
        )
        log.warning("%s", note)
        return Migration((), legacy, note)
    new.mkdir(parents=True, exist_ok=True)
    moved = []
    for entry in sorted(legacy.iterdir()):
        target = new / entry.name
        if target.exists() or entry.name.lower() == new.name.lower():
            continue  # never overwrite; the case-insensitive nesting folder stays
        try:
            shutil.move(os.fspath(entry), os.fspath(target))
        except OSError as exc:
            log.warning("could not move %s to %s: %s", entry, target, exc)
            continue
        moved.append(entry.name)
    for folder in (legacy, legacy.parent):
        try:
            if folder.resolve() != new.resolve():
                folder.rmdir()  # only when empty
        except OSError:
            pass
    note = f"Your Hailstone profile moved from {legacy} to {new}." if moved else ""
    if note:
        log.info("%s (%d entries)", note, len(moved))
    return Migration(tuple(moved), legacy, note)


_migrated: Migration | None = None


def default_data_dir() -> Path:
    """The default profile folder of the app and every sub-command.

    platformdirs' user data folder for "hailstone"; the first call in a process
    moves an old GUI profile there (see `migrate_legacy_profile`).
    """
    global _migrated
    import platformdirs

    path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    if _migrated is None:
        try:
            _migrated = migrate_legacy_profile(path, legacy_gui_data_dir())
        except OSError as exc:  # a profile we cannot move is still usable where it is
            log.warning("profile migration failed: %s", exc)
            _migrated = Migration((), legacy_gui_data_dir(), "")
    return path


def last_migration() -> Migration | None:
    """What the first `default_data_dir()` call of this process moved (None before it)."""
    return _migrated
