"""Issue #14 item 7: one profile folder for the app and the CLI, and the move of an
old GUI profile (QStandardPaths' AppDataLocation) into it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from network.profile_dir import PROFILE_MARKERS, legacy_gui_data_dir, migrate_legacy_profile

ROOT = Path(__file__).resolve().parent.parent
PASS = "correct horse battery staple"


def _old_profile(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps({"cpu_cores": 1}))
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "u.ckpt").write_text("x\n")


def test_an_old_profile_moves_entry_by_entry(tmp_path):
    legacy, new = tmp_path / "Hailstone" / "Hailstone", tmp_path / "hailstone"
    _old_profile(legacy)
    m = migrate_legacy_profile(new, legacy)
    assert set(m.moved) == {"settings.json", "checkpoints"}
    assert json.loads((new / "settings.json").read_text()) == {"cpu_cores": 1}
    assert (new / "checkpoints" / "u.ckpt").read_text() == "x\n"
    assert not legacy.exists() and not legacy.parent.exists()
    assert str(new) in m.note
    # Nothing left to do the second time.
    assert migrate_legacy_profile(new, legacy).moved == ()


def test_an_existing_new_profile_is_never_merged_into(tmp_path):
    legacy, new = tmp_path / "Hailstone" / "Hailstone", tmp_path / "hailstone"
    _old_profile(legacy)
    new.mkdir()
    (new / "settings.json").write_text(json.dumps({"cpu_cores": 2}))
    m = migrate_legacy_profile(new, legacy)
    assert m.moved == () and str(legacy) in m.note
    assert json.loads((new / "settings.json").read_text()) == {"cpu_cores": 2}
    assert (legacy / "settings.json").is_file()  # left where it was


def test_a_folder_without_a_profile_is_not_moved(tmp_path):
    legacy, new = tmp_path / "Hailstone" / "Hailstone", tmp_path / "hailstone"
    legacy.mkdir(parents=True)
    (legacy / "stray.txt").write_text("x")
    assert migrate_legacy_profile(new, legacy).moved == ()
    assert not new.exists()
    assert "settings.json" in PROFILE_MARKERS


def test_legacy_nested_inside_the_new_folder_moves_up(tmp_path):
    # On a case-insensitive disk (macOS) ".../hailstone" and ".../Hailstone" are one
    # folder, so the old profile lies inside the new one.
    new = tmp_path / "hailstone"
    legacy = new / "Hailstone"
    _old_profile(legacy)
    m = migrate_legacy_profile(new, legacy)
    assert "settings.json" in m.moved and (new / "settings.json").is_file()
    assert not legacy.exists() and new.is_dir()


def test_the_legacy_folder_is_where_qt_put_the_old_profile(tmp_path, monkeypatch, qapp):
    from PySide6.QtCore import QCoreApplication, QStandardPaths

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    names = QCoreApplication.organizationName(), QCoreApplication.applicationName()
    QCoreApplication.setOrganizationName("Hailstone")
    QCoreApplication.setApplicationName("Hailstone")
    try:
        qt = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    finally:
        QCoreApplication.setOrganizationName(names[0])
        QCoreApplication.setApplicationName(names[1])
    assert Path(qt) == legacy_gui_data_dir()


@pytest.mark.skipif(sys.platform != "linux", reason="XDG folders are a Linux convention")
def test_an_account_made_in_the_old_app_is_seen_by_the_cli(tmp_path):
    """The issue's case: `account show` said "no account" for an app-made account."""
    pytest.importorskip("network.keystore")
    from app.network_bridge import Accounts
    from network.keystore import MIN

    data_home = tmp_path / "data"
    old = data_home / "Hailstone" / "Hailstone"
    old.mkdir(parents=True)
    Accounts(old, MIN).create("olduser", PASS)
    env = dict(os.environ, XDG_DATA_HOME=str(data_home), PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "account", "show"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "olduser" in out.stdout
    assert (data_home / "hailstone" / "account.key").is_file()
    assert not old.exists()
    # The app computes the same folder (no Qt location any more).
    code = "from app.application import default_data_dir; print(default_data_dir())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert Path(out.stdout.strip()) == data_home / "hailstone", out.stderr


@pytest.mark.skipif(os.name != "posix", reason="the running-app check is POSIX only")
def test_a_profile_an_old_app_still_uses_is_not_moved(tmp_path):
    legacy, new = tmp_path / "Hailstone" / "Hailstone", tmp_path / "hailstone"
    _old_profile(legacy)
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        (legacy / "hailstone.lock").write_text(f"{sleeper.pid}\nhailstone\nhost\n")
        m = migrate_legacy_profile(new, legacy)
        assert m.moved == () and "still running" in m.note
        assert (legacy / "settings.json").is_file()
    finally:
        sleeper.communicate(timeout=30)
    # A stale lock (its process gone) does not block the move.
    m = migrate_legacy_profile(new, legacy)
    assert "settings.json" in m.moved
