"""The Account page says which verification rule is in force (PROTOCOL §11) and,
under the trust protocol, the account's earned weight; the Leaderboard shows
weights only under the protocol."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QThreadPool

from app.controller import AppController
from app.network_bridge import BridgeStatus, LeaderRow, NetworkSnapshot, WorkBridge
from engine import Params
from engine.policy import Situation

TINY = Params.custom(name="tiny", unit_bits=22, block_bits=16, sieve_k=16)
PASS = "correct horse battery staple"
GENESIS = ("11" * 32, "22" * 32)
BEACON = ("33" * 32,)


def _calm(_programs: bool = False) -> Situation:
    return Situation(now=time.time(), idle_seconds=1e6, on_battery=False, programs=frozenset())


@pytest.fixture
def ctl(tmp_path):
    from network.keystore import MIN

    c = AppController(
        tmp_path / "profile", params=TINY, try_network=False, kdf_limits=MIN, probe=_calm
    )
    c.accounts().create("alice", PASS)
    yield c
    c.shutdown()
    QThreadPool.globalInstance().waitForDone(10000)


def _page(qtbot, ctl):
    from app.pages import AccountPage

    page = AccountPage(ctl)
    qtbot.addWidget(page)
    page.show()
    return page


def test_policy_off_says_quorum_and_why(qtbot, ctl) -> None:
    page = _page(qtbot, ctl)
    text = page.rule_label.text()
    assert "Quorum:</b> a unit counts when two accounts report the same result" in text
    assert "no genesis keys are configured (PROTOCOL §11)" in text
    assert "two accounts run by one person could agree" in text
    assert not page.weight_label.isVisible()
    # A network status (solo here: the real bridge) says the same.
    status = WorkBridge(ctl.data_dir, TINY, ctl.settings.values(), try_network=False).status()
    assert (status.trust_genesis, status.trust_beacons, status.account_weight) == (0, 0, None)
    ctl._on_network_status(status)
    assert "Quorum:" in page.rule_label.text() and not page.weight_label.isVisible()


def test_policy_on_shows_the_root_of_trust_and_the_weight(qtbot, ctl) -> None:
    # The settings name the root of trust (a key listed twice counts once).
    ctl.settings.set("trust_genesis", (*GENESIS, GENESIS[0].upper()))
    ctl.settings.set("trust_beacons", BEACON)
    page = _page(qtbot, ctl)
    text = page.rule_label.text()
    assert "Trust protocol:</b> results count through earned weight" in text
    assert "2 genesis keys, 1 beacon key (settings trust_genesis / trust_beacons)" in text
    assert "Quorum" not in text
    assert "shown once the network node is running" in page.weight_label.text()

    # The bridge reads the same root of trust; the node's weight arrives with its status.
    solo = WorkBridge(ctl.data_dir, TINY, ctl.settings.values(), try_network=False).status()
    assert (solo.trust_genesis, solo.trust_beacons) == (2, 1)
    fresh = BridgeStatus(
        True, "Network: connected", trust_genesis=2, trust_beacons=1, account_weight=0
    )
    ctl._on_network_status(fresh)
    assert "none yet" in page.weight_label.text()
    assert "fresh accounts carry no weight" in page.weight_label.text()
    earned = BridgeStatus(
        True, "Network: connected", trust_genesis=2, trust_beacons=1, account_weight=12
    )
    ctl._on_network_status(earned)
    assert page.weight_label.isVisible()
    assert "Your account's earned weight: <b>12</b>" in page.weight_label.text()


def test_leaderboard_weight_column_only_under_the_policy(qtbot, ctl) -> None:
    from app.pages import LeaderboardPage

    page = LeaderboardPage(ctl)
    qtbot.addWidget(page)
    status = BridgeStatus(True, "")
    ctl.last_snapshot = NetworkSnapshot(status, (), (LeaderRow(1, "alice", 3, 100, me=True),))
    page.refresh()
    assert page.table.isColumnHidden(5)
    ctl.last_snapshot = NetworkSnapshot(
        status, (), (LeaderRow(1, "alice", 3, 100, me=True, weight=9),)
    )
    page.refresh()
    assert not page.table.isColumnHidden(5)
    assert page.table.item(0, 5).text() == "9"
