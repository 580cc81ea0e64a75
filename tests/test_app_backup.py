"""The account page backs the profile up and restores a backup into a new folder."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QThreadPool

from app.controller import AppController
from engine import Params
from engine.policy import Situation

TINY = Params.custom(name="tiny", unit_bits=22, block_bits=16, sieve_k=16)
PASS = "correct horse battery staple"


def _calm(_programs: bool = False) -> Situation:
    return Situation(now=time.time(), idle_seconds=1e6, on_battery=False, programs=frozenset())


@pytest.fixture
def ctl(tmp_path):
    from network.keystore import MIN

    c = AppController(tmp_path / "profile", params=TINY, try_network=False, kdf_limits=MIN,
                      probe=_calm)
    yield c
    c.shutdown()
    QThreadPool.globalInstance().waitForDone(10000)


def test_backup_and_restore_from_the_account_page(qtbot, ctl, tmp_path) -> None:
    from app.pages import AccountPage

    ctl.accounts().create("alice", PASS)
    page = AccountPage(ctl)
    qtbot.addWidget(page)
    assert page.backup_button.isEnabled() and page.restore_button.isEnabled()

    with qtbot.waitSignal(ctl.status_text, timeout=30000) as done:
        page.backup_to(tmp_path / "b.tar.gz")
    assert "backed up" in done.args[0] and (tmp_path / "b.tar.gz").exists()
    qtbot.waitUntil(lambda: not page.busy)

    with qtbot.waitSignal(ctl.status_text, timeout=30000) as done:
        page.restore_into(tmp_path / "b.tar.gz", tmp_path / "copy")
    assert f"--data-dir {tmp_path / 'copy'}" in done.args[0]
    qtbot.waitUntil(lambda: not page.busy)
    from network.identity import Profile

    assert Profile(tmp_path / "copy").info()["username"] == "alice"

    # The running profile is never a restore target: a clear message, nothing written.
    before = sorted(p.name for p in (tmp_path / "profile").iterdir())
    with qtbot.waitSignal(ctl.message_shown, timeout=30000) as got:
        page.restore_into(tmp_path / "b.tar.gz", tmp_path / "profile")
    qtbot.waitUntil(lambda: not page.busy)
    assert got.args[0].code == "account_error" and "is not empty" in got.args[0].text
    assert sorted(p.name for p in (tmp_path / "profile").iterdir()) == before
